//! The OpenAPI 3.1 document, generated from the handlers' annotations and
//! the wire types, and the pages that show it: `/docs` (Swagger UI, embedded
//! in the binary) and a small index at `/`.
//!
//! Request bodies are parsed by hand from JSON values, so their schemas are
//! written here on structs that exist only for the document; they describe
//! exactly what [`crate::domain::input`] accepts.

use std::sync::OnceLock;

use axum::Router;
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use serde_json::{Value, json};
use utoipa::openapi::path::{HttpMethod, Operation, PathItem};
use utoipa::openapi::response::{Response as ResponseObject, ResponseBuilder};
use utoipa::openapi::schema::{
    AdditionalProperties, AnyOfBuilder, Object, ObjectBuilder, Schema, SchemaFormat, SchemaType,
    Type,
};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::openapi::{ContentBuilder, HeaderBuilder, OpenApi as Document, RefOr};
use utoipa::{Modify, OpenApi, ToResponse, ToSchema};
use utoipa_swagger_ui::{Config, SwaggerUi};

use super::AppState;
use super::error::ApiError;
use crate::domain::input::{MAX_EMAIL_LEN, MAX_LEN};

/// Where the document is served.
pub const DOCUMENT_PATH: &str = "/api/v1/openapi.json";
/// Where the docs page is served.
pub const DOCS_PATH: &str = "/docs";

const DESCRIPTION: &str = "\
A merchant keeps its customers in the registry so that it does not have to type a \
customer's details again each time it makes a payment link for them.

Every request under `/api/v1` other than this document carries \
`Authorization: Token <api-key>`. Each key belongs to one merchant account and sees only \
that account's customers; another account's customer answers `404` as a missing one does.

Every path also answers with a `.json` suffix: the collection as `/api/v1/customers.json`, \
listed as a path of its own, and a customer as `/api/v1/customers/1.json`, which the `id` \
parameter's schema allows (`1` or `1.json`).

Strings are trimmed of surrounding white space before any rule applies, and the length \
limits count the characters of the trimmed value; the schemas describe the value after \
trimming.

Every error has the body `{\"errors\": [...], \"code\": \"...\"}` with \
`Content-Type: application/json`; a `422` adds `fields`, mapping each invalid field, as a \
dotted path, to its messages. A method that a path does not support answers `405` with an \
`Allow` header (the `MethodNotAllowed` response), and a path that does not exist `404`.";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Rekisteri: Paylink customer registry API",
        description = DESCRIPTION,
        license(name = "MIT", identifier = "MIT"),
    ),
    paths(
        super::customers::list,
        super::customers::create,
        super::customers::show,
        super::customers::update,
        super::customers::delete,
        document_json,
        super::healthz,
        super::readyz,
    ),
    components(
        schemas(Locale),
        responses(
            BadRequest,
            Unauthorized,
            NotFound,
            MethodNotAllowed,
            PayloadTooLarge,
            UnsupportedMediaType,
            ValidationFailed,
            RateLimited,
            Internal,
            Unavailable,
        )
    ),
    tags(
        (name = "customers", description = "The customer registry."),
        (name = "service", description = "The document and the probes; no key needed."),
    ),
    modifiers(&Finish),
)]
struct ApiDoc;

/// The document, built once.
pub fn document() -> &'static Document {
    static DOCUMENT: OnceLock<Document> = OnceLock::new();
    DOCUMENT.get_or_init(ApiDoc::openapi)
}

/// The document as pretty-printed JSON, as served and printed.
pub fn document_string() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| {
        let mut text = document()
            .to_pretty_json()
            .expect("the document serializes");
        text.push('\n');
        text
    })
}

/// The OpenAPI document
///
/// This document, as JSON. No key is needed.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "service",
    operation_id = "openapi_document",
    responses((status = 200, description = "The OpenAPI 3.1 document.", body = Object, content_type = "application/json"))
)]
pub async fn document_json() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        document_string(),
    )
        .into_response()
}

