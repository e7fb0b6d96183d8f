//! Safe retries with `Idempotency-Key`, and concurrent edits with entity
//! tags, on every store.

use std::sync::Arc;

use reqwest::{Method, Response};
use serde_json::{Value, json};
use tokio::task::JoinSet;

use crate::on_every_store;
use crate::support::{TestApp, assert_error, customer};

on_every_store!(
    a_replay_gets_the_first_answer_byte_for_byte_and_changes_nothing,
    a_key_reused_for_another_request_is_422_and_changes_nothing,
    simultaneous_requests_with_one_key_make_exactly_one_change,
    a_retry_after_a_restart_gets_the_recorded_answer,
    keys_are_scoped_to_the_account,
    a_malformed_key_is_a_bad_request,
    updates_and_deletes_replay_too,
    deleting_a_customer_forgets_the_answers_that_carry_its_data,
    every_single_customer_answer_carries_an_etag_that_moves_only_with_a_change,
    a_matching_if_none_match_is_304_without_a_body,
    a_stale_if_match_is_412_on_every_method_and_changes_nothing,
    if_match_star_matches_any_existing_customer,
);

/// The parts of an answer that a replay must repeat: status, `Location`,
/// `ETag`, content type and the body's bytes.
type Parts = (u16, Option<String>, Option<String>, Option<String>, Vec<u8>);

async fn parts(response: Response) -> Parts {
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let (location, etag, kind) = (header("location"), header("etag"), header("content-type"));
    let status = response.status().as_u16();
    let body = response.bytes().await.unwrap().to_vec();
    (status, location, etag, kind, body)
}

async fn keyed(
    app: &TestApp,
    method: Method,
    path: &str,
    key: &str,
    body: Option<&Value>,
) -> Response {
    let request = app.request(method, path).header("Idempotency-Key", key);
    let request = match body {
        Some(body) => request
            .header("Content-Type", "application/json")
            .body(body.to_string()),
        None => request,
    };
    request.send().await.unwrap()
}

fn replayed(response: &Response) -> bool {
    response
        .headers()
        .get("idempotent-replayed")
        .is_some_and(|v| v == "true")
}

async fn a_replay_gets_the_first_answer_byte_for_byte_and_changes_nothing(app: TestApp) {
    let body = customer(1);
    let first = keyed(
        &app,
        Method::POST,
        "/api/v1/customers",
        "luonti-1",
        Some(&body),
    )
    .await;
    assert!(!replayed(&first));
    let first = parts(first).await;
    assert_eq!(first.0, 201);

    // The same request again, spelt with other white space.
    let again = app
        .request(Method::POST, "/api/v1/customers")
        .header("Idempotency-Key", "luonti-1")
        .header("Content-Type", "application/json")
        .body(serde_json::to_string_pretty(&body).unwrap())
        .send()
        .await
        .unwrap();
    assert!(replayed(&again));
    assert_eq!(parts(again).await, first);
    assert_eq!(app.list_all().await.len(), 1, "one customer, not two");
}

async fn a_key_reused_for_another_request_is_422_and_changes_nothing(app: TestApp) {
    let first = keyed(
        &app,
        Method::POST,
        "/api/v1/customers",
        "k",
        Some(&customer(1)),
    )
    .await;
    assert_eq!(first.status(), 201);
    let other_body = keyed(
        &app,
        Method::POST,
        "/api/v1/customers",
        "k",
        Some(&customer(2)),
    )
    .await;
    assert_error(other_body, 422, "idempotency_key_reused").await;
    let id = app.list_all().await[0]["id"].clone();
    let other_method = keyed(
        &app,
        Method::PUT,
        &format!("/api/v1/customers/{id}"),
        "k",
        Some(&json!({"address": {"city": "Espoo"}})),
    )
    .await;
    assert_error(other_method, 422, "idempotency_key_reused").await;
    let all = app.list_all().await;
    assert_eq!(all.len(), 1);
    assert_eq!(all[0]["address"]["city"], "Helsinki");
}

