//! Customers in and out in bulk: CSV and JSON Lines files, read and written
//! as streams.
//!
//! A JSON Lines file holds one customer object a line, as the API shows it.
//! A CSV file has a header row naming the fields of the same object, with
//! `address.` before the address fields. Every row of an import passes the
//! API's own validation, since each is turned into the JSON body a create
//! would carry. CSV cannot tell an empty value from none: an empty cell is
//! read as none, so an optional field stored as `""` comes back as `null`.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use indicatif::{ProgressBar, ProgressStyle};
use jiff::tz::TimeZone;
use serde_json::{Map, Value, json};
use tokio::sync::{mpsc, oneshot};

use crate::domain::customer::Customer;
use crate::domain::input::{ValidationErrors, parse_new};
use crate::domain::time::{now_millis, render};
use crate::http::customers::CustomerBody;
use crate::store::{AccountId, Store, StoreError};

/// Customers read from the store at a time by an export.
const EXPORT_BATCH: usize = 1000;

/// Rows between two updates of the progress bar.
const PROGRESS_EVERY: u64 = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Csv,
    Jsonl,
}

impl Format {
    /// The format a file's extension names: `.csv`, or `.jsonl`, `.ndjson`
    /// or `.json` for JSON Lines.
    pub fn of_path(path: &Path) -> Option<Format> {
        let extension = path.extension()?.to_str()?.to_ascii_lowercase();
        match extension.as_str() {
            "csv" => Some(Format::Csv),
            "jsonl" | "ndjson" | "json" => Some(Format::Jsonl),
            _ => None,
        }
    }
}

/// The columns of a CSV export, in the order of the API's objects.
pub const CSV_COLUMNS: [&str; 14] = [
    "id",
    "email",
    "customer_locale",
    "address.firstname",
    "address.lastname",
    "address.company",
    "address.company_id",
    "address.address",
    "address.city",
    "address.postcode",
    "address.phone",
    "address.country",
    "created_at",
    "updated_at",
];

/// Keys of a body an import accepts besides the fields: the read-only ones
/// an export writes, which the validation ignores.
const TOP_LEVEL_KEYS: [&str; 5] = ["id", "email", "customer_locale", "created_at", "updated_at"];
const ADDRESS_KEYS: [&str; 9] = [
    "firstname",
    "lastname",
    "company",
    "company_id",
    "address",
    "city",
    "postcode",
    "phone",
    "country",
];

/// One problem with one row of an import file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The field's dotted path, or `row` for the row as a whole.
    pub field: String,
    pub message: String,
}

/// A row that did not become a customer, and why.
#[derive(Debug, Clone)]
pub struct Rejected {
    /// The line of the file the row starts on, counting from 1.
    pub line: u64,
    pub problems: Vec<Problem>,
    /// The row as read: CSV cells, or the JSON line itself.
    pub raw: RawRow,
}

#[derive(Debug, Clone)]
pub enum RawRow {
    Csv(Vec<String>),
    Jsonl(String),
}

impl Rejected {
    /// `line 7: address.postcode is required; …`, one entry a problem.
    pub fn messages(&self) -> Vec<String> {
        self.problems
            .iter()
            .map(|p| format!("line {}: {} {}", self.line, p.field, p.message))
            .collect()
    }
}

impl std::fmt::Display for Rejected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.messages().join("\n"))
    }
}

fn problems_of(errors: ValidationErrors) -> Vec<Problem> {
    errors
        .0
        .into_iter()
        .map(|e| Problem {
            field: e.path,
            message: e.message,
        })
        .collect()
}

fn row_problem(message: impl Into<String>) -> Vec<Problem> {
    vec![Problem {
        field: "row".into(),
        message: message.into(),
    }]
}

#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// Import the valid rows and reject the others, rather than nothing.
    pub skip_invalid: bool,
}

/// What an import did.
#[derive(Debug)]
pub struct ImportReport {
    /// Customers stored; none when any row was invalid and `skip_invalid`
    /// was not asked for.
    pub imported: u64,
    /// Rows read, valid or not.
    pub rows: u64,
    pub rejected: Vec<Rejected>,
    pub elapsed: Duration,
}

