//! The customer pages: the list with search and paging, a customer's page,
//! and the forms that create, edit and delete. Every change goes through
//! the same parsing and the same store call as the API's.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::session::{Live, require, session_form};
use super::text::{Lang, problem};
use super::{Ctx, field, page, see_other, unavailable, views};
use crate::domain::customer::Customer;
use crate::domain::input::{CustomerPatch, Field, ValidationErrors, parse_new, value_of};
use crate::domain::search;
use crate::domain::search::Filter;
use crate::domain::time::now_millis;
use crate::http::AppState;
use crate::store::{Precondition, WriteOp, WriteReply, WriteResult};

/// How a form field is typed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Email,
    Tel,
    Locale,
}

/// One field of the customer form, named as in the API's objects; which
/// fields are required and where each lives come from the API's rules.
#[derive(Debug, Clone, Copy)]
pub struct FormField {
    field: Field,
    pub name: &'static str,
    fi: &'static str,
    en: &'static str,
    pub required: bool,
    pub kind: Kind,
    /// The browser's autofill hint.
    pub autocomplete: &'static str,
}

impl FormField {
    pub fn label(&self, lang: Lang) -> &'static str {
        lang.pick(self.fi, self.en)
    }

    /// Whether the API keeps it at the top level rather than in `address`.
    fn top_level(&self) -> bool {
        !self.field.in_address()
    }

    /// The stored value as the form shows it: absent is empty.
    fn of(&self, c: &Customer) -> String {
        self.stored(c).unwrap_or_default()
    }

    /// The stored value, `None` when the field has none.
    pub fn stored(&self, c: &Customer) -> Option<String> {
        value_of(&c.data, self.field).map(str::to_owned)
    }
}

const fn f(
    field: Field,
    fi: &'static str,
    en: &'static str,
    kind: Kind,
    autocomplete: &'static str,
) -> FormField {
    FormField {
        field,
        name: field.key(),
        fi,
        en,
        required: field.required(),
        kind,
        autocomplete,
    }
}

/// The form's fields in the order a person fills them in. The form marks
/// the required ones but leaves the checking to the server, so that the
/// messages are the API's own.
pub const FIELDS: [FormField; 11] = [
    f(
        Field::Firstname,
        "Etunimi",
        "First name",
        Kind::Text,
        "given-name",
    ),
    f(
        Field::Lastname,
        "Sukunimi",
        "Last name",
        Kind::Text,
        "family-name",
    ),
    f(Field::Email, "Sähköposti", "Email", Kind::Email, "email"),
    f(Field::Phone, "Puhelin", "Phone", Kind::Tel, "tel"),
    f(
        Field::Company,
        "Yritys",
        "Company",
        Kind::Text,
        "organization",
    ),
    f(
        Field::CompanyId,
        "Y-tunnus",
        "Business ID",
        Kind::Text,
        "off",
    ),
    f(
        Field::Street,
        "Katuosoite",
        "Street address",
        Kind::Text,
        "street-address",
    ),
    f(
        Field::Postcode,
        "Postinumero",
        "Postcode",
        Kind::Text,
        "postal-code",
    ),
    f(
        Field::City,
        "Postitoimipaikka",
        "City",
        Kind::Text,
        "address-level2",
    ),
    f(
        Field::Country,
        "Maakoodi",
        "Country code",
        Kind::Text,
        "country",
    ),
    f(
        Field::Locale,
        "Asiakkaan kieli",
        "Customer's language",
        Kind::Locale,
        "off",
    ),
];

/// The form field a validation error's path (`address.city`) is about.
pub fn field_of_path(path: &str) -> Option<&'static FormField> {
    match path.strip_prefix("address.") {
        Some(key) => FIELDS.iter().find(|f| !f.top_level() && f.name == key),
        None => FIELDS.iter().find(|f| f.top_level() && f.name == path),
    }
}

/// What a form shows: a value for each field, and a message for each field
/// that was refused.
#[derive(Debug, Clone, Default)]
pub struct FormState {
    pub values: HashMap<&'static str, String>,
    pub errors: HashMap<&'static str, String>,
}

impl FormState {
    fn blank() -> FormState {
        let mut state = FormState::default();
        state.values.insert("customer_locale", "fi_FI".to_owned());
        state
    }

    /// A value for each field from `value`.
    fn with(value: impl Fn(&FormField) -> String) -> FormState {
        FormState {
            values: FIELDS.iter().map(|f| (f.name, value(f))).collect(),
            errors: HashMap::new(),
        }
    }

