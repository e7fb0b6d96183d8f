//! The layers every request passes through, outermost first: request id,
//! the request log and metrics, security headers, header size, the
//! in-flight limit and the request timeout.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::error::ApiError;
use crate::store::AccountId;

pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// A caller's id is kept when it is short and plain, so it cannot smuggle
/// anything into a log line.
fn is_sane_request_id(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    (1..=128).contains(&bytes.len())
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(b))
}

/// A random prefix per process and a counter: unique without a system call
/// per request.
fn generate_request_id() -> HeaderValue {
    static PREFIX: LazyLock<String> = LazyLock::new(|| {
        let mut bytes = [0u8; 6];
        // Without randomness the ids are still unique within the process.
        let _ = getrandom::fill(&mut bytes);
        hex::encode(bytes)
    });
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    // Hex digits and a dash are always a valid header value.
    HeaderValue::from_str(&format!("{}-{n:08x}", *PREFIX)).unwrap_or(HeaderValue::from_static("-"))
}

/// Takes or makes the request id, and logs and measures the request once it
/// has been answered. This is the only place that logs a request.
pub async fn observe(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = request
        .headers()
        .get(&REQUEST_ID)
        .filter(|v| is_sane_request_id(v))
        .cloned()
        .unwrap_or_else(generate_request_id);
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "(unmatched)".to_owned(), |p| p.as_str().to_owned());

    state.metrics.started();
    let mut response = next.run(request).await;
    let seconds = started.elapsed().as_secs_f64();
    let status = response.status().as_u16();
    state
        .metrics
        .finished(method.as_str(), &route, status, seconds);

    let account = response.extensions().get::<AccountId>().map(|a| a.0);
    let request_id = id.to_str().unwrap_or("-");
    let duration_ms = seconds * 1000.0;
    macro_rules! event {
        ($level:ident) => {
            tracing::$level!(
                http.method = %method,
                http.route = %route,
                http.status_code = status,
                duration_ms,
                account.id = account,
                request.id = request_id,
                "request"
            )
        };
    }
    if status >= 500 {
        event!(error);
    } else {
        event!(info);
    }
    response.headers_mut().insert(REQUEST_ID.clone(), id);
    response
}

/// Answers are never to be sniffed as another type or cached: they carry
/// personal data.
pub async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

/// Refuses requests whose headers are larger than the configured limit.
pub async fn limit_headers(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let size: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    if size > state.settings.max_header_bytes {
        return ApiError::HeadersTooLarge.into_response();
    }
    next.run(request).await
}

/// Sheds load: past the in-flight limit a request is refused at once with
/// `503` and `Retry-After`, before queueing makes every answer slow.
pub async fn limit_in_flight(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let Ok(_permit) = Arc::clone(&state.in_flight).try_acquire_owned() else {
        state.metrics.shed();
        return ApiError::Overloaded.into_response();
    };
    next.run(request).await
}

/// A request that takes longer than the timeout is answered `503`.
///
/// A write already handed to the store may still commit after that answer;
/// a client that retries it cannot tell, and may create a duplicate.
pub async fn limit_time(State(state): State<AppState>, request: Request, next: Next) -> Response {
    // A dashboard import is bounded by its upload limit instead: cutting it
    // off would only throw away an upload that was still arriving or an
    // import that was nearly done (it stores nothing when cut off).
    if request.method() == axum::http::Method::POST && request.uri().path() == "/app/import" {
        return next.run(request).await;
    }
    match tokio::time::timeout(state.settings.request_timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::TimedOut.into_response(),
    }
}

/// Gives the JSON envelope to errors that axum produces without one (a
/// `405` from the method router, say), or under `/app` a dashboard page to
/// every error that is not one already, keeping their headers, such as
/// `Allow` and `Retry-After`.
pub async fn envelope_bare_errors(request: Request, next: Next) -> Response {
    // A person in the dashboard gets a page instead, whichever layer
    // refused the request.
    let dashboard = crate::dashboard::is_dashboard_path(request.uri().path())
        .then(|| request.headers().clone());
    let response = next.run(request).await;
    let status = response.status();
    let own_type: &[u8] = if dashboard.is_some() {
        b"text/html"
    } else {
        b"application/json"
    };
    let has_own_body = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(own_type));
    if !(status.is_client_error() || status.is_server_error()) || has_own_body {
        return response;
    }

    let replacement = match &dashboard {
        Some(headers) => crate::dashboard::error_page(status, headers),
        None => ApiError::from_status(status).into_response(),
    };
    let (mut parts, _) = response.into_parts();
    let (new_parts, body) = replacement.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.extend(new_parts.headers);
    Response::from_parts(parts, body)
}

/// A handler that panics answers `500` in the envelope instead of dropping
/// the connection; the panic message goes to the log only.
pub fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let detail = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("a panic without a message");
    ApiError::Internal(format!("a handler panicked: {detail}")).into_response()
}
