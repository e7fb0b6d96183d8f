//! The `rekisteri` binary as an operator runs it: the first-start key, the
//! account and key commands, and acknowledged writes surviving a kill -9.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use reqwest::Client;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::Child;
use tokio::task::JoinSet;

use crate::support::customer;

const BIN: &str = env!("CARGO_BIN_EXE_rekisteri");

/// Runs a command to completion; returns success, stdout and stderr.
fn rekisteri(db: &Path, args: &[&str]) -> (bool, String, String) {
    let output = Command::new(BIN)
        .args(args)
        .arg("--database")
        .arg(format!("sqlite://{}", db.display()))
        .env_remove("REKISTERI_DATABASE_URL")
        .output()
        .expect("the binary runs");
    (
        output.status.success(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

/// A `rekisteri serve` process on a free port, configured by environment.
struct Served {
    child: Child,
    base: String,
    /// What serve printed on standard output before it listened.
    stdout: String,
    /// Every line of its log so far.
    log: Arc<std::sync::Mutex<Vec<String>>>,
}

impl Served {
    async fn start(db: &Path) -> Served {
        Self::start_with(db, &[]).await
    }

    async fn start_with(db: &Path, args: &[&str]) -> Served {
        Self::start_on(&format!("sqlite://{}", db.display()), args).await
    }

    async fn start_on(database_url: &str, args: &[&str]) -> Served {
        let mut child = tokio::process::Command::new(BIN)
            .arg("serve")
            .args(args)
            .env("REKISTERI_DATABASE_URL", database_url)
            .env("REKISTERI_LISTEN", "127.0.0.1:0")
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("the server starts");
        let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        let base = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = stderr.next_line().await.unwrap() {
                log.lock().unwrap().push(line.clone());
                if let Some(addr) = listen_address(&line) {
                    return format!("http://{addr}");
                }
            }
            panic!("the server exited before it listened");
        })
        .await
        .expect("the server listens within 30 s");
        // Keep reading the log so the server never blocks on a full pipe.
        let lines = Arc::clone(&log);
        tokio::spawn(async move {
            while let Ok(Some(line)) = stderr.next_line().await {
                lines.lock().unwrap().push(line);
            }
        });

        // Serve prints the first-start key before it listens, so it is in
        // the pipe by now.
        let mut out = child.stdout.take().unwrap();
        let mut stdout = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(200), out.read(&mut buf)).await
        {
            if n == 0 {
                break;
            }
            stdout.extend_from_slice(&buf[..n]);
        }
        Served {
            child,
            base,
            stdout: String::from_utf8(stdout).unwrap(),
            log,
        }
    }

    fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// SIGKILL: no shutdown code runs, as in a crash or a power cut of the
    /// process.
    async fn kill(mut self) {
        self.child.start_kill().unwrap();
        self.child.wait().await.unwrap();
    }
}

/// The address in the "serving" line, in the text or the JSON format.
fn listen_address(line: &str) -> Option<String> {
    if let Ok(event) = serde_json::from_str::<Value>(line) {
        return (event["message"] == "serving")
            .then(|| event["listen"].as_str().map(str::to_owned))
            .flatten();
    }
    let rest = line.split("listen=").nth(1)?;
    Some(rest.split_whitespace().next()?.to_owned())
}

fn temp_db() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("rekisteri.db");
    (dir, db)
}

fn keys_in(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| rekisteri::domain::api_key::ApiKey::parse(l).is_some())
        .map(str::to_owned)
        .collect()
}

