//! The dashboard under `/app`, driven over real HTTP the way a browser
//! drives it, with cookies kept by hand so that their attributes can be
//! read. It proves, on every store, that
//!
//! - signing in sets a random, HttpOnly, SameSite=Strict session cookie
//!   scoped to `/app` that lives as long as the configured lifetime, is
//!   Secure only behind a trusted HTTPS proxy, and is never the key;
//! - a wrong, unknown or revoked key, or a sign-in without its CSRF pair,
//!   signs nobody in;
//! - a session ends when idle too long, when too old even in use, when its
//!   key is revoked (and only then: another key's session lives on), and on
//!   sign-out, after which its cookie is worth nothing;
//! - every form that changes something refuses a missing or wrong CSRF
//!   token and a foreign `Origin`, and then the API shows nothing changed;
//! - the customer form validates like the API, keeps what was typed, saves
//!   exactly that, edits only what differs, and refuses a stale edit;
//! - another account's customer is the 404 page on every page and form;
//! - no page or header ever contains the API key;
//! - the language follows `Accept-Language` unless the cookie says
//!   otherwise, and the switch never sends anyone outside `/app`;
//! - `/app` pages carry the security headers.

use std::time::{Duration, Instant};

use rekisteri::domain::api_key::ApiKey;
use rekisteri::domain::time::now_millis;
use rekisteri::http::Settings;
use reqwest::header::HeaderMap;
use reqwest::{Client, Method, RequestBuilder};
use serde_json::{Value, json};

use crate::support::{Backend, TestApp};

/// Runs each named `async fn(TestApp)` on every store, each on a server
/// started with the settings beside its name, as tests named
/// `sqlite::NAME` and `postgres::NAME`.
macro_rules! on_every_store_with {
    ($($name:ident: $settings:expr),* $(,)?) => {
        mod sqlite {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let app = TestApp::start_with(Backend::Sqlite, $settings)
                        .await
                        .expect("SQLite is always available");
                    super::$name(app).await;
                }
            )*
        }
        mod postgres {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    match TestApp::start_with(Backend::Postgres, $settings).await {
                        Some(app) => super::$name(app).await,
                        None => crate::support::postgres::skipped(stringify!($name)),
                    }
                }
            )*
        }
    };
}

on_every_store_with!(
    signing_in_sets_a_random_strict_session_cookie_that_is_not_the_key: Settings::default(),
    the_session_cookie_lives_as_long_as_the_configured_lifetime: sessions(HOUR, TWO_HOURS_AND_A_BIT),
    the_session_cookie_is_secure_only_behind_a_trusted_https_proxy: Settings {
        trust_forwarded_proto: true,
        ..Settings::default()
    },
    a_forwarded_proto_is_ignored_unless_trusted: Settings::default(),
    a_wrong_unknown_or_revoked_key_signs_nobody_in: Settings::default(),
    signing_in_without_the_signin_csrf_pair_is_forbidden: Settings::default(),
    a_request_without_a_live_session_goes_to_sign_in: Settings::default(),
    an_idle_session_ends: sessions(Duration::from_secs(2), HOUR),
    a_session_in_use_stays_alive_past_the_idle_limit: sessions(Duration::from_secs(3), HOUR),
    a_session_ends_at_its_lifetime_even_while_in_use: sessions(HOUR, Duration::from_secs(3)),
    revoking_a_key_ends_its_sessions_at_once_and_only_theirs: Settings::default(),
    signing_out_ends_the_session_on_the_server: Settings::default(),
    signing_out_without_the_csrf_is_forbidden_and_keeps_the_session: Settings::default(),
    every_changing_form_refuses_a_missing_or_wrong_csrf: Settings::default(),
    a_post_from_a_foreign_origin_is_forbidden_even_with_the_right_token: Settings::default(),
    the_new_customer_form_validates_like_the_api_and_saves_what_was_typed: Settings::default(),
    editing_changes_only_the_fields_that_differ: Settings::default(),
    an_edit_from_a_stale_form_keeps_the_other_change_to_another_field: Settings::default(),
    an_edit_from_a_stale_form_is_a_conflict_where_both_changed_a_field: Settings::default(),
    errors_from_outside_the_pages_are_pages_too: Settings::default(),
    another_accounts_customer_is_the_404_page_on_every_page_and_form: Settings::default(),
    no_page_or_header_ever_contains_the_api_key: Settings::default(),
    the_language_follows_accept_language_and_the_cookie_wins: Settings::default(),
    the_language_switch_sets_the_cookie_and_goes_back_only_within_app: Settings::default(),
    app_pages_carry_the_security_headers: Settings::default(),
    expired_sessions_are_purged_and_live_ones_kept: Settings::default(),
);

const SESSION: &str = "rekisteri_session";
const SIGNIN: &str = "rekisteri_signin";
const LANG: &str = "rekisteri_lang";

const HOUR: Duration = Duration::from_secs(60 * 60);
/// A lifetime no default would happen to equal.
const TWO_HOURS_AND_A_BIT: Duration = Duration::from_secs(2 * 60 * 60 + 7);

const FORBIDDEN: &str = "This form has expired or did not come from this site.";
const NOT_VALID: &str = "That API key is not valid.";
const NO_SUCH_CUSTOMER: &str = "No such customer.";

/// A file of two valid customers, as the CLI's export writes them.
const IMPORT_CSV: &str = "email,customer_locale,address.firstname,address.lastname,\
address.city,address.postcode,address.country\n\
tuonti1@example.com,fi_FI,Tuomas,Tuonti,Helsinki,00100,FI\n\
tuonti2@example.com,en_US,Tiina,Tuonti,Espoo,02100,FI\n";

/// The same with a bad email on line 3: nothing of it may be imported.
const BAD_IMPORT_CSV: &str = "email,customer_locale,address.firstname,address.lastname,\
address.city,address.postcode,address.country\n\
tuonti3@example.com,fi_FI,Tuomas,Tuonti,Helsinki,00100,FI\n\
not-an-email,en_US,Tiina,Tuonti,Espoo,02100,FI\n";

fn sessions(idle: Duration, lifetime: Duration) -> Settings {
    Settings {
        session_idle: idle,
        session_lifetime: lifetime,
        ..Settings::default()
    }
}

// ---------------------------------------------------------------------------
// A browser with a cookie jar of its own.

/// One answer, read whole.
struct Page {
    status: u16,
    headers: HeaderMap,
    body: String,
    base: String,
}

impl Page {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn set_cookies(&self) -> Vec<SetCookie> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .map(|v| SetCookie::parse(v.to_str().expect("a Set-Cookie header is ASCII")))
            .collect()
    }

    fn set_cookie(&self, name: &str) -> Option<SetCookie> {
        self.set_cookies().into_iter().find(|c| c.name == name)
    }

    /// `Location`, relative to the server even when sent absolute.
    fn location(&self) -> Option<&str> {
        let location = self.header("location")?;
        Some(location.strip_prefix(&self.base).unwrap_or(location))
    }

    #[track_caller]
    fn assert_redirect(&self, to: &str, what: &str) {
        assert_eq!(
            (self.status, self.location()),
            (303, Some(to)),
            "{what}: {}",
            self.excerpt()
        );
    }

    #[track_caller]
    fn assert_status(&self, status: u16, what: &str) {
        assert_eq!(self.status, status, "{what}: {}", self.excerpt());
    }

    #[track_caller]
    fn assert_says(&self, text: &str, what: &str) {
        assert!(
            self.text().contains(text),
            "{what}: the page should say {text:?}: {}",
            self.excerpt()
        );
    }

    fn excerpt(&self) -> String {
        let end = self
            .body
            .char_indices()
            .nth(3000)
            .map_or(self.body.len(), |(i, _)| i);
        format!(
            "status {}, Location {:?}, body {}",
            self.status,
            self.header("location"),
            &self.body[..end]
        )
    }

    /// The text a reader sees: tags dropped, entities decoded, white space
    /// collapsed.
    fn text(&self) -> String {
        visible_text(&self.body)
    }

    fn tags(&self) -> Vec<Tag> {
        tags(&self.body)
    }

    /// The value of the first hidden `csrf` input.
    #[track_caller]
    fn csrf(&self) -> String {
        self.tags()
            .into_iter()
            .find(|t| t.name == "input" && t.get("name") == Some("csrf"))
            .and_then(|t| t.get("value").map(str::to_owned))
            .unwrap_or_else(|| panic!("no csrf input on the page: {}", self.excerpt()))
    }

    fn by_id(&self, id: &str) -> Option<Tag> {
        self.tags().into_iter().find(|t| t.get("id") == Some(id))
    }

    fn input(&self, name: &str) -> Option<Tag> {
        self.tags()
            .into_iter()
            .find(|t| t.name == "input" && t.get("name") == Some(name))
    }

    fn lang(&self) -> Option<String> {
        self.tags()
            .into_iter()
            .find(|t| t.name == "html")
            .and_then(|t| t.get("lang").map(str::to_owned))
    }
}

