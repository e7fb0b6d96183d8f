//! The JSON body extractor: our own limits and our own errors, in the order
//! a client can act on them (wrong type, too large, not JSON).

use axum::body::Body;
use axum::extract::{FromRequest, Request};
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use serde_json::Value;

use super::AppState;
use super::error::ApiError;

/// A request body that is a JSON document (of any shape; the domain checks
/// the shape and reports it as a validation error).
pub struct JsonBody(pub Value);

impl FromRequest<AppState> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let limit = state.settings.max_body_bytes;
        if !is_json(req.headers().get(CONTENT_TYPE)) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let declared = req
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            return Err(ApiError::PayloadTooLarge);
        }

        // A chunked body has no declared length; the limit stops it here. A
        // body that fails to arrive at all is reported the same way, which
        // only a client that has already gone away can see.
        let bytes = axum::body::to_bytes(Body::new(req.into_body()), limit)
            .await
            .map_err(|_| ApiError::PayloadTooLarge)?;
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| ApiError::BadRequest(format!("The request body is not valid JSON: {e}")))
    }
}

/// `application/json`, with or without parameters such as a charset.
fn is_json(value: Option<&axum::http::HeaderValue>) -> bool {
    let Some(value) = value.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/json")
}
