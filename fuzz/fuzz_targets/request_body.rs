//! Arbitrary bytes through what a request body meets: JSON decoding, the
//! create and update validation, the merge and the sort key. Nothing may
//! panic, and whatever validation accepts must hold every rule.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rekisteri::domain::customer::CustomerData;
use rekisteri::domain::input::{CustomerPatch, MAX_EMAIL_LEN, MAX_LEN, parse_new};
use rekisteri::domain::sort_key::sort_key;
use serde_json::json;

fn base() -> CustomerData {
    parse_new(&json!({
        "email": "matti@example.com",
        "address": {"firstname": "Matti", "lastname": "Meikäläinen", "city": "Helsinki",
                    "postcode": "00100", "country": "FI"}
    }))
    .expect("the base customer is valid")
}

/// The rules of SPEC §1 that a stored customer must satisfy.
fn check(data: &CustomerData) {
    let a = &data.address;
    for required in [&a.firstname, &a.lastname, &a.city, &a.postcode, &a.country] {
        assert!(!required.is_empty());
        assert_eq!(required.trim(), required.as_str());
        assert!(required.chars().count() <= MAX_LEN);
    }
    for optional in [&a.company, &a.company_id, &a.address, &a.phone].into_iter().flatten() {
        assert_eq!(optional.trim(), optional.as_str());
        assert!(optional.chars().count() <= MAX_LEN);
    }
    assert!(data.email.chars().count() <= MAX_EMAIL_LEN);
    assert!(a.country == "-" || (a.country.len() == 2 && a.country == a.country.to_uppercase()));
    let _ = sort_key(data);
}

fuzz_target!(|bytes: &[u8]| {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(bytes) else {
        return;
    };
    if let Ok(data) = parse_new(&value) {
        check(&data);
    }
    if let Ok(patch) = CustomerPatch::parse(&value) {
        let merged = patch.apply(&base());
        check(&merged);
        // Applying the same patch again changes nothing more.
        assert_eq!(patch.apply(&merged), merged);
    }
});
