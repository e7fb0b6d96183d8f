//! Turning a request body into a validated customer or a partial update.
//!
//! Both a create and an update go through the same per-field rules, so a
//! value that one of them accepts the other accepts too. Every problem in a
//! body is collected, not only the first, so a client can fix them all at once.

use serde_json::{Map, Value};

use super::customer::{Address, CustomerData, Locale};

/// The longest string any field takes, in characters.
pub const MAX_LEN: usize = 255;
/// The longest email address, in characters (the limit of RFC 5321's path).
pub const MAX_EMAIL_LEN: usize = 254;

/// Keys a client may send back from a fetched object; the server ignores them.
const READ_ONLY_KEYS: [&str; 3] = ["id", "created_at", "updated_at"];

/// One settable field of a customer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Email,
    Locale,
    Firstname,
    Lastname,
    Company,
    CompanyId,
    Street,
    City,
    Postcode,
    Phone,
    Country,
}

const TOP_LEVEL: [Field; 2] = [Field::Email, Field::Locale];
const ADDRESS: [Field; 9] = [
    Field::Firstname,
    Field::Lastname,
    Field::Company,
    Field::CompanyId,
    Field::Street,
    Field::City,
    Field::Postcode,
    Field::Phone,
    Field::Country,
];

impl Field {
    /// The key inside its JSON object.
    pub const fn key(self) -> &'static str {
        match self {
            Field::Email => "email",
            Field::Locale => "customer_locale",
            Field::Firstname => "firstname",
            Field::Lastname => "lastname",
            Field::Company => "company",
            Field::CompanyId => "company_id",
            Field::Street => "address",
            Field::City => "city",
            Field::Postcode => "postcode",
            Field::Phone => "phone",
            Field::Country => "country",
        }
    }

    /// Whether it lives in the `address` object rather than at the top.
    pub const fn in_address(self) -> bool {
        !matches!(self, Field::Email | Field::Locale)
    }

    /// The dotted path used in error reports.
    pub fn path(self) -> String {
        if self.in_address() {
            format!("address.{}", self.key())
        } else {
            self.key().to_owned()
        }
    }

    pub const fn required(self) -> bool {
        matches!(
            self,
            Field::Email
                | Field::Firstname
                | Field::Lastname
                | Field::City
                | Field::Postcode
                | Field::Country
        )
    }
}

/// What a body said about one field.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Slot {
    Absent,
    Null,
    Text(String),
    /// A value of the wrong type, already reported.
    Invalid,
}

/// One problem found in a body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Dotted path of the field (`address.postcode`), or `body` for the
    /// body as a whole.
    pub path: String,
    /// Completes a sentence that starts with the field's name.
    pub message: String,
}

/// Every problem found in one body, in the order the fields are documented.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ValidationErrors(pub Vec<FieldError>);

impl ValidationErrors {
    fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            path: path.into(),
            message: message.into(),
        });
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Readable sentences, one a problem: `Address postcode is required`.
    pub fn sentences(&self) -> Vec<String> {
        self.0
            .iter()
            .map(|e| format!("{} {}", humanize(&e.path), e.message))
            .collect()
    }
}

/// `address.company_id` becomes `Address company id`.
fn humanize(path: &str) -> String {
    let words = path.replace(['.', '_'], " ");
    let mut chars = words.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => words,
    }
}

/// The slots of every field, read from a body whose shape was right.
struct Slots([Slot; 11]);

impl Slots {
    fn get(&self, field: Field) -> &Slot {
        &self.0[field as usize]
    }

    fn take(&mut self, field: Field) -> Slot {
        std::mem::replace(&mut self.0[field as usize], Slot::Absent)
    }
}

/// What a body held under `address`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AddressState {
    Absent,
    Null,
    /// A value of another type, already reported.
    NotAnObject,
    Object,
}

