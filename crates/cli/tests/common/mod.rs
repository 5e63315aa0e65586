//! The CLI's end-to-end tests start their devnets with the shared harness
//! (`crates/harness`); this names the binary under test.
#![allow(dead_code, unused_imports)]

pub use shardvault_harness::{Devnet, DevnetOptions};

/// The `shardvault` binary built for these tests.
pub const EXE: &str = env!("CARGO_BIN_EXE_shardvault");

pub mod machine;