async fn status_with(client: &Client, base: &str, key: &str) -> u16 {
    client
        .get(format!("{base}/api/v1/customers"))
        .header("Authorization", format!("Token {key}"))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn the_first_start_prints_one_key_once_and_it_works() {
    let (_dir, db) = temp_db();
    let first = Served::start(&db).await;
    let keys = keys_in(&first.stdout);
    assert_eq!(keys.len(), 1, "{}", first.stdout);
    let client = Client::new();
    assert_eq!(status_with(&client, &first.base, &keys[0]).await, 200);
    first.kill().await;

    let second = Served::start(&db).await;
    assert!(keys_in(&second.stdout).is_empty(), "{}", second.stdout);
    assert_eq!(status_with(&client, &second.base, &keys[0]).await, 200);
    second.kill().await;

    let (ok, accounts, _) = rekisteri(&db, &["accounts", "list"]);
    assert!(ok);
    assert!(accounts.contains("default"), "{accounts}");
}

#[tokio::test]
async fn keys_create_prints_only_the_key_and_revoke_takes_effect_at_once() {
    let (_dir, db) = temp_db();
    let server = Served::start(&db).await;

    let (ok, out, err) = rekisteri(&db, &["accounts", "create", "shop"]);
    assert!(ok, "{err}");
    assert!(out.contains("shop"));
    // The database flag may come before or after the subcommand's own.
    let output = Command::new(BIN)
        .args(["--database", &format!("sqlite://{}", db.display())])
        .args(["keys", "create", "--account", "shop", "--label", "web shop"])
        .output()
        .unwrap();
    assert!(output.status.success());
    let stdout = String::from_utf8(output.stdout).unwrap();
    let key = stdout.strip_suffix('\n').unwrap().to_owned();
    assert_eq!(
        keys_in(&stdout),
        vec![key.clone()],
        "the key alone: {stdout:?}"
    );

    let client = Client::new();
    assert_eq!(status_with(&client, &server.base, &key).await, 200);

    let (ok, listing, _) = rekisteri(&db, &["keys", "list", "--account", "shop"]);
    assert!(ok);
    assert!(listing.contains(&key[..8]), "{listing}");
    assert!(listing.contains("web shop"), "{listing}");
    assert!(
        !listing.contains(&key[9..]),
        "the secret never shows: {listing}"
    );
    let id = listing
        .lines()
        .find(|l| l.contains(&key[..8]))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_owned();

    let (ok, _, err) = rekisteri(&db, &["keys", "revoke", &id]);
    assert!(ok, "{err}");
    assert_eq!(status_with(&client, &server.base, &key).await, 401);
    let (_, listing, _) = rekisteri(&db, &["keys", "list", "--account", "shop"]);
    assert!(
        !listing.contains("\t-\n"),
        "the key shows as revoked: {listing}"
    );
    server.kill().await;
}

#[tokio::test]
async fn operator_mistakes_fail_with_a_message_and_a_nonzero_exit() {
    let (_dir, db) = temp_db();
    assert!(rekisteri(&db, &["accounts", "create", "shop"]).0);
    let (ok, _, err) = rekisteri(&db, &["accounts", "create", "shop"]);
    assert!(!ok);
    assert!(err.contains("already exists"), "{err}");
    let (ok, out, err) = rekisteri(&db, &["keys", "create", "--account", "nobody"]);
    assert!(!ok && out.is_empty());
    assert!(err.contains("nobody"), "{err}");
    let (ok, _, err) = rekisteri(&db, &["keys", "revoke", "999"]);
    assert!(!ok, "{err}");
    let output = Command::new(BIN)
        .args(["serve", "--database", "mysql://x"])
        .output()
        .unwrap();
    assert!(!output.status.success());
}

#[tokio::test]
async fn acknowledged_writes_survive_a_kill_9() {
    let (_dir, db) = temp_db();
    let server = Served::start(&db).await;
    let key = keys_in(&server.stdout).remove(0);
    let client = Client::new();
    let base = Arc::new(server.base.clone());

    let mut tasks = JoinSet::new();
    for n in 0..64 {
        let (client, base, key) = (client.clone(), Arc::clone(&base), key.clone());
        tasks.spawn(async move {
            let response = client
                .post(format!("{base}/api/v1/customers"))
                .header("Authorization", format!("Token {key}"))
                .header("Content-Type", "application/json")
                .body(customer(n).to_string())
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 201);
            response.json::<Value>().await.unwrap()["id"]
                .as_i64()
                .unwrap()
        });
    }
    let mut acknowledged = tasks.join_all().await;
    acknowledged.sort();
    server.kill().await;

    let again = Served::start(&db).await;
    let mut stored = Vec::new();
    for page in 1..=2 {
        let body: Value = client
            .get(format!("{}/api/v1/customers?page={page}", again.base))
            .header("Authorization", format!("Token {key}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for c in body["data"].as_array().unwrap() {
            stored.push(c["id"].as_i64().unwrap());
        }
    }
    stored.sort();
    assert_eq!(stored, acknowledged);
    again.kill().await;
}

#[tokio::test]
async fn json_logs_have_one_line_per_request_with_its_fields_and_no_secrets() {
    let (_dir, db) = temp_db();
    let server = Served::start_with(&db, &["--log-format", "json"]).await;
    let key = keys_in(&server.stdout).remove(0);
    let client = Client::new();
    let created: Value = client
        .post(format!("{}/api/v1/customers", server.base))
        .header("Authorization", format!("Token {key}"))
        .header("Content-Type", "application/json")
        .header("X-Request-Id", "tilaus-77")
        .body(customer(1).to_string())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let unauthorized = client
        .get(format!("{}/api/v1/customers?page=1", server.base))
        .header(
            "Authorization",
            "Token 0123abcd-0123456789abcdef0123456789abcdef",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorized.status(), 401);
    tokio::time::sleep(Duration::from_millis(200)).await;

    let log = server.log();
    let requests: Vec<Value> = log
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).expect("every line is JSON"))
        .filter(|e| e["message"] == "request")
        .collect();
    assert_eq!(requests.len(), 2, "{log:#?}");
    let create = &requests[0];
    assert_eq!(create["http.method"], "POST");
    assert_eq!(create["http.route"], "/api/v1/customers");
    assert_eq!(create["http.status_code"], 201);
    assert_eq!(create["request.id"], "tilaus-77");
    assert!(create["account.id"].as_i64().is_some(), "{create}");
    assert!(create["duration_ms"].as_f64().is_some(), "{create}");
    assert_eq!(requests[1]["http.status_code"], 401);

    let whole = log.join("\n");
    for secret in [key.as_str(), &key[9..], "0123456789abcdef0123456789abcdef"] {
        assert!(!whole.contains(secret), "a key in the log:\n{whole}");
    }
    for personal in ["asiakas1@example.com", "Meikäläinen", "Etunimi1"] {
        assert!(!whole.contains(personal), "{personal} logged:\n{whole}");
    }
    assert!(created["id"].is_i64());
    server.kill().await;
}

