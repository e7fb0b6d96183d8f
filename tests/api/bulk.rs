//! `rekisteri customers import` and `export` on the built binary: round
//! trips of both formats, all-or-nothing with line numbers, and rejects.

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

use crate::on_every_store;
use crate::support::TestApp;

const BIN: &str = env!("CARGO_BIN_EXE_rekisteri");

/// Runs the binary against the app's database; success, stdout, stderr.
fn rekisteri(app: &TestApp, args: &[&str]) -> (bool, String, String) {
    let output = Command::new(BIN)
        .args(args)
        .arg("--database")
        .arg(&app.database_url)
        .env_remove("REKISTERI_DATABASE_URL")
        .env_remove("REKISTERI_TIMEZONE")
        .output()
        .expect("the binary runs");
    (
        output.status.success(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

fn path_arg(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Every customer of the account whose key this is, in list order.
async fn list_all_as(app: &TestApp, key: &str) -> Vec<Value> {
    let mut all = Vec::new();
    for page in 1.. {
        let body: Value = app
            .request_as(
                key,
                reqwest::Method::GET,
                &format!("/api/v1/customers?page={page}"),
            )
            .send()
            .await
            .unwrap()
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

/// What a merchant set, without what the server assigned.
fn data_of(customers: &[Value]) -> Vec<Value> {
    customers
        .iter()
        .map(|c| {
            let mut c = c.clone();
            let object = c.as_object_mut().unwrap();
            for key in ["id", "created_at", "updated_at"] {
                object.remove(key);
            }
            c
        })
        .collect()
}

/// Awkward values: Finnish letters, commas, quotes, a newline inside a
/// field, leading spaces that validation trims.
const TRICKY_CSV: &str = "\
email,customer_locale,address.firstname,address.lastname,address.company,address.company_id,address.address,address.city,address.postcode,address.phone,address.country
matti@example.com,fi_FI,Matti,Meikäläinen,,,Testikatu 1,Helsinki,00100,0401234567,FI
aino@example.com,en_US,Aino,Öhman,\"Oy Ab, \"\"Pörssi\"\"\",1234567-1,\"Kuja 2
C 5\",Espoo,02100,,fi
 åke@example.com ,,Åke,Åberg,,,,Turku,20100,,SE
";

async fn a_csv_file_round_trips(app: TestApp) {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.csv");
    std::fs::write(&input, TRICKY_CSV).unwrap();

    let (ok, out, err) = rekisteri(
        &app,
        &["customers", "import", "--account", "test", path_arg(&input)],
    );
    assert!(ok, "{err}");
    assert!(out.contains("imported 3 customers"), "{out}");
    let listed = app.list_all().await;
    assert_eq!(listed.len(), 3);
    let aino = listed
        .iter()
        .find(|c| c["address"]["firstname"] == "Aino")
        .unwrap();
    assert_eq!(aino["address"]["company"], "Oy Ab, \"Pörssi\"");
    assert_eq!(aino["address"]["address"], "Kuja 2\nC 5");
    assert_eq!(aino["address"]["country"], "FI");
    assert_eq!(aino["customer_locale"], "en_US");
    let ake = listed
        .iter()
        .find(|c| c["address"]["firstname"] == "Åke")
        .unwrap();
    assert_eq!(ake["email"], "åke@example.com");
    assert_eq!(ake["address"]["phone"], Value::Null);

    let exported = dir.path().join("out.csv");
    let (ok, _, err) = rekisteri(
        &app,
        &[
            "customers",
            "export",
            "--account",
            "test",
            path_arg(&exported),
        ],
    );
    assert!(ok, "{err}");
    let text = std::fs::read_to_string(&exported).unwrap();
    assert!(
        text.starts_with("id,email,customer_locale,address.firstname,"),
        "{text}"
    );

    let copy = app.key_for("copy").await;
    let (ok, _, err) = rekisteri(
        &app,
        &[
            "customers",
            "import",
            "--account",
            "copy",
            path_arg(&exported),
        ],
    );
    assert!(ok, "{err}");
    assert_eq!(data_of(&list_all_as(&app, &copy).await), data_of(&listed));
}

async fn a_json_lines_file_round_trips_as_the_api_shows_customers(app: TestApp) {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("in.csv");
    std::fs::write(&csv, TRICKY_CSV).unwrap();
    let (ok, _, err) = rekisteri(
        &app,
        &["customers", "import", "--account", "test", path_arg(&csv)],
    );
    assert!(ok, "{err}");
    let listed = app.list_all().await;

    // To standard output, JSON Lines by default: exactly the API's objects.
    let (ok, out, err) = rekisteri(&app, &["customers", "export", "--account", "test"]);
    assert!(ok, "{err}");
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines, listed);

    let exported = dir.path().join("out.jsonl");
    std::fs::write(&exported, &out).unwrap();
    let copy = app.key_for("copy").await;
    let (ok, _, err) = rekisteri(
        &app,
        &[
            "customers",
            "import",
            "--account",
            "copy",
            path_arg(&exported),
        ],
    );
    assert!(ok, "{err}");
    assert_eq!(data_of(&list_all_as(&app, &copy).await), data_of(&listed));
}

/// Line 3 holds a field with a newline, so the bad rows start on lines 5
/// and 6 of the file, not at rows 4 and 5.
const BAD_CSV: &str = "\
email,address.firstname,address.lastname,address.city,address.postcode,address.country
a@example.com,A,Aalto,Helsinki,00100,FI
b@example.com,B,\"Berg
Jr\",Helsinki,00100,FI
not-an-email,C,Cedergren,Helsinki,,FI
d@example.com,D,Dahl,Helsinki,00100,XX
e@example.com,E,Ek,Helsinki,00100,FI
";

async fn one_bad_row_imports_nothing_and_names_its_line_and_field(app: TestApp) {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("bad.csv");
    std::fs::write(&input, BAD_CSV).unwrap();
    let (ok, _, err) = rekisteri(
        &app,
        &["customers", "import", "--account", "test", path_arg(&input)],
    );
    assert!(!ok);
    assert!(
        err.contains("line 5: email is not a valid email address"),
        "{err}"
    );
    assert!(
        err.contains("line 5: address.postcode is required"),
        "{err}"
    );
    assert!(
        err.contains("line 6: address.country is not an ISO 3166-1"),
        "{err}"
    );
    assert!(
        err.contains("nothing imported: 2 of 5 rows are invalid"),
        "{err}"
    );
    assert!(app.list_all().await.is_empty());

    let jsonl = dir.path().join("bad.jsonl");
    std::fs::write(
        &jsonl,
        "{\"email\":\"a@example.com\",\"address\":{\"firstname\":\"A\",\"lastname\":\"B\",\"city\":\"C\",\"postcode\":\"1\",\"country\":\"FI\"}}\n\n{oops\n{\"email\":\"b@example.com\",\"colour\":\"red\"}\n",
    )
    .unwrap();
    let (ok, _, err) = rekisteri(
        &app,
        &["customers", "import", "--account", "test", path_arg(&jsonl)],
    );
    assert!(!ok);
    assert!(err.contains("line 3: row is not valid JSON"), "{err}");
    assert!(err.contains("line 4: colour is not a known field"), "{err}");
    assert!(err.contains("line 4: address is required"), "{err}");
    assert!(app.list_all().await.is_empty());

    // A misspelt column would drop a field from every row: refused at once.
    let misspelt = dir.path().join("misspelt.csv");
    std::fs::write(&misspelt, "email,address.frstname\na@example.com,A\n").unwrap();
    let (ok, _, err) = rekisteri(
        &app,
        &[
            "customers",
            "import",
            "--account",
            "test",
            path_arg(&misspelt),
        ],
    );
    assert!(!ok);
    assert!(err.contains("unknown column \"address.frstname\""), "{err}");
    assert!(app.list_all().await.is_empty());
}

async fn skip_invalid_imports_the_rest_and_writes_the_rejects(app: TestApp) {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("bad.csv");
    let rejects = dir.path().join("rejects.csv");
    std::fs::write(&input, BAD_CSV).unwrap();
    let (ok, out, err) = rekisteri(
        &app,
        &[
            "customers",
            "import",
            "--account",
            "test",
            path_arg(&input),
            "--skip-invalid",
            "--rejects",
            path_arg(&rejects),
        ],
    );
    assert!(ok, "{err}");
    assert!(out.contains("imported 3 customers"), "{out}");
    assert!(out.contains("rejected 2 rows"), "{out}");
    let names: Vec<Value> = app
        .list_all()
        .await
        .iter()
        .map(|c| c["address"]["lastname"].clone())
        .collect();
    assert_eq!(names, vec![json!("Aalto"), json!("Berg\nJr"), json!("Ek")]);

    let mut csv = csv::Reader::from_path(&rejects).unwrap();
    assert_eq!(
        csv.headers().unwrap().iter().take(3).collect::<Vec<_>>(),
        ["line", "errors", "email"]
    );
    let rows: Vec<csv::StringRecord> = csv.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 2);
    assert_eq!(&rows[0][0], "5");
    assert!(
        rows[0][1].contains("email is not a valid email address"),
        "{:?}",
        rows[0]
    );
    assert!(
        rows[0][1].contains("address.postcode is required"),
        "{:?}",
        rows[0]
    );
    assert_eq!(&rows[0][2], "not-an-email");
    assert_eq!(&rows[1][0], "6");
    assert_eq!(&rows[1][7], "XX");
}

/// Imported customers are found by search like those created one by one,
/// by name with accents folded and by exact email.
async fn imported_customers_are_searchable(app: TestApp) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("customers.csv");
    std::fs::write(&file, TRICKY_CSV).unwrap();
    let (ok, _, err) = rekisteri(
        &app,
        &["customers", "import", "--account", "test", path_arg(&file)],
    );
    assert!(ok, "{err}");
    let find = |query: &'static str| {
        let app = &app;
        async move {
            let body: Value = app
                .get(&format!("/api/v1/customers?{query}"))
                .await
                .json()
                .await
                .unwrap();
            body["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["address"]["lastname"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(find("q=meikalainen").await, ["Meikäläinen"]);
    assert_eq!(find("q=porssi").await, ["Öhman"]);
    assert_eq!(find("q=aberg+turku").await, ["Åberg"]);
    assert_eq!(find("email=MATTI%40EXAMPLE.COM").await, ["Meikäläinen"]);
}

on_every_store!(
    imported_customers_are_searchable,
    a_csv_file_round_trips,
    a_json_lines_file_round_trips_as_the_api_shows_customers,
    one_bad_row_imports_nothing_and_names_its_line_and_field,
    skip_invalid_imports_the_rest_and_writes_the_rejects,
    an_import_given_up_on_stores_nothing,
);

/// An import whose caller goes away (a request that timed out, a browser
/// that closed) must not commit behind its back, although its reader and
/// SQLite's writer run on threads that outlive the call.
async fn an_import_given_up_on_stores_nothing(app: TestApp) {
    use rekisteri::bulk::{self, Format, ImportOptions};
    use std::time::Duration;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("many.jsonl");
    let lines: String = (0..20_000)
        .map(|n| format!("{}\n", crate::support::customer(n)))
        .collect();
    std::fs::write(&path, lines).unwrap();
    let account = app
        .store
        .find_key(
            rekisteri::domain::api_key::ApiKey::parse(&app.key)
                .unwrap()
                .digest(),
        )
        .await
        .unwrap()
        .unwrap()
        .account;

    let import = bulk::import(
        app.store.clone(),
        account,
        &path,
        Format::Jsonl,
        ImportOptions::default(),
        indicatif::ProgressBar::hidden(),
    );
    let outcome = tokio::time::timeout(Duration::from_millis(20), import).await;
    assert!(outcome.is_err(), "20 000 rows take longer than 20 ms");
    // SQLite's one writer takes jobs in order, so once a create made after
    // it is answered, the abandoned import has ended one way or the other.
    let marker = app.create(&crate::support::customer(99_999)).await;
    let stored = app.list_all().await;
    assert_eq!(stored.len(), 1, "nothing of the import was stored");
    assert_eq!(stored[0], marker);

    // The store is not left stuck: the next import goes through.
    let again = bulk::import(
        app.store.clone(),
        account,
        &path,
        Format::Jsonl,
        ImportOptions::default(),
        indicatif::ProgressBar::hidden(),
    )
    .await
    .unwrap();
    assert_eq!(again.imported, 20_000);
    assert_eq!(app.list_all().await.len(), 20_001);
}
