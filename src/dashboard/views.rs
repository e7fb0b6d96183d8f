//! The pages, as compiled templates. maud escapes every value it renders,
//! so customer data shows exactly as stored and can never become markup.

use jiff::tz::TimeZone;
use maud::{DOCTYPE, Markup, html};

use super::Ctx;
use super::bulk::Outcome;
use super::customers::{FIELDS, FormState, Kind, display_name};
use crate::domain::customer::Customer;
use crate::domain::time::render;
use crate::store::CustomerPage;

/// Every page: the header with the language switch and, when signed in,
/// the sign-out button, then the page's own content.
fn layout(ctx: &Ctx, title: &str, content: Markup) -> Markup {
    let t = ctx.lang;
    let switch = |code: &str| {
        serde_urlencoded::to_string([("set", code), ("back", ctx.here.as_str())])
            .map(|q| format!("/app/language?{q}"))
            .unwrap_or_else(|_| "/app".to_owned())
    };
    html! {
        (DOCTYPE)
        html lang=(t.code()) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " – Rekisteri" }
                link rel="stylesheet" href="/app/static/app.css";
            }
            body {
                a.skip href="#main" { (t.pick("Siirry sisältöön", "Skip to content")) }
                header.top {
                    a.brand href="/app" { "Rekisteri" }
                    nav.languages aria-label=(t.pick("Kieli", "Language")) {
                        a href=(switch("fi")) lang="fi" hreflang="fi"
                            aria-current=[(t.code() == "fi").then_some("true")] { "Suomeksi" }
                        a href=(switch("en")) lang="en" hreflang="en"
                            aria-current=[(t.code() == "en").then_some("true")] { "In English" }
                    }
                    @if let Some(csrf) = &ctx.csrf {
                        form.sign-out method="post" action="/app/sign-out" {
                            input type="hidden" name="csrf" value=(csrf);
                            button.secondary type="submit" { (t.pick("Kirjaudu ulos", "Sign out")) }
                        }
                    }
                }
                main #main tabindex="-1" {
                    (content)
                }
            }
        }
    }
}

/// A page's title with the outcome of what led to it first: a screen
/// reader reads the title when a page loads, where a status message on it
/// may go unannounced.
fn titled(status: Option<&str>, title: &str) -> String {
    match status {
        Some(status) => format!("{status} {title}"),
        None => title.to_owned(),
    }
}

/// A status message, read out by screen readers when the page loads.
fn notice(text: Option<&str>) -> Markup {
    html! {
        @if let Some(text) = text {
            p.notice.success role="status" { (text) }
        }
    }
}

/// A page that only says something: an error, a refusal.
pub fn message_page(ctx: &Ctx, title: &str, body: &str) -> Markup {
    let t = ctx.lang;
    layout(
        ctx,
        title,
        html! {
            h1 { (title) }
            p.notice.error role="alert" { (body) }
            p { a href="/app/customers" { (t.pick("Asiakasluetteloon", "To the customer list")) } }
        },
    )
}

pub fn sign_in(ctx: &Ctx, token: &str, status: Option<&str>, error: Option<&str>) -> Markup {
    let t = ctx.lang;
    layout(
        ctx,
        t.pick("Kirjaudu sisään", "Sign in"),
        html! {
            div.narrow {
                h1 { (t.pick("Kirjaudu sisään", "Sign in")) }
                (notice(status))
                p {
                    (t.pick(
                        "Kirjaudu tilisi API-avaimella. Avain ei tallennu selaimeen: istunto päättyy, kun kirjaudut ulos, kun et käytä sitä hetkeen, tai kun avain perutaan.",
                        "Sign in with your account's API key. The key is not kept in the browser: the session ends when you sign out, after a while of not using it, or when the key is revoked.",
                    ))
                }
                form method="post" action="/app/sign-in" {
                    input type="hidden" name="csrf" value=(token);
                    div.field {
                        label for="key" { (t.pick("API-avain", "API key")) }
                        input #key type="password" name="key" autocomplete="off" spellcheck="false"
                            autofocus[error.is_some()]
                            autocapitalize="off" required
                            aria-invalid=[error.map(|_| "true")]
                            aria-describedby=[error.map(|_| "key-error")];
                        @if let Some(error) = error {
                            p.field-error #key-error role="alert" { (error) }
                        }
                    }
                    button type="submit" { (t.pick("Kirjaudu sisään", "Sign in")) }
                }
            }
        },
    )
}

