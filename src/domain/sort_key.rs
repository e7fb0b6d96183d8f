//! The Finnish alphabetical order, as bytes that any database can compare.
//!
//! Each of last name, first name, company and email is turned into an ICU
//! collation key for the `fi` locale, and the keys are joined with a zero byte.
//! ICU never writes a zero inside a key, so the separator sorts below every
//! key byte: a name that is a prefix of another sorts first, and a tie on
//! one field falls through to the next. Both stores order by this key and
//! then by id, with a plain byte comparison.

use std::sync::LazyLock;

use icu_collator::options::CollatorOptions;
use icu_collator::{Collator, CollatorBorrowed};
use icu_locale_core::locale;

use super::customer::CustomerData;

/// Names the collation rules that produced the stored keys. A store that
/// finds another value recomputes every key. Change it whenever an upgrade
/// of `icu_collator` changes the bytes; the unit test below pins them.
pub const COLLATION_VERSION: &str = "icu4x-2.4/fi/tertiary";

static COLLATOR: LazyLock<CollatorBorrowed<'static>> = LazyLock::new(|| {
    // The compiled-in data always has the Finnish tailoring; failing here
    // would mean the binary was built without its data.
    Collator::try_new(locale!("fi").into(), CollatorOptions::default())
        .expect("the Finnish collation data is compiled into the binary")
});

/// The key by which a customer is listed.
pub fn sort_key(data: &CustomerData) -> Vec<u8> {
    let a = &data.address;
    let parts = [
        a.lastname.as_str(),
        a.firstname.as_str(),
        a.company.as_deref().unwrap_or(""),
        data.email.as_str(),
    ];
    let mut key = Vec::with_capacity(96);
    for (i, part) in parts.into_iter().enumerate() {
        if i > 0 {
            key.push(0);
        }
        let Ok(()) = COLLATOR.write_sort_key_to(part, &mut key);
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::customer::{Address, Locale};

    fn customer(lastname: &str, firstname: &str, email: &str) -> CustomerData {
        CustomerData {
            email: email.into(),
            locale: Locale::FiFi,
            address: Address {
                firstname: firstname.into(),
                lastname: lastname.into(),
                company: None,
                company_id: None,
                address: None,
                city: "-".into(),
                postcode: "-".into(),
                phone: None,
                country: "FI".into(),
            },
        }
    }

    fn ordered(names: &[&str]) -> Vec<String> {
        let mut v: Vec<_> = names.iter().map(|s| s.to_string()).collect();
        v.sort_by_key(|n| sort_key(&customer(n, "", "")));
        v
    }

    #[test]
    fn swedish_letters_sort_after_z_in_finnish_order() {
        let expected = [
            "Aalto",
            "Virtanen",
            "Wikström",
            "Zetterberg",
            "Åberg",
            "Ärväs",
            "Öhman",
        ];
        let mut shuffled = expected;
        shuffled.reverse();
        assert_eq!(ordered(&shuffled), expected);
    }

    #[test]
    fn case_decides_only_after_the_letters() {
        assert_eq!(
            ordered(&["virtanen", "Vaara", "Virta"]),
            ["Vaara", "Virta", "virtanen"]
        );
    }

    #[test]
    fn a_shorter_last_name_sorts_before_a_longer_one_whatever_the_first_name() {
        let short = sort_key(&customer("Virta", "Örjan", ""));
        let long = sort_key(&customer("Virtanen", "Aino", ""));
        assert!(short < long);
    }

    #[test]
    fn ties_fall_through_to_first_name_then_email() {
        let a = sort_key(&customer("Virtanen", "Aino", "b@example.com"));
        let b = sort_key(&customer("Virtanen", "Aino", "c@example.com"));
        let c = sort_key(&customer("Virtanen", "Pekka", "a@example.com"));
        assert!(a < b && b < c);
    }

    /// Stored keys are only valid while these bytes stay the same. If this
    /// fails after a dependency upgrade, change `COLLATION_VERSION` so that
    /// stores recompute their keys, then update the expected bytes.
    #[test]
    fn the_key_bytes_match_the_recorded_collation_version() {
        let key = sort_key(&customer("Öhman", "Åsa", "a@b.fi"));
        assert_eq!(COLLATION_VERSION, "icu4x-2.4/fi/tertiary");
        assert_eq!(hex::encode(&key), PINNED);
    }

    const PINNED: &str =
        "5e7f0439432b45010901c608005e7f024f2b010701c606000101002b0a802d08353b010a010a";
}
