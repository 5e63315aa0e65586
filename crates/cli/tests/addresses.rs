//! `shardvault address` shows an address only when the key's nodes attested
//! it under the pinned cluster file. A fake coordinator (a one-shot HTTP
//! server) plays the compromised coordinator or network; the devnet test
//! checks the real thing, re-checking every signature and address with code
//! written here from docs/FORMATS.md.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::Command;

use common::{Devnet, EXE};
use serde_json::{json, Value};
use shardvault_chains::Chain;
use shardvault_mpc::{KeyId, Scheme, Threshold};
use shardvault_testkit as tk;
use shardvault_wire::{generate_keypair, AddressStatement, Cluster, NodeId, NodeIdentity};

/// Three nodes with identity keys, pinned in a cluster file, and one
/// outsider whose identity is not pinned.
struct Fixture {
    dir: tempfile::TempDir,
    signers: Vec<NodeIdentity>,
    outsider: NodeIdentity,
    key_id: KeyId,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let (_, coordinator) = generate_keypair().unwrap();
        let mut nodes = std::collections::BTreeMap::new();
        let mut identities = std::collections::BTreeMap::new();
        let mut signers = Vec::new();
        for i in 1..=3 {
            let (secret, public) = generate_keypair().unwrap();
            nodes.insert(NodeId(i), public);
            identities.insert(NodeId(i), NodeIdentity::derive(&secret).public());
            signers.push(NodeIdentity::derive(&secret));
        }
        let cluster = Cluster { coordinator, nodes, identities };
        std::fs::write(dir.path().join("cluster.json"), serde_json::to_string(&cluster).unwrap()).unwrap();
        let outsider = NodeIdentity::derive(&generate_keypair().unwrap().0);
        Fixture { dir, signers, outsider, key_id: KeyId::random() }
    }

    fn cluster_file(&self) -> std::path::PathBuf {
        self.dir.path().join("cluster.json")
    }

    /// The statement honest nodes make for `index` with a key from `secret`.
    fn statement(&self, index: u32, secret: u8) -> AddressStatement {
        let public_key = tk::secp256k1_public_key(&[secret; 32]).unwrap();
        AddressStatement {
            key_id: self.key_id,
            scheme: Scheme::EcdsaSecp256k1,
            threshold: Threshold::new(2, 3).unwrap(),
            path: format!("m/9'/0'/60'/0'/0'/{index}'").parse().unwrap(),
            chain: Chain::Ethereum,
            bech32_prefix: None,
            address: tk::eip55_address(&public_key).unwrap(),
            public_key,
        }
    }

    /// Node `node`'s signature over `statement`.
    fn by(&self, node: u16, statement: &AddressStatement) -> Value {
        let identity = &self.signers[usize::from(node - 1)];
        json!({ "node": node, "signature": hex::encode(statement.sign(identity)) })
    }
}

/// The API's answer shape for `statement` with `attestations`.
fn answer(statement: &AddressStatement, attestations: Vec<Value>) -> Value {
    json!({ "key_id": statement.key_id.to_string(), "scheme": statement.scheme, "threshold": 2, "parties": 3,
            "chain": statement.chain, "bech32_prefix": statement.bech32_prefix, "path": statement.path.to_string(),
            "public_key": hex::encode(&statement.public_key), "address": statement.address,
            "attestation_domain": "address-attestation", "attestation_version": 1,
            "attestations": attestations, "request_id": "r" })
}

/// A coordinator that answers one request with `body`; its base URL.
fn fake_coordinator(body: Value) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let Ok((stream, _)) = listener.accept() else { return };
        let mut reader = BufReader::new(stream);
        let mut length = 0;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                break;
            }
            if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut request = vec![0; length];
        let _ = reader.read_exact(&mut request);
        let body = body.to_string();
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = reader.get_mut().write_all(response.as_bytes());
    });
    url
}

struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

/// `shardvault --json address --key K --chain ethereum --index 0` against
/// `body`, with the cluster file given as `SHARDVAULT_CLUSTER` (so that a CLI
/// without the check simply prints the forged address).
fn address(f: &Fixture, body: Value, cluster: bool, extra: &[&str]) -> Run {
    let api = fake_coordinator(body);
    let key = f.key_id.to_string();
    let mut command = Command::new(EXE);
    command.args(["--json", "address", "--key", &key, "--chain", "ethereum", "--index", "0", "--api", &api]);
    command.args(extra).env_remove("SHARDVAULT_CLUSTER");
    if cluster {
        command.env("SHARDVAULT_CLUSTER", f.cluster_file());
    }
    let output = command.output().unwrap();
    Run {
        ok: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).to_string(),
        stderr: String::from_utf8_lossy(&output.stderr).to_string(),
    }
}

fn refused(run: &Run, why: &str) {
    assert!(!run.ok, "a forged address was shown: {}", run.stdout);
    assert!(run.stdout.is_empty(), "nothing may be printed: {}", run.stdout);
    assert!(run.stderr.contains("refusing to show"), "{}", run.stderr);
    assert!(run.stderr.contains(why), "expected {why:?} in {}", run.stderr);
}

