//! Share repair as a session: t helpers and the target (the lost party's
//! replacement) run [`crate::repair`]'s steps over the usual round driver,
//! and the target gets its chain seed back from the helpers' escrowed
//! pieces ([`crate::escrow`]).
//!
//! Every participant sends every other one a direct message each round (an
//! empty one when it has nothing for it), so every round completes the same
//! way for everyone:
//!
//! - round 0: each helper sends the target a [`Hello`] (the key's public
//!   facts, its piece of the target's seed and the seed's commitment, and,
//!   for ECDSA, its masked term); FROST helpers send each other their deltas;
//! - round 1 (FROST only): each helper sends the target its sigma;
//! - agreement: everyone compares the digest of the key's public facts, so a
//!   helper finishes only once the target assembled a share of that key.
//!
//! The target refuses unless every helper told it the same facts and the
//! same commitment, the pieces rebuild the committed seed, and the
//! assembled share matches the key's verifying share for its party.

use std::collections::{BTreeMap, BTreeSet};

use rand_core::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroize;

use crate::error::Error;
use crate::escrow::{rebuild_seed, SeedPiece};
use crate::repair::{repair_assemble, repair_start, sigma_for, RepairContext};
use crate::session::{decode, encode, Inbox, Machine, Outbox, Payload, Session, Step};
use crate::share::KeyShare;
use crate::{ChainSeed, KeyId, PartyId, Scheme, SessionId, Started};

/// What each helper tells the target in round 0.
#[derive(Serialize, Deserialize)]
struct Hello {
    context: RepairContext,
    seed_commitment: [u8; 32],
    seed_piece: Vec<u8>,
    /// ECDSA: the masked term; FROST: empty (its sigma comes in round 1).
    term: Vec<u8>,
}

impl Drop for Hello {
    fn drop(&mut self) {
        self.seed_piece.zeroize();
        self.term.zeroize();
    }
}

/// What a repair session gives each participant.
#[derive(Debug)]
pub enum RepairOutput {
    /// A helper: the target assembled a share of the key.
    Helped,
    /// The target: its repaired share, with its rebuilt chain seed. An
    /// ECDSA share is hollow until a complete refresh of all n parties.
    Repaired(Box<KeyShare>),
}

/// A helper's part in a repair.
#[derive(Debug)]
pub struct Helping<'a> {
    /// The helper's own share of the key.
    pub share: &'a KeyShare,
    /// Every helper (t or more of the key's parties, without the target).
    pub helpers: &'a BTreeSet<PartyId>,
    /// The party repaired.
    pub target: PartyId,
    /// This helper's escrowed piece of the target's chain seed.
    pub seed_piece: &'a SeedPiece,
    /// The target's seed commitment, as escrowed.
    pub seed_commitment: &'a [u8; 32],
}

/// The repair protocol, for a helper or the target.
#[derive(Debug)]
pub struct Repair(Role);

#[derive(Debug)]
enum Role {
    Helper {
        scheme: Scheme,
        me: PartyId,
        helpers: BTreeSet<PartyId>,
        target: PartyId,
        agree: Vec<u8>,
        own_delta: Option<Payload>,
    },
    HelperLast {
        agree: Vec<u8>,
    },
    Target {
        key_id: KeyId,
        target: PartyId,
    },
    TargetLast {
        context: RepairContext,
        target: PartyId,
        seed: ChainSeed,
    },
}

/// The bytes every participant agrees on: a digest of the key's public facts.
fn agreement(context: &RepairContext) -> Result<Vec<u8>, Error> {
    Ok(Sha256::new().chain_update(b"shardvault/repair/v1").chain_update(encode(context)?).finalize().to_vec())
}

/// Empty direct messages to `to`, except `to_target` for `target`.
fn outbox(to: &BTreeSet<PartyId>, target: PartyId, to_target: Vec<u8>) -> Outbox {
    let mut direct: BTreeMap<PartyId, Vec<u8>> = to.iter().map(|p| (*p, Vec::new())).collect();
    direct.insert(target, to_target);
    Outbox { broadcast: None, direct }
}

/// Refuses a non-empty message where the round carries none from that peer.
fn expect_empty<'a>(messages: impl IntoIterator<Item = (&'a PartyId, &'a Payload)>) -> Result<(), Error> {
    match messages.into_iter().find(|(_, payload)| !payload.as_bytes().is_empty()) {
        Some((from, _)) => Err(Error::misbehaved(*from, "sent a repair message where none belongs")),
        None => Ok(()),
    }
}

/// Starts a helper's part: participants are the helpers and the target.
/// `repair_id` binds ECDSA's masks to this repair (the job's hash).
pub fn repair_as_helper(
    helping: &Helping<'_>,
    session: SessionId,
    repair_id: &[u8],
    rng: &mut (impl RngCore + CryptoRng),
) -> Result<Started<Repair>, Error> {
    let Helping { share, helpers, target, seed_piece, seed_commitment } = *helping;
    let mut first = repair_start(share, helpers, target, repair_id, rng)?;
    let context = RepairContext::of(share);
    let agree = agreement(&context)?;
    let scheme = share.scheme();
    let term = match scheme {
        Scheme::EcdsaSecp256k1 => first.remove(&target).ok_or(Error::Bug("no repair term for the target"))?,
        _ => Payload::new(Vec::new()),
    };
    let hello = Hello {
        context,
        seed_commitment: *seed_commitment,
        seed_piece: seed_piece.expose_secret().to_vec(),
        term: term.as_bytes().to_vec(),
    };
    let others: BTreeSet<PartyId> = helpers.iter().copied().filter(|h| *h != share.party()).collect();
    let mut out = outbox(&others, target, encode(&hello)?);
    // FROST: every other helper gets its delta now; ours is kept for round 1.
    let own_delta = first.remove(&share.party());
    for (helper, delta) in first {
        out.direct.insert(helper, delta.as_bytes().to_vec());
    }
    let role = Role::Helper { scheme, me: share.party(), helpers: helpers.clone(), target, agree, own_delta };
    let participants = helpers.iter().copied().chain([target]).collect();
    Session::start(session, share.party(), &participants, Repair(role), out)
}

