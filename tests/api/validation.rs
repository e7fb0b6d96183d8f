//! Every field rule of SPEC §1, each reported in `fields`, with nothing
//! stored by a failed request.

use serde_json::{Value, json};

use crate::on_every_store;
use crate::support::{TestApp, assert_error, customer};

on_every_store!(
    each_missing_required_field_is_listed_and_nothing_is_stored,
    every_invalid_field_of_one_body_is_listed_at_once,
    a_missing_address_is_reported_once,
    the_dash_placeholder_is_accepted_for_required_values,
    strings_are_trimmed_and_an_empty_optional_stays_empty,
    a_blank_required_string_is_invalid,
    strings_longer_than_their_limits_are_invalid,
    emails_must_be_valid_and_keep_their_case,
    the_locale_defaults_to_fi_fi_and_accepts_only_two_values,
    countries_must_be_assigned_iso_codes_and_are_stored_upper_case,
    unknown_keys_are_refused_at_the_top_level_and_in_the_address,
    read_only_keys_are_ignored,
    values_of_the_wrong_type_are_invalid,
    a_body_that_is_not_an_object_is_invalid,
    absent_optional_fields_are_null,
);

/// Posts `body`, expects a 422, and returns its `fields`.
async fn invalid(app: &TestApp, body: &Value) -> serde_json::Map<String, Value> {
    let response = app.post_json("/api/v1/customers", body).await;
    let error = assert_error(response, 422, "validation_failed").await;
    let fields = error["fields"]
        .as_object()
        .expect("fields on a 422")
        .clone();
    assert_eq!(
        error["errors"].as_array().unwrap().len(),
        fields
            .values()
            .map(|m| m.as_array().unwrap().len())
            .sum::<usize>(),
        "one sentence per message: {error}"
    );
    fields
}

async fn assert_nothing_stored(app: &TestApp) {
    assert!(app.list_all().await.is_empty(), "nothing may be stored");
}

async fn each_missing_required_field_is_listed_and_nothing_is_stored(app: TestApp) {
    for path in [
        "email",
        "address.firstname",
        "address.lastname",
        "address.city",
        "address.postcode",
        "address.country",
    ] {
        let mut body = customer(1);
        match path.split_once('.') {
            Some((_, key)) => body["address"].as_object_mut().unwrap().remove(key),
            None => body.as_object_mut().unwrap().remove(path),
        };
        let fields = invalid(&app, &body).await;
        assert_eq!(fields.keys().collect::<Vec<_>>(), [path], "{body}");
    }
    let fields = invalid(&app, &json!({"address": {}})).await;
    assert_eq!(fields.len(), 6, "{fields:?}");
    let error = assert_error(
        app.post_json("/api/v1/customers", &json!({"address": {}}))
            .await,
        422,
        "validation_failed",
    )
    .await;
    assert!(
        error["errors"]
            .as_array()
            .unwrap()
            .contains(&json!("Email is required"))
    );
    assert_nothing_stored(&app).await;
}

async fn every_invalid_field_of_one_body_is_listed_at_once(app: TestApp) {
    let body = json!({
        "email": "not an email",
        "customer_locale": "sv_SE",
        "address": {
            "firstname": "",
            "lastname": "Meikäläinen",
            "city": "Helsinki",
            "country": "XX"
        }
    });
    let fields = invalid(&app, &body).await;
    let mut keys: Vec<_> = fields.keys().cloned().collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "address.country",
            "address.firstname",
            "address.postcode",
            "customer_locale",
            "email"
        ]
    );
    assert_nothing_stored(&app).await;
}

async fn a_missing_address_is_reported_once(app: TestApp) {
    for body in [
        json!({"email": "a@example.com"}),
        json!({"email": "a@example.com", "address": null}),
    ] {
        let fields = invalid(&app, &body).await;
        assert_eq!(fields.keys().collect::<Vec<_>>(), ["address"]);
    }
    let fields = invalid(
        &app,
        &json!({"email": "a@example.com", "address": "Testikatu 1"}),
    )
    .await;
    assert_eq!(fields.keys().collect::<Vec<_>>(), ["address"]);
}

async fn the_dash_placeholder_is_accepted_for_required_values(app: TestApp) {
    let body = json!({
        "email": "-",
        "address": {
            "firstname": "-", "lastname": "-", "city": "-", "postcode": "-", "country": "-"
        }
    });
    let created = app.create(&body).await;
    assert_eq!(created["email"], "-");
    for key in ["firstname", "lastname", "city", "postcode", "country"] {
        assert_eq!(created["address"][key], "-", "{key}");
    }
}

async fn strings_are_trimmed_and_an_empty_optional_stays_empty(app: TestApp) {
    let mut body = customer(1);
    body["email"] = json!("  matti@example.com\n");
    body["address"]["firstname"] = json!("  Matti ");
    body["address"]["company"] = json!("   ");
    body["address"]["company_id"] = json!("");
    let created = app.create(&body).await;
    assert_eq!(created["email"], "matti@example.com");
    assert_eq!(created["address"]["firstname"], "Matti");
    assert_eq!(created["address"]["company"], "");
    assert_eq!(created["address"]["company_id"], "");
}

async fn a_blank_required_string_is_invalid(app: TestApp) {
    let mut body = customer(1);
    body["address"]["city"] = json!("   ");
    let fields = invalid(&app, &body).await;
    assert_eq!(fields.keys().collect::<Vec<_>>(), ["address.city"]);
    assert_nothing_stored(&app).await;
}

