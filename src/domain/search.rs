//! Search: the words a customer can be found by, and a query's words.
//!
//! Matching ignores case and accents: `Meikäläinen` is indexed as
//! `meikalainen`, and a query word matches every indexed word it is a prefix
//! of. Both sides are folded by the same function, so they always agree.

use icu_normalizer::DecomposingNormalizerBorrowed;

use super::customer::CustomerData;

/// Names the folding rules that made the stored words; a store that finds
/// another value rebuilds its search index.
pub const SEARCH_VERSION: &str = "words-1";

/// Folds text into its search words: decomposed, without combining marks,
/// lower case, split at everything that is not a letter or a digit.
pub fn words(text: &str) -> Vec<String> {
    let nfd = DecomposingNormalizerBorrowed::new_nfd();
    let mut words = Vec::new();
    let mut word = String::new();
    for c in nfd.normalize_iter(text.chars()) {
        if is_combining_mark(c) {
            continue;
        }
        if c.is_alphanumeric() {
            word.extend(c.to_lowercase());
        } else if !word.is_empty() {
            words.push(std::mem::take(&mut word));
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

/// The combining diacritical marks that decomposition splits off Latin,
/// Greek and Cyrillic letters (ä is a and U+0308).
fn is_combining_mark(c: char) -> bool {
    matches!(c, '\u{0300}'..='\u{036F}' | '\u{1AB0}'..='\u{1AFF}' | '\u{1DC0}'..='\u{1DFF}' | '\u{20D0}'..='\u{20FF}' | '\u{FE20}'..='\u{FE2F}')
}

/// Every word a customer is found by, once each: from first and last name,
/// company, company id, email, phone, city and postcode.
pub fn customer_words(data: &CustomerData) -> Vec<String> {
    let a = &data.address;
    let fields = [
        Some(a.firstname.as_str()),
        Some(a.lastname.as_str()),
        a.company.as_deref(),
        a.company_id.as_deref(),
        Some(data.email.as_str()),
        a.phone.as_deref(),
        Some(a.city.as_str()),
        Some(a.postcode.as_str()),
    ];
    let mut all: Vec<String> = fields.into_iter().flatten().flat_map(words).collect();
    all.sort();
    all.dedup();
    all
}

/// An email address as the `email` filter compares it: without case.
pub fn fold_email(email: &str) -> String {
    email.trim().to_lowercase()
}

/// The upper bound of the words that start with `prefix`, for a range scan:
/// every such word is at least `prefix` and below this.
pub fn prefix_end(prefix: &str) -> String {
    format!("{prefix}\u{10FFFF}")
}

/// The words of a search box (`q`), each once and in a fixed order, so that
/// the same search is the same query whatever order its words came in.
pub fn query_words(q: &str) -> Vec<String> {
    let mut words = words(q);
    words.sort();
    words.dedup();
    words
}

/// What a list request asks for beyond paging.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Each must be the start of one of the customer's words.
    pub words: Vec<String>,
    /// The email, folded, that must match exactly.
    pub email: Option<String>,
    /// Only customers changed after this instant (UTC milliseconds).
    pub updated_after: Option<i64>,
}

impl Filter {
    pub fn is_empty(&self) -> bool {
        self.words.is_empty() && self.email.is_none() && self.updated_after.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accents_and_case_fold_away() {
        assert_eq!(words("Meikäläinen"), ["meikalainen"]);
        assert_eq!(words("ÅBERG Öhman"), ["aberg", "ohman"]);
        assert_eq!(words("Élodie-Zoë"), ["elodie", "zoe"]);
    }

    #[test]
    fn emails_phones_and_ids_split_into_words() {
        assert_eq!(
            words("matti.meikalainen@example.com"),
            ["matti", "meikalainen", "example", "com"]
        );
        assert_eq!(words("+358 40 123"), ["358", "40", "123"]);
        assert_eq!(words("1234567-1"), ["1234567", "1"]);
        assert!(words(" - ").is_empty());
    }

    #[test]
    fn a_prefix_range_holds_exactly_the_words_that_start_with_it() {
        let end = prefix_end("meik");
        for inside in ["meik", "meikalainen", "meikä"] {
            assert!(inside >= "meik" && inside < end.as_str(), "{inside}");
        }
        for outside in ["mei", "meil", "mf"] {
            assert!(!(outside >= "meik" && outside < end.as_str()), "{outside}");
        }
    }
}
