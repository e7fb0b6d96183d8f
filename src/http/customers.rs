//! The five customer endpoints.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderName, Method, Uri};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jiff::tz::TimeZone;
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::auth::Authenticated;
use super::body::JsonBody;
use super::conditional::{
    IDEMPOTENT_REPLAYED, etag, fingerprint, header_value, idempotency_key, if_match, not_modified,
};
use super::error::ApiError;
use super::openapi::{self, examples};
use crate::domain::customer::Customer;
use crate::domain::input::{CustomerPatch, parse_new};
use crate::domain::search::{self, Filter};
use crate::domain::time::{now_millis, render};
use crate::store::{AccountId, Answer, Idempotency, WriteOp, WriteReply, WriteResult};

/// A customer on the wire: exactly these keys, in this order.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)] // read by the document: no other keys
#[schema(as = Customer, example = examples::customer)]
pub struct CustomerBody<'a> {
    /// Assigned by the server: unique across all accounts, never reused.
    #[schema(minimum = 1, format = Int64)]
    id: i64,
    /// As sent, trimmed; `-` when the merchant did not know it.
    #[schema(min_length = 1, max_length = 254)]
    email: &'a str,
    #[schema(value_type = openapi::Locale)]
    customer_locale: &'static str,
    address: AddressBody<'a>,
    /// When the customer was created, in the server's display time zone.
    #[schema(format = DateTime, pattern = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}[+-]\d{2}:\d{2}$")]
    created_at: String,
    /// When a stored value last changed, in the server's display time zone.
    #[schema(format = DateTime, pattern = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}[+-]\d{2}:\d{2}$")]
    updated_at: String,
}

/// A customer's contact details: always these nine keys, `null` where an
/// optional field has no value.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Address)]
struct AddressBody<'a> {
    #[schema(min_length = 1, max_length = 255)]
    firstname: &'a str,
    #[schema(min_length = 1, max_length = 255)]
    lastname: &'a str,
    #[schema(max_length = 255, required = true)]
    company: Option<&'a str>,
    /// Business ID; in Finland the Y-tunnus, e.g. `1234567-1`.
    #[schema(max_length = 255, required = true)]
    company_id: Option<&'a str>,
    /// Street address.
    #[schema(max_length = 255, required = true)]
    address: Option<&'a str>,
    /// Post office or city.
    #[schema(min_length = 1, max_length = 255)]
    city: &'a str,
    #[schema(min_length = 1, max_length = 255)]
    postcode: &'a str,
    /// Free form.
    #[schema(max_length = 255, required = true)]
    phone: Option<&'a str>,
    /// ISO 3166-1 alpha-2 code of an assigned country, upper case, or `-`.
    #[schema(pattern = "^(?:-|[A-Z]{2})$")]
    country: &'a str,
}

impl<'a> CustomerBody<'a> {
    pub fn new(customer: &'a Customer, zone: &TimeZone) -> CustomerBody<'a> {
        let a = &customer.data.address;
        CustomerBody {
            id: customer.id,
            email: &customer.data.email,
            customer_locale: customer.data.locale.as_str(),
            address: AddressBody {
                firstname: &a.firstname,
                lastname: &a.lastname,
                company: a.company.as_deref(),
                company_id: a.company_id.as_deref(),
                address: a.address.as_deref(),
                city: &a.city,
                postcode: &a.postcode,
                phone: a.phone.as_deref(),
                country: &a.country,
            },
            created_at: render(customer.created_at, zone),
            updated_at: render(customer.updated_at, zone),
        }
    }
}

/// One page of customers, in alphabetical order.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CustomerList, example = examples::customer_list)]
struct ListBody<'a> {
    /// True exactly when a later page has customers.
    has_more: bool,
    /// At most 50 customers.
    #[schema(max_items = 50)]
    data: Vec<CustomerBody<'a>>,
}

const NOT_FOUND: ApiError = ApiError::NotFound("Customer not found");

