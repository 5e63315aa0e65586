//! `recover --sign FILE`: signs a chain's unsigned transaction with the
//! recovered key, offline, through the same decoders, key checks and signing
//! inputs the nodes use (`shardvault_chains::Transaction`), and answers as
//! `shardvault sign` does. Every signature is verified by a second library
//! before it is printed.

use std::path::Path;

use anyhow::{bail, ensure, Context, Result};
use base64::Engine;
use shardvault_api::{ChainTransaction, EvmTransaction, SignedTransaction, UtxoTransaction};
use shardvault_chains::transaction::{Signed, Transaction, Unsigned};
use shardvault_chains::{Chain, KeyType};
use shardvault_mpc::{PartyId, RecoveredKey, Scheme, Signature};
use zeroize::Zeroizing;

use super::keys::Target;

/// The largest unsigned transaction read.
const MAX_TRANSACTION: u64 = 4 * 1024 * 1024;

/// What `--sign` was given.
#[derive(Debug)]
pub struct Request<'a> {
    /// The unsigned transaction's file.
    pub file: &'a Path,
    /// The chain (and network) it is for.
    pub target: &'a Target,
    /// EVM: the chain fixing the chain id, when not `--chain`'s.
    pub evm_chain: Option<&'a str>,
}

/// Signs the transaction in `request.file` with `key` (of key `key_id`,
/// recovered from the shares of `signers`).
pub fn sign(request: &Request<'_>, key_id: &str, key: &RecoveredKey, signers: &[u8]) -> Result<SignedTransaction> {
    let target = request.target;
    let file = request.file;
    let size = std::fs::metadata(file).with_context(|| format!("reading {}", file.display()))?.len();
    ensure!(size <= MAX_TRANSACTION, "{} is {size} bytes, more than an unsigned transaction", file.display());
    let contents = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let network = target.network.clone().unwrap_or_else(|| target.chain.default_network().to_string());
    let evm_chain = match request.evm_chain {
        Some(name) => name.to_string(),
        None if shardvault_chains::EVM_CHAINS.contains(&target.name.as_str()) => target.name.clone(),
        None => "ethereum".into(),
    };
    let bytes = transaction_bytes(target.chain, &contents)?;
    let unsigned = match target.chain {
        Chain::Bitcoin | Chain::Litecoin => Unsigned::Psbt { chain: target.chain, network: &network, psbt: &bytes },
        Chain::Ethereum => Unsigned::Evm {
            chain_id: shardvault_chains::evm::chain_id(&evm_chain, target.network.as_deref())?,
            preimage: &bytes,
        },
        chain => Unsigned::SingleSigner { chain, network: &network, bytes: &bytes },
    };
    let tx = Transaction::parse(unsigned).with_context(|| format!("decoding {}", file.display()))?;
    let summary = serde_json::to_value(tx.summary()?)?;
    let key_type = KeyType::from(key.scheme);
    // Refused unless this key may sign it: the inputs pay to it, or it is the sender.
    let inputs = tx.signing_inputs(key_type, &key.public_key).context("the transaction is not this key's to sign")?;
    let signers: Vec<PartyId> = signers.iter().filter_map(|p| PartyId::new(*p).ok()).collect();
    let signatures = inputs.iter().map(|input| signature(key, input, &signers)).collect::<Result<Vec<Signature>>>()?;
    let signed = tx.assemble(&key.public_key, &signatures)?;
    answer(target, &network, &evm_chain, key_id, key, summary, &signatures, &inputs, signed)
}

