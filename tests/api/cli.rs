//! The `rekisteri` binary as an operator runs it: the first-start key, the
//! account and key commands, and acknowledged writes surviving a kill -9.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
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
}

impl Served {
    async fn start(db: &Path) -> Served {
        let mut child = tokio::process::Command::new(BIN)
            .arg("serve")
            .env(
                "REKISTERI_DATABASE_URL",
                format!("sqlite://{}", db.display()),
            )
            .env("REKISTERI_LISTEN", "127.0.0.1:0")
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("the server starts");
        let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
        let base = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = stderr.next_line().await.unwrap() {
                if let Some(rest) = line.split("listen=").nth(1) {
                    let addr = rest.split_whitespace().next().unwrap();
                    return format!("http://{addr}");
                }
            }
            panic!("the server exited before it listened");
        })
        .await
        .expect("the server listens within 30 s");
        // Keep draining the log so the server never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = stderr.next_line().await {} });

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
        }
    }

    /// SIGKILL: no shutdown code runs, as in a crash or a power cut of the
    /// process.
    async fn kill(mut self) {
        self.child.start_kill().unwrap();
        self.child.wait().await.unwrap();
    }
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
    assert_eq!(keys_in(&stdout), vec![key.clone()], "the key alone: {stdout:?}");

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
