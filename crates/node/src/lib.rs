//! The participant node: a [`Node`] state machine that runs jobs from the
//! coordinator over pairwise Noise channels, and its [`Store`] (key shares,
//! chain seeds and derivation tweaks sealed at rest in one SQLite file, with
//! two-phase refresh and an append-only log of what the node signed).
//! [`service::run`] is the process around it: an outbound, Noise-protected
//! connection to the coordinator.
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic))]
#![warn(missing_docs)]

mod fault;
mod governance;
mod runner;
pub mod service;
mod signing;
mod store;

pub use fault::CRASH_AT_ENV;
pub use governance::{system_clock, Clock};
pub use runner::{Limits, Node, NodeError};
pub use signing::RawSigning;
pub use store::{
    KekSource, SignIntent, SignLogEntry, SignLogHead, SignLogStatus, Spending, Store, StoreError, StoreLedger,
    StoredEntry, SIGN_LOG_HEAD_DOMAIN, SIGN_LOG_KEY_KIND, SIGN_LOG_KEY_ROW,
};