/// Reads the shape of a body: objects where objects belong, strings or
/// `null` as values, no unknown keys.
fn read_slots(body: &Value, errors: &mut ValidationErrors) -> (Slots, AddressState) {
    let mut slots = Slots(std::array::from_fn(|_| Slot::Absent));
    let mut address = AddressState::Absent;
    let Some(object) = body.as_object() else {
        errors.push("body", "must be a JSON object");
        return (slots, address);
    };

    for (key, value) in object {
        if READ_ONLY_KEYS.contains(&key.as_str()) {
            continue;
        }
        if key == "address" {
            address = match value {
                Value::Null => AddressState::Null,
                Value::Object(fields) => {
                    read_address(fields, &mut slots, errors);
                    AddressState::Object
                }
                _ => {
                    errors.push("address", "must be an object");
                    AddressState::NotAnObject
                }
            };
            continue;
        }
        match TOP_LEVEL.iter().find(|f| f.key() == key) {
            Some(&field) => read_value(field, value, &mut slots, errors),
            None => errors.push(key.as_str(), "is not a known field"),
        }
    }
    (slots, address)
}

fn read_address(address: &Map<String, Value>, slots: &mut Slots, errors: &mut ValidationErrors) {
    for (key, value) in address {
        match ADDRESS.iter().find(|f| f.key() == key) {
            Some(&field) => read_value(field, value, slots, errors),
            None => errors.push(format!("address.{key}"), "is not a known field"),
        }
    }
}

fn read_value(field: Field, value: &Value, slots: &mut Slots, errors: &mut ValidationErrors) {
    slots.0[field as usize] = match value {
        Value::Null => Slot::Null,
        Value::String(s) => Slot::Text(s.trim().to_owned()),
        _ => {
            errors.push(field.path(), "must be a string");
            Slot::Invalid
        }
    };
}

fn required_message(field: Field) -> &'static str {
    if field.in_address() {
        "is required; send \"-\" if it is not known"
    } else {
        "is required"
    }
}

/// Applies the rules of one field to what the body said about it. `Ok(None)`
/// means the field has no value (only possible for optional fields).
fn check(field: Field, slot: Slot) -> Result<Option<String>, String> {
    let text = match slot {
        Slot::Invalid => return Ok(None),
        Slot::Absent | Slot::Null if field.required() => {
            return Err(required_message(field).to_owned());
        }
        Slot::Absent | Slot::Null => return Ok(None),
        Slot::Text(text) => text,
    };
    if text.is_empty() && field.required() {
        return Err(required_message(field).to_owned());
    }

    let limit = if field == Field::Email {
        MAX_EMAIL_LEN
    } else {
        MAX_LEN
    };
    if text.chars().count() > limit {
        return Err(format!("is too long (at most {limit} characters)"));
    }
    // PostgreSQL cannot store a NUL in text, and no real value contains one.
    if text.contains('\0') {
        return Err("must not contain NUL characters".to_owned());
    }

    match field {
        Field::Email if text != "-" && !is_valid_email(&text) => {
            Err("is not a valid email address".to_owned())
        }
        Field::Locale if Locale::parse(&text).is_none() => {
            Err("must be \"fi_FI\" or \"en_US\"".to_owned())
        }
        Field::Country if text == "-" => Ok(Some(text)),
        Field::Country => {
            let upper = text.to_ascii_uppercase();
            if isocountry::CountryCode::for_alpha2(&upper).is_ok() {
                Ok(Some(upper))
            } else {
                Err("is not an ISO 3166-1 alpha-2 country code".to_owned())
            }
        }
        _ => Ok(Some(text)),
    }
}

fn is_valid_email(text: &str) -> bool {
    let options = email_address::Options::default()
        .with_required_tld()
        .without_display_text()
        .without_domain_literal();
    email_address::EmailAddress::parse_with_options(text, options).is_ok()
}

/// Checks a field and files its problem, if any, under its path.
fn checked(field: Field, slot: Slot, errors: &mut ValidationErrors) -> Option<String> {
    match check(field, slot) {
        Ok(value) => value,
        Err(message) => {
            errors.push(field.path(), message);
            None
        }
    }
}

