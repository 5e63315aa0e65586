//! The round driver every protocol runs under.
//!
//! A protocol is a [`Machine`]: it consumes one round's messages ([`Inbox`])
//! and returns the next round's ([`Outbox`]) or its output. It does no I/O and
//! never sees an unchecked message. [`Session`] wraps a machine and does the
//! rest, the same way for every protocol:
//!
//! - every [`Envelope`] is bound to the session id, its round, its sender and
//!   its addressee; a message from another session, from a non-participant,
//!   for another party, for a past round (a replay) or sent twice is refused
//!   with a [`Rejection`], and the session goes on unharmed;
//! - **echo-broadcast**: every message of round r+1 carries the digests of the
//!   broadcasts its sender received in round r. A sender caught showing two
//!   broadcasts (one to us, another in its own echo) is named
//!   ([`Error::Equivocation`]), and so is a peer that misquotes our own
//!   broadcast; a peer whose echo of a third party's broadcast differs from
//!   ours names both as suspects and neither as culprit
//!   ([`Error::Disputed`]): either may be the liar;
//! - **agreement**: after the last round of a protocol that names a result to
//!   agree on (a public key, a derived key), one more round echoes the last
//!   broadcasts and compares the result, so no party keeps a key another party
//!   does not share. Signing skips it: a signature verifies itself.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroize;

use crate::error::{Error, Rejection};
use crate::{PartyId, SessionId};

/// Version of the envelope encoding.
pub const ENVELOPE_VERSION: u8 = 1;

/// The largest payload a session accepts (DKLs23's DKG round 3 is the largest
/// legitimate message, well under 1 MiB for n = 16).
pub const MAX_PAYLOAD: usize = 4 << 20;

/// Bytes of a protocol message. Zeroized on drop (direct messages carry
/// secret shares); `Debug` shows only the length.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payload(Vec<u8>);

impl Payload {
    /// Wraps bytes.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Payload {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Payload(<{} bytes>)", self.0.len())
    }
}

/// Digest of one party's broadcast in one round, as echoed to peers.
pub type EchoDigest = [u8; 32];

/// One protocol message and everything it is bound to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// The session it belongs to.
    pub session: SessionId,
    /// The round it belongs to (0-based).
    pub round: u8,
    /// Its sender.
    pub from: PartyId,
    /// Its addressee; `None` for a broadcast to every participant.
    pub to: Option<PartyId>,
    /// The sender's view of the previous round's broadcasts.
    pub echo: Vec<(PartyId, EchoDigest)>,
    /// The protocol message.
    pub payload: Payload,
}

impl Envelope {
    /// The wire encoding: version byte, then postcard. Postcard does not
    /// fail on these plain types; if it ever did, that is [`Error::Bug`],
    /// never an empty message on the wire.
    pub fn to_bytes(&self) -> Result<Vec<u8>, Error> {
        let mut out = vec![ENVELOPE_VERSION];
        out.extend(postcard::to_stdvec(self).map_err(|_| Error::Bug("an envelope does not encode"))?);
        Ok(out)
    }

    /// Parses the wire encoding; rejects unknown versions, oversized
    /// payloads and trailing bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let (version, body) = bytes.split_first().ok_or_else(|| Error::decode("envelope", "empty"))?;
        if *version != ENVELOPE_VERSION {
            return Err(Error::decode("envelope", format!("unsupported version {version}")));
        }
        if body.len() > MAX_PAYLOAD + 1024 {
            return Err(Error::decode("envelope", "too large"));
        }
        let (envelope, rest): (Envelope, _) =
            postcard::take_from_bytes(body).map_err(|e| Error::decode("envelope", e))?;
        if !rest.is_empty() {
            return Err(Error::decode("envelope", "trailing bytes"));
        }
        Ok(envelope)
    }
}

/// What a machine sends in one round.
#[derive(Debug, Default)]
pub struct Outbox {
    /// One message for every participant, if the round broadcasts.
    pub broadcast: Option<Vec<u8>>,
    /// One message for each other participant, if the round has direct messages.
    pub direct: BTreeMap<PartyId, Vec<u8>>,
}

