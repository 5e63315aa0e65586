//! The one way shardvault's tests start a cluster (dev-only, never
//! published). Three shapes, chosen by what a test needs to see:
//!
//! - [`Nodes`]: n [`shardvault_node::Node`] state machines in this process,
//!   each with its own sealed store, and a synchronous relay in place of the
//!   coordinator. Tests that play a misbehaving coordinator or network choose
//!   which frames are delivered ([`Nodes::deliver`],
//!   [`Nodes::run_withholding_last`]); a test that plays a misbehaving node
//!   drives that node's protocol itself and hands its frames to the others.
//! - [`Devnet`]: `shardvault devnet` as processes (a coordinator and n nodes
//!   on loopback, optionally over TLS), with the CLI run against it; nodes can
//!   be killed, stopped and restarted (also through another relay URL, e.g. a
//!   proxy in front of the coordinator).
//!
//! - [`InProcess`]: the real coordinator on `127.0.0.1:0` and every node's
//!   real service (WebSocket, Noise hop, worker thread) as tasks of one
//!   runtime in the test's process: the networked system without processes,
//!   for tests that drive the coordinator over its API.
//!
//! The HTTP helpers here are deliberately thin (a health poll); tests make
//! their own API calls.
//!
//! The coordinator's own unit tests (`crates/coordinator/src/testing.rs`)
//! start a bare coordinator without this crate: the coordinator may not
//! depend on anything that links `shardvault-mpc`, not even for tests
//! (CI's `cargo tree` check covers dev-dependencies).

mod devnet;
mod in_process;
mod nodes;
mod organisation;

pub use devnet::{Devnet, DevnetOptions};
pub use in_process::InProcess;
pub use nodes::{collect, open_store, Nodes, Results};
pub use organisation::{approved, identity, now, one_owner_or_admin, operation_of, Organisation, GENESIS_TIME};