/// Reads `page` from the query string: optional, a positive integer. Other
/// parameters are ignored.
fn page_of(query: Option<&str>) -> Result<u64, ApiError> {
    let pairs = query_pairs(query)?;
    let Some(value) = single(&pairs, "page")? else {
        return Ok(1);
    };
    let invalid =
        || ApiError::BadRequest(format!("page must be a positive integer, not {value:?}"));
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    // All digits: only zero or a number too large for u64 is left. A page
    // that far out is simply past the end.
    match value.parse::<u64>() {
        Ok(0) => Err(invalid()),
        Ok(n) => Ok(n),
        Err(_) => Ok(u64::MAX),
    }
}

fn query_pairs(query: Option<&str>) -> Result<Vec<(String, String)>, ApiError> {
    serde_urlencoded::from_str(query.unwrap_or(""))
        .map_err(|_| ApiError::BadRequest("the query string is malformed".into()))
}

/// A parameter that may be given at most once.
fn single<'p>(pairs: &'p [(String, String)], name: &str) -> Result<Option<&'p str>, ApiError> {
    let mut values = pairs
        .iter()
        .filter(|(n, _)| n == name)
        .map(|(_, v)| v.as_str());
    let first = values.next();
    if values.next().is_some() {
        return Err(ApiError::BadRequest(format!(
            "{name} must be given at most once"
        )));
    }
    Ok(first)
}

/// The list's filters: `q` (words that start customers' words), `email`
/// (exact, without case) and `updated_after` (an ISO 8601 instant with an
/// offset).
fn filter_of(query: Option<&str>) -> Result<Filter, ApiError> {
    let pairs = query_pairs(query)?;
    let mut filter = Filter {
        words: single(&pairs, "q")?
            .map(search::query_words)
            .unwrap_or_default(),
        email: single(&pairs, "email")?
            .map(search::fold_email)
            .filter(|e| !e.is_empty()),
        updated_after: None,
    };
    if let Some(value) = single(&pairs, "updated_after")? {
        // An unencoded `+` in a query string arrives as a space; no instant
        // has a space before its offset, so it is read back as the `+`.
        let value = value.trim();
        let parsed = value
            .parse::<jiff::Timestamp>()
            .or_else(|_| value.replace(' ', "+").parse::<jiff::Timestamp>());
        let instant = parsed.map_err(|_| {
            ApiError::BadRequest(format!(
                "updated_after must be an ISO 8601 instant with an offset, such as \
                 2026-01-31T12:00:00.000+02:00, not {value:?}"
            ))
        })?;
        filter.updated_after = Some(instant.as_millisecond());
    }
    Ok(filter)
}

/// Reads a customer id from the path, with or without a `.json` suffix. An
/// id that is all digits but names no row is a 404, anything else a 400.
fn id_of(segment: &str) -> Result<i64, ApiError> {
    let digits = segment.strip_suffix(".json").unwrap_or(segment);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::BadRequest(format!(
            "customer id must be a positive integer, not {segment:?}"
        )));
    }
    digits.parse::<i64>().map_err(|_| NOT_FOUND)
}

/// List customers
///
/// The account's customers in alphabetical order (last name, first name,
/// company, email, id; Finnish collation, so `å`, `ä`, `ö` come after `z`),
/// 50 a page.
#[utoipa::path(
    get,
    path = "/api/v1/customers",
    tag = "customers",
    operation_id = "list_customers",
    security(("Token" = [])),
    params(
        ("page" = Option<u64>, Query, minimum = 1, description = "The page, 1 by default. A page past the end is empty.", example = 1),
        ("q" = Option<String>, Query, description = "Words to find: a customer matches when each word starts one of the words of its first or last name, company, company id, email, phone, city or postcode, ignoring case and accents (`meikalainen` finds `Meikäläinen`).", example = "meik hel"),
        ("email" = Option<String>, Query, description = "Only the customers with exactly this email, ignoring case.", example = "matti.meikalainen@example.com"),
        ("updated_after" = Option<String>, Query, format = DateTime, description = "Only the customers changed after this instant (ISO 8601 with an offset), for incremental sync.", example = "2020-08-18T13:12:06.000+03:00"),
    ),
    responses(
        (status = 200, description = "One page of customers.", body = ListBody, example = examples::customer_list),
        (status = 400, response = openapi::BadRequest),
        (status = 401, response = openapi::Unauthorized),
        (status = 429, response = openapi::RateLimited),
        (status = 500, response = openapi::Internal),
        (status = 503, response = openapi::Unavailable),
    )
)]
pub async fn list(
    Authenticated(account): Authenticated,
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let page = page_of(query.as_deref())?;
    let filter = filter_of(query.as_deref())?;
    let found = if filter.is_empty() {
        state.store.list_customers(account, page).await?
    } else {
        state.store.search_customers(account, &filter, page).await?
    };
    let body = ListBody {
        has_more: found.has_more,
        data: found
            .customers
            .iter()
            .map(|c| CustomerBody::new(c, &state.zone))
            .collect(),
    };
    Ok(Json(body).into_response())
}

