//! `eddsa-ed25519` (`frost-ed25519`) and `schnorr-secp256k1`
//! (`frost-secp256k1-tr`) on ZF FROST (RFC 9591): DKG, signing and refresh as
//! [`Machine`]s, generic over the ciphersuite.
//!
//! Taproot: `frost-secp256k1-tr` tweaks the DKG output (an unspendable script
//! commitment); we treat that as the root key, derive from it, and apply the
//! BIP86 key-path tweak of the *derived* key at signing ("derive first, tweak
//! last"), so the signature verifies under the P2TR output key of the child.

use std::collections::{BTreeMap, BTreeSet};

use frost_core::keys::{dkg, refresh, repairable, KeyPackage, PublicKeyPackage, SigningShare, VerifyingShare};
use frost_core::round1::{SigningCommitments, SigningNonces};
use frost_core::round2::SignatureShare;
use frost_core::{Ciphersuite, Identifier, SigningPackage, VerifyingKey};
use rand_core::{CryptoRng, RngCore};

use crate::derive::ChildShare;
use crate::error::Error;
use crate::group::{Ed25519, Group, Secp256k1};
use crate::repair::RepairContext;
use crate::secret::ChainSeed;
use crate::session::{decode, encode, Inbox, Machine, Outbox, Payload, Step};
use crate::share::{KeyShare, SecretShare};
use crate::Signature;
use crate::{Epoch, KeyId, PartyId, Scheme, Threshold};

/// What differs between the two FROST ciphersuites.
pub(crate) trait Suite: Ciphersuite {
    /// The scheme this ciphersuite implements.
    const SCHEME: Scheme;
    /// Our arithmetic on the ciphersuite's own group types.
    type Arith: Group<Point = frost_core::Element<Self>, Scalar = frost_core::Scalar<Self>>;
    /// Wraps a key package as a stored secret.
    fn wrap(package: KeyPackage<Self>) -> SecretShare;
    /// The key package of a stored secret of this scheme.
    fn unwrap(share: &SecretShare) -> Option<&KeyPackage<Self>>;
    /// The key package to sign with (Taproot: BIP86-tweaked).
    fn signing_key(package: KeyPackage<Self>) -> KeyPackage<Self>;
    /// The public package to aggregate with (Taproot: BIP86-tweaked).
    fn signing_public(package: PublicKeyPackage<Self>) -> PublicKeyPackage<Self>;
    /// The key a verifier uses (Taproot: x-only).
    fn verifier_key(serialized: Vec<u8>) -> Result<Vec<u8>, Error>;
}

impl Suite for frost_ed25519::Ed25519Sha512 {
    const SCHEME: Scheme = Scheme::EddsaEd25519;
    type Arith = Ed25519;
    fn wrap(package: KeyPackage<Self>) -> SecretShare {
        SecretShare::Ed25519(package)
    }
    fn unwrap(share: &SecretShare) -> Option<&KeyPackage<Self>> {
        match share {
            SecretShare::Ed25519(package) => Some(package),
            _ => None,
        }
    }
    fn signing_key(package: KeyPackage<Self>) -> KeyPackage<Self> {
        package
    }
    fn signing_public(package: PublicKeyPackage<Self>) -> PublicKeyPackage<Self> {
        package
    }
    fn verifier_key(serialized: Vec<u8>) -> Result<Vec<u8>, Error> {
        Ok(serialized)
    }
}

impl Suite for frost_secp256k1_tr::Secp256K1Sha256TR {
    const SCHEME: Scheme = Scheme::SchnorrSecp256k1;
    type Arith = Secp256k1;
    fn wrap(package: KeyPackage<Self>) -> SecretShare {
        SecretShare::Schnorr(package)
    }
    fn unwrap(share: &SecretShare) -> Option<&KeyPackage<Self>> {
        match share {
            SecretShare::Schnorr(package) => Some(package),
            _ => None,
        }
    }
    fn signing_key(package: KeyPackage<Self>) -> KeyPackage<Self> {
        frost_secp256k1_tr::keys::Tweak::tweak::<&[u8]>(package, None)
    }
    fn signing_public(package: PublicKeyPackage<Self>) -> PublicKeyPackage<Self> {
        frost_secp256k1_tr::keys::Tweak::tweak::<&[u8]>(package, None)
    }
    fn verifier_key(serialized: Vec<u8>) -> Result<Vec<u8>, Error> {
        // The library serializes a point SEC1-compressed: 33 bytes, x after the parity byte.
        match serialized.split_first() {
            Some((_, x)) if x.len() == 32 => Ok(x.to_vec()),
            _ => Err(Error::Bug("a BIP340 verifying key is not a 33-byte compressed point")),
        }
    }
}

