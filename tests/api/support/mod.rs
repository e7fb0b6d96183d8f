//! Starts the real server on port 0 against a real store, and talks HTTP to
//! it. Every test gets a store of its own.

pub mod postgres;

use std::sync::Arc;

use jiff::tz::TimeZone;
use rekisteri::app::{self, RunningServer};
use rekisteri::domain::time::now_millis;
use rekisteri::store::{self, Store};
use reqwest::{Client, Method, RequestBuilder, Response};
use serde_json::{Value, json};
use tokio::net::TcpListener;

/// Which database a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Where a test's data lives; dropping it removes the data.
#[allow(dead_code)] // held only so that dropping it removes the data
enum Data {
    Sqlite(tempfile::TempDir),
    Postgres(postgres::TestDatabase),
}

/// A running server with an account `test` and a key for it.
pub struct TestApp {
    pub base: String,
    /// A key of the account `test`.
    pub key: String,
    pub client: Client,
    pub store: Arc<dyn Store>,
    pub database_url: String,
    server: Option<RunningServer>,
    _data: Data,
}

impl TestApp {
    /// Starts a server on a fresh store, or `None` when that kind of store
    /// is not available on this machine (the caller reports the skip).
    pub async fn start(backend: Backend) -> Option<TestApp> {
        let (database_url, data) = match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("a temporary directory");
                let url = format!("sqlite://{}", dir.path().join("rekisteri.db").display());
                (url, Data::Sqlite(dir))
            }
            Backend::Postgres => {
                let db = postgres::TestDatabase::create().await?;
                (db.url.clone(), Data::Postgres(db))
            }
        };
        let store = store::open(&database_url).await.expect("the store opens");
        let mut app = TestApp {
            base: String::new(),
            key: String::new(),
            client: Client::new(),
            store,
            database_url,
            server: None,
            _data: data,
        };
        app.key = app.key_for("test").await;
        app.serve().await;
        Some(app)
    }

    async fn serve(&mut self) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
        let zone = TimeZone::get("Europe/Helsinki").expect("the zone is built in");
        let server = RunningServer::spawn(listener, Arc::clone(&self.store), zone)
            .expect("the server starts");
        self.base = format!("http://{}", server.addr);
        self.server = Some(server);
    }

    /// Stops the server, closes the store, and starts both again on the same
    /// data, as an operator's restart would.
    pub async fn restart(&mut self) {
        if let Some(server) = self.server.take() {
            server.stop().await.expect("the server stops cleanly");
        }
        self.store = store::open(&self.database_url)
            .await
            .expect("the store reopens");
        self.serve().await;
    }

    /// A new key of `account`, creating the account when it is missing.
    pub async fn key_for(&self, account: &str) -> String {
        let id = match self.store.find_account(account).await.unwrap() {
            Some(a) => a.id,
            None => {
                self.store
                    .create_account(account, now_millis())
                    .await
                    .unwrap()
                    .id
            }
        };
        let (key, stored) = app::new_key(None).unwrap();
        self.store
            .create_key(id, stored, now_millis())
            .await
            .unwrap();
        key.expose().to_owned()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// A request with the account's key in the reference's own spelling.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.request_as(&self.key, method, path)
    }

    pub fn request_as(&self, key: &str, method: Method, path: &str) -> RequestBuilder {
        self.client
            .request(method, self.url(path))
            .header("Authorization", format!("Token {key}"))
    }

    pub async fn get(&self, path: &str) -> Response {
        self.request(Method::GET, path).send().await.unwrap()
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Response {
        self.send_json(Method::POST, path, body).await
    }

    pub async fn put_json(&self, path: &str, body: &Value) -> Response {
        self.send_json(Method::PUT, path, body).await
    }

    pub async fn send_json(&self, method: Method, path: &str, body: &Value) -> Response {
        self.send_json_as(&self.key, method, path, body).await
    }

    pub async fn send_json_as(
        &self,
        key: &str,
        method: Method,
        path: &str,
        body: &Value,
    ) -> Response {
        self.request_as(key, method, path)
            .header("Content-Type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap()
    }

    pub async fn delete(&self, path: &str) -> Response {
        self.request(Method::DELETE, path).send().await.unwrap()
    }

    /// Creates a customer and returns it as the server answered.
    pub async fn create(&self, body: &Value) -> Value {
        let response = self.post_json("/api/v1/customers", body).await;
        assert_eq!(response.status(), 201, "creating {body}");
        response.json().await.unwrap()
    }

    /// Every customer of the account, page by page, in list order.
    pub async fn list_all(&self) -> Vec<Value> {
        let mut all = Vec::new();
        for page in 1.. {
            let body: Value = self
                .get(&format!("/api/v1/customers?page={page}"))
                .await
                .json()
                .await
                .unwrap();
            all.extend(body["data"].as_array().unwrap().iter().cloned());
            if body["has_more"] == json!(false) {
                break;
            }
        }
        all
    }
}

/// A valid create body, different for each `n`.
pub fn customer(n: usize) -> Value {
    json!({
        "email": format!("asiakas{n}@example.com"),
        "address": {
            "firstname": format!("Etunimi{n}"),
            "lastname": "Meikäläinen",
            "city": "Helsinki",
            "postcode": "00100",
            "country": "FI"
        }
    })
}

/// A create body with the given names.
pub fn named(lastname: &str, firstname: &str, email: &str) -> Value {
    json!({
        "email": email,
        "address": {
            "firstname": firstname,
            "lastname": lastname,
            "city": "Helsinki",
            "postcode": "00100",
            "country": "FI"
        }
    })
}

/// Asserts that a response is an error in the envelope of SPEC §4 and
/// returns its body.
pub async fn assert_error(response: Response, status: u16, code: &str) -> Value {
    assert_eq!(response.status(), status, "status of {}", response.url());
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(content_type.as_deref(), Some("application/json"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], code, "{body}");
    let errors = body["errors"].as_array().expect("an errors array");
    assert!(!errors.is_empty(), "errors is never empty: {body}");
    assert!(errors.iter().all(Value::is_string), "{body}");
    body
}

/// Runs each named `async fn(TestApp)` once on every store, as tests named
/// `sqlite::NAME` and `postgres::NAME`. Where PostgreSQL is missing its
/// tests say so and pass, unless `REKISTERI_REQUIRE_POSTGRES=1`.
#[macro_export]
macro_rules! on_every_store {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let app = $crate::support::TestApp::start($crate::support::Backend::Sqlite)
                        .await
                        .expect("SQLite is always available");
                    super::$name(app).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    match $crate::support::TestApp::start($crate::support::Backend::Postgres).await {
                        Some(app) => super::$name(app).await,
                        None => $crate::support::postgres::skipped(stringify!($name)),
                    }
                }
            )*
        }
    };
}
