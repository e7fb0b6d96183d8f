//! The one error type of the HTTP layer and its JSON envelope.

use std::collections::BTreeMap;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::domain::input::ValidationErrors;
use crate::store::StoreError;

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
    #[error("rate limited")]
    RateLimited { retry_after_secs: u64 },
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
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
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
            ApiError::RateLimited { .. } => "rate_limited",
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

    fn envelope(&self) -> Envelope {
        let sentence = |s: &str| vec![s.to_owned()];
        let (errors, fields) = match self {
            ApiError::BadRequest(message) => (sentence(message), None),
            ApiError::Unauthorized => (
                sentence("A valid API key is required: send \"Authorization: Token <api-key>\""),
                None,
            ),
            ApiError::NotFound(message) => (sentence(message), None),
            ApiError::MethodNotAllowed => {
                (sentence("The method is not allowed on this path"), None)
            }
            ApiError::PayloadTooLarge => (sentence("The request body is larger than 64 KiB"), None),
            ApiError::UnsupportedMediaType => (
                sentence("The request body must be JSON, sent with Content-Type: application/json"),
                None,
            ),
            ApiError::Validation(errors) if errors.is_empty() => (
                sentence("The request body is not valid"),
                Some(BTreeMap::new()),
            ),
            ApiError::Validation(errors) => {
                let mut fields: BTreeMap<String, Vec<String>> = BTreeMap::new();
                for e in &errors.0 {
                    fields
                        .entry(e.path.clone())
                        .or_default()
                        .push(e.message.clone());
                }
                (errors.sentences(), Some(fields))
            }
            ApiError::RateLimited { .. } => (
                sentence("Too many requests; retry after the time in Retry-After"),
                None,
            ),
            ApiError::Unavailable(_) => (
                sentence("The service is temporarily unavailable; retry shortly"),
                None,
            ),
            ApiError::Internal(_) => (sentence("An internal error occurred"), None),
        };
        Envelope {
            errors,
            code: self.code(),
            fields,
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(detail) => ApiError::Unavailable(detail),
            StoreError::Conflict(detail) | StoreError::Internal(detail) => {
                ApiError::Internal(detail)
            }
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
            _ => {}
        }
        response
    }
}
