//! The store interface: everything the server keeps, behind one trait with
//! one implementation per database.
//!
//! The trait speaks domain types only. Each implementation owns its
//! transactions and its durability: when a write method returns `Ok`, the
//! change is committed to disk.

mod migrations;
pub mod paging;
pub mod postgres;
pub mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;

use crate::domain::PAGE_SIZE;
use crate::domain::api_key::KeyDigest;
use crate::domain::customer::{Customer, CustomerData};
use crate::domain::input::CustomerPatch;
use crate::domain::search::{Filter, prefix_end};
use crate::domain::session::SessionDigest;

/// A failure of the store itself; "no such row" is an `Ok(None)`.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or is too busy to answer in time.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    /// The request conflicts with what is stored (a duplicate account name).
    #[error("{0}")]
    Conflict(String),
    /// The caller abandoned a bulk operation; nothing of it was stored.
    #[error("{0}")]
    Aborted(String),
    /// Something that should not happen; the details are for the log.
    #[error("internal store error: {0}")]
    Internal(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AccountId(pub i64);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub id: AccountId,
    pub name: String,
    pub created_at: i64,
}

/// What is known of a key, never its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    pub id: i64,
    pub account: AccountId,
    /// The first eight hex digits of the key.
    pub prefix: String,
    pub label: Option<String>,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// A key about to be stored.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub prefix: String,
    pub digest: KeyDigest,
    pub label: Option<String>,
}

/// A dashboard session about to be stored.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub digest: SessionDigest,
    pub account: AccountId,
    /// The key it was signed in with; revoking the key ends the session.
    pub key_id: i64,
    /// The token every form of the session carries.
    pub csrf: String,
}

/// A live dashboard session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub account: AccountId,
    pub key_id: i64,
    pub csrf: String,
    pub created_at: i64,
    pub last_seen_at: i64,
}

/// When sessions end: those not seen since `idle_before`, and those created
/// before `created_before`, are over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionCutoffs {
    pub idle_before: i64,
    pub created_before: i64,
    /// How long after the recorded last use a use is written down again.
    /// The idle expiry is that much coarser than the setting; in return a
    /// person clicking through pages does not make a write of every click.
    pub seen_resolution: i64,
}

impl SessionCutoffs {
    /// The cutoffs at `now` for sessions that may go `idle` long unused and
    /// last `lifetime` at most.
    pub fn at(now: i64, idle: std::time::Duration, lifetime: std::time::Duration) -> Self {
        let millis = |d: std::time::Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        SessionCutoffs {
            idle_before: now.saturating_sub(millis(idle)),
            created_before: now.saturating_sub(millis(lifetime)),
            // A thirtieth of the idle limit (a minute of the default half
            // hour) keeps the expiry within a few per cent of the setting.
            seen_resolution: (millis(idle) / 30).clamp(1, 60_000),
        }
    }
}

/// One page of an account's customers in list order.
#[derive(Debug, Clone)]
pub struct CustomerPage {
    pub customers: Vec<Customer>,
    pub has_more: bool,
}

/// One batch of an export, in list order, and where the next one starts
/// (after the last customer here), or `None` when this was the last.
#[derive(Debug, Clone)]
pub struct ExportBatch {
    pub customers: Vec<Customer>,
    pub next: Option<Position>,
}

pub use paging::Position;

/// What an import reads: each customer to insert, in order, or an `Err` that
/// abandons the whole import with that reason.
pub type ImportRows = tokio::sync::mpsc::Receiver<Result<CustomerData, String>>;

/// A condition on the stored customer, from `If-Match`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Precondition {
    /// `If-Match: *`: any customer that exists.
    Exists,
    /// The customer's version must be one of these (none: never matches).
    Version(Vec<i64>),
}

impl Precondition {
    pub fn holds(&self, customer: &Customer) -> bool {
        match self {
            Precondition::Exists => true,
            Precondition::Version(versions) => versions.contains(&customer.version),
        }
    }
}

/// A change to one customer.
#[derive(Debug, Clone)]
pub enum WriteOp {
    Create(CustomerData),
    Update {
        id: i64,
        patch: CustomerPatch,
        precondition: Option<Precondition>,
    },
    Delete {
        id: i64,
        precondition: Option<Precondition>,
    },
}

/// How a change ended, when the store could carry it out or refuse it.
#[derive(Debug, Clone)]
pub enum WriteResult {
    Created(Customer),
    /// A value changed; version and `updated_at` moved.
    Updated(Customer),
    /// The patch left every value as it was; nothing was written.
    Unchanged(Customer),
    Deleted,
    NotFound,
    /// `If-Match` did not match; nothing was written.
    PreconditionFailed,
}

impl WriteResult {
    /// The customer whose personal data an answer to this result carries.
    pub fn customer(&self) -> Option<&Customer> {
        match self {
            WriteResult::Created(c) | WriteResult::Updated(c) | WriteResult::Unchanged(c) => {
                Some(c)
            }
            _ => None,
        }
    }
}

