//! What the coordinator asks of nodes, and what nodes answer. Carried inside
//! the node↔coordinator hop; pairwise protocol traffic travels as [`Frame`]s.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use shardvault_chains::{Chain, MessageFormat, Unsigned};
use shardvault_types::{DerivationPath, Epoch, KeyId, PartyId, Scheme, SessionId, Signature, Threshold};

use crate::{Cluster, Error, Frame, NodeId};

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
    /// The approved request this job carries out, for every job that changes
    /// state (key creation, hardened derivation, signing, refresh): each node
    /// checks it itself (docs/GOVERNANCE.md, "What the nodes check").
    pub governance: Option<Governed>,
}

/// A request, its approvals, and the organisation's governance log — all a
/// node needs to decide for itself whether a job was approved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Governed {
    /// The request's canonical bytes (canonical JSON, UTF-8). Empty for a
    /// refresh the policy schedules, which no one approves: each node checks
    /// the schedule itself (docs/POLICY.md "Scheduled refresh").
    pub request: String,
    /// Armored SSHSIG approvals of exactly those bytes.
    pub approvals: Vec<String>,
    /// The whole governance log, oldest entry first.
    pub log: Vec<shardvault_governance::LogEntry>,
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
    /// Sign what `payload` says, with the key at `path`, using the shares of
    /// `epoch` (every signer must use the same epoch; a node that does not
    /// hold it refuses, which is not a protocol failure of anyone).
    Sign {
        /// The shares' epoch.
        epoch: Epoch,
        /// The key's path.
        path: DerivationPath,
        /// What to sign; each node computes the digest itself.
        payload: SignPayload,
    },
    /// Refresh the shares of epoch `from` (the active one) into epoch `to`,
    /// which must be later than every epoch the node holds. The new shares
    /// stay pending beside the old until [`JobKind::Activate`].
    Refresh {
        /// The epoch refreshed.
        from: Epoch,
        /// The new epoch.
        to: Epoch,
    },
    /// Make a refreshed epoch the active one and delete older ones — only on
    /// proof, signed by every party's node, that each of them stored it.
    Activate {
        /// The proof.
        certificate: RefreshCertificate,
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
    /// Seal this node's active share of the key, with its chain seed, to its
    /// party's recipient (`recipients[party - 1]`) as an age file. Carries an
    /// approved export request naming the key and exactly these recipients.
    ExportBackup {
        /// One `ssh-ed25519` recipient per party of the key, in party order.
        recipients: Vec<shardvault_governance::MemberKey>,
    },
    /// Escrow this node's chain seed of the key among the key's other
    /// parties, and keep their pieces of theirs (all n parties, at their
    /// pinned nodes): what lets any t of them give a lost party its seed
    /// back (docs/DESIGN.md "Replacing a lost node"). Run after key
    /// generation and once for keys from before escrow; it changes no key.
    EscrowSeeds,
    /// Rebuild party `target`'s share of the key on its new node, from the
    /// other participants' shares (t or more helpers), with its chain seed
    /// from their escrowed pieces. Carries the approved node replacement
    /// request naming the target's node; `parties` is the key's whole
    /// party→node map, which every helper checks against its own pinned
    /// map, and which the new node pins.
    RepairShare {
        /// The party repaired.
        target: PartyId,
        /// The key's party→node map.
        parties: BTreeMap<PartyId, NodeId>,
    },
}

/// Every party's signed statement that it stored epoch `epoch` of a key: a
/// node deletes older shares only on this, never on the coordinator's word,
/// so a refresh that did not reach some node cannot destroy the key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshCertificate {
    /// The new epoch.
    pub epoch: Epoch,
    /// The key's public key (unchanged by the refresh).
    pub public_key: Vec<u8>,
    /// Each party's node's [`crate::NodeIdentity`] signature over
    /// [`RefreshCertificate::statement`].
    pub signatures: BTreeMap<NodeId, Vec<u8>>,
}

impl RefreshCertificate {
    /// The signing domain of the statement.
    pub const DOMAIN: &'static str = "refresh-stored";

    /// "I hold epoch `epoch` of key `key_id` (public key `public_key`)".
    pub fn statement(key_id: KeyId, epoch: Epoch, public_key: &[u8]) -> Vec<u8> {
        let mut statement = key_id.as_bytes().to_vec();
        statement.extend_from_slice(&epoch.0.to_be_bytes());
        statement.extend_from_slice(&(public_key.len() as u64).to_be_bytes());
        statement.extend_from_slice(public_key);
        statement
    }

