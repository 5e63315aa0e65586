//! shardvault's threshold-signature core: distributed key generation,
//! signing, share refresh and hardened derivation for
//! [`Scheme::EcdsaSecp256k1`] (DKLs23), [`Scheme::EddsaEd25519`] and
//! [`Scheme::SchnorrSecp256k1`] (FROST), any t-of-n with 2 ≤ t ≤ n ≤ 16.
//!
//! Pure protocol code: no I/O, no clocks, no threads. Each protocol is a
//! [`Session`] that takes [`Envelope`]s in and gives envelopes out; the
//! caller moves them (in-process with [`local::run`], or over the network).
//!
//! ```
//! use std::collections::BTreeSet;
//! use shardvault_mpc::{dkg, local, sign, DerivationPath, KeyId, OsRng, Scheme, SessionId, SignRequest, Threshold};
//!
//! let threshold = Threshold::new(2, 3)?;
//! let (key_id, session) = (KeyId::random(), SessionId::random());
//! let shares = local::run(threshold.party_ids()
//!     .map(|me| dkg(Scheme::EddsaEd25519, key_id, threshold, me, session, &mut OsRng))
//!     .collect::<Result<Vec<_>, _>>()?)?;
//! let signers: BTreeSet<_> = threshold.party_ids().take(2).collect();
//! let session = SessionId::random();
//! let signatures = local::run(signers.iter()
//!     .map(|me| sign(&SignRequest { share: &shares[me], hardened: None, path: &DerivationPath::root(), signers: &signers, message: b"hello" }, session, &mut OsRng))
//!     .collect::<Result<Vec<_>, _>>()?)?;
//! assert!(signatures.values().all(|s| s.bytes.len() == 64));
//! # Ok::<(), shardvault_mpc::Error>(())
//! ```
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic))]
#![warn(missing_docs)]

mod backup;
mod derive;
mod ecdsa;
mod error;
mod escrow;
mod frost;
mod group;
mod hd;
pub mod local;
mod recover;
mod repair;
mod repair_session;
mod secret;
mod session;
mod share;

use std::collections::BTreeSet;

use frost_ed25519::Ed25519Sha512;
use frost_secp256k1_tr::Secp256K1Sha256TR;
// The randomness every protocol constructor takes, and the operating
// system's generator to pass outside tests.
pub use rand_core::{CryptoRng, OsRng, RngCore};

pub use backup::{HexPoint, ShareBackup};
pub use derive::extended_public_key;
use ecdsa::{EcdsaDkg, EcdsaRefresh, EcdsaSign};
pub use error::{Error, Rejection};
pub use escrow::{escrow_seed, rebuild_seed, seed_commitment, EscrowedSeeds, SeedEscrow, SeedPiece};
use frost::{FrostDkg, FrostRefresh, FrostSign};
pub use hd::{HardenedTweak, HdMachine};
pub use recover::{recover_key, recover_key_with_seeds, RecoveredKey};
pub use repair::{repair_assemble, repair_sigma, repair_start, RepairContext};
pub use repair_session::{repair_as_helper, repair_as_target, Helping, Repair, RepairOutput};
pub use secret::ChainSeed;
pub use session::{
    EchoDigest, Envelope, Inbox, Machine, Outbox, Payload, Session, Step, ENVELOPE_VERSION, MAX_PAYLOAD,
};
pub use share::{KeyShare, ShareBinding, SHARE_FORMAT_VERSION};
// The share-free vocabulary, re-exported so protocol callers need one import.
pub use shardvault_types::{
    child_chain_code, derive_public, root_extended_public_key, DerivationPath, Epoch, ExtendedPublicKey, KeyId,
    PartyId, Scheme, Secret32, SessionId, Signature, Threshold, HARDENED, MAX_PARTIES,
};

// The README's code compiles and runs as a doctest, so it cannot drift.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;

/// A started session and its first envelopes.
pub type Started<M> = (Session<M>, Vec<Envelope>);

fn lift<M: Machine, N: Machine<Output = M::Output>>(step: Step<M>, wrap: impl FnOnce(M) -> N) -> Step<N> {
    match step {
        Step::Next(machine, outbox) => Step::Next(wrap(machine), outbox),
        Step::Done { output, agree_on } => Step::Done { output, agree_on },
    }
}