fn locale_of(value: Option<String>) -> Locale {
    value.as_deref().and_then(Locale::parse).unwrap_or_default()
}

/// Parses the body of a create into a complete, valid customer.
pub fn parse_new(body: &Value) -> Result<CustomerData, ValidationErrors> {
    let mut errors = ValidationErrors::default();
    let (mut slots, address) = read_slots(body, &mut errors);
    if !body.is_object() {
        return Err(errors);
    }
    if matches!(address, AddressState::Absent | AddressState::Null) {
        errors.push("address", "is required");
    }

    let mut value = |field| checked(field, slots.take(field), &mut errors);
    let email = value(Field::Email);
    let locale = value(Field::Locale);
    let firstname = value(Field::Firstname);
    let lastname = value(Field::Lastname);
    let company = value(Field::Company);
    let company_id = value(Field::CompanyId);
    let street = value(Field::Street);
    let city = value(Field::City);
    let postcode = value(Field::Postcode);
    let phone = value(Field::Phone);
    let country = value(Field::Country);

    // A missing address object already says what is wrong; the required
    // fields inside it would only repeat it.
    if address != AddressState::Object {
        errors.0.retain(|e| !e.path.starts_with("address."));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    // Without errors every required value is present.
    let required = |v: Option<String>| v.unwrap_or_default();
    Ok(CustomerData {
        email: required(email),
        locale: locale_of(locale),
        address: Address {
            firstname: required(firstname),
            lastname: required(lastname),
            company,
            company_id,
            address: street,
            city: required(city),
            postcode: required(postcode),
            phone,
            country: required(country),
        },
    })
}

/// The value a customer holds in `field`, `None` where it has none; the
/// locale as its code.
pub fn value_of(data: &CustomerData, field: Field) -> Option<&str> {
    let a = &data.address;
    match field {
        Field::Email => Some(&data.email),
        Field::Locale => Some(data.locale.as_str()),
        Field::Firstname => Some(&a.firstname),
        Field::Lastname => Some(&a.lastname),
        Field::Company => a.company.as_deref(),
        Field::CompanyId => a.company_id.as_deref(),
        Field::Street => a.address.as_deref(),
        Field::City => Some(&a.city),
        Field::Postcode => Some(&a.postcode),
        Field::Phone => a.phone.as_deref(),
        Field::Country => Some(&a.country),
    }
}

/// A partial update: only the fields the body named, each already valid.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CustomerPatch {
    /// `(field, new value)`; `None` clears an optional field.
    changes: Vec<(Field, Option<String>)>,
}

impl CustomerPatch {
    /// Parses the body of an update. Fields it does not name are kept.
    pub fn parse(body: &Value) -> Result<CustomerPatch, ValidationErrors> {
        let mut errors = ValidationErrors::default();
        let (mut slots, address) = read_slots(body, &mut errors);
        if address == AddressState::Null {
            errors.push("address", "is required and cannot be null");
        }

        let mut changes = Vec::new();
        for field in TOP_LEVEL.into_iter().chain(ADDRESS) {
            if *slots.get(field) == Slot::Absent {
                continue;
            }
            let before = errors.0.len();
            let value = checked(field, slots.take(field), &mut errors);
            if errors.0.len() == before {
                changes.push((field, value));
            }
        }

        if errors.is_empty() {
            Ok(CustomerPatch { changes })
        } else {
            Err(errors)
        }
    }