/// Counts the bytes read through it, for the progress bar.
struct Counting<R> {
    inner: R,
    read: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// A progress bar on standard error when it is a terminal; otherwise one
/// that draws nothing.
pub fn progress_bar(total_bytes: Option<u64>, terminal: bool) -> ProgressBar {
    if !terminal {
        return ProgressBar::hidden();
    }
    match total_bytes {
        Some(total) => ProgressBar::new(total).with_style(
            ProgressStyle::with_template(
                "{bar:40} {bytes}/{total_bytes} {msg} ({elapsed}, {eta} left)",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        ),
        None => ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        ),
    }
}

/// Imports the customers of the file at `path` into `account` in one
/// transaction.
pub async fn import(
    store: Arc<dyn Store>,
    account: AccountId,
    path: &Path,
    format: Format,
    options: ImportOptions,
    progress: ProgressBar,
) -> anyhow::Result<ImportReport> {
    let started = Instant::now();
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let read = Arc::new(AtomicU64::new(0));
    let input = Counting {
        inner: file,
        read: Arc::clone(&read),
    };

    // The file is read and validated on a thread of its own while the store
    // inserts what it has been sent, so parsing and writing overlap.
    let (rows, received) = mpsc::channel(1024);
    // The store commits once the channel closes, and the reader and (on
    // SQLite) the store's writer run on threads of their own, which go on
    // when this future is dropped (a request given up on, a client gone).
    // So the reader, having read everything, closes the channel only when
    // this future says to go on; if it is gone instead, the reader abandons
    // the import and nothing is stored.
    let (read_all, all_read) = oneshot::channel::<()>();
    let (go_on, proceed) = oneshot::channel::<()>();
    let reader = {
        let progress = progress.clone();
        tokio::task::spawn_blocking(move || {
            let mut reader = RowReader {
                rows,
                skip_invalid: options.skip_invalid,
                rejected: Vec::new(),
                count: 0,
                read,
                progress,
            };
            let outcome = match format {
                Format::Csv => reader.csv(input),
                Format::Jsonl => reader.jsonl(input),
            };
            let _ = read_all.send(());
            let outcome = match proceed.blocking_recv() {
                Ok(()) => outcome,
                Err(_) => Err(anyhow::anyhow!("the import was abandoned before it ended")),
            };
            reader.finish(outcome)
        })
    };
    let signal = async move {
        if all_read.await.is_ok() {
            let _ = go_on.send(());
        }
    };
    let (stored, ()) = tokio::join!(
        store.import_customers(account, received, now_millis()),
        signal
    );
    let read = reader.await.context("the file reader panicked")?;
    progress.finish_and_clear();
    // A store that failed by itself says why first: the reader then only
    // saw that its rows were no longer taken.
    let stored = match stored {
        Err(StoreError::Aborted(_)) => None,
        Err(e) => return Err(e).context("the import was not stored"),
        Ok(n) => Some(n),
    };
    let (rows, rejected) = read?;
    // Without a count the reader abandoned the import for the invalid rows
    // that the report lists.
    let imported = stored.unwrap_or(0);
    Ok(ImportReport {
        imported,
        rows,
        rejected,
        elapsed: started.elapsed(),
    })
}

/// Turns the rows of a file into customers for the store, keeping the ones
/// it rejects.
struct RowReader {
    rows: mpsc::Sender<Result<crate::domain::customer::CustomerData, String>>,
    skip_invalid: bool,
    rejected: Vec<Rejected>,
    count: u64,
    read: Arc<AtomicU64>,
    progress: ProgressBar,
}

impl RowReader {
    /// Validates one row and sends it on, or keeps it as rejected. Fails
    /// only when the store has stopped taking rows.
    fn row(&mut self, line: u64, body: Result<Value, Vec<Problem>>, raw: RawRow) -> io::Result<()> {
        self.count += 1;
        if self.count.is_multiple_of(PROGRESS_EVERY) {
            self.progress
                .set_position(self.read.load(Ordering::Relaxed));
            self.progress.set_message(format!("{} rows", self.count));
        }
        let parsed = body.and_then(|body| parse_new(&body).map_err(problems_of));
        match parsed {
            Ok(data) => {
                // Once a row is rejected without skip_invalid nothing will be
                // stored, so the rest are only checked.
                if self.skip_invalid || self.rejected.is_empty() {
                    self.rows
                        .blocking_send(Ok(data))
                        .map_err(|_| io::Error::other("the store stopped taking rows"))?;
                }
            }
            Err(problems) => self.rejected.push(Rejected {
                line,
                problems,
                raw,
            }),
        }
        Ok(())
    }

