//! The shared store: PostgreSQL, for several server processes on one
//! database.
//!
//! Every server keeps only a connection pool; all state is in the database,
//! so any server can answer any request. PostgreSQL's own concurrency does
//! what SQLite's single writer does for the embedded store: each write is
//! one transaction, an update holds its row's lock from read to write, and
//! a commit returns only once it is durable (`synchronous_commit` is left at
//! its default, `on`).
//!
//! Connections are plain TCP (or a Unix socket) without TLS: the server is
//! meant to reach PostgreSQL over a private network or on the same host.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use anyhow::Context as _;
use async_trait::async_trait;
use deadpool_postgres::{
    Client, GenericClient, Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod,
    Runtime, Transaction,
};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::Type;
use tokio_postgres::{NoTls, Row};

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

/// The advisory lock under which a server migrates, so that servers started
/// together apply each migration exactly once. Any constant will do, as long
/// as nothing else on the database uses it: these are the bytes "rekister".
const MIGRATION_LOCK: i64 = 0x7265_6b69_7374_6572;

/// How many customers one statement re-keys when the collation changed.
const REKEY_BATCH: i64 = 1000;

#[derive(Debug, Clone)]
pub struct Options {
    /// The most connections this server holds open at once.
    pub max_connections: usize,
    /// How long opening one connection may take.
    pub connect_timeout: Duration,
    /// How long a request waits for a free connection when all are busy.
    pub wait_timeout: Duration,
    /// How long checking an idle connection before reuse may take.
    pub recycle_timeout: Duration,
    /// The most one store call may take in all, waiting for a connection
    /// included: past it the call answers `Unavailable`, so that no request
    /// hangs on a database that accepts connections but no longer answers.
    pub operation_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_connections: 16,
            connect_timeout: Duration::from_secs(2),
            wait_timeout: Duration::from_secs(2),
            recycle_timeout: Duration::from_secs(1),
            operation_timeout: Duration::from_secs(5),
        }
    }
}

pub struct PostgresStore {
    pool: Pool,
    operation_timeout: Duration,
    pages: PageStarts,
}

/// The work of one store call on one connection.
type Work<'c, T> = Pin<Box<dyn Future<Output = StoreResult<T>> + Send + 'c>>;

impl PostgresStore {
    /// Connects to the database `url` names (`postgres://…` or
    /// `postgresql://…`), then creates or migrates its schema.
    pub async fn open(url: &str, options: Options) -> anyhow::Result<PostgresStore> {
        let mut config: tokio_postgres::Config = url
            .parse()
            .with_context(|| "the PostgreSQL URL is not valid".to_string())?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(options.connect_timeout);
        }
        if config.get_application_name().is_none() {
            config.application_name("rekisteri");
        }
        // An idle connection to a server that vanished without closing it is
        // then found dead in under a minute rather than the kernel's hours.
        config.keepalives_idle(Duration::from_secs(30));

        let manager = Manager::from_config(
            config,
            NoTls,
            // Fast reuses an idle connection unless it is known closed; a
            // connection that died unnoticed fails one call, which answers
            // `Unavailable`, and is then dropped.
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.max_connections.max(1))
            .wait_timeout(Some(options.wait_timeout))
            .create_timeout(Some(options.connect_timeout))
            .recycle_timeout(Some(options.recycle_timeout))
            .runtime(Runtime::Tokio1)
            .build()
            .context("failed to build the PostgreSQL connection pool")?;

        let store = PostgresStore {
            pool,
            operation_timeout: options.operation_timeout,
            pages: PageStarts::default(),
        };
        store
            .migrate()
            .await
            .context("failed to migrate the PostgreSQL database")?;
        Ok(store)
    }

    /// Applies the missing migrations and refreshes the sort keys, all in one
    /// transaction under an advisory lock: a server starting beside another
    /// waits for it, then finds nothing left to do.
    async fn migrate(&self) -> StoreResult<()> {
        let mut client = self.pool.get().await.map_err(pool_error)?;
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                version     integer PRIMARY KEY,
                applied_at  timestamptz NOT NULL DEFAULT now()
            )",
        )
        .await?;
        let applied: Vec<i32> = tx
            .query("SELECT version FROM schema_migrations", &[])
            .await?
            .iter()
            .map(|r| r.try_get(0))
            .collect::<Result<_, _>>()?;
        for (i, sql) in migrations::POSTGRES.iter().enumerate() {
            let version = i32::try_from(i + 1).expect("fewer than 2^31 migrations");
            if applied.contains(&version) {
                continue;
            }
            tx.batch_execute(sql).await?;
            tx.execute(
                "INSERT INTO schema_migrations (version) VALUES ($1)",
                &[&version],
            )
            .await?;
        }
        refresh_derived(&tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Runs `work` on a pooled connection, within the operation timeout.
    async fn run<T, F>(&self, work: F) -> StoreResult<T>
    where
        T: Send,
        F: for<'c> FnOnce(&'c mut Client) -> Work<'c, T> + Send,
    {
        let attempt = async {
            let mut conn = Checkout(Some(self.pool.get().await.map_err(pool_error)?));
            let result = work(conn.client()).await;
            conn.release();
            result
        };
        match tokio::time::timeout(self.operation_timeout, attempt).await {
            Ok(result) => result,
            Err(_) => Err(StoreError::Unavailable(format!(
                "the database did not answer within {:?}",
                self.operation_timeout
            ))),
        }
    }
}