fn identifier<S: Suite>(party: PartyId) -> Result<Identifier<S>, Error> {
    Identifier::try_from(u16::from(party.get())).map_err(|e| Error::Protocol(e.to_string()))
}

/// Maps a FROST error to ours, naming the culprit where FROST identified one.
fn frost_error<S: Suite>(error: frost_core::Error<S>, parties: &BTreeSet<PartyId>) -> Error {
    let culprit = error
        .culprits()
        .into_iter()
        .find_map(|id| parties.iter().copied().find(|p| identifier::<S>(*p).ok() == Some(id)));
    match culprit {
        Some(culprit) => Error::misbehaved(culprit, error.to_string()),
        None => Error::Protocol(error.to_string()),
    }
}

fn serialize_err<E: std::fmt::Display>(e: E) -> Error {
    Error::Protocol(format!("cannot serialize: {e}"))
}

/// A key's public key and every party's verifying share, encoded.
type PublicParts = (Vec<u8>, BTreeMap<PartyId, Vec<u8>>);

fn public_parts<S: Suite>(public: &PublicKeyPackage<S>, threshold: Threshold) -> Result<PublicParts, Error> {
    let key = public.verifying_key().serialize().map_err(serialize_err)?;
    let mut shares = BTreeMap::new();
    for party in threshold.party_ids() {
        let share = public
            .verifying_shares()
            .get(&identifier::<S>(party)?)
            .ok_or_else(|| Error::Protocol(format!("no verifying share for party {party}")))?;
        shares.insert(party, share.serialize().map_err(serialize_err)?);
    }
    Ok((key, shares))
}

/// The public package of a key from our stored metadata.
fn public_package<S: Suite>(
    public_key: &[u8],
    verifying: &BTreeMap<PartyId, Vec<u8>>,
    threshold: Threshold,
) -> Result<PublicKeyPackage<S>, Error> {
    let corrupt = |e: frost_core::Error<S>| Error::decode("key share", e);
    let mut shares = BTreeMap::new();
    for (party, bytes) in verifying {
        shares.insert(identifier::<S>(*party)?, VerifyingShare::deserialize(bytes).map_err(corrupt)?);
    }
    let key = VerifyingKey::deserialize(public_key).map_err(corrupt)?;
    Ok(PublicKeyPackage::new(shares, key, Some(u16::from(threshold.threshold()))))
}

fn peers_of(inbox: &Inbox) -> BTreeSet<PartyId> {
    inbox.broadcast.keys().chain(inbox.direct.keys()).copied().collect()
}

// ---------------------------------------------------------------- DKG

/// FROST DKG (Pedersen with proofs of knowledge) for one party.
pub(crate) struct FrostDkg<S: Suite> {
    key_id: KeyId,
    threshold: Threshold,
    me: PartyId,
    seed: ChainSeed,
    state: FrostDkgState<S>,
}

impl<S: Suite> std::fmt::Debug for FrostDkg<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrostDkg").field("scheme", &S::SCHEME).field("me", &self.me).finish_non_exhaustive()
    }
}

enum FrostDkgState<S: Suite> {
    Round1(dkg::round1::SecretPackage<S>),
    Round2 { secret: dkg::round2::SecretPackage<S>, round1: BTreeMap<Identifier<S>, dkg::round1::Package<S>> },
}

