//! `ecdsa-secp256k1` on DKLs23 (`dkls23`): DKG, signing and complete refresh
//! as [`Machine`]s. Every library message is checked to come from the
//! envelope's sender and to be addressed to us before the library sees it
//! (the library panics on inconsistent routing).

use std::collections::{BTreeMap, BTreeSet};

use dkls23::protocols::dkg::{
    BroadcastDerivationPhase2to4, BroadcastDerivationPhase3to4, KeepInitMulPhase3to4, KeepInitZeroSharePhase2to3,
    KeepInitZeroSharePhase3to4, ProofCommitment, TransmitInitMulPhase3to4, TransmitInitZeroSharePhase2to4,
    TransmitInitZeroSharePhase3to4,
};
use dkls23::protocols::repair::RepairTerm;
use dkls23::protocols::signing::{
    Broadcast3to4, KeepPhase1to2, KeepPhase2to3, SignData, TransmitPhase1to2, TransmitPhase2to3, UniqueKeep1to2,
    UniqueKeep2to3,
};
use dkls23::protocols::{Abort, AbortKind, AbortReason, Parameters, PartiesMessage, PartyIndex, PublicKeyPackage};
use dkls23::DkgSession;
use k256_dkls::elliptic_curve::group::GroupEncoding;
use k256_dkls::elliptic_curve::PrimeField;
use k256_dkls::Secp256k1 as Curve;
use rand_core::{CryptoRng, RngCore};
use zeroize::{Zeroize, Zeroizing};

use crate::derive::ChildShare;
use crate::error::Error;
use crate::group::{Group, Secp256k1};
use crate::repair::RepairContext;
use crate::secret::ChainSeed;
use crate::session::{decode, encode, Inbox, Machine, Outbox, Payload, Step};
use crate::share::{KeyShare, SecretShare};
use crate::Signature;
use crate::{Epoch, KeyId, PartyId, Scheme, SessionId, Threshold};

type Party = dkls23::secp256k1::Party;
type Scalar = k256_dkls::Scalar;

fn index(party: PartyId) -> Result<PartyIndex, Error> {
    PartyIndex::new(party.get()).map_err(|e| Error::Protocol(e.to_string()))
}

fn party_id(index: PartyIndex) -> Option<PartyId> {
    PartyId::new(index.as_u8()).ok()
}

fn parameters(threshold: Threshold) -> Result<Parameters, Error> {
    Parameters::new(threshold.threshold(), threshold.parties()).map_err(|e| Error::InvalidInput(e.to_string()))
}

fn point_bytes(point: &k256_dkls::AffinePoint) -> Vec<u8> {
    point.to_bytes().to_vec()
}

/// A SEC1-compressed point as `dkls23`'s (k256 0.14) type.
fn dkls_point(bytes: &[u8]) -> Option<k256_dkls::AffinePoint> {
    let mut encoded = <k256_dkls::AffinePoint as GroupEncoding>::Repr::default();
    if encoded.len() != bytes.len() {
        return None;
    }
    encoded.copy_from_slice(bytes);
    k256_dkls::AffinePoint::from_bytes(&encoded).into()
}

/// Maps a DKLs23 abort to our error, naming the culprit where it has one.
fn abort(abort: Abort) -> Error {
    let reason = abort.reason.to_string();
    if let AbortKind::BanCounterparty(culprit) = abort.kind {
        if let Some(culprit) = party_id(culprit) {
            return Error::Banned { culprit, reason };
        }
    }
    let culprit = match &abort.reason {
        AbortReason::ProofVerificationFailed { counterparty }
        | AbortReason::CommitmentMismatch { counterparty }
        | AbortReason::TrivialInstancePoint { counterparty }
        | AbortReason::OtConsistencyCheckFailed { counterparty }
        | AbortReason::MultiplicationVerificationFailed { counterparty, .. }
        | AbortReason::GammaUInconsistency { counterparty }
        | AbortReason::ZeroShareDecommitFailed { counterparty }
        | AbortReason::SessionBindingMismatch { counterparty } => Some(*counterparty),
        AbortReason::ChainCodeCommitmentFailed { party } | AbortReason::MissingMessageFromParty { party } => {
            Some(*party)
        }
        AbortReason::UnexpectedSender { sender } | AbortReason::DuplicateSender { sender } => Some(*sender),
        _ => None,
    };
    match culprit.and_then(party_id) {
        Some(culprit) => Error::Misbehaved { culprit, reason },
        None => Error::Protocol(reason),
    }
}

