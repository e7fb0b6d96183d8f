// The dashboard under /app, driven as a person would drive it: headless
// Chromium clicks links, types into labelled fields and presses keys, and
// every step checks what the contract of the dashboard promises.
//
// Run by tests/api/browser.rs against a server whose account already holds 60
// customers that sort before "Virtanen". Plain node, no test framework:
//
//   BASE_URL=http://127.0.0.1:34567 API_KEY=... SHOTS_DIR=shots \
//   CHROMIUM=/usr/bin/chromium node e2e/dashboard.mjs
//
// One line per step on stdout; exit 0 when every step passed, else 1.

import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { chromium } from 'playwright-core';

const BASE_URL = (process.env.BASE_URL ?? '').replace(/\/+$/, '');
const API_KEY = process.env.API_KEY ?? '';
const SHOTS_DIR = process.env.SHOTS_DIR ?? 'e2e-screenshots';
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

// No single wait may take longer; the whole run has a deadline of its own so
// that a hang ends with a message instead of the caller's kill.
const WAIT_MS = 15_000;
const ACTION_MS = 10_000;
const DEADLINE_MS = 110_000;

const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };

const LASTNAME = 'Virtanen';
const FIRSTNAME = 'Ääpeli-Kustaa';
const FULL_NAME = `${LASTNAME} ${FIRSTNAME}`;
const LONG_COMPANY = 'Osakeyhtiö Pohjois-Pohjanmaan Sähkönjakelu- ja Kunnossapitopalvelut';
const LONG_LASTNAME = 'Pohjois-Pohjanmaan-Sairaanhoitopiirin-Kuntayhtymän-Henkilöstöhallinto';
// Imported from a file; nothing else in the account has this last name.
const IMPORT_LASTNAME = 'Tuontinen';
const IMPORT_EMAILS = ['tuonti1@example.fi', 'tuonti2@example.fi', 'tuonti3@example.fi'];
const CSV_HEADER = 'email,customer_locale,address.firstname,address.lastname,address.city,address.postcode,address.country';
// What tests/api/browser.rs seeds: Aalto Asiakas01..60, aalto1..60@example.com.
const SEEDED_EMAILS = Array.from({ length: 60 }, (_, i) => `aalto${i + 1}@example.com`);
// Well-formed but never issued: the sign-in must refuse it like any bad key.
const WRONG_KEY = 'deadbeef-00000000000000000000000000000000';

const LAUNCH_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-default-apps',
  '--disable-extensions',
];

// ---------------------------------------------------------------------------
// Helpers

/** Every main-frame document response of a page, the latest last. */
const documents = new WeakMap();
/** Places where a response header carried the API key. */
const headerLeaks = [];
const pendingHeaderChecks = [];

