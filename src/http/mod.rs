//! The HTTP layer: routes, extractors, the error envelope, limits and the
//! request log. It turns requests into store calls and results into
//! responses, nothing more.

mod auth;
mod body;
mod conditional;
pub mod customers;
pub mod error;
mod metrics;
mod middleware;
pub mod openapi;
mod rate_limit;
pub mod routes;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use jiff::tz::TimeZone;
use tokio::sync::Semaphore;
use tower_http::catch_panic::CatchPanicLayer;

use crate::store::Store;
use error::ApiError;

pub use auth::parse_authorization;
pub use metrics::Metrics;
pub use rate_limit::RateLimit;

/// The limits of the HTTP layer, each with a default that a well-behaved
/// client never meets.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The largest request body accepted.
    pub max_body_bytes: usize,
    /// The largest total of request headers accepted.
    pub max_header_bytes: usize,
    /// How long a request may take before it is answered `503`.
    pub request_timeout: Duration,
    /// Requests answered at once; more are refused with `503`.
    pub max_in_flight: usize,
    /// Each key's token bucket; `None` turns rate limiting off.
    pub rate_limit: Option<RateLimit>,
    /// Whether `/metrics` is served beside the API (rather than on a
    /// listener of its own).
    pub metrics_on_api: bool,
    /// How long the answer of a request with an `Idempotency-Key` is kept.
    pub idempotency_ttl: Duration,
    /// How long a dashboard session may go unused.
    pub session_idle: Duration,
    /// How long a dashboard session lasts at most.
    pub session_lifetime: Duration,
    /// Whether `X-Forwarded-Proto` comes from a proxy we trust, so that
    /// `https` there makes the dashboard's cookies `Secure`.
    pub trust_forwarded_proto: bool,
    /// The largest file the dashboard's import accepts.
    pub max_upload_bytes: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_body_bytes: 64 * 1024,
            max_header_bytes: 16 * 1024,
            request_timeout: Duration::from_secs(30),
            max_in_flight: 1024,
            rate_limit: Some(RateLimit::default()),
            metrics_on_api: true,
            idempotency_ttl: Duration::from_secs(24 * 60 * 60),
            session_idle: Duration::from_secs(30 * 60),
            session_lifetime: Duration::from_secs(12 * 60 * 60),
            trust_forwarded_proto: false,
            max_upload_bytes: 64 * 1024 * 1024,
        }
    }
}

/// What every handler and layer can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    /// The zone timestamps are rendered in.
    pub zone: TimeZone,
    pub settings: Arc<Settings>,
    pub metrics: Arc<Metrics>,
    limiter: Option<Arc<rate_limit::RateLimiter>>,
    in_flight: Arc<Semaphore>,
    keys_in_flight: conditional::KeysInFlight,
}

impl AppState {
    pub fn new(store: Arc<dyn Store>, zone: TimeZone, settings: Settings) -> AppState {
        AppState {
            store,
            zone,
            limiter: settings
                .rate_limit
                .map(|limit| Arc::new(rate_limit::RateLimiter::new(limit))),
            in_flight: Arc::new(Semaphore::new(settings.max_in_flight.max(1))),
            keys_in_flight: conditional::KeysInFlight::default(),
            settings: Arc::new(settings),
            metrics: Arc::new(Metrics::default()),
        }
    }
}

/// The whole application as a router.
pub fn router(state: AppState) -> Router {
    let api =
        routes::api_router().route_layer(from_fn_with_state(state.clone(), auth::require_key));
    let mut open = routes::open_router().merge(openapi::docs_router());
    // `/metrics` is for operators' scrapers, not for API clients, so it
    // stays out of the route table and the OpenAPI document.
    if state.settings.metrics_on_api {
        open = open.route("/metrics", get(metrics));
    }

    let dashboard = crate::dashboard::router(state.settings.max_upload_bytes);
    api.merge(open)
        .nest("/app", dashboard)
        // A nested router never sees its own path with a slash after it.
        .route(
            "/app/",
            get(|| async { axum::response::Redirect::permanent("/app") }),
        )
        .fallback(not_found)
        .layer(from_fn_with_state(state.clone(), middleware::limit_time))
        .layer(from_fn_with_state(
            state.clone(),
            middleware::limit_in_flight,
        ))
        .layer(from_fn_with_state(state.clone(), middleware::limit_headers))
        .layer(CatchPanicLayer::custom(middleware::panic_response))
        .layer(axum::middleware::from_fn(middleware::envelope_bare_errors))
        .layer(axum::middleware::from_fn(middleware::security_headers))
        .layer(from_fn_with_state(state.clone(), middleware::observe))
        .with_state(state)
}

/// `/metrics` alone, for a listener of its own.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(state)
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

async fn metrics(State(state): State<AppState>) -> Response {
    let body = state.metrics.render(&state.store.stats());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}
