//! The governance commands against a devnet: the owner adds a treasurer and
//! sets a policy under which only the treasurer's approval creates keys;
//! the owner's key creation stays pending; the treasurer approves it with
//! nothing but OpenSSH (`request payload` → `ssh-keygen -Y sign` → `request
//! approve --sshsig`); the history, the decoded request and the audit log
//! check out.

use std::process::Command;

use serde_json::Value;
use sha2::{Digest, Sha256};
use shardvault_harness::Devnet;

const EXE: &str = env!("CARGO_BIN_EXE_shardvault");

#[test]
fn a_request_is_approved_with_ssh_keygen_and_the_audit_log_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let devnet = Devnet::start(EXE, dir.path());

    // The treasurer's own key, made by the CLI (an OpenSSH key ssh-keygen uses).
    let treasurer = dir.path().join("treasurer");
    let made = Command::new(EXE).args(["--json", "identity", "new", "--out"]).arg(&treasurer).output().unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let made: Value = serde_json::from_slice(&made.stdout).unwrap();
    let public_key = made["public_key"].as_str().unwrap().to_string();

    let added =
        devnet.cli(&["member", "add", "--name", "treasurer", "--role", "admin", "--public-key", &public_key]).unwrap();
    let names = |list: &Value| -> Vec<String> {
        list["members"].as_array().unwrap().iter().map(|m| m["name"].as_str().unwrap().to_string()).collect()
    };
    assert!(names(&added).contains(&"treasurer".to_string()), "{added}");
    let listed = devnet.cli(&["member", "list"]).unwrap();
    assert_eq!(listed["organisation"]["pinned"], true, "{listed}");
    assert!(names(&listed).contains(&"treasurer".to_string()), "{listed}");

    // Key creation needs the treasurer; everything else one owner or admin.
    let policy = serde_json::json!({
        "version": 1,
        "rules": [
            { "name": "raw signing denied", "when": { "signing": ["raw"] }, "action": "deny" },
            { "name": "keys by the treasurer", "when": { "operations": ["create_key", "sign"] },
              "action": { "require": [{ "count": 1, "members": ["treasurer"] }] } },
            { "name": "everything else", "when": {},
              "action": { "require": [{ "count": 1, "roles": ["owner", "admin"] }] } }
        ]
    });
    let policy_file = dir.path().join("policy.json");
    std::fs::write(&policy_file, policy.to_string()).unwrap();
    devnet.cli(&["policy", "set", policy_file.to_str().unwrap()]).unwrap();
    let shown = devnet.cli(&["policy", "show"]).unwrap();
    assert_eq!(shown["policy"]["rules"][1]["name"], "keys by the treasurer", "{shown}");

    // The owner's key creation waits for the treasurer: printed, exit 0.
    let pending =
        devnet.cli(&["key", "create", "--scheme", "eddsa-ed25519", "--threshold", "2", "--parties", "3"]).unwrap();
    assert_eq!(pending["status"], "pending", "{pending}");
    let id = pending["request_id"].as_str().unwrap().to_string();

    // Decoded here: the rule, the owner's approval verified but not enough.
    let show = devnet.cli(&["request", "show", &id]).unwrap();
    assert_eq!(show["operation"]["kind"], "create_key", "{show}");
    assert_eq!(show["operation"]["scheme"], "eddsa-ed25519", "{show}");
    assert_eq!(show["policy"]["rule"], "keys by the treasurer", "{show}");
    assert_eq!(show["policy"]["satisfied"], false, "{show}");
    assert_eq!(show["approvals"][0]["verified"], true, "{show}");
    assert!(show["approvals"][0]["signature"].as_str().unwrap().starts_with("-----BEGIN SSH SIGNATURE-----"));
    assert_eq!(show["organisation"]["pinned"], true, "{show}");

    // Without a terminal and without --yes, nothing is signed.
    let refused = devnet.cli(&["request", "approve", &id]).unwrap_err();
    assert!(refused.contains("--yes"), "{refused}");

    // The bytes an approval signs, exactly: what show decoded, hashing to request_hash.
    let payload = Command::new(EXE)
        .env("SHARDVAULT_IDENTITY", devnet.owner_identity())
        .args(["request", "payload", &id, "--api", &devnet.api])
        .output()
        .unwrap();
    assert!(payload.status.success(), "{}", String::from_utf8_lossy(&payload.stderr));
    assert_eq!(payload.stdout, show["request"].as_str().unwrap().as_bytes());
    assert_eq!(hex::encode(Sha256::digest(&payload.stdout)), show["request_hash"].as_str().unwrap());
    let request_file = dir.path().join("req.json");
    std::fs::write(&request_file, &payload.stdout).unwrap();
    let signed = Command::new("ssh-keygen")
        .args(["-Y", "sign", "-n", "shardvault-request", "-f"])
        .arg(&treasurer)
        .arg(&request_file)
        .output()
        .expect("ssh-keygen (Debian package openssh-client) must be on PATH");
    assert!(signed.status.success(), "{}", String::from_utf8_lossy(&signed.stderr));
    let signature = dir.path().join("req.json.sig");

    // A signature over other bytes is refused here, before it is sent.
    let wrong = dir.path().join("wrong.sig");
    std::fs::write(&wrong, treasurer_sign(&treasurer, dir.path(), b"other bytes")).unwrap();
    let refused = devnet.cli(&["request", "approve", &id, "--yes", "--sshsig", wrong.to_str().unwrap()]).unwrap_err();
    assert!(refused.contains("does not approve"), "{refused}");

    // Submitted by the owner's session; the treasurer's key made it. The key is created.
    let key = devnet.cli(&["request", "approve", &id, "--yes", "--sshsig", signature.to_str().unwrap()]).unwrap();
    assert!(key["key_id"].is_string(), "{key}");

    let history = devnet.cli(&["request", "list"]).unwrap();
    let row = history["requests"].as_array().unwrap().iter().find(|r| r["id"] == id.as_str()).unwrap().clone();
    assert_eq!(row["status"], "succeeded", "{row}");
    assert_eq!(row["operation"], "create_key", "{row}");
    assert_eq!(row["check"], "ok", "{row}");
    assert!(row["approvers"].as_array().unwrap().contains(&Value::from("treasurer")), "{row}");

    // A signature waits for the treasurer: `sign --wait` prints it once they approved.
    let key_id = key["key_id"].as_str().unwrap().to_string();
    let waiting = Command::new(EXE)
        .env("SHARDVAULT_IDENTITY", devnet.owner_identity())
        .env("SHARDVAULT_GENESIS", devnet.genesis_file())
        .args(["--json", "sign", "--key", &key_id, "--chain", "solana", "--index", "0", "--message-hex", "68656c6c6f"])
        .args(["--wait", "--wait-timeout", "120", "--api", &devnet.api])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    let pending_sign = loop {
        assert!(started.elapsed().as_secs() < 60, "the signing request never appeared as pending");
        let listed = devnet.cli(&["request", "list", "--status", "pending"]).unwrap();
        let found = listed["requests"].as_array().unwrap().iter().find(|r| r["operation"] == "sign").cloned();
        if let Some(row) = found {
            break row;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    let sign_id = pending_sign["id"].as_str().unwrap();
    assert_eq!(pending_sign["chain"], "solana", "{pending_sign}");
    devnet.cli(&["request", "approve", sign_id, "--yes", "--identity", treasurer.to_str().unwrap()]).unwrap();
    let output = waiting.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let signed: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(signed["signature"].is_string(), "{signed}");

    let audit = devnet.cli(&["audit", "verify"]).unwrap();
    assert_eq!(audit["ok"], true, "{audit}");
    assert!(audit["signatures_verified"].as_u64().unwrap() >= 6, "{audit}");
}

/// `ssh-keygen -Y sign` of `message` with the treasurer's key.
fn treasurer_sign(key: &std::path::Path, dir: &std::path::Path, message: &[u8]) -> Vec<u8> {
    let file = dir.join("other.txt");
    std::fs::write(&file, message).unwrap();
    let signed = Command::new("ssh-keygen")
        .args(["-Y", "sign", "-n", "shardvault-request", "-f"])
        .arg(key)
        .arg(&file)
        .output()
        .unwrap();
    assert!(signed.status.success(), "{}", String::from_utf8_lossy(&signed.stderr));
    std::fs::read(dir.join("other.txt.sig")).unwrap()
}
