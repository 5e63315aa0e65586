//! The participant node as a state machine: coordinator messages in
//! ([`ToNode`]), messages out ([`FromNode`]). It runs each job's protocol over
//! pairwise Noise channels, decides for itself what it signs, and persists
//! results in its sealed [`Store`]. The process around it (connection to the
//! coordinator, signals) is a thin shell.

use std::collections::{HashMap, HashSet, VecDeque};

use sha2::{Digest, Sha256};
use shardvault_chains::MessageEncoding;
use shardvault_mpc::{
    derive_hardened, dkg, refresh, sign, Dkg, Envelope, HdMachine, KeyShare, PartyId, Refresh, Scheme, Session, Sign,
    SignRequest,
};
use shardvault_wire::{
    AddressStatement, Channels, Cluster, Frame, FromNode, Job, JobKind, NodeId, NodeIdentity, NoiseSecretKey, Outcome,
    SignPayload, ToNode,
};

use crate::store::{Store, StoreError};

/// Frames kept for a session whose `Start` has not arrived yet (a peer that
/// started first may already be talking); the oldest session is evicted first.
const EARLY_FRAMES_PER_SESSION: usize = 64;
const EARLY_SESSIONS: usize = 64;
/// Sessions remembered as finished here, so late frames for them are dropped.
const FINISHED_SESSIONS: usize = 1024;

/// Why a job failed on this node.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// Storage.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The protocol.
    #[error(transparent)]
    Protocol(#[from] shardvault_mpc::Error),
    /// The channel layer.
    #[error(transparent)]
    Wire(#[from] shardvault_wire::Error),
    /// This node will not do what the job asks.
    #[error("refused: {0}")]
    Refused(String),
}

enum Protocol {
    Dkg(Session<Dkg>),
    Derive(Session<HdMachine>),
    Sign { session: Session<Sign>, signed: Vec<u8> },
    Refresh(Session<Refresh>),
}

impl Protocol {
    fn receive(&mut self, envelope: Envelope) -> Result<Vec<Envelope>, shardvault_mpc::Error> {
        match self {
            Protocol::Dkg(s) => s.receive(envelope),
            Protocol::Derive(s) => s.receive(envelope),
            Protocol::Sign { session, .. } => session.receive(envelope),
            Protocol::Refresh(s) => s.receive(envelope),
        }
    }

    fn is_finished(&self) -> bool {
        match self {
            Protocol::Dkg(s) => s.is_finished(),
            Protocol::Derive(s) => s.is_finished(),
            Protocol::Sign { session, .. } => session.is_finished(),
            Protocol::Refresh(s) => s.is_finished(),
        }
    }
}

struct Running {
    job: Job,
    channels: Channels,
    protocol: Protocol,
}

/// One participant node.
pub struct Node {
    id: NodeId,
    secret: NoiseSecretKey,
    /// Signs this node's statements (address attestations).
    identity: NodeIdentity,
    cluster: Cluster,
    store: Store,
    running: HashMap<shardvault_mpc::SessionId, Running>,
    early: HashMap<shardvault_mpc::SessionId, Vec<Frame>>,
    early_order: VecDeque<shardvault_mpc::SessionId>,
    finished: HashSet<shardvault_mpc::SessionId>,
    finished_order: VecDeque<shardvault_mpc::SessionId>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node").field("id", &self.id).field("running", &self.running.len()).finish_non_exhaustive()
    }
}

