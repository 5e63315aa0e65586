//! Reliability, end to end: real coordinator and node processes (a devnet),
//! nodes killed and restarted, every process restarted, shares corrupted on
//! disk, a wrong key file, and garbage on the relay.

use std::io::Write;
use std::path::Path;
use std::process::Command;

use serde_json::Value;
use shardvault_testkit as tk;

mod common;
use common::{Devnet, EXE};

/// The signatures a node completed, read from its sealed store while the
/// node runs. (The log also holds an intent for every job the node started,
/// written before it sent anything; a failed job leaves one that reads
/// "may have contributed".)
fn sign_log(dir: &Path, id: u64) -> Vec<shardvault_node::SignLogEntry> {
    let node_dir = dir.join(format!("node-{id}"));
    let kek = std::fs::read(node_dir.join("kek.key")).unwrap();
    let store = shardvault_node::Store::open(
        &node_dir.join("node.db"),
        &format!("node-{id}"),
        shardvault_node::KekSource::KeyFile(&kek),
    )
    .unwrap();
    store.sign_log().unwrap().into_iter().filter(|e| e.completed()).collect()
}

fn text(value: &Value, field: &str) -> String {
    value[field].as_str().unwrap_or_else(|| panic!("no {field} in {value}")).to_string()
}

fn h(value: &Value, field: &str) -> Vec<u8> {
    hex::decode(text(value, field)).unwrap()
}

const MESSAGE: &str = "70617920312045544820746f20426f62"; // "pay 1 ETH to Bob"

#[test]
fn a_2_of_3_key_signs_while_a_node_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let net = Devnet::start(EXE, dir.path());
    let key = net.cli(&["key", "create", "--scheme", "ecdsa-secp256k1", "--threshold", "2", "--parties", "3"]).unwrap();
    let key_id = text(&key, "key_id");
    let address = net.cli(&["address", "--key", &key_id, "--chain", "ethereum", "--index", "0"]).unwrap();
    net.kill_node(1);
    // No wait: the coordinator may still count node 1 in and must retry without it.
    let signed =
        net.cli(&["sign", "--key", &key_id, "--chain", "ethereum", "--index", "0", "--message-hex", MESSAGE]).unwrap();
    let signers: Vec<u64> = signed["signers"].as_array().unwrap().iter().map(|s| s.as_u64().unwrap()).collect();
    assert_eq!(signers, vec![2, 3], "{signed}");
    let recovered = tk::recover_ecdsa(
        &h(&signed, "digest"),
        &h(&signed, "signature"),
        signed["recovery_id"].as_u64().unwrap() as u8,
    )
    .unwrap();
    assert_eq!(tk::eip55_address(&recovered).unwrap(), text(&address, "address"));
    assert_eq!(h(&signed, "digest"), tk::eip191_digest(&hex::decode(MESSAGE).unwrap()));
}

#[test]
fn a_3_of_3_key_fails_naming_the_missing_node_then_succeeds_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let net = Devnet::start(EXE, dir.path());
    let key = net.cli(&["key", "create", "--scheme", "eddsa-ed25519", "--threshold", "3", "--parties", "3"]).unwrap();
    let key_id = text(&key, "key_id");
    let address = net.cli(&["address", "--key", &key_id, "--chain", "solana", "--index", "0"]).unwrap();
    net.kill_node(2);
    let error = net
        .cli(&["sign", "--key", &key_id, "--chain", "solana", "--index", "0", "--message-hex", MESSAGE])
        .unwrap_err();
    assert!(error.contains("node 2"), "{error}");
    // Nothing half-done: no node completed a signature.
    for id in [1, 3] {
        assert!(sign_log(&net.dir, id).is_empty(), "node {id} logged a signature for a failed request");
    }
    let mut node = net.restart_node(2);
    net.wait_connected(3);
    let signed =
        net.cli(&["sign", "--key", &key_id, "--chain", "solana", "--index", "0", "--message-hex", MESSAGE]).unwrap();
    let key_bytes = tk::solana_key(&text(&address, "address")).unwrap();
    // Signed as a Solana off-chain message naming the key (issue 8: never the raw bytes).
    let offchain = tk::solana_offchain_message(&key_bytes, &hex::decode(MESSAGE).unwrap());
    tk::verify_ed25519(&key_bytes, &offchain, &h(&signed, "signature")).unwrap();
    assert_eq!(sign_log(&net.dir, 1).len(), 1);
    let _ = node.kill();
    let _ = node.wait();
}