impl<S: Suite> FrostDkg<S> {
    pub(crate) fn start(
        key_id: KeyId,
        threshold: Threshold,
        me: PartyId,
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Result<(Self, Outbox), Error> {
        let (secret, package) = dkg::part1::<S, _>(
            identifier::<S>(me)?,
            u16::from(threshold.parties()),
            u16::from(threshold.threshold()),
            &mut *rng,
        )
        .map_err(|e| Error::InvalidInput(e.to_string()))?;
        let outbox = Outbox { broadcast: Some(encode(&package)?), direct: BTreeMap::new() };
        let seed = ChainSeed::random(rng);
        Ok((FrostDkg { key_id, threshold, me, seed, state: FrostDkgState::Round1(secret) }, outbox))
    }
}

fn others_round1<S: Suite>(
    inbox: &Inbox,
    me: PartyId,
) -> Result<BTreeMap<Identifier<S>, dkg::round1::Package<S>>, Error> {
    let mut packages = BTreeMap::new();
    for (from, payload) in inbox.broadcast.iter().filter(|(from, _)| **from != me) {
        packages.insert(identifier::<S>(*from)?, decode(*from, payload)?);
    }
    Ok(packages)
}

fn round2_received<S: Suite>(inbox: &Inbox) -> Result<BTreeMap<Identifier<S>, dkg::round2::Package<S>>, Error> {
    let mut packages = BTreeMap::new();
    for (from, payload) in &inbox.direct {
        packages.insert(identifier::<S>(*from)?, decode(*from, payload)?);
    }
    Ok(packages)
}

fn direct_packages<S: Suite>(
    packages: BTreeMap<Identifier<S>, dkg::round2::Package<S>>,
    threshold: Threshold,
) -> Result<BTreeMap<PartyId, Vec<u8>>, Error> {
    let mut direct = BTreeMap::new();
    for party in threshold.party_ids() {
        if let Some(package) = packages.get(&identifier::<S>(party)?) {
            direct.insert(party, encode(package)?);
        }
    }
    Ok(direct)
}

impl<S: Suite> Machine for FrostDkg<S> {
    type Output = KeyShare;

    fn advance(self, inbox: Inbox) -> Result<Step<Self>, Error> {
        let FrostDkg { key_id, threshold, me, seed, state } = self;
        let parties: BTreeSet<PartyId> = threshold.party_ids().collect();
        match state {
            FrostDkgState::Round1(secret) => {
                let round1 = others_round1::<S>(&inbox, me)?;
                let (secret, packages) = dkg::part2(secret, &round1).map_err(|e| frost_error(e, &parties))?;
                let outbox = Outbox { broadcast: None, direct: direct_packages(packages, threshold)? };
                Ok(Step::Next(
                    FrostDkg { key_id, threshold, me, seed, state: FrostDkgState::Round2 { secret, round1 } },
                    outbox,
                ))
            }
            FrostDkgState::Round2 { secret, round1 } => {
                let round2 = round2_received::<S>(&inbox)?;
                let (package, public) = dkg::part3(&secret, &round1, &round2).map_err(|e| frost_error(e, &parties))?;
                let (key, verifying) = public_parts(&public, threshold)?;
                let share = KeyShare::new(key_id, me, threshold, Epoch(0), key, verifying, seed, S::wrap(package))?;
                let agree_on = encode(&(share.public_key(), share.verifying_shares()))?;
                Ok(Step::Done { output: share, agree_on: Some(agree_on) })
            }
        }
    }
}

// ---------------------------------------------------------------- refresh

/// FROST share refresh (a DKG of zero) for one party.
pub(crate) struct FrostRefresh<S: Suite> {
    old: KeyShare,
    to: Epoch,
    state: FrostRefreshState<S>,
}

impl<S: Suite> std::fmt::Debug for FrostRefresh<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrostRefresh").field("old", &self.old).finish_non_exhaustive()
    }
}

enum FrostRefreshState<S: Suite> {
    Round1(dkg::round1::SecretPackage<S>),
    Round2 { secret: dkg::round2::SecretPackage<S>, round1: BTreeMap<Identifier<S>, dkg::round1::Package<S>> },
}

impl<S: Suite> FrostRefresh<S> {
    pub(crate) fn start(
        share: &KeyShare,
        to: Epoch,
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Result<(Self, Outbox), Error> {
        let threshold = share.threshold();
        let (secret, package) = refresh::refresh_dkg_part1::<S, _>(
            identifier::<S>(share.party())?,
            u16::from(threshold.parties()),
            u16::from(threshold.threshold()),
            rng,
        )
        .map_err(|e| Error::InvalidInput(e.to_string()))?;
        let outbox = Outbox { broadcast: Some(encode(&package)?), direct: BTreeMap::new() };
        Ok((FrostRefresh { old: share.clone(), to, state: FrostRefreshState::Round1(secret) }, outbox))
    }
}

impl<S: Suite> Machine for FrostRefresh<S> {
    type Output = KeyShare;