    /// Checks that the node of every party in `parties` (party → node, the
    /// key's whole membership) signed the statement, under its identity key
    /// pinned in `cluster`.
    pub fn verify(&self, key_id: KeyId, parties: &BTreeMap<PartyId, NodeId>, cluster: &Cluster) -> Result<(), Error> {
        check_party_map(parties)?;
        let statement = Self::statement(key_id, self.epoch, &self.public_key);
        for node in parties.values() {
            let signature = self
                .signatures
                .get(node)
                .ok_or_else(|| Error::BadStatement(format!("node {node} has not confirmed epoch {}", self.epoch)))?;
            let signature: &[u8; 64] = signature
                .as_slice()
                .try_into()
                .map_err(|_| Error::BadStatement(format!("node {node}'s confirmation is not a signature")))?;
            cluster.identity_of(*node)?.verify(Self::DOMAIN, &statement, signature).map_err(|_| {
                Error::BadStatement(format!("node {node}'s confirmation of epoch {} does not verify", self.epoch))
            })?;
        }
        Ok(())
    }
}

impl JobKind {
    /// A short name for logs.
    pub fn name(&self) -> &'static str {
        match self {
            JobKind::CreateKey { .. } => "create-key",
            JobKind::DeriveHardened { .. } => "derive",
            JobKind::Sign { .. } => "sign",
            JobKind::Refresh { .. } => "refresh",
            JobKind::Activate { .. } => "activate",
            JobKind::Attest { .. } => "attest",
            JobKind::ExportBackup { .. } => "export-backup",
            JobKind::EscrowSeeds => "escrow-seeds",
            JobKind::RepairShare { .. } => "repair-share",
        }
    }
}

/// What a signing request asks to sign. Never a bare digest or bare bytes
/// unless named so: those two kinds are denied by the node unless its
/// operator opted in (`--allow-raw-signing`), and a policy denies them by default.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SignPayload {
    /// A message in one of the chains' domain-separated message formats;
    /// each node checks the format against the key type and the path's chain
    /// and builds what is signed itself.
    Message {
        /// The message (Aptos: the AIP-62 full message; EIP-712: the typed-data JSON).
        message: Vec<u8>,
        /// The format.
        format: MessageFormat,
    },
    /// A 32-byte digest the caller computed (ECDSA and BIP340 keys): signs
    /// anything, transactions included. Raw signing, denied by default.
    RawDigest([u8; 32]),
    /// Bytes an Ed25519 key signs as given: signs anything, transactions
    /// included. Raw signing, denied by default.
    RawBytes(Vec<u8>),
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

impl SignPayload {
    /// The payload asking for signature `index` of `unsigned`: input `index`
    /// of a PSBT (one job per input), `0` for the other families.
    pub fn transaction(unsigned: Unsigned<'_>, index: usize) -> Result<Self, shardvault_chains::Error> {
        Ok(match unsigned {
            Unsigned::Psbt { chain, network, psbt } => SignPayload::BitcoinInput {
                chain,
                psbt: psbt.to_vec(),
                index: u32::try_from(index).map_err(|_| shardvault_chains::Error::Psbt("too many inputs".into()))?,
                network: network.to_string(),
            },
            _ if index != 0 => {
                let detail = format!("a transaction has one signature, not number {index}");
                return Err(match unsigned {
                    Unsigned::SingleSigner { chain, .. } => {
                        shardvault_chains::Error::Transaction { chain: chain.name(), detail }
                    }
                    _ => shardvault_chains::Error::Evm(detail),
                });
            }
            Unsigned::Evm { chain_id, preimage } => {
                SignPayload::EvmTransaction { preimage: preimage.to_vec(), chain_id }
            }
            Unsigned::SingleSigner { chain, network, bytes } => {
                SignPayload::Transaction { chain, network: network.to_string(), unsigned: bytes.to_vec() }
            }
        })
    }

    /// What a request names for this payload: the same bytes, a PSBT whole
    /// (each of its inputs is one job of the same request).
    pub fn requested(&self) -> shardvault_governance::Payload {
        use shardvault_governance::Payload;
        match self {
            SignPayload::Message { message, format } => {
                Payload::Message { format: format.clone(), message: message.clone() }
            }
            SignPayload::RawDigest(digest) => Payload::RawDigest { digest: digest.to_vec() },
            SignPayload::RawBytes(bytes) => Payload::RawBytes { bytes: bytes.clone() },
            SignPayload::BitcoinInput { chain, psbt, network, .. } => {
                Payload::Transaction { chain: *chain, network: network.clone(), unsigned: psbt.clone() }
            }
            SignPayload::EvmTransaction { preimage, chain_id } => Payload::Transaction {
                chain: Chain::Ethereum,
                network: chain_id.to_string(),
                unsigned: preimage.clone(),
            },
            SignPayload::Transaction { chain, network, unsigned } => {
                Payload::Transaction { chain: *chain, network: network.clone(), unsigned: unsigned.clone() }
            }
        }
    }

