//! The list: 50 a page, `has_more`, the `page` parameter, and the Finnish
//! alphabetical order.

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::task::JoinSet;

use crate::on_every_store;
use crate::support::{TestApp, assert_error, customer, named};

on_every_store!(
    pages_hold_fifty_customers_and_has_more_is_exact,
    a_page_past_the_end_is_empty,
    bad_page_values_are_bad_requests,
    the_list_is_in_finnish_alphabetical_order_across_pages,
    ties_are_broken_by_first_name_then_company_then_email_then_id,
    case_does_not_decide_before_letters_do,
);

/// Creates customers concurrently, as many clients would.
async fn create_all(app: Arc<TestApp>, bodies: Vec<Value>) -> Vec<Value> {
    let mut tasks = JoinSet::new();
    for body in bodies {
        let app = Arc::clone(&app);
        tasks.spawn(async move { app.create(&body).await });
    }
    tasks.join_all().await
}

async fn page(app: &TestApp, n: u64) -> Value {
    let response = app.get(&format!("/api/v1/customers?page={n}")).await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

async fn pages_hold_fifty_customers_and_has_more_is_exact(app: TestApp) {
    let app = Arc::new(app);
    create_all(Arc::clone(&app), (0..100).map(customer).collect()).await;
    let first = page(&app, 1).await;
    assert_eq!(first["data"].as_array().unwrap().len(), 50);
    assert_eq!(first["has_more"], true);
    let second = page(&app, 2).await;
    assert_eq!(second["data"].as_array().unwrap().len(), 50);
    assert_eq!(
        second["has_more"], false,
        "exactly 100: nothing after page 2"
    );

    create_all(Arc::clone(&app), (100..130).map(customer).collect()).await;
    let mut got = Vec::new();
    for n in 1..=3 {
        let body = page(&app, n).await;
        got.push((
            body["data"].as_array().unwrap().len(),
            body["has_more"].clone(),
        ));
    }
    assert_eq!(
        got,
        [(50, json!(true)), (50, json!(true)), (30, json!(false))]
    );

    let default: Value = app.get("/api/v1/customers").await.json().await.unwrap();
    assert_eq!(default, page(&app, 1).await, "page defaults to 1");
    let suffixed: Value = app
        .get("/api/v1/customers.json?page=3")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(suffixed, page(&app, 3).await);
}

async fn a_page_past_the_end_is_empty(app: TestApp) {
    app.create(&customer(1)).await;
    for n in ["2", "1000", "99999999999999999999999"] {
        let body: Value = app
            .get(&format!("/api/v1/customers?page={n}"))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(body, json!({"has_more": false, "data": []}), "page {n}");
    }
}

async fn bad_page_values_are_bad_requests(app: TestApp) {
    for value in ["0", "-1", "abc", "1.5", "", "1e3", "%20"] {
        let response = app.get(&format!("/api/v1/customers?page={value}")).await;
        assert_error(response, 400, "bad_request").await;
    }
}

async fn the_list_is_in_finnish_alphabetical_order_across_pages(app: TestApp) {
    let surnames = [
        "Aalto",
        "Virtanen",
        "Wikström",
        "Zetterberg",
        "Åberg",
        "Ärväs",
        "Öhman",
        "Korhonen",
        "Mäkinen",
        "Nieminen",
        "Hämäläinen",
        "Laine",
        "Heikkinen",
        "Koskinen",
        "Järvinen",
        "Lehtonen",
        "Lehtinen",
        "Saarinen",
        "Salminen",
        "Heinonen",
        "Niemi",
        "Heikkilä",
        "Kinnunen",
        "Salonen",
        "Turunen",
    ];
    let mut bodies = Vec::new();
    for (i, surname) in surnames.iter().enumerate() {
        for j in 0..5 {
            bodies.push(named(
                surname,
                &format!("Etu{j}"),
                &format!("a{i}.{j}@example.com"),
            ));
        }
    }
    assert!(bodies.len() >= 120);
    let app = Arc::new(app);
    create_all(Arc::clone(&app), bodies.clone()).await;

    let listed = app.list_all().await;
    assert_eq!(listed.len(), bodies.len());
    let ids: HashSet<_> = listed.iter().map(|c| c["id"].as_i64().unwrap()).collect();
    assert_eq!(ids.len(), listed.len(), "no customer appears twice");

    let order: Vec<String> = listed
        .iter()
        .map(|c| c["address"]["lastname"].as_str().unwrap().to_owned())
        .collect();
    let mut expected: Vec<&str> = surnames.to_vec();
    expected.sort_by_key(|s| finnish_rank(s));
    let expected: Vec<String> = expected
        .iter()
        .flat_map(|s| std::iter::repeat_n(s.to_string(), 5))
        .collect();
    assert_eq!(order, expected);
    let tail: Vec<_> = order.iter().rev().step_by(5).take(3).collect();
    assert_eq!(tail, ["Öhman", "Ärväs", "Åberg"], "Å, Ä, Ö come after Z");
}

/// An independent model of Finnish order for these plain names: the
/// alphabet with w after v and å, ä, ö after z.
fn finnish_rank(s: &str) -> Vec<usize> {
    const ALPHABET: &str = "abcdefghijklmnopqrstuvwxyzåäö";
    s.to_lowercase()
        .chars()
        .map(|c| ALPHABET.chars().position(|a| a == c).unwrap())
        .collect()
}

async fn ties_are_broken_by_first_name_then_company_then_email_then_id(app: TestApp) {
    let mut with_company = named("Virtanen", "Aino", "z@example.com");
    with_company["address"]["company"] = json!("Yritys Oy");
    let bodies = [
        named("Virtanen", "Pekka", "a@example.com"),
        named("Virtanen", "Aino", "c@example.com"),
        with_company,
        named("Virtanen", "Aino", "b@example.com"),
        named("Virtanen", "Aino", "b@example.com"),
    ];
    let mut ids = Vec::new();
    for body in &bodies {
        ids.push(app.create(body).await["id"].as_i64().unwrap());
    }
    let listed: Vec<i64> = app
        .list_all()
        .await
        .iter()
        .map(|c| c["id"].as_i64().unwrap())
        .collect();
    // No company sorts before a company; equal emails fall back to the id.
    assert_eq!(listed, [ids[3], ids[4], ids[1], ids[2], ids[0]]);
}

async fn case_does_not_decide_before_letters_do(app: TestApp) {
    for surname in ["virtanen", "Virta", "VAARA", "vuori"] {
        app.create(&named(surname, "Aino", "a@example.com")).await;
    }
    let order: Vec<String> = app
        .list_all()
        .await
        .iter()
        .map(|c| c["address"]["lastname"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(order, ["VAARA", "Virta", "virtanen", "vuori"]);
}
