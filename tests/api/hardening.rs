//! Limits and headers that protect the service and its callers: rate
//! limits, load shedding, timeouts, header sizes, request ids, caching and
//! sniffing, metrics, and answers that leak nothing.

use std::sync::Arc;
use std::time::Duration;

use rekisteri::http::{RateLimit, Settings};
use reqwest::Method;
use serde_json::Value;

use crate::support::{Backend, TestApp, assert_error, customer};

async fn sqlite_with(settings: Settings) -> TestApp {
    TestApp::start_with(Backend::Sqlite, settings)
        .await
        .expect("SQLite is always available")
}

/// Holds SQLite's write lock from another connection, so that the next
/// write waits: a real slow request, without a test-only code path.
fn hold_write_lock(app: &TestApp) -> rusqlite::Connection {
    let path = app.database_url.strip_prefix("sqlite://").unwrap();
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch("BEGIN IMMEDIATE").unwrap();
    conn
}

#[tokio::test]
async fn a_burst_beyond_the_rate_limit_is_429_with_retry_after_and_headers() {
    let app = sqlite_with(Settings {
        rate_limit: Some(RateLimit {
            burst: 5,
            per_second: 0.5,
        }),
        ..Settings::default()
    })
    .await;
    let mut remaining = Vec::new();
    for _ in 0..5 {
        let response = app.get("/api/v1/customers").await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["ratelimit-limit"], "5");
        remaining.push(
            response.headers()["ratelimit-remaining"]
                .to_str()
                .unwrap()
                .to_owned(),
        );
        assert!(response.headers().contains_key("ratelimit-reset"));
    }
    assert_eq!(remaining, ["4", "3", "2", "1", "0"]);

    let refused = app.post_json("/api/v1/customers", &customer(1)).await;
    let retry: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry), "{retry}");
    assert_eq!(refused.headers()["ratelimit-remaining"], "0");
    assert_error(refused, 429, "rate_limited").await;

    // Another key of the same account has a bucket of its own.
    let other = app.key_for("test").await;
    let response = app
        .request_as(&other, Method::GET, "/api/v1/customers")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["ratelimit-remaining"], "4");
    let account = app.store.find_account("test").await.unwrap().unwrap();
    let stored = app.store.list_customers(account.id, 1).await.unwrap();
    assert!(
        stored.customers.is_empty(),
        "the refused create stored nothing"
    );
}

#[tokio::test]
async fn a_request_slower_than_the_timeout_is_503_in_the_envelope() {
    let app = sqlite_with(Settings {
        request_timeout: Duration::from_millis(300),
        ..Settings::default()
    })
    .await;
    let lock = hold_write_lock(&app);
    let started = std::time::Instant::now();
    let response = app.post_json("/api/v1/customers", &customer(1)).await;
    let waited = started.elapsed();
    assert!(response.headers().contains_key("retry-after"));
    assert_error(response, 503, "unavailable").await;
    eprintln!("timed out after {waited:?} (limit 300 ms)");
    drop(lock);
}

#[tokio::test]
async fn past_the_in_flight_limit_requests_are_shed_with_503_and_retry_after() {
    let app = Arc::new(
        sqlite_with(Settings {
            max_in_flight: 1,
            ..Settings::default()
        })
        .await,
    );
    let lock = hold_write_lock(&app);
    let slow = {
        let app = Arc::clone(&app);
        tokio::spawn(async move {
            app.post_json("/api/v1/customers", &customer(1))
                .await
                .status()
        })
    };
    // Give the slow request time to be in flight.
    let mut shed = None;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let response = app.get("/api/v1/customers").await;
        if response.status() == 503 {
            shed = Some(response);
            break;
        }
    }
    let shed = shed.expect("a second request is shed while the first is in flight");
    assert_eq!(shed.headers()["retry-after"], "1");
    assert_error(shed, 503, "unavailable").await;

    drop(lock);
    assert_eq!(slow.await.unwrap(), 201, "the request in flight completes");
    assert_eq!(app.get("/api/v1/customers").await.status(), 200);
}

#[tokio::test]
async fn oversized_headers_are_refused() {
    let app = sqlite_with(Settings::default()).await;
    let response = app
        .request(Method::GET, "/api/v1/customers")
        .header("X-Padding", "x".repeat(20 * 1024))
        .send()
        .await
        .unwrap();
    assert_error(response, 431, "bad_request").await;
}