#[test]
fn every_key_survives_a_restart_of_every_process() {
    let dir = tempfile::tempdir().unwrap();
    let (key_id, address) = {
        let net = Devnet::start(EXE, dir.path());
        let key =
            net.cli(&["key", "create", "--scheme", "schnorr-secp256k1", "--threshold", "2", "--parties", "3"]).unwrap();
        let key_id = text(&key, "key_id");
        let address = net.cli(&["address", "--key", &key_id, "--chain", "bitcoin", "--index", "0"]).unwrap();
        (key_id, text(&address, "address"))
    };
    let net = Devnet::start(EXE, dir.path());
    let keys = net.cli(&["key", "list"]).unwrap();
    assert!(keys["keys"].as_array().unwrap().iter().any(|k| k["key_id"] == key_id.as_str()));
    let again = net.cli(&["address", "--key", &key_id, "--chain", "bitcoin", "--index", "0"]).unwrap();
    assert_eq!(text(&again, "address"), address);
    let signed =
        net.cli(&["sign", "--key", &key_id, "--chain", "bitcoin", "--index", "0", "--message-hex", MESSAGE]).unwrap();
    let (version, program) = tk::bitcoin_witness_program(&address).unwrap();
    assert_eq!(version, 1);
    assert_eq!(h(&signed, "public_key"), program);
    tk::verify_bip340(&program, &h(&signed, "digest"), &h(&signed, "signature")).unwrap();
}

#[test]
fn a_corrupted_share_disables_only_its_key_and_a_wrong_key_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = {
        let net = Devnet::start(EXE, dir.path());
        let create = || {
            let key_id = text(
                &net.cli(&["key", "create", "--scheme", "eddsa-ed25519", "--threshold", "2", "--parties", "3"])
                    .unwrap(),
                "key_id",
            );
            // Derive the address while every node is healthy (new hardened paths need all n).
            net.cli(&["address", "--key", &key_id, "--chain", "solana", "--index", "0"]).unwrap();
            key_id
        };
        (create(), create())
    };
    // Change one byte of node 1's sealed share of key A (to a value it did not have).
    let db = rusqlite::Connection::open(dir.path().join("node-1/node.db")).unwrap();
    let changed = db
        .execute(
            "UPDATE shares SET sealed = CAST(substr(sealed, 1, 50) \
             || CASE WHEN substr(sealed, 51, 1) = x'ff' THEN x'00' ELSE x'ff' END \
             || substr(sealed, 52) AS BLOB) WHERE key_id = ?1",
            [hex::decode(&a).unwrap()],
        )
        .unwrap();
    assert_eq!(changed, 1);
    drop(db);
    // A wrong key file: the node refuses to start, saying why.
    let wrong = dir.path().join("wrong.key");
    std::fs::File::create(&wrong).unwrap().write_all(hex::encode([9u8; 32]).as_bytes()).unwrap();
    // Private, as every key file must be (a readable one is refused before it is tried).
    std::fs::set_permissions(&wrong, <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o600))
        .unwrap();
    let output = Command::new(EXE)
        .args(["node", "--id", "1", "--coordinator", "ws://127.0.0.1:9/v1/relay"])
        .arg("--dir")
        .arg(dir.path().join("node-1"))
        .arg("--cluster")
        .arg(dir.path().join("cluster.json"))
        .arg("--genesis")
        .arg(dir.path().join("genesis.json"))
        .arg("--key-file")
        .arg(&wrong)
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("passphrase or key file does not match"));

    let net = Devnet::start(EXE, dir.path());
    let sign = |key: &str, signers: &str| {
        net.cli(&[
            "sign",
            "--key",
            key,
            "--chain",
            "solana",
            "--index",
            "0",
            "--message-hex",
            MESSAGE,
            "--signers",
            signers,
        ])
    };
    let error = sign(&a, "1,2").unwrap_err();
    assert!(error.contains("node 1: key") && error.contains("stored share is unusable"), "{error}");
    // The key still signs without node 1, and key B is unaffected on node 1.
    sign(&a, "2,3").unwrap();
    sign(&b, "1,2").unwrap();
}

