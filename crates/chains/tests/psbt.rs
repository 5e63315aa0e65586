//! A Bitcoin transaction spending a P2WPKH and a P2TR output, each signed by a
//! 2-of-3 threshold key at a hardened-derived path, accepted by Bitcoin Core's
//! script interpreter; and PSBTs that must not be signed, refused.

use std::str::FromStr;

use bitcoin::absolute::LockTime;
use bitcoin::psbt::Psbt;
use bitcoin::secp256k1::{PublicKey, Secp256k1, XOnlyPublicKey};
use bitcoin::transaction::Version;
use bitcoin::{
    Amount, CompressedPublicKey, Network, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Txid, Witness,
};
use shardvault_chains::psbt::{InputKind, UnsignedPsbt, UtxoNetwork};
use shardvault_chains::{Chain, KeyType};
use shardvault_mpc::Scheme;
use shardvault_testkit as tk;

mod common;
use common::mpc_key;

const PATH: &str = "m/9'/0'/0'/0'/0'/0'";

fn p2wpkh(public_key: &[u8]) -> ScriptBuf {
    ScriptBuf::new_p2wpkh(&CompressedPublicKey(PublicKey::from_slice(public_key).unwrap()).wpubkey_hash())
}

fn p2tr(internal: &[u8]) -> ScriptBuf {
    ScriptBuf::new_p2tr(
        &Secp256k1::verification_only(),
        XOnlyPublicKey::from(PublicKey::from_slice(internal).unwrap()),
        None,
    )
}

/// A made-up transaction paying `amount` to `script` (the transaction an input spends).
fn previous_transaction(i: usize, script: &ScriptBuf, amount: u64) -> Transaction {
    Transaction {
        version: Version::TWO,
        lock_time: LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint { txid: Txid::from_str(&format!("{:064x}", i + 1)).unwrap(), vout: 0 },
            script_sig: ScriptBuf::new(),
            sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
            witness: Witness::new(),
        }],
        output: vec![TxOut { value: Amount::from_sat(amount), script_pubkey: script.clone() }],
    }
}

/// A PSBT spending `spent` to one external address, with witness_utxo set,
/// and for P2WPKH inputs the previous transaction (non_witness_utxo) too.
fn psbt(spent: &[(ScriptBuf, u64)], pay: u64) -> Psbt {
    let previous: Vec<Transaction> =
        spent.iter().enumerate().map(|(i, (script, amount))| previous_transaction(i, script, *amount)).collect();
    let input = |previous: &Transaction| TxIn {
        previous_output: OutPoint { txid: previous.compute_txid(), vout: 0 },
        script_sig: ScriptBuf::new(),
        sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
        witness: Witness::new(),
    };
    let destination =
        bitcoin::Address::from_str("bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu").unwrap().assume_checked();
    let tx = Transaction {
        version: Version::TWO,
        lock_time: LockTime::ZERO,
        input: previous.iter().map(input).collect(),
        output: vec![TxOut { value: Amount::from_sat(pay), script_pubkey: destination.script_pubkey() }],
    };
    let mut psbt = Psbt::from_unsigned_tx(tx).unwrap();
    for ((input, (script, amount)), previous) in psbt.inputs.iter_mut().zip(spent).zip(previous) {
        input.witness_utxo = Some(TxOut { value: Amount::from_sat(*amount), script_pubkey: script.clone() });
        if script.is_p2wpkh() {
            input.non_witness_utxo = Some(previous);
        }
    }
    psbt
}

const MAINNET: UtxoNetwork = UtxoNetwork::Bitcoin(Network::Bitcoin);

#[test]
fn an_mpc_signed_transaction_passes_bitcoin_core_script_checks() {
    signed_spend_passes_script_checks(MAINNET, "bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu");
}

/// Litecoin's SegWit v0 and Taproot script rules are Bitcoin's, so Bitcoin
/// Core's interpreter checks Litecoin spends too; only the address differs
/// (the destination's `ltc1q…` form as `bip_utils` encodes it).
#[test]
fn an_mpc_signed_litecoin_transaction_passes_the_same_script_checks() {
    let network = shardvault_chains::psbt::network(Chain::Litecoin, "mainnet").unwrap();
    signed_spend_passes_script_checks(network, "ltc1qcr8te4kr609gcawutmrza0j4xv80jy8z4nqduv");
}