    /// The customer with this patch applied. Every value was checked when
    /// the patch was parsed, so the result satisfies every rule.
    pub fn apply(&self, current: &CustomerData) -> CustomerData {
        let mut next = current.clone();
        let a = &mut next.address;
        for (field, value) in self.changes.iter().cloned() {
            match field {
                Field::Email => next.email = value.unwrap_or_default(),
                Field::Locale => next.locale = locale_of(value),
                Field::Firstname => a.firstname = value.unwrap_or_default(),
                Field::Lastname => a.lastname = value.unwrap_or_default(),
                Field::Company => a.company = value,
                Field::CompanyId => a.company_id = value,
                Field::Street => a.address = value,
                Field::City => a.city = value.unwrap_or_default(),
                Field::Postcode => a.postcode = value.unwrap_or_default(),
                Field::Phone => a.phone = value,
                Field::Country => a.country = value.unwrap_or_default(),
            }
        }
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn valid() -> Value {
        json!({
            "email": "matti@example.com",
            "address": {
                "firstname": "Matti", "lastname": "Meikäläinen",
                "city": "Helsinki", "postcode": "00100", "country": "fi"
            }
        })
    }

    fn paths(errors: ValidationErrors) -> Vec<String> {
        errors.0.into_iter().map(|e| e.path).collect()
    }

    #[test]
    fn a_minimal_body_gets_defaults_and_upper_case_country() {
        let data = parse_new(&valid()).unwrap();
        assert_eq!(data.locale, Locale::FiFi);
        assert_eq!(data.address.country, "FI");
        assert_eq!(data.address.company, None);
    }

    #[test]
    fn a_missing_address_is_one_error_not_six() {
        let errors = parse_new(&json!({"email": "a@example.com"})).unwrap_err();
        assert_eq!(paths(errors), ["address"]);
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let body = json!({
            "email": "nope", "customer_locale": "sv_SE", "extra": 1,
            "address": {"firstname": " ", "lastname": 5, "city": "x", "postcode": "-",
                        "country": "XX", "zip": "1"}
        });
        let mut got = paths(parse_new(&body).unwrap_err());
        got.sort();
        assert_eq!(
            got,
            [
                "address.country",
                "address.firstname",
                "address.lastname",
                "address.zip",
                "customer_locale",
                "email",
                "extra"
            ]
        );
    }

    #[test]
    fn sentences_start_with_the_field_name() {
        let errors = parse_new(&json!({"address": {}})).unwrap_err();
        let sentences = errors.sentences();
        assert_eq!(sentences[0], "Email is required");
        assert!(
            sentences.contains(
                &"Address postcode is required; send \"-\" if it is not known".to_owned()
            )
        );
    }

    #[test]
    fn a_patch_keeps_unnamed_fields_and_clears_null_optionals() {
        let mut current = parse_new(&valid()).unwrap();
        current.address.phone = Some("040".into());
        let patch = CustomerPatch::parse(&json!({"address": {"firstname": "Uusi", "phone": null}}))
            .unwrap();
        let next = patch.apply(&current);
        assert_eq!(next.address.firstname, "Uusi");
        assert_eq!(next.address.phone, None);
        assert_eq!(next.address.lastname, "Meikäläinen");
    }

    #[test]
    fn a_patch_refuses_null_or_empty_required_fields() {
        let errors =
            CustomerPatch::parse(&json!({"email": null, "address": {"city": "  "}})).unwrap_err();
        assert_eq!(paths(errors), ["email", "address.city"]);
    }

    #[test]
    fn an_empty_patch_changes_nothing() {
        let mut g = crate::domain::testgen::Gen::new(2);
        let empty = CustomerPatch::parse(&json!({})).unwrap();
        for _ in 0..500 {
            let data = g.customer();
            assert_eq!(empty.apply(&data), data);
        }
    }

    #[test]
    fn nul_characters_are_refused() {
        let mut body = valid();
        body["address"]["phone"] = json!("040\u{0}1");
        assert_eq!(paths(parse_new(&body).unwrap_err()), ["address.phone"]);
    }

    #[test]
    fn length_limits_count_characters_not_bytes() {
        let mut body = valid();
        body["address"]["city"] = json!("ä".repeat(255));
        assert!(parse_new(&body).is_ok());
        body["address"]["city"] = json!("ä".repeat(256));
        assert!(parse_new(&body).is_err());
    }
}
