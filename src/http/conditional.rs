//! Safe retries and concurrent edits: entity tags with `If-Match` and
//! `If-None-Match`, and `Idempotency-Key`.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, HeaderValue};
use sha2::{Digest, Sha256};

use super::error::ApiError;
use crate::domain::customer::Customer;
use crate::store::{AccountId, Precondition};

pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
pub const IDEMPOTENT_REPLAYED: &str = "idempotent-replayed";

/// The strong entity tag of a customer's stored state: its id and version,
/// so it changes exactly when a stored value does.
pub fn etag(customer: &Customer) -> String {
    format!("\"{}-{}\"", customer.id, customer.version)
}

/// The tags of an `If-Match` or `If-None-Match` list, each with whether it
/// was weak; `Ok(None)` for `*`. Anything but `*` or a list of quoted
/// entity tags is malformed.
fn tags<'v>(name: &str, value: &'v str) -> Result<Option<Vec<(bool, &'v str)>>, ApiError> {
    if value.trim() == "*" {
        return Ok(None);
    }
    let malformed =
        || ApiError::BadRequest(format!("{name} must be * or a list of quoted entity tags"));
    let mut tags = Vec::new();
    for tag in value.split(',').map(str::trim) {
        let (weak, quoted) = match tag.strip_prefix("W/") {
            Some(rest) => (true, rest),
            None => (false, tag),
        };
        let inner = quoted
            .strip_prefix('"')
            .and_then(|q| q.strip_suffix('"'))
            .ok_or_else(malformed)?;
        if inner.contains('"') {
            return Err(malformed());
        }
        tags.push((weak, quoted));
    }
    Ok(Some(tags))
}

/// The versions of customer `id` that an entity tag list names.
fn versions(tags: &[(bool, &str)], id: i64, strong_only: bool) -> Vec<i64> {
    tags.iter()
        .filter(|(weak, _)| !(strong_only && *weak))
        .filter_map(|(_, tag)| {
            let inner = tag.strip_prefix('"')?.strip_suffix('"')?;
            let (tag_id, version) = inner.split_once('-')?;
            (tag_id.parse::<i64>().ok()? == id).then(|| version.parse::<i64>().ok())?
        })
        .collect()
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Result<Option<&'h str>, ApiError> {
    match headers.get(name) {
        None => Ok(None),
        Some(value) => value
            .to_str()
            .map(Some)
            .map_err(|_| ApiError::BadRequest(format!("{name} must be ASCII"))),
    }
}

/// `If-Match` as a condition on customer `id`. Entity tags compare strongly,
/// so a weak tag never matches.
pub fn if_match(headers: &HeaderMap, id: i64) -> Result<Option<Precondition>, ApiError> {
    let Some(value) = header(headers, "if-match")? else {
        return Ok(None);
    };
    Ok(Some(match tags("If-Match", value)? {
        None => Precondition::Exists,
        Some(tags) => Precondition::Version(versions(&tags, id, true)),
    }))
}

/// Whether `If-None-Match` says the client already has this state. Tags
/// compare weakly here, as HTTP asks for a `GET`.
pub fn not_modified(headers: &HeaderMap, customer: &Customer) -> Result<bool, ApiError> {
    let Some(value) = header(headers, "if-none-match")? else {
        return Ok(false);
    };
    Ok(match tags("If-None-Match", value)? {
        None => true,
        Some(tags) => versions(&tags, customer.id, false).contains(&customer.version),
    })
}

/// The request's `Idempotency-Key`: 1 to 255 printable ASCII characters.
pub fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let bytes = value.as_bytes();
    let printable = bytes.iter().all(|b| (0x20..=0x7e).contains(b));
    if bytes.is_empty() || bytes.len() > 255 || !printable {
        return Err(ApiError::BadRequest(
            "Idempotency-Key must be 1 to 255 printable ASCII characters".into(),
        ));
    }
    Ok(Some(String::from_utf8_lossy(bytes).into_owned()))
}

/// What makes two requests with one key the same request.
pub fn fingerprint(method: &str, path: &str, body: &[u8]) -> [u8; 32] {
    let mut digest = Sha256::new();
    for part in [method.as_bytes(), b"\n", path.as_bytes(), b"\n", body] {
        digest.update(part);
    }
    digest.finalize().into()
}

/// The keys whose requests this process is carrying out now, so that a
/// second request with one of them is refused at once instead of waiting.
#[derive(Default, Clone)]
pub struct KeysInFlight(Arc<Mutex<HashSet<(i64, String)>>>);

/// Holds a key while its request runs.
pub struct KeyClaim {
    keys: KeysInFlight,
    entry: (i64, String),
}

impl KeysInFlight {
    pub fn claim(&self, account: AccountId, key: &str) -> Result<KeyClaim, ApiError> {
        let entry = (account.0, key.to_owned());
        let mut keys = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if !keys.insert(entry.clone()) {
            return Err(ApiError::IdempotencyKeyInUse);
        }
        Ok(KeyClaim {
            keys: self.clone(),
            entry,
        })
    }
}

impl Drop for KeyClaim {
    fn drop(&mut self) {
        let mut keys = self.keys.0.lock().unwrap_or_else(|e| e.into_inner());
        keys.remove(&self.entry);
    }
}

pub fn header_value(s: &str) -> HeaderValue {
    // Every value this module makes is ASCII without control characters.
    HeaderValue::from_str(s).unwrap_or(HeaderValue::from_static("-"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(name: &'static str, value: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_static(value));
        h
    }

    #[test]
    fn if_match_reads_strong_tags_of_this_customer_only() {
        let h = headers("if-match", "\"7-2\", W/\"7-3\", \"8-4\", \"x\"");
        assert!(if_match(&headers("if-match", ""), 7).is_err());
        assert!(if_match(&headers("if-match", "7-2"), 7).is_err());
        assert_eq!(
            if_match(&h, 7).unwrap(),
            Some(Precondition::Version(vec![2]))
        );
        assert_eq!(
            if_match(&headers("if-match", "*"), 7).unwrap(),
            Some(Precondition::Exists)
        );
        assert_eq!(if_match(&HeaderMap::new(), 7).unwrap(), None);
    }

    #[test]
    fn idempotency_keys_are_printable_ascii_of_limited_length() {
        assert_eq!(
            idempotency_key(&headers(IDEMPOTENCY_KEY, "tilaus 42"))
                .unwrap()
                .as_deref(),
            Some("tilaus 42")
        );
        assert!(idempotency_key(&headers(IDEMPOTENCY_KEY, "")).is_err());
        let mut long = HeaderMap::new();
        long.insert(
            IDEMPOTENCY_KEY,
            HeaderValue::from_str(&"k".repeat(256)).unwrap(),
        );
        assert!(idempotency_key(&long).is_err());
    }
}
