//! The participant node. This release holds its storage: key shares, chain
//! seeds and derivation tweaks sealed at rest in one embedded SQLite file,
//! with two-phase refresh and an append-only log of what the node signed.
//! The protocol runner and the connection to the coordinator come next.
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic))]
#![warn(missing_docs)]

mod store;

pub use store::{KekSource, SignLogEntry, Store, StoreError};
