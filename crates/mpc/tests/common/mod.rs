//! Helpers shared by the integration tests: run protocols in-process and
//! check results with libraries other than the ones that produced them.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};

use shardvault_mpc::OsRng;
use shardvault_mpc::{
    derive_hardened, dkg, local, refresh, sign, DerivationPath, HardenedTweak, KeyId, KeyShare, PartyId, Scheme,
    SessionId, SignRequest, Signature, Threshold,
};
use shardvault_testkit as tk;

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
        threshold.party_ids().map(|me| dkg(scheme, key_id, threshold, me, session, &mut OsRng).unwrap()).collect(),
    )
    .unwrap()
}

pub fn run_refresh(shares: &Shares) -> Shares {
    let session = SessionId::random();
    local::run(shares.values().map(|s| refresh(s, session, &mut OsRng).unwrap()).collect()).unwrap()
}

pub fn run_derive(shares: &Shares, path: &str) -> BTreeMap<PartyId, HardenedTweak> {
    let path: DerivationPath = path.parse().unwrap();
    let session = SessionId::random();
    local::run(shares.values().map(|s| derive_hardened(s, &path, session, &mut OsRng).unwrap()).collect()).unwrap()
}

/// The message each scheme signs in tests: a 32-byte digest for the secp256k1 schemes.
pub fn message_for(scheme: Scheme, text: &str) -> Vec<u8> {
    match scheme {
        Scheme::EddsaEd25519 => text.as_bytes().to_vec(),
        _ => bitcoin::hashes::Hash::to_byte_array(<bitcoin::hashes::sha256::Hash as bitcoin::hashes::Hash>::hash(
            text.as_bytes(),
        ))
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
            let request =
                SignRequest { share: &shares[p], hardened: tweaks.map(|t| &t[p]), path: &path, signers, message };
            sign(&request, session, &mut OsRng)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let signatures = local::run(started)?;
    let first = signatures.values().next().unwrap().clone();
    assert!(signatures.values().all(|s| *s == first), "every signer must produce the same signature");
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

/// Checks a signature with an independent implementation (shardvault-testkit:
/// libsecp256k1 for ECDSA and BIP340, ed25519-dalek's `verify_strict` for Ed25519).
pub fn verify_independently(signature: &Signature, message: &[u8]) -> Result<(), String> {
    match signature.scheme {
        Scheme::EcdsaSecp256k1 => {
            let recovery_id = signature.recovery_id.ok_or("ECDSA signature without recovery id")?;
            tk::verify_ecdsa(&signature.public_key, message, &signature.bytes, recovery_id)
        }
        Scheme::SchnorrSecp256k1 => tk::verify_bip340(&signature.public_key, message, &signature.bytes),
        Scheme::EddsaEd25519 => tk::verify_ed25519(&signature.public_key, message, &signature.bytes),
    }
}

/// The key a signature must verify under, given the derived public key of
/// its path: itself, or for BIP340 the BIP86 output key (computed by rust-bitcoin).
pub fn expected_verifier_key(scheme: Scheme, derived: &[u8]) -> Vec<u8> {
    match scheme {
        Scheme::SchnorrSecp256k1 => tk::bip86_output_key(derived).unwrap(),
        _ => derived.to_vec(),
    }
}