#[test]
fn an_address_attested_by_two_pinned_nodes_is_shown_with_its_verification() {
    let f = Fixture::new();
    let s = f.statement(0, 1);
    let run = address(&f, answer(&s, vec![f.by(1, &s), f.by(3, &s)]), true, &[]);
    assert!(run.ok, "{}", run.stderr);
    let shown: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(shown["address"], s.address.as_str());
    assert_eq!(shown["verification"]["verified"], true);
    assert_eq!(shown["verification"]["attested_by"], json!([1, 3]));
    assert_eq!(shown["verification"]["required"], 2);
}

#[test]
fn a_coordinator_that_swaps_the_address_or_the_key_is_refused() {
    let f = Fixture::new();
    let honest = f.statement(0, 1);
    let signatures = vec![f.by(1, &honest), f.by(2, &honest), f.by(3, &honest)];
    // Its own address under the nodes' signatures.
    let attacker = f.statement(0, 2);
    let mut forged = answer(&honest, signatures.clone());
    forged["address"] = json!(attacker.address);
    refused(&address(&f, forged, true, &[]), "is not the ethereum address of the attested key");
    // Its own key and the matching address under the nodes' signatures.
    refused(&address(&f, answer(&attacker, signatures.clone()), true, &[]), "attested by 0 distinct pinned node(s)");
    // The nodes' attestation of another index of the key, for index 0.
    let other = f.statement(1, 1);
    let other_signatures = vec![f.by(1, &other), f.by(2, &other)];
    refused(&address(&f, answer(&other, other_signatures), true, &[]), "not what was asked");
    // Another key's attested address.
    let mut another_key = f.statement(0, 1);
    another_key.key_id = KeyId::random();
    let signed = vec![f.by(1, &another_key), f.by(2, &another_key)];
    refused(&address(&f, answer(&another_key, signed), true, &[]), "not the key asked for");
    // A coordinator from before attestations.
    let mut old = answer(&honest, Vec::new());
    for field in ["attestations", "attestation_version", "attestation_domain"] {
        old.as_object_mut().unwrap().remove(field);
    }
    refused(&address(&f, old, true, &[]), "returned no address attestations");
}

#[test]
fn one_node_twice_or_unpinned_signers_are_not_enough() {
    let f = Fixture::new();
    let s = f.statement(0, 1);
    refused(&address(&f, answer(&s, vec![f.by(2, &s)]), true, &[]), "attested by 1 distinct pinned node(s)");
    refused(
        &address(&f, answer(&s, vec![f.by(2, &s), f.by(2, &s)]), true, &[]),
        "a second attestation by the same node",
    );
    // Signed by a key the cluster file does not pin, claiming to be nodes 1 and 3.
    let outsider = |node: u16| json!({ "node": node, "signature": hex::encode(s.sign(&f.outsider)) });
    refused(&address(&f, answer(&s, vec![outsider(1), outsider(3)]), true, &[]), "does not verify");
    // One real signature and one from an unpinned node id.
    let unknown = json!({ "node": 9, "signature": hex::encode(s.sign(&f.outsider)) });
    refused(&address(&f, answer(&s, vec![f.by(1, &s), unknown]), true, &[]), "no identity key for node 9");
    // A t = 3 statement needs three.
    let mut three = s.clone();
    three.threshold = Threshold::new(3, 3).unwrap();
    let mut body = answer(&three, vec![f.by(1, &three), f.by(2, &three)]);
    body["threshold"] = json!(3);
    refused(&address(&f, body, true, &[]), "3 are needed");
}

#[test]
fn without_a_cluster_file_the_address_is_refused_unless_explicitly_unverified() {
    let f = Fixture::new();
    let s = f.statement(0, 1);
    let run = address(&f, answer(&s, vec![f.by(1, &s), f.by(2, &s)]), false, &[]);
    refused(&run, "--cluster FILE");
    // --unverified prints it, loudly, and says it is not verified.
    let mut forged = answer(&s, Vec::new());
    forged["address"] = json!(f.statement(0, 2).address);
    let run = address(&f, forged, true, &["--unverified"]);
    assert!(run.ok, "{}", run.stderr);
    assert!(run.stderr.contains("WARNING: THIS ADDRESS IS NOT VERIFIED"), "{}", run.stderr);
    let shown: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(shown["verification"]["verified"], false);
}