/// Create a customer
///
/// Nothing is stored when the request fails. A required value that is not
/// known may be sent as `-`.
#[utoipa::path(
    post,
    path = "/api/v1/customers",
    tag = "customers",
    operation_id = "create_customer",
    security(("Token" = [])),
    request_body(content = openapi::NewCustomer, content_type = "application/json", example = examples::create_request),
    responses(
        (status = 201, description = "The customer was created.", body = CustomerBody,
            example = examples::customer),
        (status = 400, response = openapi::BadRequest),
        (status = 401, response = openapi::Unauthorized),
        (status = 413, response = openapi::PayloadTooLarge),
        (status = 415, response = openapi::UnsupportedMediaType),
        (status = 422, response = openapi::ValidationFailed),
        (status = 429, response = openapi::RateLimited),
        (status = 500, response = openapi::Internal),
        (status = 503, response = openapi::Unavailable),
    )
)]
pub async fn create(
    Authenticated(account): Authenticated,
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let data = parse_new(&body).map_err(ApiError::Validation)?;
    let request = Request::new(&state, &headers, "POST", &uri, Some(&body))?;
    request.write(account, WriteOp::Create(data)).await
}

/// Show a customer
///
/// Another account's customer answers as a missing one does.
#[utoipa::path(
    get,
    path = "/api/v1/customers/{id}",
    tag = "customers",
    operation_id = "show_customer",
    security(("Token" = [])),
    params(("id" = u64, Path, description = "The customer's id, optionally followed by `.json`.", example = 1)),
    responses(
        (status = 200, description = "The customer.", body = CustomerBody, example = examples::customer),
        (status = 400, response = openapi::BadRequest),
        (status = 401, response = openapi::Unauthorized),
        (status = 404, response = openapi::NotFound),
        (status = 429, response = openapi::RateLimited),
        (status = 500, response = openapi::Internal),
        (status = 503, response = openapi::Unavailable),
    )
)]
pub async fn show(
    Authenticated(account): Authenticated,
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = id_of(&id)?;
    let customer = state
        .store
        .get_customer(account, id)
        .await?
        .ok_or(NOT_FOUND)?;
    let tag = header_value(&etag(&customer));
    if not_modified(&headers, &customer)? {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, tag)]).into_response());
    }
    let mut response = Json(CustomerBody::new(&customer, &state.zone)).into_response();
    response.headers_mut().insert(header::ETAG, tag);
    Ok(response)
}