#[test]
fn garbage_on_the_relay_is_dropped_and_the_service_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let net = Devnet::start(EXE, dir.path());
    let address = net.api.trim_start_matches("http://").to_string();
    // Raw garbage on the port, then a WebSocket whose handshake is garbage, then an oversized one.
    let mut raw = std::net::TcpStream::connect(&address).unwrap();
    let _ = raw.write_all(&[0xde; 4096]);
    drop(raw);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        use futures_util::SinkExt;
        for payload in [vec![0x42u8; 100], vec![0u8; 9 << 20]] {
            let url = format!("ws://{address}/v1/relay");
            if let Ok((mut socket, _)) = tokio_tungstenite::connect_async(url.as_str()).await {
                let _ = socket.send(tokio_tungstenite::tungstenite::Message::Binary(payload.into())).await;
                let _ = socket.close(None).await;
            }
        }
    });
    net.wait_connected(3);
    let key = net.cli(&["key", "create", "--scheme", "eddsa-ed25519", "--threshold", "2", "--parties", "3"]).unwrap();
    let key_id = text(&key, "key_id");
    net.cli(&["sign", "--key", &key_id, "--chain", "aptos", "--index", "3", "--message-hex", MESSAGE, "--nonce", "1"])
        .unwrap();
    // Bad requests get JSON errors and change nothing.
    let error = net.cli(&["key", "create", "--scheme", "rsa", "--threshold", "2", "--parties", "3"]).unwrap_err();
    assert!(error.contains("invalid_request"), "{error}");
    assert_eq!(net.cli(&["key", "list"]).unwrap()["keys"].as_array().unwrap().len(), 1);
}

#[test]
fn creating_calls_are_idempotent_and_the_api_is_described() {
    let dir = tempfile::tempdir().unwrap();
    let net = Devnet::start(EXE, dir.path());
    let create = |key: &str| {
        net.cli(&[
            "key",
            "create",
            "--scheme",
            "eddsa-ed25519",
            "--threshold",
            "2",
            "--parties",
            "2",
            "--idempotency-key",
            key,
        ])
    };
    let first = create("same").unwrap();
    let again = create("same").unwrap();
    assert_eq!(first["key_id"], again["key_id"]);
    assert_eq!(net.cli(&["key", "list"]).unwrap()["keys"].as_array().unwrap().len(), 1);
    let conflict = net
        .cli(&[
            "key",
            "create",
            "--scheme",
            "eddsa-ed25519",
            "--threshold",
            "2",
            "--parties",
            "3",
            "--idempotency-key",
            "same",
        ])
        .unwrap_err();
    assert!(conflict.contains("idempotency_conflict"), "{conflict}");
    // Four concurrent requests with one new key (a DKLs23 DKG takes a while):
    // one runs, the others are told it is in progress or replay its answer;
    // exactly one key is made.
    let racing = || {
        net.cli(&[
            "key",
            "create",
            "--scheme",
            "ecdsa-secp256k1",
            "--threshold",
            "2",
            "--parties",
            "2",
            "--idempotency-key",
            "racing",
        ])
    };
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4).map(|_| s.spawn(racing)).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let made: std::collections::BTreeSet<String> = results.iter().flatten().map(|r| text(r, "key_id")).collect();
    assert!(made.len() <= 1, "{results:?}");
    for refused in results.iter().filter_map(|r| r.as_ref().err()) {
        assert!(refused.contains("idempotency_in_progress"), "{refused}");
    }
    let settled = racing().unwrap();
    assert!(made.is_empty() || made.contains(&text(&settled, "key_id")));
    assert_eq!(net.cli(&["key", "list"]).unwrap()["keys"].as_array().unwrap().len(), 2);
    let client = net.client();
    let request = client.request(&text(&first, "request_id")).unwrap();
    assert_eq!(request.status, "succeeded");
    let openapi = client.openapi().unwrap();
    assert_eq!(openapi["openapi"], "3.1.0");
    assert!(openapi["paths"]["/v1/keys/{key_id}/signatures"]["post"].is_object());
}

