//! The one error type of the HTTP layer and its JSON envelope.

use std::collections::BTreeMap;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::domain::input::ValidationErrors;
use crate::store::{Answer, StoreError};

/// Every way a request can fail. Each variant has one status and one code.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("unauthorized")]
    Unauthorized,
    #[error("{0}")]
    NotFound(&'static str),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("payload too large")]
    PayloadTooLarge,
    #[error("unsupported media type")]
    UnsupportedMediaType,
    #[error("validation failed")]
    Validation(ValidationErrors),
    #[error("request headers too large")]
    HeadersTooLarge,
    #[error("precondition failed")]
    PreconditionFailed,
    #[error("idempotency key reused")]
    IdempotencyKeyReused,
    #[error("idempotency key in use")]
    IdempotencyKeyInUse,
    #[error("rate limited")]
    RateLimited { retry_after_secs: u64 },
    /// Too many requests in flight; shed before it slows everyone down.
    #[error("overloaded")]
    Overloaded,
    #[error("request timed out")]
    TimedOut,
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The details go to the log, never to the client.
    #[error("internal error: {0}")]
    Internal(String),
}

#[derive(Serialize)]
struct Envelope {
    errors: Vec<String>,
    code: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    fields: Option<BTreeMap<String, Vec<String>>>,
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ApiError::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
            ApiError::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::IdempotencyKeyInUse => StatusCode::CONFLICT,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Overloaded | ApiError::TimedOut => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Unauthorized => "unauthorized",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::PayloadTooLarge => "payload_too_large",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::Validation(_) => "validation_failed",
            ApiError::HeadersTooLarge => "bad_request",
            ApiError::PreconditionFailed => "precondition_failed",
            ApiError::IdempotencyKeyReused => "idempotency_key_reused",
            ApiError::IdempotencyKeyInUse => "idempotency_key_in_use",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::Overloaded | ApiError::TimedOut => "unavailable",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal_error",
        }
    }

    /// The error for a status that axum or a layer produced on its own.
    pub fn from_status(status: StatusCode) -> ApiError {
        match status {
            StatusCode::NOT_FOUND => ApiError::NotFound("No such route"),
            StatusCode::METHOD_NOT_ALLOWED => ApiError::MethodNotAllowed,
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType,
            StatusCode::UNAUTHORIZED => ApiError::Unauthorized,
            StatusCode::UNPROCESSABLE_ENTITY => ApiError::Validation(ValidationErrors::default()),
            StatusCode::SERVICE_UNAVAILABLE => ApiError::Unavailable(String::new()),
            s if s.is_client_error() => ApiError::BadRequest("The request is malformed".into()),
            s => ApiError::Internal(format!("status {s} without a body")),
        }
    }

    /// The sentence a client reads; validation errors have one per problem.
    fn message(&self) -> &str {
        match self {
            ApiError::BadRequest(message) => message,
            ApiError::NotFound(message) => message,
            ApiError::Unauthorized => {
                "A valid API key is required: send \"Authorization: Token <api-key>\""
            }
            ApiError::MethodNotAllowed => "The method is not allowed on this path",
            ApiError::PayloadTooLarge => "The request body is too large",
            ApiError::UnsupportedMediaType => {
                "The request body must be JSON, sent with Content-Type: application/json"
            }
            ApiError::Validation(_) => "The request body is not valid",
            ApiError::HeadersTooLarge => "The request headers are too large",
            ApiError::PreconditionFailed => {
                "The customer has changed since the version in If-Match; fetch it again"
            }
            ApiError::IdempotencyKeyReused => {
                "This Idempotency-Key was used for a different request"
            }
            ApiError::IdempotencyKeyInUse => {
                "A request with this Idempotency-Key is still being processed; retry shortly"
            }
            ApiError::RateLimited { .. } => {
                "Too many requests for this API key; retry after the time in Retry-After"
            }
            ApiError::Overloaded => "The server is busy; retry after the time in Retry-After",
            ApiError::TimedOut => "The request took too long to answer; retry shortly",
            ApiError::Unavailable(_) => "The service is temporarily unavailable; retry shortly",
            ApiError::Internal(_) => "An internal error occurred",
        }
    }

    fn envelope(&self) -> Envelope {
        let ApiError::Validation(errors) = self else {
            return Envelope {
                errors: vec![self.message().to_owned()],
                code: self.code(),
                fields: None,
            };
        };
        let mut fields: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for e in &errors.0 {
            fields
                .entry(e.path.clone())
                .or_default()
                .push(e.message.clone());
        }
        let sentences = if errors.is_empty() {
            vec![self.message().to_owned()]
        } else {
            errors.sentences()
        };
        Envelope {
            errors: sentences,
            code: self.code(),
            fields: Some(fields),
        }
    }
}

impl ApiError {
    /// The answer as bytes, to be recorded with an idempotency key; the
    /// same bytes `into_response` sends.
    pub fn to_answer(&self) -> Answer {
        Answer {
            status: self.status().as_u16(),
            headers: vec![("content-type".into(), "application/json".into())],
            body: serde_json::to_vec(&self.envelope()).unwrap_or_default(),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(detail) => ApiError::Unavailable(detail),
            StoreError::Conflict(detail)
            | StoreError::Aborted(detail)
            | StoreError::Internal(detail) => ApiError::Internal(detail),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        match &self {
            ApiError::Internal(detail) => tracing::error!(error = %detail, "internal error"),
            ApiError::Unavailable(detail) => tracing::warn!(error = %detail, "store unavailable"),
            _ => {}
        }
        let mut response = (status, Json(self.envelope())).into_response();
        let headers = response.headers_mut();
        match self {
            ApiError::Unauthorized => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Token realm=\"Application\""),
                );
            }
            ApiError::RateLimited { retry_after_secs } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            }
            ApiError::Overloaded | ApiError::TimedOut | ApiError::Unavailable(_) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        response
    }
}