async fn simultaneous_requests_with_one_key_make_exactly_one_change(app: TestApp) {
    let app = Arc::new(app);
    let mut tasks = JoinSet::new();
    for _ in 0..12 {
        let app = Arc::clone(&app);
        tasks.spawn(async move {
            let r = keyed(
                &app,
                Method::POST,
                "/api/v1/customers",
                "yksi",
                Some(&customer(7)),
            )
            .await;
            r.status().as_u16()
        });
    }
    let statuses = tasks.join_all().await;
    assert!(
        statuses.iter().all(|s| *s == 201 || *s == 409),
        "{statuses:?}"
    );
    assert!(statuses.contains(&201), "{statuses:?}");
    assert_eq!(app.list_all().await.len(), 1, "{statuses:?}");

    let later = keyed(
        &app,
        Method::POST,
        "/api/v1/customers",
        "yksi",
        Some(&customer(7)),
    )
    .await;
    assert!(replayed(&later));
}

async fn a_retry_after_a_restart_gets_the_recorded_answer(mut app: TestApp) {
    let first = keyed(
        &app,
        Method::POST,
        "/api/v1/customers",
        "ennen",
        Some(&customer(1)),
    )
    .await;
    let first = parts(first).await;
    app.restart().await;
    let again = keyed(
        &app,
        Method::POST,
        "/api/v1/customers",
        "ennen",
        Some(&customer(1)),
    )
    .await;
    assert!(replayed(&again));
    assert_eq!(parts(again).await, first);
    assert_eq!(app.list_all().await.len(), 1);
}

async fn keys_are_scoped_to_the_account(app: TestApp) {
    let other = app.key_for("other").await;
    let mine = keyed(
        &app,
        Method::POST,
        "/api/v1/customers",
        "sama",
        Some(&customer(1)),
    )
    .await;
    assert_eq!(mine.status(), 201);
    let theirs = app
        .request_as(&other, Method::POST, "/api/v1/customers")
        .header("Idempotency-Key", "sama")
        .header("Content-Type", "application/json")
        .body(customer(1).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(theirs.status(), 201);
    assert!(!replayed(&theirs), "another account's key is another key");
}

async fn a_malformed_key_is_a_bad_request(app: TestApp) {
    for key in ["".to_owned(), "x".repeat(256), "tab\there".to_owned()] {
        let response = app
            .request(Method::POST, "/api/v1/customers")
            .header("Idempotency-Key", key.as_str())
            .header("Content-Type", "application/json")
            .body(customer(1).to_string())
            .send()
            .await
            .unwrap();
        assert_error(response, 400, "bad_request").await;
    }
    assert!(app.list_all().await.is_empty());
}

async fn updates_and_deletes_replay_too(app: TestApp) {
    let created = app.create(&customer(1)).await;
    let path = format!("/api/v1/customers/{}", created["id"]);
    let change = json!({"address": {"city": "Tampere"}});
    let first = parts(keyed(&app, Method::PATCH, &path, "muutos", Some(&change)).await).await;
    // Another client changes the customer in between.
    app.put_json(&path, &json!({"address": {"city": "Turku"}}))
        .await;
    let again = keyed(&app, Method::PATCH, &path, "muutos", Some(&change)).await;
    assert!(replayed(&again));
    assert_eq!(parts(again).await, first);
    let now: Value = app.get(&path).await.json().await.unwrap();
    assert_eq!(
        now["address"]["city"], "Turku",
        "the replay changed nothing"
    );

    let deleted = keyed(&app, Method::DELETE, &path, "poisto", None).await;
    assert_eq!(deleted.status(), 204);
    let again = keyed(&app, Method::DELETE, &path, "poisto", None).await;
    assert_eq!(
        again.status(),
        204,
        "a replayed delete answers as the first did"
    );
    assert!(replayed(&again));
}

async fn deleting_a_customer_forgets_the_answers_that_carry_its_data(app: TestApp) {
    let first = keyed(
        &app,
        Method::POST,
        "/api/v1/customers",
        "unohda",
        Some(&customer(1)),
    )
    .await;
    let first: Value = first.json().await.unwrap();
    let path = format!("/api/v1/customers/{}", first["id"]);
    assert_eq!(app.delete(&path).await.status(), 204);

    // The recorded answer held the customer's personal data; it is gone, so
    // the key no longer replays it.
    let again = keyed(
        &app,
        Method::POST,
        "/api/v1/customers",
        "unohda",
        Some(&customer(1)),
    )
    .await;
    assert!(!replayed(&again));
    let again: Value = again.json().await.unwrap();
    assert_ne!(again["id"], first["id"]);
}

fn etag_of(response: &Response) -> String {
    response.headers()["etag"].to_str().unwrap().to_owned()
}

async fn every_single_customer_answer_carries_an_etag_that_moves_only_with_a_change(app: TestApp) {
    let created = app.post_json("/api/v1/customers", &customer(1)).await;
    let tag = etag_of(&created);
    assert!(
        tag.starts_with('"') && tag.ends_with('"'),
        "a strong tag: {tag}"
    );
    let id = created.json::<Value>().await.unwrap()["id"].clone();
    let path = format!("/api/v1/customers/{id}");
    assert_eq!(etag_of(&app.get(&path).await), tag);

    let unchanged = app
        .put_json(&path, &json!({"address": {"city": "Helsinki"}}))
        .await;
    assert_eq!(etag_of(&unchanged), tag, "a no-op keeps the tag");
    let changed = app
        .put_json(&path, &json!({"address": {"city": "Vantaa"}}))
        .await;
    let new_tag = etag_of(&changed);
    assert_ne!(new_tag, tag);
    assert_eq!(etag_of(&app.get(&path).await), new_tag);
}

async fn a_matching_if_none_match_is_304_without_a_body(app: TestApp) {
    let created = app.post_json("/api/v1/customers", &customer(1)).await;
    let tag = etag_of(&created);
    let id = created.json::<Value>().await.unwrap()["id"].clone();
    let path = format!("/api/v1/customers/{id}");
    for value in [
        tag.clone(),
        format!("W/{tag}"),
        "*".to_owned(),
        format!("\"0-0\", {tag}"),
    ] {
        let response = app
            .request(Method::GET, &path)
            .header("If-None-Match", value.as_str())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 304, "{value}");
        assert_eq!(etag_of(&response), tag);
        assert!(response.bytes().await.unwrap().is_empty());
    }
    let stale = app
        .request(Method::GET, &path)
        .header("If-None-Match", "\"1-999\"")
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), 200);
}

