//! The embedded store: one SQLite file in WAL mode.
//!
//! SQLite commits one writer at a time, so every write goes through a single
//! writer thread. It takes all the writes that are waiting, applies each
//! inside a savepoint of one shared transaction, commits once with a full
//! sync, and only then answers each caller (group commit): as many writes as
//! arrive together cost one disk flush, and none is acknowledged before it
//! is durable. Reads run on a small pool of read-only connections beside it.

use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, OpenFlags, OptionalExtension, Row, params};
use tokio::sync::{Semaphore, oneshot};

use super::paging::{self, PageKey, PageRows, PageStarts, Position, Start};
use super::{
    Account, AccountId, Answer, CustomerPage, ExportBatch, Idempotency, ImportRows, KeyInfo,
    NewKey, NewSession, Session, SessionCutoffs, Stat, Store, StoreError, StoreResult, WriteOp,
    WriteReply, WriteResult, migrations,
};
use crate::domain::PAGE_SIZE;
use crate::domain::api_key::KeyDigest;
use crate::domain::customer::{Address, Customer, CustomerData, Locale};
use crate::domain::search::{Filter, SEARCH_VERSION, customer_words, fold_email};
use crate::domain::session::SessionDigest;
use crate::domain::sort_key::{COLLATION_VERSION, sort_key};

/// How often, at most, a key's `last_used_at` is written.
const LAST_USED_RESOLUTION_MS: i64 = 60_000;

/// The most writes one transaction takes, so that one commit never waits on
/// an unbounded queue.
const MAX_BATCH: usize = 512;

#[derive(Debug, Clone)]
pub struct Options {
    /// Read-only connections beside the writer.
    pub readers: usize,
    /// How long a statement waits for a lock held by another process (a
    /// command-line tool writing to the same file) before giving up.
    pub busy_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            readers: 4,
            busy_timeout: Duration::from_secs(5),
        }
    }
}

/// What the writer thread runs for one request: it does its work on the
/// connection and says whether it succeeded (so its savepoint is kept or
/// rolled back), and hands back what to do once the commit's fate is known.
/// Without a connection (`None`) the job must not do its work: the writer
/// could not begin the batch's transaction, and the job only reports that.
type Job = Box<dyn FnOnce(Option<&Connection>) -> (bool, Completion) + Send>;
type Completion = Box<dyn FnOnce(Result<(), String>) + Send>;

/// Counters the writer thread keeps for `/metrics`.
#[derive(Default)]
struct WriterStats {
    commits: AtomicU64,
    writes: AtomicU64,
}

pub struct SqliteStore {
    writer: Option<mpsc::Sender<Job>>,
    writer_thread: Option<thread::JoinHandle<()>>,
    stats: Arc<WriterStats>,
    readers: Arc<Mutex<Vec<Connection>>>,
    reader_slots: Arc<Semaphore>,
    pages: Arc<PageStarts>,
}

impl SqliteStore {
    /// Opens (creating if missing) the database file at `path`, migrates it
    /// and starts the writer thread.
    pub fn open(path: &str, options: Options) -> anyhow::Result<SqliteStore> {
        use anyhow::Context as _;

        if path.is_empty() {
            anyhow::bail!("the SQLite URL names no file: use sqlite://PATH");
        }
        let mut conn = Connection::open(Path::new(path))
            .with_context(|| format!("failed to open the SQLite database {path:?}"))?;
        configure(&conn, &options).context("failed to configure the SQLite database")?;
        migrate(&mut conn).context("failed to migrate the SQLite database")?;
        refresh_derived(&mut conn)
            .context("failed to recompute the sort keys and the search index")?;

        let mut readers = Vec::with_capacity(options.readers);
        for _ in 0..options.readers.max(1) {
            let reader = Connection::open_with_flags(
                Path::new(path),
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .with_context(|| format!("failed to open a reader on {path:?}"))?;
            reader.busy_timeout(options.busy_timeout)?;
            keep_plans(&reader)?;
            readers.push(reader);
        }

        let (sender, receiver) = mpsc::channel::<Job>();
        let stats = Arc::new(WriterStats::default());
        let writer_stats = Arc::clone(&stats);
        let writer_thread = thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || run_writer(conn, receiver, &writer_stats))
            .context("failed to start the SQLite writer thread")?;

        Ok(SqliteStore {
            writer: Some(sender),
            writer_thread: Some(writer_thread),
            stats,
            reader_slots: Arc::new(Semaphore::new(readers.len())),
            readers: Arc::new(Mutex::new(readers)),
            pages: Arc::new(PageStarts::default()),
        })
    }

    fn submit(&self, job: Job) -> StoreResult<()> {
        self.writer
            .as_ref()
            .ok_or_else(|| StoreError::Internal("the store is closed".into()))?
            .send(job)
            .map_err(|_| StoreError::Internal("the SQLite writer thread has stopped".into()))
    }

