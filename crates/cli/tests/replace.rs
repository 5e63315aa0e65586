//! Replacing a lost node with real processes (docs/DESIGN.md "Replacing a
//! lost node"): node 2 of a devnet dies with its disk; a new machine with
//! new keys is started as node 2; `shardvault node-replace` (approved by the
//! organisation's only member) rebuilds its shares; the keys and addresses
//! are unchanged, and it signs with either other node (checked by
//! libsecp256k1 and by ring's Ed25519). The old machine, brought back, is
//! not let in.

use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use shardvault_testkit as tk;

mod common;
use common::{Devnet, EXE};

fn text(value: &Value, field: &str) -> String {
    value[field].as_str().unwrap_or_else(|| panic!("no {field} in {value}")).to_string()
}

fn write_private(path: &Path, bytes: &[u8]) {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new().create_new(true).write(true).mode(0o600).open(path).unwrap();
    file.write_all(bytes).unwrap();
}

/// A new machine for node 2: its own directory, Noise key and KEK, and its
/// own cluster file (the devnet's, naming its new keys for node 2). Returns
/// its keys as `node-identity` prints them.
fn new_machine(net: &Devnet, dir: &Path) -> (Value, std::path::PathBuf) {
    std::fs::DirBuilder::new().mode(0o700).create(dir).unwrap();
    let (secret, _) = shardvault_wire::generate_keypair().unwrap();
    write_private(&dir.join("noise.key"), hex::encode(secret.expose_secret()).as_bytes());
    let (kek, _) = shardvault_wire::generate_keypair().unwrap();
    write_private(&dir.join("kek.key"), hex::encode(kek.expose_secret()).as_bytes());
    let identity = Command::new(EXE).args(["--json", "node-identity", "--dir"]).arg(dir).output().unwrap();
    assert!(identity.status.success(), "{}", String::from_utf8_lossy(&identity.stderr));
    let keys: Value = serde_json::from_slice(&identity.stdout).unwrap();
    let mut cluster: Value = serde_json::from_slice(&std::fs::read(net.cluster_file()).unwrap()).unwrap();
    cluster["nodes"]["2"] = keys["noise_key"].clone();
    cluster["identities"]["2"] = keys["identity_key"].clone();
    let cluster_file = dir.join("cluster.json");
    std::fs::write(&cluster_file, serde_json::to_vec_pretty(&cluster).unwrap()).unwrap();
    (keys, cluster_file)
}

fn start_node(net: &Devnet, dir: &Path, cluster: &Path) -> Child {
    Command::new(EXE)
        .args(["node", "--id", "2", "--coordinator", &net.relay(), "--dir"])
        .arg(dir)
        .arg("--cluster")
        .arg(cluster)
        .arg("--genesis")
        .arg(net.genesis_file())
        .arg("--key-file")
        .arg(dir.join("kek.key"))
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn sign(net: &Devnet, key_id: &str, chain: &str, signers: &str, message: &str) -> Value {
    net.cli(&[
        "sign",
        "--key",
        key_id,
        "--chain",
        chain,
        "--index",
        "0",
        "--message-hex",
        message,
        "--signers",
        signers,
    ])
    .unwrap_or_else(|e| panic!("signing with {signers}: {e}"))
}

fn check_ethereum(signed: &Value, address: &str) {
    let h = |field: &str| hex::decode(text(signed, field)).unwrap();
    let recovered = tk::recover_ecdsa(&h("digest"), &h("signature"), signed["recovery_id"].as_u64().unwrap() as u8);
    assert_eq!(tk::eip55_address(&recovered.unwrap()).unwrap(), address, "{signed}");
}

fn check_solana(signed: &Value, address: &str, message: &[u8]) {
    let key = tk::solana_key(address).unwrap();
    let signature = hex::decode(text(signed, "signature")).unwrap();
    let offchain = tk::solana_offchain_message(&key, message);
    let verified =
        tk::verify_ed25519(&key, &offchain, &signature).or_else(|_| tk::verify_ed25519(&key, message, &signature));
    verified.unwrap_or_else(|e| panic!("{e}: {signed}"));
}

fn create(net: &Devnet, scheme: &str, chain: &str) -> (String, String) {
    let key = net.cli(&["key", "create", "--scheme", scheme, "--threshold", "2", "--parties", "3"]).unwrap();
    let key_id = text(&key, "key_id");
    let address = text(&net.cli(&["address", "--key", &key_id, "--chain", chain, "--index", "0"]).unwrap(), "address");
    (key_id, address)
}

#[test]
fn a_lost_node_is_replaced_and_the_old_addresses_still_sign() {
    let dir = tempfile::tempdir().unwrap();
    let net = Devnet::start(EXE, dir.path());
    let (eth_key, eth_address) = create(&net, "ecdsa-secp256k1", "ethereum");
    let (sol_key, sol_address) = create(&net, "eddsa-ed25519", "solana");

    // Node 2's machine is gone, disk and all.
    net.kill_node(2);
    net.wait_connected(2);
    let machine = dir.path().join("new-node-2");
    let (keys, cluster) = new_machine(&net, &machine);
    let mut node2 = start_node(&net, &machine, &cluster);
    // Not let in before the replacement is approved.
    std::thread::sleep(Duration::from_secs(1));
    net.wait_connected(2);

    let replaced = net
        .cli(&[
            "node-replace",
            "--node",
            "2",
            "--noise-key",
            &text(&keys, "noise_key"),
            "--identity-key",
            &text(&keys, "identity_key"),
            "--wait",
        ])
        .unwrap();
    let repaired = replaced["keys"].as_array().unwrap_or_else(|| panic!("{replaced}"));
    assert_eq!(repaired.len(), 2, "{replaced}");
    for key in repaired {
        assert_eq!(
            (key["party"].as_u64(), key["epoch_before"].as_u64(), key["epoch_after"].as_u64()),
            (Some(2), Some(0), Some(1)),
            "{key}"
        );
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

    // The old machine comes back with its old disk: refused at the hop, the
    // new node stays connected and keeps signing.
    let mut old = net.restart_node(2);
    std::thread::sleep(Duration::from_secs(2));
    check_ethereum(&sign(&net, &eth_key, "ethereum", "1,2", "6f6c64"), &eth_address);

    for child in [&mut node2, &mut old] {
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let _ = child.wait();
    }
}
