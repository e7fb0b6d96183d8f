//! `PUT` (and `PATCH`): a partial update, merged key by key, atomic.

use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use tokio::task::JoinSet;

use crate::on_every_store;
use crate::support::{TestApp, assert_error, customer};

on_every_store!(
    an_update_changes_only_the_fields_it_names,
    null_clears_an_optional_field,
    null_or_empty_is_refused_for_a_required_field_and_nothing_changes,
    an_invalid_update_changes_nothing,
    a_no_op_update_leaves_updated_at_alone,
    a_real_change_moves_updated_at_but_not_created_at,
    patch_is_a_synonym_for_put,
    updating_a_missing_customer_is_not_found,
    concurrent_updates_of_different_fields_all_survive,
);

async fn fetch(app: &TestApp, id: &Value) -> Value {
    let response = app.get(&format!("/api/v1/customers/{id}")).await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

fn full_customer() -> Value {
    json!({
        "email": "matti@example.com",
        "customer_locale": "en_US",
        "address": {
            "firstname": "Matti", "lastname": "Meikäläinen", "company": "Yritys Oy",
            "company_id": "1234567-1", "address": "Testikatu 1", "city": "Helsinki",
            "postcode": "00100", "phone": "0401234567", "country": "FI"
        }
    })
}

async fn an_update_changes_only_the_fields_it_names(app: TestApp) {
    let before = app.create(&full_customer()).await;
    let path = format!("/api/v1/customers/{}", before["id"]);
    let response = app
        .put_json(
            &path,
            &json!({"address": {"firstname": "Uusi nimi", "country": "se"}}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let after: Value = response.json().await.unwrap();

    let mut expected = before.clone();
    expected["address"]["firstname"] = json!("Uusi nimi");
    expected["address"]["country"] = json!("SE");
    expected["updated_at"] = after["updated_at"].clone();
    assert_eq!(after, expected);
    assert_eq!(
        fetch(&app, &before["id"]).await,
        after,
        "the answer is what is stored"
    );
}

async fn null_clears_an_optional_field(app: TestApp) {
    let before = app.create(&full_customer()).await;
    let path = format!("/api/v1/customers/{}", before["id"]);
    let body =
        json!({"address": {"company": null, "phone": null, "address": null, "company_id": null}});
    let after: Value = app.put_json(&path, &body).await.json().await.unwrap();
    for key in ["company", "phone", "address", "company_id"] {
        assert_eq!(after["address"][key], Value::Null, "{key}");
    }
    assert_eq!(after["address"]["city"], "Helsinki");

    let reset: Value = app
        .put_json(&path, &json!({"customer_locale": null}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        reset["customer_locale"], "fi_FI",
        "a cleared locale is the default"
    );
}

async fn null_or_empty_is_refused_for_a_required_field_and_nothing_changes(app: TestApp) {
    let before = app.create(&full_customer()).await;
    let path = format!("/api/v1/customers/{}", before["id"]);
    for (body, field) in [
        (json!({"email": null}), "email"),
        (json!({"email": ""}), "email"),
        (json!({"address": {"lastname": null}}), "address.lastname"),
        (json!({"address": {"city": "  "}}), "address.city"),
        (json!({"address": {"country": null}}), "address.country"),
        (json!({"address": null}), "address"),
    ] {
        let error = assert_error(app.put_json(&path, &body).await, 422, "validation_failed").await;
        let fields: Vec<_> = error["fields"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        assert_eq!(fields, [field], "{body}");
    }
    assert_eq!(fetch(&app, &before["id"]).await, before);
}

async fn an_invalid_update_changes_nothing(app: TestApp) {
    let before = app.create(&full_customer()).await;
    let path = format!("/api/v1/customers/{}", before["id"]);
    let body = json!({
        "address": {"firstname": "Uusi", "country": "XX"},
        "email": "bad",
        "nickname": "x"
    });
    let error = assert_error(app.put_json(&path, &body).await, 422, "validation_failed").await;
    assert_eq!(error["fields"].as_object().unwrap().len(), 3, "{error}");
    assert_eq!(fetch(&app, &before["id"]).await, before, "not half-changed");

    let bad_json = app
        .request(Method::PUT, &path)
        .header("Content-Type", "application/json")
        .body("{\"email\": ")
        .send()
        .await
        .unwrap();
    assert_error(bad_json, 400, "bad_request").await;
    assert_eq!(fetch(&app, &before["id"]).await, before);
}

async fn a_no_op_update_leaves_updated_at_alone(app: TestApp) {
    let before = app.create(&full_customer()).await;
    let path = format!("/api/v1/customers/{}", before["id"]);
    tokio::time::sleep(Duration::from_millis(20)).await;
    for body in [
        json!({}),
        json!({"email": "matti@example.com", "address": {"city": " Helsinki "}}),
        json!({"address": {"country": "fi"}}),
        before.clone(),
    ] {
        let after: Value = app.put_json(&path, &body).await.json().await.unwrap();
        assert_eq!(after, before, "{body}");
    }
    assert_eq!(fetch(&app, &before["id"]).await, before);
}

async fn a_real_change_moves_updated_at_but_not_created_at(app: TestApp) {
    let before = app.create(&full_customer()).await;
    let path = format!("/api/v1/customers/{}", before["id"]);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let after: Value = app
        .put_json(&path, &json!({"address": {"phone": "+358401234567"}}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(after["created_at"], before["created_at"]);
    let earlier: jiff::Timestamp = before["updated_at"].as_str().unwrap().parse().unwrap();
    let later: jiff::Timestamp = after["updated_at"].as_str().unwrap().parse().unwrap();
    assert!(later > earlier, "{earlier} then {later}");
}

async fn patch_is_a_synonym_for_put(app: TestApp) {
    let before = app.create(&full_customer()).await;
    let path = format!("/api/v1/customers/{}.json", before["id"]);
    let response = app
        .send_json(Method::PATCH, &path, &json!({"address": {"city": "Espoo"}}))
        .await;
    assert_eq!(response.status(), 200);
    let after: Value = response.json().await.unwrap();
    assert_eq!(after["address"]["city"], "Espoo");
    assert_eq!(after["address"]["firstname"], "Matti");
}

async fn updating_a_missing_customer_is_not_found(app: TestApp) {
    let response = app
        .put_json(
            "/api/v1/customers/424242",
            &json!({"address": {"city": "Espoo"}}),
        )
        .await;
    assert_error(response, 404, "not_found").await;
}

async fn concurrent_updates_of_different_fields_all_survive(app: TestApp) {
    let app = Arc::new(app);
    let changes = [
        json!({"email": "uusi@example.com"}),
        json!({"customer_locale": "en_US"}),
        json!({"address": {"firstname": "F"}}),
        json!({"address": {"lastname": "L"}}),
        json!({"address": {"company": "C"}}),
        json!({"address": {"company_id": "1234567-1"}}),
        json!({"address": {"address": "A"}}),
        json!({"address": {"city": "Espoo"}}),
        json!({"address": {"postcode": "02100"}}),
        json!({"address": {"phone": "040"}}),
        json!({"address": {"country": "SE"}}),
    ];
    for round in 0..5 {
        let id = app.create(&customer(round)).await["id"].clone();
        let mut tasks = JoinSet::new();
        for change in changes.clone() {
            let app = Arc::clone(&app);
            let path = format!("/api/v1/customers/{id}");
            tasks.spawn(async move { app.put_json(&path, &change).await.status() });
        }
        for status in tasks.join_all().await {
            assert_eq!(status, 200);
        }
        let after = fetch(&app, &id).await;
        assert_eq!(after["email"], "uusi@example.com");
        assert_eq!(after["customer_locale"], "en_US");
        let expected = json!({
            "firstname": "F", "lastname": "L", "company": "C", "company_id": "1234567-1",
            "address": "A", "city": "Espoo", "postcode": "02100", "phone": "040",
            "country": "SE"
        });
        assert_eq!(after["address"], expected, "round {round}");
    }
}