/// Update a customer
///
/// A partial update: only the fields present change, and `address` is
/// merged key by key. An optional field set to `null` is cleared. `PATCH`
/// is a synonym of `PUT`.
#[utoipa::path(
    method(put, patch),
    path = "/api/v1/customers/{id}",
    tag = "customers",
    operation_id = "update_customer",
    security(("Token" = [])),
    params(("id" = u64, Path, description = "The customer's id, optionally followed by `.json`.", example = 1)),
    request_body(content = openapi::CustomerChanges, content_type = "application/json", example = examples::update_request),
    responses(
        (status = 200, description = "The whole customer after the change.", body = CustomerBody, example = examples::updated_customer),
        (status = 400, response = openapi::BadRequest),
        (status = 401, response = openapi::Unauthorized),
        (status = 404, response = openapi::NotFound),
        (status = 413, response = openapi::PayloadTooLarge),
        (status = 415, response = openapi::UnsupportedMediaType),
        (status = 422, response = openapi::ValidationFailed),
        (status = 429, response = openapi::RateLimited),
        (status = 500, response = openapi::Internal),
        (status = 503, response = openapi::Unavailable),
    )
)]
pub async fn update(
    Authenticated(account): Authenticated,
    State(state): State<AppState>,
    Path(id): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let id = id_of(&id)?;
    let patch = CustomerPatch::parse(&body).map_err(ApiError::Validation)?;
    let precondition = if_match(&headers, id)?;
    let request = Request::new(&state, &headers, method.as_str(), &uri, Some(&body))?;
    let op = WriteOp::Update {
        id,
        patch,
        precondition,
    };
    request.write(account, op).await
}

/// Delete a customer
///
/// Removes the customer for good; a later read or delete is `404`.
#[utoipa::path(
    delete,
    path = "/api/v1/customers/{id}",
    tag = "customers",
    operation_id = "delete_customer",
    security(("Token" = [])),
    params(("id" = u64, Path, description = "The customer's id, optionally followed by `.json`.", example = 1)),
    responses(
        (status = 204, description = "The customer was deleted."),
        (status = 400, response = openapi::BadRequest),
        (status = 401, response = openapi::Unauthorized),
        (status = 404, response = openapi::NotFound),
        (status = 429, response = openapi::RateLimited),
        (status = 500, response = openapi::Internal),
        (status = 503, response = openapi::Unavailable),
    )
)]
pub async fn delete(
    Authenticated(account): Authenticated,
    State(state): State<AppState>,
    Path(id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = id_of(&id)?;
    let precondition = if_match(&headers, id)?;
    let request = Request::new(&state, &headers, "DELETE", &uri, None)?;
    request
        .write(account, WriteOp::Delete { id, precondition })
        .await
}

/// A write request, with the idempotency key it may carry.
struct Request<'a> {
    state: &'a AppState,
    /// The key and the request's fingerprint.
    key: Option<(String, [u8; 32])>,
}

impl<'a> Request<'a> {
    fn new(
        state: &'a AppState,
        headers: &HeaderMap,
        method: &str,
        uri: &Uri,
        body: Option<&serde_json::Value>,
    ) -> Result<Request<'a>, ApiError> {
        let key = idempotency_key(headers)?.map(|key| {
            // The parsed body, written out again: a retry that differs only
            // in white space or number spelling is the same request.
            let bytes = body.map(|b| b.to_string()).unwrap_or_default();
            let print = fingerprint(method, uri.path(), bytes.as_bytes());
            (key, print)
        });
        Ok(Request { state, key })
    }

    /// Carries the change out (or replays its recorded answer) and answers.
    async fn write(self, account: AccountId, op: WriteOp) -> Result<Response, ApiError> {
        let state = self.state;
        let now = now_millis();
        let Some((key, fingerprint)) = self.key else {
            let reply = state.store.write(account, op, now, None).await?;
            return match reply {
                WriteReply::Done(result) => {
                    Ok(answer_response(render_write(&result, &state.zone), false))
                }
                other => Err(ApiError::Internal(format!(
                    "a write without a key ended as {other:?}"
                ))),
            };
        };

        let _claim = state.keys_in_flight.claim(account, &key)?;
        let zone = state.zone.clone();
        let ttl = i64::try_from(state.settings.idempotency_ttl.as_millis()).unwrap_or(i64::MAX);
        let idempotency = Idempotency {
            key,
            fingerprint,
            not_before: now.saturating_sub(ttl),
            render: Box::new(move |result| render_write(result, &zone)),
        };
        match state
            .store
            .write(account, op, now, Some(idempotency))
            .await?
        {
            WriteReply::Recorded(answer) => Ok(answer_response(answer, false)),
            WriteReply::Replayed(answer) => Ok(answer_response(answer, true)),
            WriteReply::KeyReused => Err(ApiError::IdempotencyKeyReused),
            WriteReply::KeyInUse => Err(ApiError::IdempotencyKeyInUse),
            WriteReply::Done(_) => Err(ApiError::Internal("a keyed write was not recorded".into())),
        }
    }
}