/// An HTTP answer as it was sent, kept so that it can be sent again byte
/// for byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Turns a result into the answer the client gets. It runs inside the
/// write's transaction, so the answer is recorded with the change.
pub type Render = Box<dyn FnOnce(&WriteResult) -> Answer + Send + Sync>;

/// An `Idempotency-Key` and what the request that carries it looks like.
pub struct Idempotency {
    /// The key as the client sent it, scoped to the account.
    pub key: String,
    /// A digest of method, path and body: the same key with a different
    /// fingerprint is another request.
    pub fingerprint: [u8; 32],
    /// Records made before this instant have expired and count as absent.
    pub not_before: i64,
    pub render: Render,
}

/// What a write came to.
#[derive(Debug)]
pub enum WriteReply {
    /// The write ran; no key was given.
    Done(Box<WriteResult>),
    /// The write ran and its answer was recorded under the key.
    Recorded(Answer),
    /// The key was used before for this same request: its answer, again,
    /// and nothing changed.
    Replayed(Answer),
    /// The key was used before for another request; nothing changed.
    KeyReused,
    /// Another server is carrying out a request with this key right now;
    /// nothing changed.
    KeyInUse,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The account of a key that exists and is not revoked. Records when the
    /// key was last used, coarsely, so that a busy key does not turn every
    /// read into a write.
    async fn authenticate(&self, digest: KeyDigest, now: i64) -> StoreResult<Option<AccountId>>;

    /// Page `page` (1-based) of the account's customers in Finnish
    /// alphabetical order.
    async fn list_customers(&self, account: AccountId, page: u64) -> StoreResult<CustomerPage>;

    /// Page `page` of the account's customers that pass `filter`, in the
    /// same order as the whole list.
    async fn search_customers(
        &self,
        account: AccountId,
        filter: &Filter,
        page: u64,
    ) -> StoreResult<CustomerPage>;

    async fn get_customer(&self, account: AccountId, id: i64) -> StoreResult<Option<Customer>>;

    /// Carries out one change in one transaction. With a key, the answer
    /// is recorded in that same transaction, so a crash can never keep one
    /// without the other; deleting a customer also removes the recorded
    /// answers that carry its data.
    async fn write(
        &self,
        account: AccountId,
        op: WriteOp,
        now: i64,
        idempotency: Option<Idempotency>,
    ) -> StoreResult<WriteReply>;

    /// Removes recorded answers made before `before`, a batch at a time;
    /// returns how many went.
    async fn purge_idempotency(&self, before: i64) -> StoreResult<u64>;

    /// A plain create, without a key or a condition, for tools and tests.
    async fn create_customer(
        &self,
        account: AccountId,
        data: CustomerData,
        now: i64,
    ) -> StoreResult<Customer> {
        let op = WriteOp::Create(data);
        let WriteReply::Done(result) = self.write(account, op, now, None).await? else {
            return Err(StoreError::Internal(
                "a write without a key was recorded".into(),
            ));
        };
        match *result {
            WriteResult::Created(customer) => Ok(customer),
            other => Err(unexpected(&other)),
        }
    }

    /// Inserts every customer `rows` yields into the account in one
    /// transaction, committed once the channel closes: all of them or, on an
    /// error or an `Err` from the channel, none. Returns how many.
    async fn import_customers(
        &self,
        account: AccountId,
        rows: ImportRows,
        now: i64,
    ) -> StoreResult<u64>;

    /// Up to `limit` customers in list order, from just after `after` (from
    /// the first when `None`). Each batch is read on its own, so an export
    /// of an account that changes meanwhile is not one snapshot.
    async fn export_customers(
        &self,
        account: AccountId,
        after: Option<Position>,
        limit: usize,
    ) -> StoreResult<ExportBatch>;

    async fn create_account(&self, name: &str, now: i64) -> StoreResult<Account>;

    async fn list_accounts(&self) -> StoreResult<Vec<Account>>;

    async fn find_account(&self, name: &str) -> StoreResult<Option<Account>>;

    async fn create_key(&self, account: AccountId, key: NewKey, now: i64) -> StoreResult<KeyInfo>;

    async fn list_keys(&self, account: AccountId) -> StoreResult<Vec<KeyInfo>>;

    /// Revokes the key with this id, if it exists, and ends the dashboard
    /// sessions signed in with it, in one transaction; revoking twice keeps
    /// the first moment.
    async fn revoke_key(&self, key_id: i64, now: i64) -> StoreResult<Option<KeyInfo>>;

    /// The key with this digest, revoked or not.
    async fn find_key(&self, digest: KeyDigest) -> StoreResult<Option<KeyInfo>>;

    /// Keys whose eight-digit prefix is exactly this one.
    async fn find_keys_by_prefix(&self, prefix: &str) -> StoreResult<Vec<KeyInfo>>;

    /// On a database with no accounts at all, creates `name` with one key in
    /// one transaction and returns true; otherwise changes nothing.
    async fn bootstrap(&self, name: &str, key: NewKey, now: i64) -> StoreResult<bool>;

    async fn create_session(&self, session: NewSession, now: i64) -> StoreResult<()>;

