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

use crate::domain::api_key::KeyDigest;
use crate::domain::customer::{Customer, CustomerData};
use crate::domain::input::CustomerPatch;

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

/// How an update ended.
#[derive(Debug, Clone)]
pub enum UpdateOutcome {
    /// The patch changed a value; version and `updated_at` moved.
    Updated(Customer),
    /// The patch left every value as it was; nothing was written.
    Unchanged(Customer),
    NotFound,
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

    async fn get_customer(&self, account: AccountId, id: i64) -> StoreResult<Option<Customer>>;

    async fn create_customer(
        &self,
        account: AccountId,
        data: CustomerData,
        now: i64,
    ) -> StoreResult<Customer>;

    /// Reads, merges and writes in one transaction, so concurrent updates of
    /// different fields all survive.
    async fn update_customer(
        &self,
        account: AccountId,
        id: i64,
        patch: CustomerPatch,
        now: i64,
    ) -> StoreResult<UpdateOutcome>;

    /// Whether a customer was there to delete.
    async fn delete_customer(&self, account: AccountId, id: i64) -> StoreResult<bool>;

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

    /// Revokes the key with this id, if it exists; revoking twice keeps the
    /// first moment.
    async fn revoke_key(&self, key_id: i64, now: i64) -> StoreResult<Option<KeyInfo>>;

    /// The key with this digest, revoked or not.
    async fn find_key(&self, digest: KeyDigest) -> StoreResult<Option<KeyInfo>>;

    /// Keys whose eight-digit prefix is exactly this one.
    async fn find_keys_by_prefix(&self, prefix: &str) -> StoreResult<Vec<KeyInfo>>;

    /// On a database with no accounts at all, creates `name` with one key in
    /// one transaction and returns true; otherwise changes nothing.
    async fn bootstrap(&self, name: &str, key: NewKey, now: i64) -> StoreResult<bool>;

    /// Succeeds when the database answers.
    async fn ping(&self) -> StoreResult<()>;

    /// Figures for `/metrics`: name, help text, value. Names ending in
    /// `_total` are counters, the others gauges.
    fn stats(&self) -> Vec<Stat>;
}

/// One figure a store reports about itself.
pub type Stat = (&'static str, &'static str, f64);

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
