//! Seed escrow: each party deals its chain seed t-of-(n−1) to the other
//! parties, so that a party whose disk is lost gets its seed back from any t
//! of them when its share is repaired (docs/DESIGN.md "Replacing a lost
//! node"). Any t parties can already rebuild the key itself; the seed adds
//! only the hardened paths not derived yet.
//!
//! One round: every party broadcasts a commitment to its seed,
//! `SHA-256("shardvault/seed-escrow/v1" ‖ key id ‖ party ‖ seed)`, and
//! sends each peer one piece of it (a Vault-format GF(2^8) Shamir share,
//! docs/FORMATS.md "Shamir shares"), then the agreement round compares every
//! party's commitments. The echo-broadcast makes every party hold the same
//! commitments; the one whose seed is rebuilt checks it against them.

use std::collections::BTreeMap;
use std::fmt;

use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::error::Error;
use crate::session::{Inbox, Machine, Outbox, Session, Step};
use crate::share::KeyShare;
use crate::{ChainSeed, KeyId, PartyId, SessionId, Started};

const COMMITMENT_DOMAIN: &[u8] = b"shardvault/seed-escrow/v1";

/// The commitment to `party`'s chain seed of `key_id`.
pub fn seed_commitment(key_id: KeyId, party: PartyId, seed: &ChainSeed) -> [u8; 32] {
    Sha256::new()
        .chain_update(COMMITMENT_DOMAIN)
        .chain_update(key_id.as_bytes())
        .chain_update([party.get()])
        .chain_update(seed.expose_secret())
        .finalize()
        .into()
}

/// One piece of a peer's chain seed: 33 bytes (32 y bytes, then x). Secret:
/// zeroized on drop, `<redacted>` in `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct SeedPiece(Zeroizing<Vec<u8>>);

impl SeedPiece {
    /// Wraps piece bytes (from a node's sealed store); refuses a wrong length or x = 0.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, Error> {
        let bytes = Zeroizing::new(bytes);
        if bytes.len() != 33 || bytes.last() == Some(&0) {
            return Err(Error::decode("seed piece", "expected 33 bytes (32 of y, then x) and a non-zero x"));
        }
        Ok(SeedPiece(bytes))
    }

    /// The bytes. Do not log them.
    pub fn expose_secret(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SeedPiece {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SeedPiece(<redacted>)")
    }
}

/// What one party holds after an escrow: every party's seed commitment
/// (its own included) and a piece of every peer's seed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EscrowedSeeds {
    /// The key.
    pub key_id: KeyId,
    /// The holder.
    pub holder: PartyId,
    /// Every party's commitment to its seed.
    pub commitments: BTreeMap<PartyId, [u8; 32]>,
    /// A piece of each peer's seed, by the peer.
    pub pieces: BTreeMap<PartyId, SeedPiece>,
}

/// Rebuilds `party`'s seed of `key_id` from pieces held by distinct peers
/// and checks it against `commitment`.
pub fn rebuild_seed(
    key_id: KeyId,
    party: PartyId,
    commitment: &[u8; 32],
    pieces: &[&SeedPiece],
) -> Result<ChainSeed, Error> {
    let views: Vec<&[u8]> = pieces.iter().map(|piece| piece.expose_secret()).collect();
    let bytes = shardvault_shamir::combine(&views).map_err(|e| Error::Protocol(format!("seed pieces: {e}")))?;
    let seed: &[u8; 32] =
        bytes.as_slice().try_into().map_err(|_| Error::Protocol("seed pieces: not a 32-byte seed".into()))?;
    let seed = ChainSeed::from_bytes(*seed);
    if seed_commitment(key_id, party, &seed) != *commitment {
        return Err(Error::Protocol(format!(
            "the escrowed pieces of party {party}'s chain seed do not rebuild the seed it committed to"
        )));
    }
    Ok(seed)
}

/// The escrow protocol, one round.
#[derive(Debug)]
pub struct SeedEscrow {
    key_id: KeyId,
    me: PartyId,
    own: [u8; 32],
}

impl Machine for SeedEscrow {
    type Output = EscrowedSeeds;

    fn advance(self, inbox: Inbox) -> Result<Step<Self>, Error> {
        let mut commitments = BTreeMap::new();
        for (from, payload) in &inbox.broadcast {
            let commitment: [u8; 32] =
                payload.as_bytes().try_into().map_err(|_| Error::misbehaved(*from, "a seed commitment is 32 bytes"))?;
            commitments.insert(*from, commitment);
        }
        if commitments.get(&self.me) != Some(&self.own) {
            return Err(Error::Bug("our own seed commitment is missing from the round"));
        }
        let mut pieces = BTreeMap::new();
        for (from, payload) in &inbox.direct {
            let piece = SeedPiece::from_bytes(payload.as_bytes().to_vec())
                .map_err(|_| Error::misbehaved(*from, "a seed piece is 33 bytes with a non-zero x"))?;
            pieces.insert(*from, piece);
        }
        let agree_on = commitments.values().flatten().copied().collect();
        let output = EscrowedSeeds { key_id: self.key_id, holder: self.me, commitments, pieces };
        Ok(Step::Done { output, agree_on: Some(agree_on) })
    }
}

/// Starts the escrow of `share`'s chain seed among all n parties of its key.
/// Refused for an n-of-n key: fewer than n parties cannot help a lost one,
/// so its backups are the only way back.
pub fn escrow_seed(share: &KeyShare, session: SessionId) -> Result<Started<SeedEscrow>, Error> {
    let threshold = share.threshold();
    let (t, n) = (threshold.threshold(), threshold.parties());
    if t >= n {
        return Err(Error::InvalidInput(format!(
            "a {t}-of-{n} key cannot be repaired (a lost party needs {t} others): its backups are the only way back"
        )));
    }
    let peers: Vec<PartyId> = threshold.party_ids().filter(|p| *p != share.party()).collect();
    let parts = u8::try_from(peers.len()).map_err(|_| Error::Bug("more than 255 peers"))?;
    let pieces = shardvault_shamir::split(share.chain_seed().expose_secret(), parts, t)
        .map_err(|e| Error::Protocol(format!("seed escrow: {e}")))?;
    let own = seed_commitment(share.key_id(), share.party(), share.chain_seed());
    let direct = peers.iter().zip(pieces).map(|(peer, piece)| (*peer, piece.to_vec())).collect();
    let first = Outbox { broadcast: Some(own.to_vec()), direct };
    let machine = SeedEscrow { key_id: share.key_id(), me: share.party(), own };
    Session::start(session, share.party(), &threshold.party_ids().collect(), machine, first)
}

impl EscrowedSeeds {
    /// The piece this holder keeps of `party`'s seed, with the commitment.
    pub fn piece_of(&self, party: PartyId) -> Option<(&SeedPiece, &[u8; 32])> {
        Some((self.pieces.get(&party)?, self.commitments.get(&party)?))
    }
}
