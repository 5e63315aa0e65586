//! Backup export end to end, with real processes and software nobody here
//! wrote: three officers' keys made by `ssh-keygen -t ed25519` (one with a
//! passphrase); the export waits for every member's approval; each share in
//! the package is decrypted by the `age` CLI (Debian `age`, which `.ci/run`
//! installs) with its officer's key and holds that party's share; `backup
//! list` says which keys need a backup, before and after.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine;
use serde_json::Value;
use shardvault_harness::Devnet;

const EXE: &str = env!("CARGO_BIN_EXE_shardvault");
const PASSPHRASE: &str = "correct horse battery staple";

fn text(value: &Value, field: &str) -> String {
    value[field].as_str().unwrap_or_else(|| panic!("no {field} in {value}")).to_string()
}

/// `ssh-keygen -t ed25519` into `dir/name` (with `passphrase`, or none).
fn ssh_keygen(dir: &Path, name: &str, passphrase: &str) -> PathBuf {
    let path = dir.join(name);
    let made = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-C", name, "-N", passphrase, "-f"])
        .arg(&path)
        .output()
        .expect("ssh-keygen (Debian: openssh-client) must be installed");
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    path
}

/// `age -d -i key` of `sealed`; a passphrase is typed at age's prompt on a
/// pseudo-terminal (`script`), as a person would.
fn age_decrypt(dir: &Path, key: &Path, sealed: &[u8], passphrase: Option<&str>) -> Vec<u8> {
    let input = dir.join("share.age");
    let output = dir.join("share.json");
    std::fs::write(&input, sealed).unwrap();
    let _ = std::fs::remove_file(&output);
    let command = format!("age -d -i '{}' -o '{}' '{}'", key.display(), output.display(), input.display());
    let status = match passphrase {
        None => Command::new("sh").args(["-c", &command]).status(),
        Some(passphrase) => {
            let mut child = Command::new("script")
                .args(["-qec", &command, "/dev/null"])
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .spawn()
                .expect("script (util-linux) must be installed");
            child.stdin.take().unwrap().write_all(format!("{passphrase}\n").as_bytes()).unwrap();
            child.wait()
        }
    }
    .expect("the age CLI (Debian: age) must be installed");
    assert!(status.success(), "age -d failed for {}", key.display());
    std::fs::read(&output).unwrap()
}

/// A second member, `officer` (an admin), whose key is `dir/officer`: an
/// export then needs the owner's approval and the officer's.
fn add_officer(net: &Devnet, dir: &Path) -> PathBuf {
    let officer = dir.join("officer");
    let made = Command::new(EXE).args(["--json", "identity", "new", "--out"]).arg(&officer).output().unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let officer_key = text(&serde_json::from_slice(&made.stdout).unwrap(), "public_key");
    net.cli(&["member", "add", "--name", "officer", "--role", "admin", "--public-key", &officer_key]).unwrap();
    officer
}