/// A page for people who open the server in a browser.
pub async fn index_page() -> Html<&'static str> {
    Html(INDEX_HTML)
}

const INDEX_HTML: &str = r#"<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Rekisteri</title></head>
<body>
<h1>Rekisteri</h1>
<p>The Paylink customer registry API.</p>
<ul>
<li><a href="/app">Dashboard for merchants</a></li>
<li><a href="/docs/">API documentation</a></li>
<li><a href="/api/v1/openapi.json">OpenAPI document</a></li>
</ul>
</body>
</html>
"#;

/// Swagger UI at `/docs`, from files embedded in the binary. It reads the
/// document from [`DOCUMENT_PATH`], which the route table serves.
pub fn docs_router() -> Router<AppState> {
    // No validator: Swagger UI would otherwise send the document to an
    // online validator and show its badge.
    let config = Config::new([DOCUMENT_PATH])
        .validator_url("none")
        .try_it_out_enabled(false);
    SwaggerUi::new(DOCS_PATH).config(config).into()
}

/// The language a customer is addressed in.
#[allow(non_camel_case_types)] // the variants are the wire values
#[derive(ToSchema)]
#[schema(example = "fi_FI")]
pub enum Locale {
    fi_FI,
    en_US,
}

/// The characters Rust's `str::trim` removes, as a regular expression class
/// body that both ECMA-262 and Python's `re` read the same way.
const WHITE_SPACE: &str =
    r"\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000";

fn string_schema(nullable: bool) -> ObjectBuilder {
    let schema_type = if nullable {
        SchemaType::from_iter([Type::String, Type::Null])
    } else {
        SchemaType::Type(Type::String)
    };
    ObjectBuilder::new().schema_type(schema_type)
}

/// A required string: not blank, no NUL, at most 255 characters.
fn required_text() -> Object {
    string_schema(false)
        .min_length(Some(1))
        .max_length(Some(MAX_LEN))
        .pattern(Some(format!(
            r"^[^\u0000]*[^\u0000{WHITE_SPACE}][^\u0000]*$"
        )))
        .description(Some(
            "Required. Not blank; send `-` when the value is not known.",
        ))
        .build()
}

/// An optional string: `null` clears it, an empty string stays empty.
fn optional_text() -> Object {
    string_schema(true)
        .max_length(Some(MAX_LEN))
        .pattern(Some(r"^[^\u0000]*$"))
        .description(Some("Optional; `null` means no value."))
        .build()
}

/// An email address, or `-` when it is not known.
fn email() -> Schema {
    AnyOfBuilder::new()
        .item(
            string_schema(false)
                .format(Some(SchemaFormat::KnownFormat(
                    utoipa::openapi::KnownFormat::Email,
                )))
                .max_length(Some(MAX_EMAIL_LEN)),
        )
        .item(string_schema(false).enum_values(Some(["-"])))
        .description(Some(
            "Required. A syntactically valid email address with a top-level domain, at most \
             254 characters, kept in the case it was sent in; or `-` when it is not known.",
        ))
        .examples([json!("matti.meikalainen@example.com")])
        .into()
}

/// A country: an assigned ISO 3166-1 alpha-2 code in either case, or `-`.
/// The pattern is made from the same list of codes the parser checks, so
/// that every code it accepts, and only those, matches.
fn country() -> Object {
    let mut by_first: Vec<(u8, Vec<u8>)> = Vec::new();
    for code in isocountry::CountryCode::iter() {
        let &[first, second] = code.alpha2().as_bytes() else {
            continue;
        };
        match by_first.iter_mut().find(|(f, _)| *f == first) {
            Some((_, seconds)) => seconds.push(second),
            None => by_first.push((first, vec![second])),
        }
    }
    let either_case = |b: u8| format!("{}{}", b as char, b.to_ascii_lowercase() as char);
    let alternatives: Vec<String> = by_first
        .iter()
        .map(|(first, seconds)| {
            let seconds: String = seconds.iter().map(|&s| either_case(s)).collect();
            format!("[{}][{seconds}]", either_case(*first))
        })
        .collect();
    string_schema(false)
        .pattern(Some(format!("^(?:-|{})$", alternatives.join("|"))))
        .description(Some(
            "Required. The ISO 3166-1 alpha-2 code of an assigned country, in either case \
             (stored upper case), or `-` when it is not known.",
        ))
        .examples([json!("FI")])
        .build()
}

