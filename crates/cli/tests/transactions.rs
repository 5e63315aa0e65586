//! Real transactions through the networked cluster: a PSBT paying out of a
//! P2WPKH (threshold ECDSA) or P2TR (threshold BIP340) address is signed by
//! the node processes and Bitcoin Core's script interpreter accepts it; EVM,
//! Solana and Cosmos transactions are signed only when they are the key's own.

use std::str::FromStr;

use bitcoin::absolute::LockTime;
use bitcoin::psbt::Psbt;
use bitcoin::transaction::Version;
use bitcoin::{Address, Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Txid, Witness};
use shardvault_testkit as tk;

mod common;
use common::{Devnet, EXE};

/// An unsigned PSBT spending 100 000 sat held by `script` to an external
/// address; a P2WPKH input carries its (made-up) previous transaction too.
fn psbt_spending(script: &ScriptBuf) -> String {
    let input = |previous_output| TxIn {
        previous_output,
        script_sig: ScriptBuf::new(),
        sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
        witness: Witness::new(),
    };
    let utxo = TxOut { value: Amount::from_sat(100_000), script_pubkey: script.clone() };
    let other = TxOut { value: Amount::from_sat(5_000), script_pubkey: ScriptBuf::new_op_return([1u8; 4]) };
    let previous = Transaction {
        version: Version::TWO,
        lock_time: LockTime::ZERO,
        input: vec![input(OutPoint { txid: Txid::from_str(&"ab".repeat(32)).unwrap(), vout: 0 })],
        output: vec![other, utxo.clone()],
    };
    let tx = Transaction {
        version: Version::TWO,
        lock_time: LockTime::ZERO,
        input: vec![input(OutPoint { txid: previous.compute_txid(), vout: 1 })],
        output: vec![TxOut {
            value: Amount::from_sat(98_500),
            script_pubkey: Address::from_str("bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu")
                .unwrap()
                .assume_checked()
                .script_pubkey(),
        }],
    };
    let mut psbt = Psbt::from_unsigned_tx(tx).unwrap();
    psbt.inputs[0].witness_utxo = Some(utxo);
    if script.is_p2wpkh() {
        psbt.inputs[0].non_witness_utxo = Some(previous);
    }
    base64::Engine::encode(&base64::engine::general_purpose::STANDARD, psbt.serialize())
}

#[test]
fn psbts_signed_by_the_cluster_pass_bitcoin_core_script_checks() {
    let dir = tempfile::tempdir().unwrap();
    let net = Devnet::start(EXE, dir.path());
    for scheme in ["ecdsa-secp256k1", "schnorr-secp256k1"] {
        let key = net.cli(&["key", "create", "--scheme", scheme, "--threshold", "2", "--parties", "3"]).unwrap();
        let key_id = key["key_id"].as_str().unwrap().to_string();
        let address = net.cli(&["address", "--key", &key_id, "--chain", "bitcoin", "--index", "0"]).unwrap();
        let script = Address::from_str(address["address"].as_str().unwrap()).unwrap().assume_checked().script_pubkey();
        let file = dir.path().join(format!("{scheme}.psbt"));
        std::fs::write(&file, psbt_spending(&script)).unwrap();
        let signed = net
            .cli(&["sign", "--key", &key_id, "--chain", "bitcoin", "--index", "0", "--psbt", file.to_str().unwrap()])
            .unwrap();
        assert_eq!(signed["summary"]["fee_sat"], 1_500);
        let tx = hex::decode(signed["tx_hex"].as_str().unwrap()).unwrap();
        tk::bitcoin_core_verifies(&tx, 0, &[(script.to_bytes(), 100_000)]).unwrap_or_else(|e| panic!("{scheme}: {e}"));
        let decoded: Transaction = bitcoin::consensus::deserialize(&tx).unwrap();
        assert_eq!(decoded.compute_txid().to_string(), signed["txid"].as_str().unwrap());

        // A PSBT spending someone else's coins: every node refuses to sign it.
        let other =
            ScriptBuf::new_p2wpkh(&bitcoin::WPubkeyHash::from_str("0000000000000000000000000000000000000001").unwrap());
        std::fs::write(&file, psbt_spending(&other)).unwrap();
        let refused = net
            .cli(&[
                "sign",
                "--key",
                &key_id,
                "--chain",
                "bitcoin",
                "--index",
                "0",
                "--psbt",
                file.to_str().unwrap(),
                "--signers",
                "1,2",
            ])
            .unwrap_err();
        assert!(refused.contains("does not pay to this key") || refused.contains("cannot be signed"), "{refused}");
    }
}