/// One machine per scheme, boxed (their sizes differ widely).
#[derive(Debug)]
enum PerScheme<E, D, S> {
    Ecdsa(Box<E>),
    Ed25519(Box<D>),
    Schnorr(Box<S>),
}

macro_rules! per_scheme {
    ($(#[$doc:meta])* $name:ident -> $output:ty { $ecdsa:ty, $ed:ty, $schnorr:ty }) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $name(PerScheme<$ecdsa, $ed, $schnorr>);

        impl $name {
            fn ecdsa(m: $ecdsa) -> Self {
                Self(PerScheme::Ecdsa(Box::new(m)))
            }
            fn ed25519(m: $ed) -> Self {
                Self(PerScheme::Ed25519(Box::new(m)))
            }
            fn schnorr(m: $schnorr) -> Self {
                Self(PerScheme::Schnorr(Box::new(m)))
            }
        }

        impl Machine for $name {
            type Output = $output;
            fn advance(self, inbox: Inbox) -> Result<Step<Self>, Error> {
                Ok(match self.0 {
                    PerScheme::Ecdsa(m) => lift(m.advance(inbox)?, $name::ecdsa),
                    PerScheme::Ed25519(m) => lift(m.advance(inbox)?, $name::ed25519),
                    PerScheme::Schnorr(m) => lift(m.advance(inbox)?, $name::schnorr),
                })
            }
        }
    };
}

per_scheme!(
    /// Distributed key generation, any scheme.
    Dkg -> KeyShare { EcdsaDkg, FrostDkg<Ed25519Sha512>, FrostDkg<Secp256K1Sha256TR> }
);
per_scheme!(
    /// Threshold signing, any scheme.
    Sign -> Signature { EcdsaSign, FrostSign<Ed25519Sha512>, FrostSign<Secp256K1Sha256TR> }
);
per_scheme!(
    /// Share refresh, any scheme.
    Refresh -> KeyShare { EcdsaRefresh, FrostRefresh<Ed25519Sha512>, FrostRefresh<Secp256K1Sha256TR> }
);

/// Starts distributed key generation for party `me` of a new `threshold` key.
/// All n parties take part; each ends with its [`KeyShare`] at epoch 0.
///
/// `rng` is [`OsRng`] outside tests. It draws the party's chain seed and, for
/// FROST, every secret of the protocol; DKLs23 draws its own (see "Injected
/// randomness" in docs/DESIGN.md).
pub fn dkg(
    scheme: Scheme,
    key_id: KeyId,
    threshold: Threshold,
    me: PartyId,
    session: SessionId,
    rng: &mut (impl RngCore + CryptoRng),
) -> Result<Started<Dkg>, Error> {
    if !threshold.contains(me) {
        return Err(Error::InvalidInput(format!("party {me} is not one of the key's {} parties", threshold.parties())));
    }
    let (machine, first) = match scheme {
        Scheme::EcdsaSecp256k1 => {
            let (m, out) = EcdsaDkg::start(key_id, threshold, me, session, rng)?;
            (Dkg::ecdsa(m), out)
        }
        Scheme::EddsaEd25519 => {
            let (m, out) = FrostDkg::start(key_id, threshold, me, rng)?;
            (Dkg::ed25519(m), out)
        }
        Scheme::SchnorrSecp256k1 => {
            let (m, out) = FrostDkg::start(key_id, threshold, me, rng)?;
            (Dkg::schnorr(m), out)
        }
    };
    Session::start(session, me, &threshold.party_ids().collect(), machine, first)
}

/// What one signer needs to sign.
#[derive(Debug, Clone, Copy)]
pub struct SignRequest<'a> {
    /// The signer's root share.
    pub share: &'a KeyShare,
    /// The cached hardened tweak for `path`'s hardened prefix, if it has one.
    pub hardened: Option<&'a HardenedTweak>,
    /// The path of the key to sign with (`m` for the root key).
    pub path: &'a DerivationPath,
    /// Exactly t signers, this one included.
    pub signers: &'a BTreeSet<PartyId>,
    /// ECDSA: the 32-byte digest. Ed25519: the message. BIP340: the message
    /// (normally a 32-byte sighash).
    pub message: &'a [u8],
}