    fn csv(&mut self, input: impl Read) -> anyhow::Result<()> {
        let mut csv = csv::ReaderBuilder::new()
            .has_headers(true)
            .from_reader(input);
        let header: Vec<String> = csv
            .headers()
            .context("cannot read the CSV header row")?
            .iter()
            .map(|h| h.trim().to_owned())
            .collect();
        let columns = header
            .iter()
            .map(|name| Column::named(name))
            .collect::<anyhow::Result<Vec<_>>>()?;
        for (i, name) in header.iter().enumerate() {
            if header[..i].contains(name) {
                bail!("the CSV header names the column {name:?} twice");
            }
        }

        let mut record = csv::StringRecord::new();
        loop {
            match csv.read_record(&mut record) {
                Ok(false) => break,
                Ok(true) => {
                    let line = record.position().map_or(0, |p| p.line());
                    let cells: Vec<String> = record.iter().map(str::to_owned).collect();
                    let body = body_of(&columns, &record);
                    self.row(line, Ok(body), RawRow::Csv(cells))?;
                }
                Err(e) => {
                    let line = e.position().map_or(0, |p| p.line());
                    let problems = match e.kind() {
                        csv::ErrorKind::Io(_) => {
                            return Err(e).context("cannot read the CSV file");
                        }
                        csv::ErrorKind::UnequalLengths {
                            expected_len, len, ..
                        } => row_problem(format!(
                            "has {len} cells where the header has {expected_len}"
                        )),
                        csv::ErrorKind::Utf8 { .. } => row_problem("is not valid UTF-8"),
                        _ => row_problem(format!("cannot be read: {e}")),
                    };
                    self.row(line, Err(problems), RawRow::Csv(Vec::new()))?;
                }
            }
        }
        Ok(())
    }

    fn jsonl(&mut self, input: impl Read) -> anyhow::Result<()> {
        let mut input = BufReader::with_capacity(1 << 16, input);
        let mut buf = Vec::new();
        let mut line = 0_u64;
        loop {
            buf.clear();
            if input
                .read_until(b'\n', &mut buf)
                .context("cannot read the JSON Lines file")?
                == 0
            {
                break;
            }
            line += 1;
            let Ok(text) = std::str::from_utf8(&buf) else {
                let raw = RawRow::Jsonl(String::from_utf8_lossy(&buf).trim_end().to_owned());
                self.row(line, Err(row_problem("is not valid UTF-8")), raw)?;
                continue;
            };
            let text = text.trim();
            if text.is_empty() {
                continue;
            }
            let body = serde_json::from_str::<Value>(text)
                .map_err(|e| row_problem(format!("is not valid JSON: {e}")));
            self.row(line, body, RawRow::Jsonl(text.to_owned()))?;
        }
        Ok(())
    }