/// A routed library message must name the envelope's sender and us.
fn check_route(from: PartyId, me: PartyId, parties: &PartiesMessage) -> Result<(), Error> {
    if parties.sender.as_u8() != from.get() || parties.receiver.as_u8() != me.get() {
        return Err(Error::misbehaved(from, "message routing header does not match its envelope"));
    }
    Ok(())
}

fn direct_by_receiver<T: serde::Serialize>(
    messages: Vec<(PartyIndex, T)>,
) -> Result<BTreeMap<PartyId, Vec<u8>>, Error> {
    let mut out = BTreeMap::new();
    for (receiver, message) in messages {
        let receiver = party_id(receiver).ok_or_else(|| Error::Protocol("library addressed party 0".into()))?;
        out.insert(receiver, encode(&message)?);
    }
    Ok(out)
}

type Round3 = (Option<TransmitInitZeroSharePhase3to4>, Option<TransmitInitMulPhase3to4<Curve>>);

/// DKG and refresh round 3: a zero-share seed and a multiplication setup per peer, sent together.
fn round3_direct(
    zero3: Vec<TransmitInitZeroSharePhase3to4>,
    mul3: Vec<TransmitInitMulPhase3to4<Curve>>,
) -> Result<BTreeMap<PartyId, Vec<u8>>, Error> {
    let mut by_receiver: BTreeMap<PartyIndex, Round3> = BTreeMap::new();
    for m in zero3 {
        let receiver = m.parties.receiver;
        by_receiver.entry(receiver).or_default().0 = Some(m);
    }
    for m in mul3 {
        let receiver = m.parties.receiver;
        by_receiver.entry(receiver).or_default().1 = Some(m);
    }
    direct_by_receiver(by_receiver.into_iter().collect())
}

#[allow(clippy::type_complexity)]
fn round3_received(
    inbox: &Inbox,
    me: PartyId,
) -> Result<(Vec<TransmitInitZeroSharePhase3to4>, Vec<TransmitInitMulPhase3to4<Curve>>), Error> {
    let mut zero3 = Vec::new();
    let mut mul3 = Vec::new();
    for (from, payload) in &inbox.direct {
        let (zero, mul): Round3 = decode(*from, payload)?;
        let (Some(zero), Some(mul)) = (zero, mul) else {
            return Err(Error::misbehaved(*from, "incomplete round-3 message"));
        };
        check_route(*from, me, &zero.parties)?;
        check_route(*from, me, &mul.parties)?;
        zero3.push(zero);
        mul3.push(mul);
    }
    Ok((zero3, mul3))
}

/// Direct messages of one round, each checked to come from its envelope's sender to us.
fn routed<T: serde::de::DeserializeOwned>(
    inbox: &Inbox,
    me: PartyId,
    route: impl Fn(&T) -> &PartiesMessage,
) -> Result<Vec<T>, Error> {
    let mut out = Vec::new();
    for (from, payload) in &inbox.direct {
        let message: T = decode(*from, payload)?;
        check_route(*from, me, route(&message))?;
        out.push(message);
    }
    Ok(out)
}

/// Round-0 fragments in party order, our own included.
fn fragments(inbox: &Inbox, me: PartyId, own: &Scalar, threshold: Threshold) -> Result<Vec<Scalar>, Error> {
    let mut all = Vec::with_capacity(usize::from(threshold.parties()));
    for party in threshold.party_ids() {
        if party == me {
            all.push(*own);
        } else {
            let payload = inbox.direct.get(&party).ok_or_else(|| Error::misbehaved(party, "missing fragment"))?;
            all.push(decode(party, payload)?);
        }
    }
    Ok(all)
}