    fn advance(self, inbox: Inbox) -> Result<Step<Self>, Error> {
        let FrostRefresh { old, to, state } = self;
        let threshold = old.threshold();
        let parties: BTreeSet<PartyId> = threshold.party_ids().collect();
        match state {
            FrostRefreshState::Round1(secret) => {
                let round1 = others_round1::<S>(&inbox, old.party())?;
                let (secret, packages) =
                    refresh::refresh_dkg_part2(secret, &round1).map_err(|e| frost_error(e, &parties))?;
                let outbox = Outbox { broadcast: None, direct: direct_packages(packages, threshold)? };
                Ok(Step::Next(FrostRefresh { old, to, state: FrostRefreshState::Round2 { secret, round1 } }, outbox))
            }
            FrostRefreshState::Round2 { secret, round1 } => {
                let round2 = round2_received::<S>(&inbox)?;
                let old_package = S::unwrap(old.secret())
                    .ok_or_else(|| Error::InvalidInput("share of another scheme".into()))?
                    .clone();
                let old_public = public_package::<S>(old.public_key(), old.verifying_shares(), threshold)?;
                let (package, public) = refresh::refresh_dkg_shares(&secret, &round1, &round2, old_public, old_package)
                    .map_err(|e| frost_error(e, &parties))?;
                let (key, verifying) = public_parts(&public, threshold)?;
                if key != old.public_key() {
                    return Err(Error::Protocol("refresh changed the public key".into()));
                }
                let share = KeyShare::new(
                    old.key_id(),
                    old.party(),
                    threshold,
                    to,
                    key,
                    verifying,
                    old.chain_seed().clone(),
                    S::wrap(package),
                )?;
                let agree_on = encode(&(share.public_key(), share.verifying_shares()))?;
                Ok(Step::Done { output: share, agree_on: Some(agree_on) })
            }
        }
    }
}

// ---------------------------------------------------------------- signing

/// FROST signing (two rounds; every signer aggregates) for one signer.
pub(crate) struct FrostSign<S: Suite> {
    me: PartyId,
    signers: BTreeSet<PartyId>,
    message: Vec<u8>,
    key: KeyPackage<S>,
    public: PublicKeyPackage<S>,
    state: FrostSignState<S>,
}

impl<S: Suite> std::fmt::Debug for FrostSign<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrostSign").field("scheme", &S::SCHEME).field("me", &self.me).finish_non_exhaustive()
    }
}

enum FrostSignState<S: Suite> {
    /// Our nonces and our own commitments (kept, not decoded back from our broadcast).
    Commit(SigningNonces<S>, SigningCommitments<S>),
    /// The signing package and our own signature share.
    Share(SigningPackage<S>, SignatureShare<S>),
}

impl<S: Suite> FrostSign<S> {
    pub(crate) fn start(
        share: &KeyShare,
        child: ChildShare<S::Arith>,
        signers: &BTreeSet<PartyId>,
        message: &[u8],
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Result<(Self, Outbox), Error> {
        let me = share.party();
        let threshold = share.threshold();
        let own = *child.verifying_shares.get(&me).ok_or_else(|| Error::Protocol("no own verifying share".into()))?;
        let verifying_key = VerifyingKey::new(child.public_key);
        let key = KeyPackage::new(
            identifier::<S>(me)?,
            SigningShare::new(child.secret),
            VerifyingShare::new(own),
            verifying_key,
            u16::from(threshold.threshold()),
        );
        let mut shares = BTreeMap::new();
        for (party, point) in &child.verifying_shares {
            shares.insert(identifier::<S>(*party)?, VerifyingShare::new(*point));
        }
        let public = PublicKeyPackage::new(shares, verifying_key, Some(u16::from(threshold.threshold())));
        let key = S::signing_key(key);
        let public = S::signing_public(public);
        let (nonces, commitments) = frost_core::round1::commit(key.signing_share(), rng);
        let outbox = Outbox { broadcast: Some(encode(&commitments)?), direct: BTreeMap::new() };
        let machine = FrostSign {
            me,
            signers: signers.clone(),
            message: message.to_vec(),
            key,
            public,
            state: FrostSignState::Commit(nonces, commitments),
        };
        Ok((machine, outbox))
    }
}

impl<S: Suite> Machine for FrostSign<S> {
    type Output = Signature;