/// Starts signing for one signer of `request.signers`. `rng` ([`OsRng`]
/// outside tests) draws the FROST nonces; DKLs23 draws its own.
pub fn sign(
    request: &SignRequest<'_>,
    session: SessionId,
    rng: &mut (impl RngCore + CryptoRng),
) -> Result<Started<Sign>, Error> {
    let share = request.share;
    let threshold = share.threshold();
    if request.signers.len() != usize::from(threshold.threshold()) {
        return Err(Error::InvalidInput(format!(
            "a {}-of-{} key needs exactly {} signers, got {}",
            threshold.threshold(),
            threshold.parties(),
            threshold.threshold(),
            request.signers.len()
        )));
    }
    if let Some(outsider) = request.signers.iter().find(|s| !threshold.contains(**s)) {
        return Err(Error::InvalidInput(format!("signer {outsider} is not a party of this key")));
    }
    let machine = match share.scheme() {
        Scheme::EcdsaSecp256k1 => {
            let digest: [u8; 32] = request.message.try_into().map_err(|_| {
                Error::InvalidInput(format!("ECDSA signs a 32-byte digest, got {} bytes", request.message.len()))
            })?;
            let child = derive::child_share::<group::Secp256k1>(share, request.hardened, request.path)?;
            let (m, out) = EcdsaSign::start(share, child, request.signers, session, digest)?;
            (Sign::ecdsa(m), out)
        }
        Scheme::EddsaEd25519 => {
            let child = derive::child_share::<group::Ed25519>(share, request.hardened, request.path)?;
            let (m, out) = FrostSign::start(share, child, request.signers, request.message, rng)?;
            (Sign::ed25519(m), out)
        }
        Scheme::SchnorrSecp256k1 => {
            let child = derive::child_share::<group::Secp256k1>(share, request.hardened, request.path)?;
            let (m, out) = FrostSign::start(share, child, request.signers, request.message, rng)?;
            (Sign::schnorr(m), out)
        }
    };
    Session::start(session, share.party(), request.signers, machine.0, machine.1)
}

/// Starts a share refresh: all n parties take part and end with shares of
/// the same key at the next epoch; old shares no longer combine with new.
/// `rng` ([`OsRng`] outside tests) draws the FROST refresh polynomial;
/// DKLs23 draws its own.
pub fn refresh(
    share: &KeyShare,
    session: SessionId,
    rng: &mut (impl RngCore + CryptoRng),
) -> Result<Started<Refresh>, Error> {
    refresh_to(share, share.epoch().next()?, session, rng)
}

/// [`refresh`] to a chosen epoch `to`, which must be later than the share's:
/// a node that keeps an unfinished refresh's shares (so that it can still
/// be finished) gives the next attempt an epoch of its own.
pub fn refresh_to(
    share: &KeyShare,
    to: Epoch,
    session: SessionId,
    rng: &mut (impl RngCore + CryptoRng),
) -> Result<Started<Refresh>, Error> {
    if to <= share.epoch() {
        return Err(Error::InvalidInput(format!(
            "a refresh of epoch {} must go to a later epoch, not {to}",
            share.epoch()
        )));
    }
    let (machine, first) = match share.scheme() {
        Scheme::EcdsaSecp256k1 => {
            let (m, out) = EcdsaRefresh::start(share, to, session)?;
            (Refresh::ecdsa(m), out)
        }
        Scheme::EddsaEd25519 => {
            let (m, out) = FrostRefresh::start(share, to, rng)?;
            (Refresh::ed25519(m), out)
        }
        Scheme::SchnorrSecp256k1 => {
            let (m, out) = FrostRefresh::start(share, to, rng)?;
            (Refresh::schnorr(m), out)
        }
    };
    Session::start(session, share.party(), &share.threshold().party_ids().collect(), machine, first)
}

/// Starts hardened derivation (docs/HD-DERIVATION.md) of an all-hardened `path`;
/// all n parties take part. Deterministic: the same path always gives the
/// same key, also after refresh. `rng` ([`OsRng`] outside tests) draws only
/// the nonce of each party's proof of knowledge.
pub fn derive_hardened(
    share: &KeyShare,
    path: &DerivationPath,
    session: SessionId,
    rng: &mut (impl RngCore + CryptoRng),
) -> Result<Started<HdMachine>, Error> {
    let (machine, first) = hd::start(share, path, rng)?;
    Session::start(session, share.party(), &share.threshold().party_ids().collect(), machine, first)
}
