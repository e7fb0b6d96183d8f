//! Dashboard sessions: random secrets handed to a browser in a cookie and
//! known to the store only by their digest, like API keys.

use std::fmt;

use sha2::{Digest, Sha256};

/// A session id as the browser holds it: 64 hex digits from the operating
/// system's random source. Its `Debug` output hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionId(String);

/// The SHA-256 digest of a session id: all the store keeps of it, so that a
/// copy of the database cannot be used to take over a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionDigest(pub [u8; 32]);

impl SessionId {
    pub fn generate() -> Result<SessionId, getrandom::Error> {
        random_hex().map(SessionId)
    }

    /// Accepts exactly 64 hex digits, so that a cookie of any other shape is
    /// refused before it reaches the store.
    pub fn parse(s: &str) -> Option<SessionId> {
        is_token(s).then(|| SessionId(s.to_ascii_lowercase()))
    }

    pub fn digest(&self) -> SessionDigest {
        SessionDigest(Sha256::digest(self.0.as_bytes()).into())
    }

    /// The value for the cookie.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionId(…)")
    }
}

/// 32 random bytes as hex: a session id, or a token that a form carries to
/// prove it was served by us.
pub fn random_hex() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(hex::encode(bytes))
}

/// Whether `s` has the shape of what [`random_hex`] makes.
pub fn is_token(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Compares two secrets in time that depends only on their lengths, so
/// that a guess cannot be refined by timing the answers.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_random_hex_and_parse_back() {
        let a = SessionId::generate().unwrap();
        let b = SessionId::generate().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.expose().len(), 64);
        assert_eq!(SessionId::parse(a.expose()), Some(a.clone()));
        assert_ne!(a.digest(), b.digest());
    }

    #[test]
    fn ids_of_another_shape_are_refused() {
        assert!(SessionId::parse("").is_none());
        assert!(SessionId::parse(&"g".repeat(64)).is_none());
        assert!(SessionId::parse(&"a".repeat(63)).is_none());
        assert!(SessionId::parse(&"a".repeat(65)).is_none());
    }

    #[test]
    fn secrets_compare_by_value() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "abcd"));
        assert!(!same_secret("", "a"));
    }
}
