//! The integration suite: each test starts the real server on port 0 and
//! talks HTTP to it, once per store.

mod auth;
mod browser;
mod bulk;
mod cli;
mod dashboard;
mod durability;
mod hardening;
mod http_edges;
mod listing;
mod multi_server;
mod openapi;
mod outage;
mod paging;
mod reference_flow;
mod retries;
mod search;
mod support;
mod tenancy;
mod updates;
mod validation;
