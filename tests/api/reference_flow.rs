//! The reference page's own curl flow, with its own payloads, answered with
//! exactly the documented shapes.

use serde_json::{Value, json};

use crate::on_every_store;
use crate::support::TestApp;

on_every_store!(
    the_reference_flow_works_with_the_reference_payloads,
    a_created_customer_has_exactly_the_documented_keys_in_order,
    timestamps_have_three_fractional_digits_and_the_helsinki_offset,
);

/// The create body of the reference page, byte for byte.
const REFERENCE_CREATE: &str = r#"{
 "email": "matti.meikalainen@example.com",
 "customer_locale": "fi_FI",
 "address": {
  "firstname": "Matti",
  "lastname": "Meikäläinen",
  "address": "Testikatu 1",
  "postcode": "00100",
  "city": "Helsinki",
  "phone": "0401234567",
  "country": "FI"
 }
}"#;

const REFERENCE_UPDATE: &str = r#"{
 "email": "matti.meikalainen@example2.com",
 "address": {
  "firstname": "Uusi nimi"
 }
}"#;

fn without_timestamps(mut customer: Value) -> Value {
    let object = customer.as_object_mut().unwrap();
    object.remove("created_at");
    object.remove("updated_at");
    customer
}

async fn the_reference_flow_works_with_the_reference_payloads(app: TestApp) {
    // Lisää asiakas, with the reference's header spelling (no space).
    let created = app
        .client
        .post(app.url("/api/v1/customers"))
        .header("Authorization", format!("Token {}", app.key))
        .header("Content-Type", "application/json")
        .body(REFERENCE_CREATE)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let id = created.json::<Value>().await.unwrap()["id"]
        .as_i64()
        .unwrap();
    let expected = json!({
        "id": id,
        "email": "matti.meikalainen@example.com",
        "customer_locale": "fi_FI",
        "address": {
            "firstname": "Matti",
            "lastname": "Meikäläinen",
            "company": null,
            "company_id": null,
            "address": "Testikatu 1",
            "city": "Helsinki",
            "postcode": "00100",
            "phone": "0401234567",
            "country": "FI"
        }
    });

    // Hae asiakkaan tiedot.
    let fetched: Value = app
        .get(&format!("/api/v1/customers/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(without_timestamps(fetched.clone()), expected);

    // Listaa asiakkaat.
    let listed: Value = app
        .get("/api/v1/customers?page=1")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["has_more"], false);
    assert_eq!(listed["data"], json!([fetched]));

    // Muokkaa asiakasta.
    let updated = app
        .client
        .put(app.url(&format!("/api/v1/customers/{id}")))
        .header("Authorization", format!("Token {}", app.key))
        .header("Content-Type", "application/json")
        .body(REFERENCE_UPDATE)
        .send()
        .await
        .unwrap();
    assert_eq!(updated.status(), 200);
    let updated: Value = updated.json().await.unwrap();
    let mut expected_after = expected.clone();
    expected_after["email"] = json!("matti.meikalainen@example2.com");
    expected_after["address"]["firstname"] = json!("Uusi nimi");
    assert_eq!(without_timestamps(updated.clone()), expected_after);
    assert_eq!(updated["created_at"], fetched["created_at"]);

    // Poista asiakas.
    let deleted = app.delete(&format!("/api/v1/customers/{id}")).await;
    assert_eq!(deleted.status(), 204);
    assert_eq!(deleted.text().await.unwrap(), "");
    let gone = app.get(&format!("/api/v1/customers/{id}")).await;
    assert_eq!(gone.status(), 404);
}

async fn a_created_customer_has_exactly_the_documented_keys_in_order(app: TestApp) {
    let response = app
        .post_json(
            "/api/v1/customers",
            &serde_json::from_str(REFERENCE_CREATE).unwrap(),
        )
        .await;
    let id = response.headers()["location"].to_str().unwrap().to_owned();
    let text = response.text().await.unwrap();
    // serde_json keeps the order of the wire, so key order is checked too.
    let body: Value = serde_json::from_str(&text).unwrap();
    let keys: Vec<_> = body.as_object().unwrap().keys().cloned().collect();
    assert_eq!(
        keys,
        [
            "id",
            "email",
            "customer_locale",
            "address",
            "created_at",
            "updated_at"
        ]
    );
    let address_keys: Vec<_> = body["address"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert_eq!(
        address_keys,
        [
            "firstname",
            "lastname",
            "company",
            "company_id",
            "address",
            "city",
            "postcode",
            "phone",
            "country"
        ]
    );
    assert_eq!(id, format!("/api/v1/customers/{}", body["id"]));
    assert!(body["id"].as_i64().unwrap() > 0);
}

async fn timestamps_have_three_fractional_digits_and_the_helsinki_offset(app: TestApp) {
    let body = app
        .create(&serde_json::from_str(REFERENCE_CREATE).unwrap())
        .await;
    let created = body["created_at"].as_str().unwrap();
    assert_eq!(body["updated_at"], body["created_at"]);

    // YYYY-MM-DDTHH:MM:SS.mmm+HH:MM
    assert_eq!(created.len(), 29, "{created}");
    assert_eq!(&created[19..20], ".");
    assert!(
        created[20..23].bytes().all(|b| b.is_ascii_digit()),
        "{created}"
    );
    let parsed: jiff::Timestamp = created.parse().unwrap();
    let expected_offset = jiff::tz::TimeZone::get("Europe/Helsinki")
        .unwrap()
        .to_offset(parsed);
    let hours = expected_offset.seconds() / 3600;
    assert!(hours == 2 || hours == 3);
    assert_eq!(&created[23..], format!("+{hours:02}:00"));
    let age = jiff::Timestamp::now().duration_since(parsed);
    assert!(age.as_secs() < 60, "created_at is now, not {created}");
}