/// `id`, `created_at` and `updated_at`: a client may echo them back.
fn ignored() -> Object {
    ObjectBuilder::new()
        .schema_type(SchemaType::AnyValue)
        .description(Some("Read-only: accepted and ignored."))
        .build()
}

/// A new customer. `id`, `created_at` and `updated_at` may be sent (a
/// client echoing back a fetched object) and are ignored; any other key is
/// a validation error.
#[allow(dead_code)] // only the document reads these fields
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = examples::create_request)]
pub struct NewCustomer {
    #[schema(schema_with = email)]
    email: String,
    /// `fi_FI` when absent or `null`.
    customer_locale: Option<Locale>,
    address: NewAddress,
    #[schema(schema_with = ignored)]
    id: Option<Value>,
    #[schema(schema_with = ignored)]
    created_at: Option<Value>,
    #[schema(schema_with = ignored)]
    updated_at: Option<Value>,
}

/// A new customer's contact details. `address` is the street address.
#[allow(dead_code)] // only the document reads these fields
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAddress {
    #[schema(schema_with = required_text)]
    firstname: String,
    #[schema(schema_with = required_text)]
    lastname: String,
    #[schema(schema_with = optional_text)]
    company: Option<String>,
    #[schema(schema_with = optional_text)]
    company_id: Option<String>,
    #[schema(schema_with = optional_text)]
    address: Option<String>,
    #[schema(schema_with = required_text)]
    city: String,
    #[schema(schema_with = required_text)]
    postcode: String,
    #[schema(schema_with = optional_text)]
    phone: Option<String>,
    #[schema(schema_with = country)]
    country: String,
}

/// The fields to change; every other field keeps its value. A required
/// field cannot be cleared, so it may not be `null`; an optional one set to
/// `null` is cleared. `id`, `created_at` and `updated_at` are ignored; any
/// other key is a validation error.
#[allow(dead_code)] // only the document reads these fields
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = examples::update_request)]
pub struct CustomerChanges {
    #[schema(schema_with = email)]
    email: Option<String>,
    /// `null` sets the default, `fi_FI`.
    customer_locale: Option<Locale>,
    #[schema(nullable = false)]
    address: Option<AddressChanges>,
    #[schema(schema_with = ignored)]
    id: Option<Value>,
    #[schema(schema_with = ignored)]
    created_at: Option<Value>,
    #[schema(schema_with = ignored)]
    updated_at: Option<Value>,
}

/// The address fields to change, merged key by key into the stored address.
#[allow(dead_code)] // only the document reads these fields
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddressChanges {
    #[schema(schema_with = required_text)]
    firstname: Option<String>,
    #[schema(schema_with = required_text)]
    lastname: Option<String>,
    #[schema(schema_with = optional_text)]
    company: Option<String>,
    #[schema(schema_with = optional_text)]
    company_id: Option<String>,
    #[schema(schema_with = optional_text)]
    address: Option<String>,
    #[schema(schema_with = required_text)]
    city: Option<String>,
    #[schema(schema_with = required_text)]
    postcode: Option<String>,
    #[schema(schema_with = optional_text)]
    phone: Option<String>,
    #[schema(schema_with = country)]
    country: Option<String>,
}

/// The codes an error body can carry, taken from the error type itself.
fn error_codes() -> Vec<&'static str> {
    [
        ApiError::BadRequest(String::new()),
        ApiError::Unauthorized,
        ApiError::NotFound(""),
        ApiError::MethodNotAllowed,
        ApiError::PayloadTooLarge,
        ApiError::UnsupportedMediaType,
        ApiError::Validation(Default::default()),
        ApiError::PreconditionFailed,
        ApiError::IdempotencyKeyReused,
        ApiError::IdempotencyKeyInUse,
        ApiError::RateLimited {
            retry_after_secs: 0,
        },
        ApiError::Internal(String::new()),
        ApiError::Unavailable(String::new()),
    ]
    .iter()
    .map(ApiError::code)
    .collect()
}