fn verifying_shares_of(
    points: impl IntoIterator<Item = (PartyIndex, k256_dkls::AffinePoint)>,
) -> Result<BTreeMap<PartyId, Vec<u8>>, Error> {
    points
        .into_iter()
        .map(|(i, point)| Ok((party_id(i).ok_or_else(|| Error::Protocol("party 0".into()))?, point_bytes(&point))))
        .collect()
}

fn agreement(share: &KeyShare) -> Result<Vec<u8>, Error> {
    encode(&(share.public_key(), share.verifying_shares()))
}

// ---------------------------------------------------------------- DKG

/// DKLs23 distributed key generation for one party.
pub(crate) struct EcdsaDkg {
    key_id: KeyId,
    threshold: Threshold,
    me: PartyId,
    seed: ChainSeed,
    state: DkgState,
}

impl std::fmt::Debug for EcdsaDkg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EcdsaDkg").field("key_id", &self.key_id).field("me", &self.me).finish_non_exhaustive()
    }
}

enum DkgState {
    Fragments {
        session: DkgSession<Curve>,
        own: Zeroizing<Scalar>,
    },
    Commitments {
        session: DkgSession<Curve>,
    },
    Multiplication {
        session: DkgSession<Curve>,
        proofs: Vec<ProofCommitment<Curve>>,
        zero2: Vec<TransmitInitZeroSharePhase2to4>,
        bip2: BTreeMap<PartyIndex, BroadcastDerivationPhase2to4>,
    },
}

impl EcdsaDkg {
    pub(crate) fn start(
        key_id: KeyId,
        threshold: Threshold,
        me: PartyId,
        session_id: SessionId,
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Result<(Self, Outbox), Error> {
        // DKLs23 0.6 draws its own randomness (its thread RNG; it takes no
        // RNG parameter): only the chain seed comes from `rng`.
        let session = DkgSession::<Curve>::new(parameters(threshold)?, index(me)?, session_id.as_bytes().to_vec());
        let fragments = Zeroizing::new(session.phase1());
        let mut outbox = Outbox::default();
        let mut own = Zeroizing::new(Scalar::ZERO);
        for (party, fragment) in threshold.party_ids().zip(fragments.iter()) {
            if party == me {
                *own = *fragment;
            } else {
                outbox.direct.insert(party, encode(fragment)?);
            }
        }
        let seed = ChainSeed::random(rng);
        let machine = EcdsaDkg { key_id, threshold, me, seed, state: DkgState::Fragments { session, own } };
        Ok((machine, outbox))
    }
}

impl Machine for EcdsaDkg {
    type Output = KeyShare;