fn signed_spend_passes_script_checks(network: UtxoNetwork, destination: &str) {
    let (ecdsa, schnorr) = (mpc_key(Scheme::EcdsaSecp256k1, PATH), mpc_key(Scheme::SchnorrSecp256k1, PATH));
    let spent = vec![(p2wpkh(&ecdsa.public_key), 50_000), (p2tr(&schnorr.public_key), 70_000)];
    let unsigned = psbt(&spent, 117_000);
    let base64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, unsigned.serialize());
    let mut parsed = UnsignedPsbt::parse(base64.as_bytes(), network).unwrap();
    let summary = parsed.summary().unwrap();
    assert_eq!(summary.fee_sat, 3_000);
    assert_eq!(summary.inputs.iter().map(|i| i.kind).collect::<Vec<_>>(), vec![InputKind::P2wpkh, InputKind::P2tr]);
    assert_eq!(summary.outputs[0].address.as_deref(), Some(destination));

    for (index, (key, key_type)) in
        [(&ecdsa, KeyType::EcdsaSecp256k1), (&schnorr, KeyType::SchnorrSecp256k1)].into_iter().enumerate()
    {
        let digest = parsed.input_digest(index).unwrap();
        digest.check_key(key_type, &key.public_key).unwrap();
        let signature = key.sign(&digest.digest, [1, 3]).bytes;
        parsed.add_signature(index, &signature, &key.public_key).unwrap();
    }
    let signed = parsed.finalize().unwrap();
    let tx = hex::decode(&signed.tx_hex).unwrap();
    let spent_raw: Vec<(Vec<u8>, u64)> = spent.iter().map(|(s, a)| (s.to_bytes(), *a)).collect();
    for index in 0..2 {
        tk::bitcoin_core_verifies(&tx, index, &spent_raw).unwrap_or_else(|e| panic!("input {index}: {e}"));
    }
    // Change a byte of what was signed (the amount paid): Bitcoin Core refuses it.
    let mut tampered: Transaction = bitcoin::consensus::deserialize(&tx).unwrap();
    tampered.output[0].value = Amount::from_sat(117_001);
    let tampered = bitcoin::consensus::serialize(&tampered);
    assert!(tk::bitcoin_core_verifies(&tampered, 0, &spent_raw).is_err());
    assert!(tk::bitcoin_core_verifies(&tampered, 1, &spent_raw).is_err());
}

#[test]
fn psbts_that_must_not_be_signed_are_refused() {
    let ecdsa = mpc_key(Scheme::EcdsaSecp256k1, PATH);
    let other = mpc_key(Scheme::EcdsaSecp256k1, PATH);
    let spent = vec![(p2wpkh(&ecdsa.public_key), 10_000)];
    let bytes = psbt(&spent, 9_000).serialize();
    // An input that pays to someone else's key: refused before signing.
    let parsed = UnsignedPsbt::parse(&bytes, MAINNET).unwrap();
    assert!(parsed.input_digest(0).unwrap().check_key(KeyType::EcdsaSecp256k1, &other.public_key).is_err());
    assert!(parsed.input_digest(0).unwrap().check_key(KeyType::SchnorrSecp256k1, &ecdsa.public_key).is_err());
    // Trailing bytes, garbage, a missing witness_utxo, outputs above inputs.
    let mut trailing = bytes.clone();
    trailing.push(0);
    assert!(UnsignedPsbt::parse(&trailing, MAINNET).is_err());
    assert!(UnsignedPsbt::parse(b"cHNidP8 not base64 !", MAINNET).is_err());
    let mut no_utxo = psbt(&spent, 9_000);
    no_utxo.inputs[0].witness_utxo = None;
    assert!(UnsignedPsbt::parse(&no_utxo.serialize(), MAINNET).is_err());
    let overspend = UnsignedPsbt::parse(&psbt(&spent, 11_000).serialize(), MAINNET).unwrap();
    assert!(overspend.summary().is_err());
    // Unsigned inputs cannot be finalised.
    assert!(parsed.finalize().is_err());
}