    /// Runs `work` in the shared write transaction and answers once it is
    /// committed.
    async fn run_write<T, F>(&self, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        self.submit(Box::new(move |conn| {
            let result = match conn {
                Some(conn) => work(conn),
                None => Err(StoreError::Unavailable(
                    "the database is locked by another process".into(),
                )),
            };
            let ok = result.is_ok();
            let completion: Completion = Box::new(move |commit| {
                let answer = match (commit, result) {
                    (_, Err(e)) => Err(e),
                    (Ok(()), done) => done,
                    (Err(e), Ok(_)) => Err(StoreError::Internal(format!("commit failed: {e}"))),
                };
                let _ = tx.send(answer);
            });
            (ok, completion)
        }))?;
        rx.await
            .map_err(|_| StoreError::Internal("the SQLite writer dropped a request".into()))?
    }

    /// Runs a short read (an indexed lookup, a page from a known start) on
    /// the calling thread when a connection is free at once, and otherwise
    /// as [`Self::read`] does. A read from a hot page cache takes tens of
    /// microseconds; handing it to the blocking pool and back cost more than
    /// that in thread wake-ups (under load, half the CPU time was in futex
    /// calls and context switches). In WAL mode a reader waits for a lock
    /// only while another process recovers the log after a crash, so the
    /// calling thread is not held for long.
    async fn read_short<T, F>(&self, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        if let Ok(_permit) = self.reader_slots.try_acquire() {
            let conn = Lent::take(&self.readers)?;
            return work(&conn);
        }
        self.read(work).await
    }

    /// Runs `work` on a read-only connection, on a blocking thread.
    async fn read<T, F>(&self, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        // The permit moves into the blocking task and is released only when
        // the connection is back in the pool: a request given up on while its
        // read still runs (a client that hung up) must not let another take
        // the permit of a connection that is still lent out.
        let permit = Arc::clone(&self.reader_slots)
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Internal("the reader pool is closed".into()))?;
        let readers = Arc::clone(&self.readers);
        tokio::task::spawn_blocking(move || {
            let conn = Lent::take(&readers)?;
            let result = work(&conn);
            drop(conn);
            drop(permit);
            result
        })
        .await
        .map_err(|e| StoreError::Internal(format!("a read panicked: {e}")))?
    }
}

/// A reader taken from the pool, put back when dropped, a panic included, so
/// that the pool always holds as many connections as the semaphore counts.
struct Lent<'p> {
    conn: Option<Connection>,
    pool: &'p Mutex<Vec<Connection>>,
}

impl<'p> Lent<'p> {
    /// Only with a permit of the pool's semaphore, which guarantees a free
    /// connection.
    fn take(pool: &'p Mutex<Vec<Connection>>) -> StoreResult<Lent<'p>> {
        let conn = pool
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop()
            .ok_or_else(|| StoreError::Internal("no free reader".into()))?;
        Ok(Lent {
            conn: Some(conn),
            pool,
        })
    }
}

impl std::ops::Deref for Lent<'_> {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        self.conn
            .as_ref()
            .expect("a lent connection is held until dropped")
    }
}

impl Drop for Lent<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.pool
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(conn);
        }
    }
}

/// Keeps each statement's query plan whatever its parameters' values. The
/// bundled SQLite is built with STAT4, under which a statement that compares
/// a parameter with an indexed column is compiled again whenever its
/// bindings change, and the statement cache clears them on every reuse: a
/// list request spent a tenth of its time in the parser.
fn keep_plans(conn: &Connection) -> rusqlite::Result<()> {
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    Ok(())
}

fn configure(conn: &Connection, options: &Options) -> rusqlite::Result<()> {
    conn.busy_timeout(options.busy_timeout)?;
    keep_plans(conn)?;
    // WAL lets readers run beside the writer; FULL syncs the WAL on every
    // commit, so an acknowledged write survives a power cut.
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(())
}

fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let applied: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let applied = usize::try_from(applied).unwrap_or(0);
    for (i, sql) in migrations::SQLITE.iter().enumerate().skip(applied) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i as i64 + 1)?;
        tx.commit()?;
    }
    Ok(())
}

/// The version a database records for some data it derived, if any.
fn recorded_version(conn: &Connection, key: &str) -> rusqlite::Result<Option<String>> {
    conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
        .optional()
}

/// Recomputes what the server derives from each customer (the sort key, the
/// search words) when the stored values were made by other rules than this
/// binary's, or by none, on a new database or after a migration.
fn refresh_derived(conn: &mut Connection) -> rusqlite::Result<()> {
    let keys_stale =
        recorded_version(conn, "collation_version")?.as_deref() != Some(COLLATION_VERSION);
    let words_stale = recorded_version(conn, "search_version")?.as_deref() != Some(SEARCH_VERSION);
    if !keys_stale && !words_stale {
        return Ok(());
    }

    let tx = conn.transaction()?;
    if words_stale {
        tx.execute("DELETE FROM customer_words", [])?;
    }
    {
        let mut select = tx.prepare(&format!(
            "SELECT {CUSTOMER_COLUMNS}, account_id FROM customers"
        ))?;
        let mut update = tx.prepare("UPDATE customers SET sort_key = ?1 WHERE id = ?2")?;
        let mut fold = tx.prepare("UPDATE customers SET email_folded = ?1 WHERE id = ?2")?;
        let mut rows = select.query([])?;
        while let Some(row) = rows.next()? {
            let customer = customer_from_row(row)?;
            if keys_stale {
                update.execute(params![sort_key(&customer.data), customer.id])?;
            }
            if words_stale {
                let account = AccountId(row.get(15)?);
                let mut words = words_of(customer.id, &customer.data);
                insert_words(&tx, account, &mut words)
                    .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
                fold.execute(params![fold_email(&customer.data.email), customer.id])?;
            }
        }
    }
    for (key, value) in [
        ("collation_version", COLLATION_VERSION),
        ("search_version", SEARCH_VERSION),
    ] {
        tx.execute(
            "INSERT INTO meta (key, value) VALUES (?1, ?2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [key, value],
        )?;
    }
    tx.commit()
}

