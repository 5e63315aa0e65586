//! `shardvault demo`'s transactions, signed by the networked cluster, checked
//! by each chain's own software (`tools/chain-sdks/prove.mjs demo`): litesvm
//! executes the Solana transfers; ethers, the Aptos and Sui SDKs, cosmjs and
//! TronWeb verify the signatures over what they say is signed, recompute the
//! ids and derive the senders. (Bitcoin and Litecoin: tests/report.rs runs
//! Bitcoin Core's interpreter.)
//!
//! Run by `.ci/run`'s "Chain SDKs" step with SHARDVAULT_CHAIN_SDKS set.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::Value;

#[test]
#[ignore = "needs the chains' SDKs (npm); run by .ci/run's Chain SDKs step"]
fn the_chains_own_software_accepts_the_demos_transactions() {
    let dir = std::env::var("SHARDVAULT_CHAIN_SDKS").expect("SHARDVAULT_CHAIN_SDKS names tools/chain-sdks");
    let demo = Command::new(env!("CARGO_BIN_EXE_shardvault")).args(["--json", "demo"]).output().unwrap();
    assert!(demo.status.success(), "{}", String::from_utf8_lossy(&demo.stderr));
    let mut node = Command::new("node")
        .arg(format!("{dir}/prove.mjs"))
        .arg("demo")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("node runs");
    node.stdin.take().unwrap().write_all(&demo.stdout).unwrap();
    let output = node.wait_with_output().unwrap();
    let verdict: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|_| panic!("{output:?}"));
    assert!(output.status.success(), "{}", verdict["error"]);
    // Two keys sign for each family (2-of-3 and 3-of-3).
    for chain in ["ethereum", "tron", "cosmos", "solana", "aptos", "sui"] {
        assert_eq!(verdict["checked"][chain], 2, "{chain}: {verdict}");
    }
}
