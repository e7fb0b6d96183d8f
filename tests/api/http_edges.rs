//! The edges of the HTTP contract: suffixes, methods, media types, sizes,
//! malformed input and unknown routes, each answered in the error envelope.

use reqwest::Method;
use serde_json::{Value, json};

use crate::on_every_store;
use crate::support::{TestApp, assert_error, customer};

on_every_store!(
    every_path_also_answers_with_a_json_suffix,
    a_wrong_method_is_405_with_an_allow_header,
    a_body_that_is_not_json_media_is_415_and_nothing_is_stored,
    a_charset_parameter_on_the_content_type_is_allowed,
    a_body_over_64_kib_is_413,
    invalid_json_is_a_bad_request,
    a_non_numeric_id_is_a_bad_request_on_every_method,
    an_unknown_route_is_404_in_the_envelope,
    the_liveness_route_answers_without_a_key,
);

async fn every_path_also_answers_with_a_json_suffix(app: TestApp) {
    let created = app.post_json("/api/v1/customers.json", &customer(1)).await;
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.unwrap();
    let path = format!("/api/v1/customers/{}.json", created["id"]);

    let fetched: Value = app.get(&path).await.json().await.unwrap();
    assert_eq!(fetched, created);
    let listed: Value = app
        .get("/api/v1/customers.json")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["data"], json!([created]));
    let updated = app
        .put_json(&path, &json!({"address": {"city": "Oulu"}}))
        .await;
    assert_eq!(updated.status(), 200);
    assert_eq!(app.delete(&path).await.status(), 204);
}

async fn a_wrong_method_is_405_with_an_allow_header(app: TestApp) {
    let created = app.create(&customer(1)).await;
    let member = format!("/api/v1/customers/{}", created["id"]);
    for (method, path, allowed) in [
        (Method::DELETE, "/api/v1/customers", vec!["GET", "POST"]),
        (Method::PUT, "/api/v1/customers.json", vec!["GET", "POST"]),
        (
            Method::POST,
            member.as_str(),
            vec!["GET", "PUT", "PATCH", "DELETE"],
        ),
    ] {
        let response = app.request(method.clone(), path).send().await.unwrap();
        let allow = response.headers()["allow"].to_str().unwrap().to_owned();
        for m in &allowed {
            assert!(
                allow.split(',').any(|a| a.trim() == *m),
                "{method} {path}: {allow}"
            );
        }
        assert_error(response, 405, "method_not_allowed").await;
    }
    assert_eq!(app.list_all().await.len(), 1);
}

async fn a_body_that_is_not_json_media_is_415_and_nothing_is_stored(app: TestApp) {
    let body = customer(1).to_string();
    let plain = app
        .request(Method::POST, "/api/v1/customers")
        .header("Content-Type", "text/plain")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_error(plain, 415, "unsupported_media_type").await;
    let form = app
        .request(Method::POST, "/api/v1/customers")
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("email=a@example.com")
        .send()
        .await
        .unwrap();
    assert_error(form, 415, "unsupported_media_type").await;
    let none = app
        .request(Method::POST, "/api/v1/customers")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_error(none, 415, "unsupported_media_type").await;
    assert!(app.list_all().await.is_empty());

    let created = app.create(&customer(2)).await;
    let put = app
        .request(Method::PUT, &format!("/api/v1/customers/{}", created["id"]))
        .header("Content-Type", "text/xml")
        .body("<customer/>")
        .send()
        .await
        .unwrap();
    assert_error(put, 415, "unsupported_media_type").await;
}

async fn a_charset_parameter_on_the_content_type_is_allowed(app: TestApp) {
    let response = app
        .request(Method::POST, "/api/v1/customers")
        .header("Content-Type", "application/json; charset=utf-8")
        .body(customer(1).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
}

async fn a_body_over_64_kib_is_413(app: TestApp) {
    let mut body = customer(1);
    body["address"]["company"] = json!("x".repeat(70 * 1024));
    let response = app.post_json("/api/v1/customers", &body).await;
    assert_error(response, 413, "payload_too_large").await;

    // Without a declared length (chunked encoding) the limit still holds.
    let (status, text) = chunked_post(&app, "/api/v1/customers", 80, 1024).await;
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("payload_too_large"), "{text}");
    assert!(app.list_all().await.is_empty());
}

/// Sends a chunked POST by hand, `chunks` chunks of `size` spaces, and
/// returns the status and the raw answer.
async fn chunked_post(app: &TestApp, path: &str, chunks: usize, size: usize) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let host = app.base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(host).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Token {}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\
         Connection: close\r\n\r\n",
        app.key
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let chunk = format!("{size:x}\r\n{}\r\n", " ".repeat(size));
    for _ in 0..chunks {
        // The server may answer and close before every chunk is sent.
        if stream.write_all(chunk.as_bytes()).await.is_err() {
            break;
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, answer)
}

async fn invalid_json_is_a_bad_request(app: TestApp) {
    for body in ["{", "", "{\"email\": 'x'}", "nul", "{\"a\":1}{"] {
        let response = app
            .request(Method::POST, "/api/v1/customers")
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_error(response, 400, "bad_request").await;
    }
    assert!(app.list_all().await.is_empty());
}

async fn a_non_numeric_id_is_a_bad_request_on_every_method(app: TestApp) {
    for method in [Method::GET, Method::PUT, Method::PATCH, Method::DELETE] {
        for id in ["abc", "1x", "-1", "1.5"] {
            let response = app
                .request(method.clone(), &format!("/api/v1/customers/{id}"))
                .header("Content-Type", "application/json")
                .body("{}")
                .send()
                .await
                .unwrap();
            assert_error(response, 400, "bad_request").await;
        }
    }
}

async fn an_unknown_route_is_404_in_the_envelope(app: TestApp) {
    // `/` is the index page for people, see the openapi tests.
    for path in [
        "/index.html",
        "/api/v1/customer",
        "/api/v2/customers",
        "/api/v1/customers/1/extra",
    ] {
        assert_error(app.get(path).await, 404, "not_found").await;
    }
}

async fn the_liveness_route_answers_without_a_key(app: TestApp) {
    let response = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
}