async fn strings_longer_than_their_limits_are_invalid(app: TestApp) {
    // Characters are counted, not bytes: ä is two bytes in UTF-8.
    let mut body = customer(1);
    body["address"]["company"] = json!("ä".repeat(255));
    app.create(&body).await;

    for key in [
        "firstname",
        "lastname",
        "company",
        "company_id",
        "address",
        "city",
        "postcode",
        "phone",
    ] {
        let mut body = customer(2);
        body["address"][key] = json!("x".repeat(256));
        let fields = invalid(&app, &body).await;
        assert_eq!(
            fields.keys().cloned().collect::<Vec<_>>(),
            [format!("address.{key}")]
        );
    }

    let local = "a".repeat(64);
    let domain = format!(
        "{}.{}.{}.fi",
        "b".repeat(63),
        "c".repeat(63),
        "d".repeat(58)
    );
    let longest = format!("{local}@{domain}");
    assert_eq!(longest.len(), 254);
    let mut body = customer(3);
    body["email"] = json!(longest);
    app.create(&body).await;
    body["email"] = json!(format!("{local}@e{domain}"));
    let fields = invalid(&app, &body).await;
    assert_eq!(fields.keys().collect::<Vec<_>>(), ["email"]);
    assert_eq!(app.list_all().await.len(), 2);
}

async fn emails_must_be_valid_and_keep_their_case(app: TestApp) {
    for bad in [
        "matti",
        "matti@",
        "@example.com",
        "matti example@x.fi",
        "Matti <m@x.fi>",
        "m@localhost",
    ] {
        let mut body = customer(1);
        body["email"] = json!(bad);
        let fields = invalid(&app, &body).await;
        assert_eq!(
            fields["email"],
            json!(["is not a valid email address"]),
            "{bad}"
        );
    }
    let mut body = customer(1);
    body["email"] = json!("Matti.Meikalainen@Example.COM");
    let created = app.create(&body).await;
    assert_eq!(created["email"], "Matti.Meikalainen@Example.COM");
}

async fn the_locale_defaults_to_fi_fi_and_accepts_only_two_values(app: TestApp) {
    assert_eq!(app.create(&customer(1)).await["customer_locale"], "fi_FI");
    let mut body = customer(2);
    body["customer_locale"] = json!("en_US");
    assert_eq!(app.create(&body).await["customer_locale"], "en_US");
    body["customer_locale"] = json!(null);
    assert_eq!(app.create(&body).await["customer_locale"], "fi_FI");
    for bad in ["fi", "en_GB", "FI_fi", ""] {
        body["customer_locale"] = json!(bad);
        let fields = invalid(&app, &body).await;
        assert_eq!(
            fields.keys().collect::<Vec<_>>(),
            ["customer_locale"],
            "{bad}"
        );
    }
}

async fn countries_must_be_assigned_iso_codes_and_are_stored_upper_case(app: TestApp) {
    for (sent, stored) in [("fi", "FI"), ("Se", "SE"), ("ax", "AX"), ("SS", "SS")] {
        let mut body = customer(1);
        body["address"]["country"] = json!(sent);
        assert_eq!(app.create(&body).await["address"]["country"], stored);
    }
    for bad in ["XX", "FIN", "F", "Finland", "EU", "UK"] {
        let mut body = customer(1);
        body["address"]["country"] = json!(bad);
        let fields = invalid(&app, &body).await;
        assert_eq!(
            fields.keys().collect::<Vec<_>>(),
            ["address.country"],
            "{bad}"
        );
    }
}

async fn unknown_keys_are_refused_at_the_top_level_and_in_the_address(app: TestApp) {
    let mut body = customer(1);
    body["emial"] = json!("typo@example.com");
    body["address"]["zip"] = json!("00100");
    let fields = invalid(&app, &body).await;
    let mut keys: Vec<_> = fields.keys().cloned().collect();
    keys.sort();
    assert_eq!(keys, ["address.zip", "emial"]);
    assert_nothing_stored(&app).await;
}

async fn read_only_keys_are_ignored(app: TestApp) {
    let mut body = customer(1);
    body["id"] = json!(999_999);
    body["created_at"] = json!("2000-01-01T00:00:00.000+02:00");
    body["updated_at"] = json!("nonsense");
    let created = app.create(&body).await;
    assert_ne!(created["id"], 999_999);
    assert_ne!(created["created_at"], "2000-01-01T00:00:00.000+02:00");
}

async fn values_of_the_wrong_type_are_invalid(app: TestApp) {
    let mut body = customer(1);
    body["email"] = json!(42);
    body["address"]["postcode"] = json!(100);
    body["address"]["phone"] = json!(["040"]);
    let fields = invalid(&app, &body).await;
    assert_eq!(fields["email"], json!(["must be a string"]));
    assert_eq!(fields["address.postcode"], json!(["must be a string"]));
    assert_eq!(fields["address.phone"], json!(["must be a string"]));
    assert_eq!(fields.len(), 3);
}

async fn a_body_that_is_not_an_object_is_invalid(app: TestApp) {
    for body in [json!([1, 2]), json!("customer"), json!(null), json!(3)] {
        invalid(&app, &body).await;
    }
    assert_nothing_stored(&app).await;
}

async fn absent_optional_fields_are_null(app: TestApp) {
    let created = app.create(&customer(1)).await;
    for key in ["company", "company_id", "address", "phone"] {
        assert_eq!(created["address"][key], Value::Null, "{key}");
        assert!(created["address"].as_object().unwrap().contains_key(key));
    }
}