/// An EIP-1559 transfer signed by the cluster: libsecp256k1 recovers the
/// signer of the returned digest and signature to the key's address, and the
/// raw transaction hashes to the returned hash. A preimage for another chain
/// id is refused by the nodes.
#[test]
fn evm_transactions_signed_by_the_cluster_recover_to_the_wallet() {
    use alloy_consensus::{SignableTransaction, TxEip1559};
    let dir = tempfile::tempdir().unwrap();
    let net = Devnet::start(EXE, dir.path());
    let key = net.cli(&["key", "create", "--scheme", "ecdsa-secp256k1", "--threshold", "2", "--parties", "3"]).unwrap();
    let key_id = key["key_id"].as_str().unwrap().to_string();
    let address = net.cli(&["address", "--key", &key_id, "--chain", "ethereum", "--index", "0"]).unwrap();
    let preimage = |chain_id: u64| {
        let tx = TxEip1559 {
            chain_id,
            nonce: 7,
            gas_limit: 21_000,
            max_fee_per_gas: 40_000_000_000,
            max_priority_fee_per_gas: 2_000_000_000,
            to: alloy_primitives::TxKind::Call(alloy_primitives::Address::repeat_byte(0x35)),
            value: alloy_primitives::U256::from(12_345u64),
            access_list: Default::default(),
            input: Default::default(),
        };
        let mut bytes = Vec::new();
        tx.encode_for_signing(&mut bytes);
        hex::encode(bytes)
    };
    let signed =
        net.cli(&["sign", "--key", &key_id, "--chain", "ethereum", "--index", "0", "--tx-hex", &preimage(1)]).unwrap();
    assert_eq!(signed["chain_id"], 1);
    assert_eq!(signed["summary"]["nonce"], 7);
    let digest = hex::decode(signed["digest"].as_str().unwrap()).unwrap();
    assert_eq!(digest, tk::keccak256(&hex::decode(preimage(1)).unwrap()).to_vec());
    let signature = hex::decode(signed["signature"].as_str().unwrap()).unwrap();
    let recovered = tk::recover_ecdsa(&digest, &signature, signed["recovery_id"].as_u64().unwrap() as u8).unwrap();
    assert_eq!(tk::eip55_address(&recovered).unwrap(), address["address"].as_str().unwrap());
    let raw = hex::decode(&signed["raw"].as_str().unwrap()[2..]).unwrap();
    assert_eq!(format!("0x{}", hex::encode(tk::keccak256(&raw))), signed["hash"].as_str().unwrap());
    // A BSC transaction presented as Ethereum (or the reverse) is refused.
    let refused = net
        .cli(&["sign", "--key", &key_id, "--chain", "ethereum", "--index", "0", "--tx-hex", &preimage(56)])
        .unwrap_err();
    assert!(refused.contains("chain id"), "{refused}");
    net.cli(&[
        "sign",
        "--key",
        &key_id,
        "--chain",
        "ethereum",
        "--index",
        "0",
        "--tx-hex",
        &preimage(56),
        "--evm-chain",
        "bsc",
    ])
    .unwrap();
    // The EVM chain's own name works as the chain.
    let bsc =
        net.cli(&["sign", "--key", &key_id, "--chain", "bsc", "--index", "0", "--tx-hex", &preimage(56)]).unwrap();
    assert_eq!(bsc["chain_id"], 56);
}

/// Solana and Cosmos transactions through the cluster, by the CLI: signed when
/// they spend from the key at the requested path; refused by the nodes when
/// they spend from another key's address, and when the network is not theirs.
#[test]
fn single_signer_chains_sign_only_their_own_transactions() {
    use shardvault_chains::{sample, Chain, KeyType};
    let dir = tempfile::tempdir().unwrap();
    let net = Devnet::start(EXE, dir.path());
    let create = |scheme: &str| {
        let key = net.cli(&["key", "create", "--scheme", scheme, "--threshold", "2", "--parties", "3"]).unwrap();
        key["key_id"].as_str().unwrap().to_string()
    };
    let public_key = |key: &str, chain: &str, index: &str| {
        let a = net.cli(&["address", "--key", key, "--chain", chain, "--index", index]).unwrap();
        hex::decode(a["public_key"].as_str().unwrap()).unwrap()
    };
    let ed = create("eddsa-ed25519");
    let (mine, other) = (public_key(&ed, "solana", "0"), public_key(&ed, "solana", "1"));
    let unsigned = |pk: &[u8]| {
        let tx = sample::transfer(Chain::Solana, KeyType::Ed25519, pk).unwrap().unsigned;
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, tx)
    };
    let sign = |key: &str, chain: &str, extra: &[&str]| {
        net.cli(&[&["sign", "--key", key, "--chain", chain, "--index", "0"], extra].concat())
    };
    let signed = sign(&ed, "solana", &["--tx-base64", &unsigned(&mine)]).unwrap();
    assert_eq!(signed["summary"]["amount"], "1000000");
    let wire = hex::decode(signed["transaction"].as_str().unwrap()).unwrap();
    let signature = hex::decode(signed["signature"].as_str().unwrap()).unwrap();
    tk::verify_ed25519(&mine, &wire[65..], &signature).unwrap();
    assert_eq!(tk::solana_key(signed["id"].as_str().unwrap()).unwrap(), signature);
    let refused = sign(&ed, "solana", &["--tx-base64", &unsigned(&other)]).unwrap_err();
    assert!(refused.contains("fee payer"), "{refused}");

    let ec = create("ecdsa-secp256k1");
    let osmo = net.cli(&["address", "--key", &ec, "--chain", "cosmos", "--index", "0", "--bech32-prefix", "osmo"]);
    let osmo = osmo.unwrap()["address"].as_str().unwrap().to_string();
    let (hrp, hash) = tk::bech32_decode(&osmo).unwrap();
    assert_eq!((hrp.as_str(), hash), ("osmo", tk::hash160(&public_key(&ec, "cosmos", "0"))));
    let doc = sample::transfer(Chain::Cosmos, KeyType::EcdsaSecp256k1, &public_key(&ec, "cosmos", "0")).unwrap();
    let doc = hex::encode(doc.unsigned);
    let signed = sign(&ec, "cosmos", &["--tx-hex", &doc]).unwrap();
    assert_eq!(signed["network"], "cosmoshub-4");
    let refused = sign(&ec, "cosmos", &["--tx-hex", &doc, "--network", "osmosis-1"]).unwrap_err();
    assert!(refused.contains("chain id"), "{refused}");
}