/// A `Set-Cookie` header, its attribute names lower-cased.
#[derive(Debug)]
struct SetCookie {
    name: String,
    value: String,
    attributes: Vec<(String, String)>,
    raw: String,
}

impl SetCookie {
    fn parse(header: &str) -> SetCookie {
        let mut parts = header.split(';').map(str::trim);
        let (name, value) = parts
            .next()
            .and_then(|p| p.split_once('='))
            .unwrap_or_else(|| panic!("a Set-Cookie without name=value: {header}"));
        let attributes = parts
            .filter(|p| !p.is_empty())
            .map(|p| match p.split_once('=') {
                Some((n, v)) => (n.trim().to_ascii_lowercase(), v.trim().to_owned()),
                None => (p.to_ascii_lowercase(), String::new()),
            })
            .collect();
        SetCookie {
            name: name.trim().to_owned(),
            value: value.trim().to_owned(),
            attributes,
            raw: header.to_owned(),
        }
    }

    fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn has(&self, name: &str) -> bool {
        self.attribute(name).is_some()
    }

    /// Whether a browser would drop the cookie on reading this.
    fn removes(&self) -> bool {
        self.value.is_empty()
            || self
                .attribute("max-age")
                .and_then(|v| v.parse::<i64>().ok())
                .is_some_and(|age| age <= 0)
    }

    #[track_caller]
    fn assert_strict_to_app(&self) {
        assert!(self.has("httponly"), "HttpOnly: {}", self.raw);
        assert!(
            self.attribute("samesite")
                .is_some_and(|v| v.eq_ignore_ascii_case("strict")),
            "SameSite=Strict: {}",
            self.raw
        );
        assert_eq!(self.attribute("path"), Some("/app"), "{}", self.raw);
    }
}

struct Browser {
    client: Client,
    base: String,
    /// Name and value, as a browser would send them back.
    cookies: Vec<(String, String)>,
}

impl Browser {
    fn new(app: &TestApp) -> Browser {
        Browser {
            client: Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: app.base.clone(),
            cookies: Vec::new(),
        }
    }

    /// A browser signed in with `key`, past the redirect to the list.
    async fn signed_in(app: &TestApp, key: &str) -> Browser {
        let mut browser = Browser::new(app);
        browser
            .sign_in(key)
            .await
            .assert_redirect("/app/customers", "signing in");
        assert!(browser.cookie(SESSION).is_some(), "a session cookie is set");
        browser
    }

    fn cookie(&self, name: &str) -> Option<String> {
        self.cookies
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    }

    fn set_cookie(&mut self, name: &str, value: &str) {
        self.cookies.retain(|(n, _)| n != name);
        self.cookies.push((name.to_owned(), value.to_owned()));
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let request = self
            .client
            .request(method, format!("{}{}", self.base, path));
        if self.cookies.is_empty() {
            return request;
        }
        let cookies: Vec<String> = self
            .cookies
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect();
        request.header("Cookie", cookies.join("; "))
    }

    fn form_request<T: serde::Serialize + ?Sized>(&self, path: &str, fields: &T) -> RequestBuilder {
        self.request(Method::POST, path)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(serde_urlencoded::to_string(fields).unwrap())
    }

    /// The import form as a browser sends it: `csrf`, then the file.
    fn import_request(&self, csrf: Option<&str>, content: &str) -> RequestBuilder {
        const BOUNDARY: &str = "----rekisteri-test-7f3a9c2e51";
        let mut body = String::new();
        if let Some(csrf) = csrf {
            body.push_str(&format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n{csrf}\r\n"
            ));
        }
        body.push_str(&format!(
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; \
             filename=\"customers.csv\"\r\nContent-Type: text/csv\r\n\r\n{content}\r\n\
             --{BOUNDARY}--\r\n"
        ));
        self.request(Method::POST, "/app/import")
            .header(
                "Content-Type",
                format!("multipart/form-data; boundary={BOUNDARY}"),
            )
            .body(body)
    }

    async fn send(&mut self, request: RequestBuilder) -> Page {
        let response = request.send().await.unwrap();
        let page = Page {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            body: response.text().await.unwrap(),
            base: self.base.clone(),
        };
        for cookie in page.set_cookies() {
            self.cookies.retain(|(n, _)| *n != cookie.name);
            if !cookie.removes() {
                self.cookies.push((cookie.name, cookie.value));
            }
        }
        page
    }

    async fn get(&mut self, path: &str) -> Page {
        let request = self.request(Method::GET, path);
        self.send(request).await
    }

    async fn post_form<T: serde::Serialize + ?Sized>(&mut self, path: &str, fields: &T) -> Page {
        let request = self.form_request(path, fields);
        self.send(request).await
    }

    async fn import(&mut self, csrf: Option<&str>, content: &str) -> Page {
        let request = self.import_request(csrf, content);
        self.send(request).await
    }

    /// Fetches the sign-in form and sends it with `key`.
    async fn sign_in(&mut self, key: &str) -> Page {
        let form = self.get("/app/sign-in").await;
        form.assert_status(200, "the sign-in page");
        let csrf = form.csrf();
        self.post_form("/app/sign-in", &[("key", key), ("csrf", csrf.as_str())])
            .await
    }

    /// The session's CSRF token, from a signed-in page.
    async fn csrf(&mut self) -> String {
        let page = self.get("/app/customers").await;
        page.assert_status(200, "the list, signed in");
        page.csrf()
    }

    /// The form of `path`'s page whose action is `action`, as a browser
    /// would send it unchanged.
    async fn form(&mut self, path: &str, action: &str) -> Vec<(String, String)> {
        let page = self.get(path).await;
        page.assert_status(200, path);
        form_fields(&page.body, action)
    }
}

// ---------------------------------------------------------------------------
// Just enough HTML: tags, attributes and text, double or single quotes or
// none, in any order.

#[derive(Debug, Clone)]
struct Tag {
    name: String,
    attributes: Vec<(String, Option<String>)>,
    start: usize,
    end: usize,
}

impl Tag {
    /// An attribute's value; a bare attribute reads as "".
    fn get(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_deref().unwrap_or(""))
    }

    fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
}

fn tags(html: &str) -> Vec<Tag> {
    let bytes = html.as_bytes();
    let len = bytes.len();
    let skip_space = |mut j: usize| {
        while j < len && bytes[j].is_ascii_whitespace() {
            j += 1;
        }
        j
    };
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(offset) = html[i..].find('<') {
        let start = i + offset;
        let mut j = start + 1;
        while j < len && bytes[j].is_ascii_alphanumeric() {
            j += 1;
        }
        if j == start + 1 {
            i = start + 1;
            continue;
        }
        let name = html[start + 1..j].to_ascii_lowercase();
        let mut attributes = Vec::new();
        loop {
            while j < len && (bytes[j].is_ascii_whitespace() || bytes[j] == b'/') {
                j += 1;
            }
            if j >= len || bytes[j] == b'>' {
                break;
            }
            let name_start = j;
            while j < len
                && !bytes[j].is_ascii_whitespace()
                && !matches!(bytes[j], b'=' | b'>' | b'/')
            {
                j += 1;
            }
            if j == name_start {
                j += 1;
                continue;
            }
            let attribute = html[name_start..j].to_ascii_lowercase();
            let k = skip_space(j);
            if k < len && bytes[k] == b'=' {
                let k = skip_space(k + 1);
                let value = if k < len && (bytes[k] == b'"' || bytes[k] == b'\'') {
                    let quote = bytes[k] as char;
                    let value_end = html[k + 1..].find(quote).map_or(len, |e| k + 1 + e);
                    j = (value_end + 1).min(len);
                    &html[k + 1..value_end]
                } else {
                    let mut e = k;
                    while e < len && !bytes[e].is_ascii_whitespace() && bytes[e] != b'>' {
                        e += 1;
                    }
                    j = e;
                    &html[k..e]
                };
                attributes.push((attribute, Some(decode(value))));
            } else {
                attributes.push((attribute, None));
            }
        }
        let end = (j + 1).min(len);
        out.push(Tag {
            name,
            attributes,
            start,
            end,
        });
        i = end;
    }
    out
}