/// A customer's search words, each with the customer's id.
fn words_of(id: i64, data: &CustomerData) -> Vec<(String, i64)> {
    customer_words(data).into_iter().map(|w| (w, id)).collect()
}

/// The writer thread: batches waiting jobs into one transaction until every
/// sender is gone.
fn run_writer(conn: Connection, jobs: mpsc::Receiver<Job>, stats: &WriterStats) {
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        stats
            .writes
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        run_batch(&conn, batch);
        stats.commits.fetch_add(1, Ordering::Relaxed);
    }
    // Closing the connection checkpoints the WAL into the database file.
    drop(conn);
}

impl Drop for SqliteStore {
    /// Lets the writer finish what is queued and close the database before
    /// the store is gone, so a clean shutdown leaves a checkpointed file.
    fn drop(&mut self) {
        drop(self.writer.take());
        if let Some(thread) = self.writer_thread.take() {
            let _ = thread.join();
        }
    }
}

fn run_batch(conn: &Connection, batch: Vec<Job>) {
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        let message = e.to_string();
        tracing::warn!(error = %message, jobs = batch.len(), "could not begin a write transaction");
        for job in batch {
            // Without a transaction the job must not run: its work would
            // commit on its own, outside the batch. It answers its caller.
            let (_, completion) = job(None);
            completion(Err(message.clone()));
        }
        return;
    }

    let mut completions = Vec::with_capacity(batch.len());
    for job in batch {
        // Prepared once: parsing these twice a write cost the writer thread,
        // which every write waits for, more than some writes themselves.
        let savepoint = run_cached(conn, "SAVEPOINT job");
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| job(Some(conn))));
        let (ok, completion) = match outcome {
            Ok(done) => done,
            Err(_) => {
                tracing::error!("a write panicked; its changes are rolled back");
                let _ = conn.execute_batch("ROLLBACK TO job; RELEASE job");
                continue;
            }
        };
        if ok && savepoint.is_ok() {
            let _ = run_cached(conn, "RELEASE job");
        } else {
            let _ = conn.execute_batch("ROLLBACK TO job; RELEASE job");
        }
        completions.push(completion);
    }

    let commit = conn.execute_batch("COMMIT").map_err(|e| e.to_string());
    if commit.is_err() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    for completion in completions {
        completion(commit.clone());
    }
}

fn run_cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([])?;
    Ok(())
}

const CUSTOMER_COLUMNS: &str = "id, version, email, customer_locale, firstname, lastname, \
     company, company_id, street, city, postcode, phone, country, created_at, updated_at";

fn customer_from_row(row: &Row<'_>) -> rusqlite::Result<Customer> {
    let locale: String = row.get(3)?;
    Ok(Customer {
        id: row.get(0)?,
        version: row.get(1)?,
        data: CustomerData {
            email: row.get(2)?,
            locale: Locale::parse(&locale).unwrap_or_default(),
            address: Address {
                firstname: row.get(4)?,
                lastname: row.get(5)?,
                company: row.get(6)?,
                company_id: row.get(7)?,
                address: row.get(8)?,
                city: row.get(9)?,
                postcode: row.get(10)?,
                phone: row.get(11)?,
                country: row.get(12)?,
            },
        },
        created_at: row.get(13)?,
        updated_at: row.get(14)?,
    })
}

/// A customer row followed by its sort key.
fn customer_and_key(row: &Row<'_>) -> rusqlite::Result<(Customer, Vec<u8>)> {
    Ok((customer_from_row(row)?, row.get(15)?))
}

