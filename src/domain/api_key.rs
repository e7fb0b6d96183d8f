//! API keys: random secrets in the reference's format, known to the server
//! only by their SHA-256 digest.

use std::fmt;

use sha2::{Digest, Sha256};

/// A key as the client holds it: `ce6988f6-6fb24b1f843ca1717a0f93f72b1cc78c`.
/// Its `Debug` output hides the secret part, so it cannot leak into a log.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

/// The SHA-256 digest of a key: all the store ever sees of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyDigest(pub [u8; 32]);

impl ApiKey {
    /// A new key from the operating system's random source.
    pub fn generate() -> Result<ApiKey, getrandom::Error> {
        let mut bytes = [0u8; 20];
        getrandom::fill(&mut bytes)?;
        Ok(ApiKey(format!(
            "{}-{}",
            hex::encode(&bytes[..4]),
            hex::encode(&bytes[4..])
        )))
    }

    /// Accepts exactly the key format: 8 hex digits, a dash, 32 hex digits.
    /// Upper-case digits are accepted and read as lower case.
    pub fn parse(s: &str) -> Option<ApiKey> {
        let (head, tail) = s.split_once('-')?;
        let hex = |p: &str, n| p.len() == n && p.bytes().all(|b| b.is_ascii_hexdigit());
        (hex(head, 8) && hex(tail, 32)).then(|| ApiKey(s.to_ascii_lowercase()))
    }

    /// The first eight digits, which name the key in listings.
    pub fn prefix(&self) -> &str {
        &self.0[..8]
    }

    pub fn digest(&self) -> KeyDigest {
        KeyDigest(Sha256::digest(self.0.as_bytes()).into())
    }

    /// The whole secret, for showing once to the operator who created it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKey({}-…)", self.prefix())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_have_the_reference_format_and_differ() {
        let a = ApiKey::generate().unwrap();
        let b = ApiKey::generate().unwrap();
        assert_eq!(ApiKey::parse(a.expose()), Some(a.clone()));
        assert_eq!(a.expose().len(), 41);
        assert_ne!(a, b);
    }

    #[test]
    fn malformed_keys_are_refused() {
        for s in [
            "",
            "ce6988f6",
            "ce6988f6-6fb2",
            "ge6988f6-6fb24b1f843ca1717a0f93f72b1cc78c",
        ] {
            assert_eq!(ApiKey::parse(s), None, "{s}");
        }
    }

    #[test]
    fn debug_output_hides_the_secret() {
        let key = ApiKey::parse("ce6988f6-6fb24b1f843ca1717a0f93f72b1cc78c").unwrap();
        assert_eq!(format!("{key:?}"), "ApiKey(ce6988f6-…)");
    }
}