impl Node {
    /// A node with its Noise key, the pinned cluster and its open store.
    pub fn new(id: NodeId, secret: NoiseSecretKey, cluster: Cluster, store: Store) -> Self {
        let identity = NodeIdentity::derive(&secret);
        Node {
            id,
            secret,
            identity,
            cluster,
            store,
            running: HashMap::new(),
            early: HashMap::new(),
            early_order: VecDeque::new(),
            finished: HashSet::new(),
            finished_order: VecDeque::new(),
        }
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The node's store (read access for status and audits).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// How many jobs are in progress.
    pub fn running(&self) -> usize {
        self.running.len()
    }

    /// Handles one message from the coordinator.
    pub fn handle(&mut self, message: ToNode) -> Vec<FromNode> {
        match message {
            ToNode::Start(job) => {
                let session = job.session;
                self.start(job).unwrap_or_else(|error| self.fail(session, &error))
            }
            ToNode::Frame(frame) => self.on_frame(frame),
            ToNode::Abort(session) => {
                self.running.remove(&session);
                self.early.remove(&session);
                self.remember_finished(session);
                Vec::new()
            }
        }
    }

    /// Remembers a session as over here, so that late frames for it are dropped.
    fn remember_finished(&mut self, session: shardvault_mpc::SessionId) {
        if self.finished.insert(session) {
            self.finished_order.push_back(session);
            if self.finished_order.len() > FINISHED_SESSIONS {
                if let Some(oldest) = self.finished_order.pop_front() {
                    self.finished.remove(&oldest);
                }
            }
        }
    }

    /// Keeps a frame for a session not started yet (bounded; oldest evicted).
    fn buffer_early(&mut self, frame: Frame) {
        let session = frame.session;
        if self.finished.contains(&session) {
            return;
        }
        if !self.early.contains_key(&session) {
            if self.early_order.len() >= EARLY_SESSIONS {
                if let Some(oldest) = self.early_order.pop_front() {
                    self.early.remove(&oldest);
                }
            }
            self.early_order.push_back(session);
        }
        let queue = self.early.entry(session).or_default();
        if queue.len() < EARLY_FRAMES_PER_SESSION {
            queue.push(frame);
        }
    }

    fn fail(&mut self, session: shardvault_mpc::SessionId, error: &NodeError) -> Vec<FromNode> {
        let culprit = match error {
            NodeError::Protocol(e) => e
                .culprit()
                .and_then(|party| self.running.get(&session).and_then(|r| r.job.participants.get(&party).copied())),
            _ => None,
        };
        self.running.remove(&session);
        self.remember_finished(session);
        tracing::warn!(node = %self.id, %session, %error, "job failed");
        vec![FromNode::Failed { session, reason: error.to_string(), culprit }]
    }

    fn start(&mut self, job: Job) -> Result<Vec<FromNode>, NodeError> {
        if self.running.contains_key(&job.session) || self.finished.contains(&job.session) {
            return Err(NodeError::Refused("session id already used".into()));
        }
        let me = job.party_of(self.id)?;
        tracing::info!(node = %self.id, session = %job.session, key = %job.key_id, job = job.kind.name(), "job started");
        let (protocol, envelopes) = match &job.kind {
            JobKind::Activate { epoch } => {
                self.store.activate(job.key_id, *epoch)?;
                let outcome = Outcome::Activated { epoch: *epoch };
                return Ok(vec![FromNode::Done { session: job.session, outcome }]);
            }
            JobKind::Attest { path, chain, bech32_prefix } => {
                let outcome = self.attest(&job, me, path, *chain, bech32_prefix.as_deref())?;
                self.remember_finished(job.session);
                return Ok(vec![FromNode::Done { session: job.session, outcome }]);
            }
            JobKind::CreateKey { scheme, threshold } => {
                if job.participants.keys().copied().ne(threshold.party_ids()) {
                    return Err(NodeError::Refused("key generation needs every party of the key".into()));
                }
                let (s, out) = dkg(*scheme, job.key_id, *threshold, me, job.session)?;
                (Protocol::Dkg(s), out)
            }
            JobKind::DeriveHardened { path } => {
                let share = self.share_for(&job, me)?;
                let (s, out) = derive_hardened(&share, path, job.session)?;
                (Protocol::Derive(s), out)
            }
            JobKind::Sign { path, payload } => {
                let share = self.share_for(&job, me)?;
                let prefix = path.hardened_prefix();
                let tweak = match prefix.components().is_empty() {
                    true => None,
                    false => Some(self.store.tweak(job.key_id, &prefix)?.ok_or_else(|| {
                        NodeError::Refused(format!("path {prefix} has not been derived on this node yet"))
                    })?),
                };
                let child = shardvault_mpc::extended_public_key(&share, tweak.as_ref(), path)?;
                let signed = what_to_sign(share.scheme(), &child.public_key, payload)?;
                let signers = job.participants.keys().copied().collect();
                let request =
                    SignRequest { share: &share, hardened: tweak.as_ref(), path, signers: &signers, message: &signed };
                let (s, out) = sign(&request, job.session)?;
                (Protocol::Sign { session: s, signed }, out)
            }
            JobKind::Refresh => {
                let share = self.share_for(&job, me)?;
                let (s, out) = refresh(&share, job.session)?;
                (Protocol::Refresh(s), out)
            }
        };
        let (channels, handshakes) = Channels::open(job.session, self.id, &self.secret, &self.cluster, job.nodes())?;
        let mut running = Running { job, channels, protocol };
        let mut out: Vec<FromNode> = handshakes.into_iter().map(FromNode::Frame).collect();
        out.extend(route(&mut running, envelopes)?);
        let session = running.job.session;
        self.running.insert(session, running);
        self.early_order.retain(|s| *s != session);
        for frame in self.early.remove(&session).unwrap_or_default() {
            out.extend(self.on_frame(frame));
        }
        Ok(out)
    }

    /// Signs what this node itself derives for `path`: the child public key
    /// from its own active share and cached hardened tweak (refused if the
    /// hardened prefix was never derived here), and the address it computes.
    fn attest(
        &self,
        job: &Job,
        me: PartyId,
        path: &shardvault_mpc::DerivationPath,
        chain: shardvault_chains::Chain,
        bech32_prefix: Option<&str>,
    ) -> Result<Outcome, NodeError> {
        let share = self.share_for(job, me)?;
        let prefix = path.hardened_prefix();
        let tweak = match prefix.components().is_empty() {
            true => None,
            false => Some(self.store.tweak(job.key_id, &prefix)?.ok_or_else(|| {
                NodeError::Refused(format!("path {prefix} has not been derived on this node; not attesting it"))
            })?),
        };
        let child = shardvault_mpc::extended_public_key(&share, tweak.as_ref(), path)?;
        let address = shardvault_wire::address_for(chain, share.scheme(), &child.public_key, bech32_prefix)
            .map_err(|e| NodeError::Refused(e.to_string()))?;
        let statement = AddressStatement {
            key_id: share.key_id(),
            scheme: share.scheme(),
            threshold: share.threshold(),
            path: path.clone(),
            chain,
            bech32_prefix: bech32_prefix.map(str::to_string),
            public_key: child.public_key,
            address,
        };
        let signature = statement.sign(&self.identity).to_vec();
        tracing::info!(node = %self.id, key = %job.key_id, %path, %chain, address = %statement.address, "address attested");
        Ok(Outcome::Attested { statement, signature })
    }

    /// The active share for a job, checked to be this key's and this party's.
    fn share_for(&self, job: &Job, me: PartyId) -> Result<KeyShare, NodeError> {
        let share = self.store.active_share(job.key_id)?;
        if share.party() != me {
            return Err(NodeError::Refused(format!("this node holds party {} of the key, not {me}", share.party())));
        }
        Ok(share)
    }

    fn on_frame(&mut self, frame: Frame) -> Vec<FromNode> {
        let session = frame.session;
        let Some(running) = self.running.get_mut(&session) else {
            self.buffer_early(frame);
            return Vec::new();
        };
        match step(running, frame) {
            Ok(out) if running.protocol.is_finished() => {
                let done = self.finish(session);
                out.into_iter().chain(done).collect()
            }
            Ok(out) => out,
            Err(error) => self.fail(session, &error),
        }
    }

    /// Persists a finished job's result and reports it.
    fn finish(&mut self, session: shardvault_mpc::SessionId) -> Vec<FromNode> {
        let Some(running) = self.running.remove(&session) else { return Vec::new() };
        self.remember_finished(session);
        let key_id = running.job.key_id;
        let request = Sha256::digest(postcard_job(&running.job)).to_vec();
        let result: Result<Outcome, NodeError> = (|| match running.protocol {
            Protocol::Dkg(mut s) => {
                let share = s.take_output().ok_or_else(|| NodeError::Refused("no output".into()))?;
                self.store.insert_new_key(&share)?;
                Ok(Outcome::KeyCreated { public_key: share.public_key().to_vec() })
            }
            Protocol::Derive(mut s) => {
                let tweak = s.take_output().ok_or_else(|| NodeError::Refused("no output".into()))?;
                self.store.put_tweak(&tweak)?;
                Ok(Outcome::Derived { public_key: tweak.public_key.clone(), chain_code: tweak.chain_code })
            }
            Protocol::Sign { mut session, signed } => {
                let signature = session.take_output().ok_or_else(|| NodeError::Refused("no output".into()))?;
                let path = match &running.job.kind {
                    JobKind::Sign { path, .. } => path.to_string(),
                    _ => String::new(),
                };
                self.store.log_signature(key_id, &path, &signed, &request)?;
                Ok(Outcome::Signed { signed, signature })
            }
            Protocol::Refresh(mut s) => {
                let share = s.take_output().ok_or_else(|| NodeError::Refused("no output".into()))?;
                self.store.discard_pending(key_id)?;
                self.store.insert_pending(&share)?;
                Ok(Outcome::Refreshed { epoch: share.epoch() })
            }
        })();
        match result {
            Ok(outcome) => {
                tracing::info!(node = %self.id, %session, key = %key_id, "job done");
                vec![FromNode::Done { session, outcome }]
            }
            Err(error) => self.fail(session, &error),
        }
    }
}

fn postcard_job(job: &Job) -> Vec<u8> {
    shardvault_wire::ToNode::Start(job.clone()).to_bytes()
}

/// One frame through the channel and the protocol. Refused frames and
/// refused protocol messages are logged and dropped: they cannot end a run.
fn step(running: &mut Running, frame: Frame) -> Result<Vec<FromNode>, NodeError> {
    let received = match running.channels.receive(frame) {
        Ok(received) => received,
        Err(error) => {
            tracing::warn!(session = %running.job.session, %error, "frame dropped");
            return Ok(Vec::new());
        }
    };
    let mut out: Vec<FromNode> = received.frames.into_iter().map(FromNode::Frame).collect();
    for (from, plaintext) in received.messages {
        let envelope = Envelope::from_bytes(&plaintext)?;
        // The protocol sender must be the node the channel authenticated.
        if running.job.participants.get(&envelope.from) != Some(&from) {
            tracing::warn!(session = %running.job.session, %from, "protocol message claims another sender; dropped");
            continue;
        }
        match running.protocol.receive(envelope) {
            Ok(envelopes) => out.extend(route(running, envelopes)?),
            Err(shardvault_mpc::Error::Rejected(why)) => {
                tracing::warn!(session = %running.job.session, %from, %why, "protocol message refused");
            }
            Err(error) => return Err(error.into()),
        }
    }
    Ok(out)
}

/// Encrypts envelopes to their recipients (a broadcast to every other participant).
fn route(running: &mut Running, envelopes: Vec<Envelope>) -> Result<Vec<FromNode>, NodeError> {
    let mut out = Vec::new();
    for envelope in envelopes {
        let bytes = envelope.to_bytes();
        let sender = running.job.participants.get(&envelope.from).copied();
        let recipients: Vec<NodeId> = match envelope.to {
            Some(party) => running.job.participants.get(&party).copied().into_iter().collect(),
            None => running.job.participants.values().copied().filter(|n| Some(*n) != sender).collect(),
        };
        for to in recipients {
            out.extend(running.channels.send(to, &bytes)?.into_iter().map(FromNode::Frame));
        }
    }
    Ok(out)
}

/// What this node signs for a payload: it computes the digest itself, and
/// refuses combinations that make no sense for the key's scheme, and
/// transaction inputs that do not pay to `public_key` (the key being used).
fn what_to_sign(scheme: Scheme, public_key: &[u8], payload: &SignPayload) -> Result<Vec<u8>, NodeError> {
    let refused = |e: shardvault_chains::Error| NodeError::Refused(e.to_string());
    match (scheme, payload) {
        (_, SignPayload::BitcoinInput { chain, psbt, index, network }) => {
            let network = shardvault_chains::psbt::network(*chain, network).map_err(refused)?;
            let psbt = shardvault_chains::psbt::UnsignedPsbt::parse(psbt, network).map_err(refused)?;
            let index = usize::try_from(*index).map_err(|_| NodeError::Refused("input index".into()))?;
            let input = psbt.input_digest(index).map_err(refused)?;
            input.check_key(shardvault_chains::KeyType::from(scheme), public_key).map_err(refused)?;
            Ok(input.digest.to_vec())
        }
        (Scheme::EcdsaSecp256k1, SignPayload::EvmTransaction { preimage, chain_id }) => {
            Ok(shardvault_chains::evm::UnsignedEvmTx::parse(preimage, *chain_id).map_err(refused)?.digest().to_vec())
        }
        (_, SignPayload::Transaction { chain, network, unsigned }) => {
            let tx = shardvault_chains::tx::UnsignedTx::parse(*chain, Some(network), unsigned).map_err(refused)?;
            tx.check_key(shardvault_chains::KeyType::from(scheme), public_key).map_err(refused)?;
            Ok(tx.signing_input().to_vec())
        }
        (_, SignPayload::EvmTransaction { .. }) => {
            Err(NodeError::Refused(format!("EVM transactions are signed by ECDSA keys, not {scheme}")))
        }
        (Scheme::EddsaEd25519, SignPayload::RawDigest(_)) => {
            Err(NodeError::Refused("Ed25519 signs messages, not digests".into()))
        }
        (_, SignPayload::RawDigest(digest)) => Ok(digest.to_vec()),
        (Scheme::EddsaEd25519, SignPayload::Message { message, encoding: MessageEncoding::Raw }) => Ok(message.clone()),
        (Scheme::EddsaEd25519, SignPayload::Message { message, encoding: MessageEncoding::SuiPersonalMessage }) => {
            let digest = MessageEncoding::SuiPersonalMessage.digest(message).map_err(refused)?;
            digest.map(|d| d.to_vec()).ok_or_else(|| NodeError::Refused("no digest".into()))
        }
        (Scheme::EddsaEd25519, SignPayload::Message { encoding, .. }) => Err(NodeError::Refused(format!(
            "Ed25519 keys sign raw messages or Sui personal messages, not {}",
            encoding.name()
        ))),
        (_, SignPayload::Message { encoding: MessageEncoding::Raw, .. }) => {
            Err(NodeError::Refused(format!("{scheme} signs a digest; name the message encoding or a raw digest")))
        }
        (_, SignPayload::Message { message, encoding }) => {
            let digest = encoding.digest(message).map_err(|e| NodeError::Refused(e.to_string()))?;
            digest.map(|d| d.to_vec()).ok_or_else(|| NodeError::Refused("no digest".into()))
        }
    }
}
