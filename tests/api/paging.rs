//! Paging stays linear and right: pages read from remembered starts equal
//! the ones read by skipping rows, before and after the account changes,
//! whichever server changed it.

use rekisteri::domain::input::parse_new;
use rekisteri::domain::time::now_millis;
use rekisteri::store::{self, AccountId, Store};
use serde_json::{Value, json};

use crate::on_every_store;
use crate::support::{TestApp, named};

const LASTNAMES: [&str; 6] = ["Öhman", "aalto", "Virtanen", "Åberg", "Ärväs", "Wikström"];

/// Many customers share a name and an email, so pages split inside runs of
/// equal sort keys and only the id orders them.
fn body(n: usize) -> Value {
    named(
        LASTNAMES[n % LASTNAMES.len()],
        &format!("Etu{}", n % 7),
        &format!("a{}@example.com", n % 3),
    )
}

async fn account_of(app: &TestApp) -> AccountId {
    app.store.find_account("test").await.unwrap().unwrap().id
}

async fn import(store: &dyn Store, account: AccountId, bodies: impl Iterator<Item = Value>) {
    let (rows, received) = tokio::sync::mpsc::channel(64);
    let feed = async move {
        for b in bodies {
            rows.send(Ok(parse_new(&b).unwrap())).await.unwrap();
        }
    };
    let (imported, ()) = tokio::join!(
        store.import_customers(account, received, now_millis()),
        feed
    );
    imported.unwrap();
}

async fn page(app: &TestApp, n: u64) -> Value {
    let response = app.get(&format!("/api/v1/customers?page={n}")).await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// Every page from the first until `has_more` is false.
async fn crawl(app: &TestApp) -> Vec<Value> {
    let mut pages = Vec::new();
    for n in 1.. {
        let body = page(app, n).await;
        let more = body["has_more"] == json!(true);
        pages.push(body);
        if !more {
            break;
        }
    }
    pages
}

/// The same pages read last to first: none of them can start where a page
/// just read ended, so each is read by skipping rows.
async fn crawl_backwards(app: &TestApp, pages: u64) -> Vec<Value> {
    let mut read = Vec::new();
    for n in (1..=pages).rev() {
        read.push(page(app, n).await);
    }
    read.reverse();
    read
}

fn stat(store: &dyn Store, name: &str) -> f64 {
    store
        .stats()
        .into_iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, _, v)| v)
        .unwrap()
}

fn ids(pages: &[Value]) -> Vec<i64> {
    pages
        .iter()
        .flat_map(|p| p["data"].as_array().unwrap().iter())
        .map(|c| c["id"].as_i64().unwrap())
        .collect()
}

async fn a_crawl_equals_the_pages_read_by_offset(app: TestApp) {
    let account = account_of(&app).await;
    import(&*app.store, account, (0..523).map(body)).await;

    let before = stat(&*app.store, "rekisteri_store_pages_remembered_total");
    let forwards = crawl(&app).await;
    assert_eq!(forwards.len(), 11);
    let remembered = stat(&*app.store, "rekisteri_store_pages_remembered_total") - before;
    assert_eq!(remembered, 10.0, "pages 2 to 11 start where the last ended");

    let backwards = crawl_backwards(&app, 11).await;
    assert_eq!(forwards, backwards);
    assert_eq!(ids(&forwards).len(), 523);

    // The export's keyset batches give the same order.
    let mut exported = Vec::new();
    let mut after = None;
    loop {
        let batch = app
            .store
            .export_customers(account, after, 100)
            .await
            .unwrap();
        exported.extend(batch.customers.iter().map(|c| c.id));
        after = batch.next;
        if after.is_none() {
            break;
        }
    }
    assert_eq!(exported, ids(&forwards));

    // Read again unchanged, every page is served from a remembered start.
    let again = crawl(&app).await;
    assert_eq!(again, forwards);
}

async fn pages_are_right_again_after_changes_in_the_middle(app: TestApp) {
    let account = account_of(&app).await;
    import(&*app.store, account, (0..300).map(body)).await;
    let first = crawl(&app).await;
    let first_ids = ids(&first);

    // A customer that sorts into the middle, one moved by a rename, one gone.
    let added = app
        .create(&named("Virtanen", "Etu3", "a1@example.com"))
        .await;
    let moved = first_ids[120];
    let response = app
        .put_json(
            &format!("/api/v1/customers/{moved}"),
            &json!({"address": {"lastname": "Aaltonen"}}),
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        app.delete(&format!("/api/v1/customers/{}", first_ids[10]))
            .await
            .status(),
        204
    );

    let after = crawl(&app).await;
    let after_ids = ids(&after);
    assert_eq!(after_ids.len(), 300);
    assert!(after_ids.contains(&added["id"].as_i64().unwrap()));
    assert!(!after_ids.contains(&first_ids[10]));
    assert_eq!(after, crawl_backwards(&app, after.len() as u64).await);
}

async fn a_change_through_another_server_is_seen(app: TestApp) {
    let account = account_of(&app).await;
    import(&*app.store, account, (0..200).map(body)).await;
    let first = crawl(&app).await;

    // Another server on the same database: its own process memory, the
    // same counter in the database.
    let other = store::open(&app.database_url).await.unwrap();
    let data = parse_new(&named("Aaa", "Aapo", "aapo@example.com")).unwrap();
    let added = other
        .create_customer(account, data, now_millis())
        .await
        .unwrap();
    drop(other);

    let after = crawl(&app).await;
    let after_ids = ids(&after);
    assert_eq!(after_ids.len(), 201);
    assert_eq!(after_ids[0], added.id, "Aaa Aapo sorts first");
    assert_ne!(after, first);
    assert_eq!(after, crawl_backwards(&app, after.len() as u64).await);
}

on_every_store!(
    a_crawl_equals_the_pages_read_by_offset,
    pages_are_right_again_after_changes_in_the_middle,
    a_change_through_another_server_is_seen,
);
