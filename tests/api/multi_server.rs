//! Several servers on one PostgreSQL database, each with its own store (its
//! own pool), as separate processes behind a load balancer would be: every
//! server sees and keeps what the others wrote.

use std::collections::HashSet;
use std::sync::Arc;

use jiff::tz::TimeZone;
use rekisteri::app::{self, RunningServer};
use rekisteri::domain::time::now_millis;
use rekisteri::store::{self, Store};
use reqwest::{Client, Method, Response};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::support::postgres::{TestDatabase, skipped};
use crate::support::{customer, named};

/// Two servers on one database, and a key that both accept.
struct Pair {
    bases: [String; 2],
    key: String,
    client: Client,
    stores: [Arc<dyn Store>; 2],
    _servers: [RunningServer; 2],
    // Declared last so that it is dropped after the servers.
    _db: TestDatabase,
}

impl Pair {
    async fn start() -> Option<Pair> {
        let db = TestDatabase::create().await?;
        // Opened together, as servers started at once would be: both
        // migrate the same empty database.
        let (first, second) = tokio::join!(store::open(&db.url), store::open(&db.url));
        let stores = [first.unwrap(), second.unwrap()];

        let account = stores[0]
            .create_account("shop", now_millis())
            .await
            .unwrap();
        let (key, stored) = app::new_key(None).unwrap();
        stores[0]
            .create_key(account.id, stored, now_millis())
            .await
            .unwrap();

        let zone = TimeZone::get("Europe/Helsinki").unwrap();
        let mut servers = Vec::new();
        for store in &stores {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            servers.push(RunningServer::spawn(listener, Arc::clone(store), zone.clone()).unwrap());
        }
        let servers: [RunningServer; 2] = servers.try_into().ok().unwrap();
        Some(Pair {
            bases: [0, 1].map(|i| format!("http://{}", servers[i].addr)),
            key: key.expose().to_owned(),
            client: Client::new(),
            stores,
            _servers: servers,
            _db: db,
        })
    }

    async fn send(
        &self,
        server: usize,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Response {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.bases[server % 2]))
            .header("Authorization", format!("Token {}", self.key));
        if let Some(body) = body {
            request = request
                .header("Content-Type", "application/json")
                .body(body.to_string());
        }
        request.send().await.unwrap()
    }

    async fn json(
        &self,
        server: usize,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let response = self.send(server, method, path, body).await;
        let status = response.status().as_u16();
        let body = if status == 204 {
            Value::Null
        } else {
            response.json().await.unwrap()
        };
        (status, body)
    }

    async fn list_all(&self, server: usize) -> Vec<Value> {
        let mut all = Vec::new();
        for page in 1.. {
            let (status, body) = self
                .json(
                    server,
                    Method::GET,
                    &format!("/api/v1/customers?page={page}"),
                    None,
                )
                .await;
            assert_eq!(status, 200, "{body}");
            all.extend(body["data"].as_array().unwrap().iter().cloned());
            if body["has_more"] == json!(false) {
                return all;
            }
        }
        unreachable!()
    }
}