    fn of(customer: &Customer) -> FormState {
        FormState::with(|f| f.of(customer))
    }

    /// The values as typed, each kept exactly for showing again.
    fn submitted(fields: &[(String, String)]) -> FormState {
        FormState::with(|f| field(fields, f.name).unwrap_or("").to_owned())
    }

    /// The values of an edit as sent, over the stored ones: a field the
    /// form did not send at all is left as it is.
    fn submitted_over(fields: &[(String, String)], stored: &Customer) -> FormState {
        FormState::with(|f| field(fields, f.name).map_or_else(|| f.of(stored), str::to_owned))
    }

    /// The values an edit form started from, which it sends back as
    /// `was.<field>`; a form that does not (one not made by these pages)
    /// counts as made from what is stored now.
    fn originals(fields: &[(String, String)], stored: &Customer) -> FormState {
        FormState::with(|f| {
            field(fields, &format!("was.{}", f.name)).map_or_else(|| f.of(stored), str::to_owned)
        })
    }

    pub fn value(&self, name: &str) -> &str {
        self.values.get(name).map_or("", String::as_str)
    }

    /// Files each of the API's messages under the field it is about.
    fn refuse(&mut self, errors: &ValidationErrors, lang: Lang) {
        for error in &errors.0 {
            let Some(spec) = field_of_path(&error.path) else {
                continue;
            };
            let message = format!("{} {}", spec.label(lang), problem(lang, &error.message));
            self.errors.entry(spec.name).or_insert(message);
        }
    }
}

/// A create's body in the API's shape. An empty optional field is left
/// out, so it is stored as absent; an empty required one is sent, so the
/// API's rules name it.
fn create_body(form: &FormState) -> Value {
    let mut top = Map::new();
    let mut address = Map::new();
    for spec in &FIELDS {
        let value = form.value(spec.name).trim();
        if value.is_empty() && !spec.required {
            continue;
        }
        let target = if spec.top_level() {
            &mut top
        } else {
            &mut address
        };
        target.insert(spec.name.to_owned(), Value::String(value.to_owned()));
    }
    top.insert("address".to_owned(), Value::Object(address));
    Value::Object(top)
}

/// An update's body: only the fields the person changed from the values
/// the form started from, so that an edit never touches what they did not
/// change, even if someone else changed it meanwhile. An emptied optional
/// field is cleared.
fn update_body(form: &FormState, was: &FormState) -> Value {
    let mut top = Map::new();
    let mut address = Map::new();
    for spec in changed(form, was) {
        let value = form.value(spec.name).trim();
        let value = if value.is_empty() && !spec.required {
            Value::Null
        } else {
            Value::String(value.to_owned())
        };
        let target = if spec.top_level() {
            &mut top
        } else {
            &mut address
        };
        target.insert(spec.name.to_owned(), value);
    }
    if !address.is_empty() {
        top.insert("address".to_owned(), Value::Object(address));
    }
    Value::Object(top)
}

/// The fields whose value in `form` differs from the one in `was`, as the
/// API would store them (trimmed).
fn changed<'f>(
    form: &'f FormState,
    was: &'f FormState,
) -> impl Iterator<Item = &'static FormField> + 'f {
    FIELDS
        .iter()
        .filter(move |f| form.value(f.name).trim() != was.value(f.name).trim())
}

/// `Lastname Firstname`, the way the list is sorted.
pub fn display_name(c: &Customer) -> String {
    format!("{} {}", c.data.address.lastname, c.data.address.firstname)
}

fn ctx(headers: &HeaderMap, uri: &Uri, live: &Live) -> Ctx {
    Ctx::new(headers, uri, Some(live.csrf.clone()))
}

/// What a change that worked says on the page it leads to.
fn done_notice(lang: Lang, done: Option<&str>) -> Option<&'static str> {
    match done? {
        "created" | "updated" => Some(lang.pick("Asiakas tallennettiin.", "Customer saved.")),
        "deleted" => Some(lang.pick("Asiakas poistettiin.", "Customer deleted.")),
        _ => None,
    }
}

fn no_such_customer(ctx: &Ctx) -> Response {
    let t = ctx.lang;
    page(
        StatusCode::NOT_FOUND,
        views::message_page(
            ctx,
            t.pick("Asiakasta ei löydy", "No such customer"),
            t.pick(
                "Asiakasta ei löydy. Se on ehkä poistettu.",
                "No such customer. It may have been deleted.",
            ),
        ),
    )
}