/// The answer to a write's result, as bytes, so that the same bytes can be
/// recorded under an idempotency key and sent again.
fn render_write(result: &WriteResult, zone: &TimeZone) -> Answer {
    let customer = |status: u16, c: &Customer, location: bool| {
        let mut headers = vec![
            ("content-type".to_owned(), "application/json".to_owned()),
            ("etag".to_owned(), etag(c)),
        ];
        if location {
            headers.push(("location".to_owned(), format!("/api/v1/customers/{}", c.id)));
        }
        Answer {
            status,
            headers,
            body: serde_json::to_vec(&CustomerBody::new(c, zone)).unwrap_or_default(),
        }
    };
    match result {
        WriteResult::Created(c) => customer(201, c, true),
        WriteResult::Updated(c) | WriteResult::Unchanged(c) => customer(200, c, false),
        WriteResult::Deleted => Answer {
            status: 204,
            headers: Vec::new(),
            body: Vec::new(),
        },
        WriteResult::NotFound => NOT_FOUND.to_answer(),
        WriteResult::PreconditionFailed => ApiError::PreconditionFailed.to_answer(),
    }
}

fn answer_response(answer: Answer, replayed: bool) -> Response {
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, answer.body).into_response();
    let headers = response.headers_mut();
    headers.remove(header::CONTENT_TYPE);
    for (name, value) in &answer.headers {
        if let Ok(name) = HeaderName::try_from(name.as_str()) {
            headers.insert(name, header_value(value));
        }
    }
    if replayed {
        headers.insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::input::CustomerPatch;
    use crate::domain::testgen::Gen;

    /// What the server answers, sent back as a create body, is the same
    /// customer: rendering and parsing lose nothing.
    #[test]
    fn a_valid_customer_survives_a_render_and_parse_round_trip() {
        let zone = TimeZone::get("Europe/Helsinki").unwrap();
        let mut g = Gen::new(1);
        for _ in 0..2000 {
            let customer = Customer {
                id: g.below(1_000_000) as i64 + 1,
                version: 1,
                data: g.customer(),
                created_at: 1_600_000_000_000,
                updated_at: 1_700_000_000_000,
            };
            let wire = serde_json::to_value(CustomerBody::new(&customer, &zone)).unwrap();
            assert_eq!(parse_new(&wire), Ok(customer.data.clone()), "{wire}");
            let echoed = CustomerPatch::parse(&wire).unwrap();
            assert_eq!(echoed.apply(&customer.data), customer.data, "{wire}");
        }
    }

    #[test]
    fn page_defaults_to_one_and_accepts_positive_integers() {
        assert_eq!(page_of(None).unwrap(), 1);
        assert_eq!(page_of(Some("page=3&x=y")).unwrap(), 3);
        assert_eq!(
            page_of(Some("page=99999999999999999999999")).unwrap(),
            u64::MAX
        );
    }

    #[test]
    fn page_refuses_everything_else() {
        for q in [
            "page=0",
            "page=-1",
            "page=abc",
            "page=",
            "page=1.5",
            "page=+1",
            "page=1&page=2",
        ] {
            assert!(page_of(Some(q)).is_err(), "{q}");
        }
    }

    #[test]
    fn ids_may_carry_a_json_suffix() {
        assert_eq!(id_of("42").unwrap(), 42);
        assert_eq!(id_of("42.json").unwrap(), 42);
        assert!(matches!(id_of("abc"), Err(ApiError::BadRequest(_))));
        assert!(matches!(id_of("-1"), Err(ApiError::BadRequest(_))));
        assert!(matches!(
            id_of("99999999999999999999"),
            Err(ApiError::NotFound(_))
        ));
    }
}
