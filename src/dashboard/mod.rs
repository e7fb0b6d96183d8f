//! The merchants' dashboard under `/app`: server-rendered pages over the
//! same store and the same validation as the API, for the people behind an
//! account who do not use curl.
//!
//! Signing in turns an API key into a server-side session; the browser holds
//! only a random session id in an `HttpOnly`, `SameSite=Strict` cookie, and
//! every form that changes something carries the session's CSRF token.

// A handler's helpers return the page to answer with as their error: it is
// made at most once a request, so its size on the stack costs nothing.
#![allow(clippy::result_large_err)]

mod bulk;
mod cookies;
mod customers;
mod session;
mod text;
mod views;

use axum::Router;
use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use maud::Markup;

use crate::http::AppState;
use crate::store::StoreError;
use text::Lang;

/// The style sheet, embedded so that the binary serves everything it shows.
const STYLE: &str = include_str!("../../assets/app.css");

/// The dashboard's routes, to be nested under `/app`.
pub fn router(max_upload_bytes: usize) -> Router<AppState> {
    Router::new()
        .route("/", get(home))
        .route(
            "/sign-in",
            get(session::sign_in_page).post(session::sign_in),
        )
        .route("/sign-out", axum::routing::post(session::sign_out))
        .route("/language", get(session::language))
        .route("/static/app.css", get(style))
        .route("/customers", get(customers::list).post(customers::create))
        .route("/customers/new", get(customers::new_form))
        .route("/customers/{id}", get(customers::show))
        .route(
            "/customers/{id}/edit",
            get(customers::edit_form).post(customers::update),
        )
        .route(
            "/customers/{id}/delete",
            get(customers::confirm_delete).post(customers::delete),
        )
        .route("/export", get(bulk::export))
        .route(
            "/import",
            get(bulk::import_page)
                .post(bulk::import)
                .layer(DefaultBodyLimit::max(max_upload_bytes)),
        )
        .fallback(not_found)
        .layer(axum::middleware::from_fn(session::record_account))
        .layer(axum::middleware::map_response(page_headers))
}

/// What a page needs to know about the request it answers.
pub struct Ctx {
    pub lang: Lang,
    /// The page's own path and query, for the language switch to come back to.
    pub here: String,
    /// The signed-in session's CSRF token, when there is a session.
    pub csrf: Option<String>,
}

impl Ctx {
    fn new(headers: &HeaderMap, uri: &Uri, csrf: Option<String>) -> Ctx {
        Ctx {
            lang: Lang::of(headers),
            // Handlers under a nested router see their path without the
            // `/app` it is nested at.
            here: match uri.path_and_query().map(|p| p.as_str()) {
                None | Some("/") => "/app".to_owned(),
                Some(p) => format!("/app{p}"),
            },
            csrf,
        }
    }
}

/// An HTML page with this status.
fn page(status: StatusCode, markup: Markup) -> Response {
    (status, markup).into_response()
}

/// A `303 See Other`, the answer to a form that worked: reloading the page
/// it leads to does not submit the form again.
fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}

/// Whether a request path is the dashboard's.
pub fn is_dashboard_path(path: &str) -> bool {
    path == "/app" || path.starts_with("/app/")
}

/// The page for an error that a layer outside the dashboard answered (a
/// limit, a method that is not allowed, a malformed query).
pub fn error_page(status: StatusCode, request_headers: &HeaderMap) -> Response {
    let ctx = Ctx::new(request_headers, &Uri::from_static("/"), None);
    let mut response = status_page(&ctx, status);
    add_page_headers(response.headers_mut());
    response
}

/// Pages never run a script, never load anything from elsewhere and never
/// appear inside another site's frame.
async fn page_headers(mut response: Response) -> Response {
    add_page_headers(response.headers_mut());
    response
}

fn add_page_headers(headers: &mut HeaderMap) {
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
             frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
}

async fn home(headers: HeaderMap, state: axum::extract::State<AppState>) -> Response {
    match session::current(&state, &headers).await {
        Ok(Some(_)) => see_other("/app/customers"),
        Ok(None) => see_other("/app/sign-in"),
        Err(e) => unavailable(&Ctx::new(&headers, &Uri::from_static("/"), None), e),
    }
}

async fn style() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        STYLE,
    )
        .into_response()
}

async fn not_found(headers: HeaderMap, uri: Uri) -> Response {
    let ctx = Ctx::new(&headers, &uri, None);
    let t = ctx.lang;
    page(
        StatusCode::NOT_FOUND,
        views::message_page(
            &ctx,
            t.pick("Sivua ei ole", "Page not found"),
            t.pick(
                "Tätä sivua ei ole olemassa.",
                "There is no page at this address.",
            ),
        ),
    )
}

/// The page for a store that failed or did not answer in time.
fn unavailable(ctx: &Ctx, error: StoreError) -> Response {
    tracing::warn!(error = %error, "a dashboard page could not reach the store");
    let status = match error {
        StoreError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    status_page(ctx, status)
}

/// A page that says what an error status means to a person.
fn status_page(ctx: &Ctx, status: StatusCode) -> Response {
    let t = ctx.lang;
    let (title, body) = match status {
        StatusCode::PAYLOAD_TOO_LARGE => (
            t.pick("Liian suuri", "Too large"),
            t.pick("Lähetetty tieto on liian suuri.", "What was sent is too large."),
        ),
        StatusCode::SERVICE_UNAVAILABLE => (
            t.pick("Palvelu on ruuhkainen", "The service is busy"),
            t.pick(
                "Palvelin ei ehtinyt vastata. Jos olit tallentamassa muutosta, tarkista, tallentuiko se, ennen kuin yrität uudelleen.",
                "The server could not answer in time. If you were saving a change, check whether it was saved before you try again.",
            ),
        ),
        s if s.is_server_error() => (
            t.pick("Jotain meni vikaan", "Something went wrong"),
            t.pick(
                "Palvelimella tapahtui virhe. Jos olit tallentamassa muutosta, tarkista, tallentuiko se, ennen kuin yrität uudelleen.",
                "The server failed. If you were saving a change, check whether it was saved before you try again.",
            ),
        ),
        _ => (
            t.pick("Pyyntöä ei voitu käsitellä", "The request was refused"),
            t.pick(
                "Tätä ei voi tehdä tässä osoitteessa. Palaa luetteloon ja yritä uudelleen.",
                "This cannot be done at this address. Go back to the list and try again.",
            ),
        ),
    };
    page(status, views::message_page(ctx, title, body))
}

/// The fields of a URL-encoded form body; a body that is not one has none.
fn form_fields(body: &Bytes) -> Vec<(String, String)> {
    serde_urlencoded::from_bytes(body).unwrap_or_default()
}

fn field<'f>(fields: &'f [(String, String)], name: &str) -> Option<&'f str> {
    fields
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}