/// A pooled connection that goes back to the pool only when its call
/// finished. One abandoned half-way (the call timed out) may still be busy
/// with a statement, or in a transaction, so it is closed instead.
struct Checkout(Option<Object>);

impl Checkout {
    fn client(&mut self) -> &mut Client {
        self.0.as_mut().expect("the connection is checked out")
    }

    fn release(mut self) {
        drop(self.0.take());
    }
}

impl Drop for Checkout {
    fn drop(&mut self) {
        if let Some(object) = self.0.take() {
            drop(Object::take(object));
        }
    }
}

/// The version a database records for some data it derived, if any.
async fn recorded_version(
    tx: &deadpool_postgres::Transaction<'_>,
    key: &str,
) -> StoreResult<Option<String>> {
    Ok(tx
        .query_opt("SELECT value FROM meta WHERE key = $1", &[&key])
        .await?
        .map(|r| r.try_get(0))
        .transpose()?)
}

/// Recomputes what the server derives from each customer (the sort key, the
/// search words) when the stored values were made by other rules than this
/// binary's, or by none, on a new database or after a migration.
///
/// Known shortcoming: a server still running an older binary beside this one
/// keeps writing keys and words by the older rules until it is upgraded too.
async fn refresh_derived(tx: &deadpool_postgres::Transaction<'_>) -> StoreResult<()> {
    let keys_stale =
        recorded_version(tx, "collation_version").await?.as_deref() != Some(COLLATION_VERSION);
    let words_stale =
        recorded_version(tx, "search_version").await?.as_deref() != Some(SEARCH_VERSION);
    if !keys_stale && !words_stale {
        return Ok(());
    }

    // Writers wait until everything is new; readers go on meanwhile.
    tx.batch_execute("LOCK TABLE customers IN EXCLUSIVE MODE")
        .await?;
    if words_stale {
        tx.batch_execute("DELETE FROM customer_words").await?;
    }
    let select = tx
        .prepare(&format!(
            "SELECT {CUSTOMER_COLUMNS}, account_id FROM customers WHERE id > $1 ORDER BY id LIMIT $2"
        ))
        .await?;
    let update = tx
        .prepare(
            "UPDATE customers AS c SET sort_key = v.sort_key
             FROM unnest($1::bigint[], $2::bytea[]) AS v (id, sort_key)
             WHERE c.id = v.id",
        )
        .await?;
    let fold = tx
        .prepare("UPDATE customers SET email_folded = $1 WHERE id = $2")
        .await?;
    let mut after = 0_i64;
    loop {
        let rows = tx.query(&select, &[&after, &REKEY_BATCH]).await?;
        let Some(last) = rows.last() else { break };
        after = last.try_get(0)?;
        let mut ids = Vec::with_capacity(rows.len());
        let mut keys = Vec::with_capacity(rows.len());
        for row in &rows {
            let customer = customer_from_row(row)?;
            if words_stale {
                let account = AccountId(row.try_get(15)?);
                insert_words(tx, account, customer.id, &customer.data).await?;
                tx.execute(&fold, &[&fold_email(&customer.data.email), &customer.id])
                    .await?;
            }
            ids.push(customer.id);
            keys.push(sort_key(&customer.data));
        }
        if keys_stale {
            tx.execute(&update, &[&ids, &keys]).await?;
        }
    }
    for (key, value) in [
        ("collation_version", COLLATION_VERSION),
        ("search_version", SEARCH_VERSION),
    ] {
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ($1, $2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            &[&key, &value],
        )
        .await?;
    }
    Ok(())
}

/// Writes the search words of the customers an import just copied in (those
/// of the account created at `now` with an id above `before`), a batch at a
/// time, since ids are only known once the rows are in.
async fn index_imported(
    tx: &deadpool_postgres::Transaction<'_>,
    account: AccountId,
    before: i64,
    now: i64,
) -> StoreResult<()> {
    let select = tx
        .prepare(&format!(
            "SELECT {CUSTOMER_COLUMNS} FROM customers
             WHERE account_id = $1 AND created_at = $2 AND id > $3 ORDER BY id LIMIT $4"
        ))
        .await?;
    let mut after = before;
    loop {
        let rows = tx
            .query(&select, &[&account.0, &now, &after, &IMPORT_INDEX_BATCH])
            .await?;
        let Some(last) = rows.last() else { break };
        after = last.try_get(0)?;
        let sink = tx
            .copy_in("COPY customer_words (account_id, word, customer_id) FROM STDIN BINARY")
            .await?;
        let writer = BinaryCopyInWriter::new(sink, &[Type::INT8, Type::TEXT, Type::INT8]);
        let mut writer = std::pin::pin!(writer);
        for row in &rows {
            let customer = customer_from_row(row)?;
            for word in customer_words(&customer.data) {
                writer
                    .as_mut()
                    .write(&[&account.0, &word, &customer.id])
                    .await?;
            }
        }
        writer.finish().await?;
    }
    Ok(())
}

/// How many imported customers are indexed per round trip.
const IMPORT_INDEX_BATCH: i64 = 10_000;

