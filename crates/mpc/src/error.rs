//! The crate's error type, split as cggmp21 and rustls split theirs: the
//! caller's input, a peer's misbehaviour (naming the culprit), a message the
//! session refused without harm, stored data that does not decode, and bugs.

use crate::PartyId;

/// Everything that can go wrong in a protocol run or with a stored share.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The caller asked for something impossible (bad path, wrong message length…).
    #[error("invalid input: {0}")]
    InvalidInput(String),

    /// A peer sent something that fails a protocol check. The session is over.
    #[error("party {culprit} misbehaved: {reason}; retry without it or investigate its node")]
    Misbehaved {
        /// Who sent the bad message.
        culprit: PartyId,
        /// What check failed.
        reason: String,
    },

    /// DKLs23 found a counterparty cheating in a way that can leak key bits if
    /// retried (selective abort). That party must be excluded from future
    /// sessions until an operator clears it.
    #[error("party {culprit} must be banned from further sessions ({reason}); an operator must investigate before it signs again")]
    Banned {
        /// The party to exclude.
        culprit: PartyId,
        /// What check failed.
        reason: String,
    },

    /// A party sent different broadcast messages to different peers, and we
    /// can prove it: it echoed a broadcast of its own other than the one it
    /// sent us (both messages authenticated as its own).
    #[error(
        "party {sender} equivocated in round {round}: party {reported_by} received a different broadcast than we did"
    )]
    Equivocation {
        /// The party whose broadcast differed between recipients.
        sender: PartyId,
        /// The peer whose echo revealed the difference.
        reported_by: PartyId,
        /// The protocol round.
        round: u8,
    },

    /// A peer's echo of a third party's broadcast differs from the broadcast
    /// we received: either `sender` showed peers different broadcasts, or
    /// `reporter` lies about what it received. Nothing here tells which, so
    /// this names no culprit ([`Error::culprit`] is `None`); see
    /// [`Error::suspects`]. Never exclude or ban a party on it alone.
    #[error(
        "parties {sender} and {reporter} disagree about party {sender}'s round-{round} broadcast: one of them \
         misbehaved (party {sender} equivocated, or party {reporter} echoed a broadcast it did not receive)"
    )]
    Disputed {
        /// The party whose broadcast is in dispute.
        sender: PartyId,
        /// The peer whose echo differs from our view.
        reporter: PartyId,
        /// The protocol round of the broadcast.
        round: u8,
    },

    /// Parties finished the protocol with different results (e.g. public keys).
    #[error("party {party} finished with a different result than we did; the session is void")]
    Disagreement {
        /// The party that disagrees.
        party: PartyId,
    },

    /// A message was refused; the session is unaffected and goes on.
    #[error("message refused: {0}")]
    Rejected(#[from] Rejection),

    /// Stored or exported bytes do not decode as this crate's format.
    #[error("cannot decode {what}: {detail}")]
    Decode {
        /// What was being decoded.
        what: &'static str,
        /// Why it failed.
        detail: String,
    },

    /// A library reported a failure that is not attributable to a peer.
    #[error("protocol failure: {0}")]
    Protocol(String),

    /// An invariant of this crate does not hold: a bug in shardvault, never
    /// the doing of a peer or of the caller. Returned where a value "cannot"
    /// be missing or an encoding "cannot" fail, instead of a default (an empty
    /// encoding, a zero scalar), so that nothing wrong is sent or stored.
    #[error("internal error, a bug in shardvault (please report it): {0}")]
    Bug(&'static str),
}

/// Why a session refused one message. Refusals leave the session intact, so
/// a forged, replayed or misrouted message cannot end an honest run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Rejection {
    /// The envelope names another session.
    #[error("message belongs to another session")]
    WrongSession,
    /// The sender is not a participant of this session.
    #[error("sender {0} is not a participant of this session")]
    UnknownSender(PartyId),
    /// The envelope is addressed to another party.
    #[error("message from {from} is addressed to party {to}, not to us")]
    Misrouted {
        /// Sender.
        from: PartyId,
        /// Addressee.
        to: PartyId,
    },
    /// A message for a round we already finished (a replay).
    #[error("message from {from} for round {round} arrived after that round ended (replay?)")]
    Stale {
        /// Sender.
        from: PartyId,
        /// Its round.
        round: u8,
    },
    /// A message too far ahead of our round.
    #[error("message from {from} is for round {round}, but we are in round {current}")]
    TooEarly {
        /// Sender.
        from: PartyId,
        /// Its round.
        round: u8,
        /// Our round.
        current: u8,
    },
    /// A second message of the same kind from the same sender in one round.
    #[error("duplicate message from {from} in round {round} (replay?)")]
    Duplicate {
        /// Sender.
        from: PartyId,
        /// Its round.
        round: u8,
    },
    /// The bytes do not parse.
    #[error("malformed message from {from}: {detail}")]
    Malformed {
        /// Sender (as claimed by the envelope).
        from: PartyId,
        /// What did not parse.
        detail: String,
    },
    /// The session already finished or failed.
    #[error("session is already finished")]
    Finished,
}

impl Error {
    /// A decode failure.
    pub(crate) fn decode(what: &'static str, detail: impl std::fmt::Display) -> Self {
        Error::Decode { what, detail: detail.to_string() }
    }

    /// A peer's misbehaviour.
    pub(crate) fn misbehaved(culprit: PartyId, reason: impl Into<String>) -> Self {
        Error::Misbehaved { culprit, reason: reason.into() }
    }

    /// The party to blame, when this party's own authenticated messages
    /// prove it misbehaved. `None` when nobody is proven at fault, including
    /// for [`Error::Disputed`].
    pub fn culprit(&self) -> Option<PartyId> {
        match self {
            Error::Misbehaved { culprit, .. } | Error::Banned { culprit, .. } => Some(*culprit),
            Error::Equivocation { sender, .. } => Some(*sender),
            _ => None,
        }
    }

    /// The parties one of which misbehaved, when the evidence does not say
    /// which ([`Error::Disputed`]): the sender of the disputed broadcast and
    /// the peer that reported it.
    pub fn suspects(&self) -> Option<[PartyId; 2]> {
        match self {
            Error::Disputed { sender, reporter, .. } => Some([*sender, *reporter]),
            _ => None,
        }
    }
}

impl From<shardvault_types::Error> for Error {
    fn from(error: shardvault_types::Error) -> Self {
        match error {
            shardvault_types::Error::InvalidInput(detail) => Error::InvalidInput(detail),
        }
    }
}