/// HTML's character references, named (the few a renderer escapes with)
/// and numeric.
fn decode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let Some(semi) = rest.find(';').filter(|&e| e <= 10) else {
            out.push('&');
            rest = &rest[1..];
            continue;
        };
        let entity = &rest[1..semi];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            "nbsp" => Some('\u{a0}'),
            _ => entity
                .strip_prefix("#x")
                .or_else(|| entity.strip_prefix("#X"))
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .or_else(|| entity.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &rest[semi + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn strip_tags(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                out.push(' ');
            }
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    out
}

fn visible_text(html: &str) -> String {
    decode(&strip_tags(html))
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// The text inside `tag`, up to its closing tag.
fn inner_text(html: &str, tag: &Tag) -> String {
    let rest = &html[tag.end..];
    let close = format!("</{}", tag.name);
    visible_text(&rest[..rest.find(&close).unwrap_or(rest.len())])
}

/// The fields of the form whose action is `action`, as a browser would
/// submit them untouched: named inputs (but not buttons or files), each
/// select's chosen option, and textareas.
#[track_caller]
fn form_fields(html: &str, action: &str) -> Vec<(String, String)> {
    let all = tags(html);
    let form = all
        .iter()
        .find(|t| t.name == "form" && t.get("action") == Some(action))
        .unwrap_or_else(|| panic!("no form with action {action}: {html}"));
    let stop = html[form.end..]
        .find("</form")
        .map_or(html.len(), |e| form.end + e);
    let inside = |t: &&Tag| t.start >= form.end && t.start < stop;
    let mut fields = Vec::new();
    for tag in all.iter().filter(inside) {
        let Some(name) = tag.get("name") else {
            continue;
        };
        match tag.name.as_str() {
            "input" => {
                let kind = tag.get("type").unwrap_or("text").to_ascii_lowercase();
                if matches!(
                    kind.as_str(),
                    "submit" | "button" | "reset" | "image" | "file"
                ) || (matches!(kind.as_str(), "checkbox" | "radio") && !tag.has("checked"))
                {
                    continue;
                }
                fields.push((name.to_owned(), tag.get("value").unwrap_or("").to_owned()));
            }
            "select" => {
                let select_end = html[tag.end..]
                    .find("</select")
                    .map_or(html.len(), |e| tag.end + e);
                let options: Vec<&Tag> = all
                    .iter()
                    .filter(|t| t.name == "option" && t.start > tag.start && t.start < select_end)
                    .collect();
                let chosen = options
                    .iter()
                    .find(|o| o.has("selected"))
                    .or(options.first())
                    .unwrap_or_else(|| panic!("the select {name} has no options"));
                let value = chosen
                    .get("value")
                    .map_or_else(|| inner_text(html, chosen), str::to_owned);
                fields.push((name.to_owned(), value));
            }
            "textarea" => {
                let rest = &html[tag.end..];
                let content = &rest[..rest.find("</textarea").unwrap_or(rest.len())];
                fields.push((name.to_owned(), decode(content)));
            }
            _ => {}
        }
    }
    fields
}

#[track_caller]
fn fill(fields: &mut [(String, String)], name: &str, value: &str) {
    let i = fields
        .iter()
        .position(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("the form has no field {name}: {fields:?}"));
    fields[i].1 = value.to_owned();
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// `fields` with its `csrf` replaced by `csrf`, or without one.
fn with_csrf(fields: &[(String, String)], csrf: Option<&str>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = fields
        .iter()
        .filter(|(n, _)| n != "csrf")
        .cloned()
        .collect();
    if let Some(csrf) = csrf {
        out.push(("csrf".to_owned(), csrf.to_owned()));
    }
    out
}

/// A filled-in new customer form, as the browser would send it.
fn new_customer_fields(email: &str, csrf: &str) -> Vec<(String, String)> {
    [
        ("email", email),
        ("customer_locale", "fi_FI"),
        ("firstname", "Uuno"),
        ("lastname", "Uusi"),
        ("company", ""),
        ("company_id", ""),
        ("address", ""),
        ("city", "Helsinki"),
        ("postcode", "00100"),
        ("phone", ""),
        ("country", "FI"),
        ("csrf", csrf),
    ]
    .into_iter()
    .map(|(n, v)| (n.to_owned(), v.to_owned()))
    .collect()
}

// ---------------------------------------------------------------------------
// The API's side of the story.

/// A customer with every field set, the company stored as "" (the API
/// keeps an optional field sent empty as "").
fn full_customer() -> Value {
    json!({
        "email": "liisa.virtanen@example.com",
        "customer_locale": "fi_FI",
        "address": {
            "firstname": "Liisa",
            "lastname": "Virtanen",
            "company": "",
            "company_id": "1234567-1",
            "address": "Kauppakatu 2",
            "city": "Turku",
            "postcode": "20100",
            "phone": "0401234567",
            "country": "FI"
        }
    })
}

async fn api_customer(app: &TestApp, id: i64) -> Value {
    let response = app.get(&format!("/api/v1/customers/{id}")).await;
    assert_eq!(response.status(), 200, "the API has customer {id}");
    response.json().await.unwrap()
}

async fn api_list_as(app: &TestApp, key: &str) -> Value {
    let response = app
        .request_as(key, Method::GET, "/api/v1/customers")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

fn id_of(customer: &Value) -> i64 {
    customer["id"].as_i64().expect("an id")
}

/// The id in `/app/customers/{id}?done=...`.
#[track_caller]
fn id_in(location: Option<&str>, done: &str) -> i64 {
    location
        .and_then(|l| l.strip_prefix("/app/customers/"))
        .and_then(|l| l.strip_suffix(&format!("?done={done}")))
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("a redirect to /app/customers/{{id}}?done={done}: {location:?}"))
}

async fn revoke(app: &TestApp, key: &str) {
    let info = app
        .store
        .find_key(ApiKey::parse(key).unwrap().digest())
        .await
        .unwrap()
        .expect("the key is stored");
    let revoked = app.store.revoke_key(info.id, now_millis()).await.unwrap();
    assert!(revoked.is_some(), "the key was revoked");
}

/// `s` with its last character changed: a typo.
fn typo_of(s: &str) -> String {
    let mut out = s[..s.len() - 1].to_owned();
    out.push(if s.ends_with('0') { '1' } else { '0' });
    out
}

async fn sleep_secs(seconds: f64) {
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
}

// ---------------------------------------------------------------------------
// Sign-in and the session cookie.

/// Signs in on a fresh browser and checks the session cookie; returns it.
async fn assert_session_cookie(app: &TestApp) -> SetCookie {
    let mut browser = Browser::new(app);
    let form = browser.get("/app/sign-in").await;
    form.assert_status(200, "the sign-in page");
    let signin = form
        .set_cookie(SIGNIN)
        .expect("the sign-in page sets its CSRF cookie");
    signin.assert_strict_to_app();
    assert_eq!(signin.value, form.csrf(), "the hidden csrf is the cookie's");

    let csrf = form.csrf();
    let answer = browser
        .post_form(
            "/app/sign-in",
            &[("key", app.key.as_str()), ("csrf", csrf.as_str())],
        )
        .await;
    answer.assert_redirect("/app/customers", "signing in");
    let session = answer.set_cookie(SESSION).expect("a session cookie");
    assert_eq!(session.value.len(), 64, "{}", session.raw);
    assert!(
        session.value.bytes().all(|b| b.is_ascii_hexdigit()),
        "{}",
        session.raw
    );
    // The key without its dash could still hide in 64 hex digits.
    let secret = app.key.split_once('-').unwrap().1;
    assert!(
        !session.value.to_ascii_lowercase().contains(secret),
        "the session id must not carry the key's secret: {}",
        session.raw
    );
    session.assert_strict_to_app();
    assert_eq!(
        session.attribute("max-age"),
        Some(app.settings.session_lifetime.as_secs().to_string().as_str()),
        "Max-Age is the absolute lifetime: {}",
        session.raw
    );
    session
}

async fn signing_in_sets_a_random_strict_session_cookie_that_is_not_the_key(app: TestApp) {
    let session = assert_session_cookie(&app).await;
    assert!(
        !session.has("secure"),
        "plain HTTP must not get a Secure cookie, or no browser would send it back: {}",
        session.raw
    );

    let mut browser = Browser::new(&app);
    browser.set_cookie(SESSION, &session.value);
    browser
        .get("/app")
        .await
        .assert_redirect("/app/customers", "/app, signed in");
    browser
        .get("/app/customers")
        .await
        .assert_status(200, "the list, signed in");

    let again = assert_session_cookie(&app).await;
    assert_ne!(
        again.value, session.value,
        "each sign-in gets a session of its own"
    );
}

async fn the_session_cookie_lives_as_long_as_the_configured_lifetime(app: TestApp) {
    let session = assert_session_cookie(&app).await;
    assert_eq!(
        session.attribute("max-age"),
        Some(TWO_HOURS_AND_A_BIT.as_secs().to_string().as_str())
    );
}

/// Signs in with every request carrying `proto` as a proxy would.
async fn session_cookie_via(app: &TestApp, proto: Option<&str>) -> SetCookie {
    let mut browser = Browser::new(app);
    let with_proto = |request: RequestBuilder| match proto {
        Some(proto) => request.header("X-Forwarded-Proto", proto),
        None => request,
    };
    let request = with_proto(browser.request(Method::GET, "/app/sign-in"));
    let form = browser.send(request).await;
    form.assert_status(200, "the sign-in page");
    let csrf = form.csrf();
    let request = with_proto(browser.form_request(
        "/app/sign-in",
        &[("key", app.key.as_str()), ("csrf", csrf.as_str())],
    ));
    let answer = browser.send(request).await;
    answer.assert_redirect("/app/customers", "signing in");
    answer.set_cookie(SESSION).expect("a session cookie")
}

async fn the_session_cookie_is_secure_only_behind_a_trusted_https_proxy(app: TestApp) {
    for (proto, secure) in [(Some("https"), true), (Some("http"), false), (None, false)] {
        let session = session_cookie_via(&app, proto).await;
        assert_eq!(
            session.has("secure"),
            secure,
            "X-Forwarded-Proto {proto:?}: {}",
            session.raw
        );
    }
}

async fn a_forwarded_proto_is_ignored_unless_trusted(app: TestApp) {
    // Anyone can send the header; only a proxy the operator trusts may
    // decide that the browser speaks HTTPS.
    let session = session_cookie_via(&app, Some("https")).await;
    assert!(!session.has("secure"), "{}", session.raw);
}

async fn a_wrong_unknown_or_revoked_key_signs_nobody_in(app: TestApp) {
    let revoked = app.key_for("test").await;
    revoke(&app, &revoked).await;
    let attempts = [
        ("a typo of the key", typo_of(&app.key)),
        (
            "a key of nobody's",
            "0badc0de-0123456789abcdef0123456789abcdef".to_owned(),
        ),
        ("not a key at all", "hunter2".to_owned()),
        ("a revoked key", revoked),
    ];
    for (what, key) in attempts {
        let mut browser = Browser::new(&app);
        let page = browser.sign_in(&key).await;
        page.assert_status(401, what);
        page.assert_says(NOT_VALID, what);
        let error = page
            .by_id("key-error")
            .unwrap_or_else(|| panic!("{what}: no key-error: {}", page.excerpt()));
        assert!(
            inner_text(&page.body, &error).contains(NOT_VALID),
            "{what}: the message is beside the key field"
        );
        assert!(
            page.set_cookie(SESSION).is_none_or(|c| c.removes()),
            "{what}: no session cookie"
        );
        assert!(browser.cookie(SESSION).is_none(), "{what}");
        let key_input = page.input("key").expect("the form again");
        assert_eq!(key_input.get("value").unwrap_or(""), "", "{what}");
    }
}

async fn signing_in_without_the_signin_csrf_pair_is_forbidden(app: TestApp) {
    let key = app.key.as_str();
    let mut with_cookie = Browser::new(&app);
    let form = with_cookie.get("/app/sign-in").await;
    let token = form.csrf();
    assert!(with_cookie.cookie(SIGNIN).is_some());

    let wrong = typo_of(&token);
    // What is sent beside the right key: the cookie or not, the field or not.
    let cases = [
        ("neither cookie nor field", false, None),
        ("the cookie without the field", true, None),
        ("the field without the cookie", false, Some(token.as_str())),
        (
            "a field that is not the cookie's",
            true,
            Some(wrong.as_str()),
        ),
    ];
    for (what, cookie, csrf) in cases {
        let mut browser = Browser::new(&app);
        if cookie {
            browser.set_cookie(SIGNIN, &token);
        }
        let mut fields = vec![("key", key)];
        fields.extend(csrf.map(|csrf| ("csrf", csrf)));
        let page = browser.post_form("/app/sign-in", &fields).await;
        page.assert_status(403, what);
        page.assert_says(FORBIDDEN, what);
        assert!(
            page.set_cookie(SESSION).is_none_or(|c| c.removes()),
            "{what}: the right key alone signs nobody in"
        );
        assert!(browser.cookie(SESSION).is_none(), "{what}");
    }

    // The pair itself works, so the refusals above were the pair's doing.
    with_cookie
        .post_form("/app/sign-in", &[("key", key), ("csrf", token.as_str())])
        .await
        .assert_redirect("/app/customers", "with the pair");
}

// ---------------------------------------------------------------------------
// Sessions ending.

async fn a_request_without_a_live_session_goes_to_sign_in(app: TestApp) {
    let mut browser = Browser::new(&app);
    browser
        .get("/app")
        .await
        .assert_redirect("/app/sign-in", "/app without a cookie");
    browser
        .get("/app/customers")
        .await
        .assert_redirect("/app/sign-in", "the list without a cookie");
    browser.set_cookie(SESSION, &"ab".repeat(32));
    browser
        .get("/app/customers")
        .await
        .assert_redirect("/app/sign-in?expired=1", "an unknown session");
    browser.set_cookie(SESSION, &app.key);
    browser
        .get("/app/customers")
        .await
        .assert_redirect("/app/sign-in?expired=1", "the key is not a session");
}

/// Asserts that `session` has ended, for reading and for writing, and that
/// the write changed nothing.
async fn assert_ended(app: &TestApp, api_key: &str, session: &str, csrf: &str, what: &str) {
    let before = api_list_as(app, api_key).await;
    let mut browser = Browser::new(app);
    browser.set_cookie(SESSION, session);
    browser
        .get("/app/customers")
        .await
        .assert_redirect("/app/sign-in?expired=1", what);
    // A browser that was sent a clearing cookie may still hold the old one
    // in another tab.
    browser.set_cookie(SESSION, session);
    browser
        .post_form(
            "/app/customers",
            &new_customer_fields("late@example.com", csrf),
        )
        .await
        .assert_redirect("/app/sign-in?expired=1", what);
    assert_eq!(
        api_list_as(app, api_key).await,
        before,
        "{what}: nothing changed"
    );
}

async fn an_idle_session_ends(app: TestApp) {
    let mut browser = Browser::signed_in(&app, &app.key).await;
    let csrf = browser.csrf().await;
    let session = browser.cookie(SESSION).unwrap();
    sleep_secs(3.0).await;
    assert_ended(&app, &app.key, &session, &csrf, "idle 3 s with idle = 2 s").await;
}

async fn a_session_in_use_stays_alive_past_the_idle_limit(app: TestApp) {
    let mut browser = Browser::signed_in(&app, &app.key).await;
    let started = Instant::now();
    for second in 1..=5 {
        sleep_secs(1.0).await;
        browser
            .get("/app/customers")
            .await
            .assert_status(200, &format!("after {second} s of use, idle = 3 s"));
    }
    assert!(started.elapsed() > app.settings.session_idle);
}

async fn a_session_ends_at_its_lifetime_even_while_in_use(app: TestApp) {
    let started = Instant::now();
    let mut browser = Browser::signed_in(&app, &app.key).await;
    let csrf = browser.csrf().await;
    let session = browser.cookie(SESSION).unwrap();
    sleep_secs(1.0).await;
    browser
        .get("/app/customers")
        .await
        .assert_status(200, "a second into a 3 s lifetime");
    // Use that keeps the idle clock fresh; near the limit either answer is
    // right, so only the one well past it is judged.
    for _ in 0..2 {
        sleep_secs(1.0).await;
        browser.get("/app/customers").await;
    }
    let past = Duration::from_secs_f64(4.2).saturating_sub(started.elapsed());
    tokio::time::sleep(past).await;
    assert_ended(&app, &app.key, &session, &csrf, "4 s into a 3 s lifetime").await;
}

async fn revoking_a_key_ends_its_sessions_at_once_and_only_theirs(app: TestApp) {
    let second = app.key_for("test").await;
    let mut revoked = Browser::signed_in(&app, &app.key).await;
    let revoked_csrf = revoked.csrf().await;
    let revoked_session = revoked.cookie(SESSION).unwrap();
    let mut kept = Browser::signed_in(&app, &second).await;
    let kept_csrf = kept.csrf().await;

    revoke(&app, &app.key).await;

    assert_ended(
        &app,
        &second,
        &revoked_session,
        &revoked_csrf,
        "a session of a revoked key",
    )
    .await;
    kept.get("/app/customers")
        .await
        .assert_status(200, "a session of another key of the account");
    let created = kept
        .post_form(
            "/app/customers",
            &new_customer_fields("kept@example.com", &kept_csrf),
        )
        .await;
    id_in(created.location(), "created");
    let listed = api_list_as(&app, &second).await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 1);
}

async fn signing_out_ends_the_session_on_the_server(app: TestApp) {
    let mut browser = Browser::signed_in(&app, &app.key).await;
    let csrf = browser.csrf().await;
    let session = browser.cookie(SESSION).unwrap();

    let out = browser
        .post_form("/app/sign-out", &[("csrf", csrf.as_str())])
        .await;
    out.assert_redirect("/app/sign-in?signed_out=1", "signing out");
    let cleared = out
        .set_cookie(SESSION)
        .expect("signing out clears the cookie");
    assert!(cleared.removes(), "{}", cleared.raw);
    // A clearing cookie on another path would be another cookie, and the
    // browser would keep sending the old one.
    assert_eq!(cleared.attribute("path"), Some("/app"), "{}", cleared.raw);
    assert!(browser.cookie(SESSION).is_none());
    let page = browser.get("/app/sign-in?signed_out=1").await;
    page.assert_status(200, "the sign-in page after signing out");
    page.assert_says("You have signed out.", "after signing out");

    // The server forgot the session: the cookie copied before is no key.
    assert_ended(&app, &app.key, &session, &csrf, "a signed-out session").await;
}

async fn signing_out_without_the_csrf_is_forbidden_and_keeps_the_session(app: TestApp) {
    let mut browser = Browser::signed_in(&app, &app.key).await;
    let csrf = browser.csrf().await;
    let wrong = typo_of(&csrf);
    for (what, fields) in [
        ("no csrf", vec![]),
        ("a wrong csrf", vec![("csrf", wrong.as_str())]),
    ] {
        // Otherwise any site could sign the user out.
        let page = browser.post_form("/app/sign-out", &fields).await;
        page.assert_status(403, what);
        page.assert_says(FORBIDDEN, what);
        browser
            .get("/app/customers")
            .await
            .assert_status(200, &format!("{what}: the session still works"));
    }
}

// ---------------------------------------------------------------------------
// CSRF on the forms that change something.

/// A customer, a signed-in browser with its token, and every changing form
/// filled in and ready to send.
struct Forms {
    id: i64,
    browser: Browser,
    token: String,
    create: Vec<(String, String)>,
    edit: Vec<(String, String)>,
}

impl Forms {
    async fn new(app: &TestApp) -> Forms {
        let id = id_of(&app.create(&full_customer()).await);
        let mut browser = Browser::signed_in(app, &app.key).await;
        let token = browser.csrf().await;
        let mut create = browser.form("/app/customers/new", "/app/customers").await;
        for (name, value) in [
            ("email", "forged@example.com"),
            ("firstname", "Väärä"),
            ("lastname", "Lomake"),
            ("city", "Vantaa"),
            ("postcode", "01300"),
            ("country", "FI"),
        ] {
            fill(&mut create, name, value);
        }
        let edit_path = format!("/app/customers/{id}/edit");
        let mut edit = browser.form(&edit_path, &edit_path).await;
        fill(&mut edit, "city", "Tampere");
        Forms {
            id,
            browser,
            token,
            create,
            edit,
        }
    }

    /// Every changing form sent with `csrf` (or none).
    fn requests(&self, csrf: Option<&str>) -> Vec<(&'static str, RequestBuilder)> {
        let id = self.id;
        let b = &self.browser;
        vec![
            (
                "create",
                b.form_request("/app/customers", &with_csrf(&self.create, csrf)),
            ),
            (
                "edit",
                b.form_request(
                    &format!("/app/customers/{id}/edit"),
                    &with_csrf(&self.edit, csrf),
                ),
            ),
            (
                "delete",
                b.form_request(
                    &format!("/app/customers/{id}/delete"),
                    &with_csrf(&[], csrf),
                ),
            ),
            ("import", b.import_request(csrf, IMPORT_CSV)),
        ]
    }

    /// Sends each form with the right token, with `origin` if given, and
    /// asserts that each did its work.
    async fn assert_all_work(&mut self, app: &TestApp, origin: Option<&str>) {
        let requests = self.requests(Some(&self.token.clone()));
        for (what, request) in requests {
            let request = match origin {
                Some(origin) => request.header("Origin", origin),
                None => request,
            };
            let page = self.browser.send(request).await;
            match what {
                "create" => {
                    id_in(page.location(), "created");
                }
                "edit" => page.assert_redirect(
                    &format!("/app/customers/{}?done=updated", self.id),
                    "edit with the right token",
                ),
                "delete" => page
                    .assert_redirect("/app/customers?done=deleted", "delete with the right token"),
                _ => page.assert_says("Imported 2 customers.", "import with the right token"),
            }
        }
        let emails: Vec<Value> = app
            .list_all()
            .await
            .iter()
            .map(|c| c["email"].clone())
            .collect();
        assert_eq!(
            Value::Array(emails),
            json!([
                "forged@example.com",
                "tuonti2@example.com",
                "tuonti1@example.com"
            ]),
            "created and imported; the edited one deleted"
        );
    }
}

async fn every_changing_form_refuses_a_missing_or_wrong_csrf(app: TestApp) {
    let mut forms = Forms::new(&app).await;
    let another_sessions = Browser::signed_in(&app, &app.key).await.csrf().await;
    assert_ne!(
        another_sessions, forms.token,
        "each session has a token of its own"
    );
    let wrong = typo_of(&forms.token);
    let before = app.list_all().await;

    for (how, csrf) in [
        ("without a token", None),
        ("with a wrong token", Some(wrong.as_str())),
        (
            "with another session's token",
            Some(another_sessions.as_str()),
        ),
    ] {
        for (what, request) in forms.requests(csrf) {
            let page = forms.browser.send(request).await;
            page.assert_status(403, &format!("{what} {how}"));
            page.assert_says(FORBIDDEN, &format!("{what} {how}"));
            assert_eq!(app.list_all().await, before, "{what} {how} changed nothing");
        }
    }
    forms.assert_all_work(&app, None).await;
}

async fn a_post_from_a_foreign_origin_is_forbidden_even_with_the_right_token(app: TestApp) {
    let mut forms = Forms::new(&app).await;
    let before = app.list_all().await;
    for (what, request) in forms.requests(Some(&forms.token.clone())) {
        let page = forms
            .browser
            .send(request.header("Origin", "http://evil.example"))
            .await;
        page.assert_status(403, &format!("{what} from a foreign origin"));
        page.assert_says(FORBIDDEN, what);
        assert_eq!(app.list_all().await, before, "{what} changed nothing");
    }
    // Browsers send Origin on every form POST; the server's own must pass.
    let own = app.base.clone();
    forms.assert_all_work(&app, Some(&own)).await;
}

// ---------------------------------------------------------------------------
// The customer forms.

async fn the_new_customer_form_validates_like_the_api_and_saves_what_was_typed(app: TestApp) {
    let mut browser = Browser::signed_in(&app, &app.key).await;
    let mut fields = browser.form("/app/customers/new", "/app/customers").await;
    let typed = [
        ("email", "maija.makela(at)example.com"),
        ("customer_locale", "en_US"),
        ("firstname", "Maija"),
        ("lastname", "Mäkelä"),
        ("company", "Mäkelä & Poika \"MP\" <Oy>"),
        ("company_id", ""),
        ("address", "Testikatu 1"),
        ("city", ""),
        ("postcode", "00100"),
        ("phone", ""),
        ("country", "FI"),
    ];
    for (name, value) in typed {
        fill(&mut fields, name, value);
    }

    let page = browser.post_form("/app/customers", &fields).await;
    page.assert_status(422, "an invalid email and no city");
    page.assert_says("Please correct the marked fields.", "the summary");
    for name in ["email", "city"] {
        let error_id = format!("{name}-error");
        let error = page
            .by_id(&error_id)
            .unwrap_or_else(|| panic!("no {error_id}: {}", page.excerpt()));
        assert!(!inner_text(&page.body, &error).is_empty(), "{error_id}");
        let input = page.input(name).unwrap();
        assert_eq!(input.get("aria-invalid"), Some("true"), "{name}");
        assert_eq!(
            input.get("aria-describedby"),
            Some(error_id.as_str()),
            "{name}"
        );
    }
    let email_error = inner_text(&page.body, &page.by_id("email-error").unwrap());
    assert!(
        email_error.contains("Email is not a valid email address"),
        "the API's own sentence: {email_error}"
    );
    for (name, _) in typed.iter().filter(|(n, _)| !["email", "city"].contains(n)) {
        assert!(
            page.by_id(&format!("{name}-error")).is_none(),
            "{name} was valid"
        );
    }
    let again = form_fields(&page.body, "/app/customers");
    for (name, value) in typed {
        assert_eq!(field(&again, name), Some(value), "{name} as typed");
    }
    assert!(app.list_all().await.is_empty(), "nothing was created");

    // The user corrects the form the server sent back, and sends it.
    let mut corrected = again;
    fill(&mut corrected, "email", "maija.makela@example.com");
    fill(&mut corrected, "city", "Espoo");
    let saved = browser.post_form("/app/customers", &corrected).await;
    let id = id_in(saved.location(), "created");
    let customer = api_customer(&app, id).await;
    assert_eq!(customer["email"], "maija.makela@example.com");
    assert_eq!(customer["customer_locale"], "en_US");
    assert_eq!(
        customer["address"],
        json!({
            "firstname": "Maija",
            "lastname": "Mäkelä",
            "company": "Mäkelä & Poika \"MP\" <Oy>",
            "company_id": null,
            "address": "Testikatu 1",
            "city": "Espoo",
            "postcode": "00100",
            "phone": null,
            "country": "FI"
        }),
        "exactly what was typed, empty optional fields null"
    );
    assert_eq!(app.list_all().await.len(), 1, "created once");
    let shown = browser.get(saved.location().unwrap()).await;
    shown.assert_status(200, "the new customer's page");
    shown.assert_says("Customer saved.", "after creating");
}

fn without_updated_at(customer: &Value) -> Value {
    let mut customer = customer.clone();
    customer.as_object_mut().unwrap().remove("updated_at");
    customer
}

async fn editing_changes_only_the_fields_that_differ(app: TestApp) {
    let stored = app.create(&full_customer()).await;
    let id = id_of(&stored);
    let edit_path = format!("/app/customers/{id}/edit");
    let mut browser = Browser::signed_in(&app, &app.key).await;

    // Sent back as shown, the form differs from nothing: the company the
    // API stored as "" stays "" (not null), and updated_at stays.
    let unchanged = browser.form(&edit_path, &edit_path).await;
    assert!(field(&unchanged, "version").is_some(), "a hidden version");
    browser
        .post_form(&edit_path, &unchanged)
        .await
        .assert_redirect(
            &format!("/app/customers/{id}?done=updated"),
            "saving unchanged",
        );
    assert_eq!(
        api_customer(&app, id).await,
        stored,
        "an unchanged form changes nothing"
    );

    let mut fields = browser.form(&edit_path, &edit_path).await;
    fill(&mut fields, "city", "Tampere");
    fill(&mut fields, "phone", "");
    let saved = browser.post_form(&edit_path, &fields).await;
    saved.assert_redirect(&format!("/app/customers/{id}?done=updated"), "saving");
    let mut expected = stored.clone();
    expected["address"]["city"] = json!("Tampere");
    expected["address"]["phone"] = Value::Null;
    let after = api_customer(&app, id).await;
    assert_eq!(
        without_updated_at(&after),
        without_updated_at(&expected),
        "only the city and the emptied phone changed"
    );
    assert_eq!(after["address"]["company"], "", "untouched, so not nulled");
    let shown = browser.get(saved.location().unwrap()).await;
    shown.assert_says("Customer saved.", "after editing");
}

async fn an_edit_from_a_stale_form_keeps_the_other_change_to_another_field(app: TestApp) {
    let id = id_of(&app.create(&full_customer()).await);
    let edit_path = format!("/app/customers/{id}/edit");
    let mut browser = Browser::signed_in(&app, &app.key).await;
    let mut fields = browser.form(&edit_path, &edit_path).await;

    let meanwhile = app
        .put_json(
            &format!("/api/v1/customers/{id}"),
            &json!({"address": {"city": "Oulu"}}),
        )
        .await;
    assert_eq!(meanwhile.status(), 200);

    // The form still says the old city; only the phone was changed in it.
    fill(&mut fields, "phone", "0509999999");
    let page = browser.post_form(&edit_path, &fields).await;
    id_in(page.location(), "updated");
    let stored = api_customer(&app, id).await;
    assert_eq!(stored["address"]["city"], "Oulu", "the other change stands");
    assert_eq!(stored["address"]["phone"], "0509999999", "and so does ours");
}

async fn an_edit_from_a_stale_form_is_a_conflict_where_both_changed_a_field(app: TestApp) {
    let id = id_of(&app.create(&full_customer()).await);
    let edit_path = format!("/app/customers/{id}/edit");
    let mut browser = Browser::signed_in(&app, &app.key).await;
    let mut fields = browser.form(&edit_path, &edit_path).await;

    let meanwhile = app
        .put_json(
            &format!("/api/v1/customers/{id}"),
            &json!({"address": {"city": "Oulu"}}),
        )
        .await;
    assert_eq!(meanwhile.status(), 200);
    let current: Value = meanwhile.json().await.unwrap();

    fill(&mut fields, "city", "Tampere");
    fill(&mut fields, "phone", "0509999999");
    let page = browser.post_form(&edit_path, &fields).await;
    page.assert_status(409, "both changed the city");
    let alert = page
        .tags()
        .into_iter()
        .find(|t| t.get("role") == Some("alert"))
        .unwrap_or_else(|| panic!("a role=alert: {}", page.excerpt()));
    let said = inner_text(&page.body, &alert);
    assert!(
        said.contains("Someone else changed this customer meanwhile."),
        "{}",
        page.excerpt()
    );
    assert!(said.contains("Tampere") && said.contains("Oulu"), "{said}");
    assert!(
        !said.contains("0509999999"),
        "the phone did not clash: {said}"
    );
    assert_eq!(
        api_customer(&app, id).await,
        current,
        "nothing of the edit was stored"
    );
    // The form shows what is stored now, so that saving it again cannot
    // quietly undo the other change.
    let shown = form_fields(&page.body, &edit_path);
    assert_eq!(field(&shown, "city"), Some("Oulu"));
    let again = browser.post_form(&edit_path, &shown).await;
    id_in(again.location(), "updated");
    assert_eq!(api_customer(&app, id).await["address"]["city"], "Oulu");
}

/// Errors that layers outside the dashboard answer still reach a person as
/// a page of the dashboard, in their language, with the page's headers.
async fn errors_from_outside_the_pages_are_pages_too(app: TestApp) {
    let mut browser = Browser::signed_in(&app, &app.key).await;
    for (method, path, status) in [
        (Method::PUT, "/app/customers", 405),
        (Method::GET, "/app/customers?q=a&q=b", 400),
        (Method::GET, "/app/language?set=fi&set=en", 400),
    ] {
        let request = browser.request(method, path);
        let page = browser.send(request).await;
        page.assert_status(status, path);
        let content_type = page.headers.get("content-type").unwrap().to_str().unwrap();
        assert!(
            content_type.starts_with("text/html"),
            "{path}: {content_type}"
        );
        assert!(page.body.contains("<html lang=\"en\""), "{path}");
        assert_security_headers(&page, path);
    }
}

// ---------------------------------------------------------------------------
// Tenancy.

async fn another_accounts_customer_is_the_404_page_on_every_page_and_form(app: TestApp) {
    let theirs = app.create(&full_customer()).await;
    let id = id_of(&theirs);
    let view = format!("/app/customers/{id}");
    let edit = format!("/app/customers/{id}/edit");
    let delete = format!("/app/customers/{id}/delete");

    // The owner's own edit form: what the intruder sends would otherwise be
    // accepted, version and all.
    let mut owner = Browser::signed_in(&app, &app.key).await;
    owner
        .get(&view)
        .await
        .assert_status(200, "the owner's view");
    let owner_fields = owner.form(&edit, &edit).await;

    let other = app.key_for("other").await;
    let mut intruder = Browser::signed_in(&app, &other).await;
    let token = intruder.csrf().await;
    for path in [&view, &edit, &delete] {
        let page = intruder.get(path).await;
        page.assert_status(404, path);
        page.assert_says(NO_SUCH_CUSTOMER, path);
    }
    let mut fields = with_csrf(&owner_fields, Some(&token));
    fill(&mut fields, "city", "Tampere");
    let page = intruder.post_form(&edit, &fields).await;
    page.assert_status(404, "POST edit");
    page.assert_says(NO_SUCH_CUSTOMER, "POST edit");
    let page = intruder
        .post_form(&delete, &[("csrf", token.as_str())])
        .await;
    page.assert_status(404, "POST delete");
    page.assert_says(NO_SUCH_CUSTOMER, "POST delete");

    assert_eq!(api_customer(&app, id).await, theirs, "untouched");
}

// ---------------------------------------------------------------------------
// The key never shows.

struct LeakCheck {
    /// Lower-cased strings no answer may contain.
    secrets: Vec<String>,
    pages: usize,
}

impl LeakCheck {
    #[track_caller]
    fn check(&mut self, page: &Page, what: &str) {
        let body = page.body.to_ascii_lowercase();
        for secret in &self.secrets {
            assert!(!body.contains(secret), "{what}: the body holds the key");
            for (name, value) in &page.headers {
                let value = String::from_utf8_lossy(value.as_bytes()).to_ascii_lowercase();
                assert!(
                    !value.contains(secret),
                    "{what}: the {name} header holds the key"
                );
            }
        }
        self.pages += 1;
    }
}

async fn no_page_or_header_ever_contains_the_api_key(app: TestApp) {
    let key = app.key.clone();
    let typo = typo_of(&key);
    let shouted_typo = typo.to_ascii_uppercase();
    let mut leaks = LeakCheck {
        secrets: vec![
            key.clone(),
            key.split_once('-').unwrap().1.to_owned(),
            typo.clone(),
        ],
        pages: 0,
    };
    let mut browser = Browser::new(&app);

    let mut page = browser.get("/app/sign-in").await;
    page.assert_status(200, "the sign-in page");
    leaks.check(&page, "the sign-in page");
    // The API reads a key in upper case as the same key, so the shouted
    // attempt carries the typo too, to fail.
    for attempt in [&typo, &shouted_typo] {
        let csrf = page.csrf();
        page = browser
            .post_form(
                "/app/sign-in",
                &[("key", attempt.as_str()), ("csrf", csrf.as_str())],
            )
            .await;
        page.assert_status(401, "a mistyped key");
        leaks.check(&page, "a failed sign-in");
    }
    let page = browser.get("/app/sign-in").await;
    leaks.check(&page, "the sign-in page after a failure");
    let csrf = page.csrf();
    let page = browser
        .post_form(
            "/app/sign-in",
            &[("key", key.as_str()), ("csrf", csrf.as_str())],
        )
        .await;
    page.assert_redirect("/app/customers", "signing in");
    leaks.check(&page, "signing in");

    let page = browser.get("/app").await;
    leaks.check(&page, "/app");
    let page = browser.get("/app/customers").await;
    page.assert_says("No customers yet.", "the empty list");
    leaks.check(&page, "the empty list");
    let csrf = page.csrf();

    let page = browser.get("/app/customers/new").await;
    page.assert_status(200, "the new form");
    leaks.check(&page, "the new form");
    let mut fields = form_fields(&page.body, "/app/customers");
    for (name, value) in [
        ("email", "not-an-email"),
        ("firstname", "Kaisa"),
        ("lastname", "Kokeilu"),
        ("city", "Lahti"),
        ("postcode", "15100"),
        ("country", "FI"),
    ] {
        fill(&mut fields, name, value);
    }
    let page = browser.post_form("/app/customers", &fields).await;
    page.assert_status(422, "an invalid form");
    leaks.check(&page, "a validation failure");
    fill(&mut fields, "email", "kaisa@example.com");
    let page = browser.post_form("/app/customers", &fields).await;
    let id = id_in(page.location(), "created");
    leaks.check(&page, "creating");
    let page = browser
        .get(&format!("/app/customers/{id}?done=created"))
        .await;
    page.assert_status(200, "the customer page");
    leaks.check(&page, "the customer page");

    let page = browser.get("/app/customers?q=Kokeilu").await;
    page.assert_says("Kokeilu Kaisa", "the search");
    leaks.check(&page, "a search");
    let page = browser.get("/app/customers?q=nobody").await;
    leaks.check(&page, "an empty search");

    let edit = format!("/app/customers/{id}/edit");
    let page = browser.get(&edit).await;
    page.assert_status(200, "the edit form");
    leaks.check(&page, "the edit form");
    let mut fields = form_fields(&page.body, &edit);
    fill(&mut fields, "city", "Hollola");
    let page = browser.post_form(&edit, &fields).await;
    page.assert_status(303, "editing");
    leaks.check(&page, "editing");

    let page = browser.get(&format!("/app/customers/{id}/delete")).await;
    page.assert_status(200, "the delete confirmation");
    leaks.check(&page, "the delete confirmation");

    let page = browser.get("/app/import").await;
    page.assert_status(200, "the import form");
    leaks.check(&page, "the import form");
    let page = browser.import(Some(&csrf), IMPORT_CSV).await;
    page.assert_says("Imported 2 customers.", "an import");
    leaks.check(&page, "an import's result");
    let page = browser.import(Some(&csrf), BAD_IMPORT_CSV).await;
    page.assert_says("Nothing was imported.", "a bad import");
    page.assert_says("Line 3", "a bad import");
    leaks.check(&page, "a failed import's result");

    for format in ["csv", "jsonl"] {
        let page = browser.get(&format!("/app/export?format={format}")).await;
        page.assert_status(200, format);
        leaks.check(&page, "an export");
    }

    let page = browser.get("/app/customers/999999999").await;
    page.assert_status(404, "a missing customer");
    leaks.check(&page, "the 404 page");
    let page = browser
        .post_form("/app/customers", &with_csrf(&fields, None))
        .await;
    page.assert_status(403, "no csrf");
    leaks.check(&page, "the CSRF 403 page");

    let page = browser
        .get("/app/language?set=fi&back=%2Fapp%2Fcustomers")
        .await;
    leaks.check(&page, "the language switch");
    let page = browser.get("/app/customers").await;
    page.assert_status(200, "the list in Finnish");
    leaks.check(&page, "the list in Finnish");

    let page = browser
        .post_form(
            &format!("/app/customers/{id}/delete"),
            &[("csrf", csrf.as_str())],
        )
        .await;
    page.assert_redirect("/app/customers?done=deleted", "deleting");
    leaks.check(&page, "deleting");

    let page = browser
        .post_form("/app/sign-out", &[("csrf", csrf.as_str())])
        .await;
    page.assert_status(303, "signing out");
    leaks.check(&page, "signing out");
    let page = browser.get("/app/sign-in?signed_out=1").await;
    leaks.check(&page, "the signed-out page");
    let page = browser.get("/app/customers").await;
    leaks.check(&page, "after signing out");

    assert!(leaks.pages > 25);
}

// ---------------------------------------------------------------------------
// Language.

async fn sign_in_page(app: &TestApp, accept: Option<&str>, cookie: Option<&str>) -> Page {
    let mut browser = Browser::new(app);
    if let Some(lang) = cookie {
        browser.set_cookie(LANG, lang);
    }
    let mut request = browser.request(Method::GET, "/app/sign-in");
    if let Some(accept) = accept {
        request = request.header("Accept-Language", accept);
    }
    let page = browser.send(request).await;
    page.assert_status(200, "the sign-in page");
    page
}

#[track_caller]
fn assert_language(page: &Page, lang: &str, what: &str) {
    assert_eq!(page.lang().as_deref(), Some(lang), "{what}");
    let (says, never) = if lang == "fi" {
        ("Kirjaudu sisään", "Sign in")
    } else {
        ("Sign in", "Kirjaudu sisään")
    };
    page.assert_says(says, what);
    assert!(!page.text().contains(never), "{what}: {}", page.excerpt());
}

async fn the_language_follows_accept_language_and_the_cookie_wins(app: TestApp) {
    assert_language(&sign_in_page(&app, None, None).await, "en", "no preference");
    assert_language(&sign_in_page(&app, Some("en"), None).await, "en", "en");
    assert_language(&sign_in_page(&app, Some("sv"), None).await, "en", "sv");
    let finnish = sign_in_page(&app, Some("fi"), None).await;
    assert_language(&finnish, "fi", "Accept-Language: fi");
    finnish.assert_says("API-avain", "the key's label");
    assert_language(
        &sign_in_page(&app, Some("fi"), Some("en")).await,
        "en",
        "the cookie en over Accept-Language fi",
    );
    assert_language(
        &sign_in_page(&app, Some("en"), Some("fi")).await,
        "fi",
        "the cookie fi over Accept-Language en",
    );

    // The switch links lead back to the page they are on.
    let link = finnish
        .tags()
        .into_iter()
        .filter(|t| t.name == "a")
        .filter_map(|t| t.get("href").map(str::to_owned))
        .find(|h| h.starts_with("/app/language?") && h.contains("set=en"))
        .unwrap_or_else(|| panic!("an In English link: {}", finnish.excerpt()));
    let query: Vec<(String, String)> =
        serde_urlencoded::from_str(link.split_once('?').unwrap().1).unwrap();
    assert!(
        query.contains(&("back".to_owned(), "/app/sign-in".to_owned())),
        "{link}"
    );
}

async fn the_language_switch_sets_the_cookie_and_goes_back_only_within_app(app: TestApp) {
    let switch = |set: &str, back: &str| {
        format!(
            "/app/language?{}",
            serde_urlencoded::to_string([("set", set), ("back", back)]).unwrap()
        )
    };
    let mut browser = Browser::new(&app);
    for (set, back) in [
        ("fi", "/app/customers"),
        ("en", "/app/customers?q=Virtanen&page=2"),
        ("fi", "/app/sign-in"),
    ] {
        let page = browser.get(&switch(set, back)).await;
        page.assert_redirect(back, &format!("set={set} back={back}"));
        let cookie = page.set_cookie(LANG).expect("the language cookie");
        assert_eq!(cookie.value, set, "{}", cookie.raw);
    }
    // The last switch chose Finnish, and the cookie carries it.
    assert_language(&browser.get("/app/sign-in").await, "fi", "after switching");

    for back in [
        "https://evil.example",
        "//evil.example",
        "/\\evil.example",
        "http://evil.example/app",
        "/sign-in",
    ] {
        let page = browser.get(&switch("en", back)).await;
        page.assert_redirect("/app", &format!("back={back}"));
    }
}

// ---------------------------------------------------------------------------
// Headers.

#[track_caller]
fn assert_security_headers(page: &Page, what: &str) {
    let csp = page
        .header("content-security-policy")
        .unwrap_or_else(|| panic!("{what}: no Content-Security-Policy"));
    let directive = |name: &str| -> Vec<String> {
        csp.split(';')
            .find_map(|d| {
                let mut parts = d.split_whitespace();
                parts
                    .next()?
                    .eq_ignore_ascii_case(name)
                    .then(|| parts.map(str::to_owned).collect())
            })
            .unwrap_or_default()
    };
    assert_eq!(directive("default-src"), ["'none'"], "{what}: {csp}");
    assert_eq!(directive("frame-ancestors"), ["'none'"], "{what}: {csp}");
    assert!(
        directive("form-action").contains(&"'self'".to_owned()),
        "{what}: {csp}"
    );
    assert!(
        page.header("x-frame-options")
            .is_some_and(|v| v.eq_ignore_ascii_case("deny")),
        "{what}: X-Frame-Options {:?}",
        page.header("x-frame-options")
    );
    assert_eq!(
        page.header("referrer-policy"),
        Some("same-origin"),
        "{what}"
    );
    assert!(
        page.header("cache-control")
            .is_some_and(|v| v.to_ascii_lowercase().contains("no-store")),
        "{what}: Cache-Control {:?}",
        page.header("cache-control")
    );
}

async fn app_pages_carry_the_security_headers(app: TestApp) {
    let id = id_of(&app.create(&full_customer()).await);
    let mut browser = Browser::new(&app);
    let page = browser.get("/app/sign-in").await;
    assert_security_headers(&page, "the sign-in page");
    let csrf = page.csrf();
    let page = browser
        .post_form("/app/sign-in", &[("key", "wrong"), ("csrf", csrf.as_str())])
        .await;
    assert_security_headers(&page, "a failed sign-in");

    let mut browser = Browser::signed_in(&app, &app.key).await;
    for path in [
        "/app/customers".to_owned(),
        "/app/customers/new".to_owned(),
        format!("/app/customers/{id}"),
        format!("/app/customers/{id}/edit"),
        "/app/import".to_owned(),
        "/app/customers/999999999".to_owned(),
    ] {
        let page = browser.get(&path).await;
        assert!(page.status == 200 || page.status == 404, "{path}");
        assert_security_headers(&page, &path);
    }
    let page = browser.post_form("/app/customers", &[("email", "x")]).await;
    page.assert_status(403, "no csrf");
    assert_security_headers(&page, "the CSRF 403 page");
}

// ---------------------------------------------------------------------------
// Housekeeping.

/// The server purges sessions past either cutoff once a minute; the store
/// call it makes removes exactly those, and what it removed stays ended.
async fn expired_sessions_are_purged_and_live_ones_kept(app: TestApp) {
    use rekisteri::domain::session::SessionId;
    use rekisteri::store::{NewSession, SessionCutoffs};

    let key = app
        .store
        .find_key(ApiKey::parse(&app.key).unwrap().digest())
        .await
        .unwrap()
        .expect("the test key exists");
    let now = now_millis();
    let mut ids = Vec::new();
    // Within the server's own limits (30 minutes idle, 12 hours in all), so
    // that its purge, which runs as it starts, leaves them alone: signed in
    // twenty minutes ago and last seen then; signed in twenty minutes ago
    // and seen now; signed in now.
    let twenty_minutes_ago = now - 20 * 60_000;
    for (created, seen) in [
        (twenty_minutes_ago, twenty_minutes_ago),
        (twenty_minutes_ago, now),
        (now, now),
    ] {
        let id = SessionId::generate().unwrap();
        let session = NewSession {
            digest: id.digest(),
            account: key.account,
            key_id: key.id,
            csrf: "t".repeat(64),
        };
        app.store.create_session(session, created).await.unwrap();
        if seen != created {
            let far = SessionCutoffs {
                idle_before: i64::MIN,
                created_before: i64::MIN,
                seen_resolution: 1,
            };
            let found = app
                .store
                .find_session(id.digest(), seen, far)
                .await
                .unwrap();
            assert!(found.is_some(), "a session within no limits is live");
        }
        ids.push(id);
    }

    // Idle for more than ten minutes, or older than twenty-five.
    let cutoffs = SessionCutoffs {
        idle_before: now - 10 * 60_000,
        created_before: now - 25 * 60_000,
        seen_resolution: 1,
    };
    assert_eq!(
        app.store.purge_sessions(cutoffs).await.unwrap(),
        1,
        "only the idle one"
    );
    assert_eq!(
        app.store.purge_sessions(cutoffs).await.unwrap(),
        0,
        "nothing twice"
    );
    let everything = SessionCutoffs {
        idle_before: i64::MIN,
        created_before: i64::MIN,
        seen_resolution: 1,
    };
    let live = |id: &SessionId| {
        let digest = id.digest();
        let store = app.store.clone();
        async move {
            store
                .find_session(digest, now, everything)
                .await
                .unwrap()
                .is_some()
        }
    };
    assert!(!live(&ids[0]).await, "the purged session is gone for good");
    assert!(live(&ids[1]).await, "the one in use is kept");
    assert!(live(&ids[2]).await, "the new one is kept");

    // Past the lifetime, use does not save a session.
    let later = SessionCutoffs {
        idle_before: now - 10 * 60_000,
        created_before: now - 15 * 60_000,
        seen_resolution: 1,
    };
    assert_eq!(app.store.purge_sessions(later).await.unwrap(), 1);
    assert!(
        !live(&ids[1]).await,
        "the old one in use ended at its lifetime"
    );
    assert!(live(&ids[2]).await);
}