    /// The session with this digest if it is live: not ended, within both
    /// cutoffs, and its key not revoked. Records that it was seen now, at
    /// most once per the cutoffs' resolution, and without holding up the
    /// answer: a failure only makes the session end a little sooner.
    async fn find_session(
        &self,
        digest: SessionDigest,
        now: i64,
        cutoffs: SessionCutoffs,
    ) -> StoreResult<Option<Session>>;

    /// Ends the session with this digest, if there is one.
    async fn end_session(&self, digest: SessionDigest) -> StoreResult<()>;

    /// Removes sessions past either cutoff, a batch at a time; returns how
    /// many went.
    async fn purge_sessions(&self, cutoffs: SessionCutoffs) -> StoreResult<u64>;

    /// Succeeds when the database answers.
    async fn ping(&self) -> StoreResult<()>;

    /// Figures for `/metrics`: name, help text, value. Names ending in
    /// `_total` are counters, the others gauges.
    fn stats(&self) -> Vec<Stat>;
}

/// One figure a store reports about itself.
pub type Stat = (&'static str, &'static str, f64);

/// A value bound to a statement that both stores build alike.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Bound {
    Int(i64),
    Text(String),
}

/// The statement for one page of an account's customers that pass
/// `filter`, in list order. `placeholder(n)` spells the n-th parameter in
/// the store's dialect; the first is always the account.
fn search_statement(
    columns: &str,
    account: AccountId,
    filter: &Filter,
    offset: i64,
    placeholder: fn(usize) -> String,
) -> (String, Vec<Bound>) {
    // Known shortcoming: a word search costs in proportion to the customers
    // its words match, since they are all fetched and sorted into list order
    // before the page is cut; a one-letter prefix over a large account is
    // slow.
    //
    // With words to match, the matching ids are few next to the account's
    // customers, so they drive the query and are sorted afterwards: the
    // unary plus keeps SQLite from walking the whole account in list order
    // and testing each customer (PostgreSQL plans by its statistics, and the
    // plus changes nothing there).
    let account_column = if filter.words.is_empty() {
        "account_id"
    } else {
        "+account_id"
    };
    let mut sql = format!(
        "SELECT {columns} FROM customers WHERE {account_column} = {}",
        placeholder(1)
    );
    let mut values = vec![Bound::Int(account.0)];
    let mut bind = |sql: &mut String, clause: &str, value: Bound| {
        values.push(value);
        sql.push_str(&clause.replace('#', &placeholder(values.len())));
    };
    for word in &filter.words {
        let subquery = format!(
            " AND id IN (SELECT customer_id FROM customer_words \
             WHERE account_id = {} AND word >= #",
            placeholder(1)
        );
        bind(&mut sql, &subquery, Bound::Text(word.clone()));
        bind(&mut sql, " AND word < #)", Bound::Text(prefix_end(word)));
    }
    if let Some(email) = &filter.email {
        bind(
            &mut sql,
            " AND email_folded = #",
            Bound::Text(email.clone()),
        );
    }
    if let Some(after) = filter.updated_after {
        bind(&mut sql, " AND updated_at > #", Bound::Int(after));
    }
    let limit = PAGE_SIZE as i64 + 1;
    bind(
        &mut sql,
        " ORDER BY sort_key, id LIMIT #",
        Bound::Int(limit),
    );
    bind(&mut sql, " OFFSET #", Bound::Int(offset));
    (sql, values)
}

/// The offset of a 1-based page, or `None` for a page so far out that it is
/// past the end of any account.
fn page_offset(page: u64) -> Option<i64> {
    i64::try_from(page.saturating_sub(1).saturating_mul(PAGE_SIZE)).ok()
}

/// Recorded headers as text: a JSON array of `[name, value]` pairs.
fn encode_headers(headers: &[(String, String)]) -> String {
    serde_json::to_string(headers).unwrap_or_else(|_| "[]".to_owned())
}

fn decode_headers(text: &str) -> StoreResult<Vec<(String, String)>> {
    serde_json::from_str(text)
        .map_err(|e| StoreError::Internal(format!("a recorded answer's headers are corrupt: {e}")))
}

fn unexpected(result: &WriteResult) -> StoreError {
    StoreError::Internal(format!(
        "a write without a key or condition ended as {result:?}"
    ))
}

/// Opens the store a database URL names, creating and migrating its schema.
pub async fn open(url: &str) -> anyhow::Result<Arc<dyn Store>> {
    open_with(url, &OpenOptions::default()).await
}

/// Tuning for each kind of store; only the one the URL names is used.
#[derive(Debug, Clone, Default)]
pub struct OpenOptions {
    pub sqlite: sqlite::Options,
    pub postgres: postgres::Options,
}

/// Opens the store a database URL names, with the given tuning.
pub async fn open_with(url: &str, options: &OpenOptions) -> anyhow::Result<Arc<dyn Store>> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        let store = sqlite::SqliteStore::open(path, options.sqlite.clone())?;
        return Ok(Arc::new(store));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let store = postgres::PostgresStore::open(url, options.postgres.clone()).await?;
        return Ok(Arc::new(store));
    }
    anyhow::bail!("unsupported database URL {url:?}: expected sqlite://PATH or postgres://…")
}
