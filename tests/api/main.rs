//! The integration suite: each test starts the real server on port 0 and
//! talks HTTP to it, once per store.
#![allow(dead_code)]

mod support;
