//! Crash points with real processes (docs/DESIGN.md "Refresh" and
//! "Replacing a lost node"): a node process aborts right after it made a
//! step durable and before it answered (`SHARDVAULT_CRASH_AT`, debug builds
//! only), at each step of a refresh and of a node replacement. After it is
//! restarted and the operation finished or asked again, the key signs at one
//! epoch on every node with its address unchanged (checked by libsecp256k1,
//! with both signer sets that include the crashed node).
// A release build has no crash points: nothing here could crash.
#![cfg(debug_assertions)]

use std::process::Child;

use serde_json::Value;

mod common;
use common::machine::{check_ethereum, create, exited, sign, stop, text, Machine};
use common::{Devnet, EXE};

const CRASH_AT: &str = shardvault_node::CRASH_AT_ENV;

/// The key signs with both sets that include node 2, at `address`.
fn signs_everywhere(net: &Devnet, key_id: &str, address: &str, message: &str) {
    for signers in ["1,2", "2,3"] {
        check_ethereum(&sign(net, key_id, "ethereum", signers, message), address);
    }
}

fn epoch(net: &Devnet, key_id: &str) -> Value {
    net.cli(&["key", "show", "--key", key_id]).unwrap()["epoch"].clone()
}

/// Node 2 restarted (the devnet's own command) with `env`.
fn restart(net: &Devnet, env: &[(&str, &str)]) -> Child {
    let mut command = net.node_command(2, &net.relay());
    command.envs(env.iter().copied());
    let child = command.spawn().unwrap();
    net.wait_connected(3);
    child
}

#[test]
fn a_node_killed_at_each_step_of_a_refresh_leaves_one_epoch_that_signs() {
    let dir = tempfile::tempdir().unwrap();
    let net = Devnet::start(EXE, dir.path());
    let (key_id, address) = create(&net, "ecdsa-secp256k1", "ethereum");
    let mut node2: Option<Child> = None;
    for point in ["refresh-started", "refresh-stored", "activated"] {
        match node2.as_mut() {
            Some(child) => stop(child),
            None => net.kill_node(2),
        }
        net.wait_connected(2);
        let mut crashing = restart(&net, &[(CRASH_AT, &format!("2:{point}"))]);
        let failed = net.cli(&["refresh", "--key", &key_id]).unwrap_err();
        assert!(!exited(&mut crashing).success(), "{point}: node 2 did not crash");
        // Before node 2 is back, the others still sign (2-of-3) at one epoch.
        check_ethereum(&sign(&net, &key_id, "ethereum", "1,3", "6d6964"), &address);
        let restarted = restart(&net, &[]);
        node2 = Some(restarted);
        let finished = net.cli(&["refresh", "--key", &key_id, "--finish"]).unwrap();
        match point {
            // Confirmed by every node: activated where it was not yet.
            "activated" => assert_eq!(finished["finished"], "activated", "{point}: {failed} / {finished}"),
            // Never confirmed by node 2: nothing was deleted anywhere.
            _ => {
                assert_eq!(finished["finished"], "abandoned", "{point}: {failed} / {finished}");
                assert!(failed.contains("stays active everywhere"), "{point}: {failed}");
            }
        }
        signs_everywhere(&net, &key_id, &address, "6166746572");
    }
    // Only the activated attempt moved the epoch: one refresh in three.
    assert_eq!(epoch(&net, &key_id).as_u64(), Some(3), "epochs: 1 and 2 abandoned, 3 activated");
    let refreshed = net.cli(&["refresh", "--key", &key_id]).unwrap();
    assert_eq!(refreshed["epoch_after"].as_u64(), Some(4), "{refreshed}");
    signs_everywhere(&net, &key_id, &address, "6c617374");
    if let Some(child) = node2.as_mut() {
        stop(child);
    }
}

#[test]
fn a_new_node_killed_at_each_step_of_its_replacement_ends_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let net = Devnet::start(EXE, dir.path());
    let (key_id, address) = create(&net, "ecdsa-secp256k1", "ethereum");
    net.kill_node(2);
    net.wait_connected(2);
    let machine = Machine::new(&net, 2, &dir.path().join("new-node-2"));
    for point in ["repair-stored", "refresh-stored", "activated", "derived"] {
        let mut crashing = machine.start(&net, &[(CRASH_AT, &format!("2:{point}"))]);
        let failed = machine.replace(&net).unwrap_err();
        assert!(!exited(&mut crashing).success(), "{point}: the new node did not crash ({failed})");
        net.wait_connected(2);
        // Nodes 1 and 3 sign throughout, at the address.
        check_ethereum(&sign(&net, &key_id, "ethereum", "1,3", "6d6964"), &address);
    }
    let mut node2 = machine.start(&net, &[]);
    let replaced = machine.replace(&net).unwrap();
    assert_eq!(replaced["keys"][0]["paths"].as_array().map(Vec::len), Some(1), "{replaced}");
    net.wait_connected(3);
    signs_everywhere(&net, &key_id, &address, "7265706c61636564");
    let epoch = epoch(&net, &key_id);
    assert_eq!(text(&replaced["keys"][0], "key_id"), key_id);
    assert_eq!(replaced["keys"][0]["epoch_after"], epoch, "{replaced}");
    stop(&mut node2);
}