pub fn list(ctx: &Ctx, found: &CustomerPage, number: u64, q: &str, status: Option<&str>) -> Markup {
    let t = ctx.lang;
    let link = |page: u64| {
        let mut pairs = vec![("page", page.to_string())];
        if !q.is_empty() {
            pairs.insert(0, ("q", q.to_owned()));
        }
        serde_urlencoded::to_string(pairs)
            .map(|query| format!("/app/customers?{query}"))
            .unwrap_or_else(|_| "/app/customers".to_owned())
    };
    let title = t.pick("Asiakkaat", "Customers");
    let headings = [
        t.pick("Nimi", "Name"),
        t.pick("Yritys", "Company"),
        t.pick("Sähköposti", "Email"),
        t.pick("Postitoimipaikka", "City"),
    ];
    layout(
        ctx,
        &titled(status, title),
        html! {
            div.heading {
                h1 { (title) }
                a.button href="/app/customers/new" { (t.pick("Uusi asiakas", "New customer")) }
            }
            (notice(status))
            form.search method="get" action="/app/customers" role="search" {
                label for="q" { (t.pick("Hae", "Search")) }
                div.inline {
                    input #q type="search" name="q" value=(q)
                        aria-describedby="q-hint";
                    button type="submit" { (t.pick("Hae", "Search")) }
                }
                p.hint #q-hint {
                    (t.pick(
                        "Nimen, yrityksen, sähköpostin, puhelinnumeron tai osoitteen sanojen alkuja.",
                        "The beginnings of words of a name, company, email, phone number or address.",
                    ))
                }
            }
            @if found.customers.is_empty() {
                p.empty {
                    @if !q.is_empty() {
                        (t.pick("Hakua vastaavia asiakkaita ei ole.", "No customers match."))
                    } @else if number > 1 {
                        (t.pick("Tällä sivulla ei ole asiakkaita.", "There are no customers on this page."))
                        " " a href=(link(1)) { (t.pick("Ensimmäiselle sivulle", "To the first page")) }
                    } @else {
                        (t.pick("Asiakkaita ei vielä ole.", "No customers yet."))
                    }
                }
            } @else {
                // The roles keep the table a table for screen readers when a
                // phone's style sheet lays its rows out as blocks.
                table.customers role="table" {
                    caption.visually-hidden { (title) ", " (t.pick("sivu", "page")) " " (number) }
                    thead role="rowgroup" { tr role="row" { @for h in headings { th scope="col" role="columnheader" { (h) } } } }
                    tbody role="rowgroup" {
                        @for c in &found.customers {
                            tr role="row" {
                                th scope="row" role="rowheader" data-label=(headings[0]) {
                                    a href={ "/app/customers/" (c.id) } { (display_name(c)) }
                                }
                                td role="cell" data-label=(headings[1]) { (c.data.address.company.as_deref().unwrap_or("")) }
                                td role="cell" data-label=(headings[2]) { (c.data.email) }
                                td role="cell" data-label=(headings[3]) { (c.data.address.city) }
                            }
                        }
                    }
                }
            }
            nav.pages aria-label=(t.pick("Sivut", "Pages")) {
                @if number > 1 {
                    a rel="prev" href=(link(number - 1)) { "← " (t.pick("Edellinen", "Previous")) }
                }
                span { (t.pick("Sivu", "Page")) " " (number) }
                @if found.has_more {
                    a rel="next" href=(link(number + 1)) { (t.pick("Seuraava", "Next")) " →" }
                }
            }
            section.bulk aria-labelledby="bulk-heading" {
                h2 #bulk-heading { (t.pick("Tuonti ja vienti", "Import and export")) }
                ul.actions {
                    li { a href="/app/import" { (t.pick("Tuo", "Import")) } }
                    li { a href="/app/export?format=csv" download { (t.pick("Vie CSV", "Export CSV")) } }
                    li { a href="/app/export?format=jsonl" download { (t.pick("Vie JSON Lines", "Export JSON Lines")) } }
                }
            }
        },
    )
}