#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    page: Option<String>,
    q: Option<String>,
    done: Option<String>,
}

pub async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Query(query): Query<ListQuery>,
) -> Response {
    let live = match require(&state, &headers, &uri).await {
        Ok(live) => live,
        Err(answer) => return answer,
    };
    let ctx = ctx(&headers, &uri, &live);
    // The API refuses a bad page number; a person who edits the address
    // bar gets the first page instead.
    let number = query
        .page
        .as_deref()
        .and_then(|p| p.trim().parse::<u64>().ok())
        .filter(|&p| p >= 1)
        .unwrap_or(1);
    let q = query.q.as_deref().unwrap_or("").trim().to_owned();
    let words = search::query_words(&q);
    let found = if words.is_empty() {
        state.store.list_customers(live.account, number).await
    } else {
        let filter = Filter {
            words,
            ..Filter::default()
        };
        state
            .store
            .search_customers(live.account, &filter, number)
            .await
    };
    let found = match found {
        Ok(found) => found,
        Err(e) => return unavailable(&ctx, e),
    };
    let notice = done_notice(ctx.lang, query.done.as_deref());
    page(
        StatusCode::OK,
        views::list(&ctx, &found, number, &q, notice),
    )
}

#[derive(Debug, Default, Deserialize)]
pub struct ShowQuery {
    done: Option<String>,
}

/// A customer id from the path; anything that is not one names no customer.
fn id_of(segment: &str) -> Option<i64> {
    segment
        .bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| segment.parse().ok())
        .flatten()
}

/// The session and the customer a customer page is about, or the answer
/// when either is missing.
async fn load(
    state: &AppState,
    headers: &HeaderMap,
    uri: &Uri,
    id: &str,
) -> Result<(Live, Ctx, Customer), Response> {
    let live = require(state, headers, uri).await?;
    let ctx = ctx(headers, uri, &live);
    let Some(id) = id_of(id) else {
        return Err(no_such_customer(&ctx));
    };
    match state.store.get_customer(live.account, id).await {
        Ok(Some(customer)) => Ok((live, ctx, customer)),
        Ok(None) => Err(no_such_customer(&ctx)),
        Err(e) => Err(unavailable(&ctx, e)),
    }
}

pub async fn show(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
    Query(query): Query<ShowQuery>,
) -> Response {
    let (_, ctx, customer) = match load(&state, &headers, &uri, &id).await {
        Ok(loaded) => loaded,
        Err(answer) => return answer,
    };
    let notice = done_notice(ctx.lang, query.done.as_deref());
    page(
        StatusCode::OK,
        views::customer(&ctx, &customer, &state.zone, notice),
    )
}

pub async fn new_form(State(state): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    let live = match require(&state, &headers, &uri).await {
        Ok(live) => live,
        Err(answer) => return answer,
    };
    let ctx = ctx(&headers, &uri, &live);
    page(
        StatusCode::OK,
        views::customer_form(&ctx, &views::FormPage::create(&FormState::blank())),
    )
}

pub async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    let live = match require(&state, &headers, &uri).await {
        Ok(live) => live,
        Err(answer) => return answer,
    };
    let fields = match session_form(&headers, &uri, &body, &live) {
        Ok(fields) => fields,
        Err(refused) => return refused,
    };
    let ctx = ctx(&headers, &uri, &live);
    let mut form = FormState::submitted(&fields);
    let data = match parse_new(&create_body(&form)) {
        Ok(data) => data,
        Err(errors) => {
            form.refuse(&errors, ctx.lang);
            return page(
                StatusCode::UNPROCESSABLE_ENTITY,
                views::customer_form(&ctx, &views::FormPage::create(&form)),
            );
        }
    };
    match state
        .store
        .create_customer(live.account, data, now_millis())
        .await
    {
        Ok(customer) => see_other(&format!("/app/customers/{}?done=created", customer.id)),
        Err(e) => unavailable(&ctx, e),
    }
}

pub async fn edit_form(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
) -> Response {
    let (_, ctx, customer) = match load(&state, &headers, &uri, &id).await {
        Ok(loaded) => loaded,
        Err(answer) => return answer,
    };
    let form = FormState::of(&customer);
    page(
        StatusCode::OK,
        views::customer_form(
            &ctx,
            &views::FormPage::edit(&form, &customer, customer.version, &form),
        ),
    )
}