/// The change counter of `account` and up to `PAGE_SIZE + 1` rows from
/// `start`, read in one snapshot so that the counter describes those rows.
fn read_page(conn: &Connection, account: AccountId, start: &Start) -> StoreResult<(i64, PageRows)> {
    conn.prepare_cached("BEGIN")?.execute([])?;
    let read = || -> StoreResult<_> {
        let version: i64 = conn
            .prepare_cached("SELECT change_counter FROM accounts WHERE id = ?1")?
            .query_row([account.0], |r| r.get(0))
            .optional()?
            .unwrap_or(0);
        let limit = PAGE_SIZE as i64 + 1;
        let rows = match start {
            Start::Offset(offset) => conn
                .prepare_cached(&format!(
                    "SELECT {CUSTOMER_COLUMNS}, sort_key FROM customers WHERE account_id = ?1
                     ORDER BY sort_key, id LIMIT ?2 OFFSET ?3"
                ))?
                .query_map(params![account.0, limit, offset], customer_and_key)?
                .collect::<rusqlite::Result<Vec<_>>>()?,
            Start::At(at) => conn
                .prepare_cached(&format!(
                    "SELECT {CUSTOMER_COLUMNS}, sort_key FROM customers
                     WHERE account_id = ?1 AND (sort_key, id) >= (?2, ?3)
                     ORDER BY sort_key, id LIMIT ?4"
                ))?
                .query_map(
                    params![account.0, at.sort_key, at.id, limit],
                    customer_and_key,
                )?
                .collect::<rusqlite::Result<Vec<_>>>()?,
        };
        Ok((version, rows))
    };
    let result = read();
    // Ends the read transaction whether or not the reads succeeded, so the
    // connection goes back to the pool clean.
    let end = conn.prepare_cached("COMMIT")?.execute([]);
    let result = result?;
    end?;
    Ok(result)
}

/// Pages up to this one are read by offset on the calling thread.
const SHORT_OFFSET_PAGES: u64 = 20;

/// The page cache an import runs with, in KiB (a negative `cache_size`).
const IMPORT_CACHE_KIB: i64 = -256 * 1024;

const INSERT_CUSTOMER: &str = "INSERT INTO customers (account_id, version, email,
        customer_locale, firstname, lastname, company, company_id, street, city, postcode,
        phone, country, sort_key, created_at, updated_at, email_folded)
     VALUES (?1, 1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?14, ?15)";

/// How many search words an import holds before it writes them, sorted.
const IMPORT_WORD_BATCH: usize = 1_000_000;

/// Writes search words of new customers in index order: sorted, an
/// import's words land on neighbouring pages instead of all over the index.
fn insert_words(
    conn: &Connection,
    account: AccountId,
    words: &mut Vec<(String, i64)>,
) -> StoreResult<()> {
    words.sort_unstable();
    let mut insert = conn.prepare_cached(
        "INSERT INTO customer_words (account_id, word, customer_id) VALUES (?1, ?2, ?3)",
    )?;
    for (word, id) in words.drain(..) {
        insert.execute(params![account.0, word, id])?;
    }
    Ok(())
}

fn insert_customer(
    stmt: &mut rusqlite::CachedStatement<'_>,
    account: AccountId,
    data: &CustomerData,
    key: &[u8],
    now: i64,
) -> rusqlite::Result<()> {
    let a = &data.address;
    stmt.execute(params![
        account.0,
        data.email,
        data.locale.as_str(),
        a.firstname,
        a.lastname,
        a.company,
        a.company_id,
        a.address,
        a.city,
        a.postcode,
        a.phone,
        a.country,
        key,
        now,
        fold_email(&data.email),
    ])?;
    Ok(())
}

fn fetch_customer(conn: &Connection, account: AccountId, id: i64) -> StoreResult<Option<Customer>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {CUSTOMER_COLUMNS} FROM customers WHERE id = ?1 AND account_id = ?2"
    ))?;
    Ok(stmt
        .query_row(params![id, account.0], customer_from_row)
        .optional()?)
}

const KEY_COLUMNS: &str = "id, account_id, prefix, label, created_at, last_used_at, revoked_at";

fn key_from_row(row: &Row<'_>) -> rusqlite::Result<KeyInfo> {
    Ok(KeyInfo {
        id: row.get(0)?,
        account: AccountId(row.get(1)?),
        prefix: row.get(2)?,
        label: row.get(3)?,
        created_at: row.get(4)?,
        last_used_at: row.get(5)?,
        revoked_at: row.get(6)?,
    })
}

fn account_from_row(row: &Row<'_>) -> rusqlite::Result<Account> {
    Ok(Account {
        id: AccountId(row.get(0)?),
        name: row.get(1)?,
        created_at: row.get(2)?,
    })
}

fn insert_key(conn: &Connection, account: AccountId, key: &NewKey, now: i64) -> StoreResult<i64> {
    conn.execute(
        "INSERT INTO api_keys (account_id, prefix, digest, label, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![account.0, key.prefix, &key.digest.0[..], key.label, now],
    )?;
    Ok(conn.last_insert_rowid())
}

fn insert_account(conn: &Connection, name: &str, now: i64) -> StoreResult<Account> {
    let inserted = conn.execute(
        "INSERT INTO accounts (name, created_at) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING",
        params![name, now],
    )?;
    if inserted == 0 {
        return Err(StoreError::Conflict(format!(
            "an account named {name:?} already exists"
        )));
    }
    Ok(Account {
        id: AccountId(conn.last_insert_rowid()),
        name: name.to_owned(),
        created_at: now,
    })
}