function escapeRegExp(text) {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

async function newContext(browser, viewport) {
  const context = await browser.newContext({
    viewport,
    // The default, but the export step depends on it.
    acceptDownloads: true,
    locale: 'en-US',
    extraHTTPHeaders: { 'Accept-Language': 'en-US,en;q=0.9' },
  });
  context.setDefaultTimeout(ACTION_MS);
  context.setDefaultNavigationTimeout(WAIT_MS);
  // The key must not come back in any header either (Set-Cookie included),
  // which page.content() cannot see.
  context.on('response', (response) => {
    pendingHeaderChecks.push(
      response
        .allHeaders()
        .then((headers) => {
          for (const [name, value] of Object.entries(headers)) {
            if (value.includes(API_KEY)) headerLeaks.push(`${name} of ${response.url()}`);
          }
        })
        .catch(() => {}),
    );
  });
  return context;
}

function watchDocuments(page) {
  page.on('response', (response) => {
    try {
      if (response.request().isNavigationRequest() && response.frame() === page.mainFrame()) {
        documents.set(page, response);
      }
    } catch {
      // A response of no frame (a worker's) is no document.
    }
  });
}

async function newPage(context) {
  const page = await context.newPage();
  watchDocuments(page);
  return page;
}

/** Fails when the key is anywhere in the page's HTML. */
async function assertNoKey(page, where) {
  const html = await page.content();
  assert.ok(!html.includes(API_KEY), `the API key is in the HTML of ${where} (${page.url()})`);
}

async function assertNoKeyInHeaders() {
  await Promise.all(pendingHeaderChecks.splice(0));
  assert.deepEqual(headerLeaks, [], 'the API key is in response headers');
}

/** Goes to a path and returns the final response, after checking the HTML. */
async function open(page, pathAndQuery) {
  const response = await page.goto(BASE_URL + pathAndQuery, { timeout: WAIT_MS, waitUntil: 'load' });
  await assertNoKey(page, pathAndQuery);
  return response;
}

/**
 * Runs an action that loads a new document (a click, a key press, a form
 * submit) and returns the document's response, the last of any redirects.
 */
async function navigate(page, action, what) {
  const before = documents.get(page);
  await Promise.all([page.waitForEvent('load', { timeout: WAIT_MS }), action()]);
  const response = documents.get(page);
  assert.ok(response && response !== before, `${what} loaded no new document`);
  await assertNoKey(page, what);
  return response;
}

function pathOf(page) {
  const url = new URL(page.url());
  return url.pathname + url.search;
}

function assertPath(page, expected, what) {
  const actual = pathOf(page);
  if (expected instanceof RegExp) {
    assert.match(actual, expected, `${what}: at ${actual}`);
  } else {
    assert.equal(actual, expected, `${what}: at ${actual}`);
  }
}

async function expectVisible(locator, what) {
  try {
    await locator.first().waitFor({ state: 'visible', timeout: WAIT_MS });
  } catch (error) {
    throw new Error(`${what} is not visible: ${error.message.split('\n')[0]}`);
  }
}

/** A role=status (or role=alert) element that says `text`. */
function roleWithText(page, role, text) {
  return page.getByRole(role).filter({ hasText: text });
}

async function bodyText(page) {
  return page.locator('body').innerText({ timeout: ACTION_MS });
}

async function shot(page, name, fullPage = true) {
  await page.screenshot({ path: path.join(SHOTS_DIR, name), fullPage, timeout: WAIT_MS });
}

async function assertNoSideways(page, what) {
  const { scrollWidth, innerWidth } = await page.evaluate(() => ({
    scrollWidth: document.documentElement.scrollWidth,
    innerWidth: window.innerWidth,
  }));
  assert.ok(
    scrollWidth <= innerWidth + 1,
    `${what} scrolls sideways: scrollWidth ${scrollWidth} > innerWidth ${innerWidth}`,
  );
}

/** The fields of the customer form, by their English labels. */
function form(page) {
  return {
    email: page.getByLabel('Email'),
    locale: page.getByLabel("Customer's language"),
    firstname: page.getByLabel('First name'),
    lastname: page.getByLabel('Last name'),
    company: page.getByLabel('Company'),
    companyId: page.getByLabel('Business ID'),
    address: page.getByLabel('Street address'),
    city: page.getByLabel('City'),
    postcode: page.getByLabel('Postcode'),
    phone: page.getByLabel('Phone'),
    country: page.getByLabel('Country code'),
    save: page.getByRole('button', { name: 'Save', exact: true }),
  };
}

async function fillCustomer(page, values) {
  const fields = form(page);
  for (const [name, value] of Object.entries(values)) {
    if (name === 'locale') {
      await fields.locale.selectOption(value);
    } else {
      await fields[name].fill(value);
    }
  }
}

/** Signs in on a fresh page of `context` and leaves it on the list. */
async function signIn(context) {
  const page = await newPage(context);
  await open(page, '/app/sign-in');
  await page.getByLabel('API key').fill(API_KEY);
  await navigate(page, () => page.getByRole('button', { name: 'Sign in' }).click(), 'signing in');
  assertPath(page, '/app/customers', 'after signing in');
  return page;
}

function customerLink(page) {
  return page.getByRole('link', { name: FULL_NAME, exact: true });
}

/** The in-memory CSV of the import step; `secondEmail` is the row on line 3. */
function importFile(secondEmail) {
  const rows = [
    CSV_HEADER,
    `${IMPORT_EMAILS[0]},fi_FI,Aino,${IMPORT_LASTNAME},Oulu,90100,FI`,
    `${secondEmail},en_US,Bertta,${IMPORT_LASTNAME},Oulu,90100,FI`,
    `${IMPORT_EMAILS[2]},fi_FI,Cecilia,${IMPORT_LASTNAME},Oulu,90100,FI`,
  ];
  return { name: 'customers.csv', mimeType: 'text/csv', buffer: Buffer.from(rows.join('\n') + '\n', 'utf8') };
}

/** Searches the list for `text` and returns the number of rows found. */
async function searchRows(page, text) {
  await page.getByLabel('Search', { exact: true }).fill(text);
  await navigate(page, () => page.getByRole('button', { name: 'Search' }).click(), `searching for ${text}`);
  assertPath(page, new RegExp(`^/app/customers\\?(.*&)?q=${escapeRegExp(text)}(&.*)?$`), `after searching for ${text}`);
  return page.locator('table tr:has(td)').count();
}

/** Clicks a download link and returns the download and the file's text. */
async function downloadFrom(page, linkName) {
  const [download] = await Promise.all([
    page.waitForEvent('download', { timeout: WAIT_MS }),
    page.getByRole('link', { name: linkName, exact: true }).click(),
  ]);
  const text = await readFile(await download.path(), 'utf8');
  assert.equal(await download.failure(), null, `the download of "${linkName}" failed`);
  await assertNoKey(page, `after "${linkName}"`);
  assert.ok(!text.includes(API_KEY), `the API key is in the file of "${linkName}"`);
  return { download, text };
}

// ---------------------------------------------------------------------------
// The flow

let currentStep = '(starting)';
let failurePage = null;

async function step(name, body) {
  currentStep = name;
  const detail = await body();
  await assertNoKeyInHeaders();
  console.log(detail ? `ok   ${name} (${detail})` : `ok   ${name}`);
}

async function run(browser) {
  const context = await newContext(browser, DESKTOP);
  const page = await newPage(context);
  failurePage = page;
  let customerId = null;
  let customerPath = null;

  await step('a. /app leads to the sign-in page', async () => {
    await open(page, '/app');
    assertPath(page, '/app/sign-in', 'opening /app signed out');
    assert.equal(await page.locator('html').getAttribute('lang'), 'en');
    await expectVisible(page.getByLabel('API key'), 'the field "API key"');
    assert.equal(await page.getByLabel('API key').getAttribute('type'), 'password');
    await expectVisible(page.getByRole('button', { name: 'Sign in' }), 'the button "Sign in"');
    await shot(page, '01-sign-in.png');
  });

  await step('a. a wrong key is refused beside the field, and the field is emptied', async () => {
    const key = page.getByLabel('API key');
    await key.fill(WRONG_KEY);
    const response = await navigate(
      page,
      () => page.getByRole('button', { name: 'Sign in' }).click(),
      'signing in with a wrong key',
    );
    assert.equal(response.status(), 401, 'status of a sign-in with a wrong key');
    const error = page.locator('#key-error');
    await expectVisible(error, '#key-error');
    assert.match(await error.innerText(), /That API key is not valid\./);
    assert.equal(await page.getByLabel('API key').inputValue(), '', 'the key field is refilled');
    assert.ok(!(await page.content()).includes(WRONG_KEY), 'the wrong key is echoed in the page');
  });

  await step('a. the real key, submitted with Enter, signs in', async () => {
    const key = page.getByLabel('API key');
    await key.fill(API_KEY);
    await navigate(page, () => key.press('Enter'), 'signing in with Enter');
    assertPath(page, '/app/customers', 'after signing in');
    await expectVisible(page.locator('table'), 'the customer table');
    await shot(page, '02-list.png', false);
    const cookies = await context.cookies();
    for (const cookie of cookies) {
      assert.ok(!cookie.value.includes(API_KEY), `the cookie ${cookie.name} holds the API key`);
    }
    const session = cookies.find((c) => c.name === 'rekisteri_session');
    assert.ok(session, `no rekisteri_session cookie among ${cookies.map((c) => c.name)}`);
    assert.match(session.value, /^[0-9a-f]{64}$/, 'the session id');
    assert.equal(session.httpOnly, true, 'the session cookie is HttpOnly');
    assert.equal(session.sameSite, 'Strict', 'the session cookie is SameSite=Strict');
    assert.equal(session.path, '/app', 'the session cookie is for /app');
  });

  await step('b. an invalid email is refused and everything typed is kept', async () => {
    await navigate(page, () => page.getByRole('link', { name: 'New customer' }).click(), 'New customer');
    assertPath(page, '/app/customers/new', 'after "New customer"');
    await fillCustomer(page, {
      email: 'not-an-email',
      locale: 'fi_FI',
      firstname: FIRSTNAME,
      lastname: LASTNAME,
      company: LONG_COMPANY,
      companyId: '0112038-9',
      address: 'Mannerheimintie 1 A 5',
      city: 'Helsinki',
      postcode: '00100',
      country: 'FI',
    });
    const response = await navigate(page, () => form(page).save.click(), 'saving an invalid customer');
    assert.equal(response.status(), 422, 'status of an invalid create');
    await expectVisible(
      roleWithText(page, 'alert', 'Please correct the marked fields.'),
      'the alert "Please correct the marked fields."',
    );
    const error = page.locator('#email-error');
    await expectVisible(error, '#email-error');
    assert.match(await error.innerText(), /not a valid email/);
    const email = page.locator('#email');
    assert.equal(await email.getAttribute('aria-invalid'), 'true', 'aria-invalid of #email');
    assert.equal(await email.getAttribute('aria-describedby'), 'email-error', 'aria-describedby of #email');
    assert.equal(await email.inputValue(), 'not-an-email');
    assert.equal(await page.locator('#lastname').inputValue(), LASTNAME);
    assert.equal(await page.locator('#firstname').inputValue(), FIRSTNAME);
    assert.equal(await page.locator('#company').inputValue(), LONG_COMPANY);
    assert.equal(await page.locator('#company_id').inputValue(), '0112038-9');
    assert.equal(await page.locator('#city').inputValue(), 'Helsinki');
    assert.equal(await page.locator('#postcode').inputValue(), '00100');
    assert.equal(await page.locator('#country').inputValue(), 'FI');
    assert.equal(await page.locator('#customer_locale').inputValue(), 'fi_FI');
    // Only the bad field is marked.
    assert.equal(await page.locator('#lastname').getAttribute('aria-invalid'), null);
    assert.equal(await page.locator('.field-error').count(), 1, 'the number of field errors');
    await shot(page, '03-invalid-email.png');
  });

  await step('c. the corrected customer is saved', async () => {
    await form(page).email.fill('aapeli@example.fi');
    await navigate(page, () => form(page).save.click(), 'saving the corrected customer');
    assertPath(page, /^\/app\/customers\/\d+\?done=created$/, 'after a create');
    customerId = new URL(page.url()).pathname.split('/').pop();
    customerPath = `/app/customers/${customerId}`;
    await expectVisible(roleWithText(page, 'status', 'Customer saved.'), 'the status "Customer saved."');
    const details = page.locator('dl');
    await expectVisible(details, 'the customer details');
    const text = await details.innerText();
    for (const value of [LASTNAME, FIRSTNAME, 'aapeli@example.fi', LONG_COMPANY, 'Helsinki', '00100', 'FI']) {
      assert.ok(text.includes(value), `the details lack ${value}: ${text}`);
    }
    // The phone was left empty, so it is stored as null and shown as a dash.
    assert.ok(text.includes('—'), `no "—" for the empty phone: ${text}`);
    await shot(page, '04-created.png');
  });

  await step('d. the new customer is on page 2 of the list', async () => {
    await navigate(page, () => page.getByRole('link', { name: 'Back to the list' }).click(), 'Back to the list');
    assertPath(page, /^\/app\/customers(\?page=1)?$/, 'after "Back to the list"');
    assert.equal(await page.locator('table tr:has(td)').count(), 50, 'rows on page 1');
    assert.equal(await customerLink(page).count(), 0, 'the new customer is on page 1');
    const pages = page.getByRole('navigation', { name: 'Pages' });
    assert.match(await pages.innerText(), /Page 1/);
    assert.equal(await pages.getByRole('link', { name: 'Previous' }).count(), 0, 'page 1 has "Previous"');
    for (const [name, href] of [
      ['Import', '/app/import'],
      ['Export CSV', '/app/export?format=csv'],
      ['Export JSON Lines', '/app/export?format=jsonl'],
    ]) {
      assert.equal(await page.getByRole('link', { name, exact: true }).getAttribute('href'), href, name);
    }
    const next = pages.getByRole('link', { name: 'Next' });
    assert.match((await next.getAttribute('rel')) ?? '', /\bnext\b/, 'rel of "Next"');
    await navigate(page, () => next.click(), 'Next');
    assertPath(page, /^\/app\/customers\?(.*&)?page=2(&.*)?$/, 'after "Next"');
    assert.match(await pages.innerText(), /Page 2/);
    await expectVisible(customerLink(page), `the link "${FULL_NAME}"`);
    assert.equal(await customerLink(page).getAttribute('href'), customerPath);
    assert.equal(await page.locator('table tr:has(td)').count(), 11, 'rows on page 2');
    const previous = pages.getByRole('link', { name: 'Previous' });
    assert.match((await previous.getAttribute('rel')) ?? '', /\bprev\b/, 'rel of "Previous"');
    assert.equal(await pages.getByRole('link', { name: 'Next' }).count(), 0, 'the last page has "Next"');
    await shot(page, '05-page-2.png');
  });

  await step('d. a search finds the new customer', async () => {
    await page.getByLabel('Search', { exact: true }).fill('virtanen');
    await navigate(page, () => page.getByRole('button', { name: 'Search' }).click(), 'Search');
    assertPath(page, /^\/app\/customers\?(.*&)?q=virtanen(&.*)?$/, 'after searching');
    await expectVisible(customerLink(page), `the link "${FULL_NAME}" among the results`);
    assert.equal(await page.locator('table tr:has(td)').count(), 1, 'rows found');
    assert.equal(await page.getByLabel('Search', { exact: true }).inputValue(), 'virtanen', 'the search box keeps q');
  });

  await step('e. the customer is edited', async () => {
    await navigate(page, () => customerLink(page).click(), FULL_NAME);
    assertPath(page, customerPath, `after "${FULL_NAME}"`);
    await navigate(page, () => page.getByRole('link', { name: 'Edit', exact: true }).click(), 'Edit');
    assertPath(page, `${customerPath}/edit`, 'after "Edit"');
    assert.equal(await page.locator('#lastname').inputValue(), LASTNAME, 'the edit form is filled in');
    assert.equal(await page.locator('#email').inputValue(), 'aapeli@example.fi');
    assert.equal(await page.locator('input[type=hidden][name=version]').count(), 1, 'the hidden version');
    await form(page).city.fill('Tampere');
    await navigate(page, () => form(page).save.click(), 'saving the edit');
    assertPath(page, `${customerPath}?done=updated`, 'after an edit');
    await expectVisible(roleWithText(page, 'status', 'Customer saved.'), 'the status "Customer saved."');
    assert.match(await page.locator('dl').innerText(), /Tampere/);
    await shot(page, '06-edited.png');
  });

  await step('f. an edit without its CSRF token is refused with 403', async () => {
    await navigate(page, () => page.getByRole('link', { name: 'Edit', exact: true }).click(), 'Edit');
    assertPath(page, `${customerPath}/edit`, 'after "Edit"');
    const removed = await page.evaluate(() => {
      const input = document.querySelector('form[action$="/edit"] input[name="csrf"]');
      input?.remove();
      return Boolean(input);
    });
    assert.ok(removed, 'the edit form has no hidden csrf input');
    await form(page).city.fill('Turku');
    const response = await navigate(page, () => form(page).save.click(), 'saving without CSRF');
    assert.equal(response.status(), 403, 'status of a POST without its csrf');
    assert.equal(response.request().method(), 'POST');
    assert.match(await bodyText(page), /This form has expired or did not come from this site\./);
    await open(page, customerPath);
    const details = await page.locator('dl').innerText();
    assert.match(details, /Tampere/, 'the stored city');
    assert.doesNotMatch(details, /Turku/, 'the refused edit was stored');
  });

  await step('g. the customer is deleted after a confirmation', async () => {
    await navigate(page, () => page.getByRole('link', { name: 'Delete', exact: true }).click(), 'Delete');
    assertPath(page, `${customerPath}/delete`, 'after "Delete"');
    assert.match(await bodyText(page), new RegExp(escapeRegExp(`Delete ${FULL_NAME}?`)));
    await expectVisible(page.getByRole('link', { name: 'Cancel' }), 'the link "Cancel"');
    await shot(page, '07-confirm-delete.png');
    await navigate(
      page,
      () => page.getByRole('button', { name: 'Delete customer' }).click(),
      'Delete customer',
    );
    assertPath(page, '/app/customers?done=deleted', 'after "Delete customer"');
    await expectVisible(roleWithText(page, 'status', 'Customer deleted.'), 'the status "Customer deleted."');
    const response = await open(page, customerPath);
    assert.equal(response.status(), 404, 'status of a deleted customer');
    assert.match(await bodyText(page), /No such customer\./);
  });

  await step('g. a file is imported whole or not at all, and the list is exported', async () => {
    const importLink = () => page.getByRole('link', { name: 'Import', exact: true });
    const importButton = () => page.getByRole('button', { name: 'Import', exact: true });
    const fileInput = () => page.getByLabel('File (CSV or JSON Lines)');
    const backToList = () => page.getByRole('link', { name: 'Back to the list' });

    await open(page, '/app/customers');
    await navigate(page, () => importLink().click(), 'Import');
    assertPath(page, '/app/import', 'after "Import"');
    await fileInput().setInputFiles(importFile('broken'));
    let response = await navigate(page, () => importButton().click(), 'importing a file with a bad email');
    assert.equal(response.request().method(), 'POST', 'the import was no POST');
    assertPath(page, '/app/import', 'after a refused import');
    const refused = roleWithText(page, 'alert', 'Nothing was imported.');
    await expectVisible(refused, 'the alert "Nothing was imported."');
    const problems = await refused.locator('li').allInnerTexts();
    assert.equal(problems.length, 1, `the problems listed: ${JSON.stringify(problems)}`);
    assert.match(problems[0], /^Line 3: Email is not a valid email address$/, 'the problem listed');
    await shot(page, '12-import-refused.png');
    await navigate(page, () => backToList().click(), 'Back to the list');
    assert.equal(await searchRows(page, IMPORT_LASTNAME), 0, 'rows stored by a refused import');
    assert.match(await bodyText(page), /No customers match\./);

    await navigate(page, () => importLink().click(), 'Import');
    assertPath(page, '/app/import', 'after "Import"');
    await fileInput().setInputFiles(importFile(IMPORT_EMAILS[1]));
    response = await navigate(page, () => importButton().click(), 'importing the fixed file');
    assert.equal(response.status(), 200, 'status of an import');
    await expectVisible(roleWithText(page, 'status', 'Imported 3 customers.'), 'the status "Imported 3 customers."');
    await shot(page, '13-imported.png');
    await navigate(page, () => backToList().click(), 'Back to the list');
    assert.equal(await searchRows(page, IMPORT_LASTNAME), 3, 'rows found after the import');
    for (const firstname of ['Aino', 'Bertta', 'Cecilia']) {
      const name = `${IMPORT_LASTNAME} ${firstname}`;
      assert.equal(await page.getByRole('link', { name, exact: true }).count(), 1, `the link "${name}"`);
    }

    await open(page, '/app/customers');
    const expected = [...SEEDED_EMAILS, ...IMPORT_EMAILS];
    const csv = await downloadFrom(page, 'Export CSV');
    assert.match(csv.download.suggestedFilename(), /\.csv$/, 'the name of the CSV file');
    const csvLines = csv.text.split(/\r?\n/).filter((line) => line !== '');
    assert.ok(
      csvLines[0].startsWith('id,email,customer_locale,address.firstname'),
      `the CSV header: ${csvLines[0]}`,
    );
    assert.equal(csvLines.length, 1 + expected.length, 'lines of the CSV (the header and a row a customer)');
    for (const email of expected) {
      assert.ok(csv.text.includes(email), `the CSV lacks ${email}`);
    }
    assert.ok(!csv.text.includes('aapeli@example.fi'), 'the deleted customer is in the CSV');

    const jsonl = await downloadFrom(page, 'Export JSON Lines');
    assert.match(jsonl.download.suggestedFilename(), /\.jsonl$/, 'the name of the JSON Lines file');
    const records = jsonl.text
      .split('\n')
      .filter((line) => line.trim() !== '')
      .map((line, i) => {
        try {
          return JSON.parse(line);
        } catch (error) {
          throw new Error(`line ${i + 1} of the JSON Lines is no JSON: ${line.slice(0, 200)}`);
        }
      });
    for (const record of records) {
      const described = JSON.stringify(record).slice(0, 200);
      assert.ok(record.id !== undefined && record.id !== null, `a record without an id: ${described}`);
      assert.ok(
        typeof record.address === 'object' && record.address !== null && !Array.isArray(record.address),
        `a record without an address object: ${described}`,
      );
    }
    assert.deepEqual(
      records.map((record) => record.email).sort(),
      [...expected].sort(),
      'the emails in the JSON Lines',
    );
    return `${csvLines.length - 1} CSV rows, ${records.length} JSON lines`;
  });

  await step('h. focus is visible when tabbing from the top of the sign-in page', async () => {
    const fresh = await newContext(browser, DESKTOP);
    try {
      const signInPage = await newPage(fresh);
      await open(signInPage, '/app/sign-in');
      await signInPage.keyboard.press('Tab');
      const focus = await signInPage.evaluate(() => {
        const element = document.activeElement;
        const style = getComputedStyle(element);
        return {
          tag: element.tagName,
          text: (element.textContent || element.getAttribute('name') || '').trim().slice(0, 40),
          focusable: element !== document.body && element.tabIndex >= 0,
          outlineStyle: style.outlineStyle,
          outlineWidth: style.outlineWidth,
          boxShadow: style.boxShadow,
        };
      });
      const described = JSON.stringify(focus);
      assert.ok(focus.focusable, `Tab focused nothing focusable: ${described}`);
      const outline = focus.outlineStyle !== 'none' && focus.outlineWidth !== '0px';
      const shadow = focus.boxShadow !== 'none';
      assert.ok(outline || shadow, `the focused element shows no focus: ${described}`);
      return `focus on ${focus.tag} "${focus.text}", outline ${focus.outlineStyle} ${focus.outlineWidth}, box-shadow ${focus.boxShadow}`;
    } finally {
      await fresh.close();
    }
  });

  await step('h. on a phone the list and the form fit the screen', async () => {
    const phone = await newContext(browser, PHONE);
    try {
      const phonePage = await signIn(phone);
      failurePage = phonePage;
      await assertNoSideways(phonePage, 'the list on a phone');
      await shot(phonePage, '08-phone-list.png', false);
      await open(phonePage, '/app/customers/new');
      await fillCustomer(phonePage, {
        email: 'not-an-email',
        firstname: FIRSTNAME,
        lastname: LONG_LASTNAME,
        company: LONG_COMPANY,
        city: 'Pohjois-Pohjanmaan-Sairaanhoitopiiri',
        postcode: '90220',
        country: 'FI',
      });
      const response = await navigate(phonePage, () => form(phonePage).save.click(), 'saving on a phone');
      assert.equal(response.status(), 422, 'status of an invalid create on a phone');
      assert.equal(await phonePage.locator('#lastname').inputValue(), LONG_LASTNAME);
      await expectVisible(phonePage.locator('#email-error'), '#email-error on a phone');
      await assertNoSideways(phonePage, 'the refused form on a phone');
      await shot(phonePage, '09-phone-form.png');
      // Inside an input a long name is clipped anyway; as page text it is
      // what could push the page wider than the phone.
      await form(phonePage).email.fill('henkilosto@example.fi');
      await navigate(phonePage, () => form(phonePage).save.click(), 'saving the long name on a phone');
      assertPath(phonePage, /^\/app\/customers\/\d+\?done=created$/, 'after a create on a phone');
      await assertNoSideways(phonePage, 'a customer with a long name on a phone');
      const longPath = new URL(phonePage.url()).pathname;
      await open(phonePage, `${longPath}/delete`);
      await navigate(
        phonePage,
        () => phonePage.getByRole('button', { name: 'Delete customer' }).click(),
        'deleting the long name',
      );
      assertPath(phonePage, '/app/customers?done=deleted', 'after deleting on a phone');
    } finally {
      failurePage = page;
      await phone.close();
    }
  });

  await step('i. the language switches to Finnish and back', async () => {
    await open(page, '/app/customers');
    await navigate(page, () => page.getByRole('link', { name: 'Suomeksi' }).click(), 'Suomeksi');
    assertPath(page, '/app/customers', 'after "Suomeksi"');
    assert.equal(await page.locator('html').getAttribute('lang'), 'fi');
    await expectVisible(page.getByRole('button', { name: 'Kirjaudu ulos' }), 'the button "Kirjaudu ulos"');
    await expectVisible(page.getByLabel('Hae', { exact: true }), 'the field "Hae"');
    await shot(page, '10-finnish.png', false);
    await navigate(page, () => page.getByRole('link', { name: 'In English' }).click(), 'In English');
    assertPath(page, '/app/customers', 'after "In English"');
    assert.equal(await page.locator('html').getAttribute('lang'), 'en');
    await expectVisible(page.getByRole('button', { name: 'Sign out' }), 'the button "Sign out"');
  });

  await step('j. signing out ends the session on the server', async () => {
    const saved = await context.cookies();
    assert.ok(
      saved.some((c) => c.name === 'rekisteri_session'),
      'no session cookie to try again after signing out',
    );
    await navigate(page, () => page.getByRole('button', { name: 'Sign out' }).click(), 'Sign out');
    assertPath(page, '/app/sign-in?signed_out=1', 'after "Sign out"');
    await expectVisible(roleWithText(page, 'status', 'You have signed out.'), 'the status "You have signed out."');
    await shot(page, '11-signed-out.png');

    const replay = await newContext(browser, DESKTOP);
    try {
      await replay.addCookies(saved);
      const replayPage = await newPage(replay);
      failurePage = replayPage;
      await open(replayPage, '/app/customers');
      assertPath(replayPage, '/app/sign-in?expired=1', 'the old session cookie after signing out');
      await expectVisible(
        roleWithText(replayPage, 'status', 'Your session has ended. Sign in again.').or(
          replayPage.getByText('Your session has ended. Sign in again.'),
        ),
        'the notice "Your session has ended. Sign in again."',
      );
    } finally {
      failurePage = page;
      await replay.close();
    }
  });

  await context.close();
}

async function main() {
  assert.ok(BASE_URL, 'set BASE_URL');
  assert.ok(API_KEY, 'set API_KEY');
  mkdirSync(SHOTS_DIR, { recursive: true });
  console.log(`dashboard at ${BASE_URL}, Chromium ${CHROMIUM}, screenshots in ${SHOTS_DIR}`);

  const deadline = setTimeout(() => {
    console.log(`FAILED ${currentStep}: the run took longer than ${DEADLINE_MS / 1000} s`);
    process.exit(1);
  }, DEADLINE_MS);
  deadline.unref();

  let browser = null;
  try {
    currentStep = 'launching Chromium';
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: LAUNCH_ARGS,
      timeout: WAIT_MS,
    });
    await run(browser);
    console.log('all steps passed');
  } catch (error) {
    process.exitCode = 1;
    console.log(`FAILED ${currentStep}`);
    console.log(redact(error?.stack ?? String(error)));
    await describeFailure();
  } finally {
    if (browser) await browser.close().catch(() => {});
    clearTimeout(deadline);
  }
}

/** Output of a failed run is kept in logs, where a key does not belong. */
function redact(text) {
  return API_KEY ? text.split(API_KEY).join('<API key>') : text;
}

/** Where the browser was when a step failed, to read in the test's output. */
async function describeFailure() {
  const page = failurePage;
  if (!page || page.isClosed()) return;
  try {
    const response = documents.get(page);
    console.log(`at ${page.url()} (status ${response?.status() ?? 'unknown'})`);
    const text = await page.locator('body').innerText({ timeout: 2_000 });
    console.log(`the page says:\n${redact(text.slice(0, 2_000))}`);
    await page.screenshot({ path: path.join(SHOTS_DIR, 'failure.png'), fullPage: true, timeout: 5_000 });
    console.log(`screenshot: ${path.join(SHOTS_DIR, 'failure.png')}`);
  } catch (error) {
    console.log(`(could not describe the page: ${error.message.split('\n')[0]})`);
  }
}

await main();
