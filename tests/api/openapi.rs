//! The OpenAPI document as the running server serves it: valid OpenAPI 3.1
//! by an independent validator, true to the routes the server answers, the
//! same as `rekisteri openapi` prints, and readable at `/docs` without a
//! network.

use std::process::Command;

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{Backend, TestApp};

const BIN: &str = env!("CARGO_BIN_EXE_rekisteri");

/// The methods a route may answer. HEAD is left out: axum answers it for
/// every GET, as HTTP asks.
const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

async fn start() -> TestApp {
    TestApp::start(Backend::Sqlite)
        .await
        .expect("SQLite is always available")
}

async fn served_document(app: &TestApp) -> (String, Value) {
    let response = app
        .client
        .get(app.url("/api/v1/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "the document needs no key");
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "application/json"
    );
    let text = response.text().await.unwrap();
    let value = serde_json::from_str(&text).expect("the document is JSON");
    (text, value)
}

/// Whether an external tool may be missing here, or must be present.
fn tools_required() -> bool {
    std::env::var("REKISTERI_REQUIRE_CONTRACT_TOOLS").as_deref() == Ok("1")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_served_document_is_valid_openapi_3_1() {
    let app = start().await;
    let (text, value) = served_document(&app).await;
    assert_eq!(value["openapi"], "3.1.0");

    let has_validator = Command::new("python3")
        .args(["-c", "import openapi_spec_validator"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_validator {
        assert!(
            !tools_required(),
            "REKISTERI_REQUIRE_CONTRACT_TOOLS=1 but python3 -m openapi_spec_validator is missing"
        );
        eprintln!(
            "SKIPPED the_served_document_is_valid_openapi_3_1: python3 -m openapi_spec_validator \
             is not installed (pip install openapi-spec-validator)"
        );
        return;
    }

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, &text).unwrap();
    let output = Command::new("python3")
        .args(["-m", "openapi_spec_validator"])
        .arg(&file)
        .output()
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "the validator refused the document:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_prints_the_served_document() {
    let app = start().await;
    let (served, _) = served_document(&app).await;
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(BIN)
        .arg("openapi")
        .current_dir(dir.path())
        .env_remove("REKISTERI_DATABASE_URL")
        .output()
        .unwrap();
    assert!(output.status.success());
    assert_eq!(String::from_utf8(output.stdout).unwrap(), served);
    assert!(
        std::fs::read_dir(dir.path()).unwrap().next().is_none(),
        "printing the document opens no database"
    );
}

/// Every documented operation answers on its path, and every method the
/// document leaves out of a path is `405` with an `Allow` header naming
/// exactly the documented ones: the document and the server agree on the
/// routes from the outside too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_operations_are_exactly_the_answered_ones() {
    let app = start().await;
    let (_, document) = served_document(&app).await;
    let paths = document["paths"].as_object().unwrap();
    assert!(paths.contains_key("/api/v1/customers"));
    assert!(paths.contains_key("/api/v1/customers.json"));
    assert!(paths.contains_key("/api/v1/customers/{id}"));

    for (template, item) in paths {
        let documented: Vec<&str> = METHODS
            .into_iter()
            .filter(|m| item.get(m.to_lowercase()).is_some())
            .collect();
        assert!(!documented.is_empty(), "{template} has no operation");
        // A customer's id may carry the suffix too.
        let concrete: Vec<String> = if template.contains("{id}") {
            vec![
                template.replace("{id}", "1"),
                template.replace("{id}", "1.json"),
            ]
        } else {
            vec![template.clone()]
        };
        for path in concrete {
            for method in METHODS {
                let response = app
                    .request(Method::from_bytes(method.as_bytes()).unwrap(), &path)
                    .header("Content-Type", "application/json")
                    .body(json!({}).to_string())
                    .send()
                    .await
                    .unwrap();
                let status = response.status().as_u16();
                if documented.contains(&method) {
                    assert_ne!(status, 405, "{method} {path} is documented");
                    let body: Value = response.json().await.unwrap_or(Value::Null);
                    assert_ne!(
                        body["errors"][0], "No such route",
                        "{method} {path} is documented"
                    );
                } else {
                    assert_eq!(status, 405, "{method} {path} is not documented");
                    let allow = response.headers()["allow"].to_str().unwrap().to_owned();
                    let mut allowed: Vec<&str> = allow
                        .split(',')
                        .map(str::trim)
                        .filter(|m| *m != "HEAD")
                        .collect();
                    allowed.sort_unstable();
                    let mut expected = documented.clone();
                    expected.sort_unstable();
                    assert_eq!(allowed, expected, "Allow of {path}");
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_docs_page_and_the_index_are_served_from_the_binary() {
    let app = start().await;
    let index = app.client.get(app.url("/")).send().await.unwrap();
    assert_eq!(index.status(), 200);
    assert!(
        index.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(index.text().await.unwrap().contains(r#"href="/docs/""#));

    // reqwest follows the redirect from /docs to /docs/.
    let page = app.client.get(app.url("/docs")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(page.url().path(), "/docs/");
    let html = page.text().await.unwrap();
    assert!(html.contains("swagger-ui"), "{html}");

    let config = app
        .client
        .get(app.url("/docs/swagger-initializer.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(config.status(), 200);
    let config = config.text().await.unwrap();
    assert!(config.contains("/api/v1/openapi.json"), "{config}");

    for asset in ["swagger-ui-bundle.js", "swagger-ui.css"] {
        let response = app
            .client
            .get(app.url(&format!("/docs/{asset}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{asset}");
    }
    // Nothing the page itself names is fetched from elsewhere.
    for text in [&html, &config] {
        for attribute in ["src=\"http", "href=\"http", "url: \"http", "url:\"http"] {
            assert!(!text.contains(attribute), "{attribute} in {text}");
        }
    }
}