pub fn customer(ctx: &Ctx, c: &Customer, zone: &TimeZone, status: Option<&str>) -> Markup {
    let t = ctx.lang;
    let name = display_name(c);
    layout(
        ctx,
        &titled(status, &name),
        html! {
            p.back { a href="/app/customers" { "← " (t.pick("Takaisin luetteloon", "Back to the list")) } }
            h1 { (name) }
            (notice(status))
            dl.details {
                @for f in &FIELDS {
                    dt { (f.label(t)) }
                    dd {
                        @match (f.kind, f.stored(c)) {
                            (Kind::Locale, Some(v)) => (locale_name(t, &v)),
                            (_, Some(v)) if v.is_empty() => span.empty-value { (t.pick("(tyhjä)", "(empty)")) },
                            (_, Some(v)) => (v),
                            (_, None) => {
                                span.none aria-hidden="true" { "—" }
                                span.visually-hidden { (t.pick("ei annettu", "not given")) }
                            },
                        }
                    }
                }
                dt { (t.pick("Tunniste", "Id")) }
                dd { (c.id) }
                dt { (t.pick("Luotu", "Created")) }
                dd { (when(t, c.created_at, zone)) }
                dt { (t.pick("Muutettu", "Updated")) }
                dd { (when(t, c.updated_at, zone)) }
            }
            ul.actions {
                li { a.button href={ "/app/customers/" (c.id) "/edit" } { (t.pick("Muokkaa", "Edit")) } }
                li { a.button.danger href={ "/app/customers/" (c.id) "/delete" } { (t.pick("Poista", "Delete")) } }
            }
        },
    )
}

/// An instant as a person reads it, in the display zone, inside a `<time>`
/// that carries the API's exact form.
fn when(lang: super::text::Lang, millis: i64, zone: &TimeZone) -> Markup {
    let exact = render(millis, zone);
    let shown = jiff::Timestamp::from_millisecond(millis)
        .map(|instant| {
            let local = instant.to_zoned_datetime(zone.clone());
            let format = lang.pick("%-d.%-m.%Y klo %H.%M.%S", "%-d %b %Y, %H:%M:%S");
            local.strftime(format).to_string()
        })
        .unwrap_or_else(|_| exact.clone());
    html! { time datetime=(exact) { (shown) } }
}

fn locale_name(lang: super::text::Lang, code: &str) -> &'static str {
    match code {
        "en_US" => lang.pick("englanti", "English"),
        _ => lang.pick("suomi", "Finnish"),
    }
}

/// What differs between the create and the edit form.
pub struct FormPage<'a> {
    form: &'a FormState,
    /// The customer being edited, with the version and the values the form
    /// starts from, which it sends back so that the server can tell what the
    /// person changed from what someone else changed meanwhile.
    editing: Option<(&'a Customer, i64, &'a FormState)>,
    alert: Option<&'a str>,
    /// After a conflict: the fields both changed, with each one's values.
    clashes: &'a [String],
}

impl<'a> FormPage<'a> {
    pub fn create(form: &'a FormState) -> FormPage<'a> {
        FormPage {
            form,
            editing: None,
            alert: None,
            clashes: &[],
        }
    }

    pub fn edit(
        form: &'a FormState,
        c: &'a Customer,
        version: i64,
        was: &'a FormState,
    ) -> FormPage<'a> {
        FormPage {
            form,
            editing: Some((c, version, was)),
            alert: None,
            clashes: &[],
        }
    }

