//! The `Authorization` header: which merchant account a request acts for.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use super::AppState;
use super::error::ApiError;
use crate::domain::api_key::ApiKey;
use crate::domain::time::now_millis;
use crate::store::AccountId;

/// The account of a request that carried a valid, unrevoked key.
#[derive(Debug, Clone, Copy)]
pub struct Authenticated(pub AccountId);

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or(ApiError::Unauthorized)?;
        let key = parse_authorization(header).ok_or(ApiError::Unauthorized)?;
        let account = state
            .store
            .authenticate(key.digest(), now_millis())
            .await?
            .ok_or(ApiError::Unauthorized)?;
        Ok(Authenticated(account))
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