/// Writes a new customer's search words.
async fn insert_words(
    tx: &deadpool_postgres::Transaction<'_>,
    account: AccountId,
    id: i64,
    data: &CustomerData,
) -> StoreResult<()> {
    let insert = tx
        .prepare_cached(
            "INSERT INTO customer_words (account_id, word, customer_id)
             SELECT $1, unnest($2::text[]), $3",
        )
        .await?;
    tx.execute(&insert, &[&account.0, &customer_words(data), &id])
        .await?;
    Ok(())
}

const CUSTOMER_COLUMNS: &str = "id, version, email, customer_locale, firstname, lastname, \
     company, company_id, street, city, postcode, phone, country, created_at, updated_at";

fn customer_from_row(row: &Row) -> StoreResult<Customer> {
    let locale: String = row.try_get(3)?;
    Ok(Customer {
        id: row.try_get(0)?,
        version: row.try_get(1)?,
        data: CustomerData {
            email: row.try_get(2)?,
            locale: Locale::parse(&locale).unwrap_or_default(),
            address: Address {
                firstname: row.try_get(4)?,
                lastname: row.try_get(5)?,
                company: row.try_get(6)?,
                company_id: row.try_get(7)?,
                address: row.try_get(8)?,
                city: row.try_get(9)?,
                postcode: row.try_get(10)?,
                phone: row.try_get(11)?,
                country: row.try_get(12)?,
            },
        },
        created_at: row.try_get(13)?,
        updated_at: row.try_get(14)?,
    })
}

const KEY_COLUMNS: &str = "id, account_id, prefix, label, created_at, last_used_at, revoked_at";

fn key_from_row(row: &Row) -> StoreResult<KeyInfo> {
    Ok(KeyInfo {
        id: row.try_get(0)?,
        account: AccountId(row.try_get(1)?),
        prefix: row.try_get(2)?,
        label: row.try_get(3)?,
        created_at: row.try_get(4)?,
        last_used_at: row.try_get(5)?,
        revoked_at: row.try_get(6)?,
    })
}

fn account_from_row(row: &Row) -> StoreResult<Account> {
    Ok(Account {
        id: AccountId(row.try_get(0)?),
        name: row.try_get(1)?,
        created_at: row.try_get(2)?,
    })
}

/// The account's change count and up to `PAGE_SIZE + 1` rows from `start`,
/// each with its sort key. One statement reads both, so they come from one
/// snapshot and the count describes those rows.
async fn read_page(
    conn: &impl GenericClient,
    account: AccountId,
    start: &Start,
) -> StoreResult<(i64, PageRows)> {
    const VERSION: &str = "WITH v AS (
            SELECT coalesce(sum(changes), 0)::bigint AS version
            FROM account_changes WHERE account_id = $1
        )";
    let limit = PAGE_SIZE as i64 + 1;
    let rows = match start {
        Start::Offset(offset) => {
            let stmt = conn
                .prepare_cached(&format!(
                    "{VERSION} SELECT c.*, v.version FROM v LEFT JOIN LATERAL (
                        SELECT {CUSTOMER_COLUMNS}, sort_key FROM customers
                        WHERE account_id = $1 ORDER BY sort_key, id LIMIT $2 OFFSET $3
                     ) c ON true ORDER BY c.sort_key, c.id"
                ))
                .await?;
            conn.query(&stmt, &[&account.0, &limit, offset]).await?
        }
        Start::At(at) => {
            let stmt = conn
                .prepare_cached(&format!(
                    "{VERSION} SELECT c.*, v.version FROM v LEFT JOIN LATERAL (
                        SELECT {CUSTOMER_COLUMNS}, sort_key FROM customers
                        WHERE account_id = $1 AND (sort_key, id) >= ($2, $3)
                        ORDER BY sort_key, id LIMIT $4
                     ) c ON true ORDER BY c.sort_key, c.id"
                ))
                .await?;
            conn.query(&stmt, &[&account.0, &at.sort_key, &at.id, &limit])
                .await?
        }
    };
    let mut version = 0;
    let mut customers = Vec::with_capacity(rows.len());
    for row in &rows {
        version = row.try_get(16)?;
        // An account without customers still yields its count, with nulls.
        if row.try_get::<_, Option<i64>>(0)?.is_some() {
            customers.push((customer_from_row(row)?, row.try_get(15)?));
        }
    }
    Ok((version, customers))
}

