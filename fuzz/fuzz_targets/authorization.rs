//! Arbitrary header values through the `Authorization` parser: it must
//! never panic, and a key it yields is always in the key format.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rekisteri::domain::api_key::ApiKey;
use rekisteri::http::parse_authorization;

fuzz_target!(|bytes: &[u8]| {
    let Ok(header) = std::str::from_utf8(bytes) else {
        return;
    };
    if let Some(key) = parse_authorization(header) {
        assert_eq!(ApiKey::parse(key.expose()), Some(key));
    }
});