/// The segwit-v0 amount lie: a BIP143 signature commits to its own input's
/// amount only, so a witness_utxo that understates it makes the fee look
/// smaller than it is. The previous transaction is the source of truth.
#[test]
fn a_p2wpkh_amount_lie_or_a_missing_previous_transaction_is_refused() {
    let ecdsa = mpc_key(Scheme::EcdsaSecp256k1, PATH);
    let schnorr = mpc_key(Scheme::SchnorrSecp256k1, PATH);
    let spent = vec![(p2wpkh(&ecdsa.public_key), 60_000), (p2tr(&schnorr.public_key), 40_000)];
    let honest = psbt(&spent, 99_000);
    assert_eq!(UnsignedPsbt::parse(&honest.serialize(), MAINNET).unwrap().summary().unwrap().fee_sat, 1_000);

    // witness_utxo says 50 000 sat, the previous transaction pays 60 000: the
    // summary would show a 1 000 sat fee for a 11 000 sat one.
    let mut lie = honest.clone();
    lie.inputs[0].witness_utxo.as_mut().unwrap().value = Amount::from_sat(50_000);
    lie.unsigned_tx.output[0].value = Amount::from_sat(89_000);
    let error = UnsignedPsbt::parse(&lie.serialize(), MAINNET).unwrap_err().to_string();
    assert!(error.contains("does not match output 0 of its previous transaction"), "{error}");

    // No previous transaction: refused, saying what to add.
    let mut bare = honest.clone();
    bare.inputs[0].non_witness_utxo = None;
    let error = UnsignedPsbt::parse(&bare.serialize(), MAINNET).unwrap_err().to_string();
    assert!(error.contains("input 0 is P2WPKH") && error.contains("non_witness_utxo"), "{error}");

    // A previous transaction that is not the one spent (another txid).
    let mut wrong = honest.clone();
    wrong.inputs[0].non_witness_utxo = Some(previous_transaction(7, &spent[0].0, 60_000));
    let error = UnsignedPsbt::parse(&wrong.serialize(), MAINNET).unwrap_err().to_string();
    assert!(error.contains("non_witness_utxo is transaction"), "{error}");

    // The outpoint names an output the previous transaction does not have.
    let mut out_of_range = honest.clone();
    out_of_range.unsigned_tx.input[0].previous_output.vout = 3;
    let error = UnsignedPsbt::parse(&out_of_range.serialize(), MAINNET).unwrap_err().to_string();
    assert!(error.contains("has no output 3"), "{error}");

    // Taproot needs no previous transaction (BIP341 commits to all amounts), and
    // one that is there is checked the same way.
    assert!(honest.inputs[1].non_witness_utxo.is_none());
    let mut taproot_lie = honest.clone();
    taproot_lie.inputs[1].non_witness_utxo = Some(previous_transaction(1, &spent[1].0, 45_000));
    taproot_lie.unsigned_tx.input[1].previous_output.txid =
        taproot_lie.inputs[1].non_witness_utxo.as_ref().unwrap().compute_txid();
    assert!(UnsignedPsbt::parse(&taproot_lie.serialize(), MAINNET).is_err());
}

