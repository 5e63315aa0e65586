//! TLS end to end: a devnet whose coordinator serves only HTTPS and wss://
//! (certificate from a devnet CA), nodes that reach it over wss:// pinning
//! that CA, and the CLI signing through it; and what is refused.

use std::process::Command;

use serde_json::Value;
use shardvault_testkit as tk;

mod common;
use common::{Devnet, DevnetOptions, EXE};

fn text(value: &Value, field: &str) -> String {
    value[field].as_str().unwrap_or_else(|| panic!("no {field} in {value}")).to_string()
}

const MESSAGE: &str = "70617920312045544820746f20426f62"; // "pay 1 ETH to Bob"

#[test]
fn a_tls_devnet_signs_through_https_and_wss() {
    let dir = tempfile::tempdir().unwrap();
    let net = Devnet::start_with(EXE, dir.path(), DevnetOptions { tls: true, ..DevnetOptions::default() });
    assert!(net.api.starts_with("https://127.0.0.1:"), "{}", net.api);
    let ca = net.ca.as_ref().unwrap().to_str().unwrap();
    let pinned = ["--api", net.api.as_str(), "--tls-ca", ca];
    // The devnet is up only once all three nodes are connected: over wss://,
    // since the coordinator speaks nothing else.
    let key =
        net.cli_with(&["key", "create", "--scheme", "ecdsa-secp256k1", "--threshold", "2", "--parties", "3"], &pinned);
    let key = text(&key.unwrap(), "key_id");
    let at = ["--key", key.as_str(), "--chain", "ethereum", "--index", "0"];
    let address = net.cli_with(&[&["address"][..], &at].concat(), &pinned).unwrap();
    let signed = net.cli_with(&[&["sign"][..], &at, &["--message-hex", MESSAGE]].concat(), &pinned).unwrap();
    // Checked with another library: the signature is by the address's key.
    let public_key = hex::decode(text(&signed, "public_key")).unwrap();
    assert_eq!(tk::eip55_address(&public_key).unwrap(), text(&address, "address"));
    let digest = tk::eip191_digest(&hex::decode(MESSAGE).unwrap());
    let signature = hex::decode(text(&signed, "signature")).unwrap();
    let recovery_id = signed["recovery_id"].as_u64().unwrap() as u8;
    tk::verify_ecdsa(&public_key, &digest, &signature, recovery_id).unwrap();

    // Without the pinned CA the CLI refuses to talk to it.
    let refused = net.cli_with(&["key", "list"], &["--api", &net.api]).unwrap_err();
    assert!(refused.contains("--tls-ca"), "{refused}");
    // A certificate from another CA is refused.
    let other = dir.path().join("other-ca.pem");
    let other_ca = rcgen::CertificateParams::new(Vec::new()).unwrap();
    std::fs::write(&other, other_ca.self_signed(&rcgen::KeyPair::generate().unwrap()).unwrap().pem()).unwrap();
    let refused =
        net.cli_with(&["key", "list"], &["--api", &net.api, "--tls-ca", other.to_str().unwrap()]).unwrap_err();
    assert!(refused.to_lowercase().contains("certificate"), "{refused}");
    // Plain HTTP to the TLS port gets no answer.
    let plain = net.api.replacen("https://", "http://", 1);
    assert!(net.cli_with(&["key", "list"], &["--api", &plain]).is_err());
    // With the CA, it answers.
    let keys = net.cli_with(&["key", "list"], &pinned).unwrap();
    assert_eq!(keys["keys"].as_array().unwrap().len(), 1);
}

#[test]
fn plain_http_off_loopback_and_wss_without_a_pinned_ca_are_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let (secret, coordinator) = shardvault_wire::generate_keypair().unwrap();
    let key_file = dir.path().join("noise.key");
    std::fs::write(&key_file, hex::encode(secret.expose_secret())).unwrap();
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let cluster = shardvault_wire::Cluster { coordinator, nodes: Default::default(), identities: Default::default() };
    let cluster_file = dir.path().join("cluster.json");
    std::fs::write(&cluster_file, serde_json::to_string(&cluster).unwrap()).unwrap();
    let owner = shardvault_governance::Identity::generate("owner").unwrap().member_key().unwrap();
    let owner = shardvault_governance::Owner { name: "owner".parse().unwrap(), public_key: owner };
    let genesis = shardvault_governance::Genesis::new("tls", vec![owner], 1_767_225_600).unwrap();
    let genesis_file = dir.path().join("genesis.json");
    std::fs::write(&genesis_file, genesis.to_bytes().unwrap()).unwrap();
    let coordinator = |extra: &[&str]| {
        Command::new(EXE)
            .args(["coordinator", "--listen", "0.0.0.0:0"])
            .args(extra)
            .arg("--dir")
            .arg(dir.path())
            .arg("--cluster")
            .arg(&cluster_file)
            .arg("--genesis")
            .arg(&genesis_file)
            .output()
            .unwrap()
    };
    let output = coordinator(&[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success() && stderr.contains("refusing to serve plain HTTP"), "{stderr}");
    assert!(!dir.path().join("api.url").exists());
    // A node asked for wss:// without a CA to pin refuses before connecting.
    let output = Command::new(EXE)
        .args(["node", "--id", "1", "--coordinator", "wss://127.0.0.1:9/v1/relay", "--dir"])
        .arg(dir.path())
        .arg("--cluster")
        .arg(&cluster_file)
        .arg("--genesis")
        .arg(&genesis_file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success() && stderr.contains("--tls-ca"), "{stderr}");
}
