//! Independent checks for tests: every signature, digest and address that
//! shardvault produces is re-checked here with code that did not produce it.
//!
//! - ECDSA and BIP340: libsecp256k1 (the `secp256k1` crate, via `bitcoin`),
//!   whereas shardvault signs with DKLs23 over `k256` and FROST.
//! - Ed25519: `ed25519-dalek`'s `verify_strict`, whereas shardvault signs with `frost-ed25519`.
//! - Digests and addresses: written out here from the specifications with
//!   `sha2`/`sha3`, whereas shardvault uses `alloy-primitives` and `bitcoin`.
#![forbid(unsafe_code)]

use bitcoin::secp256k1::{ecdsa, schnorr, Message, PublicKey, Secp256k1, XOnlyPublicKey};
use sha2::{Digest, Sha256};
use sha3::{Keccak256, Sha3_256};

type Result<T = ()> = std::result::Result<T, String>;

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// ECDSA over secp256k1: valid, low-S, and the recovery id recovers the key.
pub fn verify_ecdsa(public_key: &[u8], digest: &[u8], signature: &[u8], recovery_id: u8) -> Result {
    let key = PublicKey::from_slice(public_key).map_err(err)?;
    let message = Message::from_digest_slice(digest).map_err(err)?;
    let sig = ecdsa::Signature::from_compact(signature).map_err(err)?;
    let mut normalized = sig;
    normalized.normalize_s();
    if normalized != sig {
        return Err("signature is not low-S".into());
    }
    Secp256k1::verification_only().verify_ecdsa(&message, &sig, &key).map_err(err)?;
    if recover_ecdsa(digest, signature, recovery_id)? != public_key {
        return Err("recovery id does not recover the signing key".into());
    }
    Ok(())
}

/// The SEC1-compressed key an ECDSA signature recovers to.
pub fn recover_ecdsa(digest: &[u8], signature: &[u8], recovery_id: u8) -> Result<Vec<u8>> {
    let message = Message::from_digest_slice(digest).map_err(err)?;
    let id = ecdsa::RecoveryId::from_i32(i32::from(recovery_id)).map_err(err)?;
    let recoverable = ecdsa::RecoverableSignature::from_compact(signature, id).map_err(err)?;
    let key = Secp256k1::new().recover_ecdsa(&message, &recoverable).map_err(err)?;
    Ok(key.serialize().to_vec())
}

/// BIP340 Schnorr under a 32-byte x-only key.
pub fn verify_bip340(x_only_key: &[u8], message: &[u8], signature: &[u8]) -> Result {
    let key = XOnlyPublicKey::from_slice(x_only_key).map_err(err)?;
    let message = Message::from_digest_slice(message).map_err(err)?;
    let sig = schnorr::Signature::from_slice(signature).map_err(err)?;
    Secp256k1::verification_only().verify_schnorr(&sig, &message, &key).map_err(err)
}

/// Ed25519 with strict (RFC 8032 + no malleability) verification.
pub fn verify_ed25519(public_key: &[u8], message: &[u8], signature: &[u8]) -> Result {
    let key: [u8; 32] = public_key.try_into().map_err(|_| "Ed25519 keys are 32 bytes")?;
    let key = ed25519_dalek::VerifyingKey::from_bytes(&key).map_err(err)?;
    let sig = ed25519_dalek::Signature::from_slice(signature).map_err(err)?;
    key.verify_strict(message, &sig).map_err(err)
}

/// BIP86: the x-only output key of an internal key with no script tree.
pub fn bip86_output_key(internal_key: &[u8]) -> Result<Vec<u8>> {
    let internal = XOnlyPublicKey::from(PublicKey::from_slice(internal_key).map_err(err)?);
    let (output, _) = bitcoin::key::TapTweak::tap_tweak(internal, &Secp256k1::verification_only(), None);
    Ok(output.to_x_only_public_key().serialize().to_vec())
}