/// The `Error` schema: the envelope of every error.
fn error_schema(code: Option<&str>, with_fields: bool) -> Schema {
    let codes = match code {
        Some(code) => vec![code],
        None => error_codes(),
    };
    let messages = utoipa::openapi::schema::ArrayBuilder::new()
        .items(string_schema(false))
        .min_items(Some(1))
        .description(Some("Readable English sentences; never empty."));
    let mut object = ObjectBuilder::new()
        .schema_type(Type::Object)
        .property("errors", messages)
        .required("errors")
        .property(
            "code",
            string_schema(false)
                .enum_values(Some(codes))
                .description(Some("A stable code for programs.")),
        )
        .required("code");
    let fields = ObjectBuilder::new()
        .schema_type(Type::Object)
        .additional_properties(Some(
            utoipa::openapi::schema::ArrayBuilder::new()
                .items(string_schema(false))
                .min_items(Some(1)),
        ))
        .description(Some(
            "Each invalid field, as a dotted path (`address.postcode`), with its messages.",
        ));
    if with_fields {
        object = object.property("fields", fields).required("fields");
    }
    object
        .additional_properties(Some(AdditionalProperties::FreeForm(false)))
        .description(Some(match code {
            Some(code) => format!("The error envelope with the code `{code}`."),
            None => "The error envelope.".to_owned(),
        }))
        .into()
}

/// A header that every response of its kind carries.
fn required_header(description: &str, schema: ObjectBuilder) -> utoipa::openapi::Header {
    let mut header = HeaderBuilder::new()
        .schema(Some(schema))
        .description(Some(description))
        .build();
    // utoipa's header object has no `required` field; extensions serialize
    // flat beside the others, which puts it where OpenAPI expects it.
    let mut extensions = utoipa::openapi::extensions::Extensions::default();
    extensions.insert("required".to_owned(), json!(true));
    header.extensions = Some(extensions);
    header
}

fn error_response(
    description: &str,
    status: u16,
    error: ApiError,
    message: &str,
) -> ResponseObject {
    let code = error.code();
    let with_fields = matches!(error, ApiError::Validation(_));
    let example = if with_fields {
        examples::validation_error()
    } else {
        json!({"errors": [message], "code": code})
    };
    let mut response = ResponseBuilder::new().description(description).content(
        "application/json",
        ContentBuilder::new()
            .schema(Some(error_schema(Some(code), with_fields)))
            .example(Some(example))
            .build(),
    );
    match status {
        401 => {
            response = response.header(
                "WWW-Authenticate",
                required_header(
                    "The scheme to use: `Token realm=\"Application\"`.",
                    string_schema(false).enum_values(Some(["Token realm=\"Application\""])),
                ),
            );
        }
        405 => {
            response = response.header(
                "Allow",
                required_header(
                    "The methods the path supports.",
                    string_schema(false).min_length(Some(1)),
                ),
            );
        }
        429 => {
            response = response.header(
                "Retry-After",
                required_header(
                    "Seconds to wait before retrying.",
                    ObjectBuilder::new()
                        .schema_type(Type::Integer)
                        .minimum(Some(0)),
                ),
            );
        }
        _ => {}
    }
    response.build()
}

/// Declares a reusable error response: its name in the document, status,
/// the error it carries and the sentence its example shows.
macro_rules! error_responses {
    ($($name:ident = $status:literal, $error:expr, $description:literal, $message:literal;)*) => {
        $(
            pub struct $name;

            impl<'r> ToResponse<'r> for $name {
                fn response() -> (&'r str, RefOr<ResponseObject>) {
                    (
                        stringify!($name),
                        error_response($description, $status, $error, $message).into(),
                    )
                }
            }
        )*
    };
}

