//! Refresh with real processes: a node gone during a refresh of a 3-of-3
//! key, every process restarted — the key ends at one consistent epoch and
//! keeps signing, and `refresh --finish` reports what it did; a refresh the
//! policy schedules runs on its own.

use std::time::{Duration, Instant};

use serde_json::Value;
use shardvault_api::{Pending, SetPolicy};
use shardvault_governance::Policy;
use shardvault_testkit as tk;

mod common;
use common::{Devnet, DevnetOptions, EXE};

fn text(value: &Value, field: &str) -> String {
    value[field].as_str().unwrap_or_else(|| panic!("no {field} in {value}")).to_string()
}

fn sign(net: &Devnet, key_id: &str, message: &str) -> Value {
    net.cli(&["sign", "--key", key_id, "--chain", "ethereum", "--index", "0", "--message-hex", message]).unwrap()
}

fn check(signed: &Value, address: &str) {
    let h = |field: &str| hex::decode(text(signed, field)).unwrap();
    let recovered = tk::recover_ecdsa(&h("digest"), &h("signature"), signed["recovery_id"].as_u64().unwrap() as u8);
    assert_eq!(tk::eip55_address(&recovered.unwrap()).unwrap(), address, "{signed}");
}

#[test]
fn a_refresh_that_misses_a_node_leaves_one_epoch_and_the_next_one_completes() {
    let dir = tempfile::tempdir().unwrap();
    let net = Devnet::start(EXE, dir.path());
    let key = net.cli(&["key", "create", "--scheme", "ecdsa-secp256k1", "--threshold", "3", "--parties", "3"]).unwrap();
    let key_id = text(&key, "key_id");
    let address =
        text(&net.cli(&["address", "--key", &key_id, "--chain", "ethereum", "--index", "0"]).unwrap(), "address");

    // Node 3 is gone: the refresh fails, and says that nothing was deleted.
    net.kill_node(3);
    net.wait_connected(2);
    let failed = net.cli(&["refresh", "--key", &key_id]).unwrap_err();
    assert!(failed.contains("stays active everywhere"), "{failed}");
    let mut node3 = net.restart_node(3);
    net.wait_connected(3);
    check(&sign(&net, &key_id, "6265666f7265"), &address);
    let finished = net.cli(&["refresh", "--key", &key_id, "--finish"]).unwrap();
    assert_eq!(finished["finished"], "abandoned", "{finished}");

    // The next refresh goes to a later epoch than the abandoned one, and completes.
    let refreshed = net.cli(&["refresh", "--key", &key_id]).unwrap();
    assert_eq!(
        (refreshed["epoch_before"].as_u64(), refreshed["epoch_after"].as_u64()),
        (Some(0), Some(2)),
        "{refreshed}"
    );
    check(&sign(&net, &key_id, "6166746572"), &address);
    let finished = net.cli(&["refresh", "--key", &key_id, "--finish"]).unwrap();
    assert_eq!(finished["finished"], "nothing to finish", "{finished}");
    let shown = net.cli(&["key", "show", "--key", &key_id]).unwrap();
    assert_eq!(
        (shown["epoch"].as_u64(), shown["last_refresh"]["state"].as_str()),
        (Some(2), Some("activated")),
        "{shown}"
    );

    // Every process restarted: epoch 2 everywhere, and it signs.
    drop(net);
    let _ = std::process::Command::new("kill").args(["-TERM", &node3.id().to_string()]).status();
    let _ = node3.wait();
    let net = Devnet::start(EXE, dir.path());
    check(&sign(&net, &key_id, "72657374617274"), &address);
}

/// A policy that refreshes every 10 s: with no request and no approval the
/// key moves to a new epoch on its own (each node checked the schedule on
/// its own clock), keeps its address, signs, and `backup list` flags it.
#[test]
fn a_policy_schedule_refreshes_keys_without_a_request() {
    let dir = tempfile::tempdir().unwrap();
    let env = vec![("SHARDVAULT_REFRESH_CHECK_SECS".to_string(), "1".to_string())];
    let net = Devnet::start_with(EXE, dir.path(), DevnetOptions { env, ..DevnetOptions::default() });
    let key = net.cli(&["key", "create", "--scheme", "ecdsa-secp256k1", "--threshold", "2", "--parties", "3"]).unwrap();
    let key_id = text(&key, "key_id");
    let address =
        || text(&net.cli(&["address", "--key", &key_id, "--chain", "ethereum", "--index", "0"]).unwrap(), "address");
    let before = address();

    let owner = net.client();
    let mut policy = serde_json::to_value(Policy::default_for_new_organisation()).unwrap();
    policy["refresh_every_secs"] = 10.into();
    let set: Pending = owner.post("/v1/policy", &SetPolicy { policy }, None).unwrap().into_typed().unwrap();
    assert_eq!(owner.approve(&set.request_id, set.request.as_bytes()).unwrap().status, "succeeded");

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let listed = net.cli(&["backup", "list"]).unwrap();
        let row = listed["keys"].as_array().unwrap().iter().find(|k| k["key_id"] == key_id.as_str()).unwrap().clone();
        if row["epoch"].as_u64().unwrap() >= 1 {
            assert_eq!(row["current"], false, "{row}");
            break;
        }
        assert!(Instant::now() < deadline, "no scheduled refresh within 60 s: {listed}");
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(address(), before);
    check(&sign(&net, &key_id, "7363686564756c6564"), &before);
}