#[test]
fn every_member_approves_an_export_and_age_opens_each_officers_share() {
    let dir = tempfile::tempdir().unwrap();
    let net = Devnet::start(EXE, dir.path());
    let officer = add_officer(&net, dir.path());

    // Each key with the cluster's address on each chain: the ECDSA key on
    // Ethereum and Bitcoin, the Ed25519 key on Solana.
    let mut keys = Vec::new();
    for (scheme, chains) in [("ecdsa-secp256k1", &["ethereum", "bitcoin"][..]), ("eddsa-ed25519", &["solana"])] {
        let key = net.cli(&["key", "create", "--scheme", scheme, "--threshold", "2", "--parties", "3"]).unwrap();
        let key_id = text(&key, "key_id");
        for chain in chains {
            let address = net.cli(&["address", "--key", &key_id, "--chain", chain, "--index", "0"]).unwrap();
            keys.push((key_id.clone(), *chain, text(&address, "address")));
        }
    }
    let listed = net.cli(&["backup", "list"]).unwrap();
    assert!(listed["keys"].as_array().unwrap().iter().all(|k| k["current"] == false), "{listed}");

    let recipients: Vec<PathBuf> =
        (1..=3).map(|i| ssh_keygen(dir.path(), &format!("party{i}"), if i == 2 { PASSPHRASE } else { "" })).collect();
    let mut export = vec!["backup", "export"];
    let public: Vec<String> = recipients.iter().map(|r| format!("{}.pub", r.display())).collect();
    for line in &public {
        export.extend(["--recipient", line]);
    }
    let out = dir.path().join("backup.json");
    export.extend(["--out", out.to_str().unwrap()]);

    // The owner's approval alone does not export: the officer must approve too.
    let pending = net.cli(&export).unwrap();
    assert_eq!(pending["status"], "pending", "{pending}");
    assert!(!out.exists());
    let id = text(&pending, "request_id");
    let shown = net.cli(&["request", "show", &id]).unwrap();
    assert_eq!(shown["operation"]["kind"], "export_backup", "{shown}");
    assert_eq!(shown["policy"]["satisfied"], false, "{shown}");
    let early = net.cli(&["backup", "fetch", &id, "--out", out.to_str().unwrap()]).unwrap_err();
    assert!(early.contains("still pending"), "{early}");
    net.cli(&["request", "approve", &id, "--yes", "--identity", officer.to_str().unwrap()]).unwrap();
    let fetched = net.cli(&["backup", "fetch", &id, "--out", out.to_str().unwrap()]).unwrap();
    assert_eq!(fetched["keys"].as_array().unwrap().len(), 2, "{fetched}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&out).unwrap().permissions().mode() & 0o777, 0o600);
    let again = net.cli(&["backup", "fetch", &id, "--out", out.to_str().unwrap()]).unwrap_err();
    assert!(again.contains("never written over"), "{again}");

    let package: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(package["format"], "shardvault-backup", "{package}");
    assert_eq!(package["request_id"], id.as_str());
    let entries = package["exported_key_shares"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{package}");
    for (key_id, _, address) in &keys {
        let entry = entries.iter().find(|e| e["key_id"] == key_id.as_str()).unwrap_or_else(|| panic!("{package}"));
        assert_eq!(entry["party_ids"], serde_json::json!([1, 2, 3]));
        assert!(entry["addresses"].as_array().unwrap().iter().any(|a| a["address"] == address.as_str()), "{entry}");
        let shares = entry["encrypted_shares"].as_array().unwrap();
        for (index, share) in shares.iter().enumerate() {
            let sealed = base64::engine::general_purpose::STANDARD.decode(share.as_str().unwrap()).unwrap();
            let passphrase = (index == 1).then_some(PASSPHRASE);
            let opened = age_decrypt(dir.path(), &recipients[index], &sealed, passphrase);
            let plaintext: Value = serde_json::from_slice(&opened).unwrap();
            assert_eq!(plaintext["format"], "shardvault-share-backup");
            assert_eq!(plaintext["request_id"], id.as_str());
            assert_eq!(plaintext["share"]["key_id"], key_id.as_str());
            assert_eq!(plaintext["share"]["party"], index + 1);
            assert_eq!(plaintext["share"]["root_public_key"], entry["root_public_key"]);
            assert_eq!(plaintext["share"]["secret_share"].as_str().map(str::len), Some(64));
            // Another officer's key does not open it.
            let other = &recipients[(index + 1) % 3];
            let refused = Command::new("age")
                .args(["-d", "-i"])
                .arg(if index == 0 { &recipients[2] } else { other })
                .stdin(Stdio::null())
                .arg(dir.path().join("share.age"))
                .output()
                .unwrap();
            assert!(!refused.status.success(), "another officer's key opened party {}'s share", index + 1);
        }
    }
    let listed = net.cli(&["backup", "list"]).unwrap();
    assert!(listed["keys"].as_array().unwrap().iter().all(|k| k["current"] == true), "{listed}");

    // Offline, with two of the three officers' keys (one locked), the
    // package alone rebuilds each key at the cluster's Ethereum, Bitcoin and Solana addresses.
    let passphrase_file = dir.path().join("passphrase");
    std::fs::write(&passphrase_file, PASSPHRASE).unwrap();
    for (key_id, chain, address) in &keys {
        let recovered = Command::new(EXE)
            .args(["--json", "recover", "--backup"])
            .arg(&out)
            .arg("--identity")
            .arg(&recipients[1])
            .arg("--identity")
            .arg(&recipients[2])
            .arg("--identity-passphrase-file")
            .arg(&passphrase_file)
            .args(["--key", key_id, "--chain", chain, "--index", "0", "--verify-addresses", "--cluster"])
            .arg(net.cluster_file())
            .env_remove("SHARDVAULT_API")
            .output()
            .unwrap();
        assert!(recovered.status.success(), "{}", String::from_utf8_lossy(&recovered.stderr));
        let recovered: Value = serde_json::from_slice(&recovered.stdout).unwrap();
        assert_eq!(recovered["keys"][0]["address"], address.as_str(), "{recovered}");
        // Every party's files verified against the nodes' pinned identities,
        // and the address against their attestations.
        assert_eq!(recovered["authenticity"]["parties"], serde_json::json!([1, 2, 3]), "{recovered}");
        assert_eq!(recovered["authenticity"]["rejected"], serde_json::json!([]), "{recovered}");
        let verified = recovered["verified_addresses"].as_array().unwrap();
        assert!(verified.iter().any(|a| a["address"] == address.as_str() && a["matches"] == true), "{recovered}");
    }

    // A refresh makes the backup stale: the list says so.
    let (key_id, _, _) = &keys[0];
    net.cli(&["refresh", "--key", key_id]).unwrap_or_else(|pending| panic!("{pending}"));
    let listed = net.cli(&["backup", "list"]).unwrap();
    let row = listed["keys"].as_array().unwrap().iter().find(|k| k["key_id"] == key_id.as_str()).unwrap().clone();
    assert_eq!((row["current"].as_bool(), row["epoch"].as_u64()), (Some(false), Some(1)), "{row}");
}

#[test]
fn an_export_with_the_wrong_number_of_recipients_is_refused_before_anyone_approves() {
    let dir = tempfile::tempdir().unwrap();
    let net = Devnet::start(EXE, dir.path());
    net.cli(&["key", "create", "--scheme", "ecdsa-secp256k1", "--threshold", "2", "--parties", "3"]).unwrap();
    let key = ssh_keygen(dir.path(), "only", "");
    let public = format!("{}.pub", key.display());
    let out = dir.path().join("backup.json");
    let refused = net.cli(&["backup", "export", "--recipient", &public, "--out", out.to_str().unwrap()]).unwrap_err();
    assert!(refused.contains("one per party"), "{refused}");
    let rsa = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ== someone";
    let refused = net
        .cli(&[
            "backup",
            "export",
            "--recipient",
            rsa,
            "--recipient",
            rsa,
            "--recipient",
            rsa,
            "--out",
            out.to_str().unwrap(),
        ])
        .unwrap_err();
    assert!(refused.contains("ssh-ed25519"), "{refused}");
    assert!(!out.exists());
}

/// `backup export --key K --wait`: nothing is written while the officer's
/// approval is missing; once it is in, the command writes a package of
/// exactly that key, checked against the cluster file.
#[test]
fn an_export_of_one_key_waits_for_every_approval_and_holds_only_that_key() {
    let dir = tempfile::tempdir().unwrap();
    let net = Devnet::start(EXE, dir.path());
    let officer = add_officer(&net, dir.path());
    let create = || {
        let key = net.cli(&["key", "create", "--scheme", "eddsa-ed25519", "--threshold", "2", "--parties", "3"]);
        text(&key.unwrap(), "key_id")
    };
    let (wanted, other) = (create(), create());
    let recipients: Vec<String> =
        (1..=3).map(|i| format!("{}.pub", ssh_keygen(dir.path(), &format!("party{i}"), "").display())).collect();
    let out = dir.path().join("backup.json");
    let mut export = vec!["backup", "export", "--key", wanted.as_str(), "--wait", "--wait-timeout", "120"];
    for line in &recipients {
        export.extend(["--recipient", line]);
    }
    export.extend(["--out", out.to_str().unwrap()]);
    let written = std::thread::scope(|scope| {
        let waiting = scope.spawn(|| net.cli(&export));
        let started = std::time::Instant::now();
        let pending = loop {
            assert!(started.elapsed().as_secs() < 60, "the export never appeared as pending");
            let listed = net.cli(&["request", "list", "--status", "pending"]).unwrap();
            let found =
                listed["requests"].as_array().unwrap().iter().find(|r| r["operation"] == "export_backup").cloned();
            if let Some(row) = found {
                break row;
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        };
        assert!(!out.exists(), "written before every member approved");
        let id = text(&pending, "id");
        net.cli(&["request", "approve", &id, "--yes", "--identity", officer.to_str().unwrap()]).unwrap();
        waiting.join().unwrap()
    });
    written.unwrap_or_else(|error| panic!("export --wait: {error}"));
    let package: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let keys: Vec<&str> =
        package["exported_key_shares"].as_array().unwrap().iter().map(|e| e["key_id"].as_str().unwrap()).collect();
    assert_eq!(keys, [wanted.as_str()], "not {other}");
}