/// A PSBT is binary or base64; the others hex (`0x` optional) or base64
/// (as the Solana and Sui SDKs print them), or the raw bytes.
fn transaction_bytes(chain: Chain, contents: &[u8]) -> Result<Vec<u8>> {
    if contents.starts_with(b"psbt\xff") {
        return Ok(contents.to_vec());
    }
    let Ok(text) = std::str::from_utf8(contents) else { return Ok(contents.to_vec()) };
    let text = text.trim();
    if matches!(chain, Chain::Bitcoin | Chain::Litecoin) {
        return base64::engine::general_purpose::STANDARD.decode(text).context("the PSBT is neither binary nor base64");
    }
    let hex_text = text.strip_prefix("0x").unwrap_or(text);
    if let Ok(bytes) = hex::decode(hex_text) {
        return Ok(bytes);
    }
    base64::engine::general_purpose::STANDARD.decode(text).context("the transaction is neither hex nor base64")
}

/// One signature over `input` as the nodes make it for this scheme.
fn signature(key: &RecoveredKey, input: &[u8], signers: &[PartyId]) -> Result<Signature> {
    let (bytes, recovery_id, public_key) = match key.scheme {
        Scheme::EcdsaSecp256k1 => ecdsa(key, input)?,
        Scheme::SchnorrSecp256k1 => bip340_taproot(key, input)?,
        Scheme::EddsaEd25519 => ed25519(key, input)?,
    };
    Ok(Signature { scheme: key.scheme, bytes, recovery_id, public_key, signers: signers.to_vec() })
}

type Made = (Vec<u8>, Option<u8>, Vec<u8>);

/// ECDSA (RFC 6979, low S) over a 32-byte digest with k256; checked by libsecp256k1.
fn ecdsa(key: &RecoveredKey, digest: &[u8]) -> Result<Made> {
    let signing = k256::ecdsa::SigningKey::from_slice(key.expose_secret()).context("the recovered key")?;
    let (signature, recovery_id) = signing.sign_prehash_recoverable(digest).context("ECDSA signing")?;
    ensure!(signature.normalize_s().is_none(), "k256 gave a high-S signature");
    let bytes = signature.to_bytes().to_vec();
    let secp = bitcoin::secp256k1::Secp256k1::verification_only();
    let message = bitcoin::secp256k1::Message::from_digest_slice(digest)?;
    let public = bitcoin::secp256k1::PublicKey::from_slice(&key.public_key)?;
    secp.verify_ecdsa(&message, &bitcoin::secp256k1::ecdsa::Signature::from_compact(&bytes)?, &public)
        .context("libsecp256k1 rejects the signature")?;
    Ok((bytes, Some(recovery_id.to_byte()), key.public_key.clone()))
}

/// BIP340 under the BIP86-tweaked output key (what P2TR key-path spends
/// verify under), with libsecp256k1; checked by k256.
fn bip340_taproot(key: &RecoveredKey, digest: &[u8]) -> Result<Made> {
    use bitcoin::key::TapTweak;
    let secp = bitcoin::secp256k1::Secp256k1::new();
    let internal = bitcoin::secp256k1::Keypair::from_seckey_slice(&secp, key.expose_secret())?;
    let tweaked = internal.tap_tweak(&secp, None).to_keypair();
    let message = bitcoin::secp256k1::Message::from_digest_slice(digest)?;
    let signature = secp.sign_schnorr_no_aux_rand(&message, &tweaked);
    let output_key = tweaked.x_only_public_key().0.serialize();
    let bytes = signature.serialize().to_vec();
    let verifier = k256::schnorr::VerifyingKey::from_bytes(&output_key)?;
    let checked = k256::schnorr::Signature::try_from(bytes.as_slice())?;
    verifier.verify_raw(digest, &checked).map_err(|_| anyhow::anyhow!("k256 rejects the BIP340 signature"))?;
    Ok((bytes, None, output_key.to_vec()))
}

