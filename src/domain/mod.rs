//! Pure types and rules: no I/O, nothing that knows about HTTP or SQL.

pub mod api_key;
pub mod customer;
pub mod input;
pub mod search;
pub mod session;
pub mod sort_key;
#[cfg(test)]
pub mod testgen;
pub mod time;

/// Customers on one page of the list.
pub const PAGE_SIZE: u64 = 50;