/// The public key of a secp256k1 secret.
pub fn secp256k1_public_key(secret: &[u8]) -> Result<Vec<u8>> {
    let key = bitcoin::secp256k1::SecretKey::from_slice(secret).map_err(err)?;
    Ok(PublicKey::from_secret_key(&Secp256k1::signing_only(), &key).serialize().to_vec())
}

/// EIP-191 `personal_sign` digest.
pub fn eip191_digest(message: &[u8]) -> [u8; 32] {
    let mut hash = Keccak256::new();
    hash.update(format!("\x19Ethereum Signed Message:\n{}", message.len()).as_bytes());
    hash.update(message);
    hash.finalize().into()
}

/// Bitcoin Core `signmessage` digest (messages under 253 bytes).
pub fn bitcoin_message_digest(message: &[u8]) -> Result<[u8; 32]> {
    let len = u8::try_from(message.len()).ok().filter(|l| *l < 253).ok_or("message too long for this check")?;
    let mut data = b"\x18Bitcoin Signed Message:\n".to_vec();
    data.push(len);
    data.extend_from_slice(message);
    Ok(Sha256::digest(Sha256::digest(&data)).into())
}

/// SHA-256.
pub fn sha256(message: &[u8]) -> [u8; 32] {
    Sha256::digest(message).into()
}

/// EIP-55 address of a SEC1 public key, written out from the EIP.
pub fn eip55_address(public_key: &[u8]) -> Result<String> {
    let key = PublicKey::from_slice(public_key).map_err(err)?;
    let hash = Keccak256::digest(&key.serialize_uncompressed()[1..]);
    let lower = hex::encode(&hash[12..]);
    let checksum = hex::encode(Keccak256::digest(lower.as_bytes()));
    let mixed: String = lower
        .chars()
        .zip(checksum.chars())
        .map(
            |(c, h)| {
                if c.is_ascii_alphabetic() && h.to_digit(16).unwrap_or(0) >= 8 {
                    c.to_ascii_uppercase()
                } else {
                    c
                }
            },
        )
        .collect();
    Ok(format!("0x{mixed}"))
}

/// Aptos single-key Ed25519 address.
pub fn aptos_address(public_key: &[u8]) -> String {
    format!("0x{}", hex::encode(Sha3_256::new().chain_update(public_key).chain_update([0u8]).finalize()))
}

/// The raw key behind a Solana address.
pub fn solana_key(address: &str) -> Result<Vec<u8>> {
    bs58::decode(address).into_vec().map_err(err)
}

/// The witness program of a Bitcoin mainnet address, and its version.
pub fn bitcoin_witness_program(address: &str) -> Result<(u8, Vec<u8>)> {
    let address: bitcoin::Address<bitcoin::address::NetworkUnchecked> = address.parse().map_err(err)?;
    let address = address.require_network(bitcoin::Network::Bitcoin).map_err(err)?;
    let program = address.witness_program().ok_or("not a segwit address")?;
    Ok((program.version().to_num(), program.program().as_bytes().to_vec()))
}

/// HASH160 (RIPEMD-160 of SHA-256).
pub fn hash160(data: &[u8]) -> Vec<u8> {
    use bitcoin::hashes::{hash160, Hash};
    hash160::Hash::hash(data).to_byte_array().to_vec()
}

/// Bitcoin Core's own script interpreter (libbitcoinconsensus) accepts input
/// `index` of `tx` spending `spent[index]`, given every spent output
/// (`(script_pubkey, amount)`, needed for Taproot).
pub fn bitcoin_core_verifies(tx: &[u8], index: usize, spent: &[(Vec<u8>, u64)]) -> Result {
    let utxos: Vec<bitcoinconsensus::Utxo> = spent
        .iter()
        .map(|(script, value)| bitcoinconsensus::Utxo {
            script_pubkey: script.as_ptr(),
            script_pubkey_len: u32::try_from(script.len()).unwrap_or(u32::MAX),
            value: i64::try_from(*value).unwrap_or(i64::MAX),
        })
        .collect();
    let (script, amount) = spent.get(index).ok_or("no such input")?;
    let flags = bitcoinconsensus::VERIFY_ALL_PRE_TAPROOT | bitcoinconsensus::VERIFY_TAPROOT;
    bitcoinconsensus::verify_with_flags(script, *amount, tx, Some(&utxos), index, flags).map_err(|e| format!("{e:?}"))
}

