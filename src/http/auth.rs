//! The `Authorization` header: which merchant account a request acts for,
//! and that key's rate limit.

use std::time::Instant;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::error::ApiError;
use super::rate_limit::Decision;
use crate::domain::api_key::ApiKey;
use crate::domain::time::now_millis;
use crate::store::AccountId;

/// The account of a request that carried a valid, unrevoked key.
#[derive(Debug, Clone, Copy)]
pub struct Authenticated(pub AccountId);

/// Authenticates every API request before its handler runs, applies the
/// key's rate limit, and says on the answer how much of it is left.
pub async fn require_key(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let key = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_authorization);
    let Some(key) = key else {
        return ApiError::Unauthorized.into_response();
    };
    let digest = key.digest();
    // An unknown and a revoked key take the same path through the same
    // query, so neither the answer nor its timing tells them apart.
    let account = match state.store.authenticate(digest, now_millis()).await {
        Ok(Some(account)) => account,
        Ok(None) => return ApiError::Unauthorized.into_response(),
        Err(e) => return ApiError::from(e).into_response(),
    };

    let decision = state
        .limiter
        .as_ref()
        .map(|limiter| limiter.check(digest, Instant::now()));
    let mut response = match decision {
        Some(d) if !d.allowed => {
            state.metrics.rate_limited();
            ApiError::RateLimited {
                retry_after_secs: d.retry_after_secs,
            }
            .into_response()
        }
        _ => {
            request.extensions_mut().insert(Authenticated(account));
            next.run(request).await
        }
    };
    if let Some(d) = decision {
        rate_limit_headers(response.headers_mut(), d);
    }
    response.extensions_mut().insert(account);
    response
}

fn rate_limit_headers(headers: &mut HeaderMap, d: Decision) {
    let pairs = [
        ("ratelimit-limit", u64::from(d.limit)),
        ("ratelimit-remaining", u64::from(d.remaining)),
        ("ratelimit-reset", d.reset_secs),
    ];
    for (name, value) in pairs {
        headers.insert(HeaderName::from_static(name), HeaderValue::from(value));
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Authenticated {
    type Rejection = ApiError;

    /// Only routes behind [`require_key`] use this, so a request without the
    /// extension has no key.
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<Authenticated>()
            .copied()
            .ok_or(ApiError::Unauthorized)
    }
}

/// Reads the key from `Token <key>`, Rails' `Token token="<key>"` (quotes
/// optional, other parameters after a comma ignored) or `Bearer <key>`. The
/// scheme name is case-insensitive.
pub fn parse_authorization(header: &str) -> Option<ApiKey> {
    let (scheme, rest) = header.trim().split_once(char::is_whitespace)?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return ApiKey::parse(rest);
    }
    if !scheme.eq_ignore_ascii_case("token") {
        return None;
    }
    let named = rest
        .split_once('=')
        .filter(|(name, _)| name.trim().eq_ignore_ascii_case("token"));
    let Some((_, value)) = named else {
        return ApiKey::parse(rest);
    };
    let value = value.split(',').next().unwrap_or("").trim();
    let value = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value);
    ApiKey::parse(value)
}

#[cfg(test)]
mod tests {
    use super::parse_authorization;

    const KEY: &str = "ce6988f6-6fb24b1f843ca1717a0f93f72b1cc78c";

    #[test]
    fn every_documented_spelling_yields_the_key() {
        for header in [
            format!("Token {KEY}"),
            format!("token   {KEY} "),
            format!("Token token=\"{KEY}\""),
            format!("Token token={KEY}"),
            format!("Token token=\"{KEY}\", nonce=\"x\""),
            format!("Bearer {KEY}"),
            format!("BEARER {KEY}"),
        ] {
            let key = parse_authorization(&header).unwrap_or_else(|| panic!("{header}"));
            assert_eq!(key.expose(), KEY);
        }
    }

    #[test]
    fn other_schemes_and_shapes_are_refused() {
        for header in [
            format!("Basic {KEY}"),
            KEY.to_owned(),
            "Token".to_owned(),
            "Token token=\"\"".to_owned(),
            format!("Token {KEY} extra"),
        ] {
            assert!(parse_authorization(&header).is_none(), "{header}");
        }
    }
}