/// What a machine receives in one round: exactly one message of each kind
/// the round uses from every participant (broadcasts include our own).
#[derive(Debug, Default)]
pub struct Inbox {
    /// Broadcasts by sender, including our own.
    pub broadcast: BTreeMap<PartyId, Payload>,
    /// Direct messages to us, by sender.
    pub direct: BTreeMap<PartyId, Payload>,
}

/// One step of a protocol.
#[derive(Debug)]
pub enum Step<M: Machine> {
    /// The protocol goes on with another round.
    Next(M, Outbox),
    /// The protocol is finished.
    Done {
        /// What it produced.
        output: M::Output,
        /// Bytes every participant must have produced identically (e.g. the
        /// public key), compared in a final agreement round that also echoes
        /// the last round's broadcasts. `None` only for self-verifying outputs.
        agree_on: Option<Vec<u8>>,
    },
}

/// A protocol as a state machine: one call per round, state moved by value so
/// a round's secrets cannot be used twice.
pub trait Machine: Sized {
    /// What the protocol produces.
    type Output;

    /// Consumes one complete round and returns the next step.
    fn advance(self, inbox: Inbox) -> Result<Step<Self>, Error>;
}

enum State<M: Machine> {
    Running(M),
    Agreeing { output: M::Output, agree_on: Vec<u8> },
    Finished(Option<M::Output>),
    Failed,
}

#[derive(Default)]
struct Collected {
    inbox: Inbox,
    echoes: Vec<(PartyId, Vec<(PartyId, EchoDigest)>)>,
}

#[derive(Clone, Copy, Default)]
struct Expect {
    broadcast: bool,
    direct: bool,
}

/// One party's run of one protocol: validates, buffers and routes envelopes
/// for a [`Machine`].
pub struct Session<M: Machine> {
    id: SessionId,
    me: PartyId,
    peers: BTreeSet<PartyId>,
    round: u8,
    expect: Expect,
    state: State<M>,
    collected: BTreeMap<u8, Collected>,
    /// Digests of the previous round's broadcasts, which every message of the
    /// current round must echo.
    echo: Vec<(PartyId, EchoDigest)>,
}

impl<M: Machine> fmt::Debug for Session<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.id)
            .field("me", &self.me)
            .field("round", &self.round)
            .finish_non_exhaustive()
    }
}

impl<M: Machine> Session<M> {
    /// Starts a session: `participants` includes `me`; `first` is the
    /// machine's round-0 outbox. Returns the envelopes to send.
    pub fn start(
        id: SessionId,
        me: PartyId,
        participants: &BTreeSet<PartyId>,
        machine: M,
        first: Outbox,
    ) -> Result<(Self, Vec<Envelope>), Error> {
        if !participants.contains(&me) {
            return Err(Error::InvalidInput(format!("party {me} is not among the session's participants")));
        }
        let peers: BTreeSet<PartyId> = participants.iter().copied().filter(|p| *p != me).collect();
        if peers.is_empty() {
            return Err(Error::InvalidInput("a session needs at least two parties".into()));
        }
        let mut session = Session {
            id,
            me,
            peers,
            round: 0,
            expect: Expect::default(),
            state: State::Running(machine),
            collected: BTreeMap::new(),
            echo: Vec::new(),
        };
        let out = session.send(first)?;
        Ok((session, out))
    }

    /// This party's id.
    pub fn me(&self) -> PartyId {
        self.me
    }

    /// The session id.
    pub fn id(&self) -> SessionId {
        self.id
    }

    /// The other participants.
    pub fn peers(&self) -> &BTreeSet<PartyId> {
        &self.peers
    }

    /// Whether the protocol finished and its output is waiting in [`Session::take_output`].
    pub fn is_finished(&self) -> bool {
        matches!(self.state, State::Finished(Some(_)))
    }

    /// The output, once; `None` before the protocol finished.
    pub fn take_output(&mut self) -> Option<M::Output> {
        match &mut self.state {
            State::Finished(output) => output.take(),
            _ => None,
        }
    }

    /// Takes one envelope. Returns the envelopes to send next (empty until a
    /// round completes). A [`Error::Rejected`] leaves the session as it was;
    /// any other error ends it.
    pub fn receive(&mut self, envelope: Envelope) -> Result<Vec<Envelope>, Error> {
        self.admit(envelope)?;
        let mut out = Vec::new();
        while self.round_complete() {
            match self.complete_round() {
                Ok(mut sent) => out.append(&mut sent),
                Err(error) => {
                    self.state = State::Failed;
                    self.collected.clear();
                    return Err(error);
                }
            }
        }
        Ok(out)
    }

