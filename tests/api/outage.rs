//! A running server whose PostgreSQL goes away: it answers `503` promptly
//! instead of hanging, says it is not ready, and serves again by itself
//! once the database is back, with everything committed still there.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::tz::TimeZone;
use rekisteri::app::{self, RunningServer};
use rekisteri::domain::time::now_millis;
use rekisteri::store;
use reqwest::{Client, Method, Response};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::support::postgres::{ThrowawayCluster, skipped};
use crate::support::{assert_error, customer};

/// Generous on purpose: the point is that answers come, not how fast.
const PROMPT: Duration = Duration::from_secs(10);

#[derive(Clone)]
struct Api {
    base: String,
    key: String,
    client: Client,
}

impl Api {
    async fn send(&self, method: Method, path: &str, body: Option<&Value>) -> Response {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .header("Authorization", format!("Token {}", self.key))
            .timeout(Duration::from_secs(60));
        if let Some(body) = body {
            request = request
                .header("Content-Type", "application/json")
                .body(body.to_string());
        }
        request.send().await.unwrap()
    }

    async fn list(&self) -> Value {
        let response = self.send(Method::GET, "/api/v1/customers", None).await;
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    /// Every kind of request, each answering `503 unavailable` within
    /// `PROMPT`; `what` names the phase in the printed timings.
    async fn all_unavailable(&self, what: &str, existing: i64) {
        let path = format!("/api/v1/customers/{existing}");
        let requests: [(Method, String, Option<Value>); 6] = [
            (Method::GET, "/api/v1/customers".into(), None),
            (Method::GET, path.clone(), None),
            (Method::POST, "/api/v1/customers".into(), Some(customer(99))),
            (
                Method::PUT,
                path.clone(),
                Some(json!({"address": {"city": "Oulu"}})),
            ),
            (Method::DELETE, path.clone(), None),
            (Method::GET, "/readyz".into(), None),
        ];
        // All at once, so that a phase costs one timeout, not six.
        let tasks: Vec<_> = requests
            .into_iter()
            .map(|(method, path, body)| {
                let api = self.clone();
                let what = what.to_owned();
                tokio::spawn(async move {
                    let started = Instant::now();
                    let response = api.send(method.clone(), &path, body.as_ref()).await;
                    let elapsed = started.elapsed();
                    eprintln!(
                        "{what}: {method} {path} answered {} in {elapsed:?}",
                        response.status()
                    );
                    assert_error(response, 503, "unavailable").await;
                    assert!(elapsed < PROMPT, "{method} {path} took {elapsed:?}");
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
    }

    /// Waits, within a bound, until the server says it is ready again.
    async fn until_ready(&self, what: &str) {
        let started = Instant::now();
        loop {
            let response = self.send(Method::GET, "/readyz", None).await;
            if response.status() == 200 {
                eprintln!("{what}: ready again after {:?}", started.elapsed());
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "{what}: still {} after {:?}",
                response.status(),
                started.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_answers_503_while_postgres_is_gone_and_recovers_by_itself() {
    let Some(cluster) = tokio::task::spawn_blocking(ThrowawayCluster::start)
        .await
        .unwrap()
    else {
        return skipped("a_server_answers_503_while_postgres_is_gone_and_recovers_by_itself");
    };
    // The cluster is this test's alone, so its own database will do.
    let store = store::open(&cluster.url("postgres")).await.unwrap();
    let account = store.create_account("shop", now_millis()).await.unwrap();
    let (key, stored) = app::new_key(None).unwrap();
    store
        .create_key(account.id, stored, now_millis())
        .await
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let zone = TimeZone::get("Europe/Helsinki").unwrap();
    let server = RunningServer::spawn(listener, Arc::clone(&store), zone).unwrap();
    let api = Api {
        base: format!("http://{}", server.addr),
        key: key.expose().to_owned(),
        client: Client::new(),
    };

    let mut ids = Vec::new();
    for n in 0..5 {
        let response = api
            .send(Method::POST, "/api/v1/customers", Some(&customer(n)))
            .await;
        assert_eq!(response.status(), 201);
        ids.push(
            response.json::<Value>().await.unwrap()["id"]
                .as_i64()
                .unwrap(),
        );
    }
    let changed = api
        .send(
            Method::PUT,
            &format!("/api/v1/customers/{}", ids[0]),
            Some(&json!({"address": {"city": "Tampere"}})),
        )
        .await;
    assert_eq!(changed.status(), 200);
    let deleted = api
        .send(
            Method::DELETE,
            &format!("/api/v1/customers/{}", ids[4]),
            None,
        )
        .await;
    assert_eq!(deleted.status(), 204);
    let committed = api.list().await;

    // Stopped: the server closes its sessions and refuses new ones. Twice
    // over, so that the second round meets a pool with no live connection.
    tokio::task::block_in_place(|| cluster.stop());
    api.all_unavailable("stopped", ids[1]).await;
    api.all_unavailable("still stopped", ids[1]).await;

    tokio::task::block_in_place(|| cluster.start_again());
    api.until_ready("restarted").await;
    assert_eq!(api.list().await, committed, "everything committed is there");

    // Frozen: the sessions stay open but nothing answers, the case that a
    // timeout alone can bound.
    cluster.freeze();
    api.all_unavailable("frozen", ids[1]).await;
    cluster.thaw();
    api.until_ready("thawed").await;
    assert_eq!(api.list().await, committed, "nothing was done while frozen");

    let response = api
        .send(Method::POST, "/api/v1/customers", Some(&customer(7)))
        .await;
    assert_eq!(response.status(), 201, "writes work again");

    server.stop().await.unwrap();
    drop(store);
}