/// Sends `signal` (e.g. `-STOP`, `-CONT`) to a process.
fn signal(pid: u32, signal: &str) {
    assert!(Command::new("/bin/kill").args([signal, &pid.to_string()]).status().unwrap().success());
}

/// Resumes a stopped node when dropped, so a failing test leaves no frozen process.
struct Stopped(u32);

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = Command::new("/bin/kill").args(["-CONT", &self.0.to_string()]).status();
    }
}

#[test]
fn a_stopped_node_with_its_connection_open_does_not_fail_signing_for_the_healthy_pair() {
    let dir = tempfile::tempdir().unwrap();
    let net = Devnet::start(EXE, dir.path());
    let key = net.cli(&["key", "create", "--scheme", "ecdsa-secp256k1", "--threshold", "2", "--parties", "3"]).unwrap();
    let key_id = text(&key, "key_id");
    let address = net.cli(&["address", "--key", &key_id, "--chain", "ethereum", "--index", "0"]).unwrap();
    // A frozen VM: the process stops, its TCP connection stays open.
    let pid = net.node_pid(1);
    signal(pid, "-STOP");
    let stopped = Stopped(pid);
    // No wait: the coordinator may still count node 1 in; it must notice the
    // silence and complete with nodes 2 and 3.
    let signed =
        net.cli(&["sign", "--key", &key_id, "--chain", "ethereum", "--index", "0", "--message-hex", MESSAGE]).unwrap();
    let signers: Vec<u64> = signed["signers"].as_array().unwrap().iter().map(|s| s.as_u64().unwrap()).collect();
    assert_eq!(signers, vec![2, 3], "{signed}");
    let recovered = tk::recover_ecdsa(
        &h(&signed, "digest"),
        &h(&signed, "signature"),
        signed["recovery_id"].as_u64().unwrap() as u8,
    )
    .unwrap();
    assert_eq!(tk::eip55_address(&recovered).unwrap(), text(&address, "address"));
    // Only the stopped node is blamed (or it was never chosen).
    let attempts = signed["failed_attempts"].as_array().unwrap();
    assert!(attempts.len() <= 1, "{signed}");
    for attempt in attempts {
        let error = attempt["error"].as_str().unwrap();
        assert!(attempt["signers"].as_array().unwrap().contains(&Value::from(1)), "{attempt}");
        assert!(error.contains("node 1"), "{attempt}");
        for healthy in [2, 3] {
            for blame in ["did not answer", "disconnected", "is not connected"] {
                assert!(!error.contains(&format!("node {healthy} {blame}")), "{attempt}");
            }
            assert!(!error.contains(&format!("waiting for node {healthy}")), "{attempt}");
        }
    }
    // Resumed, node 1 notices the coordinator dropped it, reconnects and signs again.
    drop(stopped);
    net.wait_connected(3);
    let again = net
        .cli(&[
            "sign",
            "--key",
            &key_id,
            "--chain",
            "ethereum",
            "--index",
            "0",
            "--message-hex",
            MESSAGE,
            "--signers",
            "1,3",
        ])
        .unwrap();
    let recovered =
        tk::recover_ecdsa(&h(&again, "digest"), &h(&again, "signature"), again["recovery_id"].as_u64().unwrap() as u8)
            .unwrap();
    assert_eq!(tk::eip55_address(&recovered).unwrap(), text(&address, "address"));
}

