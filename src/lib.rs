//! Rekisteri: a server for the Paylink customer registry API.
//!
//! The modules, from the inside out:
//!
//! - [`domain`]: pure types and rules. The validated customer, the partial
//!   update and its merge, the Finnish sort key, search words, API keys,
//!   timestamps.
//! - [`store`]: one interface for everything kept, with two
//!   implementations: embedded SQLite and PostgreSQL. It speaks domain types
//!   and owns transactions, migrations and durability.
//! - [`http`]: the route table, authentication and rate limits, the one
//!   error type and its JSON envelope, entity tags and idempotency keys,
//!   limits, the request log and metrics, the OpenAPI document and docs page.
//! - [`dashboard`]: the merchants' web pages under `/app`, with sessions
//!   signed in by API key; the same store calls and validation as the API.
//! - [`app`]: start-up, the first-start key, serving on a given listener,
//!   graceful shutdown.
//! - [`bulk`]: CSV and JSON Lines import and export, streamed through the
//!   store's bulk methods and the API's own validation.
//! - [`cli`]: the `rekisteri` command line.
//!
//! Dependencies point inwards: `domain` knows nothing of the others, `store`
//! only of `domain`, `http` of `domain` and `store`.

pub mod app;
pub mod bulk;
pub mod cli;
pub mod dashboard;
pub mod domain;
pub mod http;
pub mod store;
