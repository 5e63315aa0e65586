//! `shardvault identity new` writes a key OpenSSH itself reads: `ssh-keygen
//! -y` recovers the public key the command printed, with or without the
//! passphrase; the file is private and never overwritten. `node-identity
//! --new` makes a new node's directory and Noise key the same way.

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output};

fn shardvault(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shardvault")).args(args).output().expect("run shardvault")
}

fn ssh_keygen_public(path: &std::path::Path, passphrase: &str) -> Output {
    Command::new("ssh-keygen")
        .args(["-y", "-P", passphrase, "-f", path.to_str().unwrap()])
        .output()
        .expect("ssh-keygen (Debian package openssh-client; .ci/run installs it) must be on PATH")
}

fn key_bytes(line: &str) -> String {
    line.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
}

#[test]
fn a_new_identity_is_an_openssh_key_that_ssh_keygen_reads() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("alice");
    let made = shardvault(&["--json", "identity", "new", "--out", out.to_str().unwrap(), "--comment", "alice@example"]);
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let answer: serde_json::Value = serde_json::from_slice(&made.stdout).unwrap();
    let public_key = answer["public_key"].as_str().unwrap();
    assert!(public_key.starts_with("ssh-ed25519 ") && public_key.ends_with(" alice@example"), "{answer}");
    assert!(answer["fingerprint"].as_str().unwrap().starts_with("SHA256:"), "{answer}");
    assert_eq!(std::fs::metadata(&out).unwrap().permissions().mode() & 0o777, 0o600);

    let theirs = ssh_keygen_public(&out, "");
    assert!(theirs.status.success(), "{}", String::from_utf8_lossy(&theirs.stderr));
    assert_eq!(key_bytes(&String::from_utf8(theirs.stdout).unwrap()), key_bytes(public_key));

    // Never overwritten: the same --out again is refused and the key stays.
    let before = std::fs::read(&out).unwrap();
    let again = shardvault(&["identity", "new", "--out", out.to_str().unwrap()]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("never overwritten"));
    assert_eq!(std::fs::read(&out).unwrap(), before);
}

#[test]
fn a_passphrase_file_protects_the_new_key() {
    let dir = tempfile::tempdir().unwrap();
    let (out, passphrase) = (dir.path().join("bob"), dir.path().join("passphrase"));
    std::fs::write(&passphrase, "correct horse battery staple\n").unwrap();
    let made = shardvault(&[
        "identity",
        "new",
        "--out",
        out.to_str().unwrap(),
        "--passphrase-file",
        passphrase.to_str().unwrap(),
    ]);
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let printed = String::from_utf8(made.stdout).unwrap();
    let public_key = printed.lines().find_map(|l| l.strip_prefix("public_key: ")).unwrap();

    assert!(!ssh_keygen_public(&out, "wrong").status.success());
    let theirs = ssh_keygen_public(&out, "correct horse battery staple");
    assert!(theirs.status.success(), "{}", String::from_utf8_lossy(&theirs.stderr));
    assert_eq!(key_bytes(&String::from_utf8(theirs.stdout).unwrap()), key_bytes(public_key));
}

/// `node-identity --new` makes a new node's directory (0700) and Noise key
/// (0600) and prints its keys; the identity key is the one derived from
/// that Noise key; it never writes over a directory that holds anything.
#[test]
fn a_new_node_directory_has_a_private_noise_key_and_is_never_made_twice() {
    let dir = tempfile::tempdir().unwrap();
    let node = dir.path().join("node-2");
    let made = shardvault(&["--json", "node-identity", "--new", "--dir", node.to_str().unwrap()]);
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let keys: serde_json::Value = serde_json::from_slice(&made.stdout).unwrap();
    let mode = |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!((mode(&node), mode(&node.join("noise.key"))), (0o700, 0o600));
    let text = std::fs::read_to_string(node.join("noise.key")).unwrap();
    let mut secret = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut secret).unwrap();
    let secret = shardvault_wire::NoiseSecretKey::from_bytes(secret);
    let noise = String::from(shardvault_wire::NoisePublicKey::from_secret(&secret).unwrap());
    let identity = String::from(shardvault_wire::NodeIdentity::derive(&secret).public());
    assert_eq!(keys, serde_json::json!({ "noise_key": noise, "identity_key": identity }));
    // Read back without --new: the same keys. Asked again: refused, key unchanged.
    let again = shardvault(&["--json", "node-identity", "--dir", node.to_str().unwrap()]);
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&again.stdout).unwrap(), keys);
    let twice = shardvault(&["node-identity", "--new", "--dir", node.to_str().unwrap()]);
    assert!(!twice.status.success());
    assert!(
        String::from_utf8_lossy(&twice.stderr).contains("is not empty"),
        "{}",
        String::from_utf8_lossy(&twice.stderr)
    );
    assert_eq!(std::fs::read_to_string(node.join("noise.key")).unwrap(), text);
}