/// keccak256 (the sha3 crate's Keccak, not alloy's).
pub fn keccak256(data: &[u8]) -> [u8; 32] {
    Keccak256::digest(data).into()
}

/// BLAKE2b-256 (the `blake2` crate).
pub fn blake2b256(data: &[u8]) -> [u8; 32] {
    use blake2::digest::consts::U32;
    blake2::Blake2b::<U32>::digest(data).into()
}

/// Sui Ed25519 address: `0x` ‖ hex(blake2b-256(0x00 ‖ pk)).
pub fn sui_address(public_key: &[u8]) -> String {
    format!("0x{}", hex::encode(blake2b256(&[&[0u8][..], public_key].concat())))
}

/// Tron address, written out: base58(0x41 ‖ keccak(pk)[12..] ‖ sha256d(…)[..4]).
pub fn tron_address(public_key: &[u8]) -> Result<String> {
    let key = PublicKey::from_slice(public_key).map_err(err)?;
    let mut payload = vec![0x41];
    payload.extend_from_slice(&Keccak256::digest(&key.serialize_uncompressed()[1..])[12..]);
    let check = Sha256::digest(Sha256::digest(&payload));
    payload.extend_from_slice(&check[..4]);
    Ok(bs58::encode(payload).into_string())
}

/// The human-readable part and data of a bech32 string.
pub fn bech32_decode(text: &str) -> Result<(String, Vec<u8>)> {
    let (hrp, data) = bitcoin::bech32::decode(text).map_err(err)?;
    Ok((hrp.to_string(), data))
}

/// sha3-256.
pub fn sha3_256(data: &[u8]) -> [u8; 32] {
    Sha3_256::digest(data).into()
}

/// Litecoin Core's `signmessage` digest, written out: sha256d(0x19 ‖
/// "Litecoin Signed Message:\n" ‖ compact-size(len) ‖ message).
pub fn litecoin_message_digest(message: &[u8]) -> [u8; 32] {
    let magic = b"Litecoin Signed Message:\n";
    let mut data = vec![magic.len() as u8];
    data.extend_from_slice(magic);
    match message.len() {
        n if n < 0xfd => data.push(n as u8),
        n if n <= 0xffff => {
            data.push(0xfd);
            data.extend_from_slice(&(n as u16).to_le_bytes());
        }
        n => {
            data.push(0xfe);
            data.extend_from_slice(&(n as u32).to_le_bytes());
        }
    }
    data.extend_from_slice(message);
    Sha256::digest(Sha256::digest(&data)).into()
}

/// The human-readable part, witness version and program of a SegWit address (any hrp).
pub fn segwit_decode(address: &str) -> Result<(String, u8, Vec<u8>)> {
    let (hrp, version, program) = bitcoin::bech32::segwit::decode(address).map_err(err)?;
    Ok((hrp.to_string(), version.to_u8(), program))
}

/// BIP340 tagged hash: sha256(sha256(tag) ‖ sha256(tag) ‖ data).
pub fn tagged_hash(tag: &str, data: &[u8]) -> [u8; 32] {
    let tag = Sha256::digest(tag.as_bytes());
    Sha256::new().chain_update(tag).chain_update(tag).chain_update(data).finalize().into()
}

