//! Search and filters on the list, on every store.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::task::JoinSet;

use crate::on_every_store;
use crate::support::{TestApp, assert_error, named};

on_every_store!(
    each_searchable_field_finds_its_customer,
    matching_ignores_case_and_accents,
    every_query_word_must_start_a_word_of_the_customer,
    the_email_filter_matches_exactly_ignoring_case,
    updated_after_lists_what_changed_since,
    filters_combine_and_page_in_list_order,
    a_customer_is_findable_the_moment_its_write_is_acknowledged,
    bad_filter_values_are_bad_requests,
);

async fn found(app: &TestApp, query: &str) -> Vec<Value> {
    let response = app.get(&format!("/api/v1/customers?{query}")).await;
    assert_eq!(response.status(), 200, "{query}");
    let body: Value = response.json().await.unwrap();
    body["data"].as_array().unwrap().clone()
}

async fn ids(app: &TestApp, query: &str) -> Vec<i64> {
    found(app, query)
        .await
        .iter()
        .map(|c| c["id"].as_i64().unwrap())
        .collect()
}

fn full(lastname: &str, email: &str) -> Value {
    json!({
        "email": email,
        "address": {
            "firstname": "Aino", "lastname": lastname, "company": "Kahvila Oy",
            "company_id": "7654321-9", "address": "Kauppatori 1", "city": "Jyväskylä",
            "postcode": "40100", "phone": "+358 44 555 0101", "country": "FI"
        }
    })
}

async fn each_searchable_field_finds_its_customer(app: TestApp) {
    let target = app
        .create(&full("Virtanen", "aino.virtanen@kahvila.fi"))
        .await["id"]
        .as_i64()
        .unwrap();
    app.create(&named("Korhonen", "Pekka", "pekka@example.com"))
        .await;
    for q in [
        "aino",
        "virtanen",
        "kahvila",
        "7654321",
        "aino.virtanen",
        "555",
        "jyvaskyla",
        "40100",
    ] {
        assert_eq!(ids(&app, &format!("q={q}")).await, [target], "q={q}");
    }
    // The street address is not searched.
    assert!(ids(&app, "q=kauppatori").await.is_empty());
}

async fn matching_ignores_case_and_accents(app: TestApp) {
    let id = app
        .create(&named("Meikäläinen", "Öljy", "m@example.com"))
        .await["id"]
        .as_i64()
        .unwrap();
    for q in ["meikalainen", "MEIKÄ", "Meik", "oljy", "%C3%96LJY"] {
        assert_eq!(ids(&app, &format!("q={q}")).await, [id], "q={q}");
    }
}

async fn every_query_word_must_start_a_word_of_the_customer(app: TestApp) {
    let both = app.create(&named("Laine", "Matti", "ml@example.com")).await["id"]
        .as_i64()
        .unwrap();
    app.create(&named("Laine", "Liisa", "ll@example.com")).await;
    app.create(&named("Niemi", "Matti", "mn@example.com")).await;
    assert_eq!(ids(&app, "q=lai+mat").await, [both]);
    assert_eq!(ids(&app, "q=matti%20laine").await, [both]);
    assert!(
        ids(&app, "q=aine").await.is_empty(),
        "inside a word is not a prefix"
    );
    assert_eq!(ids(&app, "q=lai").await.len(), 2);
}

async fn the_email_filter_matches_exactly_ignoring_case(app: TestApp) {
    let id = app
        .create(&named("Laine", "Matti", "Matti.Laine@Example.com"))
        .await["id"]
        .as_i64()
        .unwrap();
    app.create(&named("Laine", "Matti", "matti.laine@example.com.fi"))
        .await;
    assert_eq!(ids(&app, "email=matti.laine%40example.com").await, [id]);
    assert_eq!(ids(&app, "email=MATTI.LAINE@EXAMPLE.COM").await, [id]);
    assert!(
        ids(&app, "email=matti.laine").await.is_empty(),
        "not a prefix"
    );
}

async fn updated_after_lists_what_changed_since(app: TestApp) {
    let old = app.create(&named("Aalto", "A", "a@example.com")).await;
    let changed = app.create(&named("Berg", "B", "b@example.com")).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let mark = jiff::Timestamp::now();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let path = format!("/api/v1/customers/{}", changed["id"]);
    app.put_json(&path, &json!({"address": {"city": "Oulu"}}))
        .await;
    let new = app.create(&named("Ceder", "C", "c@example.com")).await;

    let since = urlencode(&mark.to_string());
    let got = ids(&app, &format!("updated_after={since}")).await;
    assert_eq!(
        got,
        [changed["id"].as_i64().unwrap(), new["id"].as_i64().unwrap()]
    );
    // The server's own rendering works too, with an unencoded `+`.
    let rendered = old["updated_at"].as_str().unwrap();
    let got = ids(&app, &format!("updated_after={rendered}")).await;
    assert_eq!(got.len(), 2, "everything after the first customer's write");
}

fn urlencode(s: &str) -> String {
    s.replace('+', "%2B").replace(':', "%3A")
}