/// Through the one transaction interface: a PSBT is decoded once, however
/// many inputs are then checked, hashed and signed; the sighashes through one
/// cache are each input's own; the assembled spend passes Bitcoin Core.
#[test]
fn the_transaction_interface_decodes_a_psbt_once_and_signs_every_input() {
    use shardvault_chains::transaction::{Signed, Summary};
    use shardvault_chains::{Transaction, Unsigned};
    let ecdsa = mpc_key(Scheme::EcdsaSecp256k1, PATH);
    let spent: Vec<(ScriptBuf, u64)> = [20_000, 30_000, 40_000].map(|a| (p2wpkh(&ecdsa.public_key), a)).to_vec();
    let base64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, psbt(&spent, 88_000).serialize());
    let before = shardvault_chains::psbt::decodes_on_this_thread();
    let tx = Transaction::parse(Unsigned::Psbt { chain: Chain::Bitcoin, network: "bitcoin", psbt: base64.as_bytes() })
        .unwrap();
    let Summary::Psbt(summary) = tx.summary().unwrap() else { panic!("not a PSBT summary") };
    assert_eq!(summary.fee_sat, 2_000);
    assert_eq!(tx.signature_count(), 3);
    let inputs = tx.signing_inputs(KeyType::EcdsaSecp256k1, &ecdsa.public_key).unwrap();
    let mut signatures = Vec::new();
    for (index, input) in inputs.iter().enumerate() {
        assert_eq!(&tx.signing_input(index, KeyType::EcdsaSecp256k1, &ecdsa.public_key).unwrap(), input);
        signatures.push(ecdsa.sign(&<[u8; 32]>::try_from(input.as_slice()).unwrap(), [2, 3]));
    }
    // What the nodes are handed is the binary PSBT.
    let Unsigned::Psbt { psbt: binary, .. } = tx.unsigned() else { panic!("not a PSBT") };
    assert!(binary.starts_with(b"psbt\xff"));
    let Signed::Psbt(signed) = tx.assemble(&ecdsa.public_key, &signatures).unwrap() else { panic!("not a PSBT") };
    assert_eq!(shardvault_chains::psbt::decodes_on_this_thread() - before, 1, "one decode for three inputs");
    let tx = hex::decode(&signed.tx_hex).unwrap();
    let spent_raw: Vec<(Vec<u8>, u64)> = spent.iter().map(|(s, a)| (s.to_bytes(), *a)).collect();
    for index in 0..3 {
        tk::bitcoin_core_verifies(&tx, index, &spent_raw).unwrap_or_else(|e| panic!("input {index}: {e}"));
    }
}

/// One sighash cache for all inputs gives each input's own sighash, for
/// P2WPKH and P2TR inputs mixed; a key may sign only the inputs that pay to it.
#[test]
fn sighashes_through_one_cache_are_each_inputs_own_and_keys_sign_only_their_inputs() {
    use shardvault_chains::{Transaction, Unsigned};
    let ecdsa = mpc_key(Scheme::EcdsaSecp256k1, PATH);
    let schnorr = mpc_key(Scheme::SchnorrSecp256k1, PATH);
    let spent = vec![
        (p2tr(&schnorr.public_key), 10_000),
        (p2wpkh(&ecdsa.public_key), 20_000),
        (p2tr(&schnorr.public_key), 30_000),
        (p2wpkh(&ecdsa.public_key), 40_000),
    ];
    let bytes = psbt(&spent, 99_000).serialize();
    let parsed = UnsignedPsbt::parse(&bytes, MAINNET).unwrap();
    let all = parsed.input_digests().unwrap();
    assert_eq!(all, (0..4).map(|i| parsed.input_digest(i).unwrap()).collect::<Vec<_>>());

    let tx = Transaction::parse(Unsigned::Psbt { chain: Chain::Bitcoin, network: "mainnet", psbt: &bytes }).unwrap();
    for (index, (key, key_type)) in [
        (&schnorr, KeyType::SchnorrSecp256k1),
        (&ecdsa, KeyType::EcdsaSecp256k1),
        (&schnorr, KeyType::SchnorrSecp256k1),
        (&ecdsa, KeyType::EcdsaSecp256k1),
    ]
    .into_iter()
    .enumerate()
    {
        assert_eq!(tx.signing_input(index, key_type, &key.public_key).unwrap(), all[index].digest.to_vec());
    }
    let error = tx.check_key(KeyType::EcdsaSecp256k1, &ecdsa.public_key).unwrap_err().to_string();
    assert!(error.contains("input 0") && error.contains("cannot be signed by"), "{error}");
    let error = tx.signing_input(0, KeyType::SchnorrSecp256k1, &ecdsa.public_key).unwrap_err().to_string();
    assert!(error.contains("does not pay to this key"), "{error}");
    assert!(tx.signing_input(4, KeyType::EcdsaSecp256k1, &ecdsa.public_key).is_err());
    // A PSBT for a chain without PSBTs, or a network of another chain, is refused.
    assert!(Transaction::parse(Unsigned::Psbt { chain: Chain::Ethereum, network: "mainnet", psbt: &bytes }).is_err());
    assert!(Transaction::parse(Unsigned::Psbt { chain: Chain::Litecoin, network: "signet", psbt: &bytes }).is_err());
}