    /// Checks an envelope's binding and files it; no protocol work.
    fn admit(&mut self, envelope: Envelope) -> Result<(), Rejection> {
        if !matches!(self.state, State::Running(_) | State::Agreeing { .. }) {
            return Err(Rejection::Finished);
        }
        let from = envelope.from;
        if envelope.session != self.id {
            return Err(Rejection::WrongSession);
        }
        if !self.peers.contains(&from) {
            return Err(Rejection::UnknownSender(from));
        }
        if let Some(to) = envelope.to {
            if to != self.me {
                return Err(Rejection::Misrouted { from, to });
            }
        }
        let round = envelope.round;
        if round < self.round {
            return Err(Rejection::Stale { from, round });
        }
        // A peer can be at most one round ahead: it needs our messages to go on.
        if round > self.round.saturating_add(1) {
            return Err(Rejection::TooEarly { from, round, current: self.round });
        }
        let is_broadcast = envelope.to.is_none();
        if round == self.round {
            let wanted = if is_broadcast { self.expect.broadcast } else { self.expect.direct };
            if !wanted {
                return Err(Rejection::Malformed {
                    from,
                    detail: format!(
                        "round {round} has no {} messages",
                        if is_broadcast { "broadcast" } else { "direct" }
                    ),
                });
            }
        }
        if envelope.payload.as_bytes().len() > MAX_PAYLOAD {
            return Err(Rejection::Malformed { from, detail: "payload too large".into() });
        }
        let slot = self.collected.entry(round).or_default();
        let map = if is_broadcast { &mut slot.inbox.broadcast } else { &mut slot.inbox.direct };
        if map.contains_key(&from) {
            return Err(Rejection::Duplicate { from, round });
        }
        map.insert(from, envelope.payload);
        slot.echoes.push((from, envelope.echo));
        Ok(())
    }

    fn round_complete(&self) -> bool {
        if !matches!(self.state, State::Running(_) | State::Agreeing { .. }) {
            return false;
        }
        let Some(slot) = self.collected.get(&self.round) else {
            return false;
        };
        self.peers.iter().all(|peer| {
            (!self.expect.broadcast || slot.inbox.broadcast.contains_key(peer))
                && (!self.expect.direct || slot.inbox.direct.contains_key(peer))
        })
    }

    /// Runs the machine on the completed round and sends what it returns.
    fn complete_round(&mut self) -> Result<Vec<Envelope>, Error> {
        // Called only once `round_complete` found this round's messages.
        let Collected { inbox, echoes } =
            self.collected.remove(&self.round).ok_or(Error::Bug("a completed round has no messages"))?;
        // A provable fault wins over a dispute, whatever order messages came in.
        let mut dispute = None;
        for (reporter, echo) in &echoes {
            if let Some(disputed) = self.check_echo(*reporter, echo)? {
                dispute.get_or_insert(disputed);
            }
        }
        if let Some(disputed) = dispute {
            return Err(disputed);
        }
        let digests = self.digests(&inbox);
        let state = std::mem::replace(&mut self.state, State::Failed);
        match state {
            State::Running(machine) => match machine.advance(inbox)? {
                Step::Next(machine, outbox) => {
                    self.state = State::Running(machine);
                    self.echo = digests;
                    self.round += 1;
                    self.send(outbox)
                }
                Step::Done { output, agree_on } => {
                    // A protocol whose output verifies itself (a signature)
                    // skips the agreement round.
                    let Some(agree_on) = agree_on else {
                        self.state = State::Finished(Some(output));
                        return Ok(Vec::new());
                    };
                    self.state = State::Agreeing { output, agree_on: agree_on.clone() };
                    self.echo = digests;
                    self.round += 1;
                    self.send(Outbox { broadcast: Some(agree_on), direct: BTreeMap::new() })
                }
            },
            State::Agreeing { output, agree_on } => {
                for (party, result) in &inbox.broadcast {
                    if result.as_bytes() != agree_on.as_slice() {
                        return Err(Error::Disagreement { party: *party });
                    }
                }
                self.state = State::Finished(Some(output));
                Ok(Vec::new())
            }
            State::Finished(_) | State::Failed => Err(Error::Rejected(Rejection::Finished)),
        }
    }

