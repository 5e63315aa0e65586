//! Share repair: rebuilding a lost party's share of a key, at its own party
//! index, from t helpers, without changing the key (docs/DESIGN.md
//! "Replacing a lost node"). Neither the helpers nor anyone watching learns
//! the share; the target learns nothing but it.
//!
//! The flow, per scheme (the caller carries the messages, each over a
//! channel to its receiver only):
//!
//! - `ecdsa-secp256k1` (DKLs23): every helper sends [`repair_start`]'s one
//!   message, its masked term, to the target; the target runs
//!   [`repair_assemble`]. The result is **hollow**: it cannot sign until all
//!   n parties ran a complete refresh ([`crate::refresh`]).
//! - `eddsa-ed25519`, `schnorr-secp256k1` (FROST): every helper sends
//!   [`repair_start`]'s deltas, one to every helper (itself included); each
//!   helper sends [`repair_sigma`] of the deltas it got to the target; the
//!   target runs [`repair_assemble`]. It could sign at once; run the
//!   complete refresh anyway, so the lost copy stops combining.
//!
//! The target checks what it assembles against the key's public key and
//! verifying shares ([`RepairContext`]), which every helper must send it
//! and which must all agree: that is the caller's to enforce. The chain seed
//! is not repaired here: the target brings it (rebuilt from seed shares).

use std::collections::{BTreeMap, BTreeSet};

use frost_ed25519::Ed25519Sha512;
use frost_secp256k1_tr::Secp256K1Sha256TR;
use rand_core::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::secret::ChainSeed;
use crate::session::Payload;
use crate::share::{KeyShare, SecretShare};
use crate::{ecdsa, frost};
use crate::{Epoch, KeyId, PartyId, Scheme, Threshold};

/// The public facts of the key whose share is repaired: what every helper
/// tells the target, and what the repaired share is checked against.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepairContext {
    /// The key.
    pub key_id: KeyId,
    /// Its scheme.
    pub scheme: Scheme,
    /// t-of-n.
    pub threshold: Threshold,
    /// The epoch of the helpers' shares (and of the repaired one).
    pub epoch: Epoch,
    /// The root public key `X`.
    pub public_key: Vec<u8>,
    /// Every party's verifying share in that epoch.
    pub verifying_shares: BTreeMap<PartyId, Vec<u8>>,
}

impl RepairContext {
    /// The facts of `share`'s key, as its holder sends them.
    pub fn of(share: &KeyShare) -> Self {
        RepairContext {
            key_id: share.key_id(),
            scheme: share.scheme(),
            threshold: share.threshold(),
            epoch: share.epoch(),
            public_key: share.public_key().to_vec(),
            verifying_shares: share.verifying_shares().clone(),
        }
    }

    /// `target`'s share of this key: `secret`, with its chain seed.
    pub(crate) fn share(&self, target: PartyId, chain_seed: ChainSeed, secret: SecretShare) -> Result<KeyShare, Error> {
        let (key, verifying) = (self.public_key.clone(), self.verifying_shares.clone());
        KeyShare::new(self.key_id, target, self.threshold, self.epoch, key, verifying, chain_seed, secret)
    }
}

/// Refuses a helper set that is not at least t parties of the key, or that
/// holds the target.
fn check_helpers(threshold: Threshold, helpers: &BTreeSet<PartyId>, target: PartyId) -> Result<(), Error> {
    let parties: BTreeSet<PartyId> = threshold.party_ids().collect();
    if !parties.contains(&target) || helpers.contains(&target) {
        return Err(Error::InvalidInput(format!("share repair: party {target} cannot be repaired by {helpers:?}")));
    }
    if helpers.len() < usize::from(threshold.threshold()) || !helpers.is_subset(&parties) {
        return Err(Error::InvalidInput(format!(
            "share repair needs at least {} helpers among the key's parties, not {helpers:?}",
            threshold.threshold()
        )));
    }
    Ok(())
}

/// A helper's first messages, by receiver: ECDSA its masked term (for the
/// target); FROST its deltas (for every helper, itself included).
/// `repair_id` binds ECDSA's masks to this repair; every helper must use
/// the same one (the job's hash, say).
pub fn repair_start(
    share: &KeyShare,
    helpers: &BTreeSet<PartyId>,
    target: PartyId,
    repair_id: &[u8],
    rng: &mut (impl RngCore + CryptoRng),
) -> Result<BTreeMap<PartyId, Payload>, Error> {
    check_helpers(share.threshold(), helpers, target)?;
    if !helpers.contains(&share.party()) {
        return Err(Error::InvalidInput(format!("share repair: party {} is not a helper", share.party())));
    }
    match share.scheme() {
        Scheme::EcdsaSecp256k1 => {
            Ok(BTreeMap::from([(target, ecdsa::repair_term(share, helpers, target, repair_id)?)]))
        }
        Scheme::EddsaEd25519 => frost::repair_deltas::<Ed25519Sha512>(share, helpers, target, rng),
        Scheme::SchnorrSecp256k1 => frost::repair_deltas::<Secp256K1Sha256TR>(share, helpers, target, rng),
    }
}

/// FROST helpers' second message, for the target: the sigma of the delta
/// every helper sent this one. ECDSA has no second message.
pub fn repair_sigma(
    share: &KeyShare,
    helpers: &BTreeSet<PartyId>,
    deltas: &BTreeMap<PartyId, Payload>,
) -> Result<Payload, Error> {
    sigma_for(share.scheme(), helpers, deltas)
}

/// [`repair_sigma`] by scheme.
pub(crate) fn sigma_for(
    scheme: Scheme,
    helpers: &BTreeSet<PartyId>,
    deltas: &BTreeMap<PartyId, Payload>,
) -> Result<Payload, Error> {
    match scheme {
        Scheme::EcdsaSecp256k1 => Err(Error::InvalidInput("share repair: ECDSA has no second message".into())),
        Scheme::EddsaEd25519 => frost::repair_sigma::<Ed25519Sha512>(helpers, deltas),
        Scheme::SchnorrSecp256k1 => frost::repair_sigma::<Secp256K1Sha256TR>(helpers, deltas),
    }
}

/// The target's share from every helper's last message (ECDSA: terms;
/// FROST: sigmas), checked against `context`, with its `chain_seed`.
pub fn repair_assemble(
    context: &RepairContext,
    target: PartyId,
    received: &BTreeMap<PartyId, Payload>,
    chain_seed: ChainSeed,
) -> Result<KeyShare, Error> {
    let helpers: BTreeSet<PartyId> = received.keys().copied().collect();
    check_helpers(context.threshold, &helpers, target)?;
    match context.scheme {
        Scheme::EcdsaSecp256k1 => ecdsa::repair_assemble(context, target, received, chain_seed),
        Scheme::EddsaEd25519 => frost::repair_assemble::<Ed25519Sha512>(context, target, received, chain_seed),
        Scheme::SchnorrSecp256k1 => frost::repair_assemble::<Secp256K1Sha256TR>(context, target, received, chain_seed),
    }
}