    /// The transaction this payload carries, and which of its signatures it
    /// asks for (a PSBT's input index; `0` for the other families); `None`
    /// for messages and the raw kinds.
    pub fn unsigned(&self) -> Option<(Unsigned<'_>, u32)> {
        match self {
            SignPayload::BitcoinInput { chain, psbt, index, network } => {
                Some((Unsigned::Psbt { chain: *chain, network, psbt }, *index))
            }
            SignPayload::EvmTransaction { preimage, chain_id } => {
                Some((Unsigned::Evm { chain_id: *chain_id, preimage }, 0))
            }
            SignPayload::Transaction { chain, network, unsigned } => {
                Some((Unsigned::SingleSigner { chain: *chain, network, bytes: unsigned }, 0))
            }
            SignPayload::Message { .. } | SignPayload::RawDigest(_) | SignPayload::RawBytes(_) => None,
        }
    }
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
        /// This node's signature over [`RefreshCertificate::statement`].
        stored: Vec<u8>,
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
    /// The node's share, sealed to its party's recipient.
    BackedUp {
        /// The epoch of the share sealed.
        epoch: Epoch,
        /// The age file (binary), to this party's recipient.
        sealed: Vec<u8>,
        /// For every other party: a share of this party's chain seed, as an
        /// age file to that party's recipient.
        seed_shares: BTreeMap<PartyId, Vec<u8>>,
        /// Every hardened path the node derived for the key, with its child
        /// public key (in the statement).
        hardened: BTreeMap<shardvault_types::DerivationPath, Vec<u8>>,
        /// The node's identity signature over the
        /// [`crate::BackupStatement`] of these files.
        signature: Vec<u8>,
    },
    /// This node holds a piece of every other party's chain seed, and every
    /// party's seed commitment.
    Escrowed,
    /// A helper: the target assembled its share. The target: its share is
    /// stored, usable only for the complete refresh that must follow.
    Repaired {
        /// The epoch of the repaired share.
        epoch: Epoch,
    },
}

/// The version of the node↔coordinator protocol: [`ToNode`], [`FromNode`]
/// and everything inside them ([`Job`], [`Outcome`], [`Frame`]'s header). It
/// is exchanged in the hop handshake ([`crate::hop`]), and a node and a
/// coordinator of different versions refuse each other there, each naming
/// both versions, before either decodes a message of the other's version.
/// Bump it with any change to these types' encoding (4: jobs carry their
/// approved request; 5: backup export; 6: signed backup statements; 7: seed
/// escrow and share repair). 2 stands for the
/// releases that exchanged none (hop prologue `shardvault/hop/v2`, which
/// stays); their handshakes still authenticate, so they are refused by
/// version too. Releases of prologue v1 fail the handshake itself.
pub const PROTOCOL_VERSION: u16 = 7;

/// Coordinator → node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ToNode {
    /// Take part in a job.
    Start(Job),
    /// A relayed frame from another node.
    Frame(Frame),
    /// Give up a session (timeout, another signer set chosen). A node that
    /// was running it answers [`FromNode::Waiting`].
    Abort(SessionId),
    /// Liveness check on the hop; answered with [`FromNode::Pong`] (same number).
    Ping(u64),
    /// The answer to a [`FromNode::Ping`].
    Pong(u64),
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
        /// This node now refuses to sign with `culprit` for this key until a
        /// refresh (a DKLs23 ban abort: continuing could leak the key).
        banned: bool,
    },
    /// Liveness check on the hop; answered with [`ToNode::Pong`] (same number).
    Ping(u64),
    /// The answer to a [`ToNode::Ping`].
    Pong(u64),
    /// The answer to [`ToNode::Abort`] for a session that was still running
    /// here: the participants this node was still waiting for.
    Waiting {
        /// The session.
        session: SessionId,
        /// The peers whose messages had not arrived (by this node's count).
        on: Vec<NodeId>,
    },
}

impl Job {
    /// SHA-256 of the job's encoding: what a node was asked, exactly. It binds
    /// the job's channels ([`crate::Channels::open`]) and names the request in
    /// the sign log.
    pub fn digest(&self) -> Result<[u8; 32], Error> {
        use sha2::Digest;
        let bytes = postcard::to_stdvec(self).map_err(|e| Error::Malformed(format!("job encoding: {e}")))?;
        Ok(sha2::Sha256::digest(bytes).into())
    }

    /// The participating nodes.
    pub fn nodes(&self) -> BTreeSet<NodeId> {
        self.participants.values().copied().collect()
    }