pub async fn update(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let (live, ctx, stored) = match load(&state, &headers, &uri, &id).await {
        Ok(loaded) => loaded,
        Err(answer) => return answer,
    };
    let fields = match session_form(&headers, &uri, &body, &live) {
        Ok(fields) => fields,
        Err(refused) => return refused,
    };
    let t = ctx.lang;
    let mut form = FormState::submitted_over(&fields, &stored);
    let was = FormState::originals(&fields, &stored);
    // The page's form always sends the version it was made from; without
    // one, as with the API's PUT without If-Match, the last write wins.
    let version = field(&fields, "version").map(|v| v.trim().parse::<i64>().unwrap_or(-1));
    if version.is_some_and(|v| v != stored.version) {
        // Someone else changed the customer since the form was made. As in
        // the API, changes to different fields both stand; a field that
        // both changed, to different values, is for the person to decide.
        let clashes = clashes(t, &form, &was, &stored);
        if !clashes.is_empty() {
            return conflict(&ctx, &clashes, &stored);
        }
    }
    let patch = match CustomerPatch::parse(&update_body(&form, &was)) {
        Ok(patch) => patch,
        Err(errors) => {
            form.refuse(&errors, t);
            let base = version.unwrap_or(stored.version);
            return page(
                StatusCode::UNPROCESSABLE_ENTITY,
                views::customer_form(&ctx, &views::FormPage::edit(&form, &stored, base, &was)),
            );
        }
    };
    let op = WriteOp::Update {
        id: stored.id,
        patch,
        // Checked again inside the store's transaction: a change that lands
        // between our read and this write was not compared above.
        precondition: version.map(|_| Precondition::Version(vec![stored.version])),
    };
    match state
        .store
        .write(live.account, op, now_millis(), None)
        .await
    {
        Ok(WriteReply::Done(result)) => match *result {
            WriteResult::Updated(_) | WriteResult::Unchanged(_) => {
                see_other(&format!("/app/customers/{}?done=updated", stored.id))
            }
            WriteResult::NotFound => no_such_customer(&ctx),
            // Changed in that moment: shown as a conflict, against what is
            // stored now.
            _ => match state.store.get_customer(live.account, stored.id).await {
                Ok(Some(current)) => {
                    let mut clashes = clashes(t, &form, &was, &current);
                    if clashes.is_empty() {
                        clashes = changed(&form, &was)
                            .map(|f| clash_line(t, f, form.value(f.name), &f.of(&current)))
                            .collect();
                    }
                    conflict(&ctx, &clashes, &current)
                }
                Ok(None) => no_such_customer(&ctx),
                Err(e) => unavailable(&ctx, e),
            },
        },
        Ok(_) => unavailable(
            &ctx,
            crate::store::StoreError::Internal("a write without a key was recorded".into()),
        ),
        Err(e) => unavailable(&ctx, e),
    }
}

/// The fields that the person changed and someone else changed too, to a
/// different value, each as a line for the conflict page.
fn clashes(lang: Lang, form: &FormState, was: &FormState, current: &Customer) -> Vec<String> {
    changed(form, was)
        .filter(|f| {
            let now = f.of(current);
            was.value(f.name).trim() != now && form.value(f.name).trim() != now
        })
        .map(|f| clash_line(lang, f, form.value(f.name), &f.of(current)))
        .collect()
}

fn clash_line(lang: Lang, f: &FormField, yours: &str, stored: &str) -> String {
    let shown = |v: &str| {
        if v.trim().is_empty() {
            lang.pick("(tyhjä)", "(empty)").to_owned()
        } else {
            format!("\u{201c}{}\u{201d}", v.trim())
        }
    };
    match lang {
        Lang::Fi => format!(
            "{}: sinä kirjoitit {}, nyt tallennettuna on {}",
            f.label(lang),
            shown(yours),
            shown(stored)
        ),
        Lang::En => format!(
            "{}: you entered {}; what is stored now is {}",
            f.label(lang),
            shown(yours),
            shown(stored)
        ),
    }
}