error_responses! {
    BadRequest = 400, ApiError::BadRequest(String::new()),
        "Invalid JSON, a bad query parameter or a non-numeric id.",
        "page must be a positive integer, not \"0\"";
    Unauthorized = 401, ApiError::Unauthorized,
        "A missing, malformed, unknown or revoked key.",
        "A valid API key is required: send \"Authorization: Token <api-key>\"";
    NotFound = 404, ApiError::NotFound(""),
        "No such customer for this account, or no such route.",
        "Customer not found";
    MethodNotAllowed = 405, ApiError::MethodNotAllowed,
        "The path does not support the method.",
        "The method is not allowed on this path";
    PayloadTooLarge = 413, ApiError::PayloadTooLarge,
        "The body is over 64 KiB.",
        "The request body is too large";
    UnsupportedMediaType = 415, ApiError::UnsupportedMediaType,
        "The body was not sent as `application/json`.",
        "The request body must be JSON, sent with Content-Type: application/json";
    ValidationFailed = 422, ApiError::Validation(Default::default()),
        "A body of the wrong shape or with invalid values; every invalid field is listed.",
        "";
    RateLimited = 429, ApiError::RateLimited { retry_after_secs: 0 },
        "Too many requests.",
        "Too many requests for this API key; retry after the time in Retry-After";
    Internal = 500, ApiError::Internal(String::new()),
        "An internal error; the body never carries its details.",
        "An internal error occurred";
    Unavailable = 503, ApiError::Unavailable(String::new()),
        "The database cannot be reached.",
        "The service is temporarily unavailable; retry shortly";
}

/// What the annotations cannot say: the security scheme, the error schema,
/// distinct ids for `PATCH`, and the `.json` twin of every customer path.
struct Finish;

impl Modify for Finish {
    fn modify(&self, openapi: &mut Document) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "Token",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "Authorization",
                "The API key as `Token <api-key>`, e.g. \
                 `Token ce6988f6-6fb24b1f843ca1717a0f93f72b1cc78c`. Rails' \
                 `Token token=\"<api-key>\"` and `Bearer <api-key>` are accepted too; the \
                 scheme name is case-insensitive.",
            ))),
        );
        components
            .schemas
            .insert("Error".to_owned(), error_schema(None, true).into());

        let paths = &mut openapi.paths.paths;
        for item in paths.values_mut() {
            if let Some(patch) = item.patch.as_mut() {
                rename_patch(patch);
            }
            if let Some(post) = item.post.as_mut() {
                describe_location(post);
            }
            if let Some(get) = item.get.as_mut() {
                unbound_page(get);
            }
            for method in [
                HttpMethod::Get,
                HttpMethod::Put,
                HttpMethod::Patch,
                HttpMethod::Delete,
            ] {
                if let Some(operation) = operation_mut(item, method) {
                    id_with_suffix(operation);
                }
            }
        }
        for (path, item) in paths.iter_mut() {
            if !path.starts_with("/api/v1/customers") {
                continue;
            }
            let member = path.ends_with("{id}");
            for method in [
                HttpMethod::Get,
                HttpMethod::Post,
                HttpMethod::Put,
                HttpMethod::Patch,
                HttpMethod::Delete,
            ] {
                if let Some(operation) = operation_mut(item, method.clone()) {
                    conditional_requests(operation, method, member);
                }
            }
        }
        // The collection's twin is a path of its own; a customer's suffix is
        // part of its id. Documenting `{id}.json` as a path of its own would
        // make one customer two resources to a client, and to schemathesis,
        // which then takes a customer deleted under one name for one that
        // vanished under the other.
        if let Some(mut item) = paths.get("/api/v1/customers").cloned() {
            for method in [HttpMethod::Get, HttpMethod::Post] {
                if let Some(operation) = operation_mut(&mut item, method) {
                    suffix(operation);
                }
            }
            paths.insert("/api/v1/customers.json".to_owned(), item);
        }
    }
}