    pub fn with_alert(self, alert: &'a str, clashes: &'a [String]) -> FormPage<'a> {
        FormPage {
            alert: Some(alert),
            clashes,
            ..self
        }
    }
}

pub fn customer_form(ctx: &Ctx, p: &FormPage<'_>) -> Markup {
    let t = ctx.lang;
    let (title, action, cancel) = match p.editing {
        Some((c, _, _)) => (
            format!("{}: {}", t.pick("Muokkaa", "Edit"), display_name(c)),
            format!("/app/customers/{}/edit", c.id),
            format!("/app/customers/{}", c.id),
        ),
        None => (
            t.pick("Uusi asiakas", "New customer").to_owned(),
            "/app/customers".to_owned(),
            "/app/customers".to_owned(),
        ),
    };
    let errors = &p.form.errors;
    // Without a script, autofocus is how a refused form puts the keyboard,
    // and a screen reader's attention, on the first field to fix.
    let first_invalid = FIELDS
        .iter()
        .find(|f| errors.contains_key(f.name))
        .map(|f| f.name);
    layout(
        ctx,
        &title,
        html! {
            h1 { (title) }
            @if let Some(alert) = p.alert {
                div.notice.error role="alert" {
                    p { (alert) }
                    @if !p.clashes.is_empty() {
                        ul { @for line in p.clashes { li { (line) } } }
                    }
                }
            }
            @if !errors.is_empty() {
                div.notice.error role="alert" {
                    p { (t.pick("Korjaa merkityt kentät.", "Please correct the marked fields.")) }
                    ul {
                        @for f in FIELDS.iter().filter(|f| errors.contains_key(f.name)) {
                            li { a href={ "#" (f.name) } { (errors[f.name]) } }
                        }
                    }
                }
            }
            form.customer method="post" action=(action) novalidate {
                @if let Some(csrf) = &ctx.csrf {
                    input type="hidden" name="csrf" value=(csrf);
                }
                @if let Some((_, version, was)) = p.editing {
                    input type="hidden" name="version" value=(version);
                    @for f in &FIELDS {
                        input type="hidden" name={ "was." (f.name) } value=(was.value(f.name));
                    }
                }
                p.hint {
                    (t.pick(
                        "Pakolliset kentät on merkitty. Jos pakollista tietoa ei tiedetä, kirjoita ”-”.",
                        "Required fields are marked. If a required value is not known, enter “-”.",
                    ))
                }
                div.grid {
                    @for f in &FIELDS {
                        @let error = errors.get(f.name);
                        @let error_id = format!("{}-error", f.name);
                        @let value = p.form.value(f.name);
                        div.field.invalid[error.is_some()] {
                            label for=(f.name) {
                                (f.label(t))
                                @if f.required {
                                    " " span.required { (t.pick("(pakollinen)", "(required)")) }
                                }
                            }
                            @if f.kind == Kind::Locale {
                                select id=(f.name) name=(f.name)
                                    autofocus[first_invalid == Some(f.name)]
                                    aria-invalid=[error.map(|_| "true")]
                                    aria-describedby=[error.map(|_| error_id.as_str())] {
                                    option value="fi_FI" selected[value != "en_US"] { (locale_name(t, "fi_FI")) }
                                    option value="en_US" selected[value == "en_US"] { (locale_name(t, "en_US")) }
                                }
                            } @else {
                                input id=(f.name) name=(f.name) value=(value)
                                    type=(match f.kind { Kind::Email => "email", Kind::Tel => "tel", _ => "text" })
                                    autocomplete=(f.autocomplete)
                                    aria-required=[f.required.then_some("true")]
                                    autofocus[first_invalid == Some(f.name)]
                                    aria-invalid=[error.map(|_| "true")]
                                    aria-describedby=[error.map(|_| error_id.as_str())];
                            }
                            @if let Some(error) = error {
                                p.field-error id=(error_id) { (error) }
                            }
                        }
                    }
                }
                div.buttons {
                    button type="submit" { (t.pick("Tallenna", "Save")) }
                    a.cancel href=(cancel) { (t.pick("Peruuta", "Cancel")) }
                }
            }
        },
    )
}