    fn advance(self, inbox: Inbox) -> Result<Step<Self>, Error> {
        let EcdsaDkg { key_id, threshold, me, seed, state } = self;
        let (state, outbox) = match state {
            DkgState::Fragments { session, own } => dkg_commit(session, &own, &inbox, me, threshold)?,
            DkgState::Commitments { session } => dkg_multiplication(session, &inbox, me)?,
            DkgState::Multiplication { session, proofs, zero2, bip2 } => {
                let (party, package) = dkg_finish(session, &proofs, &zero2, &bip2, &inbox, me)?;
                let verifying = verifying_shares_of(threshold.party_ids().filter_map(|p| {
                    let i = index(p).ok()?;
                    package.verifying_share(i).map(|v| (i, *v))
                }))?;
                let key = point_bytes(package.verifying_key());
                let secret = SecretShare::Ecdsa(Box::new(party));
                let share = KeyShare::new(key_id, me, threshold, Epoch(0), key, verifying, seed, secret)?;
                let agree_on = agreement(&share)?;
                return Ok(Step::Done { output: share, agree_on: Some(agree_on) });
            }
        };
        Ok(Step::Next(EcdsaDkg { key_id, threshold, me, seed, state }, outbox))
    }
}

/// DKG round 1 → 2: sum the polynomial fragments, commit with a proof.
fn dkg_commit(
    mut session: DkgSession<Curve>,
    own: &Scalar,
    inbox: &Inbox,
    me: PartyId,
    threshold: Threshold,
) -> Result<(DkgState, Outbox), Error> {
    let fragments = Zeroizing::new(fragments(inbox, me, own, threshold)?);
    let (proof, zero, bip) = session.phase2(&fragments).map_err(abort)?;
    let outbox = Outbox {
        broadcast: Some(encode(&(proof, bip))?),
        direct: direct_by_receiver(zero.into_iter().map(|m| (m.parties.receiver, m)).collect())?,
    };
    Ok((DkgState::Commitments { session }, outbox))
}

/// DKG round 2 → 3: collect commitments, start the pairwise multiplication setup.
fn dkg_multiplication(mut session: DkgSession<Curve>, inbox: &Inbox, me: PartyId) -> Result<(DkgState, Outbox), Error> {
    let mut proofs = Vec::new();
    let mut bip2 = BTreeMap::new();
    for (from, payload) in &inbox.broadcast {
        let (proof, bip): (ProofCommitment<Curve>, BroadcastDerivationPhase2to4) = decode(*from, payload)?;
        check_proof_sender(*from, &proof)?;
        proofs.push(proof);
        bip2.insert(index(*from)?, bip);
    }
    let zero2 = routed(inbox, me, |m: &TransmitInitZeroSharePhase2to4| &m.parties)?;
    let (zero3, mul3, bip3) = session.phase3().map_err(abort)?;
    let outbox = Outbox { broadcast: Some(encode(&bip3)?), direct: round3_direct(zero3, mul3)? };
    Ok((DkgState::Multiplication { session, proofs, zero2, bip2 }, outbox))
}

/// DKG round 3 → key: verify everything and form the party's share.
fn dkg_finish(
    session: DkgSession<Curve>,
    proofs: &[ProofCommitment<Curve>],
    zero2: &[TransmitInitZeroSharePhase2to4],
    bip2: &BTreeMap<PartyIndex, BroadcastDerivationPhase2to4>,
    inbox: &Inbox,
    me: PartyId,
) -> Result<(Party, dkls23::secp256k1::PublicKeyPackage), Error> {
    let mut bip3 = BTreeMap::new();
    for (from, payload) in &inbox.broadcast {
        let bip: BroadcastDerivationPhase3to4 = decode(*from, payload)?;
        bip3.insert(index(*from)?, bip);
    }
    let (zero3, mul3) = round3_received(inbox, me)?;
    session.phase4(proofs, zero2, &zero3, &mul3, bip2, &bip3, |_| String::new()).map_err(abort)
}

fn check_proof_sender(from: PartyId, proof: &ProofCommitment<Curve>) -> Result<(), Error> {
    if proof.index.as_u8() != from.get() {
        return Err(Error::misbehaved(from, "commitment names another party"));
    }
    Ok(())
}

// ---------------------------------------------------------------- signing

/// DKLs23 signing for one signer.
pub(crate) struct EcdsaSign {
    party: Box<Party>,
    data: SignData,
    me: PartyId,
    signers: Vec<PartyId>,
    state: SignState,
}

impl std::fmt::Debug for EcdsaSign {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EcdsaSign").field("me", &self.me).finish_non_exhaustive()
    }
}

enum SignState {
    Round1 { unique: UniqueKeep1to2<Curve>, kept: BTreeMap<PartyIndex, KeepPhase1to2<Curve>> },
    Round2 { unique: UniqueKeep2to3<Curve>, kept: BTreeMap<PartyIndex, KeepPhase2to3<Curve>> },
    Round3 { x_coord: String },
}