/// Starts the target's part: it brings nothing but who it is and which key.
pub fn repair_as_target(
    key_id: KeyId,
    target: PartyId,
    helpers: &BTreeSet<PartyId>,
    session: SessionId,
) -> Result<Started<Repair>, Error> {
    if helpers.contains(&target) {
        return Err(Error::InvalidInput(format!("share repair: party {target} cannot help repair itself")));
    }
    let first = Outbox { broadcast: None, direct: helpers.iter().map(|h| (*h, Vec::new())).collect() };
    let participants = helpers.iter().copied().chain([target]).collect();
    Session::start(session, target, &participants, Repair(Role::Target { key_id, target }), first)
}

impl Machine for Repair {
    type Output = RepairOutput;

    fn advance(self, inbox: Inbox) -> Result<Step<Self>, Error> {
        match self.0 {
            Role::Helper { scheme, me, helpers, target, agree, own_delta } => {
                let from_target = inbox.direct.get_key_value(&target);
                expect_empty(from_target)?;
                if scheme == Scheme::EcdsaSecp256k1 {
                    expect_empty(&inbox.direct)?;
                    return Ok(Step::Done { output: RepairOutput::Helped, agree_on: Some(agree) });
                }
                let mut deltas: BTreeMap<PartyId, Payload> =
                    inbox.direct.into_iter().filter(|(from, _)| *from != target).collect();
                let own = own_delta.ok_or(Error::Bug("a FROST helper kept no delta of its own"))?;
                deltas.insert(me, own);
                let sigma = sigma_for(scheme, &helpers, &deltas)?;
                let others: BTreeSet<PartyId> = helpers.iter().copied().filter(|h| *h != me).collect();
                let out = outbox(&others, target, sigma.as_bytes().to_vec());
                Ok(Step::Next(Repair(Role::HelperLast { agree }), out))
            }
            Role::HelperLast { agree } => {
                expect_empty(&inbox.direct)?;
                Ok(Step::Done { output: RepairOutput::Helped, agree_on: Some(agree) })
            }
            Role::Target { key_id, target } => {
                let (context, seed, terms) = hear_helpers(key_id, target, &inbox.direct)?;
                if context.scheme == Scheme::EcdsaSecp256k1 {
                    return finish(&context, target, &terms, seed);
                }
                let helpers: BTreeSet<PartyId> = inbox.direct.keys().copied().collect();
                let out = Outbox { broadcast: None, direct: helpers.iter().map(|h| (*h, Vec::new())).collect() };
                Ok(Step::Next(Repair(Role::TargetLast { context, target, seed }), out))
            }
            Role::TargetLast { context, target, seed } => finish(&context, target, &inbox.direct, seed),
        }
    }
}

/// The target's reading of round 0: the facts every helper agrees on, the
/// rebuilt seed, and (ECDSA) the terms.
fn hear_helpers(
    key_id: KeyId,
    target: PartyId,
    received: &BTreeMap<PartyId, Payload>,
) -> Result<(RepairContext, ChainSeed, BTreeMap<PartyId, Payload>), Error> {
    let mut hellos = BTreeMap::new();
    for (from, payload) in received {
        let hello: Hello = decode(*from, payload)?;
        hellos.insert(*from, hello);
    }
    let (first_helper, first) = hellos.iter().next().ok_or(Error::Bug("a repair with no helper"))?;
    for (from, hello) in &hellos {
        if hello.context != first.context || hello.seed_commitment != first.seed_commitment {
            return Err(Error::Protocol(format!(
                "helpers {first_helper} and {from} describe the key or the escrowed seed differently"
            )));
        }
    }
    let context = first.context.clone();
    if context.key_id != key_id {
        return Err(Error::misbehaved(*first_helper, format!("described key {}, not {key_id}", context.key_id)));
    }
    let pieces = hellos
        .iter()
        .map(|(from, hello)| {
            SeedPiece::from_bytes(hello.seed_piece.clone())
                .map_err(|_| Error::misbehaved(*from, "sent a malformed seed piece"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let seed = rebuild_seed(key_id, target, &first.seed_commitment, &pieces.iter().collect::<Vec<_>>())?;
    let terms = hellos.iter().map(|(from, hello)| (*from, Payload::new(hello.term.clone()))).collect();
    Ok((context, seed, terms))
}

fn finish(
    context: &RepairContext,
    target: PartyId,
    received: &BTreeMap<PartyId, Payload>,
    seed: ChainSeed,
) -> Result<Step<Repair>, Error> {
    let share = repair_assemble(context, target, received, seed)?;
    Ok(Step::Done { output: RepairOutput::Repaired(Box::new(share)), agree_on: Some(agreement(context)?) })
}