/// Carries out one change on the writer's connection. `new_key` is the sort
/// key of a customer to create, computed before the job reached the writer.
fn apply(
    conn: &Connection,
    account: AccountId,
    op: WriteOp,
    new_key: Option<Vec<u8>>,
    now: i64,
) -> StoreResult<WriteResult> {
    match op {
        WriteOp::Create(data) => {
            let key = new_key.unwrap_or_else(|| sort_key(&data));
            create_row(conn, account, data, &key, now).map(WriteResult::Created)
        }
        WriteOp::Update {
            id,
            patch,
            precondition,
        } => {
            let Some(current) = fetch_customer(conn, account, id)? else {
                return Ok(WriteResult::NotFound);
            };
            if precondition.is_some_and(|p| !p.holds(&current)) {
                return Ok(WriteResult::PreconditionFailed);
            }
            let data = patch.apply(&current.data);
            if data == current.data {
                return Ok(WriteResult::Unchanged(current));
            }
            update_row(conn, &data, id, now)?;
            conn.prepare_cached("DELETE FROM customer_words WHERE customer_id = ?1")?
                .execute([id])?;
            insert_words(conn, account, &mut words_of(id, &data))?;
            Ok(WriteResult::Updated(Customer {
                id,
                version: current.version + 1,
                data,
                created_at: current.created_at,
                updated_at: now,
            }))
        }
        WriteOp::Delete { id, precondition } => {
            let Some(current) = fetch_customer(conn, account, id)? else {
                return Ok(WriteResult::NotFound);
            };
            if precondition.is_some_and(|p| !p.holds(&current)) {
                return Ok(WriteResult::PreconditionFailed);
            }
            conn.prepare_cached("DELETE FROM customers WHERE id = ?1")?
                .execute([id])?;
            conn.prepare_cached("DELETE FROM customer_words WHERE customer_id = ?1")?
                .execute([id])?;
            // Recorded answers that carry the customer's data go with it.
            conn.prepare_cached(
                "DELETE FROM idempotency_keys WHERE account_id = ?1 AND customer_id = ?2",
            )?
            .execute(params![account.0, id])?;
            Ok(WriteResult::Deleted)
        }
    }
}

/// Inserts a new customer with its precomputed sort key, and indexes it.
fn create_row(
    conn: &Connection,
    account: AccountId,
    data: CustomerData,
    key: &[u8],
    now: i64,
) -> StoreResult<Customer> {
    let mut stmt = conn.prepare_cached(INSERT_CUSTOMER)?;
    insert_customer(&mut stmt, account, &data, key, now)?;
    let id = conn.last_insert_rowid();
    insert_words(conn, account, &mut words_of(id, &data))?;
    Ok(Customer {
        id,
        version: 1,
        data,
        created_at: now,
        updated_at: now,
    })
}

fn update_row(conn: &Connection, data: &CustomerData, id: i64, now: i64) -> StoreResult<()> {
    let a = &data.address;
    let mut stmt = conn.prepare_cached(
        "UPDATE customers SET version = version + 1, email = ?1, customer_locale = ?2,
            firstname = ?3, lastname = ?4, company = ?5, company_id = ?6, street = ?7,
            city = ?8, postcode = ?9, phone = ?10, country = ?11, sort_key = ?12,
            updated_at = ?13, email_folded = ?15
         WHERE id = ?14",
    )?;
    stmt.execute(params![
        data.email,
        data.locale.as_str(),
        a.firstname,
        a.lastname,
        a.company,
        a.company_id,
        a.address,
        a.city,
        a.postcode,
        a.phone,
        a.country,
        sort_key(data),
        now,
        id,
        fold_email(&data.email),
    ])?;
    Ok(())
}

/// The reply a key already determines: a replay, a reuse, or `None` when the
/// key is new (an expired record is removed so the key can be used again).
fn recorded(
    conn: &Connection,
    account: AccountId,
    idem: &Idempotency,
) -> StoreResult<Option<WriteReply>> {
    let mut stmt = conn.prepare_cached(
        "SELECT fingerprint, status, headers, body, created_at FROM idempotency_keys
         WHERE account_id = ?1 AND key = ?2",
    )?;
    let row = stmt
        .query_row(params![account.0, idem.key], |r| {
            Ok((
                r.get::<_, Vec<u8>>(0)?,
                r.get::<_, u16>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, Vec<u8>>(3)?,
                r.get::<_, i64>(4)?,
            ))
        })
        .optional()?;
    let Some((fingerprint, status, headers, body, created_at)) = row else {
        return Ok(None);
    };
    if created_at < idem.not_before {
        conn.prepare_cached("DELETE FROM idempotency_keys WHERE account_id = ?1 AND key = ?2")?
            .execute(params![account.0, idem.key])?;
        return Ok(None);
    }
    if fingerprint != idem.fingerprint {
        return Ok(Some(WriteReply::KeyReused));
    }
    Ok(Some(WriteReply::Replayed(Answer {
        status,
        headers: super::decode_headers(&headers)?,
        body,
    })))
}