    /// Refuses a job whose party maps give two parties one node: a node
    /// plays one party of a key, or a single machine would hold (or speak
    /// for) several shares and the threshold would mean nothing. Nodes call
    /// it before anything else.
    pub fn check_parties(&self) -> Result<(), Error> {
        check_party_map(&self.participants)?;
        if let JobKind::RepairShare { parties, .. } = &self.kind {
            check_party_map(parties)?;
        }
        Ok(())
    }

    /// The party `node` plays.
    pub fn party_of(&self, node: NodeId) -> Result<PartyId, Error> {
        self.participants
            .iter()
            .find_map(|(party, n)| (*n == node).then_some(*party))
            .ok_or_else(|| Error::Misdirected(format!("node {node} is not a participant of this job")))
    }
}

/// Refuses a party→node map that gives two parties one node.
pub fn check_party_map(parties: &BTreeMap<PartyId, NodeId>) -> Result<(), Error> {
    let mut seen = BTreeMap::new();
    for (party, node) in parties {
        if let Some(other) = seen.insert(*node, *party) {
            return Err(Error::Malformed(format!(
                "parties {other} and {party} are both mapped to node {node}: each party of a key is a different node"
            )));
        }
    }
    Ok(())
}

macro_rules! postcard_codec {
    ($t:ty) => {
        impl $t {
            /// Encodes for the node↔coordinator hop. Postcard does not fail
            /// on these types; if it ever did, that is [`Error::Bug`], never
            /// an empty message on the hop.
            pub fn to_bytes(&self) -> Result<Vec<u8>, Error> {
                postcard::to_stdvec(self).map_err(|_| Error::Bug("a node↔coordinator message does not encode"))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A transaction's payloads are the three variants nodes have always
    /// been sent, byte for byte (postcard: variant index, then the fields in
    /// order), and read back as the same transaction and signature number.
    #[test]
    fn transaction_payloads_keep_their_encoding_and_read_back() {
        let cases = [
            (
                Unsigned::Psbt { chain: Chain::Litecoin, network: "mainnet", psbt: b"psbt\xff" },
                2,
                "03010570736274ff02076d61696e6e6574",
            ),
            (Unsigned::Evm { chain_id: 137, preimage: &[0x02, 0xc0] }, 0, "040202c08901"),
            (Unsigned::SingleSigner { chain: Chain::Sui, network: "devnet", bytes: &[9] }, 0, "0507066465766e65740109"),
        ];
        for (unsigned, index, encoding) in cases {
            let payload = SignPayload::transaction(unsigned, index).unwrap();
            let bytes = postcard::to_stdvec(&payload).unwrap();
            assert_eq!(hex::encode(bytes), encoding, "{payload:?}");
            assert_eq!(payload.unsigned(), Some((unsigned, u32::try_from(index).unwrap())));
        }
        // One signature for the families other than PSBTs; none for messages.
        assert!(SignPayload::transaction(Unsigned::Evm { chain_id: 1, preimage: &[] }, 1).is_err());
        assert_eq!(SignPayload::RawDigest([0; 32]).unsigned(), None);
    }

    /// One node playing two parties would hold two shares, and its one
    /// signature would confirm an epoch for both: refused wherever a party
    /// map is read.
    #[test]
    fn a_party_map_giving_one_node_two_parties_is_refused() {
        let map = |pairs: &[(u8, u16)]| -> BTreeMap<PartyId, NodeId> {
            pairs.iter().map(|(p, n)| (PartyId::new(*p).unwrap(), NodeId(*n))).collect()
        };
        assert!(check_party_map(&map(&[(1, 1), (2, 2), (3, 3)])).is_ok());
        let doubled = map(&[(1, 1), (2, 2), (3, 1)]);
        let error = check_party_map(&doubled).unwrap_err().to_string();
        assert!(error.contains("parties 1 and 3 are both mapped to node 1"), "{error}");
        let key_id = KeyId::random();
        let repair = JobKind::RepairShare { target: PartyId::new(2).unwrap(), parties: doubled.clone() };
        let job =
            Job { session: SessionId::random(), key_id, participants: map(&[(2, 2)]), kind: repair, governance: None };
        assert!(job.check_parties().is_err(), "a repair's party map");
        let job = Job { participants: doubled.clone(), kind: JobKind::EscrowSeeds, ..job };
        assert!(job.check_parties().is_err(), "a job's participants");
        let (_, coordinator) = crate::generate_keypair().unwrap();
        let cluster = Cluster { coordinator, nodes: BTreeMap::new(), identities: BTreeMap::new() };
        let certificate = RefreshCertificate { epoch: Epoch(1), public_key: vec![2; 33], signatures: BTreeMap::new() };
        let error = certificate.verify(key_id, &doubled, &cluster).unwrap_err().to_string();
        assert!(error.contains("both mapped"), "{error}");
    }
}
