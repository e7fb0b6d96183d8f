//! What is acknowledged stays: across restarts, and ids are never reused.

use serde_json::Value;

use crate::on_every_store;
use crate::support::{TestApp, customer};

on_every_store!(
    data_survives_a_server_restart,
    ids_are_never_reused_after_a_delete_even_across_restarts,
    ids_are_unique_across_accounts,
    a_deleted_customer_is_gone_for_good,
);

async fn data_survives_a_server_restart(mut app: TestApp) {
    let kept = app.create(&customer(1)).await;
    let changed = app.create(&customer(2)).await;
    let removed = app.create(&customer(3)).await;
    let path = format!("/api/v1/customers/{}", changed["id"]);
    let changed: Value = app
        .put_json(&path, &serde_json::json!({"address": {"city": "Tampere"}}))
        .await
        .json()
        .await
        .unwrap();
    app.delete(&format!("/api/v1/customers/{}", removed["id"]))
        .await;
    let before = app.list_all().await;

    app.restart().await;

    assert_eq!(app.list_all().await, before);
    assert_eq!(before, vec![kept.clone(), changed.clone()]);
    let fetched: Value = app.get(&path).await.json().await.unwrap();
    assert_eq!(fetched, changed);
    assert_eq!(
        app.get("/api/v1/customers").await.status(),
        200,
        "keys survive too"
    );
}

async fn ids_are_never_reused_after_a_delete_even_across_restarts(mut app: TestApp) {
    let _first = app.create(&customer(1)).await;
    let last = app.create(&customer(2)).await;
    let last_id = last["id"].as_i64().unwrap();
    app.delete(&format!("/api/v1/customers/{last_id}")).await;
    let next = app.create(&customer(3)).await["id"].as_i64().unwrap();
    assert!(next > last_id, "{next} after {last_id}");

    app.delete(&format!("/api/v1/customers/{next}")).await;
    app.restart().await;
    let after_restart = app.create(&customer(4)).await["id"].as_i64().unwrap();
    assert!(after_restart > next, "{after_restart} after {next}");
}

async fn ids_are_unique_across_accounts(app: TestApp) {
    let other = app.key_for("other").await;
    let mine = app.create(&customer(1)).await["id"].as_i64().unwrap();
    let response = app
        .send_json_as(
            &other,
            reqwest::Method::POST,
            "/api/v1/customers",
            &customer(1),
        )
        .await;
    let theirs: Value = response.json().await.unwrap();
    assert_ne!(theirs["id"].as_i64().unwrap(), mine);
}

async fn a_deleted_customer_is_gone_for_good(app: TestApp) {
    let created = app.create(&customer(1)).await;
    let path = format!("/api/v1/customers/{}", created["id"]);
    assert_eq!(app.delete(&path).await.status(), 204);
    for response in [
        app.delete(&path).await,
        app.get(&path).await,
        app.put_json(&path, &serde_json::json!({})).await,
    ] {
        crate::support::assert_error(response, 404, "not_found").await;
    }
    assert!(app.list_all().await.is_empty());
}