    /// Closes the stream to the store: an `Err` when nothing may be stored.
    fn finish(self, outcome: anyhow::Result<()>) -> anyhow::Result<(u64, Vec<Rejected>)> {
        let abort = match &outcome {
            Err(e) => Some(format!("{e:#}")),
            Ok(()) if !self.skip_invalid && !self.rejected.is_empty() => Some(format!(
                "{} of {} rows are invalid",
                self.rejected.len(),
                self.count
            )),
            Ok(()) => None,
        };
        if let Some(reason) = abort {
            // The store may have stopped already; its own error then says why.
            let _ = self.rows.blocking_send(Err(reason));
        }
        outcome?;
        Ok((self.count, self.rejected))
    }
}

/// Where a CSV column's value goes in a create body.
enum Column {
    Top(&'static str),
    Address(&'static str),
}

impl Column {
    fn named(name: &str) -> anyhow::Result<Column> {
        let address = name.strip_prefix("address.");
        if let Some(known) = address.and_then(|key| ADDRESS_KEYS.iter().find(|k| **k == key)) {
            return Ok(Column::Address(known));
        }
        if let Some(known) = TOP_LEVEL_KEYS.iter().find(|k| **k == name) {
            return Ok(Column::Top(known));
        }
        bail!(
            "the CSV header names an unknown column {name:?}; the columns are {}",
            CSV_COLUMNS.join(", ")
        )
    }
}

/// The create body a CSV row stands for; an empty cell is a field not sent.
fn body_of(columns: &[Column], record: &csv::StringRecord) -> Value {
    let mut top = Map::new();
    let mut address = Map::new();
    for (column, cell) in columns.iter().zip(record.iter()) {
        if cell.is_empty() {
            continue;
        }
        let value = Value::String(cell.to_owned());
        match column {
            Column::Top(key) => top.insert((*key).to_owned(), value),
            Column::Address(key) => address.insert((*key).to_owned(), value),
        };
    }
    // An all-empty address still counts as sent, so that its required
    // fields are each reported.
    top.insert("address".into(), Value::Object(address));
    Value::Object(top)
}

/// Writes the rejected rows, each with its line and reasons, in the format
/// the file was in.
pub fn write_rejects(
    path: &Path,
    format: Format,
    header: Option<&[String]>,
    rejected: &[Rejected],
) -> anyhow::Result<()> {
    let file = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut out = BufWriter::new(file);
    match format {
        Format::Csv => {
            let mut csv = csv::WriterBuilder::new().flexible(true).from_writer(out);
            let mut head = vec!["line".to_owned(), "errors".to_owned()];
            head.extend(header.unwrap_or_default().iter().cloned());
            csv.write_record(&head)?;
            for r in rejected {
                let reasons: Vec<String> = r
                    .problems
                    .iter()
                    .map(|p| format!("{} {}", p.field, p.message))
                    .collect();
                let mut cells = vec![r.line.to_string(), reasons.join("; ")];
                if let RawRow::Csv(raw) = &r.raw {
                    cells.extend(raw.iter().cloned());
                }
                csv.write_record(&cells)?;
            }
            csv.flush()?;
        }
        Format::Jsonl => {
            for r in rejected {
                let fields: Map<String, Value> = r
                    .problems
                    .iter()
                    .map(|p| (p.field.clone(), Value::String(p.message.clone())))
                    .collect();
                let input = match &r.raw {
                    RawRow::Jsonl(line) => Value::String(line.clone()),
                    RawRow::Csv(cells) => json!(cells),
                };
                let entry = json!({"line": r.line, "errors": r.messages(), "fields": fields, "input": input});
                serde_json::to_writer(&mut out, &entry)?;
                out.write_all(b"\n")?;
            }
            out.flush()?;
        }
    }
    Ok(())
}

/// The header row of a CSV file, for the rejects file.
pub fn csv_header(path: &Path) -> anyhow::Result<Vec<String>> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut csv = csv::Reader::from_reader(file);
    Ok(csv.headers()?.iter().map(str::to_owned).collect())
}

/// Writes every customer of `account` to `out`, in list order, a batch at a
/// time; returns how many.
pub async fn export(
    store: Arc<dyn Store>,
    account: AccountId,
    out: Box<dyn Write + Send>,
    format: Format,
    zone: TimeZone,
    progress: ProgressBar,
) -> anyhow::Result<u64> {
    // The next batch is read while this one is written.
    let (batches, mut received) = mpsc::channel::<Vec<Customer>>(2);
    let fetcher = tokio::spawn(async move {
        let mut after = None;
        loop {
            let batch = store.export_customers(account, after, EXPORT_BATCH).await?;
            let last = batch.next.is_none();
            after = batch.next;
            if batches.send(batch.customers).await.is_err() || last {
                return Ok::<(), StoreError>(());
            }
        }
    });

    let writer = tokio::task::spawn_blocking(move || -> anyhow::Result<u64> {
        let out = BufWriter::with_capacity(1 << 16, out);
        let mut sink = match format {
            Format::Csv => {
                let mut w = csv::Writer::from_writer(out);
                w.write_record(CSV_COLUMNS)?;
                Sink::Csv(Box::new(w))
            }
            Format::Jsonl => Sink::Jsonl(out),
        };
        let mut count = 0_u64;
        while let Some(batch) = received.blocking_recv() {
            for customer in &batch {
                match &mut sink {
                    Sink::Csv(w) => w.write_record(csv_record(customer, &zone))?,
                    Sink::Jsonl(out) => {
                        serde_json::to_writer(&mut *out, &CustomerBody::new(customer, &zone))?;
                        out.write_all(b"\n")?;
                    }
                }
            }
            count += batch.len() as u64;
            progress.set_message(format!("{count} customers"));
            progress.tick();
        }
        match sink {
            Sink::Csv(mut w) => w.flush()?,
            Sink::Jsonl(mut out) => out.flush()?,
        }
        progress.finish_and_clear();
        Ok(count)
    });

    let written = writer.await.context("the writer panicked")?;
    fetcher
        .await
        .context("the reader panicked")?
        .context("cannot read the customers")?;
    written.context("cannot write the customers")
}

enum Sink<W: Write> {
    Csv(Box<csv::Writer<W>>),
    Jsonl(W),
}

fn csv_record(c: &Customer, zone: &TimeZone) -> [String; 14] {
    let a = &c.data.address;
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    [
        c.id.to_string(),
        c.data.email.clone(),
        c.data.locale.as_str().to_owned(),
        a.firstname.clone(),
        a.lastname.clone(),
        opt(&a.company),
        opt(&a.company_id),
        opt(&a.address),
        a.city.clone(),
        a.postcode.clone(),
        opt(&a.phone),
        a.country.clone(),
        render(c.created_at, zone),
        render(c.updated_at, zone),
    ]
}

/// The path of a file given on the command line, `-` meaning none.
pub fn output_path(path: Option<PathBuf>) -> Option<PathBuf> {
    path.filter(|p| p.as_os_str() != "-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_follow_the_extension() {
        assert_eq!(Format::of_path(Path::new("a.CSV")), Some(Format::Csv));
        assert_eq!(Format::of_path(Path::new("a.jsonl")), Some(Format::Jsonl));
        assert_eq!(Format::of_path(Path::new("a.txt")), None);
    }

    #[test]
    fn an_exported_header_reads_back_as_known_columns() {
        for name in CSV_COLUMNS {
            assert!(Column::named(name).is_ok(), "{name}");
        }
        assert!(Column::named("address.street").is_err());
        assert!(Column::named("firstname").is_err());
    }
}
