//! Secrets at rest, end to end with real processes: every secret file is
//! private and looser modes are refused (as ssh does), the node's identity key
//! is sealed in its store (a plaintext one is imported once), and the KEK
//! rotation command leaves a node that signs under the new KEK only.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{Devnet, EXE};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o777
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn node_command(dir: &Path, id: u64, node_dir: &Path, key_file: &Path) -> Command {
    let mut command = Command::new(EXE);
    command
        .args(["node", "--id", &id.to_string(), "--coordinator", "ws://127.0.0.1:9/v1/relay"])
        .arg("--dir")
        .arg(node_dir)
        .arg("--cluster")
        .arg(dir.join("cluster.json"))
        .arg("--genesis")
        .arg(dir.join("genesis.json"))
        .arg("--key-file")
        .arg(key_file)
        .env_remove("SHARDVAULT_PASSPHRASE");
    command
}

/// Runs node 1 of the devnet in `dir` (with an unreachable coordinator) and
/// expects it to refuse to start.
fn node_refuses(dir: &Path) -> String {
    let node_dir = dir.join("node-1");
    let output: Output = node_command(dir, 1, &node_dir, &node_dir.join("kek.key")).output().unwrap();
    assert!(!output.status.success(), "the node started");
    String::from_utf8_lossy(&output.stderr).to_string()
}

fn sign(net: &Devnet, key: &str, signers: &str) -> Result<serde_json::Value, String> {
    net.cli(&[
        "sign",
        "--key",
        key,
        "--chain",
        "solana",
        "--index",
        "0",
        "--message-hex",
        "70617920312045544820746f20426f62",
        "--signers",
        signers,
    ])
}

#[test]
fn devnet_secrets_are_private_and_looser_modes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let net = Devnet::start(EXE, dir.path());
    let d = dir.path();
    for private_dir in ["coordinator", "node-1", "node-2", "node-3"] {
        assert_eq!(mode(&d.join(private_dir)), 0o700, "{private_dir}");
    }
    let mut secret_files: Vec<PathBuf> = vec![d.join("coordinator/noise.key"), d.join("coordinator/coordinator.db")];
    for id in 1..=3 {
        let node = d.join(format!("node-{id}"));
        assert!(!node.join("noise.key").exists(), "node {id}'s identity key is a plaintext file");
        secret_files.extend(["kek.key", "node.db", "node.db-wal", "node.db-shm"].map(|f| node.join(f)));
    }
    for path in &secret_files {
        assert_eq!(mode(path), 0o600, "{}", path.display());
    }
    drop(net);

    // A node refuses each file or directory that group or others can read, naming the fix.
    let node = d.join("node-1");
    for (path, loose, fix) in [
        (node.join("kek.key"), 0o644, "chmod 600"),
        (node.join("node.db"), 0o644, "chmod 600"),
        (node.clone(), 0o755, "chmod 700"),
    ] {
        chmod(&path, loose);
        let error = node_refuses(d);
        assert!(error.contains(&format!("{fix} {}", path.display())), "{}: {error}", path.display());
        chmod(&path, if fix == "chmod 700" { 0o700 } else { 0o600 });
    }
    // So does the coordinator for its key.
    let key = d.join("coordinator/noise.key");
    chmod(&key, 0o640);
    let output = Command::new(EXE)
        .args(["coordinator", "--listen", "127.0.0.1:0", "--dir"])
        .arg(d.join("coordinator"))
        .arg("--cluster")
        .arg(d.join("cluster.json"))
        .arg("--genesis")
        .arg(d.join("genesis.json"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(error.contains(&format!("chmod 600 {}", key.display())), "{error}");
    chmod(&key, 0o600);
    // Everything private again: the devnet comes back.
    let net = Devnet::start(EXE, d);
    net.wait_connected(3);
}

#[test]
fn a_plaintext_identity_key_is_sealed_on_first_start_and_then_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(Devnet::start(EXE, dir.path()));
    // A node directory as releases before this one laid it out: a plaintext
    // noise.key and a store without the identity.
    let old = dir.path().join("old-node");
    std::fs::create_dir(&old).unwrap();
    chmod(&old, 0o700);
    let kek = old.join("kek.key");
    std::fs::write(&kek, hex::encode([4u8; 32])).unwrap();
    chmod(&kek, 0o600);
    let identity = [0x42u8; 32];
    let plaintext = old.join("noise.key");
    std::fs::write(&plaintext, hex::encode(identity)).unwrap();
    chmod(&plaintext, 0o644);
    let output = node_command(dir.path(), 1, &old, &kek).output().unwrap();
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success() && error.contains(&format!("chmod 600 {}", plaintext.display())), "{error}");
    chmod(&plaintext, 0o600);
    let mut node = node_command(dir.path(), 1, &old, &kek).stderr(Stdio::null()).spawn().unwrap();
    let start = Instant::now();
    while plaintext.exists() {
        assert!(start.elapsed() < Duration::from_secs(20), "the plaintext identity key was not imported");
        std::thread::sleep(Duration::from_millis(50));
    }
    node.kill().unwrap();
    node.wait().unwrap();
    let store = shardvault_node::Store::open(
        &old.join("node.db"),
        "node-1",
        shardvault_node::KekSource::KeyFile(hex::encode([4u8; 32]).as_bytes()),
    )
    .unwrap();
    assert_eq!(store.identity().unwrap().unwrap().expose_secret(), &identity);
    drop(store);
    let on_disk = std::fs::read(old.join("node.db")).unwrap();
    assert!(!on_disk.windows(32).any(|w| w == identity), "the identity key is in node.db in plaintext");
    // A plaintext copy appearing again is refused, not silently preferred.
    std::fs::write(&plaintext, hex::encode([0x43u8; 32])).unwrap();
    chmod(&plaintext, 0o600);
    let output = node_command(dir.path(), 1, &old, &kek).output().unwrap();
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success() && error.contains("plaintext copy"), "{error}");
}

#[test]
fn after_rotate_kek_the_node_signs_with_the_new_key_file_and_refuses_the_old() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let net = Devnet::start(EXE, d);
    let key = net.cli(&["key", "create", "--scheme", "eddsa-ed25519", "--threshold", "2", "--parties", "3"]).unwrap()
        ["key_id"]
        .as_str()
        .unwrap()
        .to_string();
    net.cli(&["address", "--key", &key, "--chain", "solana", "--index", "0"]).unwrap();
    drop(net);
    let node = d.join("node-1");
    let old = d.join("old-kek.key");
    std::fs::copy(node.join("kek.key"), &old).unwrap();
    let new = d.join("new-kek.key");
    std::fs::write(&new, hex::encode([0x77u8; 32])).unwrap();
    chmod(&new, 0o600);
    let output = Command::new(EXE)
        .args(["rotate-kek", "--id", "1", "--dir"])
        .arg(&node)
        .arg("--key-file")
        .arg(node.join("kek.key"))
        .arg("--new-key-file")
        .arg(&new)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    // The old key file no longer opens the store.
    let output = node_command(d, 1, &node, &old).output().unwrap();
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success() && error.contains("passphrase or key file does not match"), "{error}");
    // With the new one in place, node 1 signs (its share and identity key were re-sealed).
    std::fs::copy(&new, node.join("kek.key")).unwrap();
    let net = Devnet::start(EXE, d);
    let signed = sign(&net, &key, "1,2").unwrap();
    assert_eq!(signed["signers"], serde_json::json!([1, 2]), "{signed}");
}
