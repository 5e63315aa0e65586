//! MPC-signed transactions checked by each chain's own SDK
//! (`tools/chain-sdks/prove.mjs`): the SDK builds the unsigned transaction
//! for the threshold key's address (and must derive the same address), we
//! decode, review and sign it exactly as a node does, and the SDK verifies
//! the signature over what it says is signed and recomputes the id; for
//! Solana, litesvm executes the transfers.
//!
//! Run by `.ci/run`'s "Chain SDKs" step, which runs `npm install` in
//! tools/chain-sdks and sets SHARDVAULT_CHAIN_SDKS to that folder:
//! `SHARDVAULT_CHAIN_SDKS=$PWD/tools/chain-sdks cargo test --workspace --test chain_sdks -- --ignored`

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use serde_json::{json, Value};
use shardvault_chains::tx::UnsignedTx;
use shardvault_chains::{Chain, KeyType};
use shardvault_mpc::Scheme;

mod common;
use common::mpc_key;

/// One conversation with `prove.mjs` for `chain`; returns the SDK's verdict.
fn prove(chain: Chain, network: Option<&str>, path: &str) -> Value {
    let dir = std::env::var("SHARDVAULT_CHAIN_SDKS").expect("SHARDVAULT_CHAIN_SDKS names tools/chain-sdks");
    let scheme = match chain {
        Chain::Solana | Chain::Aptos | Chain::Sui => Scheme::EddsaEd25519,
        _ => Scheme::EcdsaSecp256k1,
    };
    let key = mpc_key(scheme, path);
    let mut child = Command::new("node")
        .arg(format!("{dir}/prove.mjs"))
        .arg(chain.name())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("node runs");
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut read = || {
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let value: Value = serde_json::from_str(&line).unwrap_or_else(|_| panic!("prove.mjs said {line:?}"));
        assert!(value.get("error").is_none(), "{chain}: {}", value["error"]);
        value
    };
    writeln!(stdin, "{}", json!({ "public_key": hex::encode(&key.public_key) })).unwrap();
    let built = read();
    let key_type = KeyType::from(scheme);
    assert_eq!(built["address"], chain.address(key_type, &key.public_key).unwrap(), "{chain}: the SDK's address");
    for (prefix, address) in built["prefixes"].as_object().into_iter().flatten() {
        assert_eq!(address, &shardvault_chains::cosmos_address(&key.public_key, prefix).unwrap(), "{prefix}");
    }
    let mut signed = Vec::new();
    for (i, unsigned) in built["unsigned"].as_array().unwrap().iter().enumerate() {
        let bytes = hex::decode(unsigned.as_str().unwrap()).unwrap();
        let tx = UnsignedTx::parse(chain, network, &bytes).unwrap();
        tx.check_key(key_type, &key.public_key).unwrap();
        let summary = tx.summary();
        assert!(
            summary.from.is_some() && summary.amount.is_some(),
            "{chain}: the summary names who pays what: {summary:?}"
        );
        if chain == Chain::Solana && i == 2 {
            assert_eq!(summary.kind, "solana-v0");
            assert!(summary.to.as_deref().unwrap().ends_with("[0]"), "the recipient is a table entry: {summary:?}");
        }
        if chain == Chain::Tron && i == 1 {
            assert_eq!((summary.kind.as_str(), summary.amount.as_deref()), ("tron-trc20-transfer", Some("5000000")));
            assert_eq!(summary.to.as_deref(), Some("TJRabPrwbZy45sbavfcjinPJC18kjpRTv8"));
        }
        let signature = key.sign_message(tx.signing_input(), [1 + (i % 2) as u8, 3]);
        let out = tx.assemble(&key.public_key, &signature.bytes, signature.recovery_id).unwrap();
        signed.push(json!({ "transaction": hex::encode(&out.transaction), "signature": hex::encode(&out.signature), "id": out.id }));
    }
    // A message signed in the chain's own message format: what the nodes
    // sign for `sign --message-hex` (Aptos: the AIP-62 full message).
    let text = match chain {
        Chain::Aptos => {
            shardvault_chains::message::aptos_full_message("I control this address: shardvault", "1").into_bytes()
        }
        _ => b"I control this address: shardvault".to_vec(),
    };
    let format = chain.message_format(key_type).unwrap();
    let input = format.signing_input(&key.public_key, &text).unwrap();
    let signature = key.sign_message(&input, [2, 3]);
    let bytes = match chain {
        Chain::Tron => [&signature.bytes[..], &[27 + signature.recovery_id.unwrap()]].concat(),
        Chain::Sui => [&[0u8][..], &signature.bytes, &key.public_key].concat(),
        _ => signature.bytes,
    };
    let signed_message =
        json!({ "text": hex::encode(&text), "signature": hex::encode(bytes), "format": format.name() });
    writeln!(stdin, "{}", json!({ "signed": signed, "message": signed_message })).unwrap();
    let verdict = read();
    assert!(child.wait().unwrap().success());
    assert_eq!(verdict["ok"], true);
    verdict
}

#[test]
#[ignore = "needs the chains' SDKs (npm); run by .ci/run's Chain SDKs step"]
fn solana_transfers_execute_on_litesvm() {
    let verdict = prove(Chain::Solana, None, "m/44'/501'/0'/0'");
    assert_eq!(verdict["executed"].as_array().unwrap().len(), 3, "legacy, v0, v0 with a lookup table");
    assert_eq!(verdict["recipient_balance"], "7500000");
}

#[test]
#[ignore = "needs the chains' SDKs (npm); run by .ci/run's Chain SDKs step"]
fn aptos_sdk_verifies_a_transfer() {
    prove(Chain::Aptos, Some("testnet"), "m/44'/637'/0'/0'/0'");
}

#[test]
#[ignore = "needs the chains' SDKs (npm); run by .ci/run's Chain SDKs step"]
fn sui_sdk_verifies_a_payment_and_a_personal_message() {
    prove(Chain::Sui, None, "m/44'/784'/0'/0'/0'");
}

#[test]
#[ignore = "needs the chains' SDKs (npm); run by .ci/run's Chain SDKs step"]
fn cosmjs_verifies_a_send() {
    prove(Chain::Cosmos, None, "m/44'/118'/0'/0/0");
}

#[test]
#[ignore = "needs the chains' SDKs (npm); run by .ci/run's Chain SDKs step"]
fn tronweb_recovers_the_signer_of_a_transfer_and_a_message() {
    let verdict = prove(Chain::Tron, None, "m/44'/195'/0'/0/0");
    assert_eq!(verdict["txids"].as_array().unwrap().len(), 2, "a TRX and a TRC-20 transfer");
}