impl EcdsaSign {
    pub(crate) fn start(
        share: &KeyShare,
        child: ChildShare<Secp256k1>,
        signers: &BTreeSet<PartyId>,
        session_id: SessionId,
        digest: [u8; 32],
    ) -> Result<(Self, Outbox), Error> {
        let SecretShare::Ecdsa(root) = share.secret() else {
            return Err(Error::InvalidInput("not an ECDSA share".into()));
        };
        let me = share.party();
        let mut party = root.clone();
        // k256 0.13 (ours) to k256 0.14 (dkls23) by canonical encodings.
        let mut secret_bytes = Zeroizing::new(Secp256k1::scalar_to_bytes(&child.secret));
        let secret: Option<Scalar> = Scalar::from_repr((*secret_bytes).into()).into();
        secret_bytes.zeroize();
        let secret = secret.ok_or_else(|| Error::Protocol("child share out of range".into()))?;
        let pk = dkls_point(&Secp256k1::point_to_bytes(&child.public_key))
            .ok_or_else(|| Error::Protocol("child public key is not a point".into()))?;
        party.poly_point = secret;
        party.pk = pk;
        party.derivation_data.poly_point = secret;
        party.derivation_data.pk = pk;
        let counterparties = signers.iter().filter(|s| **s != me).map(|s| index(*s)).collect::<Result<Vec<_>, _>>()?;
        let data = SignData { sign_id: session_id.as_bytes().to_vec(), counterparties, message_hash: digest };
        let (unique, kept, transmit) = party.sign_phase1(&data).map_err(abort)?;
        let outbox = Outbox {
            broadcast: None,
            direct: direct_by_receiver(transmit.into_iter().map(|m| (m.parties.receiver, m)).collect())?,
        };
        let machine = EcdsaSign {
            party,
            data,
            me,
            signers: signers.iter().copied().collect(),
            state: SignState::Round1 { unique, kept },
        };
        Ok((machine, outbox))
    }
}

impl Machine for EcdsaSign {
    type Output = Signature;

    fn advance(mut self, inbox: Inbox) -> Result<Step<Self>, Error> {
        let state = std::mem::replace(&mut self.state, SignState::Round3 { x_coord: String::new() });
        match state {
            SignState::Round1 { unique, kept } => {
                let received: Vec<TransmitPhase1to2> = routed(&inbox, self.me, |m: &TransmitPhase1to2| &m.parties)?;
                let (unique, kept, transmit) =
                    self.party.sign_phase2(&self.data, unique, kept, &received).map_err(abort)?;
                let direct = direct_by_receiver(transmit.into_iter().map(|m| (m.parties.receiver, m)).collect())?;
                self.state = SignState::Round2 { unique, kept };
                Ok(Step::Next(self, Outbox { broadcast: None, direct }))
            }
            SignState::Round2 { unique, kept } => {
                let received: Vec<TransmitPhase2to3<Curve>> =
                    routed(&inbox, self.me, |m: &TransmitPhase2to3<Curve>| &m.parties)?;
                let (x_coord, broadcast) =
                    self.party.sign_phase3(&self.data, unique, kept, &received).map_err(abort)?;
                self.state = SignState::Round3 { x_coord };
                Ok(Step::Next(self, Outbox { broadcast: Some(encode(&broadcast)?), direct: BTreeMap::new() }))
            }
            SignState::Round3 { x_coord } => {
                let mut received = Vec::new();
                for (from, payload) in &inbox.broadcast {
                    let message: Broadcast3to4<Curve> = decode(*from, payload)?;
                    received.push(message);
                }
                // Normalised to low S; the library verifies the result against the key.
                let (s_hex, recovery_id) =
                    self.party.sign_phase4(&self.data, &x_coord, &received, true).map_err(abort)?;
                let mut bytes = [0u8; 64];
                let (r, s) = bytes.split_at_mut(32);
                hex::decode_to_slice(&x_coord, r).map_err(|e| Error::Protocol(e.to_string()))?;
                hex::decode_to_slice(&s_hex, s).map_err(|e| Error::Protocol(e.to_string()))?;
                let signature = Signature {
                    scheme: Scheme::EcdsaSecp256k1,
                    bytes: bytes.to_vec(),
                    recovery_id: Some(recovery_id),
                    public_key: point_bytes(&self.party.pk),
                    signers: self.signers.clone(),
                };
                // The signature verifies itself: no agreement round needed.
                Ok(Step::Done { output: signature, agree_on: None })
            }
        }
    }
}

