//! PostgreSQL for the tests. Until the PostgreSQL store exists, no database
//! is available and every PostgreSQL test reports itself skipped.

/// A database of one test's own, removed when dropped.
pub struct TestDatabase {
    pub url: String,
}

impl TestDatabase {
    pub async fn create() -> Option<TestDatabase> {
        None
    }
}

/// Says plainly that a PostgreSQL test did not run.
pub fn skipped(test: &str) {
    eprintln!("SKIPPED postgres::{test}: no PostgreSQL store is available");
}
