//! The HTTP layer: routes, extractors, the error envelope and the request log.
//! It turns requests into store calls and results into responses, nothing
//! more.

mod auth;
mod body;
mod customers;
pub mod error;
pub mod openapi;
pub mod routes;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use jiff::tz::TimeZone;
use tower_http::catch_panic::CatchPanicLayer;

use crate::store::Store;
use error::ApiError;

pub use auth::parse_authorization;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    /// The zone timestamps are rendered in.
    pub zone: TimeZone,
}

/// The whole application as a router.
pub fn router(state: AppState) -> Router {
    routes::api_router()
        .merge(routes::open_router())
        .merge(openapi::docs_router())
        .fallback(not_found)
        .layer(middleware::from_fn(envelope_bare_errors))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(middleware::from_fn(log_request))
        .with_state(state)
}

/// A handler that panics answers `500` in the envelope instead of dropping
/// the connection; the panic message goes to the log only.
fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let detail = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("a panic without a message");
    ApiError::Internal(format!("a handler panicked: {detail}")).into_response()
}

async fn not_found() -> ApiError {
    ApiError::NotFound("No such route")
}

/// Liveness: the process answers. Touches nothing else.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "service",
    responses((status = 200, description = "The process answers.", body = String, content_type = "text/plain", example = "ok"))
)]
async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: the database answers too.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "service",
    responses(
        (status = 200, description = "The process and its database answer.", body = String, content_type = "text/plain", example = "ready"),
        (status = 503, response = openapi::Unavailable),
    )
)]
async fn readyz(State(state): State<AppState>) -> Response {
    match state.store.ping().await {
        Ok(()) => "ready".into_response(),
        Err(e) => ApiError::Unavailable(e.to_string()).into_response(),
    }
}

/// Gives the JSON envelope to errors that axum produces without one (a
/// `405` from the method router, say), keeping their headers, such as
/// `Allow`.
async fn envelope_bare_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }

    let (mut parts, _) = response.into_parts();
    let replacement = ApiError::from_status(status).into_response();
    let (new_parts, body) = replacement.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.extend(new_parts.headers);
    Response::from_parts(parts, body)
}

/// One event per request, as data. It names the route pattern rather than
/// the path, and never logs headers, bodies or query strings, which carry
/// keys and personal data.
async fn log_request(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let response = next.run(request).await;
    let status = response.status();
    let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
    let route = route.as_deref().unwrap_or("(unmatched)");
    if status == StatusCode::INTERNAL_SERVER_ERROR {
        tracing::error!(http.method = %method, http.route = route, http.status_code = status.as_u16(), duration_ms, "request");
    } else {
        tracing::info!(http.method = %method, http.route = route, http.status_code = status.as_u16(), duration_ms, "request");
    }
    response
}