// ---------------------------------------------------------------- refresh

/// DKLs23 complete refresh (new shares and new multiplication setup) for one party.
pub(crate) struct EcdsaRefresh {
    old: KeyShare,
    to: Epoch,
    sid: Vec<u8>,
    state: RefreshState,
}

impl std::fmt::Debug for EcdsaRefresh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EcdsaRefresh").field("old", &self.old).finish_non_exhaustive()
    }
}

enum RefreshState {
    Fragments {
        own: Zeroizing<Scalar>,
    },
    Commitments {
        correction: Zeroizing<Scalar>,
        zero_kept: BTreeMap<PartyIndex, KeepInitZeroSharePhase2to3>,
    },
    Multiplication {
        correction: Zeroizing<Scalar>,
        proofs: Vec<ProofCommitment<Curve>>,
        zero2: Vec<TransmitInitZeroSharePhase2to4>,
        zero_kept: BTreeMap<PartyIndex, KeepInitZeroSharePhase3to4>,
        mul_kept: BTreeMap<PartyIndex, KeepInitMulPhase3to4<Curve>>,
    },
}

impl EcdsaRefresh {
    pub(crate) fn start(share: &KeyShare, to: Epoch, session_id: SessionId) -> Result<(Self, Outbox), Error> {
        let party = ecdsa_party(share)?;
        let fragments = Zeroizing::new(party.refresh_complete_phase1());
        let mut outbox = Outbox::default();
        let mut own = Zeroizing::new(Scalar::ZERO);
        for (p, fragment) in share.threshold().party_ids().zip(fragments.iter()) {
            if p == share.party() {
                *own = *fragment;
            } else {
                outbox.direct.insert(p, encode(fragment)?);
            }
        }
        let machine = EcdsaRefresh {
            old: share.clone(),
            to,
            sid: session_id.as_bytes().to_vec(),
            state: RefreshState::Fragments { own },
        };
        Ok((machine, outbox))
    }
}

fn ecdsa_party(share: &KeyShare) -> Result<&Party, Error> {
    match share.secret() {
        SecretShare::Ecdsa(party) => Ok(party),
        _ => Err(Error::InvalidInput("not an ECDSA share".into())),
    }
}

impl Machine for EcdsaRefresh {
    type Output = KeyShare;

    fn advance(self, inbox: Inbox) -> Result<Step<Self>, Error> {
        let EcdsaRefresh { old, to, sid, state } = self;
        let me = old.party();
        let party = ecdsa_party(&old)?;
        let (state, outbox) = match state {
            RefreshState::Fragments { own } => {
                let fragments = Zeroizing::new(fragments(&inbox, me, &own, old.threshold())?);
                let (correction, proof, zero_kept, zero) = party.refresh_complete_phase2(&sid, &fragments);
                let outbox = Outbox {
                    broadcast: Some(encode(&proof)?),
                    direct: direct_by_receiver(zero.into_iter().map(|m| (m.parties.receiver, m)).collect())?,
                };
                (RefreshState::Commitments { correction: Zeroizing::new(correction), zero_kept }, outbox)
            }
            RefreshState::Commitments { correction, zero_kept } => {
                let mut proofs = Vec::new();
                for (from, payload) in &inbox.broadcast {
                    let proof: ProofCommitment<Curve> = decode(*from, payload)?;
                    check_proof_sender(*from, &proof)?;
                    proofs.push(proof);
                }
                let zero2 = routed(&inbox, me, |m: &TransmitInitZeroSharePhase2to4| &m.parties)?;
                let (zero_kept, zero3, mul_kept, mul3) = party.refresh_complete_phase3(&sid, &zero_kept);
                let outbox = Outbox { broadcast: None, direct: round3_direct(zero3, mul3)? };
                (RefreshState::Multiplication { correction, proofs, zero2, zero_kept, mul_kept }, outbox)
            }
            RefreshState::Multiplication { correction, proofs, zero2, zero_kept, mul_kept } => {
                let (zero3, mul3) = round3_received(&inbox, me)?;
                let refreshed = party
                    .refresh_complete_phase4(&sid, &correction, &proofs, &zero_kept, &zero2, &zero3, &mul_kept, &mul3)
                    .map_err(abort)?;
                let verifying = refreshed_verifying_shares(&old, &proofs)?;
                let secret = SecretShare::Ecdsa(Box::new(refreshed));
                let (key, seed) = (old.public_key().to_vec(), old.chain_seed().clone());
                let share = KeyShare::new(old.key_id(), me, old.threshold(), to, key, verifying, seed, secret)?;
                let agree_on = agreement(&share)?;
                return Ok(Step::Done { output: share, agree_on: Some(agree_on) });
            }
        };
        Ok(Step::Next(EcdsaRefresh { old, to, sid, state }, outbox))
    }
}