async fn fetch_customer(
    conn: &impl GenericClient,
    account: AccountId,
    id: i64,
    lock: bool,
) -> StoreResult<Option<Customer>> {
    let sql = format!(
        "SELECT {CUSTOMER_COLUMNS} FROM customers WHERE id = $1 AND account_id = $2{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    let stmt = conn.prepare_cached(&sql).await?;
    conn.query_opt(&stmt, &[&id, &account.0])
        .await?
        .as_ref()
        .map(customer_from_row)
        .transpose()
}

async fn insert_key(
    conn: &impl GenericClient,
    account: AccountId,
    key: &NewKey,
    now: i64,
) -> StoreResult<i64> {
    let stmt = conn
        .prepare_cached(
            "INSERT INTO api_keys (account_id, prefix, digest, label, created_at)
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
        )
        .await?;
    let row = conn
        .query_one(
            &stmt,
            &[
                &account.0,
                &key.prefix,
                &&key.digest.0[..],
                &key.label,
                &now,
            ],
        )
        .await?;
    Ok(row.try_get(0)?)
}

async fn insert_account(conn: &impl GenericClient, name: &str, now: i64) -> StoreResult<Account> {
    let stmt = conn
        .prepare_cached(
            "INSERT INTO accounts (name, created_at) VALUES ($1, $2)
             ON CONFLICT (name) DO NOTHING RETURNING id",
        )
        .await?;
    let Some(row) = conn.query_opt(&stmt, &[&name, &now]).await? else {
        return Err(StoreError::Conflict(format!(
            "an account named {name:?} already exists"
        )));
    };
    Ok(Account {
        id: AccountId(row.try_get(0)?),
        name: name.to_owned(),
        created_at: now,
    })
}

fn pool_error(e: PoolError) -> StoreError {
    match e {
        PoolError::Timeout(kind) => StoreError::Unavailable(format!(
            "no database connection within the time allowed ({kind:?})"
        )),
        PoolError::Backend(e) => e.into(),
        PoolError::Closed => StoreError::Unavailable("the connection pool is closed".into()),
        other => StoreError::Internal(other.to_string()),
    }
}

/// Whether a failure is the database being away or overloaded, worth
/// retrying later, rather than a fault in what was asked.
fn is_unavailable(e: &tokio_postgres::Error) -> bool {
    if let Some(state) = e.code() {
        let code = state.code();
        // Class 08 is "connection exception", 53 "insufficient resources",
        // 57P0x a server shutting down or starting up.
        return code.starts_with("08")
            || code.starts_with("53")
            || code.starts_with("57P0")
            || [
                SqlState::QUERY_CANCELED,
                SqlState::LOCK_NOT_AVAILABLE,
                SqlState::T_R_SERIALIZATION_FAILURE,
                SqlState::T_R_DEADLOCK_DETECTED,
            ]
            .contains(state);
    }
    if e.is_closed() {
        return true;
    }
    // Without a server's answer, the failure is in reaching it: an I/O error
    // (refused, reset) somewhere in the chain, or a connect timeout.
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        if cause.is::<std::io::Error>() {
            return true;
        }
        source = cause.source();
    }
    e.to_string().starts_with("timeout")
}

/// Carries out one change inside the caller's transaction.
async fn apply(
    tx: &Transaction<'_>,
    account: AccountId,
    op: WriteOp,
    now: i64,
) -> StoreResult<WriteResult> {
    match op {
        WriteOp::Create(data) => {
            let customer = insert_customer(tx, account, data, now).await?;
            insert_words(tx, account, customer.id, &customer.data).await?;
            Ok(WriteResult::Created(customer))
        }
        WriteOp::Update {
            id,
            patch,
            precondition,
        } => {
            // The row stays locked until the commit, so a concurrent update
            // of the same customer, from any server, merges into this
            // one's result instead of overwriting it.
            let Some(current) = fetch_customer(tx, account, id, true).await? else {
                return Ok(WriteResult::NotFound);
            };
            if precondition.is_some_and(|p| !p.holds(&current)) {
                return Ok(WriteResult::PreconditionFailed);
            }
            let data = patch.apply(&current.data);
            if data == current.data {
                return Ok(WriteResult::Unchanged(current));
            }
            update_row(tx, &data, id, now).await?;
            let delete = tx
                .prepare_cached("DELETE FROM customer_words WHERE customer_id = $1")
                .await?;
            tx.execute(&delete, &[&id]).await?;
            insert_words(tx, account, id, &data).await?;
            Ok(WriteResult::Updated(Customer {
                id,
                version: current.version + 1,
                data,
                created_at: current.created_at,
                updated_at: now,
            }))
        }
        WriteOp::Delete { id, precondition } => {
            let Some(current) = fetch_customer(tx, account, id, true).await? else {
                return Ok(WriteResult::NotFound);
            };
            if precondition.is_some_and(|p| !p.holds(&current)) {
                return Ok(WriteResult::PreconditionFailed);
            }
            let stmt = tx
                .prepare_cached("DELETE FROM customers WHERE id = $1")
                .await?;
            tx.execute(&stmt, &[&id]).await?;
            let stmt = tx
                .prepare_cached("DELETE FROM customer_words WHERE customer_id = $1")
                .await?;
            tx.execute(&stmt, &[&id]).await?;
            // Recorded answers that carry the customer's data go with it.
            let stmt = tx
                .prepare_cached(
                    "DELETE FROM idempotency_keys WHERE account_id = $1 AND customer_id = $2",
                )
                .await?;
            tx.execute(&stmt, &[&account.0, &id]).await?;
            Ok(WriteResult::Deleted)
        }
    }
}

async fn insert_customer(
    tx: &Transaction<'_>,
    account: AccountId,
    data: CustomerData,
    now: i64,
) -> StoreResult<Customer> {
    let stmt = tx
        .prepare_cached(
            "INSERT INTO customers (account_id, version, email, customer_locale,
                firstname, lastname, company, company_id, street, city, postcode,
                phone, country, sort_key, created_at, updated_at, email_folded)
             VALUES ($1, 1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $14, $15)
             RETURNING id",
        )
        .await?;
    let a = &data.address;
    let row = tx
        .query_one(
            &stmt,
            &[
                &account.0,
                &data.email,
                &data.locale.as_str(),
                &a.firstname,
                &a.lastname,
                &a.company,
                &a.company_id,
                &a.address,
                &a.city,
                &a.postcode,
                &a.phone,
                &a.country,
                &sort_key(&data),
                &now,
                &fold_email(&data.email),
            ],
        )
        .await?;
    Ok(Customer {
        id: row.try_get(0)?,
        version: 1,
        data,
        created_at: now,
        updated_at: now,
    })
}

