//! A 2-of-3 threshold key run in-process, for the chain tests.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};

use shardvault_mpc::OsRng;
use shardvault_mpc::{
    derive_hardened, dkg, extended_public_key, local, sign, DerivationPath, HardenedTweak, KeyId, KeyShare, PartyId,
    Scheme, SessionId, SignRequest, Signature, Threshold,
};

pub struct MpcKey {
    shares: BTreeMap<PartyId, KeyShare>,
    tweaks: BTreeMap<PartyId, HardenedTweak>,
    path: DerivationPath,
    /// The public key at `path` (the internal key for BIP340).
    pub public_key: Vec<u8>,
}

/// A fresh 2-of-3 key, with `path` derived when it has a hardened prefix.
pub fn mpc_key(scheme: Scheme, path: &str) -> MpcKey {
    let t = Threshold::new(2, 3).unwrap();
    let (key_id, session) = (KeyId::random(), SessionId::random());
    let shares: BTreeMap<_, _> =
        local::run(t.party_ids().map(|me| dkg(scheme, key_id, t, me, session, &mut OsRng).unwrap()).collect()).unwrap();
    let path: DerivationPath = path.parse().unwrap();
    let prefix = path.hardened_prefix();
    let tweaks = if prefix.components().is_empty() {
        BTreeMap::new()
    } else {
        let session = SessionId::random();
        local::run(shares.values().map(|s| derive_hardened(s, &prefix, session, &mut OsRng).unwrap()).collect())
            .unwrap()
    };
    let p1 = PartyId::new(1).unwrap();
    let public_key = extended_public_key(&shares[&p1], tweaks.get(&p1), &path).unwrap().public_key;
    MpcKey { shares, tweaks, path, public_key }
}

impl MpcKey {
    /// Signs `digest` with the two given parties.
    pub fn sign(&self, digest: &[u8; 32], signers: [u8; 2]) -> Signature {
        self.sign_message(digest, signers)
    }

    /// Signs `message` (a 32-byte digest for ECDSA and BIP340) with the two given parties.
    pub fn sign_message(&self, message: &[u8], signers: [u8; 2]) -> Signature {
        let signers: BTreeSet<PartyId> = signers.into_iter().map(|p| PartyId::new(p).unwrap()).collect();
        let session = SessionId::random();
        let started = signers
            .iter()
            .map(|p| {
                let request = SignRequest {
                    share: &self.shares[p],
                    hardened: self.tweaks.get(p),
                    path: &self.path,
                    signers: &signers,
                    message,
                };
                sign(&request, session, &mut OsRng).unwrap()
            })
            .collect();
        local::run(started).unwrap().into_values().next().unwrap()
    }
}