/// The signed bytes of an address statement, written out here from
/// docs/FORMATS.md ("Address attestation") rather than taken from the wire crate.
fn signed_bytes_by_hand(answer: &Value) -> Vec<u8> {
    let text = |name: &str| answer[name].as_str().unwrap().to_string();
    let mut statement = vec![1u8];
    let mut field = |bytes: &[u8]| {
        statement.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
        statement.extend_from_slice(bytes);
    };
    let path: Vec<u8> = text("path")
        .split('/')
        .skip(1)
        .flat_map(|c| match c.strip_suffix('\'') {
            Some(n) => (n.parse::<u32>().unwrap() | 0x8000_0000).to_be_bytes(),
            None => c.parse::<u32>().unwrap().to_be_bytes(),
        })
        .collect();
    let prefix = match answer["bech32_prefix"].as_str() {
        None => vec![0],
        Some(p) => [&[1u8][..], p.as_bytes()].concat(),
    };
    field(&hex::decode(text("key_id")).unwrap());
    field(text("scheme").as_bytes());
    field(&[answer["threshold"].as_u64().unwrap() as u8]);
    field(&[answer["parties"].as_u64().unwrap() as u8]);
    field(&path);
    field(text("chain").as_bytes());
    field(&prefix);
    field(&hex::decode(text("public_key")).unwrap());
    field(text("address").as_bytes());
    let domain = b"address-attestation";
    let mut signed = b"shardvault/statement/v1".to_vec();
    signed.extend_from_slice(&(domain.len() as u64).to_be_bytes());
    signed.extend_from_slice(domain);
    signed.extend_from_slice(&statement);
    signed
}

/// Every attestation in `shown` verifies (ed25519-dalek `verify_strict`, over
/// bytes encoded by hand) under the identity pinned in the cluster file.
fn check_signatures_independently(shown: &Value, cluster: &Value) -> usize {
    let signed = signed_bytes_by_hand(shown);
    let attestations = shown["attestations"].as_array().unwrap();
    for a in attestations {
        let node = a["node"].as_u64().unwrap().to_string();
        let identity = hex::decode(cluster["identities"][&node].as_str().unwrap()).unwrap();
        let signature = hex::decode(a["signature"].as_str().unwrap()).unwrap();
        tk::verify_ed25519(&identity, &signed, &signature).unwrap_or_else(|e| panic!("node {node}: {e}"));
    }
    attestations.len()
}

#[test]
fn on_the_devnet_the_shown_address_is_the_one_the_nodes_attested() {
    let dir = tempfile::tempdir().unwrap();
    let net = Devnet::start(EXE, dir.path());
    let cluster_file = dir.path().join("cluster.json");
    let cluster: Value = serde_json::from_str(&std::fs::read_to_string(&cluster_file).unwrap()).unwrap();
    let key = net.cli(&["key", "create", "--scheme", "ecdsa-secp256k1", "--threshold", "2", "--parties", "3"]).unwrap();
    let key_id = key["key_id"].as_str().unwrap();
    let cluster_arg = cluster_file.to_str().unwrap();

    let shown = net
        .cli(&["address", "--key", key_id, "--chain", "ethereum", "--index", "0", "--cluster", cluster_arg])
        .unwrap();
    assert_eq!(shown["verification"]["verified"], true, "{shown}");
    assert_eq!(shown["verification"]["attested_by"], json!([1, 2, 3]), "every connected node attests");
    assert_eq!(shown["path"], "m/9'/0'/60'/0'/0'/0'");
    let child = hex::decode(shown["public_key"].as_str().unwrap()).unwrap();
    assert_eq!(tk::eip55_address(&child).unwrap(), shown["address"].as_str().unwrap());
    assert_eq!(check_signatures_independently(&shown, &cluster), 3);

    // A Cosmos SDK address with its own prefix, below a hardened account.
    let osmo = net
        .cli(&[
            "address",
            "--key",
            key_id,
            "--chain",
            "cosmos",
            "--path",
            "m/9'/0'/118'/0'/0/3",
            "--bech32-prefix",
            "osmo",
            "--cluster",
            cluster_arg,
        ])
        .unwrap();
    assert_eq!(osmo["verification"]["verified"], true, "{osmo}");
    let child = hex::decode(osmo["public_key"].as_str().unwrap()).unwrap();
    let (hrp, program) = tk::bech32_decode(osmo["address"].as_str().unwrap()).unwrap();
    assert_eq!((hrp.as_str(), program), ("osmo", tk::hash160(&child)));
    assert_eq!(check_signatures_independently(&osmo, &cluster), 3);

    // The same address again comes from the coordinator's store, still attested.
    let again = net
        .cli(&["address", "--key", key_id, "--chain", "ethereum", "--index", "0", "--cluster", cluster_arg])
        .unwrap();
    assert_eq!(again["address"], shown["address"]);
    assert_eq!(again["attestations"], shown["attestations"]);

    // A coordinator whose cache was tampered with (another hardened key for
    // the account) derives another address; the nodes attest theirs, and
    // nothing is shown.
    let db = rusqlite::Connection::open(dir.path().join("coordinator/coordinator.db")).unwrap();
    let fake = tk::secp256k1_public_key(&[9; 32]).unwrap();
    let changed = db
        .execute(
            "UPDATE derivations SET public_key = ?1 WHERE key_id = ?2 AND path = ?3",
            rusqlite::params![fake, key_id, "m/9'/0'/118'/0'"],
        )
        .unwrap();
    assert_eq!(changed, 1);
    let error = net
        .cli(&[
            "address",
            "--key",
            key_id,
            "--chain",
            "cosmos",
            "--path",
            "m/9'/0'/118'/0'/0/4",
            "--cluster",
            cluster_arg,
        ])
        .unwrap_err();
    assert!(error.contains("disagreement") && error.contains("attests"), "{error}");
}
