//! Authentication: who may call the API and how the key is spelt.

use reqwest::Method;

use crate::on_every_store;
use crate::support::{TestApp, assert_error};

on_every_store!(
    a_request_without_a_key_is_unauthorized_with_a_token_challenge,
    an_unknown_key_is_unauthorized,
    a_malformed_authorization_header_is_unauthorized,
    a_revoked_key_is_refused_at_once,
    every_documented_header_spelling_is_accepted,
    a_second_key_of_an_account_sees_the_same_customers,
);

async fn a_request_without_a_key_is_unauthorized_with_a_token_challenge(app: TestApp) {
    let response = app
        .client
        .get(app.url("/api/v1/customers"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers()["www-authenticate"],
        "Token realm=\"Application\""
    );
    assert_error(response, 401, "unauthorized").await;

    let post = app
        .client
        .post(app.url("/api/v1/customers"))
        .header("Content-Type", "application/json")
        .body(crate::support::customer(1).to_string())
        .send()
        .await
        .unwrap();
    assert_error(post, 401, "unauthorized").await;
    assert!(app.list_all().await.is_empty(), "nothing was stored");
}

async fn an_unknown_key_is_unauthorized(app: TestApp) {
    let unknown = "ce6988f6-6fb24b1f843ca1717a0f93f72b1cc78c";
    let response = app
        .request_as(unknown, Method::GET, "/api/v1/customers")
        .send()
        .await
        .unwrap();
    assert!(response.headers().contains_key("www-authenticate"));
    assert_error(response, 401, "unauthorized").await;
}

async fn a_malformed_authorization_header_is_unauthorized(app: TestApp) {
    for header in [
        "Token".to_owned(),
        "Token not-a-key".to_owned(),
        format!("Basic {}", app.key),
        app.key.clone(),
        format!("Token {}x", app.key),
    ] {
        let response = app
            .client
            .get(app.url("/api/v1/customers"))
            .header("Authorization", header)
            .send()
            .await
            .unwrap();
        assert_error(response, 401, "unauthorized").await;
    }
}

async fn a_revoked_key_is_refused_at_once(app: TestApp) {
    assert_eq!(app.get("/api/v1/customers").await.status(), 200);
    let account = app.store.find_account("test").await.unwrap().unwrap();
    let keys = app.store.list_keys(account.id).await.unwrap();
    let key = keys
        .iter()
        .find(|k| app.key.starts_with(&k.prefix))
        .unwrap();
    app.store
        .revoke_key(key.id, rekisteri::domain::time::now_millis())
        .await
        .unwrap();

    assert_error(app.get("/api/v1/customers").await, 401, "unauthorized").await;
}

async fn every_documented_header_spelling_is_accepted(app: TestApp) {
    let key = &app.key;
    for header in [
        format!("Token {key}"),
        format!("token {key}"),
        format!("Token token=\"{key}\""),
        format!("Token token={key}"),
        format!("Bearer {key}"),
        format!("bearer {key}"),
    ] {
        let response = app
            .client
            .get(app.url("/api/v1/customers"))
            .header("Authorization", &header)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{header}");
    }
}

async fn a_second_key_of_an_account_sees_the_same_customers(app: TestApp) {
    let created = app.create(&crate::support::customer(1)).await;
    let second = app.key_for("test").await;
    let response = app
        .request_as(
            &second,
            Method::GET,
            &format!("/api/v1/customers/{}", created["id"]),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}
