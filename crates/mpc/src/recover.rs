//! Offline recovery (break-glass): rebuild a root or child private key from
//! key shares and chain seeds, as the recovery tool does from a backup.
//! docs/HD-DERIVATION.md, "Recovery": t shares interpolate `x`; every party's
//! chain seed gives `τ = Σ_k a_{k,0}`; the public tweaks of the non-hardened
//! levels follow.

use std::collections::BTreeMap;
use std::fmt;

use zeroize::Zeroize;

use crate::backup::ShareBackup;
use crate::child_chain_code;
use crate::error::Error;
use crate::group::{lagrange_at_zero, Ed25519, Group, Secp256k1};
use crate::hd::{coefficient, context};
use crate::DerivationPath;
use crate::{ChainSeed, Secret32};
use crate::{Epoch, PartyId, Scheme};
use shardvault_types::derive::ckd_pub;

/// A whole private key. It exists only in the recovery tool.
#[derive(Clone)]
pub struct RecoveredKey {
    /// The key's scheme.
    pub scheme: Scheme,
    /// Its derivation path.
    pub path: DerivationPath,
    /// Its public key (same encoding as [`KeyShare::public_key`]).
    pub public_key: Vec<u8>,
    secret: Secret32,
}

impl fmt::Debug for RecoveredKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecoveredKey")
            .field("scheme", &self.scheme)
            .field("path", &self.path.to_string())
            .field("public_key", &hex::encode(&self.public_key))
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl RecoveredKey {
    /// The private scalar (big-endian for secp256k1, little-endian for
    /// ed25519: not an Ed25519 seed). Do not log it.
    pub fn expose_secret(&self) -> &[u8; 32] {
        self.secret.expose_secret()
    }
}

/// Recovers the private key at `path` from backups of one key, each checked
/// first ([`ShareBackup::check`]). The root needs any t shares of one epoch;
/// a hardened path needs every party's chain seed, i.e. a backup (of any
/// epoch) from every party.
pub fn recover_key(shares: &[ShareBackup], path: &DerivationPath) -> Result<RecoveredKey, Error> {
    recover_key_with_seeds(shares, &BTreeMap::new(), path)
}

/// As [`recover_key`], with the chain seeds of parties whose backups are
/// missing rebuilt elsewhere (from the seed shares every backup carries,
/// docs/HD-DERIVATION.md, "Recovery from any t backups"). A party's own
/// backup's seed is used where both exist.
pub fn recover_key_with_seeds(
    shares: &[ShareBackup],
    seeds: &BTreeMap<PartyId, ChainSeed>,
    path: &DerivationPath,
) -> Result<RecoveredKey, Error> {
    let first = shares.first().ok_or_else(|| Error::InvalidInput("no shares given".into()))?;
    for share in shares {
        share.check()?;
    }
    match first.scheme {
        Scheme::EcdsaSecp256k1 | Scheme::SchnorrSecp256k1 => recover_in::<Secp256k1>(shares, seeds, path),
        Scheme::EddsaEd25519 => recover_in::<Ed25519>(shares, seeds, path),
    }
}

fn recover_in<G: Group>(
    shares: &[ShareBackup],
    seeds: &BTreeMap<PartyId, ChainSeed>,
    path: &DerivationPath,
) -> Result<RecoveredKey, Error> {
    let first = shares.first().ok_or_else(|| Error::InvalidInput("no shares given".into()))?;
    let threshold = first.threshold()?;
    let mut by_party: BTreeMap<PartyId, &ShareBackup> = BTreeMap::new();
    for share in shares {
        if share.key_id != first.key_id
            || share.scheme != first.scheme
            || share.root_public_key != first.root_public_key
            || share.threshold()? != threshold
        {
            return Err(Error::InvalidInput(format!(
                "a share of key {} does not belong with key {}",
                share.key_id, first.key_id
            )));
        }
        // Of one party, keep the newest epoch's share.
        match by_party.get(&share.party) {
            Some(kept) if kept.epoch >= share.epoch => {}
            _ => {
                by_party.insert(share.party, share);
            }
        }
    }
    // x from t shares of one epoch (the newest we have).
    let epoch = by_party.values().map(|s| s.epoch).fold(first.epoch, Epoch::max);
    let current: Vec<&ShareBackup> =
        by_party.values().copied().filter(|s| s.epoch == epoch).take(usize::from(threshold.threshold())).collect();
    if current.len() < usize::from(threshold.threshold()) {
        return Err(Error::InvalidInput(format!(
            "need {} shares of epoch {epoch}, have {}",
            threshold.threshold(),
            current.len()
        )));
    }
    let xs: Vec<u8> = current.iter().map(|s| s.party.get()).collect();
    let mut secret = G::scalar_from_u64(0);
    for share in &current {
        let lambda = lagrange_at_zero::<G>(share.party.get(), &xs)
            .ok_or_else(|| Error::InvalidInput("duplicate parties".into()))?;
        let s = G::scalar_from_bytes(share.secret_share.expose_secret())
            .ok_or_else(|| Error::decode("key share", "secret share"))?;
        secret = secret + lambda * s;
    }
    if G::point_to_bytes(&G::mul_base(&secret)) != first.root_public_key {
        secret.zeroize();
        return Err(Error::InvalidInput("the shares do not interpolate to the key's public key".into()));
    }
    // Hardened prefix: τ = Σ_k a_{k,0}, needing every party's chain seed.
    let prefix = path.hardened_prefix();
    if !prefix.components().is_empty() {
        let ctx = context(first.scheme, &first.key_id, &first.root_public_key, &prefix);
        for party in threshold.party_ids() {
            let seed = by_party.get(&party).map(|share| &share.chain_seed).or_else(|| seeds.get(&party));
            let seed = seed.ok_or_else(|| {
                Error::InvalidInput(format!(
                    "hardened path {prefix} needs party {party}'s chain seed: its backup, or t seed shares of it"
                ))
            })?;
            let mut a0 = coefficient::<G>(seed, &ctx, 0);
            secret = secret + a0;
            a0.zeroize();
        }
    }
    let mut point = G::mul_base(&secret);
    let mut chain_code = child_chain_code(&G::point_to_bytes(&point), &prefix);
    for index in path.normal_suffix() {
        let child = ckd_pub::<G>(&point, &chain_code, *index)?;
        secret = secret + child.tweak;
        point = child.point;
        chain_code = child.chain_code;
    }
    let key = RecoveredKey {
        scheme: first.scheme,
        path: path.clone(),
        public_key: G::point_to_bytes(&point),
        secret: Secret32::new(G::scalar_to_bytes(&secret)),
    };
    secret.zeroize();
    Ok(key)
}