fn record(
    conn: &Connection,
    account: AccountId,
    key: &str,
    fingerprint: &[u8; 32],
    answer: &Answer,
    result: &WriteResult,
    now: i64,
) -> StoreResult<()> {
    conn.prepare_cached(
        "INSERT INTO idempotency_keys
            (account_id, key, fingerprint, status, headers, body, customer_id, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        account.0,
        key,
        &fingerprint[..],
        answer.status,
        super::encode_headers(&answer.headers),
        answer.body,
        result.customer().map(|c| c.id),
        now,
    ])?;
    Ok(())
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
                StoreError::Unavailable(e.to_string())
            }
            _ => StoreError::Internal(e.to_string()),
        }
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn authenticate(&self, digest: KeyDigest, now: i64) -> StoreResult<Option<AccountId>> {
        let found = self
            .read_short(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT id, account_id, last_used_at FROM api_keys
                     WHERE digest = ?1 AND revoked_at IS NULL",
                )?;
                let row = stmt
                    .query_row([&digest.0[..]], |r| {
                        Ok((r.get::<_, i64>(0)?, r.get(1)?, r.get::<_, Option<i64>>(2)?))
                    })
                    .optional()?;
                Ok(row)
            })
            .await?;
        let Some((key_id, account, last_used)) = found else {
            return Ok(None);
        };

        if last_used.is_none_or(|t| now - t >= LAST_USED_RESOLUTION_MS) {
            // Nobody waits for this bookkeeping; a failure only means the
            // timestamp is a little older than it could be.
            self.submit(Box::new(move |conn| {
                let ok = conn.is_some_and(|conn| {
                    conn.execute(
                        "UPDATE api_keys SET last_used_at = ?1 WHERE id = ?2",
                        params![now, key_id],
                    )
                    .is_ok()
                });
                (ok, Box::new(|_| {}))
            }))?;
        }
        Ok(Some(AccountId(account)))
    }

    async fn list_customers(&self, account: AccountId, page: u64) -> StoreResult<CustomerPage> {
        let key = PageKey { account, page };
        let (start, expected) = paging::plan(&self.pages, &key);
        let pages = Arc::clone(&self.pages);
        let work = move |conn: &Connection| {
            let (mut version, mut rows) = read_page(conn, account, &start)?;
            let stale = expected.is_some_and(|v| v != version);
            if stale {
                let offset = Start::Offset(paging::offset_of(page));
                (version, rows) = read_page(conn, account, &offset)?;
            }
            if page > 1 {
                pages.served(expected.is_some() && !stale);
            }
            Ok(paging::finish(&pages, &key, version, rows))
        };
        // A page from a known start is short whatever its number; one that
        // skips many rows may take long enough to hold up a worker thread.
        if expected.is_some() || page <= SHORT_OFFSET_PAGES {
            self.read_short(work).await
        } else {
            self.read(work).await
        }
    }

    async fn search_customers(
        &self,
        account: AccountId,
        filter: &Filter,
        page: u64,
    ) -> StoreResult<CustomerPage> {
        let Some(offset) = super::page_offset(page) else {
            return Ok(CustomerPage {
                customers: Vec::new(),
                has_more: false,
            });
        };
        let (sql, bound) =
            super::search_statement(CUSTOMER_COLUMNS, account, filter, offset, |n| {
                format!("?{n}")
            });
        self.read(move |conn| {
            use rusqlite::types::Value;
            let values = bound.into_iter().map(|b| match b {
                super::Bound::Int(i) => Value::Integer(i),
                super::Bound::Text(t) => Value::Text(t),
            });
            let mut stmt = conn.prepare_cached(&sql)?;
            let mut customers = stmt
                .query_map(rusqlite::params_from_iter(values), customer_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let has_more = customers.len() as u64 > PAGE_SIZE;
            customers.truncate(PAGE_SIZE as usize);
            Ok(CustomerPage {
                customers,
                has_more,
            })
        })
        .await
    }

    async fn get_customer(&self, account: AccountId, id: i64) -> StoreResult<Option<Customer>> {
        self.read_short(move |conn| fetch_customer(conn, account, id))
            .await
    }

    async fn write(
        &self,
        account: AccountId,
        op: WriteOp,
        now: i64,
        idempotency: Option<Idempotency>,
    ) -> StoreResult<WriteReply> {
        // Collation runs here, on the caller's thread, rather than on the
        // single writer thread that every write waits for.
        let new_key = match &op {
            WriteOp::Create(data) => Some(sort_key(data)),
            _ => None,
        };
        self.run_write(move |conn| {
            let Some(idem) = idempotency else {
                let result = apply(conn, account, op, new_key, now)?;
                return Ok(WriteReply::Done(Box::new(result)));
            };
            if let Some(reply) = recorded(conn, account, &idem)? {
                return Ok(reply);
            }
            let result = apply(conn, account, op, new_key, now)?;
            let answer = (idem.render)(&result);
            record(
                conn,
                account,
                &idem.key,
                &idem.fingerprint,
                &answer,
                &result,
                now,
            )?;
            Ok(WriteReply::Recorded(answer))
        })
        .await
    }

    async fn purge_idempotency(&self, before: i64) -> StoreResult<u64> {
        self.run_write(move |conn| {
            // A bounded batch keeps each purge a short job for the writer.
            let mut stmt = conn.prepare_cached(
                "DELETE FROM idempotency_keys WHERE rowid IN
                    (SELECT rowid FROM idempotency_keys WHERE created_at < ?1 LIMIT 1000)",
            )?;
            Ok(stmt.execute([before])? as u64)
        })
        .await
    }

    async fn import_customers(
        &self,
        account: AccountId,
        mut rows: ImportRows,
        now: i64,
    ) -> StoreResult<u64> {
        self.run_write(move |conn| {
            // A million rows go into the index in sort-key order, which is
            // not the order they arrive in; a larger page cache for the
            // import's duration keeps the index's pages from being written
            // and read back over and over.
            let cache: i64 = conn.pragma_query_value(None, "cache_size", |r| r.get(0))?;
            conn.pragma_update(None, "cache_size", IMPORT_CACHE_KIB)?;
            let imported = (|| {
                let mut stmt = conn.prepare_cached(INSERT_CUSTOMER)?;
                let mut count = 0_u64;
                let mut words = Vec::new();
                while let Some(row) = rows.blocking_recv() {
                    let data = row.map_err(StoreError::Aborted)?;
                    insert_customer(&mut stmt, account, &data, &sort_key(&data), now)?;
                    words.extend(words_of(conn.last_insert_rowid(), &data));
                    if words.len() >= IMPORT_WORD_BATCH {
                        insert_words(conn, account, &mut words)?;
                    }
                    count += 1;
                }
                insert_words(conn, account, &mut words)?;
                Ok(count)
            })();
            conn.pragma_update(None, "cache_size", cache)?;
            imported
        })
        .await
    }

    async fn export_customers(
        &self,
        account: AccountId,
        after: Option<Position>,
        limit: usize,
    ) -> StoreResult<ExportBatch> {
        let after = after.unwrap_or(Position {
            sort_key: Vec::new(),
            id: 0,
        });
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {CUSTOMER_COLUMNS}, sort_key FROM customers
                 WHERE account_id = ?1 AND (sort_key, id) > (?2, ?3)
                 ORDER BY sort_key, id LIMIT ?4"
            ))?;
            let rows = stmt
                .query_map(
                    params![account.0, after.sort_key, after.id, limit],
                    customer_and_key,
                )?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let next = (rows.len() as i64 == limit)
                .then(|| rows.last())
                .flatten()
                .map(|(c, k)| Position {
                    sort_key: k.clone(),
                    id: c.id,
                });
            Ok(ExportBatch {
                customers: rows.into_iter().map(|(c, _)| c).collect(),
                next,
            })
        })
        .await
    }

    async fn create_account(&self, name: &str, now: i64) -> StoreResult<Account> {
        let name = name.to_owned();
        self.run_write(move |conn| insert_account(conn, &name, now))
            .await
    }

    async fn list_accounts(&self) -> StoreResult<Vec<Account>> {
        self.read(|conn| {
            let mut stmt = conn.prepare("SELECT id, name, created_at FROM accounts ORDER BY id")?;
            let accounts = stmt.query_map([], account_from_row)?;
            Ok(accounts.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn find_account(&self, name: &str) -> StoreResult<Option<Account>> {
        let name = name.to_owned();
        self.read(move |conn| {
            let mut stmt =
                conn.prepare("SELECT id, name, created_at FROM accounts WHERE name = ?1")?;
            Ok(stmt.query_row([name], account_from_row).optional()?)
        })
        .await
    }

    async fn create_key(&self, account: AccountId, key: NewKey, now: i64) -> StoreResult<KeyInfo> {
        self.run_write(move |conn| {
            let id = insert_key(conn, account, &key, now)?;
            Ok(KeyInfo {
                id,
                account,
                prefix: key.prefix,
                label: key.label,
                created_at: now,
                last_used_at: None,
                revoked_at: None,
            })
        })
        .await
    }

    async fn list_keys(&self, account: AccountId) -> StoreResult<Vec<KeyInfo>> {
        self.read(move |conn| {
            let mut stmt = conn.prepare(&format!(
                "SELECT {KEY_COLUMNS} FROM api_keys WHERE account_id = ?1 ORDER BY id"
            ))?;
            let keys = stmt.query_map([account.0], key_from_row)?;
            Ok(keys.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn revoke_key(&self, key_id: i64, now: i64) -> StoreResult<Option<KeyInfo>> {
        self.run_write(move |conn| {
            conn.execute(
                "UPDATE api_keys SET revoked_at = ?1 WHERE id = ?2 AND revoked_at IS NULL",
                params![now, key_id],
            )?;
            conn.execute("DELETE FROM sessions WHERE key_id = ?1", [key_id])?;
            let mut stmt =
                conn.prepare(&format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE id = ?1"))?;
            Ok(stmt.query_row([key_id], key_from_row).optional()?)
        })
        .await
    }

    async fn find_key(&self, digest: KeyDigest) -> StoreResult<Option<KeyInfo>> {
        self.read(move |conn| {
            let mut stmt = conn.prepare(&format!(
                "SELECT {KEY_COLUMNS} FROM api_keys WHERE digest = ?1"
            ))?;
            Ok(stmt.query_row([&digest.0[..]], key_from_row).optional()?)
        })
        .await
    }

    async fn find_keys_by_prefix(&self, prefix: &str) -> StoreResult<Vec<KeyInfo>> {
        let prefix = prefix.to_ascii_lowercase();
        self.read(move |conn| {
            let mut stmt = conn.prepare(&format!(
                "SELECT {KEY_COLUMNS} FROM api_keys WHERE prefix = ?1 ORDER BY id"
            ))?;
            let keys = stmt.query_map([prefix], key_from_row)?;
            Ok(keys.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn bootstrap(&self, name: &str, key: NewKey, now: i64) -> StoreResult<bool> {
        let name = name.to_owned();
        self.run_write(move |conn| {
            let accounts: i64 =
                conn.query_row("SELECT count(*) FROM accounts", [], |r| r.get(0))?;
            if accounts > 0 {
                return Ok(false);
            }
            let account = insert_account(conn, &name, now)?;
            insert_key(conn, account.id, &key, now)?;
            Ok(true)
        })
        .await
    }

    async fn create_session(&self, session: NewSession, now: i64) -> StoreResult<()> {
        self.run_write(move |conn| {
            conn.execute(
                "INSERT INTO sessions (digest, account_id, key_id, csrf, created_at, last_seen_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
                params![
                    &session.digest.0[..],
                    session.account.0,
                    session.key_id,
                    session.csrf,
                    now
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn find_session(
        &self,
        digest: SessionDigest,
        now: i64,
        cutoffs: SessionCutoffs,
    ) -> StoreResult<Option<Session>> {
        let found = self
            .read_short(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT s.account_id, s.key_id, s.csrf, s.created_at, s.last_seen_at
                     FROM sessions s JOIN api_keys k ON k.id = s.key_id
                     WHERE s.digest = ?1 AND k.revoked_at IS NULL
                       AND s.last_seen_at >= ?2 AND s.created_at >= ?3",
                )?;
                let row = stmt
                    .query_row(
                        params![&digest.0[..], cutoffs.idle_before, cutoffs.created_before],
                        |r| {
                            Ok(Session {
                                account: AccountId(r.get(0)?),
                                key_id: r.get(1)?,
                                csrf: r.get(2)?,
                                created_at: r.get(3)?,
                                last_seen_at: r.get(4)?,
                            })
                        },
                    )
                    .optional()?;
                Ok(row)
            })
            .await?;
        let Some(session) = found else {
            return Ok(None);
        };
        if now - session.last_seen_at >= cutoffs.seen_resolution {
            // Not waited for: a writer busy with an import must not hold up
            // every page. The writer takes jobs in order, so the next
            // request of the session, whatever it writes, comes after this.
            self.submit(Box::new(move |conn| {
                let ok = conn.is_some_and(|conn| {
                    conn.execute(
                        "UPDATE sessions SET last_seen_at = MAX(last_seen_at, ?1) WHERE digest = ?2",
                        params![now, &digest.0[..]],
                    )
                    .is_ok()
                });
                (ok, Box::new(|_| {}))
            }))?;
        }
        Ok(Some(session))
    }

    async fn end_session(&self, digest: SessionDigest) -> StoreResult<()> {
        self.run_write(move |conn| {
            conn.execute("DELETE FROM sessions WHERE digest = ?1", [&digest.0[..]])?;
            Ok(())
        })
        .await
    }

    async fn purge_sessions(&self, cutoffs: SessionCutoffs) -> StoreResult<u64> {
        self.run_write(move |conn| {
            let mut stmt = conn.prepare_cached(
                "DELETE FROM sessions WHERE digest IN
                    (SELECT digest FROM sessions
                     WHERE last_seen_at < ?1 OR created_at < ?2 LIMIT 1000)",
            )?;
            Ok(stmt.execute(params![cutoffs.idle_before, cutoffs.created_before])? as u64)
        })
        .await
    }

    async fn ping(&self) -> StoreResult<()> {
        self.read(|conn| Ok(conn.query_row("SELECT 1", [], |_| Ok(()))?))
            .await
    }

    fn stats(&self) -> Vec<Stat> {
        let mut stats = vec![
            (
                "rekisteri_store_commits_total",
                "Write transactions committed (each may hold several writes).",
                self.stats.commits.load(Ordering::Relaxed) as f64,
            ),
            (
                "rekisteri_store_writes_total",
                "Writes handed to the writer thread.",
                self.stats.writes.load(Ordering::Relaxed) as f64,
            ),
            (
                "rekisteri_store_readers_idle",
                "Read-only connections free at this moment.",
                self.reader_slots.available_permits() as f64,
            ),
        ];
        stats.extend(self.pages.stats());
        stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request whose client hung up is dropped while its read still runs
    /// on a blocking thread; the next read must wait for that connection,
    /// not find the pool empty.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_read_given_up_on_keeps_its_connection_until_it_ends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.db");
        let options = Options {
            readers: 1,
            ..Options::default()
        };
        let store = SqliteStore::open(path.to_str().unwrap(), options).unwrap();
        let slow = store.read(|_| {
            std::thread::sleep(Duration::from_millis(300));
            Ok(())
        });
        assert!(
            tokio::time::timeout(Duration::from_millis(30), slow)
                .await
                .is_err()
        );
        for _ in 0..3 {
            store
                .read(|conn| Ok(conn.query_row("SELECT 1", [], |_| Ok(()))?))
                .await
                .unwrap();
        }
    }
}