/// BIP-322 "simple" for a P2TR address with x-only output key `output_key`,
/// written out from BIP-322 and BIP341: the key-path SIGHASH_DEFAULT sighash
/// of `to_sign` (one input spending `to_spend:0`, one 0-value OP_RETURN output).
pub fn bip322_taproot_sighash(output_key: &[u8], message: &[u8]) -> Result<[u8; 32]> {
    if output_key.len() != 32 {
        return Err("x-only keys are 32 bytes".into());
    }
    let script_pubkey = [&[0x51u8, 0x20][..], output_key].concat();
    let message_hash = tagged_hash("BIP0322-signed-message", message);
    // to_spend, without witness: version 0, one input (null prevout,
    // scriptSig OP_0 PUSH32 hash, sequence 0), one 0-value output, locktime 0.
    let mut to_spend = vec![0u8; 4];
    to_spend.push(1);
    to_spend.extend_from_slice(&[0; 32]);
    to_spend.extend_from_slice(&[0xff; 4]);
    to_spend.extend_from_slice(&[34, 0x00, 0x20]);
    to_spend.extend_from_slice(&message_hash);
    to_spend.extend_from_slice(&[0; 4]);
    to_spend.push(1);
    to_spend.extend_from_slice(&[0; 8]);
    to_spend.push(34);
    to_spend.extend_from_slice(&script_pubkey);
    to_spend.extend_from_slice(&[0; 4]);
    let txid: [u8; 32] = Sha256::digest(Sha256::digest(&to_spend)).into();
    // BIP341 SigMsg, hash type 0x00, key path, input 0.
    let mut sig_msg = vec![0u8, 0x00];
    sig_msg.extend_from_slice(&[0; 8]); // nVersion, nLockTime
    sig_msg.extend_from_slice(&Sha256::digest([&txid[..], &[0; 4]].concat())); // sha_prevouts
    sig_msg.extend_from_slice(&Sha256::digest([0u8; 8])); // sha_amounts
    sig_msg.extend_from_slice(&Sha256::digest([&[34u8][..], &script_pubkey].concat())); // sha_scriptpubkeys
    sig_msg.extend_from_slice(&Sha256::digest([0u8; 4])); // sha_sequences
    sig_msg.extend_from_slice(&Sha256::digest([0u8, 0, 0, 0, 0, 0, 0, 0, 1, 0x6a])); // sha_outputs
    sig_msg.push(0); // spend type: key path, no annex
    sig_msg.extend_from_slice(&[0; 4]); // input index
    Ok(tagged_hash("TapSighash", &sig_msg))
}

/// A Solana off-chain message v0 (agave's proposal) with zero application
/// domain and `signer` its one signer, written out from the proposal.
pub fn solana_offchain_message(signer: &[u8], message: &[u8]) -> Vec<u8> {
    let total = 16 + 1 + 32 + 1 + 1 + 32 + 2 + message.len();
    let format = match (message.iter().all(|b| (0x20..=0x7e).contains(b)), total <= 1232) {
        (true, true) => 0,
        (false, true) => 1,
        _ => 2,
    };
    let mut out = b"\xffsolana offchain".to_vec();
    out.push(0);
    out.extend_from_slice(&[0; 32]);
    out.extend_from_slice(&[format, 1]);
    out.extend_from_slice(signer);
    out.extend_from_slice(&(message.len() as u16).to_le_bytes());
    out.extend_from_slice(message);
    out
}

/// Cosmos ADR-036: sha256 of the amino JSON sign doc (keys sorted) holding
/// one `sign/MsgSignData` of `data` from `public_key`'s `hrp` address.
pub fn adr036_digest(public_key: &[u8], hrp: &str, data: &[u8]) -> Result<[u8; 32]> {
    use base64::Engine;
    let hrp = bitcoin::bech32::Hrp::parse(hrp).map_err(err)?;
    let signer = bitcoin::bech32::encode::<bitcoin::bech32::Bech32>(hrp, &hash160(public_key)).map_err(err)?;
    let data = base64::engine::general_purpose::STANDARD.encode(data);
    let doc = format!(
        r#"{{"account_number":"0","chain_id":"","fee":{{"amount":[],"gas":"0"}},"memo":"","msgs":[{{"type":"sign/MsgSignData","value":{{"data":"{data}","signer":"{signer}"}}}}],"sequence":"0"}}"#
    );
    Ok(Sha256::digest(doc.as_bytes()).into())
}