macro_rules! pair_or_skip {
    ($name:literal) => {
        match Pair::start().await {
            Some(pair) => pair,
            None => return skipped($name),
        }
    };
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_written_on_one_server_is_read_listed_updated_and_deleted_through_the_other() {
    let pair = pair_or_skip!(
        "a_customer_written_on_one_server_is_read_listed_updated_and_deleted_through_the_other"
    );

    let (status, created) = pair
        .json(0, Method::POST, "/api/v1/customers", Some(&customer(1)))
        .await;
    assert_eq!(status, 201, "{created}");
    let path = format!("/api/v1/customers/{}", created["id"]);

    let (status, read) = pair.json(1, Method::GET, &path, None).await;
    assert_eq!((status, &read), (200, &created));
    assert_eq!(pair.list_all(1).await, vec![created.clone()]);

    let (status, updated) = pair
        .json(
            1,
            Method::PUT,
            &path,
            Some(&json!({"address": {"city": "Tampere"}})),
        )
        .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["address"]["city"], "Tampere");
    let (_, read) = pair.json(0, Method::GET, &path, None).await;
    assert_eq!(read, updated);
    assert_eq!(pair.list_all(0).await, vec![updated.clone()]);

    let (status, _) = pair.json(1, Method::DELETE, &path, None).await;
    assert_eq!(status, 204);
    assert_eq!(pair.send(0, Method::GET, &path, None).await.status(), 404);
    assert_eq!(
        pair.send(0, Method::DELETE, &path, None).await.status(),
        404
    );
    assert!(pair.list_all(0).await.is_empty());

    // Both servers saw the key; whichever wrote first, the use is recorded
    // (at most once a minute, so once here).
    let account = pair.stores[1].find_account("shop").await.unwrap().unwrap();
    let keys = pair.stores[1].list_keys(account.id).await.unwrap();
    assert!(keys[0].last_used_at.is_some(), "{keys:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_updates_of_different_fields_spread_over_both_servers_all_survive() {
    let pair = Arc::new(pair_or_skip!(
        "concurrent_updates_of_different_fields_spread_over_both_servers_all_survive"
    ));
    let (_, created) = pair
        .json(0, Method::POST, "/api/v1/customers", Some(&customer(1)))
        .await;
    let path = format!("/api/v1/customers/{}", created["id"]);

    // Each round changes every field at once, each through a request of its
    // own, alternately on the two servers; a lost update would leave a field
    // with the previous round's value.
    let fields = [
        "firstname",
        "lastname",
        "company",
        "company_id",
        "address",
        "city",
        "postcode",
        "phone",
    ];
    for round in 0..5 {
        let mut tasks = Vec::new();
        for (i, field) in fields.into_iter().enumerate() {
            let pair = Arc::clone(&pair);
            let path = path.clone();
            tasks.push(tokio::spawn(async move {
                let body = json!({"address": {field: format!("{field}-{round}")}});
                let (status, body) = pair.json(i + round, Method::PUT, &path, Some(&body)).await;
                assert_eq!(status, 200, "{body}");
            }));
        }
        let email = Arc::clone(&pair);
        let email_path = path.clone();
        tasks.push(tokio::spawn(async move {
            let body = json!({"email": format!("round{round}@example.com")});
            let (status, body) = email
                .json(round + 1, Method::PATCH, &email_path, Some(&body))
                .await;
            assert_eq!(status, 200, "{body}");
        }));
        for task in tasks {
            task.await.unwrap();
        }

        for server in 0..2 {
            let (_, now) = pair.json(server, Method::GET, &path, None).await;
            for field in fields {
                assert_eq!(now["address"][field], format!("{field}-{round}"), "{now}");
            }
            assert_eq!(now["email"], format!("round{round}@example.com"), "{now}");
            assert_eq!(now["address"]["country"], "FI", "untouched fields stay");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_creates_over_both_servers_get_two_hundred_distinct_ids() {
    let pair = Arc::new(pair_or_skip!(
        "two_hundred_concurrent_creates_over_both_servers_get_two_hundred_distinct_ids"
    ));
    let tasks: Vec<_> = (0..200)
        .map(|n| {
            let pair = Arc::clone(&pair);
            tokio::spawn(async move {
                let (status, body) = pair
                    .json(n, Method::POST, "/api/v1/customers", Some(&customer(n)))
                    .await;
                assert_eq!(status, 201, "{body}");
                body["id"].as_i64().unwrap()
            })
        })
        .collect();
    let mut ids = HashSet::new();
    for task in tasks {
        ids.insert(task.await.unwrap());
    }
    assert_eq!(ids.len(), 200);

    for server in 0..2 {
        let listed: HashSet<i64> = pair
            .list_all(server)
            .await
            .iter()
            .map(|c| c["id"].as_i64().unwrap())
            .collect();
        assert_eq!(listed, ids, "server {server} lists every customer");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_servers_list_in_the_same_finnish_order() {
    let pair = pair_or_skip!("both_servers_list_in_the_same_finnish_order");
    let names = [
        "Öhman",
        "wikström",
        "Aalto",
        "Åberg",
        "Zetterberg",
        "ärväs",
        "Virtanen",
    ];
    for (i, name) in names.into_iter().enumerate() {
        let body = named(name, "Matti", &format!("{i}@example.com"));
        let (status, _) = pair
            .json(i, Method::POST, "/api/v1/customers", Some(&body))
            .await;
        assert_eq!(status, 201);
    }
    let expected = [
        "Aalto",
        "Virtanen",
        "wikström",
        "Zetterberg",
        "Åberg",
        "ärväs",
        "Öhman",
    ];
    for server in 0..2 {
        let listed: Vec<Value> = pair
            .list_all(server)
            .await
            .iter()
            .map(|c| c["address"]["lastname"].clone())
            .collect();
        assert_eq!(listed, expected, "server {server}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_started_together_on_an_empty_database_migrate_once_and_bootstrap_once() {
    let Some(db) = TestDatabase::create().await else {
        return skipped(
            "servers_started_together_on_an_empty_database_migrate_once_and_bootstrap_once",
        );
    };
    let opened = futures_join_all((0..4).map(|_| {
        let url = db.url.clone();
        async move { store::open(&url).await }
    }))
    .await;
    let stores: Vec<Arc<dyn Store>> = opened.into_iter().map(Result::unwrap).collect();

    let created = futures_join_all(stores.iter().map(|s| {
        let store = Arc::clone(s);
        let (_, key) = app::new_key(None).unwrap();
        async move { store.bootstrap("default", key, now_millis()).await }
    }))
    .await;
    let created: Vec<bool> = created.into_iter().map(Result::unwrap).collect();
    assert_eq!(created.iter().filter(|c| **c).count(), 1, "{created:?}");
    let accounts = stores[3].list_accounts().await.unwrap();
    assert_eq!(accounts.len(), 1);
    assert_eq!(stores[2].list_keys(accounts[0].id).await.unwrap().len(), 1);

    let (client, connection) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let row = client
        .query_one(
            "SELECT count(*), count(DISTINCT version), max(version)::bigint FROM schema_migrations",
            &[],
        )
        .await
        .unwrap();
    let (rows, distinct, max): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
    assert_eq!((rows, distinct), (max, max), "each migration recorded once");
}

/// PostgreSQL orders bytea as Rust orders byte slices, and no collation can
/// apply to it: the list order rests on that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_orders_bytea_as_plain_bytes_whatever_the_collation() {
    let Some(db) = TestDatabase::create().await else {
        return skipped("postgres_orders_bytea_as_plain_bytes_whatever_the_collation");
    };
    let (client, connection) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);

    // Zero bytes, high bytes, and keys that are prefixes of others.
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut keys: Vec<Vec<u8>> = vec![
        vec![],
        vec![0],
        vec![0, 0],
        vec![0xff],
        vec![0x7f],
        vec![0x80],
    ];
    for _ in 0..500 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let len = (state % 6) as usize;
        let key: Vec<u8> = (0..len)
            .map(|i| [0, 1, 0x7f, 0x80, 0xfe, 0xff][(state >> (8 + i * 3)) as usize % 6])
            .collect();
        keys.push(key);
    }
    let rows = client
        .query(
            "SELECT k FROM unnest($1::bytea[]) AS t (k) ORDER BY k",
            &[&keys],
        )
        .await
        .unwrap();
    let ordered: Vec<Vec<u8>> = rows.iter().map(|r| r.get(0)).collect();
    keys.sort();
    assert_eq!(ordered, keys);

    let refused = client
        .query("SELECT '\\x01'::bytea COLLATE \"C\"", &[])
        .await
        .unwrap_err();
    assert!(
        format!("{refused:?}").contains("collations are not supported by type bytea"),
        "{refused:?}"
    );
}

/// Awaits every future, concurrently.
async fn futures_join_all<F>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let tasks: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut outputs = Vec::new();
    for task in tasks {
        outputs.push(task.await.unwrap());
    }
    outputs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_collation_version_recomputes_every_sort_key_at_start() {
    let Some(db) = TestDatabase::create().await else {
        return skipped("a_changed_collation_version_recomputes_every_sort_key_at_start");
    };
    let store = store::open(&db.url).await.unwrap();
    let account = store.create_account("shop", now_millis()).await.unwrap();
    for (i, name) in ["Öhman", "Aalto", "Åberg", "Virtanen"]
        .into_iter()
        .enumerate()
    {
        let data =
            rekisteri::domain::input::parse_new(&named(name, "M", &format!("{i}@example.com")))
                .unwrap();
        store
            .create_customer(account.id, data, now_millis())
            .await
            .unwrap();
    }
    drop(store);

    // As a database left by a binary with other collation rules would be.
    let (client, connection) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .batch_execute(
            "UPDATE customers SET sort_key = '\\x'::bytea;
             UPDATE meta SET value = 'some-older-rules' WHERE key = 'collation_version'",
        )
        .await
        .unwrap();

    let store = store::open(&db.url).await.unwrap();
    let page = store.list_customers(account.id, 1).await.unwrap();
    let names: Vec<&str> = page
        .customers
        .iter()
        .map(|c| c.data.address.lastname.as_str())
        .collect();
    assert_eq!(names, ["Aalto", "Virtanen", "Åberg", "Öhman"]);
    let row = client
        .query_one(
            "SELECT (SELECT value FROM meta WHERE key = 'collation_version'),
                    (SELECT count(*) FROM customers WHERE sort_key = '\\x'::bytea)",
            &[],
        )
        .await
        .unwrap();
    let (version, empty): (String, i64) = (row.get(0), row.get(1));
    assert_eq!(version, rekisteri::domain::sort_key::COLLATION_VERSION);
    assert_eq!(empty, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_idempotency_key_sent_to_both_servers_at_once_makes_exactly_one_change() {
    let pair =
        pair_or_skip!("one_idempotency_key_sent_to_both_servers_at_once_makes_exactly_one_change");
    let pair = Arc::new(pair);
    for round in 0..5 {
        let key = format!("kaksi-{round}");
        let body = customer(round);
        let mut sends = Vec::new();
        for server in 0..8 {
            let (pair, key, body) = (Arc::clone(&pair), key.clone(), body.clone());
            sends.push(tokio::spawn(async move {
                let response = pair
                    .client
                    .post(format!("{}/api/v1/customers", pair.bases[server % 2]))
                    .header("Authorization", format!("Token {}", pair.key))
                    .header("Idempotency-Key", key)
                    .header("Content-Type", "application/json")
                    .body(body.to_string())
                    .send()
                    .await
                    .unwrap();
                response.status().as_u16()
            }));
        }
        let mut statuses = Vec::new();
        for send in sends {
            statuses.push(send.await.unwrap());
        }
        assert!(
            statuses.iter().all(|s| *s == 201 || *s == 409),
            "{statuses:?}"
        );
        assert!(statuses.contains(&201), "{statuses:?}");
    }
    assert_eq!(pair.list_all(0).await.len(), 5, "one customer a key");
}

/// The session id from a sign-in's `Set-Cookie`.
fn session_cookie(response: &Response) -> String {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("rekisteri_session="))
        .and_then(|v| v.split(';').next())
        .map(str::to_owned)
        .expect("a session cookie")
}

/// The token of the first form on a page.
fn csrf_of(html: &str) -> String {
    let at = html
        .find("name=\"csrf\" value=\"")
        .expect("a form with a token")
        + 19;
    html[at..at + 64].to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dashboard_session_from_one_server_works_on_the_other_until_signed_out_there() {
    let pair = pair_or_skip!(
        "a_dashboard_session_from_one_server_works_on_the_other_until_signed_out_there"
    );
    let browser = Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    let page = browser
        .get(format!("{}/app/sign-in", pair.bases[0]))
        .send()
        .await
        .unwrap();
    let pairing = page
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .unwrap()
        .to_owned();
    let token = csrf_of(&page.text().await.unwrap());
    let signed_in = browser
        .post(format!("{}/app/sign-in", pair.bases[0]))
        .header("Cookie", &pairing)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string([("csrf", token.as_str()), ("key", &pair.key)]).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), 303);
    let cookie = format!("rekisteri_session={}", session_cookie(&signed_in));

    // A load balancer may send the next request to the other server.
    let list = browser
        .get(format!("{}/app/customers", pair.bases[1]))
        .header("Cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(list.status(), 200);
    let token = csrf_of(&list.text().await.unwrap());
    let signed_out = browser
        .post(format!("{}/app/sign-out", pair.bases[1]))
        .header("Cookie", &cookie)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!("csrf={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(signed_out.status(), 303);

    let after = browser
        .get(format!("{}/app/customers", pair.bases[0]))
        .header("Cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(
        after.status(),
        303,
        "signed out on one server is signed out on both"
    );
    assert_eq!(
        after.headers().get("location").unwrap(),
        "/app/sign-in?expired=1"
    );
}