async fn update_row(
    tx: &Transaction<'_>,
    data: &CustomerData,
    id: i64,
    now: i64,
) -> StoreResult<()> {
    let stmt = tx
        .prepare_cached(
            "UPDATE customers SET version = version + 1, email = $1,
                customer_locale = $2, firstname = $3, lastname = $4, company = $5,
                company_id = $6, street = $7, city = $8, postcode = $9, phone = $10,
                country = $11, sort_key = $12, updated_at = $13, email_folded = $15
             WHERE id = $14",
        )
        .await?;
    let a = &data.address;
    tx.execute(
        &stmt,
        &[
            &data.email,
            &data.locale.as_str(),
            &a.firstname,
            &a.lastname,
            &a.company,
            &a.company_id,
            &a.address,
            &a.city,
            &a.postcode,
            &a.phone,
            &a.country,
            &sort_key(data),
            &now,
            &id,
            &fold_email(&data.email),
        ],
    )
    .await?;
    Ok(())
}

/// The reply a key already determines: a replay, a reuse, or `None` when the
/// key is new (an expired record is removed so the key can be used again).
async fn recorded(
    tx: &Transaction<'_>,
    account: AccountId,
    idem: &Idempotency,
) -> StoreResult<Option<WriteReply>> {
    let stmt = tx
        .prepare_cached(
            "SELECT fingerprint, status, headers, body, created_at FROM idempotency_keys
             WHERE account_id = $1 AND key = $2",
        )
        .await?;
    let Some(row) = tx.query_opt(&stmt, &[&account.0, &idem.key]).await? else {
        return Ok(None);
    };
    let created_at: i64 = row.try_get(4)?;
    if created_at < idem.not_before {
        let stmt = tx
            .prepare_cached("DELETE FROM idempotency_keys WHERE account_id = $1 AND key = $2")
            .await?;
        tx.execute(&stmt, &[&account.0, &idem.key]).await?;
        return Ok(None);
    }
    let fingerprint: Vec<u8> = row.try_get(0)?;
    if fingerprint != idem.fingerprint {
        return Ok(Some(WriteReply::KeyReused));
    }
    let status: i32 = row.try_get(1)?;
    let headers: String = row.try_get(2)?;
    Ok(Some(WriteReply::Replayed(Answer {
        status: u16::try_from(status).unwrap_or(500),
        headers: super::decode_headers(&headers)?,
        body: row.try_get(3)?,
    })))
}