/// Ed25519 with the recovered scalar. A threshold key has no RFC 8032 seed,
/// so the nonce prefix RFC 8032 takes from the seed's hash is derived from
/// the scalar instead: `SHA-512("shardvault/recover/ed25519-prefix" ‖ s)[..32]`
/// (deterministic; any secret prefix gives valid signatures). Checked by ring.
fn ed25519(key: &RecoveredKey, message: &[u8]) -> Result<Made> {
    use ed25519_dalek::hazmat::{raw_sign, ExpandedSecretKey};
    use sha2::{Digest, Sha512};
    use zeroize::Zeroize;
    let scalar =
        Option::<curve25519_dalek::Scalar>::from(curve25519_dalek::Scalar::from_canonical_bytes(*key.expose_secret()))
            .context("the recovered Ed25519 scalar is not canonical")?;
    let mut hash = Sha512::new();
    hash.update(b"shardvault/recover/ed25519-prefix");
    hash.update(key.expose_secret());
    let mut digest = Zeroizing::new([0u8; 64]);
    digest.copy_from_slice(&hash.finalize());
    let mut hash_prefix = [0u8; 32];
    hash_prefix.copy_from_slice(&digest[..32]);
    let expanded = ExpandedSecretKey { scalar, hash_prefix };
    hash_prefix.zeroize();
    let verifying = ed25519_dalek::VerifyingKey::from(&expanded);
    if verifying.as_bytes()[..] != key.public_key[..] {
        bail!("the recovered scalar is not the key's");
    }
    let signature = raw_sign::<Sha512>(&expanded, message, &verifying).to_bytes().to_vec();
    ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, &key.public_key)
        .verify(message, &signature)
        .map_err(|_| anyhow::anyhow!("ring rejects the Ed25519 signature"))?;
    Ok((signature, None, key.public_key.clone()))
}

/// The answer `shardvault sign` prints for the same transaction.
#[allow(clippy::too_many_arguments)]
fn answer(
    target: &Target,
    network: &str,
    evm_chain: &str,
    key_id: &str,
    key: &RecoveredKey,
    summary: serde_json::Value,
    signatures: &[Signature],
    inputs: &[Vec<u8>],
    signed: Signed,
) -> Result<SignedTransaction> {
    let (key_id, path) = (key_id.to_string(), key.path.to_string());
    let (transaction, id) = (signed.transaction_hex(), signed.id().to_string());
    let signers = |s: &Signature| s.signers.iter().map(|p| p.get()).collect::<Vec<u8>>();
    Ok(match (signed, signatures, inputs) {
        (Signed::Psbt(signed), signatures, _) => SignedTransaction::Utxo(UtxoTransaction {
            key_id,
            chain: target.chain.name().into(),
            network: network.into(),
            path,
            summary,
            txid: signed.txid,
            tx_hex: signed.tx_hex,
            psbt: signed.psbt_base64,
            transaction,
            id,
            signers: signatures.iter().map(signers).collect(),
            request_id: None,
        }),
        (Signed::Evm(signed), [signature], [digest]) => SignedTransaction::Evm(EvmTransaction {
            key_id,
            chain: evm_chain.into(),
            chain_id: shardvault_chains::evm::chain_id(evm_chain, target.network.as_deref())?,
            path,
            summary,
            digest: hex::encode(digest),
            signature: hex::encode(&signature.bytes),
            recovery_id: signature.recovery_id.context("no recovery id")?,
            raw: signed.raw,
            hash: signed.hash,
            transaction,
            id,
            signers: signers(signature),
            failed_attempts: Vec::new(),
            request_id: None,
        }),
        (Signed::SingleSigner(signed), [signature], [signing_input]) => {
            let base64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
            SignedTransaction::Other(ChainTransaction {
                key_id,
                chain: target.chain.name().into(),
                network: network.into(),
                path,
                summary,
                signing_input: hex::encode(signing_input),
                signature: hex::encode(&signed.signature),
                transaction_base64: matches!(target.chain, Chain::Solana | Chain::Sui)
                    .then(|| base64(&signed.transaction)),
                signature_base64: (target.chain == Chain::Sui).then(|| base64(&signed.signature)),
                transaction,
                id,
                signers: signers(signature),
                failed_attempts: Vec::new(),
                request_id: None,
            })
        }
        _ => bail!("the signed transaction is not of the family it was decoded as"),
    })
}
