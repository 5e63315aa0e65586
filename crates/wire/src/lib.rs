//! What crosses the network between participant nodes.
//!
//! Every pair of nodes taking part in a protocol session runs its own Noise
//! `Noise_IK_25519_ChaChaPoly_BLAKE2s` channel ([`Channels`]), with static keys
//! pinned by the [`Cluster`] file. The relay (the coordinator) moves
//! [`Frame`]s and sees only `{session, from, to, seq}` and ciphertext.
//!
//! One channel per session and pair: the Noise prologue binds the session id
//! and both node ids, so a frame injected from another session or pair fails
//! authentication; the per-direction sequence number (the Noise nonce) makes
//! replayed, dropped or reordered frames fail loudly. Pure: no I/O.
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic))]
#![warn(missing_docs)]

mod attestation;
mod backup;
mod channel;
mod cluster;
mod frame;
pub mod hop;
mod identity;
mod job;

pub use attestation::{
    address_for, AddressAttestation, AddressStatement, AttestationCheck, ADDRESS_ATTESTATION_DOMAIN,
    ADDRESS_ATTESTATION_VERSION,
};
pub use backup::{BackupStatement, BACKUP_STATEMENT_DOMAIN, BACKUP_STATEMENT_VERSION};
pub use channel::{Channels, Received};
pub use cluster::{generate_keypair, Cluster, NodeId, NoisePublicKey, NoiseSecretKey};
pub use frame::{Frame, FRAME_VERSION, MAX_FRAME};
pub use identity::{IdentityPublicKey, NodeIdentity};
pub use job::{
    check_party_map, FromNode, Governed, Job, JobKind, Outcome, RefreshCertificate, SignPayload, ToNode,
    PROTOCOL_VERSION,
};

/// The Noise protocol every pair of nodes runs.
pub const NOISE_PARAMS: &str = "Noise_IK_25519_ChaChaPoly_BLAKE2s";

/// Errors of the wire layer. Everything but [`Error::Noise`] describes a
/// frame that was refused; the channel is left as it was.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A node id that the cluster file does not list.
    #[error("node {0} is not a member of the cluster (check the cluster file)")]
    UnknownNode(NodeId),
    /// A peer authenticated with a static key other than the pinned one.
    #[error("node {node} presented a static key that does not match the cluster file; refusing it")]
    KeyMismatch {
        /// The claimed node.
        node: NodeId,
    },
    /// A frame for another session, node or channel.
    #[error("frame refused: {0}")]
    Misdirected(String),
    /// A frame out of sequence: a replay (seq below expected) or a gap/reorder.
    #[error("frame from {from} has sequence {got}, expected {expected} ({})", if got < expected { "replayed" } else { "reordered or a frame was lost" })]
    OutOfSequence {
        /// Sender.
        from: NodeId,
        /// Expected sequence number.
        expected: u64,
        /// Received sequence number.
        got: u64,
    },
    /// Authentication of a frame failed: tampered, or not from this channel.
    #[error("frame from {from} does not authenticate (tampered, or from another session)")]
    Unauthentic {
        /// Claimed sender.
        from: NodeId,
    },
    /// Bytes that are not a frame, or a frame too large.
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// The cluster file is not valid.
    #[error("invalid cluster file: {0}")]
    Cluster(String),
    /// A signed statement (refresh certificate, address attestation) that
    /// does not verify against the pinned identity key.
    #[error("statement refused: {0}")]
    BadStatement(String),
    /// The Noise library failed in a way that is not the peer's doing.
    #[error("noise: {0}")]
    Noise(String),
    /// The other end of the node↔coordinator hop speaks another version of
    /// the protocol ([`PROTOCOL_VERSION`]); the hop is refused before any
    /// message of either version is exchanged.
    #[error(
        "{peer} speaks node↔coordinator protocol version {theirs}, this {us} speaks version {ours}: \
         run the same shardvault release on the nodes and the coordinator"
    )]
    Version {
        /// Who is refused: `node 3`, `the coordinator`.
        peer: String,
        /// Who refuses: `node`, `coordinator`.
        us: &'static str,
        /// The peer's version (2: a release from before versions were exchanged).
        theirs: u16,
        /// This end's version.
        ours: u16,
    },
    /// An invariant of this crate does not hold: a bug in shardvault, never
    /// the doing of a peer. Returned where an encoding "cannot" fail, instead
    /// of an empty message on the wire.
    #[error("internal error, a bug in shardvault (please report it): {0}")]
    Bug(&'static str),
}