/// The answer to an edit that collides with a change someone else made
/// meanwhile. The form shows what is stored now, with its version, so that
/// saving it cannot undo the other change unseen; the fields that collided
/// are listed with both values, to be entered again where the person's
/// still hold.
fn conflict(ctx: &Ctx, clashes: &[String], current: &Customer) -> Response {
    let t = ctx.lang;
    let alert = t.pick(
        "Joku muu muutti tätä asiakasta sillä välin. Muutoksiasi ei tallennettu, koska samoja kenttiä oli muutettu: lomakkeella ovat nyt tallennetut tiedot, joten tee muutoksesi uudelleen, jos ne pätevät yhä.",
        "Someone else changed this customer meanwhile. Your changes were not saved, because the same fields had changed: the form now shows what is stored, so make your changes again where they still hold.",
    );
    let form = FormState::of(current);
    let view =
        views::FormPage::edit(&form, current, current.version, &form).with_alert(alert, clashes);
    page(StatusCode::CONFLICT, views::customer_form(ctx, &view))
}

pub async fn confirm_delete(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
) -> Response {
    let (_, ctx, customer) = match load(&state, &headers, &uri, &id).await {
        Ok(loaded) => loaded,
        Err(answer) => return answer,
    };
    page(StatusCode::OK, views::confirm_delete(&ctx, &customer))
}

pub async fn delete(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let (live, ctx, customer) = match load(&state, &headers, &uri, &id).await {
        Ok(loaded) => loaded,
        Err(answer) => return answer,
    };
    if let Err(refused) = session_form(&headers, &uri, &body, &live) {
        return refused;
    }
    let op = WriteOp::Delete {
        id: customer.id,
        precondition: None,
    };
    match state
        .store
        .write(live.account, op, now_millis(), None)
        .await
    {
        Ok(WriteReply::Done(result)) if matches!(*result, WriteResult::NotFound) => {
            no_such_customer(&ctx)
        }
        Ok(_) => see_other("/app/customers?done=deleted"),
        Err(e) => unavailable(&ctx, e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::customer::{Address, CustomerData, Locale};
    use serde_json::json;

    fn stored() -> Customer {
        Customer {
            id: 7,
            version: 3,
            data: CustomerData {
                email: "a@example.fi".into(),
                locale: Locale::FiFi,
                address: Address {
                    firstname: "Aino".into(),
                    lastname: "Aalto".into(),
                    company: None,
                    company_id: Some(String::new()),
                    address: Some("Katu 1".into()),
                    city: "Espoo".into(),
                    postcode: "02100".into(),
                    phone: None,
                    country: "FI".into(),
                },
            },
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn an_edit_sends_only_what_changed_and_clears_what_was_emptied() {
        let was = FormState::of(&stored());
        let mut form = was.clone();
        assert_eq!(update_body(&form, &was), json!({}));
        form.values.insert("city", " Tampere ".into());
        form.values.insert("address", String::new());
        assert_eq!(
            update_body(&form, &was),
            json!({"address": {"address": null, "city": "Tampere"}})
        );
    }

    #[test]
    fn only_a_field_both_changed_to_different_values_clashes() {
        let was = FormState::of(&stored());
        let mut current = stored();
        current.data.address.city = "Oulu".into();
        current.data.address.postcode = "90100".into();

        let mut form = was.clone();
        form.values.insert("phone", "040 1".into());
        assert!(clashes(Lang::En, &form, &was, &current).is_empty());
        // The same new value is no clash either.
        form.values.insert("postcode", "90100".into());
        assert!(clashes(Lang::En, &form, &was, &current).is_empty());
        form.values.insert("city", "Turku".into());
        assert_eq!(
            clashes(Lang::En, &form, &was, &current),
            ["City: you entered \u{201c}Turku\u{201d}; what is stored now is \u{201c}Oulu\u{201d}"]
        );
    }

    #[test]
    fn a_create_leaves_out_empty_optional_fields_but_sends_empty_required_ones() {
        let mut form = FormState::blank();
        form.values.insert("lastname", "Aalto".into());
        form.values.insert("phone", "  ".into());
        let body = create_body(&form);
        assert_eq!(body["address"]["lastname"], "Aalto");
        assert_eq!(body["address"]["city"], "");
        assert!(body["address"].get("phone").is_none());
        assert_eq!(body["customer_locale"], "fi_FI");
    }

    #[test]
    fn every_refusal_lands_on_its_field() {
        let mut form = FormState::blank();
        form.values.insert("email", "not-an-email".into());
        let errors = parse_new(&create_body(&form)).unwrap_err();
        form.refuse(&errors, Lang::En);
        assert_eq!(form.errors["email"], "Email is not a valid email address");
        for name in ["firstname", "lastname", "city", "postcode", "country"] {
            assert!(form.errors.contains_key(name), "{name}");
        }
        assert_eq!(form.errors.len(), 6);
    }
}
