//! `shardvault simulate --json`: the report's every signature, digest and
//! address is re-checked with independent code (shardvault-testkit), and the
//! report covers what the lifecycle promises.

use std::collections::BTreeSet;
use std::process::Command;

use serde_json::Value;
use shardvault_testkit as tk;

fn h(value: &Value) -> Vec<u8> {
    hex::decode(value.as_str().expect("hex string")).expect("valid hex")
}

/// Runs `shardvault <command> --json` (simulate or demo) and parses the report.
fn lifecycle(command: &str) -> Value {
    let output = Command::new(env!("CARGO_BIN_EXE_shardvault"))
        .args([command, "--json", "--message", "pay 1 BTC to Alice"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("stdout is one JSON document")
}

fn check_address(scheme: &str, chain: &str, public_key: &[u8], address: &str) {
    match (scheme, chain) {
        ("ecdsa-secp256k1", "bitcoin") => {
            assert_eq!(tk::bitcoin_witness_program(address).unwrap(), (0, tk::hash160(public_key)))
        }
        ("schnorr-secp256k1", "bitcoin") => {
            assert_eq!(tk::bitcoin_witness_program(address).unwrap(), (1, tk::bip86_output_key(public_key).unwrap()))
        }
        ("ecdsa-secp256k1", "litecoin") => {
            assert_eq!(tk::segwit_decode(address).unwrap(), ("ltc".to_string(), 0, tk::hash160(public_key)))
        }
        ("schnorr-secp256k1", "litecoin") => assert_eq!(
            tk::segwit_decode(address).unwrap(),
            ("ltc".to_string(), 1, tk::bip86_output_key(public_key).unwrap())
        ),
        ("ecdsa-secp256k1", "ethereum") => {
            assert_eq!(address, tk::eip55_address(public_key).unwrap())
        }
        ("eddsa-ed25519", "solana") => assert_eq!(tk::solana_key(address).unwrap(), public_key),
        ("eddsa-ed25519", "aptos") => assert_eq!(address, tk::aptos_address(public_key)),
        ("eddsa-ed25519", "sui") => assert_eq!(address, tk::sui_address(public_key)),
        ("ecdsa-secp256k1", "tron") => assert_eq!(address, tk::tron_address(public_key).unwrap()),
        ("ecdsa-secp256k1", "cosmos") => {
            assert_eq!(tk::bech32_decode(address).unwrap(), ("cosmos".to_string(), tk::hash160(public_key)))
        }
        other => panic!("unexpected derivation {other:?}"),
    }
}

fn check_signature(scheme: &str, derived_key: &[u8], s: &Value) {
    let message = h(&s["message"]);
    let signature = h(&s["signature"]);
    let public_key = h(&s["public_key"]);
    // What the key signs, recomputed here from each format's specification
    // (None: the message itself, which Aptos signs).
    let expected: Option<Vec<u8>> = match s["message_encoding"].as_str().unwrap() {
        "eip191-personal-sign" => Some(tk::eip191_digest(&message).to_vec()),
        "bitcoin-signed-message" => Some(tk::bitcoin_message_digest(&message).unwrap().to_vec()),
        "bip322-simple" => Some(tk::bip322_taproot_sighash(&public_key, &message).unwrap().to_vec()),
        "sui-personal-message" => {
            let mut bcs = vec![message.len() as u8];
            assert!(message.len() < 128, "one-byte ULEB128 length");
            bcs.extend_from_slice(&message);
            Some(tk::blake2b256(&[&[3u8, 0, 0][..], &bcs].concat()).to_vec())
        }
        "litecoin-signed-message" => Some(tk::litecoin_message_digest(&message).to_vec()),
        "tron-signed-message" => Some(
            tk::keccak256(&[format!("\x19TRON Signed Message:\n{}", message.len()).as_bytes(), &message].concat())
                .to_vec(),
        ),
        "solana-offchain-message" => Some(tk::solana_offchain_message(&public_key, &message)),
        "cosmos-adr036" => Some(tk::adr036_digest(&public_key, "cosmos", &message).unwrap().to_vec()),
        "aptos-sign-message" => {
            let text = String::from_utf8(message.clone()).unwrap();
            assert!(text.starts_with("APTOS\nmessage: ") && text.contains("\nnonce: "), "{text:?}");
            None
        }
        other => panic!("unknown message format {other}"),
    };
    assert_eq!(s.get("digest").map(h), expected);
    match scheme {
        "ecdsa-secp256k1" => {
            assert_eq!(public_key, derived_key);
            let recovery_id = u8::try_from(s["recovery_id"].as_u64().unwrap()).unwrap();
            tk::verify_ecdsa(&public_key, &expected.unwrap(), &signature, recovery_id).unwrap();
        }
        "schnorr-secp256k1" => {
            assert_eq!(public_key, tk::bip86_output_key(derived_key).unwrap());
            tk::verify_bip340(&public_key, &expected.unwrap(), &signature).unwrap();
        }
        "eddsa-ed25519" => {
            assert_eq!(public_key, derived_key);
            let signed = expected.unwrap_or(message);
            tk::verify_ed25519(&public_key, &signed, &signature).unwrap();
        }
        other => panic!("unknown scheme {other}"),
    }
}

#[test]
fn simulate_report_passes_independent_checks() {
    let report = lifecycle("simulate");
    assert_eq!(report["transport"], "in-process");
    check_report(&report);
}

/// The networked demo: every signature was made by node processes talking
/// through the coordinator, and passes the same checks.
#[test]
fn demo_report_from_the_devnet_passes_the_same_checks() {
    let report = lifecycle("demo");
    assert_eq!(report["transport"], "devnet");
    check_report(&report);
    check_transactions(&report);
}

fn check_report(report: &Value) {
    assert_eq!(report["schema"], "shardvault.demo.v1");
    let keys = report["keys"].as_array().unwrap();
    let schemes: BTreeSet<&str> = keys.iter().map(|k| k["scheme"].as_str().unwrap()).collect();
    assert_eq!(schemes, BTreeSet::from(["ecdsa-secp256k1", "eddsa-ed25519", "schnorr-secp256k1"]));
    let shapes: BTreeSet<(u64, u64)> =
        keys.iter().map(|k| (k["threshold"].as_u64().unwrap(), k["parties"].as_u64().unwrap())).collect();
    assert!(shapes.contains(&(2, 3)) && shapes.contains(&(3, 3)));
    let mut chains_seen = BTreeSet::new();
    let mut formats_seen = BTreeSet::new();

    for key in keys {
        let scheme = key["scheme"].as_str().unwrap();
        let (t, n) = (key["threshold"].as_u64().unwrap(), key["parties"].as_u64().unwrap());
        let root = h(&key["public_key"]);
        assert_eq!(root.len(), if scheme == "eddsa-ed25519" { 32 } else { 33 });

        let derivations = key["derivations"].as_array().unwrap();
        for d in derivations {
            let public_key = h(&d["public_key"]);
            assert_ne!(public_key, root, "derived keys differ from the root");
            check_address(scheme, d["chain"].as_str().unwrap(), &public_key, d["address"].as_str().unwrap());
            chains_seen.insert((scheme, d["chain"].as_str().unwrap().to_string()));
        }

        let signatures = key["signatures"].as_array().unwrap();
        let mut signer_sets = BTreeSet::new();
        let mut epochs = BTreeSet::new();
        for s in signatures {
            let derived = derivations
                .iter()
                .find(|d| d["path"] == s["path"] && d["chain"] == s["chain"])
                .expect("signature path is a reported derivation");
            check_signature(scheme, &h(&derived["public_key"]), s);
            formats_seen.insert(s["message_encoding"].as_str().unwrap().to_string());
            let signers: Vec<u64> = s["signers"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
            assert_eq!(signers.len() as u64, t, "exactly t signers");
            assert!(signers.windows(2).all(|w| w[0] < w[1]) && signers.iter().all(|p| (1..=n).contains(p)));
            signer_sets.insert(signers);
            epochs.insert(s["epoch"].as_u64().unwrap());
            if s["chain"] == "ethereum" {
                // The EVM view: the signature recovers to the derived address.
                let recovered =
                    tk::recover_ecdsa(&h(&s["digest"]), &h(&s["signature"]), s["recovery_id"].as_u64().unwrap() as u8)
                        .unwrap();
                assert_eq!(tk::eip55_address(&recovered).unwrap(), derived["address"].as_str().unwrap());
            }
        }
        if t < n {
            assert!(signer_sets.len() >= 2, "a {t}-of-{n} key signs with at least two signer sets");
        }
        let refresh = &key["refresh"];
        assert_eq!(refresh["epoch_after"].as_u64().unwrap(), refresh["epoch_before"].as_u64().unwrap() + 1);
        assert!(
            epochs.contains(&refresh["epoch_before"].as_u64().unwrap())
                && epochs.contains(&refresh["epoch_after"].as_u64().unwrap())
        );
    }
    // Every chain's message format, each signed by its own key type.
    let expected_formats = [
        "eip191-personal-sign",
        "bitcoin-signed-message",
        "bip322-simple",
        "litecoin-signed-message",
        "tron-signed-message",
        "solana-offchain-message",
        "aptos-sign-message",
        "sui-personal-message",
        "cosmos-adr036",
    ];
    assert_eq!(formats_seen, expected_formats.into_iter().map(String::from).collect());
    for (scheme, chain) in FAMILIES {
        assert!(chains_seen.contains(&(scheme, chain.to_string())), "missing {chain} address for {scheme}");
    }
}

/// Every chain family, with the scheme that signs for it.
const FAMILIES: [(&str, &str); 10] = [
    ("ecdsa-secp256k1", "bitcoin"),
    ("ecdsa-secp256k1", "litecoin"),
    ("schnorr-secp256k1", "litecoin"),
    ("ecdsa-secp256k1", "ethereum"),
    ("ecdsa-secp256k1", "tron"),
    ("ecdsa-secp256k1", "cosmos"),
    ("schnorr-secp256k1", "bitcoin"),
    ("eddsa-ed25519", "solana"),
    ("eddsa-ed25519", "aptos"),
    ("eddsa-ed25519", "sui"),
];

/// The demo's signed transactions, one per family and key, re-checked from
/// the unsigned bytes with independent code: what was signed is recomputed
/// from the chain's rule, the signature verified under the sender's key, the
/// wire transaction and id rebuilt; Bitcoin Core's interpreter runs the
/// Bitcoin spend.
fn check_transactions(report: &Value) {
    let mut seen = BTreeSet::new();
    for key in report["keys"].as_array().unwrap() {
        let scheme = key["scheme"].as_str().unwrap();
        for t in key["transactions"].as_array().unwrap() {
            let chain = t["chain"].as_str().unwrap();
            let derived = key["derivations"]
                .as_array()
                .unwrap()
                .iter()
                .find(|d| d["path"] == t["path"] && d["chain"] == t["chain"])
                .expect("the sender is a reported derivation");
            assert_eq!(t["address"], derived["address"]);
            check_transaction(scheme, chain, &h(&derived["public_key"]), t);
            seen.insert((scheme, chain));
        }
    }
    assert_eq!(seen, FAMILIES.into_iter().collect(), "one transaction per family");
}

fn check_transaction(scheme: &str, chain: &str, pk: &[u8], t: &Value) {
    let (unsigned, wire, id) = (h(&t["unsigned"]), h(&t["transaction"]), t["id"].as_str().unwrap());
    let signature = t.get("signature").map(h).unwrap_or_default();
    let signing_input = t.get("signing_input").map(h).unwrap_or_default();
    let ecdsa_verifies = |digest: &[u8], sig: &[u8]| (0..2).any(|rid| tk::verify_ecdsa(pk, digest, sig, rid).is_ok());
    match (scheme, chain) {
        (_, "bitcoin" | "litecoin") => {
            let psbt = bitcoin::Psbt::deserialize(&unsigned).unwrap();
            let spent: Vec<(Vec<u8>, u64)> = psbt
                .inputs
                .iter()
                .map(|i| i.witness_utxo.as_ref().map(|o| (o.script_pubkey.to_bytes(), o.value.to_sat())).unwrap())
                .collect();
            tk::bitcoin_core_verifies(&wire, 0, &spent).unwrap();
            let tx: bitcoin::Transaction = bitcoin::consensus::deserialize(&wire).unwrap();
            assert_eq!(tx.compute_txid().to_string(), id);
        }
        (_, "ethereum") => {
            assert_eq!(signing_input, tk::keccak256(&unsigned));
            assert!(ecdsa_verifies(&signing_input, &signature));
            assert_eq!(id, format!("0x{}", hex::encode(tk::keccak256(&wire))));
        }
        (_, "tron") => {
            assert_eq!(signing_input, tk::sha256(&unsigned));
            assert_eq!(signature.len(), 65);
            tk::verify_ecdsa(pk, &signing_input, &signature[..64], signature[64] - 27).unwrap();
            assert_eq!(id, hex::encode(&signing_input));
            assert!(wire.ends_with(&signature) && wire.windows(unsigned.len()).any(|w| w == unsigned));
        }
        (_, "cosmos") => {
            assert_eq!(signing_input, tk::sha256(&unsigned));
            assert!(ecdsa_verifies(&signing_input, &signature));
            assert_eq!(id, hex::encode_upper(tk::sha256(&wire)));
        }
        (_, "solana") => {
            assert_eq!(signing_input, unsigned);
            tk::verify_ed25519(pk, &unsigned, &signature).unwrap();
            assert_eq!(wire, [&[1u8][..], &signature, &unsigned].concat());
            assert_eq!(tk::solana_key(id).unwrap(), signature);
        }
        (_, "aptos") => {
            assert_eq!(signing_input, [&tk::sha3_256(b"APTOS::RawTransaction")[..], &unsigned].concat());
            tk::verify_ed25519(pk, &signing_input, &signature).unwrap();
            assert_eq!(wire, [&unsigned[..], &[0, 32], pk, &[64], &signature].concat());
            let hash = tk::sha3_256(&[&tk::sha3_256(b"APTOS::Transaction")[..], &[0], &wire].concat());
            assert_eq!(id, format!("0x{}", hex::encode(hash)));
        }
        (_, "sui") => {
            assert_eq!(signing_input, tk::blake2b256(&[&[0u8, 0, 0][..], &unsigned].concat()));
            assert_eq!(signature.len(), 97);
            assert_eq!((signature[0], &signature[65..]), (0, pk));
            tk::verify_ed25519(pk, &signing_input, &signature[1..65]).unwrap();
            let digest = tk::blake2b256(&[&b"TransactionData::"[..], &unsigned].concat());
            assert_eq!(tk::solana_key(id).unwrap(), digest, "the digest is base58");
        }
        other => panic!("unexpected transaction {other:?}"),
    }
}

#[test]
fn bad_arguments_fail_cleanly() {
    let output = Command::new(env!("CARGO_BIN_EXE_shardvault")).args(["simulate", "--no-such-flag"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--no-such-flag"));
    let help = Command::new(env!("CARGO_BIN_EXE_shardvault")).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("simulate") && help.contains("demo") && help.contains("--json"));
}
