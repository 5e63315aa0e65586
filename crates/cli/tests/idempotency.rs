//! Idempotency-Key, end to end on a devnet: a key is bound to the request's
//! real path (key id included), and a full disk never makes a retried
//! request sign twice (failures injected with SQLite triggers on the
//! coordinator's database, from outside the running coordinator).

use std::path::Path;

use serde_json::{json, Value};

mod common;
use common::{Devnet, EXE};

const MESSAGE: &str = "70617920312045544820746f20426f62"; // "pay 1 ETH to Bob"

/// Sign-log entries on all three nodes, read from their stores while they run.
fn signatures_logged(dir: &Path) -> usize {
    (1..=3)
        .map(|id| {
            let node_dir = dir.join(format!("node-{id}"));
            let kek = std::fs::read(node_dir.join("kek.key")).unwrap();
            let store = shardvault_node::Store::open(
                &node_dir.join("node.db"),
                &format!("node-{id}"),
                shardvault_node::KekSource::KeyFile(&kek),
            )
            .unwrap();
            store.sign_log().unwrap().len()
        })
        .sum()
}

/// POSTs `body` with Idempotency-Key `key` as the devnet's owner, who
/// approves the request the call makes: (status, the call's answer).
fn post(net: &Devnet, path: &str, key: &str, body: &Value) -> (u16, Value) {
    let client = net.client();
    let answer = client.post(path, body, Some(key)).unwrap();
    // What the call asks, for the client's check of the request it approves.
    let key_id = path.split('/').nth(3).unwrap();
    let (sign, address): (Option<shardvault_api::SignRequest>, Option<shardvault_api::AddressRequest>) =
        match path.ends_with("/signatures") {
            true => (Some(serde_json::from_value(body.clone()).unwrap()), None),
            false => (None, Some(serde_json::from_value(body.clone()).unwrap())),
        };
    let asked = match (&sign, &address) {
        (Some(request), _) => shardvault_client::Expected::Sign { key_id, request },
        (_, Some(request)) => shardvault_client::Expected::Address { key_id, request },
        _ => unreachable!(),
    };
    match client.resolve(answer.clone(), asked) {
        Ok(done) => (done.status, done.body),
        Err(shardvault_client::Error::Api { status, .. }) if answer.status != 202 => (status, answer.body),
        Err(shardvault_client::Error::Api { status, code, message, .. }) => {
            (status, json!({ "code": code, "message": message }))
        }
        Err(error) => panic!("{error}"),
    }
}

fn coordinator_db(net: &Devnet) -> rusqlite::Connection {
    rusqlite::Connection::open(net.dir.join("coordinator/coordinator.db")).unwrap()
}

fn new_key(net: &Devnet, scheme: &str) -> String {
    let key = net.cli(&["key", "create", "--scheme", scheme, "--threshold", "2", "--parties", "3"]).unwrap();
    key["key_id"].as_str().unwrap().to_string()
}

#[test]
fn a_full_disk_never_makes_a_retried_sign_sign_twice() {
    let dir = tempfile::tempdir().unwrap();
    let net = Devnet::start(EXE, dir.path());
    let key = new_key(&net, "ecdsa-secp256k1");
    let path = format!("/v1/keys/{key}/signatures");
    let body = json!({ "chain": "ethereum", "index": 0, "message_hex": MESSAGE });
    let db = coordinator_db(&net);

    // The disk is full before the request starts: its claim cannot be
    // written, so it is refused and nothing is signed.
    db.execute_batch(
        "CREATE TRIGGER full BEFORE INSERT ON idempotency BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END;",
    )
    .unwrap();
    let (status, answer) = post(&net, &path, "first", &body);
    assert_eq!((status, answer["code"].as_str()), (503, Some("storage")), "{answer}");
    assert_eq!(signatures_logged(&net.dir), 0, "a request whose claim was not stored signed");
    db.execute_batch("DROP TRIGGER full;").unwrap();

    // The disk fills up while it signs: the outcome cannot be recorded.
    let client = net.client();
    let pending: shardvault_api::Pending = client.post(&path, &body, Some("second")).unwrap().into_typed().unwrap();
    db.execute_batch(
        "CREATE TRIGGER full BEFORE INSERT ON audit WHEN NEW.event IN ('executed', 'failed')
             BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END;",
    )
    .unwrap();
    let error = client.approve(&pending.request_id, pending.request.as_bytes()).unwrap_err();
    assert_eq!(error.code(), Some(shardvault_api::ErrorCode::Storage), "{error}");
    let once = signatures_logged(&net.dir);
    assert_eq!(once, 2, "one 2-of-3 signature: two nodes log it");
    db.execute_batch("DROP TRIGGER full;").unwrap();

    // The client lost that answer and approves again: it is told the
    // request is no longer pending, and nothing is signed again.
    let retry = client.approve(&pending.request_id, pending.request.as_bytes()).unwrap_err();
    assert_eq!(retry.code(), Some(shardvault_api::ErrorCode::RequestClosed), "{retry}");
    assert_eq!(signatures_logged(&net.dir), once, "the retry signed a second time");
    let record = client.request(&pending.request_id).unwrap();
    assert_eq!(record.status, "running", "{record:?}");
}

#[test]
fn an_idempotency_key_sent_to_another_key_is_a_conflict_not_a_replay() {
    let dir = tempfile::tempdir().unwrap();
    let net = Devnet::start(EXE, dir.path());
    let (a, b) = (new_key(&net, "eddsa-ed25519"), new_key(&net, "eddsa-ed25519"));
    let body = json!({ "chain": "solana", "index": 0 });
    let (status, first) = post(&net, &format!("/v1/keys/{a}/addresses"), "same", &body);
    assert_eq!((status, first["key_id"].as_str()), (200, Some(a.as_str())), "{first}");
    let (status, other) = post(&net, &format!("/v1/keys/{b}/addresses"), "same", &body);
    assert_eq!((status, other["code"].as_str()), (409, Some("idempotency_conflict")), "{other}");
    assert_ne!(other["address"], first["address"], "key {a}'s address was replayed for key {b}");
    // The first key's repeat still replays its own answer.
    let (status, again) = post(&net, &format!("/v1/keys/{a}/addresses"), "same", &body);
    assert_eq!((status, &again), (200, &first));
}
