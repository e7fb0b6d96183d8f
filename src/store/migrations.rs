//! Versioned schema migrations. Each is applied once, in order, inside the
//! transaction that records it; a schema is never edited by hand.

/// SQLite's migrations; the database's `user_version` counts those applied.
pub const SQLITE: &[&str] = &[
    include_str!("migrations/sqlite_0001_init.sql"),
    include_str!("migrations/sqlite_0002_idempotency.sql"),
    include_str!("migrations/sqlite_0003_search.sql"),
    include_str!("migrations/sqlite_0004_change_counter.sql"),
    include_str!("migrations/sqlite_0005_sessions.sql"),
];

/// PostgreSQL's migrations; the table `schema_migrations` lists the versions
/// applied, the first being 1.
pub const POSTGRES: &[&str] = &[
    include_str!("migrations/postgres_0001_init.sql"),
    include_str!("migrations/postgres_0002_idempotency.sql"),
    include_str!("migrations/postgres_0003_search.sql"),
    include_str!("migrations/postgres_0004_change_counter.sql"),
    include_str!("migrations/postgres_0005_sessions.sql"),
];