async fn filters_combine_and_page_in_list_order(app: TestApp) {
    let app = Arc::new(app);
    let mut tasks = JoinSet::new();
    for n in 0..120 {
        let app = Arc::clone(&app);
        tasks.spawn(async move {
            let mut body = named(
                &format!("Espoolainen{:03}", 119 - n),
                "Eero",
                &format!("e{n}@example.com"),
            );
            body["address"]["city"] = json!("Espoo");
            app.create(&body).await
        });
    }
    for n in 0..10 {
        let app = Arc::clone(&app);
        tasks.spawn(async move {
            app.create(&named("Muu", "Eero", &format!("m{n}@example.com")))
                .await
        });
    }
    tasks.join_all().await;

    let mut seen = Vec::new();
    let mut pages = Vec::new();
    for page in 1.. {
        let body: Value = app
            .get(&format!("/api/v1/customers?q=espoo+eero&page={page}"))
            .await
            .json()
            .await
            .unwrap();
        let data = body["data"].as_array().unwrap();
        pages.push((data.len(), body["has_more"].clone()));
        seen.extend(
            data.iter()
                .map(|c| c["address"]["lastname"].as_str().unwrap().to_owned()),
        );
        if body["has_more"] == false {
            break;
        }
    }
    assert_eq!(
        pages,
        [(50, json!(true)), (50, json!(true)), (20, json!(false))]
    );
    let unique: HashSet<_> = seen.iter().collect();
    assert_eq!(unique.len(), 120);
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(seen, sorted, "alphabetical order");

    let one = found(&app, "q=eero&email=m3%40example.com").await;
    assert_eq!(one.len(), 1);
    assert_eq!(one[0]["address"]["lastname"], "Muu");
}

async fn a_customer_is_findable_the_moment_its_write_is_acknowledged(app: TestApp) {
    let created = app
        .create(&named("Hämäläinen", "Heikki", "h@example.com"))
        .await;
    let id = created["id"].as_i64().unwrap();
    assert_eq!(ids(&app, "q=hamal").await, [id]);

    let path = format!("/api/v1/customers/{id}");
    app.put_json(&path, &json!({"address": {"lastname": "Salonen"}}))
        .await;
    assert!(
        ids(&app, "q=hamal").await.is_empty(),
        "the old name is gone"
    );
    assert_eq!(ids(&app, "q=salo").await, [id]);

    app.delete(&path).await;
    assert!(ids(&app, "q=salo").await.is_empty());
}

async fn bad_filter_values_are_bad_requests(app: TestApp) {
    for query in [
        "updated_after=yesterday",
        "updated_after=2026-01-01",
        "q=a&q=b",
    ] {
        let response = app.get(&format!("/api/v1/customers?{query}")).await;
        assert_error(response, 400, "bad_request").await;
    }
    app.create(&named("Laine", "Matti", "ml@example.com")).await;
    assert_eq!(
        found(&app, "q=%20-%20").await.len(),
        1,
        "a query without words lists all"
    );
}

#[tokio::test]
async fn the_search_index_is_rebuilt_at_start_when_its_version_differs() {
    let mut app = TestApp::start(crate::support::Backend::Sqlite)
        .await
        .unwrap();
    let id = app.create(&named("Räsänen", "Riku", "r@example.com")).await["id"]
        .as_i64()
        .unwrap();
    // As a database from before the index, or from other folding rules.
    let path = app
        .database_url
        .strip_prefix("sqlite://")
        .unwrap()
        .to_owned();
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(
        "DELETE FROM customer_words; UPDATE customers SET email_folded = '';
         DELETE FROM meta WHERE key = 'search_version';",
    )
    .unwrap();
    drop(conn);
    assert!(ids(&app, "q=rasanen").await.is_empty());

    app.restart().await;
    assert_eq!(ids(&app, "q=rasanen").await, [id]);
    assert_eq!(ids(&app, "email=R%40EXAMPLE.COM").await, [id]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_search_index_is_rebuilt_at_start_on_postgres_too() {
    let Some(mut app) = TestApp::start(crate::support::Backend::Postgres).await else {
        return crate::support::postgres::skipped("the_search_index_is_rebuilt_at_start");
    };
    let id = app.create(&named("Räsänen", "Riku", "r@example.com")).await["id"]
        .as_i64()
        .unwrap();
    let (client, connection) = tokio_postgres::connect(&app.database_url, tokio_postgres::NoTls)
        .await
        .unwrap();
    let driver = tokio::spawn(connection);
    client
        .batch_execute(
            "DELETE FROM customer_words; UPDATE customers SET email_folded = '';
             DELETE FROM meta WHERE key = 'search_version';",
        )
        .await
        .unwrap();
    drop(client);
    let _ = driver.await;
    assert!(ids(&app, "q=rasanen").await.is_empty());

    app.restart().await;
    assert_eq!(ids(&app, "q=rasanen").await, [id]);
    assert_eq!(ids(&app, "email=R%40EXAMPLE.COM").await, [id]);
}