    /// Every message of this round must echo exactly our view of the last
    /// round's broadcasts. A difference proves a fault only where we know
    /// both sides: the reporter's own broadcast (it sent us one and echoes
    /// another) or ours (we know what we sent). A difference about a third
    /// party's broadcast is returned as a dispute (`Ok(Some)`): that party
    /// may have equivocated, or the reporter may lie.
    fn check_echo(&self, reporter: PartyId, echo: &[(PartyId, EchoDigest)]) -> Result<Option<Error>, Error> {
        if echo.len() != self.echo.len() {
            return Err(Error::misbehaved(reporter, "echo of the previous round is incomplete"));
        }
        let round = self.round.saturating_sub(1);
        let mut dispute = None;
        for ((ours_from, ours), (theirs_from, theirs)) in self.echo.iter().zip(echo) {
            if ours_from != theirs_from {
                return Err(Error::misbehaved(reporter, "echo of the previous round is malformed"));
            }
            if bool::from(subtle::ConstantTimeEq::ct_eq(&ours[..], &theirs[..])) {
                continue;
            }
            if *ours_from == reporter {
                return Err(Error::Equivocation { sender: reporter, reported_by: reporter, round });
            }
            if *ours_from == self.me {
                return Err(Error::misbehaved(
                    reporter,
                    format!("echoed a round-{round} broadcast of ours that we did not send"),
                ));
            }
            dispute.get_or_insert(Error::Disputed { sender: *ours_from, reporter, round });
        }
        Ok(dispute)
    }

    fn digests(&self, inbox: &Inbox) -> Vec<(PartyId, EchoDigest)> {
        inbox
            .broadcast
            .iter()
            .map(|(from, payload)| {
                let digest = Sha256::new()
                    .chain_update(b"shardvault/echo/v1")
                    .chain_update(self.id.as_bytes())
                    .chain_update([self.round, from.get()])
                    .chain_update((payload.as_bytes().len() as u64).to_be_bytes())
                    .chain_update(payload.as_bytes())
                    .finalize();
                (*from, digest.into())
            })
            .collect()
    }

    /// Turns an outbox into envelopes for the current round.
    fn send(&mut self, outbox: Outbox) -> Result<Vec<Envelope>, Error> {
        let direct_to: BTreeSet<PartyId> = outbox.direct.keys().copied().collect();
        if !direct_to.is_empty() && direct_to != self.peers {
            return Err(Error::Protocol(format!(
                "round {} addressed direct messages to {:?}, expected every peer",
                self.round, direct_to
            )));
        }
        self.expect = Expect { broadcast: outbox.broadcast.is_some(), direct: !direct_to.is_empty() };
        let mut out = Vec::with_capacity(direct_to.len() + 1);
        if let Some(bytes) = outbox.broadcast {
            let payload = Payload::new(bytes);
            self.collected.entry(self.round).or_default().inbox.broadcast.insert(self.me, payload.clone());
            out.push(self.envelope(None, payload));
        }
        for (to, bytes) in outbox.direct {
            out.push(self.envelope(Some(to), Payload::new(bytes)));
        }
        Ok(out)
    }

    fn envelope(&self, to: Option<PartyId>, payload: Payload) -> Envelope {
        Envelope { session: self.id, round: self.round, from: self.me, to, echo: self.echo.clone(), payload }
    }
}

/// Encodes a protocol message for an [`Outbox`].
pub(crate) fn encode<T: Serialize>(message: &T) -> Result<Vec<u8>, Error> {
    postcard::to_stdvec(message).map_err(|e| Error::Protocol(format!("cannot encode message: {e}")))
}

/// Decodes a peer's protocol message; trailing bytes are refused. A message
/// that does not parse is the sender's fault: the round cannot complete.
pub(crate) fn decode<T: for<'de> Deserialize<'de>>(from: PartyId, payload: &Payload) -> Result<T, Error> {
    let (value, rest) = postcard::take_from_bytes(payload.as_bytes())
        .map_err(|e| Error::misbehaved(from, format!("malformed message: {e}")))?;
    if !rest.is_empty() {
        return Err(Error::misbehaved(from, "malformed message: trailing bytes"));
    }
    Ok(value)
}