async fn record(
    tx: &Transaction<'_>,
    account: AccountId,
    key: &str,
    fingerprint: &[u8; 32],
    answer: &Answer,
    result: &WriteResult,
    now: i64,
) -> Result<(), tokio_postgres::Error> {
    let stmt = tx
        .prepare_cached(
            "INSERT INTO idempotency_keys
                (account_id, key, fingerprint, status, headers, body, customer_id, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .await?;
    tx.execute(
        &stmt,
        &[
            &account.0,
            &key,
            &&fingerprint[..],
            &i32::from(answer.status),
            &super::encode_headers(&answer.headers),
            &answer.body,
            &result.customer().map(|c| c.id),
            &now,
        ],
    )
    .await?;
    Ok(())
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        // The error's own Display omits the server's message; the source has it.
        let detail = match e.as_db_error() {
            Some(db) => format!("{e}: {db}"),
            None => e.to_string(),
        };
        if is_unavailable(&e) {
            StoreError::Unavailable(detail)
        } else {
            StoreError::Internal(detail)
        }
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn authenticate(&self, digest: KeyDigest, now: i64) -> StoreResult<Option<AccountId>> {
        self.run(move |c| {
            Box::pin(async move {
                let stmt = c
                    .prepare_cached(
                        "SELECT id, account_id, last_used_at FROM api_keys
                         WHERE digest = $1 AND revoked_at IS NULL",
                    )
                    .await?;
                let Some(row) = c.query_opt(&stmt, &[&&digest.0[..]]).await? else {
                    return Ok(None);
                };
                let key_id: i64 = row.try_get(0)?;
                let account: i64 = row.try_get(1)?;
                let last_used: Option<i64> = row.try_get(2)?;

                if last_used.is_none_or(|t| now - t >= LAST_USED_RESOLUTION_MS) {
                    // The condition is checked again in the statement, so that
                    // servers seeing the same key at once write it only once.
                    // A failure only means the timestamp is a little older than
                    // it could be.
                    let update = c
                        .prepare_cached(
                            "UPDATE api_keys SET last_used_at = $1
                             WHERE id = $2 AND (last_used_at IS NULL OR last_used_at <= $3)",
                        )
                        .await;
                    if let Ok(update) = update {
                        let _ = c
                            .execute(&update, &[&now, &key_id, &(now - LAST_USED_RESOLUTION_MS)])
                            .await;
                    }
                }
                Ok(Some(AccountId(account)))
            })
        })
        .await
    }

    async fn list_customers(&self, account: AccountId, page: u64) -> StoreResult<CustomerPage> {
        let key = PageKey { account, page };
        let (start, expected) = paging::plan(&self.pages, &key);
        let (version, rows, stale) = self
            .run(move |c| {
                Box::pin(async move {
                    let (version, rows) = read_page(c, account, &start).await?;
                    if expected.is_some_and(|v| v != version) {
                        let offset = Start::Offset(paging::offset_of(page));
                        let (version, rows) = read_page(c, account, &offset).await?;
                        return Ok((version, rows, true));
                    }
                    Ok((version, rows, false))
                })
            })
            .await?;
        if page > 1 {
            self.pages.served(expected.is_some() && !stale);
        }
        Ok(paging::finish(&self.pages, &key, version, rows))
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
                format!("${n}")
            });
        self.run(move |c| {
            Box::pin(async move {
                let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = bound
                    .iter()
                    .map(|b| match b {
                        super::Bound::Int(i) => i as &(dyn tokio_postgres::types::ToSql + Sync),
                        super::Bound::Text(t) => t,
                    })
                    .collect();
                let stmt = c.prepare_cached(&sql).await?;
                let rows = c.query(&stmt, &params).await?;
                let mut customers = rows
                    .iter()
                    .map(customer_from_row)
                    .collect::<StoreResult<Vec<_>>>()?;
                let has_more = customers.len() as u64 > PAGE_SIZE;
                customers.truncate(PAGE_SIZE as usize);
                Ok(CustomerPage {
                    customers,
                    has_more,
                })
            })
        })
        .await
    }

    async fn get_customer(&self, account: AccountId, id: i64) -> StoreResult<Option<Customer>> {
        self.run(move |c| Box::pin(async move { fetch_customer(c, account, id, false).await }))
            .await
    }

    async fn write(
        &self,
        account: AccountId,
        op: WriteOp,
        now: i64,
        idempotency: Option<Idempotency>,
    ) -> StoreResult<WriteReply> {
        self.run(move |c| {
            Box::pin(async move {
                let tx = c.transaction().await?;
                let Some(idem) = idempotency else {
                    let result = apply(&tx, account, op, now).await?;
                    tx.commit().await?;
                    return Ok(WriteReply::Done(Box::new(result)));
                };
                if let Some(reply) = recorded(&tx, account, &idem).await? {
                    tx.commit().await?;
                    return Ok(reply);
                }
                let result = apply(&tx, account, op, now).await?;
                let answer = (idem.render)(&result);
                // Another server may be carrying out a request with the same
                // key: its insert holds the key until it commits, and then
                // this one fails, rolling back this change with it.
                match record(
                    &tx,
                    account,
                    &idem.key,
                    &idem.fingerprint,
                    &answer,
                    &result,
                    now,
                )
                .await
                {
                    Ok(()) => {}
                    Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                        tx.rollback().await?;
                        return Ok(WriteReply::KeyInUse);
                    }
                    Err(e) => return Err(e.into()),
                }
                tx.commit().await?;
                Ok(WriteReply::Recorded(answer))
            })
        })
        .await
    }

    async fn purge_idempotency(&self, before: i64) -> StoreResult<u64> {
        self.run(move |c| {
            Box::pin(async move {
                // A bounded batch keeps each purge a short transaction.
                let stmt = c
                    .prepare_cached(
                        "DELETE FROM idempotency_keys WHERE (account_id, key) IN
                            (SELECT account_id, key FROM idempotency_keys
                             WHERE created_at < $1 LIMIT 1000)",
                    )
                    .await?;
                Ok(c.execute(&stmt, &[&before]).await?)
            })
        })
        .await
    }

    async fn import_customers(
        &self,
        account: AccountId,
        mut rows: ImportRows,
        now: i64,
    ) -> StoreResult<u64> {
        // No operation timeout: an import takes as long as its rows take to
        // arrive. The connection is closed rather than reused after a
        // failure, which may have left it in the middle of a COPY.
        let mut client = self.pool.get().await.map_err(pool_error)?;
        let imported = async {
            let tx = client.transaction().await?;
            // Every id this import draws is above the sequence's value now.
            let before: i64 = tx
                .query_one("SELECT coalesce(max(id), 0) FROM customers", &[])
                .await?
                .try_get(0)?;
            let sink = tx
                .copy_in(
                    "COPY customers (account_id, version, email, customer_locale, firstname,
                        lastname, company, company_id, street, city, postcode, phone, country,
                        sort_key, created_at, updated_at, email_folded)
                     FROM STDIN BINARY",
                )
                .await?;
            let mut types = vec![Type::INT8, Type::INT8];
            types.extend([Type::TEXT; 11]);
            types.extend([Type::BYTEA, Type::INT8, Type::INT8, Type::TEXT]);
            let writer = BinaryCopyInWriter::new(sink, &types);
            let mut writer = std::pin::pin!(writer);
            while let Some(row) = rows.recv().await {
                let data = row.map_err(StoreError::Aborted)?;
                let a = &data.address;
                writer
                    .as_mut()
                    .write(&[
                        &account.0,
                        &1_i64,
                        &data.email,
                        &data.locale.as_str(),
                        &a.firstname,
                        &a.lastname,
                        &a.company,
                        &a.company_id,
                        &a.address,
                        &a.city,
                        &a.postcode,
                        &a.phone,
                        &a.country,
                        &sort_key(&data),
                        &now,
                        &now,
                        &fold_email(&data.email),
                    ])
                    .await?;
            }
            let count = writer.finish().await?;
            index_imported(&tx, account, before, now).await?;
            tx.commit().await?;
            Ok(count)
        }
        .await;
        if imported.is_err() {
            drop(Object::take(client));
        }
        imported
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
        self.run(move |c| {
            Box::pin(async move {
                let stmt = c
                    .prepare_cached(&format!(
                        "SELECT {CUSTOMER_COLUMNS}, sort_key FROM customers
                         WHERE account_id = $1 AND (sort_key, id) > ($2, $3)
                         ORDER BY sort_key, id LIMIT $4"
                    ))
                    .await?;
                let rows = c
                    .query(&stmt, &[&account.0, &after.sort_key, &after.id, &limit])
                    .await?;
                let next = match rows.last() {
                    Some(last) if rows.len() as i64 == limit => Some(Position {
                        sort_key: last.try_get(15)?,
                        id: last.try_get(0)?,
                    }),
                    _ => None,
                };
                Ok(ExportBatch {
                    customers: rows
                        .iter()
                        .map(customer_from_row)
                        .collect::<StoreResult<_>>()?,
                    next,
                })
            })
        })
        .await
    }

    async fn create_account(&self, name: &str, now: i64) -> StoreResult<Account> {
        let name = name.to_owned();
        self.run(move |c| Box::pin(async move { insert_account(c, &name, now).await }))
            .await
    }

    async fn list_accounts(&self) -> StoreResult<Vec<Account>> {
        self.run(|c| {
            Box::pin(async move {
                let stmt = c
                    .prepare_cached("SELECT id, name, created_at FROM accounts ORDER BY id")
                    .await?;
                c.query(&stmt, &[])
                    .await?
                    .iter()
                    .map(account_from_row)
                    .collect()
            })
        })
        .await
    }

    async fn find_account(&self, name: &str) -> StoreResult<Option<Account>> {
        let name = name.to_owned();
        self.run(move |c| {
            Box::pin(async move {
                let stmt = c
                    .prepare_cached("SELECT id, name, created_at FROM accounts WHERE name = $1")
                    .await?;
                c.query_opt(&stmt, &[&name])
                    .await?
                    .as_ref()
                    .map(account_from_row)
                    .transpose()
            })
        })
        .await
    }

    async fn create_key(&self, account: AccountId, key: NewKey, now: i64) -> StoreResult<KeyInfo> {
        self.run(move |c| {
            Box::pin(async move {
                let id = insert_key(c, account, &key, now).await?;
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
        })
        .await
    }

    async fn list_keys(&self, account: AccountId) -> StoreResult<Vec<KeyInfo>> {
        self.run(move |c| {
            Box::pin(async move {
                let stmt = c
                    .prepare_cached(&format!(
                        "SELECT {KEY_COLUMNS} FROM api_keys WHERE account_id = $1 ORDER BY id"
                    ))
                    .await?;
                c.query(&stmt, &[&account.0])
                    .await?
                    .iter()
                    .map(key_from_row)
                    .collect()
            })
        })
        .await
    }

    async fn revoke_key(&self, key_id: i64, now: i64) -> StoreResult<Option<KeyInfo>> {
        self.run(move |c| {
            Box::pin(async move {
                // COALESCE keeps the first moment of a key revoked twice; the
                // row comes back either way, and not at all for no such key.
                // One statement is one transaction: the key's sessions end
                // with it.
                let stmt = c
                    .prepare_cached(&format!(
                        "WITH ended AS (DELETE FROM sessions WHERE key_id = $2)
                         UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $1)
                         WHERE id = $2 RETURNING {KEY_COLUMNS}"
                    ))
                    .await?;
                c.query_opt(&stmt, &[&now, &key_id])
                    .await?
                    .as_ref()
                    .map(key_from_row)
                    .transpose()
            })
        })
        .await
    }

    async fn find_key(&self, digest: KeyDigest) -> StoreResult<Option<KeyInfo>> {
        self.run(move |c| {
            Box::pin(async move {
                let stmt = c
                    .prepare_cached(&format!(
                        "SELECT {KEY_COLUMNS} FROM api_keys WHERE digest = $1"
                    ))
                    .await?;
                c.query_opt(&stmt, &[&&digest.0[..]])
                    .await?
                    .as_ref()
                    .map(key_from_row)
                    .transpose()
            })
        })
        .await
    }

    async fn find_keys_by_prefix(&self, prefix: &str) -> StoreResult<Vec<KeyInfo>> {
        let prefix = prefix.to_ascii_lowercase();
        self.run(move |c| {
            Box::pin(async move {
                let stmt = c
                    .prepare_cached(&format!(
                        "SELECT {KEY_COLUMNS} FROM api_keys WHERE prefix = $1 ORDER BY id"
                    ))
                    .await?;
                c.query(&stmt, &[&prefix])
                    .await?
                    .iter()
                    .map(key_from_row)
                    .collect()
            })
        })
        .await
    }

    async fn bootstrap(&self, name: &str, key: NewKey, now: i64) -> StoreResult<bool> {
        let name = name.to_owned();
        self.run(move |c| {
            Box::pin(async move {
                let tx = c.transaction().await?;
                // Servers starting together on an empty database would each
                // count no accounts; this lock, which also holds off any other
                // insert into accounts, lets only the first create one.
                tx.batch_execute("LOCK TABLE accounts IN SHARE ROW EXCLUSIVE MODE")
                    .await?;
                let accounts: i64 = tx
                    .query_one("SELECT count(*) FROM accounts", &[])
                    .await?
                    .try_get(0)?;
                if accounts > 0 {
                    return Ok(false);
                }
                let account = insert_account(&tx, &name, now).await?;
                insert_key(&tx, account.id, &key, now).await?;
                tx.commit().await?;
                Ok(true)
            })
        })
        .await
    }

    async fn create_session(&self, session: NewSession, now: i64) -> StoreResult<()> {
        self.run(move |c| {
            Box::pin(async move {
                let stmt = c
                    .prepare_cached(
                        "INSERT INTO sessions
                            (digest, account_id, key_id, csrf, created_at, last_seen_at)
                         VALUES ($1, $2, $3, $4, $5, $5)",
                    )
                    .await?;
                let digest = &session.digest.0[..];
                c.execute(
                    &stmt,
                    &[
                        &digest,
                        &session.account.0,
                        &session.key_id,
                        &session.csrf,
                        &now,
                    ],
                )
                .await?;
                Ok(())
            })
        })
        .await
    }

    async fn find_session(
        &self,
        digest: SessionDigest,
        now: i64,
        cutoffs: SessionCutoffs,
    ) -> StoreResult<Option<Session>> {
        self.run(move |c| {
            Box::pin(async move {
                let stmt = c
                    .prepare_cached(
                        "SELECT s.account_id, s.key_id, s.csrf, s.created_at, s.last_seen_at
                         FROM sessions s JOIN api_keys k ON k.id = s.key_id
                         WHERE s.digest = $1 AND k.revoked_at IS NULL
                           AND s.last_seen_at >= $2 AND s.created_at >= $3",
                    )
                    .await?;
                let bytes = &digest.0[..];
                let row = c
                    .query_opt(
                        &stmt,
                        &[&bytes, &cutoffs.idle_before, &cutoffs.created_before],
                    )
                    .await?;
                let Some(row) = row else {
                    return Ok(None);
                };
                let session = Session {
                    account: AccountId(row.try_get(0)?),
                    key_id: row.try_get(1)?,
                    csrf: row.try_get(2)?,
                    created_at: row.try_get(3)?,
                    last_seen_at: row.try_get(4)?,
                };
                if now - session.last_seen_at >= cutoffs.seen_resolution {
                    // GREATEST keeps a server whose clock is behind from
                    // moving another's record back. A failure only makes the
                    // session end a little sooner, so it fails no page.
                    let touch = c
                        .prepare_cached(
                            "UPDATE sessions SET last_seen_at = GREATEST(last_seen_at, $1)
                             WHERE digest = $2",
                        )
                        .await;
                    if let Ok(touch) = touch {
                        let _ = c.execute(&touch, &[&now, &bytes]).await;
                    }
                }
                Ok(Some(session))
            })
        })
        .await
    }

    async fn end_session(&self, digest: SessionDigest) -> StoreResult<()> {
        self.run(move |c| {
            Box::pin(async move {
                let stmt = c
                    .prepare_cached("DELETE FROM sessions WHERE digest = $1")
                    .await?;
                c.execute(&stmt, &[&&digest.0[..]]).await?;
                Ok(())
            })
        })
        .await
    }

    async fn purge_sessions(&self, cutoffs: SessionCutoffs) -> StoreResult<u64> {
        self.run(move |c| {
            Box::pin(async move {
                let stmt = c
                    .prepare_cached(
                        "DELETE FROM sessions WHERE digest IN
                            (SELECT digest FROM sessions
                             WHERE last_seen_at < $1 OR created_at < $2 LIMIT 1000)",
                    )
                    .await?;
                Ok(
                    c.execute(&stmt, &[&cutoffs.idle_before, &cutoffs.created_before])
                        .await?,
                )
            })
        })
        .await
    }

    async fn ping(&self) -> StoreResult<()> {
        self.run(|c| {
            Box::pin(async move {
                c.simple_query("SELECT 1").await?;
                Ok(())
            })
        })
        .await
    }

    fn stats(&self) -> Vec<Stat> {
        let status = self.pool.status();
        let mut stats = vec![
            (
                "rekisteri_store_pool_connections",
                "Connections the pool holds open.",
                status.size as f64,
            ),
            (
                "rekisteri_store_pool_idle",
                "Open connections free at this moment.",
                status.available as f64,
            ),
            (
                "rekisteri_store_pool_waiting",
                "Requests waiting for a connection.",
                status.waiting as f64,
            ),
            (
                "rekisteri_store_pool_max",
                "The most connections the pool opens.",
                status.max_size as f64,
            ),
        ];
        stats.extend(self.pages.stats());
        stats
    }
}