#[tokio::test]
async fn dashboard_requests_are_logged_with_their_account_and_without_secrets() {
    let (_dir, db) = temp_db();
    let server = Served::start_with(&db, &["--log-format", "json"]).await;
    let key = keys_in(&server.stdout).remove(0);
    let browser = Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let page = browser
        .get(format!("{}/app/sign-in", server.base))
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
    let html = page.text().await.unwrap();
    let at = html.find("name=\"csrf\" value=\"").unwrap() + 19;
    let token = &html[at..at + 64];
    let signed_in = browser
        .post(format!("{}/app/sign-in", server.base))
        .header("Cookie", &pairing)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!("csrf={token}&key={key}"))
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), 303);
    let session = signed_in
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("rekisteri_session="))
        .and_then(|v| v.split(';').next())
        .unwrap()
        .to_owned();
    let list = browser
        .get(format!("{}/app/customers", server.base))
        .header("Cookie", format!("rekisteri_session={session}"))
        .send()
        .await
        .unwrap();
    assert_eq!(list.status(), 200);
    tokio::time::sleep(Duration::from_millis(200)).await;

    let log = server.log();
    let requests: Vec<Value> = log
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["message"] == "request")
        .collect();
    let listed = requests
        .iter()
        .find(|e| e["http.route"] == "/app/customers")
        .unwrap_or_else(|| panic!("the list's request is logged: {log:#?}"));
    assert_eq!(listed["http.status_code"], 200);
    assert!(listed["account.id"].as_i64().is_some(), "{listed}");
    let whole = log.join("\n");
    for secret in [key.as_str(), &key[9..], session.as_str(), token] {
        assert!(!whole.contains(secret), "a secret in the log:\n{whole}");
    }
    server.kill().await;
}

