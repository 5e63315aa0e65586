//! What the coordinator asks of nodes, and what nodes answer. Carried inside
//! the node↔coordinator hop; pairwise protocol traffic travels as [`Frame`]s.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use shardvault_chains::{Chain, MessageEncoding};
use shardvault_mpc::{DerivationPath, Epoch, KeyId, PartyId, Scheme, SessionId, Signature, Threshold};

use crate::{Error, Frame, NodeId};

/// One protocol run the coordinator asks a node to take part in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// Fresh per job; every frame and protocol message is bound to it.
    pub session: SessionId,
    /// The key concerned.
    pub key_id: KeyId,
    /// Which node plays which party of the key (all n for DKG, derivation and
    /// refresh; the t signers for signing).
    pub participants: BTreeMap<PartyId, NodeId>,
    /// What to do.
    pub kind: JobKind,
}

/// The protocol to run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobKind {
    /// Generate a new key.
    CreateKey {
        /// Scheme.
        scheme: Scheme,
        /// t-of-n.
        threshold: Threshold,
    },
    /// Derive (and cache) an all-hardened path.
    DeriveHardened {
        /// The path.
        path: DerivationPath,
    },
    /// Sign what `payload` says, with the key at `path`.
    Sign {
        /// The key's path.
        path: DerivationPath,
        /// What to sign; each node computes the digest itself.
        payload: SignPayload,
    },
    /// Refresh shares; the new epoch stays pending until [`JobKind::Activate`].
    Refresh,
    /// Make a refreshed epoch the active one (after every node reported it).
    Activate {
        /// The epoch.
        epoch: Epoch,
    },
    /// Attest an address: the node derives the child public key at `path`
    /// from its own share and cached hardened tweak, computes the address
    /// itself and signs an [`crate::AddressStatement`]. No protocol runs.
    Attest {
        /// The full path; its hardened prefix must have been derived on the node.
        path: DerivationPath,
        /// The chain family.
        chain: Chain,
        /// Cosmos SDK chains: the bech32 prefix (none: `cosmos`).
        bech32_prefix: Option<String>,
    },
}

impl JobKind {
    /// A short name for logs.
    pub fn name(&self) -> &'static str {
        match self {
            JobKind::CreateKey { .. } => "create-key",
            JobKind::DeriveHardened { .. } => "derive",
            JobKind::Sign { .. } => "sign",
            JobKind::Refresh => "refresh",
            JobKind::Activate { .. } => "activate",
            JobKind::Attest { .. } => "attest",
        }
    }
}

/// What a signing request asks to sign. Never a bare digest unless named so.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SignPayload {
    /// A message and the chain's rule for turning it into what is signed.
    Message {
        /// The message.
        message: Vec<u8>,
        /// The rule.
        encoding: MessageEncoding,
    },
    /// A 32-byte digest the caller computed, explicitly named as such.
    RawDigest([u8; 32]),
    /// One input of a Bitcoin or Litecoin PSBT: each node decodes the PSBT,
    /// checks the input pays to the key being used, and computes its sighash itself.
    BitcoinInput {
        /// Bitcoin or Litecoin.
        chain: Chain,
        /// The unsigned PSBT (binary).
        psbt: Vec<u8>,
        /// The input to sign.
        index: u32,
        /// `bitcoin`, `testnet`, `signet` or `regtest`; Litecoin: `mainnet`, `testnet`, `regtest`.
        network: String,
    },
    /// An EVM transaction's signing preimage (EIP-1559 or legacy EIP-155):
    /// each node decodes it, checks the chain id, and hashes it itself.
    EvmTransaction {
        /// The preimage.
        preimage: Vec<u8>,
        /// The chain id it must be for.
        chain_id: u64,
    },
    /// An unsigned Solana, Aptos, Sui, Tron or Cosmos transaction, as the
    /// chain's SDK hands a signer: each node decodes it, checks the signer is
    /// the key being used and the network is `network`, and derives what is
    /// signed itself.
    Transaction {
        /// The chain.
        chain: Chain,
        /// The network it must be for (Cosmos: the chain id).
        network: String,
        /// The unsigned transaction bytes.
        unsigned: Vec<u8>,
    },
}

/// A node's result of a job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// The key exists on this node.
    KeyCreated {
        /// Root public key.
        public_key: Vec<u8>,
    },
    /// The path is derived and cached.
    Derived {
        /// Child public key.
        public_key: Vec<u8>,
        /// Child chain code (for non-hardened levels below).
        chain_code: [u8; 32],
    },
    /// The signature.
    Signed {
        /// What was signed (the digest, or the message for Ed25519).
        signed: Vec<u8>,
        /// The signature.
        signature: Signature,
    },
    /// The new epoch is stored, pending activation.
    Refreshed {
        /// The new epoch.
        epoch: Epoch,
    },
    /// The epoch is active and older shares are deleted.
    Activated {
        /// The epoch.
        epoch: Epoch,
    },
    /// The node's signed statement about an address.
    Attested {
        /// What the node computed itself.
        statement: crate::AddressStatement,
        /// Its identity signature over the statement (64 bytes).
        signature: Vec<u8>,
    },
}

/// Coordinator → node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ToNode {
    /// Take part in a job.
    Start(Job),
    /// A relayed frame from another node.
    Frame(Frame),
    /// Give up a session (timeout, another signer set chosen).
    Abort(SessionId),
}

/// Node → coordinator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FromNode {
    /// A frame to relay.
    Frame(Frame),
    /// A job finished.
    Done {
        /// Its session.
        session: SessionId,
        /// The result.
        outcome: Outcome,
    },
    /// A job failed here.
    Failed {
        /// Its session.
        session: SessionId,
        /// Why, for the operator.
        reason: String,
        /// The node to blame, when the protocol named one.
        culprit: Option<NodeId>,
    },
}

impl Job {
    /// The participating nodes.
    pub fn nodes(&self) -> BTreeSet<NodeId> {
        self.participants.values().copied().collect()
    }

    /// The party `node` plays.
    pub fn party_of(&self, node: NodeId) -> Result<PartyId, Error> {
        self.participants
            .iter()
            .find_map(|(party, n)| (*n == node).then_some(*party))
            .ok_or_else(|| Error::Misdirected(format!("node {node} is not a participant of this job")))
    }
}

macro_rules! postcard_codec {
    ($t:ty) => {
        impl $t {
            /// Encodes for the node↔coordinator hop.
            pub fn to_bytes(&self) -> Vec<u8> {
                postcard::to_stdvec(self).unwrap_or_default()
            }

            /// Decodes from the hop; refuses trailing bytes.
            pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
                if bytes.len() > crate::MAX_FRAME {
                    return Err(Error::Malformed("message too large".into()));
                }
                let (value, rest) = postcard::take_from_bytes(bytes).map_err(|e| Error::Malformed(e.to_string()))?;
                if !rest.is_empty() {
                    return Err(Error::Malformed("trailing bytes".into()));
                }
                Ok(value)
            }
        }
    };
}

postcard_codec!(ToNode);
postcard_codec!(FromNode);
