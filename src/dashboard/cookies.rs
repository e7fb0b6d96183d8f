//! Reading and writing the dashboard's cookies. Every one of them is
//! `HttpOnly`, `SameSite=Strict` and scoped to `/app`: no script reads them,
//! no other site's page sends them, and the API never sees them.

use std::time::Duration;

use axum::http::header::GetAll;
use axum::http::{HeaderMap, HeaderValue};

/// The value of the cookie `name` among the `Cookie` headers, if any.
pub fn cookie<'h>(headers: GetAll<'h, HeaderValue>, name: &str) -> Option<&'h str> {
    headers
        .into_iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, value)| value.trim_matches('"'))
}

/// Whether cookies set in answer to this request get `Secure`: only when a
/// trusted proxy in front says the browser spoke HTTPS to it.
pub fn secure(headers: &HeaderMap, trust_forwarded_proto: bool) -> bool {
    trust_forwarded_proto
        && headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"))
}

/// A `Set-Cookie` value; `max_age` zero removes the cookie.
pub fn set_cookie(name: &str, value: &str, max_age: Duration, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let text = format!(
        "{name}={value}; Path=/app; Max-Age={}; HttpOnly; SameSite=Strict{secure}",
        max_age.as_secs()
    );
    // Names and values are ours: hex digits and short codes.
    HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static(""))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::header::COOKIE;

    #[test]
    fn a_cookie_is_found_among_several_headers() {
        let mut headers = HeaderMap::new();
        headers.append(COOKIE, HeaderValue::from_static("a=1; b=2"));
        headers.append(COOKIE, HeaderValue::from_static("c=\"3\""));
        assert_eq!(cookie(headers.get_all(COOKIE), "b"), Some("2"));
        assert_eq!(cookie(headers.get_all(COOKIE), "c"), Some("3"));
        assert_eq!(cookie(headers.get_all(COOKIE), "d"), None);
    }

    #[test]
    fn only_a_trusted_proxy_makes_cookies_secure() {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        assert!(secure(&headers, true));
        assert!(!secure(&headers, false));
        headers.insert("x-forwarded-proto", HeaderValue::from_static("http"));
        assert!(!secure(&headers, true));
    }
}
