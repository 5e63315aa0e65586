//! MPC-signed EVM transfers executed by a real EVM: py-evm, through
//! eth-tester (PyPI), run by `tools/evm_execute.py`. The recipient's balance
//! must grow by exactly what was sent, and the EVM must see the wallet's
//! address as the sender. And MPC-signed EIP-191 and EIP-712 signatures,
//! whose signer eth_account recovers (`tools/eth_recover.py`).
//!
//! Run by `.ci/run`'s "EVM execution" step, which installs py-evm into a
//! virtualenv and sets SHARDVAULT_EVM_PYTHON:
//! `SHARDVAULT_EVM_PYTHON=/path/to/venv/bin/python cargo test -p shardvault-chains --test evm_execution -- --ignored`

use std::io::Write;
use std::process::{Command, Stdio};

use alloy_consensus::{SignableTransaction, TxEip1559, TxLegacy};
use alloy_primitives::{Address, TxKind, U256};
use shardvault_chains::evm::UnsignedEvmTx;
use shardvault_chains::{Chain, KeyType};
use shardvault_mpc::Scheme;

mod common;
use common::mpc_key;

#[test]
#[ignore = "needs py-evm; run by .ci/run's EVM execution step with SHARDVAULT_EVM_PYTHON set"]
fn mpc_signed_transfers_execute_on_py_evm() {
    let key = mpc_key(Scheme::EcdsaSecp256k1, "m/9'/0'/60'/0'/0'/0'");
    let public_key = key.public_key.clone();
    let sender = Chain::Ethereum.address(KeyType::EcdsaSecp256k1, &public_key).unwrap();
    let recipient = Address::repeat_byte(0x35);

    let sign_preimage = |preimage: Vec<u8>, signers: [u8; 2]| -> String {
        let tx = UnsignedEvmTx::parse(&preimage, 1).unwrap();
        let digest = tx.digest();
        let signature = key.sign(&digest, signers);
        tx.assemble(&signature.bytes, signature.recovery_id.unwrap()).unwrap().raw
    };
    let eip1559 = TxEip1559 {
        chain_id: 1,
        nonce: 0,
        gas_limit: 21_000,
        max_fee_per_gas: 30_000_000_000,
        max_priority_fee_per_gas: 1_000_000_000,
        to: TxKind::Call(recipient),
        value: U256::from(100_000_000_000_000_000u64),
        access_list: Default::default(),
        input: Default::default(),
    };
    let legacy = TxLegacy {
        chain_id: Some(1),
        nonce: 1,
        gas_price: 30_000_000_000,
        gas_limit: 21_000,
        to: TxKind::Call(recipient),
        value: U256::from(50_000_000_000_000_000u64),
        input: Default::default(),
    };
    let (mut a, mut b) = (Vec::new(), Vec::new());
    eip1559.encode_for_signing(&mut a);
    legacy.encode_for_signing(&mut b);
    let raw = vec![sign_preimage(a, [1, 2]), sign_preimage(b, [2, 3])];

    let request = serde_json::json!({ "chain_id": 1, "sender": sender, "to": recipient.to_checksum(None), "raw": raw });
    let result = python_json("evm_execute.py", &request);
    assert_eq!(result["recipient_gain_wei"].as_u64(), Some(150_000_000_000_000_000));
    for seen in result["senders"].as_array().unwrap() {
        assert_eq!(seen.as_str().unwrap().to_lowercase(), sender.to_lowercase());
    }
}

fn python_json(script: &str, request: &serde_json::Value) -> serde_json::Value {
    let python =
        std::env::var("SHARDVAULT_EVM_PYTHON").expect("set SHARDVAULT_EVM_PYTHON to a python with eth-tester[py-evm]");
    let script = format!("{}/../../tools/{script}", env!("CARGO_MANIFEST_DIR"));
    let mut child = Command::new(python)
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(request.to_string().as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
#[ignore = "needs eth_account; run by .ci/run's EVM execution step with SHARDVAULT_EVM_PYTHON set"]
fn eth_account_recovers_the_wallet_from_eip191_and_eip712_signatures() {
    use shardvault_chains::MessageFormat;
    let key = mpc_key(Scheme::EcdsaSecp256k1, "m");
    let address = Chain::Ethereum.address(KeyType::EcdsaSecp256k1, &key.public_key).unwrap();
    let sign_digest = |digest: [u8; 32]| -> String {
        let signature = key.sign(&digest, [1, 3]);
        format!("{}{:02x}", hex::encode(&signature.bytes), 27 + signature.recovery_id.unwrap())
    };
    let message = b"I approve transfer 42";
    let typed_text =
        std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../../test-vectors/eip712-mail.json")).unwrap();
    let typed: serde_json::Value = serde_json::from_slice(&typed_text).unwrap();
    let checks = serde_json::json!([
        { "kind": "eip191", "message_hex": hex::encode(message),
          "signature": sign_digest(MessageFormat::Eip191.signing_input(&[], message).unwrap().try_into().unwrap()) },
        { "kind": "eip712", "typed_data": typed,
          "signature": sign_digest(MessageFormat::Eip712.signing_input(&[], &typed_text).unwrap().try_into().unwrap()) },
    ]);
    let recovered = python_json("eth_recover.py", &checks);
    assert_eq!(recovered, serde_json::json!([address, address]));
}