fn etag_header() -> utoipa::openapi::Header {
    required_header(
        "The customer's strong entity tag; it changes exactly when the stored customer does.",
        string_schema(false).pattern(Some(r#"^"[0-9]+-[0-9]+"$"#)),
    )
}

fn add_error(operation: &mut Operation, status: u16, error: ApiError, description: &str) {
    let response = error_response(description, status, error, "");
    operation
        .responses
        .responses
        .insert(status.to_string(), response.into());
}

/// Entity tags, `If-Match`, `If-None-Match` and `Idempotency-Key`, which the
/// handlers read from the header map rather than from typed parameters.
fn conditional_requests(operation: &mut Operation, method: HttpMethod, member: bool) {
    let writes = !matches!(method, HttpMethod::Get);
    // The three request headers are described in prose rather than as
    // parameters: a generated client or fuzzer that fills them with
    // arbitrary values turns every request into a precondition failure or a
    // reused key, which says nothing about the request itself.
    let mut notes = Vec::new();
    if writes {
        notes.push(
            "`Idempotency-Key` (1 to 255 printable ASCII characters) makes a retry safe: \
             the same request again with the same key, within 24 hours, gets the first \
             answer byte for byte with `Idempotent-Replayed: true` and changes nothing; \
             the key with another request is `422 idempotency_key_reused`, and while the \
             first is still being carried out, `409 idempotency_key_in_use`.",
        );
    }
    if member && writes {
        notes.push(
            "`If-Match` with the customer's `ETag` (or `*`) makes the change only if the \
             customer is still as the client saw it; otherwise `412 precondition_failed` \
             and nothing changes.",
        );
    }
    if member && !writes {
        notes.push(
            "`If-None-Match` with the customer's `ETag` answers `304` without a body when \
             the client's copy is current.",
        );
    }
    if !notes.is_empty() {
        let description = operation.description.get_or_insert_with(String::new);
        for note in notes {
            description.push_str("\n\n");
            description.push_str(note);
        }
    }

    for status in ["200", "201"] {
        if let Some(RefOr::T(ok)) = operation.responses.responses.get_mut(status)
            && (member || status == "201")
        {
            ok.headers.insert("ETag".to_owned(), etag_header().into());
        }
    }
    if member && !writes {
        let not_modified = ResponseBuilder::new()
            .description("The client's copy is current; no body.")
            .header("ETag", etag_header())
            .build();
        operation
            .responses
            .responses
            .insert("304".to_owned(), not_modified.into());
    }
    if member && writes {
        add_error(
            operation,
            412,
            ApiError::PreconditionFailed,
            "`If-Match` named another version; nothing changed.",
        );
    }
    if writes {
        add_error(
            operation,
            409,
            ApiError::IdempotencyKeyInUse,
            "A request with this `Idempotency-Key` is still being carried out.",
        );
        // A body-less delete has no other 422; the others document both.
        let reused = error_response(
            "The `Idempotency-Key` was used for a different request, or the body \
             has invalid values (`validation_failed`, listing each field).",
            422,
            ApiError::Validation(Default::default()),
            "",
        );
        let mut reused = reused;
        if let Some(RefOr::T(content)) = reused.content.get_mut("application/json") {
            content.schema = Some(
                utoipa::openapi::schema::OneOfBuilder::new()
                    .item(error_schema(Some("validation_failed"), true))
                    .item(error_schema(Some("idempotency_key_reused"), false))
                    .into(),
            );
        }
        operation
            .responses
            .responses
            .insert("422".to_owned(), reused.into());
    }
}

fn operation_mut(item: &mut PathItem, method: HttpMethod) -> Option<&mut Operation> {
    match method {
        HttpMethod::Get => item.get.as_mut(),
        HttpMethod::Post => item.post.as_mut(),
        HttpMethod::Put => item.put.as_mut(),
        HttpMethod::Patch => item.patch.as_mut(),
        HttpMethod::Delete => item.delete.as_mut(),
        _ => None,
    }
}

/// The annotation's header attribute cannot mark a header required or give
/// it a pattern, so the `Location` of a `201` is set here.
fn describe_location(operation: &mut Operation) {
    let Some(RefOr::T(created)) = operation.responses.responses.get_mut("201") else {
        return;
    };
    created.headers.insert(
        "Location".to_owned(),
        required_header(
            "The new customer's path, `/api/v1/customers/{id}`.",
            string_schema(false).pattern(Some("^/api/v1/customers/[1-9][0-9]*$")),
        )
        .into(),
    );
}

/// Any positive page is valid, however large: one past the end is simply
/// empty. The annotation can only name a Rust integer type, whose format
/// would set an upper bound the server does not have.
fn unbound_page(operation: &mut Operation) {
    for parameter in operation.parameters.iter_mut().flatten() {
        let RefOr::T(parameter) = parameter else {
            continue;
        };
        if parameter.name != "page" {
            continue;
        }
        parameter.schema = Some(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(1))
                .into(),
        );
    }
}

/// A customer's id is a positive integer; `.json` may follow it.
fn id_with_suffix(operation: &mut Operation) {
    for parameter in operation.parameters.iter_mut().flatten() {
        let RefOr::T(parameter) = parameter else {
            continue;
        };
        if parameter.name != "id" {
            continue;
        }
        parameter.schema = Some(
            utoipa::openapi::schema::OneOfBuilder::new()
                .item(
                    ObjectBuilder::new()
                        .schema_type(Type::Integer)
                        .format(Some(SchemaFormat::KnownFormat(
                            utoipa::openapi::KnownFormat::Int64,
                        )))
                        .minimum(Some(1)),
                )
                .item(string_schema(false).pattern(Some(r"^[0-9]+\.json$")))
                .into(),
        );
    }
}

fn rename_patch(operation: &mut Operation) {
    operation.operation_id = Some("patch_customer".to_owned());
    operation.summary = Some("Update a customer (PATCH)".to_owned());
}

fn suffix(operation: &mut Operation) {
    if let Some(id) = operation.operation_id.as_mut() {
        id.push_str("_json");
    }
    if let Some(summary) = operation.summary.as_mut() {
        summary.push_str(" (.json)");
    }
}

/// The reference page's examples.
pub mod examples {
    use serde_json::{Value, json};

    fn address(firstname: &str) -> Value {
        json!({
            "firstname": firstname,
            "lastname": "Meikäläinen",
            "company": null,
            "company_id": null,
            "address": "Testikatu 1",
            "city": "Helsinki",
            "postcode": "00100",
            "phone": "0401234567",
            "country": "FI"
        })
    }

    pub fn customer() -> Value {
        json!({
            "id": 1,
            "email": "matti.meikalainen@example.com",
            "customer_locale": "fi_FI",
            "address": address("Matti"),
            "created_at": "2020-08-18T13:12:06.000+03:00",
            "updated_at": "2020-08-18T13:12:06.000+03:00"
        })
    }

    pub fn customer_list() -> Value {
        json!({
            "has_more": false,
            "data": [{
                "id": 1,
                "email": "matti.meikalainen@example.com",
                "customer_locale": "fi_FI",
                "address": {
                    "firstname": "Matti",
                    "lastname": "Meikäläinen",
                    "company": "",
                    "company_id": "",
                    "address": "Testikatu 1",
                    "city": "Helsinki",
                    "postcode": "00100",
                    "phone": "+358401234567",
                    "country": "FI"
                },
                "created_at": "2020-08-13T14:19:29.000+03:00",
                "updated_at": "2020-08-13T14:40:01.000+03:00"
            }]
        })
    }

    pub fn create_request() -> Value {
        json!({
            "email": "matti.meikalainen@example.com",
            "customer_locale": "fi_FI",
            "address": {
                "firstname": "Matti",
                "lastname": "Meikäläinen",
                "address": "Testikatu 1",
                "postcode": "00100",
                "city": "Helsinki",
                "phone": "0401234567",
                "country": "FI"
            }
        })
    }

    pub fn update_request() -> Value {
        json!({
            "email": "matti.meikalainen@example2.com",
            "address": {"firstname": "Uusi nimi"}
        })
    }

    pub fn updated_customer() -> Value {
        json!({
            "id": 1,
            "email": "matti.meikalainen@example2.com",
            "customer_locale": "fi_FI",
            "address": address("Uusi nimi"),
            "created_at": "2020-08-18T13:12:06.000+03:00",
            "updated_at": "2020-08-18T13:19:21.000+03:00"
        })
    }

    pub fn validation_error() -> Value {
        json!({
            "errors": [
                "Email is not a valid email address",
                "Address postcode is required; send \"-\" if it is not known"
            ],
            "code": "validation_failed",
            "fields": {
                "email": ["is not a valid email address"],
                "address.postcode": ["is required; send \"-\" if it is not known"]
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::routes::ROUTES;

    fn documented_operations() -> Vec<(String, String)> {
        let value = serde_json::to_value(document()).unwrap();
        let mut found = Vec::new();
        for (path, item) in value["paths"].as_object().unwrap() {
            for method in [
                "get", "put", "post", "delete", "options", "head", "patch", "trace",
            ] {
                if item.get(method).is_some() {
                    found.push((method.to_uppercase(), path.clone()));
                }
            }
        }
        found
    }

    #[test]
    fn every_route_has_a_documented_operation_and_every_operation_a_route() {
        let documented = documented_operations();
        let routed: Vec<(String, String)> = ROUTES
            .iter()
            .filter(|r| r.endpoint.documented())
            .map(|r| (r.method.to_string(), r.path.to_owned()))
            .collect();
        for route in &routed {
            assert!(
                documented.contains(route),
                "{} {} is routed but not documented",
                route.0,
                route.1
            );
        }
        for operation in &documented {
            assert!(
                routed.contains(operation),
                "{} {} is documented but not routed",
                operation.0,
                operation.1
            );
        }
    }

    #[test]
    fn operation_ids_are_unique() {
        let value = serde_json::to_value(document()).unwrap();
        let mut ids: Vec<&str> = value["paths"]
            .as_object()
            .unwrap()
            .values()
            .flat_map(|item| item.as_object().unwrap().values())
            .filter_map(|op| op.get("operationId").and_then(Value::as_str))
            .collect();
        let count = ids.len();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), count, "{ids:?}");
    }

    #[test]
    fn the_country_pattern_accepts_exactly_the_assigned_codes_in_either_case() {
        let pattern = country().pattern.unwrap();
        let body = pattern
            .strip_prefix("^(?:-|")
            .and_then(|p| p.strip_suffix(")$"))
            .unwrap();
        let mut accepted: Vec<String> = Vec::new();
        for group in body.split('|') {
            let (first, second) = group
                .strip_prefix('[')
                .and_then(|g| g.strip_suffix(']'))
                .and_then(|g| g.split_once("]["))
                .unwrap();
            for a in first.chars() {
                for b in second.chars() {
                    accepted.push(format!("{a}{b}"));
                }
            }
        }
        let mut expected: Vec<String> = Vec::new();
        for code in isocountry::CountryCode::iter() {
            let code = code.alpha2();
            for a in [code[..1].to_uppercase(), code[..1].to_lowercase()] {
                for b in [code[1..].to_uppercase(), code[1..].to_lowercase()] {
                    expected.push(format!("{a}{b}"));
                }
            }
        }
        accepted.sort();
        expected.sort();
        assert_eq!(accepted, expected);
        assert!(!accepted.contains(&"XX".to_owned()));
    }

    #[test]
    fn it_is_openapi_3_1_with_the_token_scheme() {
        let value: Value = serde_json::from_str(document_string()).unwrap();
        assert_eq!(value["openapi"], "3.1.0");
        let scheme = &value["components"]["securitySchemes"]["Token"];
        assert_eq!(scheme["type"], "apiKey");
        assert_eq!(scheme["in"], "header");
        assert_eq!(scheme["name"], "Authorization");
    }
}
