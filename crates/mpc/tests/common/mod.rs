//! Helpers shared by the integration tests: run protocols in-process and
//! check results with libraries other than the ones that produced them.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};

use bitcoin::secp256k1::{self, ecdsa, schnorr, Message, PublicKey, Secp256k1, XOnlyPublicKey};
use shardvault_mpc::{
    derive_hardened, dkg, local, refresh, sign, DerivationPath, HardenedTweak, KeyId, KeyShare,
    PartyId, Scheme, SessionId, SignRequest, Signature, Threshold,
};

pub fn party(id: u8) -> PartyId {
    PartyId::new(id).unwrap()
}

pub fn set(ids: &[u8]) -> BTreeSet<PartyId> {
    ids.iter().map(|i| party(*i)).collect()
}

pub type Shares = BTreeMap<PartyId, KeyShare>;

pub fn run_dkg(scheme: Scheme, t: u8, n: u8) -> Shares {
    let threshold = Threshold::new(t, n).unwrap();
    let (key_id, session) = (KeyId::random(), SessionId::random());
    local::run(
        threshold
            .party_ids()
            .map(|me| dkg(scheme, key_id, threshold, me, session).unwrap())
            .collect(),
    )
    .unwrap()
}

pub fn run_refresh(shares: &Shares) -> Shares {
    let session = SessionId::random();
    local::run(
        shares
            .values()
            .map(|s| refresh(s, session).unwrap())
            .collect(),
    )
    .unwrap()
}

pub fn run_derive(shares: &Shares, path: &str) -> BTreeMap<PartyId, HardenedTweak> {
    let path: DerivationPath = path.parse().unwrap();
    let session = SessionId::random();
    local::run(
        shares
            .values()
            .map(|s| derive_hardened(s, &path, session).unwrap())
            .collect(),
    )
    .unwrap()
}

/// The message each scheme signs in tests: a 32-byte digest for the secp256k1 schemes.
pub fn message_for(scheme: Scheme, text: &str) -> Vec<u8> {
    match scheme {
        Scheme::EddsaEd25519 => text.as_bytes().to_vec(),
        _ => bitcoin::hashes::Hash::to_byte_array(
            <bitcoin::hashes::sha256::Hash as bitcoin::hashes::Hash>::hash(text.as_bytes()),
        )
        .to_vec(),
    }
}

pub fn try_sign(
    shares: &Shares,
    tweaks: Option<&BTreeMap<PartyId, HardenedTweak>>,
    path: &str,
    signers: &BTreeSet<PartyId>,
    message: &[u8],
) -> Result<Signature, shardvault_mpc::Error> {
    let path: DerivationPath = path.parse().unwrap();
    let session = SessionId::random();
    let started = signers
        .iter()
        .map(|p| {
            let request = SignRequest {
                share: &shares[p],
                hardened: tweaks.map(|t| &t[p]),
                path: &path,
                signers,
                message,
            };
            sign(&request, session)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let signatures = local::run(started)?;
    let first = signatures.values().next().unwrap().clone();
    assert!(
        signatures.values().all(|s| *s == first),
        "every signer must produce the same signature"
    );
    Ok(first)
}

pub fn run_sign(
    shares: &Shares,
    tweaks: Option<&BTreeMap<PartyId, HardenedTweak>>,
    path: &str,
    signers: &BTreeSet<PartyId>,
    message: &[u8],
) -> Signature {
    try_sign(shares, tweaks, path, signers, message).unwrap()
}

/// Checks a signature with an independent implementation: libsecp256k1 for
/// ECDSA (low-S, recovery id) and BIP340, ed25519-dalek's `verify_strict` for Ed25519.
pub fn verify_independently(signature: &Signature, message: &[u8]) -> Result<(), String> {
    let secp = Secp256k1::verification_only();
    match signature.scheme {
        Scheme::EcdsaSecp256k1 => {
            let key = PublicKey::from_slice(&signature.public_key).map_err(|e| e.to_string())?;
            let digest = Message::from_digest_slice(message).map_err(|e| e.to_string())?;
            let sig =
                ecdsa::Signature::from_compact(&signature.bytes).map_err(|e| e.to_string())?;
            let mut normalized = sig;
            normalized.normalize_s();
            if normalized != sig {
                return Err("signature is not low-S".into());
            }
            secp.verify_ecdsa(&digest, &sig, &key)
                .map_err(|e| e.to_string())?;
            let id = ecdsa::RecoveryId::from_i32(i32::from(
                signature.recovery_id.ok_or("no recovery id")?,
            ))
            .map_err(|e| e.to_string())?;
            let recoverable = ecdsa::RecoverableSignature::from_compact(&signature.bytes, id)
                .map_err(|e| e.to_string())?;
            let recovered = Secp256k1::new()
                .recover_ecdsa(&digest, &recoverable)
                .map_err(|e| e.to_string())?;
            if recovered != key {
                return Err("recovery id does not recover the signing key".into());
            }
            Ok(())
        }
        Scheme::SchnorrSecp256k1 => {
            let key =
                XOnlyPublicKey::from_slice(&signature.public_key).map_err(|e| e.to_string())?;
            let digest = Message::from_digest_slice(message).map_err(|e| e.to_string())?;
            let sig =
                schnorr::Signature::from_slice(&signature.bytes).map_err(|e| e.to_string())?;
            secp.verify_schnorr(&sig, &digest, &key)
                .map_err(|e| e.to_string())
        }
        Scheme::EddsaEd25519 => {
            let key_bytes: [u8; 32] = signature
                .public_key
                .as_slice()
                .try_into()
                .map_err(|_| "key length")?;
            let key =
                ed25519_dalek::VerifyingKey::from_bytes(&key_bytes).map_err(|e| e.to_string())?;
            let sig = ed25519_dalek::Signature::from_slice(&signature.bytes)
                .map_err(|e| e.to_string())?;
            key.verify_strict(message, &sig).map_err(|e| e.to_string())
        }
    }
}

/// The key a signature must verify under, given the derived public key of
/// its path: itself, or for BIP340 the BIP86 output key (computed by rust-bitcoin).
pub fn expected_verifier_key(scheme: Scheme, derived: &[u8]) -> Vec<u8> {
    match scheme {
        Scheme::SchnorrSecp256k1 => {
            let internal = XOnlyPublicKey::from(PublicKey::from_slice(derived).unwrap());
            let (output, _) =
                bitcoin::key::TapTweak::tap_tweak(internal, &Secp256k1::verification_only(), None);
            output.to_x_only_public_key().serialize().to_vec()
        }
        _ => derived.to_vec(),
    }
}

pub fn secp_public_from_secret(secret: &[u8; 32]) -> Vec<u8> {
    let key = secp256k1::SecretKey::from_slice(secret).unwrap();
    PublicKey::from_secret_key(&Secp256k1::signing_only(), &key)
        .serialize()
        .to_vec()
}