pub fn confirm_delete(ctx: &Ctx, c: &Customer) -> Markup {
    let t = ctx.lang;
    let name = display_name(c);
    let question = format!("{} {name}?", t.pick("Poistetaanko", "Delete"));
    layout(
        ctx,
        &question,
        html! {
            div.narrow {
                h1 { (question) }
                p {
                    (t.pick(
                        "Asiakkaan kaikki tiedot poistetaan pysyvästi. Tätä ei voi perua.",
                        "All of the customer's data is removed for good. This cannot be undone.",
                    ))
                }
                p { (c.data.email) ", " (c.data.address.city) }
                form method="post" action={ "/app/customers/" (c.id) "/delete" } {
                    @if let Some(csrf) = &ctx.csrf {
                        input type="hidden" name="csrf" value=(csrf);
                    }
                    div.buttons {
                        button.danger type="submit" { (t.pick("Poista asiakas", "Delete customer")) }
                        a.cancel href={ "/app/customers/" (c.id) } { (t.pick("Peruuta", "Cancel")) }
                    }
                }
            }
        },
    )
}

pub fn import(ctx: &Ctx, outcome: Option<&Outcome>) -> Markup {
    let t = ctx.lang;
    let title = t.pick("Tuo asiakkaita", "Import customers");
    layout(
        ctx,
        title,
        html! {
            p.back { a href="/app/customers" { "← " (t.pick("Takaisin luetteloon", "Back to the list")) } }
            h1 { (title) }
            @match outcome {
                Some(Outcome::Imported(n)) => p.notice.success role="status" {
                    (t.pick("Tuotiin", "Imported")) " " (n) " "
                    @if *n == 1 { (t.pick("asiakas.", "customer.")) } @else { (t.pick("asiakasta.", "customers.")) }
                },
                Some(Outcome::Refused { problems, more }) => div.notice.error role="alert" {
                    p { (t.pick("Mitään ei tuotu. Korjaa tiedosto ja yritä uudelleen:", "Nothing was imported. Fix the file and try again:")) }
                    ul { @for p in problems { li { (p) } } }
                    @if *more > 0 {
                        p {
                            "… " (more) " "
                            @if *more == 1 { (t.pick("muu ongelma", "more problem")) } @else { (t.pick("muuta ongelmaa", "more problems")) }
                        }
                    }
                },
                Some(Outcome::Failed(why)) => div.notice.error role="alert" {
                    p { (t.pick("Mitään ei tuotu.", "Nothing was imported.")) " " (why) }
                },
                None => {},
            }
            p {
                (t.pick(
                    "Tiedosto tuodaan kokonaan tai ei lainkaan: jos yksikin rivi on virheellinen, mitään ei tallenneta. Sarakkeet ovat samat kuin viennissä.",
                    "A file is imported whole or not at all: if any row is invalid, nothing is stored. The columns are those of an export.",
                ))
            }
            form method="post" action="/app/import" enctype="multipart/form-data" {
                @if let Some(csrf) = &ctx.csrf {
                    input type="hidden" name="csrf" value=(csrf);
                }
                div.field {
                    label for="file" { (t.pick("Tiedosto (CSV tai JSON Lines)", "File (CSV or JSON Lines)")) }
                    input #file type="file" name="file" accept=".csv,.jsonl,.ndjson,.json,text/csv";
                }
                button type="submit" { (t.pick("Tuo", "Import")) }
            }
        },
    )
}