async fn a_stale_if_match_is_412_on_every_method_and_changes_nothing(app: TestApp) {
    let created = app.post_json("/api/v1/customers", &customer(1)).await;
    let tag = etag_of(&created);
    let before: Value = created.json().await.unwrap();
    let path = format!("/api/v1/customers/{}", before["id"]);
    app.put_json(&path, &json!({"address": {"city": "Lahti"}}))
        .await;
    let current: Value = app.get(&path).await.json().await.unwrap();

    for method in [Method::PUT, Method::PATCH, Method::DELETE] {
        for stale in [tag.clone(), format!("W/{}", etag_of(&app.get(&path).await))] {
            let response = app
                .request(method.clone(), &path)
                .header("If-Match", stale.as_str())
                .header("Content-Type", "application/json")
                .body(json!({"address": {"city": "Pori"}}).to_string())
                .send()
                .await
                .unwrap();
            assert_error(response, 412, "precondition_failed").await;
        }
    }
    let after: Value = app.get(&path).await.json().await.unwrap();
    assert_eq!(after, current, "nothing changed");

    let fresh = etag_of(&app.get(&path).await);
    let ok = app
        .request(Method::PUT, &path)
        .header("If-Match", fresh.as_str())
        .header("Content-Type", "application/json")
        .body(json!({"address": {"city": "Pori"}}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
}

async fn if_match_star_matches_any_existing_customer(app: TestApp) {
    let created = app.create(&customer(1)).await;
    let path = format!("/api/v1/customers/{}", created["id"]);
    let response = app
        .request(Method::DELETE, &path)
        .header("If-Match", "*")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let missing = app
        .request(Method::DELETE, &path)
        .header("If-Match", "*")
        .send()
        .await
        .unwrap();
    assert_error(missing, 404, "not_found").await;
}
