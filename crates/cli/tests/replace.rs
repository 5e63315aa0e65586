//! Replacing a lost node with real processes (docs/DESIGN.md "Replacing a
//! lost node"): node 2 of a devnet dies with its disk; a new machine with
//! new keys is started as node 2; `shardvault node-replace` (approved by the
//! organisation's only member) rebuilds its shares; the keys and addresses
//! are unchanged, and it signs with either other node (checked by
//! libsecp256k1 and by ed25519-dalek). The old machine, brought back, is
//! not let in.

use std::time::Duration;

use serde_json::Value;
use shardvault_testkit as tk;

mod common;
use common::machine::{check_ethereum, create, sign, stop, text, Machine};
use common::{Devnet, EXE};

fn check_solana(signed: &Value, address: &str, message: &[u8]) {
    let key = tk::solana_key(address).unwrap();
    let signature = hex::decode(text(signed, "signature")).unwrap();
    let offchain = tk::solana_offchain_message(&key, message);
    let verified =
        tk::verify_ed25519(&key, &offchain, &signature).or_else(|_| tk::verify_ed25519(&key, message, &signature));
    verified.unwrap_or_else(|e| panic!("{e}: {signed}"));
}

#[test]
fn a_lost_node_is_replaced_and_the_old_addresses_still_sign() {
    let dir = tempfile::tempdir().unwrap();
    let net = Devnet::start(EXE, dir.path());
    let (eth_key, eth_address) = create(&net, "ecdsa-secp256k1", "ethereum");
    let (sol_key, sol_address) = create(&net, "eddsa-ed25519", "solana");

    // Node 2's machine is gone, disk and all; a new one is started in its place.
    net.kill_node(2);
    net.wait_connected(2);
    let machine = Machine::new(&net, 2, &dir.path().join("new-node-2"));
    let mut node2 = machine.start(&net, &[]);
    // Not let in before the replacement is approved.
    std::thread::sleep(Duration::from_secs(1));
    net.wait_connected(2);

    let replaced = machine.replace(&net).unwrap();
    let repaired = replaced["keys"].as_array().unwrap_or_else(|| panic!("{replaced}"));
    assert_eq!(repaired.len(), 2, "{replaced}");
    for key in repaired {
        let epochs = (key["party"].as_u64(), key["epoch_before"].as_u64(), key["epoch_after"].as_u64());
        assert_eq!(epochs, (Some(2), Some(0), Some(1)), "{key}");
        assert_eq!(key["paths"].as_array().map(Vec::len), Some(1), "{key}");
    }
    net.wait_connected(3);

    // The same addresses, signed by the new node with either other one.
    for signers in ["1,2", "2,3"] {
        check_ethereum(&sign(&net, &eth_key, "ethereum", signers, "7265706c61636564"), &eth_address);
        check_solana(&sign(&net, &sol_key, "solana", signers, "7265706c61636564"), &sol_address, b"replaced");
    }
    let again = net.cli(&["address", "--key", &eth_key, "--chain", "ethereum", "--index", "0"]).unwrap();
    assert_eq!(text(&again, "address"), eth_address);
    // The new node's own seed is escrowed again, and holds pieces of the others'.
    let shown = net.cli(&["key", "show", "--key", &sol_key]).unwrap();
    assert_eq!(text(&shown, "seed_escrow"), "complete", "{shown}");

    // The old machine comes back with its old disk: refused at the hop, the
    // new node stays connected and keeps signing.
    let mut old = net.restart_node(2);
    std::thread::sleep(Duration::from_secs(2));
    check_ethereum(&sign(&net, &eth_key, "ethereum", "1,2", "6f6c64"), &eth_address);

    stop(&mut node2);
    stop(&mut old);
}