#[tokio::test]
async fn sigterm_lets_a_slow_request_in_flight_complete_and_exits_zero() {
    let (_dir, db) = temp_db();
    let server = Served::start(&db).await;
    let key = keys_in(&server.stdout).remove(0);

    // Another connection holds the write lock, so the create waits on it.
    let lock = rusqlite::Connection::open(&db).unwrap();
    lock.execute_batch("BEGIN IMMEDIATE").unwrap();
    let request = {
        let base = server.base.clone();
        tokio::spawn(async move {
            Client::new()
                .post(format!("{base}/api/v1/customers"))
                .header("Authorization", format!("Token {key}"))
                .header("Content-Type", "application/json")
                .body(customer(1).to_string())
                .send()
                .await
                .unwrap()
                .status()
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut child = server.child;
    let pid = child.id().unwrap().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    lock.execute_batch("ROLLBACK").unwrap();

    assert_eq!(
        request.await.unwrap(),
        201,
        "the request in flight completes"
    );
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("the server exits after its requests")
        .unwrap();
    assert!(status.success(), "{status}");
    let (_, accounts, _) = rekisteri(&db, &["accounts", "list"]);
    assert!(accounts.contains("default"));
}

/// What one writer knows of one customer when the server dies.
struct Known {
    id: i64,
    /// The last state the server acknowledged.
    acknowledged: Value,
    /// The city of an update sent but not answered, which may or may not
    /// have committed.
    pending_city: Option<String>,
}

#[tokio::test]
async fn every_acknowledged_create_and_update_survives_a_kill_9_mid_stream_on_sqlite() {
    let (_dir, db) = temp_db();
    kill_9_mid_stream(&format!("sqlite://{}", db.display())).await;
}

#[tokio::test]
async fn every_acknowledged_create_and_update_survives_a_kill_9_mid_stream_on_postgres() {
    let Some(database) = crate::support::postgres::TestDatabase::create().await else {
        crate::support::postgres::skipped("kill_9_mid_stream");
        return;
    };
    kill_9_mid_stream(&database.url).await;
}

/// Writers create and update customers until the server is killed; after
/// a restart every acknowledged state is there, exactly.
async fn kill_9_mid_stream(database_url: &str) {
    let server = Served::start_on(database_url, &[]).await;
    let key = keys_in(&server.stdout).remove(0);
    let base = Arc::new(server.base.clone());

    let acknowledged = Arc::new(AtomicUsize::new(0));
    let mut writers = JoinSet::new();
    for w in 0..16 {
        let (base, key, acks) = (Arc::clone(&base), key.clone(), Arc::clone(&acknowledged));
        writers.spawn(async move { write_until_the_server_dies(w, &base, &key, &acks).await });
    }
    // Kill once the stream is well under way, however fast this machine is.
    for _ in 0..200 {
        if acknowledged.load(Ordering::Relaxed) >= 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.kill().await;
    let known: Vec<Known> = writers.join_all().await.into_iter().flatten().collect();
    let updates = known
        .iter()
        .filter(|k| k.acknowledged["address"]["city"] != "Helsinki")
        .count();
    assert!(
        known.len() >= 16 && updates >= 16,
        "the stream was under way: {} customers, {updates} updated",
        known.len()
    );

    let again = Served::start_on(database_url, &[]).await;
    let client = Client::new();
    for k in &known {
        let stored: Value = client
            .get(format!("{}/api/v1/customers/{}", again.base, k.id))
            .header("Authorization", format!("Token {key}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let exactly_acknowledged = stored == k.acknowledged;
        let pending_committed = k
            .pending_city
            .as_ref()
            .is_some_and(|city| stored["address"]["city"] == city.as_str());
        assert!(
            exactly_acknowledged || pending_committed,
            "customer {}: stored {stored}, acknowledged {}",
            k.id,
            k.acknowledged
        );
    }
    eprintln!("{} customers checked after the kill", known.len());
    again.kill().await;
}

/// Creates customers and updates each a few times, one request at a time,
/// until a request fails because the server is gone.
async fn write_until_the_server_dies(
    worker: usize,
    base: &str,
    key: &str,
    acks: &AtomicUsize,
) -> Vec<Known> {
    let client = Client::new();
    let mut known: Vec<Known> = Vec::new();
    for n in 0.. {
        let created = client
            .post(format!("{base}/api/v1/customers"))
            .header("Authorization", format!("Token {key}"))
            .header("Content-Type", "application/json")
            .body(customer(worker * 10_000 + n).to_string())
            .send()
            .await;
        let Ok(created) = created else { return known };
        let Ok(body) = created.json::<Value>().await else {
            return known;
        };
        let id = body["id"].as_i64().unwrap();
        known.push(Known {
            id,
            acknowledged: body,
            pending_city: None,
        });

        for round in 0..3 {
            let city = format!("Kaupunki {worker}-{n}-{round}");
            let entry = known.last_mut().unwrap();
            entry.pending_city = Some(city.clone());
            let update = client
                .put(format!("{base}/api/v1/customers/{id}"))
                .header("Authorization", format!("Token {key}"))
                .header("Content-Type", "application/json")
                .body(serde_json::json!({"address": {"city": city}}).to_string())
                .send()
                .await;
            let Ok(update) = update else { return known };
            let Ok(body) = update.json::<Value>().await else {
                return known;
            };
            entry.acknowledged = body;
            entry.pending_city = None;
            acks.fetch_add(1, Ordering::Relaxed);
        }
    }
    known
}