/// A WebSocket proxy in front of the relay that records the first binary
/// message a node sends through it (its Noise IK handshake): what a passive
/// attacker on the plain `ws://` link sees.
fn recording_proxy(
    runtime: &tokio::runtime::Runtime,
    upstream: String,
) -> (String, std::sync::Arc<std::sync::Mutex<Option<Vec<u8>>>>) {
    use futures_util::{SinkExt, StreamExt};
    let captured = std::sync::Arc::new(std::sync::Mutex::new(None::<Vec<u8>>));
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let url = format!("ws://{}/v1/relay", listener.local_addr().unwrap());
    let record = captured.clone();
    runtime.spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (upstream, record) = (upstream.clone(), record.clone());
            tokio::spawn(async move {
                let Ok(down) = tokio_tungstenite::accept_async(tcp).await else { return };
                let Ok((up, _)) = tokio_tungstenite::connect_async(upstream.as_str()).await else { return };
                let (mut down_tx, mut down_rx) = down.split();
                let (mut up_tx, mut up_rx) = up.split();
                let node_to_relay = async {
                    while let Some(Ok(message)) = down_rx.next().await {
                        if message.is_binary() {
                            record.lock().unwrap().get_or_insert_with(|| message.clone().into_data().to_vec());
                        }
                        if up_tx.send(message).await.is_err() {
                            break;
                        }
                    }
                };
                let relay_to_node = async {
                    while let Some(Ok(message)) = up_rx.next().await {
                        if down_tx.send(message).await.is_err() {
                            break;
                        }
                    }
                };
                tokio::select! { _ = node_to_relay => {}, _ = relay_to_node => {} }
            });
        }
    });
    (url, captured)
}

#[test]
fn a_replayed_hop_handshake_does_not_take_over_a_nodes_route() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let dir = tempfile::tempdir().unwrap();
    let net = Devnet::start(EXE, dir.path());
    let key = net.cli(&["key", "create", "--scheme", "eddsa-ed25519", "--threshold", "2", "--parties", "3"]).unwrap();
    let key_id = text(&key, "key_id");
    let address = net.cli(&["address", "--key", &key_id, "--chain", "solana", "--index", "0"]).unwrap();
    // Node 1 now reaches the relay through a recording proxy.
    let relay = net.relay();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (proxy, captured) = recording_proxy(&runtime, relay.clone());
    net.kill_node(1);
    let _node = KilledOnDrop(net.node_command(1, &proxy).spawn().unwrap());
    let sign = || {
        net.cli(&[
            "sign",
            "--key",
            &key_id,
            "--chain",
            "solana",
            "--index",
            "0",
            "--message-hex",
            MESSAGE,
            "--signers",
            "1,2",
        ])
    };
    let solana_key = tk::solana_key(&text(&address, "address")).unwrap();
    let verify = |signed: &Value| {
        let signed_bytes = tk::solana_offchain_message(&solana_key, &hex::decode(MESSAGE).unwrap());
        tk::verify_ed25519(&solana_key, &signed_bytes, &h(signed, "signature")).unwrap();
    };
    // Wait for node 1's connection through the proxy (the recorded handshake).
    while captured.lock().unwrap().is_none() {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    net.wait_connected(3);
    verify(&sign().unwrap());
    let hello = captured.lock().unwrap().clone().unwrap();
    // The attacker replays the recorded handshake on a new WebSocket, gets the
    // coordinator's reply, and keeps the socket open without a word.
    let mut replayed = runtime.block_on(async {
        let (mut socket, _) = tokio_tungstenite::connect_async(relay.as_str()).await.unwrap();
        socket.send(Message::Binary(hello.into())).await.unwrap();
        let reply = socket.next().await;
        assert!(matches!(reply, Some(Ok(Message::Binary(_)))), "the coordinator answers the handshake: {reply:?}");
        socket
    });
    // The live connection survives: jobs still reach the real node 1.
    verify(&sign().unwrap());
    // The attacker hangs up (which, when it had taken the route, made node 1 look gone).
    runtime.block_on(async {
        let _ = replayed.close(None).await;
    });
    net.wait_connected(3);
    verify(&sign().unwrap());
}

struct KilledOnDrop(std::process::Child);

impl Drop for KilledOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