#[tokio::test]
async fn every_answer_carries_a_request_id_and_keeps_a_sane_one_from_the_caller() {
    let app = sqlite_with(Settings::default()).await;
    let mine = app
        .request(Method::GET, "/api/v1/customers")
        .header("X-Request-Id", "lasku-2026-0042")
        .send()
        .await
        .unwrap();
    assert_eq!(mine.headers()["x-request-id"], "lasku-2026-0042");

    let generated: Vec<String> = [
        app.get("/api/v1/customers").await,
        app.client.get(app.url("/nowhere")).send().await.unwrap(),
        app.request(Method::GET, "/api/v1/customers")
            .header("X-Request-Id", "bad id\twith spaces")
            .send()
            .await
            .unwrap(),
    ]
    .iter()
    .map(|r| r.headers()["x-request-id"].to_str().unwrap().to_owned())
    .collect();
    assert!(
        generated
            .iter()
            .all(|id| !id.is_empty() && !id.contains(' '))
    );
    assert_ne!(generated[0], generated[1]);
}

#[tokio::test]
async fn answers_are_never_cached_or_sniffed() {
    let app = sqlite_with(Settings::default()).await;
    let created = app.create(&customer(1)).await;
    for response in [
        app.get("/api/v1/customers").await,
        app.get(&format!("/api/v1/customers/{}", created["id"]))
            .await,
        app.client
            .get(app.url("/api/v1/customers"))
            .send()
            .await
            .unwrap(),
    ] {
        assert_eq!(response.headers()["x-content-type-options"], "nosniff");
        assert_eq!(response.headers()["cache-control"], "no-store");
    }
}

#[tokio::test]
async fn an_unknown_and_a_revoked_key_get_the_same_answer() {
    let app = sqlite_with(Settings::default()).await;
    let revoked = app.key_for("test").await;
    let account = app.store.find_account("test").await.unwrap().unwrap();
    let key = app
        .store
        .list_keys(account.id)
        .await
        .unwrap()
        .into_iter()
        .find(|k| revoked.starts_with(&k.prefix))
        .unwrap();
    app.store.revoke_key(key.id, 0).await.unwrap();

    let answer = |key: String| {
        let app = &app;
        async move {
            let r = app
                .request_as(&key, Method::GET, "/api/v1/customers")
                .send()
                .await
                .unwrap();
            let status = r.status();
            let challenge = r.headers()["www-authenticate"].clone();
            (status, challenge, r.text().await.unwrap())
        }
    };
    let unknown = answer("0123abcd-0123456789abcdef0123456789abcdef".into()).await;
    assert_eq!(answer(revoked).await, unknown);
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_status() {
    let app = sqlite_with(Settings::default()).await;
    app.create(&customer(1)).await;
    app.get("/api/v1/customers/999999").await;
    let text = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "rekisteri_http_requests_total{method=\"POST\",route=\"/api/v1/customers\",status=\"201\"} 1",
        "rekisteri_http_requests_total{method=\"GET\",route=\"/api/v1/customers/{id}\",status=\"404\"} 1",
        "rekisteri_http_requests_in_flight 1",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
    }
    assert!(text.contains("rekisteri_http_request_duration_seconds_bucket"));
    assert!(text.contains("rekisteri_store_commits_total"));
}

#[tokio::test]
async fn error_bodies_never_carry_internal_details() {
    let app = sqlite_with(Settings {
        request_timeout: Duration::from_secs(30),
        ..Settings::default()
    })
    .await;
    // A write that fails inside SQLite: the lock is held past the store's
    // own busy timeout.
    let lock = hold_write_lock(&app);
    let response = app.post_json("/api/v1/customers", &customer(1)).await;
    drop(lock);
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, 503, "a locked database is unavailable, not broken");
    let text = body.to_string().to_lowercase();
    for word in ["sqlite", "database is locked", "busy", "panic", "src/"] {
        assert!(!text.contains(word), "{word} in {text}");
    }
}

#[tokio::test]
async fn a_failed_write_records_nothing_so_its_retry_with_the_key_succeeds() {
    let app = sqlite_with(Settings::default()).await;
    // The store gives up on a lock held past its busy timeout: a 5xx.
    let lock = hold_write_lock(&app);
    let send = || {
        app.request(Method::POST, "/api/v1/customers")
            .header("Idempotency-Key", "uudestaan")
            .header("Content-Type", "application/json")
            .body(customer(1).to_string())
            .send()
    };
    let failed = send().await.unwrap();
    assert!(failed.status().is_server_error(), "{}", failed.status());
    drop(lock);

    let retried = send().await.unwrap();
    assert_eq!(retried.status(), 201);
    assert!(!retried.headers().contains_key("idempotent-replayed"));
    assert_eq!(app.list_all().await.len(), 1);
}