/// `V_m(new) = V_m(old) + Δ_m·G`: the `Δ_m·G` are the refresh proofs' points,
/// which the library checked lie on a zero-constant polynomial.
fn refreshed_verifying_shares(
    old: &KeyShare,
    proofs: &[ProofCommitment<Curve>],
) -> Result<BTreeMap<PartyId, Vec<u8>>, Error> {
    let mut verifying = BTreeMap::new();
    for proof in proofs {
        let party = party_id(proof.index).ok_or_else(|| Error::Protocol("party 0".into()))?;
        let old_point =
            old.verifying_shares().get(&party).ok_or_else(|| Error::misbehaved(party, "not a party of this key"))?;
        let old_point = dkls_point(old_point).ok_or_else(|| Error::decode("key share", "verifying share"))?;
        let new_point = (k256_dkls::ProjectivePoint::from(old_point) + proof.proof.point).to_affine();
        verifying.insert(party, point_bytes(&new_point));
    }
    Ok(verifying)
}

// ---------------------------------------------------------------- repair

/// This helper's masked term for rebuilding `target`'s share (for the target
/// only; docs/DESIGN.md "Replacing a lost node"). `repair_id` binds the
/// masks to one repair: every helper must use the same one.
pub(crate) fn repair_term(
    share: &KeyShare,
    helpers: &BTreeSet<PartyId>,
    target: PartyId,
    repair_id: &[u8],
) -> Result<Payload, Error> {
    let helpers = helpers.iter().map(|p| index(*p)).collect::<Result<Vec<_>, _>>()?;
    let term = ecdsa_party(share)?
        .repair_term(&helpers, index(target)?, repair_id)
        .map_err(|e| Error::InvalidInput(format!("share repair: {e}")))?;
    Ok(Payload::new(encode(&term)?))
}

/// The target's share from every helper's term, checked by the library
/// against the key's verifying share of `target`. Hollow: it cannot sign
/// until all parties ran a complete refresh.
pub(crate) fn repair_assemble(
    context: &RepairContext,
    target: PartyId,
    terms: &BTreeMap<PartyId, Payload>,
    chain_seed: ChainSeed,
) -> Result<KeyShare, Error> {
    let point = |bytes: &[u8]| dkls_point(bytes).ok_or_else(|| Error::decode("repair context", "a point"));
    let mut verifying = BTreeMap::new();
    for (party, bytes) in &context.verifying_shares {
        verifying.insert(index(*party)?, point(bytes)?);
    }
    let package =
        PublicKeyPackage::<Curve>::new(point(&context.public_key)?, verifying, parameters(context.threshold)?);
    let mut received = Vec::with_capacity(terms.len());
    for (from, payload) in terms {
        let term: RepairTerm<Curve> = decode(*from, payload)?;
        if term.helper != index(*from)? {
            return Err(Error::misbehaved(*from, "a repair term in another helper's name"));
        }
        received.push(term);
    }
    let party = dkls23::protocols::repair::repair_assemble(&package, index(target)?, &received, |_| String::new())
        .map_err(|e| Error::Protocol(format!("share repair: {e}")))?;
    context.share(target, chain_seed, SecretShare::Ecdsa(Box::new(party)))
}
