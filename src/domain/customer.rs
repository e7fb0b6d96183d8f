//! The validated customer and the fields it is made of.

use std::fmt;

/// A language a customer is addressed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Locale {
    #[default]
    FiFi,
    EnUs,
}

impl Locale {
    pub fn as_str(self) -> &'static str {
        match self {
            Locale::FiFi => "fi_FI",
            Locale::EnUs => "en_US",
        }
    }

    pub fn parse(s: &str) -> Option<Locale> {
        match s {
            "fi_FI" => Some(Locale::FiFi),
            "en_US" => Some(Locale::EnUs),
            _ => None,
        }
    }
}

impl fmt::Display for Locale {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A customer's contact details. Every value has already passed the rules of
/// [`crate::domain::input`]: strings are trimmed and within their limits, the
/// country is an upper-case ISO 3166-1 code (or the `-` placeholder).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    pub firstname: String,
    pub lastname: String,
    pub company: Option<String>,
    pub company_id: Option<String>,
    pub address: Option<String>,
    pub city: String,
    pub postcode: String,
    pub phone: Option<String>,
    pub country: String,
}

/// Everything about a customer that a merchant can set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerData {
    pub email: String,
    pub locale: Locale,
    pub address: Address,
}

/// A customer as stored: its data plus what the server assigns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Customer {
    pub id: i64,
    /// Increases by one on every change that alters a stored value.
    pub version: i64,
    pub data: CustomerData,
    /// Milliseconds since the Unix epoch, UTC.
    pub created_at: i64,
    /// Milliseconds since the Unix epoch, UTC.
    pub updated_at: i64,
}
