//! Each account sees only its own customers; another account's id answers
//! exactly as an id that does not exist.

use reqwest::{Method, Response};
use serde_json::{Value, json};

use crate::on_every_store;
use crate::support::{TestApp, customer};

on_every_store!(
    another_accounts_customer_answers_exactly_as_a_missing_one_on_every_method,
    another_accounts_customers_never_appear_in_a_list,
    another_accounts_customers_never_appear_in_a_search,
);

/// Status and body, the parts a client can tell apart.
async fn answer(response: Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn another_accounts_customer_answers_exactly_as_a_missing_one_on_every_method(app: TestApp) {
    let other = app.key_for("other").await;
    let theirs = app.create(&customer(1)).await;
    let their_id = theirs["id"].as_i64().unwrap();
    let missing_id = their_id + 1_000_000;
    let patch = json!({"address": {"city": "Espoo"}});

    for method in [Method::GET, Method::PUT, Method::PATCH, Method::DELETE] {
        let attempt = |id: i64| {
            let path = format!("/api/v1/customers/{id}");
            let request = app.request_as(&other, method.clone(), &path);
            let request = if method == Method::PUT || method == Method::PATCH {
                request
                    .header("Content-Type", "application/json")
                    .body(patch.to_string())
            } else {
                request
            };
            async move { answer(request.send().await.unwrap()).await }
        };
        let foreign = attempt(their_id).await;
        let missing = attempt(missing_id).await;
        assert_eq!(foreign.0, 404, "{method}");
        assert_eq!(foreign, missing, "{method}");
    }

    let still: Value = app
        .get(&format!("/api/v1/customers/{their_id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(still, theirs, "the owner's customer is untouched");
}

async fn another_accounts_customers_never_appear_in_a_list(app: TestApp) {
    let other = app.key_for("other").await;
    for n in 0..3 {
        app.create(&customer(n)).await;
    }
    let listed: Value = app
        .request_as(&other, Method::GET, "/api/v1/customers")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed, json!({"has_more": false, "data": []}));
    assert_eq!(app.list_all().await.len(), 3);
}

async fn another_accounts_customers_never_appear_in_a_search(app: TestApp) {
    let other = app.key_for("other").await;
    let theirs = app.create(&customer(1)).await;
    let email = theirs["email"].as_str().unwrap().replace('@', "%40");
    for query in [
        "q=meik".to_owned(),
        format!("email={email}"),
        "updated_after=2000-01-01T00:00:00Z".to_owned(),
    ] {
        let listed: Value = app
            .request_as(&other, Method::GET, &format!("/api/v1/customers?{query}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(listed, json!({"has_more": false, "data": []}), "{query}");
    }
}