    fn advance(self, inbox: Inbox) -> Result<Step<Self>, Error> {
        let FrostSign { me, signers, message, key, public, state } = self;
        match state {
            FrostSignState::Commit(nonces, own) => {
                let mut commitments = BTreeMap::from([(identifier::<S>(me)?, own)]);
                for (from, payload) in inbox.broadcast.iter().filter(|(from, _)| **from != me) {
                    let commitment: SigningCommitments<S> = decode(*from, payload)?;
                    commitments.insert(identifier::<S>(*from)?, commitment);
                }
                let package = SigningPackage::new(commitments, &message);
                let share = frost_core::round2::sign(&package, &nonces, &key).map_err(|e| frost_error(e, &signers))?;
                let outbox = Outbox { broadcast: Some(encode(&share)?), direct: BTreeMap::new() };
                Ok(Step::Next(
                    FrostSign { me, signers, message, key, public, state: FrostSignState::Share(package, share) },
                    outbox,
                ))
            }
            FrostSignState::Share(package, own) => {
                let mut shares = BTreeMap::from([(identifier::<S>(me)?, own)]);
                for (from, payload) in inbox.broadcast.iter().filter(|(from, _)| **from != me) {
                    let share: SignatureShare<S> = decode(*from, payload)?;
                    shares.insert(identifier::<S>(*from)?, share);
                }
                // Aggregation verifies the result and, if it fails, each share,
                // naming the signer whose share is wrong.
                let signature =
                    frost_core::aggregate(&package, &shares, &public).map_err(|e| frost_error(e, &peers_of(&inbox)))?;
                let signature = Signature {
                    scheme: S::SCHEME,
                    bytes: signature.serialize().map_err(serialize_err)?,
                    recovery_id: None,
                    public_key: S::verifier_key(public.verifying_key().serialize().map_err(serialize_err)?)?,
                    signers: signers.iter().copied().collect(),
                };
                Ok(Step::Done { output: signature, agree_on: None })
            }
        }
    }
}

// ---------------------------------------------------------------- repair

/// This helper's deltas for rebuilding `target`'s share: one for every
/// helper, itself included (docs/DESIGN.md "Replacing a lost node").
pub(crate) fn repair_deltas<S: Suite>(
    share: &KeyShare,
    helpers: &BTreeSet<PartyId>,
    target: PartyId,
    rng: &mut (impl RngCore + CryptoRng),
) -> Result<BTreeMap<PartyId, Payload>, Error> {
    let package = S::unwrap(share.secret()).ok_or_else(|| Error::InvalidInput("share of another scheme".into()))?;
    let ids = helpers.iter().map(|p| identifier::<S>(*p)).collect::<Result<Vec<_>, _>>()?;
    let deltas = repairable::repair_share_part1::<S, _>(&ids, package, rng, identifier::<S>(target)?)
        .map_err(|e| Error::InvalidInput(format!("share repair: {e}")))?;
    let mut out = BTreeMap::new();
    for helper in helpers {
        let delta = deltas
            .get(&identifier::<S>(*helper)?)
            .ok_or_else(|| Error::Protocol(format!("share repair: no delta for helper {helper}")))?;
        out.insert(*helper, Payload::new(delta.serialize()));
    }
    Ok(out)
}

/// This helper's sigma for the target, from the delta every helper sent it.
pub(crate) fn repair_sigma<S: Suite>(
    helpers: &BTreeSet<PartyId>,
    deltas: &BTreeMap<PartyId, Payload>,
) -> Result<Payload, Error> {
    if !deltas.keys().eq(helpers.iter()) {
        return Err(Error::InvalidInput("share repair: a sigma needs one delta from every helper".into()));
    }
    let parsed = deltas
        .iter()
        .map(|(from, payload)| {
            repairable::Delta::<S>::deserialize(payload.as_bytes())
                .map_err(|e| Error::misbehaved(*from, format!("malformed repair delta: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Payload::new(repairable::repair_share_part2(&parsed).serialize()))
}

/// The target's share from every helper's sigma. The library does not check
/// it, so it is checked here: its verifying share must be the key's for
/// `target`.
pub(crate) fn repair_assemble<S: Suite>(
    context: &RepairContext,
    target: PartyId,
    sigmas: &BTreeMap<PartyId, Payload>,
    chain_seed: ChainSeed,
) -> Result<KeyShare, Error> {
    let parsed = sigmas
        .iter()
        .map(|(from, payload)| {
            repairable::Sigma::<S>::deserialize(payload.as_bytes())
                .map_err(|e| Error::misbehaved(*from, format!("malformed repair sigma: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let public = public_package::<S>(&context.public_key, &context.verifying_shares, context.threshold)?;
    let id = identifier::<S>(target)?;
    let package = repairable::repair_share_part3(&parsed, id, &public)
        .map_err(|e| Error::Protocol(format!("share repair: {e}")))?;
    let expected = public
        .verifying_shares()
        .get(&id)
        .ok_or_else(|| Error::InvalidInput(format!("share repair: party {target} is not a party of the key")))?;
    if package.verifying_share() != expected {
        return Err(Error::Protocol(format!(
            "share repair: the helpers' values do not add up to party {target}'s share (a helper sent a wrong one; \
             retry with other helpers)"
        )));
    }
    context.share(target, chain_seed, S::wrap(package))
}
