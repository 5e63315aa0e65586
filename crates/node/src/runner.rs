//! The participant node as a state machine: coordinator messages in
//! ([`ToNode`]), messages out ([`FromNode`]). It runs each job's protocol over
//! pairwise Noise channels, decides for itself what it signs, and persists
//! results in its sealed [`Store`]. The process around it (connection to the
//! coordinator, signals) is a thin shell.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use shardvault_mpc::{
    derive_hardened, dkg, refresh_to, sign, Dkg, Envelope, Epoch, HdMachine, KeyShare, OsRng, PartyId, Refresh, Repair,
    RepairOutput, SeedEscrow, Session, Sign, SignRequest,
};
use shardvault_wire::{
    AddressStatement, BackupStatement, Channels, Cluster, Frame, FromNode, Job, JobKind, NodeId, NodeIdentity,
    NoiseSecretKey, Outcome, RefreshCertificate, ToNode,
};

use shardvault_governance::Genesis;

use crate::governance::{self, system_clock, Approved, Clock};
use crate::signing::{what_to_sign, RawSigning};
use crate::store::{BackupEntry, SignIntent, Spending, Store, StoreError};
use sha2::{Digest, Sha256};
use shardvault_backup::BackupPlaintext;

mod replace;

/// What one node takes on at once. Frames for a session whose `Start` has not
/// arrived yet (a peer that started first may already be talking) are kept,
/// within these bounds; the oldest session is evicted first when there are
/// too many sessions, and a frame that would exceed the byte budget is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Jobs running at once; a `Start` beyond is refused (the job fails here
    /// with a reason saying so).
    pub running: usize,
    /// Sessions with buffered early frames.
    pub early_sessions: usize,
    /// Early frames kept per session.
    pub early_frames_per_session: usize,
    /// Bytes of early frames kept in all, over every session.
    pub early_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { running: 32, early_sessions: 64, early_frames_per_session: 64, early_bytes: 32 << 20 }
    }
}

/// What a buffered frame costs: its ciphertext plus the header, roughly.
fn frame_cost(frame: &Frame) -> usize {
    frame.ciphertext_len().saturating_add(frame.messages.len().saturating_mul(16)).saturating_add(64)
}

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
    /// `intent`: the sign-log entry written before the job sent anything.
    Sign {
        session: Session<Sign>,
        signed: Vec<u8>,
        intent: i64,
    },
    Refresh(Session<Refresh>),
    Escrow(Session<SeedEscrow>),
    /// `parties`: the key's map (the new node pins it); `epoch`: a helper's
    /// share's epoch (none for the new node, which learns it).
    Repair {
        session: Session<Repair>,
        parties: BTreeMap<PartyId, NodeId>,
        epoch: Option<Epoch>,
    },
}

impl Protocol {
    fn receive(&mut self, envelope: Envelope) -> Result<Vec<Envelope>, shardvault_mpc::Error> {
        match self {
            Protocol::Dkg(s) => s.receive(envelope),
            Protocol::Derive(s) => s.receive(envelope),
            Protocol::Sign { session, .. } => session.receive(envelope),
            Protocol::Refresh(s) => s.receive(envelope),
            Protocol::Escrow(s) => s.receive(envelope),
            Protocol::Repair { session, .. } => session.receive(envelope),
        }
    }

    fn is_finished(&self) -> bool {
        match self {
            Protocol::Dkg(s) => s.is_finished(),
            Protocol::Derive(s) => s.is_finished(),
            Protocol::Sign { session, .. } => session.is_finished(),
            Protocol::Refresh(s) => s.is_finished(),
            Protocol::Escrow(s) => s.is_finished(),
            Protocol::Repair { session, .. } => session.is_finished(),
        }
    }
}

struct Running {
    job: Job,
    channels: Channels,
    protocol: Protocol,
    /// Frames accepted from each peer, to tell whom this node waits on.
    heard: HashMap<NodeId, u64>,
}

impl Running {
    /// The peers this node is waiting for, by count: every peer sends the
    /// same messages each round, so those behind the others are the ones
    /// missing; when none is behind, all of them.
    fn waiting_on(&self, me: NodeId) -> Vec<NodeId> {
        let peers: Vec<NodeId> = self.job.nodes().into_iter().filter(|n| *n != me).collect();
        let count = |n: &NodeId| self.heard.get(n).copied().unwrap_or(0);
        let most = peers.iter().map(count).max().unwrap_or(0);
        let behind: Vec<NodeId> = peers.iter().copied().filter(|n| count(n) < most).collect();
        if behind.is_empty() {
            peers
        } else {
            behind
        }
    }
}

/// One participant node.
pub struct Node {
    id: NodeId,
    secret: NoiseSecretKey,
    /// Signs this node's statements (refresh confirmations, address attestations).
    identity: NodeIdentity,
    cluster: Cluster,
    store: Store,
    running: HashMap<shardvault_mpc::SessionId, Running>,
    early: HashMap<shardvault_mpc::SessionId, Vec<Frame>>,
    early_order: VecDeque<shardvault_mpc::SessionId>,
    early_bytes: usize,
    limits: Limits,
    finished: HashSet<shardvault_mpc::SessionId>,
    finished_order: VecDeque<shardvault_mpc::SessionId>,
    /// Bans the store failed to record, enforced until the process ends.
    unrecorded_bans: HashSet<(shardvault_mpc::KeyId, PartyId)>,
    raw_signing: RawSigning,
    /// The organisation's root: every state-changing job is checked against
    /// the governance state this genesis and the node's stored log give.
    genesis: Genesis,
    clock: Clock,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node").field("id", &self.id).field("running", &self.running.len()).finish_non_exhaustive()
    }
}

impl Node {
    /// A node with its Noise key, the pinned cluster, its open store and the
    /// organisation's genesis: it creates keys, derives hardened paths, signs
    /// and refreshes only for requests the organisation's members approved
    /// under its policy, as this node checks from the genesis and its own
    /// copy of the governance log (docs/GOVERNANCE.md). There is no
    /// ungoverned node. Time is the system clock ([`Node::with_clock`]).
    pub fn new(id: NodeId, secret: NoiseSecretKey, cluster: Cluster, store: Store, genesis: Genesis) -> Self {
        Node {
            id,
            identity: NodeIdentity::derive(&secret),
            secret,
            cluster,
            store,
            running: HashMap::new(),
            early: HashMap::new(),
            early_order: VecDeque::new(),
            early_bytes: 0,
            limits: Limits::default(),
            finished: HashSet::new(),
            finished_order: VecDeque::new(),
            unrecorded_bans: HashSet::new(),
            raw_signing: RawSigning::Denied,
            genesis,
            clock: system_clock(),
        }
    }

    /// Reads the time (unix seconds) from `clock` instead of the system
    /// clock: request expiry, change delays and spend windows follow it.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The head of this node's sign log and the node's identity signature
    /// over [`crate::SignLogHead::statement`] (domain
    /// [`crate::SIGN_LOG_HEAD_DOMAIN`]): what the node stands by having
    /// signed, checkable with its identity key pinned in the cluster file.
    pub fn signed_sign_log_head(&self) -> Result<(crate::SignLogHead, [u8; 64]), NodeError> {
        let head = self.store.sign_log_head()?;
        let signature = self.identity.sign(crate::SIGN_LOG_HEAD_DOMAIN, &head.statement());
        Ok((head, signature))
    }

    /// The genesis this node is governed by.
    pub fn genesis(&self) -> &Genesis {
        &self.genesis
    }

    /// Lets this node sign raw digests and raw Ed25519 bytes (denied by
    /// default: they can be transactions of any chain, and skip every check
    /// the node makes on transactions and messages).
    pub fn with_raw_signing(mut self, raw_signing: RawSigning) -> Self {
        self.raw_signing = raw_signing;
        self
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

    /// Sets what this node takes on at once.
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// Bytes of early frames (for sessions not started here yet) held now.
    pub fn early_bytes(&self) -> usize {
        self.early_bytes
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
                let running = self.running.remove(&session);
                self.take_early(session);
                self.remember_finished(session);
                match running {
                    Some(running) => {
                        let on = running.waiting_on(self.id);
                        tracing::warn!(node = %self.id, %session, waiting_on = ?on, "job aborted");
                        vec![FromNode::Waiting { session, on }]
                    }
                    None => Vec::new(),
                }
            }
            // The network shell answers pings; nothing to do here.
            ToNode::Ping(_) | ToNode::Pong(_) => Vec::new(),
        }
    }

    /// Removes a session's early frames, releasing their bytes.
    fn take_early(&mut self, session: shardvault_mpc::SessionId) -> Vec<Frame> {
        let frames = self.early.remove(&session).unwrap_or_default();
        let bytes: usize = frames.iter().map(frame_cost).sum();
        self.early_bytes = self.early_bytes.saturating_sub(bytes);
        frames
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

    /// Keeps a frame for a session not started yet, within [`Limits`]: the
    /// oldest session is evicted for a new one; a frame over the per-session
    /// count or the byte budget is dropped.
    fn buffer_early(&mut self, frame: Frame) {
        let session = frame.session;
        if self.finished.contains(&session) {
            return;
        }
        let cost = frame_cost(&frame);
        if self.early_bytes.saturating_add(cost) > self.limits.early_bytes {
            tracing::warn!(node = %self.id, %session, from = %frame.from, "early-frame buffer full (bytes); frame dropped");
            return;
        }
        if !self.early.contains_key(&session) {
            if self.early_order.len() >= self.limits.early_sessions {
                if let Some(oldest) = self.early_order.pop_front() {
                    self.take_early(oldest);
                }
            }
            self.early_order.push_back(session);
        }
        let queue = self.early.entry(session).or_default();
        if queue.len() < self.limits.early_frames_per_session {
            queue.push(frame);
            self.early_bytes = self.early_bytes.saturating_add(cost);
        }
    }

    fn fail(&mut self, session: shardvault_mpc::SessionId, error: &NodeError) -> Vec<FromNode> {
        let running = self.running.remove(&session);
        let culprit = match error {
            NodeError::Protocol(e) => e.culprit().and_then(|party| {
                running.as_ref().and_then(|r| r.job.participants.get(&party).map(|node| (party, *node)))
            }),
            _ => None,
        };
        let banned = match (error, &running, culprit) {
            (NodeError::Protocol(shardvault_mpc::Error::Banned { .. }), Some(running), Some((party, node))) => {
                self.ban(&running.job, party, node, error)
            }
            _ => false,
        };
        self.remember_finished(session);
        tracing::warn!(node = %self.id, %session, %error, banned, "job failed");
        vec![FromNode::Failed { session, reason: error.to_string(), culprit: culprit.map(|(_, node)| node), banned }]
    }

    /// Persists a DKLs23 ban of `party` for the job's key; whether it held.
    fn ban(&mut self, job: &Job, party: PartyId, node: NodeId, error: &NodeError) -> bool {
        let JobKind::Sign { epoch, .. } = &job.kind else { return false };
        // Held in memory too: a ban the disk refused still holds until the process ends.
        self.unrecorded_bans.insert((job.key_id, party));
        match self.store.ban(job.key_id, party, node.0, *epoch, &error.to_string()) {
            Ok(()) => {
                self.unrecorded_bans.remove(&(job.key_id, party));
                tracing::error!(node = %self.id, key = %job.key_id, %party, culprit = %node, "counterparty banned for this key until a refresh");
            }
            Err(store) => {
                tracing::error!(node = %self.id, key = %job.key_id, %party, %store, "cannot record a ban on disk; it holds until this process ends");
            }
        }
        true
    }

    fn start(&mut self, job: Job) -> Result<Vec<FromNode>, NodeError> {
        if self.running.contains_key(&job.session) || self.finished.contains(&job.session) {
            return Err(NodeError::Refused("session id already used".into()));
        }
        job.check_parties()?;
        let me = job.party_of(self.id)?;
        if !matches!(job.kind, JobKind::Activate { .. }) && self.running.len() >= self.limits.running {
            return Err(NodeError::Refused(format!(
                "this node is already running {} jobs, its limit; try again when they finish",
                self.running.len()
            )));
        }
        tracing::info!(node = %self.id, session = %job.session, key = %job.key_id, job = job.kind.name(), "job started");
        let now = (self.clock)();
        let approved = match &job.kind {
            JobKind::Activate { .. } | JobKind::Attest { .. } | JobKind::EscrowSeeds => None,
            // A refresh the policy schedules carries the governance log and
            // no request: due by this node's own record of when its active
            // epoch began (the job's `from` must be that epoch, below).
            JobKind::Refresh { .. } if job.governance.as_ref().is_some_and(|g| g.request.is_empty()) => {
                let log = job.governance.as_ref().map_or(&[][..], |g| g.log.as_slice());
                let active = self.store.active_share(job.key_id)?.epoch();
                governance::check_scheduled_refresh(&self.genesis, &self.store, log, job.key_id, active, now)?;
                None
            }
            _ => Some(governance::approve(&self.genesis, &self.store, &job, &self.machine()?, now)?),
        };
        if let Some(approved) = &approved {
            self.apply_replacement(approved)?;
        }
        let (protocol, envelopes) = match &job.kind {
            JobKind::Activate { certificate } => {
                let epoch = self.activate(&job, me, certificate)?;
                return Ok(vec![FromNode::Done { session: job.session, outcome: Outcome::Activated { epoch } }]);
            }
            JobKind::Attest { path, chain, bech32_prefix } => {
                let outcome = self.attest(&job, me, path, *chain, bech32_prefix.as_deref())?;
                self.remember_finished(job.session);
                return Ok(vec![FromNode::Done { session: job.session, outcome }]);
            }
            JobKind::ExportBackup { recipients } => {
                let approved = approved
                    .as_ref()
                    .ok_or_else(|| NodeError::Refused("governance: an export without an approved request".into()))?;
                let outcome = self.export_backup(&job, me, recipients, approved, now)?;
                self.remember_finished(job.session);
                return Ok(vec![FromNode::Done { session: job.session, outcome }]);
            }
            JobKind::CreateKey { scheme, threshold } => {
                if job.participants.keys().copied().ne(threshold.party_ids()) {
                    return Err(NodeError::Refused("key generation needs every party of the key".into()));
                }
                // A second key under a known id would shadow the first one.
                let generating = |r: &Running| r.job.key_id == job.key_id && matches!(r.protocol, Protocol::Dkg(_));
                if self.store.knows_key(job.key_id)? || self.running.values().any(generating) {
                    return Err(NodeError::Refused(format!(
                        "key id {} is already known on this node; a new key needs a new id",
                        job.key_id
                    )));
                }
                let (s, out) = dkg(*scheme, job.key_id, *threshold, me, job.session, &mut OsRng)?;
                (Protocol::Dkg(s), out)
            }
            JobKind::EscrowSeeds => self.start_escrow(&job, me)?,
            JobKind::RepairShare { target, parties } => self.start_repair(&job, me, *target, parties)?,
            JobKind::DeriveHardened { path } => {
                let share = self.share_for(&job, me, None)?;
                path.require_hardened_start().map_err(|e| NodeError::Refused(e.to_string()))?;
                let replacing = approved.as_ref().and_then(|a| match a.operation {
                    shardvault_governance::Operation::ReplaceNode { node, .. } => Some(NodeId(node)),
                    _ => None,
                });
                if replacing.is_some_and(|node| node != self.id) && self.store.tweak(job.key_id, path)?.is_none() {
                    return Err(NodeError::Refused(format!(
                        "a node replacement re-derives only paths derived before; {path} was not derived on this node"
                    )));
                }
                let (s, out) = derive_hardened(&share, path, job.session, &mut OsRng)?;
                (Protocol::Derive(s), out)
            }
            JobKind::Sign { epoch, path, payload } => {
                let share = self.share_for(&job, me, Some(*epoch))?;
                path.require_hardened_start().map_err(|e| NodeError::Refused(e.to_string()))?;
                self.refuse_banned(&job, me)?;
                let prefix = path.hardened_prefix();
                let tweak = match prefix.components().is_empty() {
                    true => None,
                    false => Some(self.store.tweak(job.key_id, &prefix)?.ok_or_else(|| {
                        NodeError::Refused(format!("path {prefix} has not been derived on this node yet"))
                    })?),
                };
                let child = shardvault_mpc::extended_public_key(&share, tweak.as_ref(), path)?;
                let signed = what_to_sign(share.scheme(), &child.public_key, path, payload, self.raw_signing)?;
                let signers = job.participants.keys().copied().collect();
                let request =
                    SignRequest { share: &share, hardened: tweak.as_ref(), path, signers: &signers, message: &signed };
                let (s, out) = sign(&request, job.session, &mut OsRng)?;
                // Write-ahead: the entry is durable before any message of this
                // job leaves the node (they are only returned below), so a
                // co-signer that withholds its last message, or a full disk,
                // cannot make a signature this node did not log.
                // The request's spends go into the ledger in the same
                // transaction as the intent.
                let Some(Approved { request: hash, decision, .. }) = &approved else {
                    return Err(NodeError::Refused("governance: a sign job without an approved request".into()));
                };
                let intent = self.store.log_intent_spending(
                    &SignIntent {
                        key_id: job.key_id,
                        path: &path.to_string(),
                        signed: &signed,
                        request: &job.digest()?,
                        session: job.session,
                        signers: &job.participants,
                    },
                    &Spending { request: *hash, at: now, spends: &decision.spends },
                )?;
                (Protocol::Sign { session: s, signed, intent }, out)
            }
            JobKind::Refresh { from, to } => {
                let share = self.share_for(&job, me, None)?;
                if share.epoch() != *from {
                    return Err(NodeError::Refused(format!(
                        "refresh of epoch {from} asked, but epoch {} is active here",
                        share.epoch()
                    )));
                }
                if let Some(latest) = self.store.latest_epoch(job.key_id)?.filter(|latest| latest >= to) {
                    return Err(NodeError::Refused(format!(
                        "refresh to epoch {to} asked, but this node already holds epoch {latest}; refresh to a later one"
                    )));
                }
                if job.participants.keys().copied().ne(share.threshold().party_ids()) {
                    return Err(NodeError::Refused("a refresh needs every party of the key".into()));
                }
                let (s, out) = refresh_to(&share, *to, job.session, &mut OsRng)?;
                crate::fault::crash_point(self.id, "refresh-started");
                (Protocol::Refresh(s), out)
            }
        };
        let binding = job.digest()?;
        let (channels, handshakes) =
            Channels::open(job.session, &binding, self.id, &self.secret, &self.pinned_cluster()?, job.nodes())?;
        let mut running = Running { job, channels, protocol, heard: HashMap::new() };
        let mut out: Vec<FromNode> = handshakes.into_iter().map(FromNode::Frame).collect();
        out.extend(route(&mut running, envelopes)?);
        let session = running.job.session;
        self.running.insert(session, running);
        self.early_order.retain(|s| *s != session);
        for frame in self.take_early(session) {
            out.extend(self.on_frame(frame));
        }
        Ok(out)
    }

    /// The share for a job (the active one, or that of `epoch`), checked to
    /// be this key's and this party's, and the job's participants checked
    /// against the key's pinned map.
    fn share_for(&self, job: &Job, me: PartyId, epoch: Option<Epoch>) -> Result<KeyShare, NodeError> {
        let share = match epoch {
            Some(epoch) => self.store.share_at(job.key_id, epoch)?,
            None => self.store.active_share(job.key_id)?,
        };
        if share.party() != me {
            return Err(NodeError::Refused(format!("this node holds party {} of the key, not {me}", share.party())));
        }
        if !matches!(job.kind, JobKind::Refresh { .. }) && self.store.is_repaired(job.key_id, share.epoch())? {
            return Err(NodeError::Refused(format!(
                "this node's share of key {} was repaired and is usable only for the complete refresh that must \
                 follow; refresh the key first",
                job.key_id
            )));
        }
        self.check_parties(job)?;
        if self.store.key_parties(job.key_id)?.is_none() {
            // A key generated before maps were pinned: pin the first complete
            // map an approved derivation or refresh uses (the share check
            // above holds for our party).
            let approved = matches!(job.kind, JobKind::DeriveHardened { .. } | JobKind::Refresh { .. });
            if approved && job.participants.keys().copied().eq(share.threshold().party_ids()) {
                tracing::warn!(node = %self.id, key = %job.key_id, "pinning the party map of a key created before maps were pinned");
                self.store.pin_key_parties(job.key_id, &job.participants)?;
            } else {
                tracing::warn!(node = %self.id, key = %job.key_id, "key has no pinned party map yet; derive or refresh it once to pin one");
            }
        }
        Ok(share)
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
        let share = self.share_for(job, me, None)?;
        path.require_hardened_start().map_err(|e| NodeError::Refused(e.to_string()))?;
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

    /// Seals this node's active share of the key, with its chain seed, to
    /// its own party's recipient, and records that before handing it out.
    /// The job must name every party of the key, at their pinned nodes, and
    /// one recipient per party (already checked equal to the request's).
    fn export_backup(
        &self,
        job: &Job,
        me: PartyId,
        recipients: &[shardvault_governance::MemberKey],
        approved: &Approved,
        now: u64,
    ) -> Result<Outcome, NodeError> {
        self.check_parties(job)?;
        let share = self.share_for(job, me, None)?;
        let threshold = share.threshold();
        if job.participants.keys().copied().ne(threshold.party_ids()) {
            return Err(NodeError::Refused("a backup export names every party of the key".into()));
        }
        if recipients.len() != usize::from(threshold.parties()) {
            return Err(NodeError::Refused(format!(
                "key {} has {} parties but the request names {} recipients; name one per party, in party order",
                job.key_id,
                threshold.parties(),
                recipients.len()
            )));
        }
        let lines = recipients
            .iter()
            .map(|r| r.to_openssh().map_err(|e| NodeError::Refused(e.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        let own = usize::from(me.get()) - 1;
        let (recipient, line) = recipients
            .get(own)
            .zip(lines.get(own))
            .ok_or_else(|| NodeError::Refused(format!("no recipient for party {me}")))?;
        let organisation = self.genesis.id().map_err(|e| NodeError::Refused(e.to_string()))?;
        let plaintext = BackupPlaintext::new(organisation.to_string(), approved.id.to_string(), now, share.backup()?);
        let refuse = |e: shardvault_backup::Error| NodeError::Refused(e.to_string());
        let sealed = shardvault_backup::seal(&plaintext, std::slice::from_ref(line)).map_err(refuse)?;
        // Shares of this party's chain seed for every other party's holder,
        // so that any t backups recover every hardened path.
        let seed_shares = shardvault_backup::seal_seed_shares(&plaintext, &lines)
            .map_err(refuse)?
            .into_iter()
            .map(|(party, file)| {
                PartyId::new(party).map(|party| (party, file)).map_err(|e| NodeError::Refused(e.to_string()))
            })
            .collect::<Result<BTreeMap<_, _>, _>>()?;
        // Every field from this node's own state: its share, its pinned
        // party map (`share_for` pinned it if it was not), its tweaks.
        let nodes = self
            .store
            .key_parties(job.key_id)?
            .ok_or_else(|| NodeError::Refused(format!("key {} has no pinned party map", job.key_id)))?;
        let hardened = self.store.tweaks(job.key_id)?.into_iter().map(|tweak| (tweak.path, tweak.public_key)).collect();
        let statement = BackupStatement {
            organisation: organisation.to_string(),
            request_id: approved.id.to_string(),
            node: self.id,
            key_id: share.key_id(),
            scheme: share.scheme(),
            threshold,
            epoch: share.epoch(),
            party: me,
            nodes,
            root_public_key: share.public_key().to_vec(),
            recipients: lines.clone(),
            sealed_sha256: Sha256::digest(&sealed).into(),
            seed_shares_sha256: seed_shares.iter().map(|(party, file)| (*party, Sha256::digest(file).into())).collect(),
            hardened,
        };
        self.store.log_backup(&BackupEntry {
            key_id: job.key_id,
            epoch: share.epoch(),
            request_id: approved.id.to_string(),
            request: approved.request,
            recipient: recipient.fingerprint(),
            sealed_sha256: statement.sealed_sha256,
            at: now,
        })?;
        tracing::info!(node = %self.id, key = %job.key_id, epoch = %share.epoch(), request = %approved.id,
            recipient = %recipient.fingerprint(), "backup sealed");
        let signature = statement.sign(&self.identity).to_vec();
        Ok(Outcome::BackedUp { epoch: share.epoch(), sealed, seed_shares, hardened: statement.hardened, signature })
    }

    /// Refuses to sign alongside a party this node banned for the key.
    fn refuse_banned(&self, job: &Job, me: PartyId) -> Result<(), NodeError> {
        let mut bans = self.store.bans(job.key_id)?;
        bans.extend(
            self.unrecorded_bans
                .iter()
                .filter(|(key, _)| *key == job.key_id)
                .map(|(_, party)| (*party, "recorded in memory only".to_string())),
        );
        match bans.iter().find(|(party, _)| *party != me && job.participants.contains_key(party)) {
            Some((party, reason)) => Err(NodeError::Refused(format!(
                "party {party} is banned for this key on this node ({reason}); sign without it, or refresh the key \
                 (a complete refresh clears the ban)"
            ))),
            None => Ok(()),
        }
    }

    /// Activates a refreshed epoch on proof that every party stored it.
    fn activate(&mut self, job: &Job, me: PartyId, certificate: &RefreshCertificate) -> Result<Epoch, NodeError> {
        self.check_parties(job)?;
        let share = self.share_for(job, me, Some(certificate.epoch))?;
        if job.participants.keys().copied().ne(share.threshold().party_ids()) {
            return Err(NodeError::Refused("activation names every party of the key".into()));
        }
        if certificate.public_key != share.public_key() {
            return Err(NodeError::Refused("the certificate is for another key".into()));
        }
        certificate.verify(job.key_id, &job.participants, &self.pinned_cluster()?)?;
        self.store.activate(job.key_id, certificate.epoch)?;
        crate::fault::crash_point(self.id, "activated");
        self.store.record_epoch_start(job.key_id, certificate.epoch, (self.clock)())?;
        Ok(certificate.epoch)
    }

    /// Refuses a job whose participants are not a subset of the key's
    /// party→node map pinned at its DKG, with the same assignments: the
    /// coordinator cannot make one node play another's party.
    fn check_parties(&self, job: &Job) -> Result<(), NodeError> {
        let Some(pinned) = self.store.key_parties(job.key_id)? else { return Ok(()) };
        for (party, node) in &job.participants {
            match pinned.get(party) {
                Some(pinned_node) if pinned_node == node => {}
                Some(pinned_node) => {
                    return Err(NodeError::Refused(format!(
                        "job assigns party {party} to node {node}, but key {} pinned it to node {pinned_node} at key generation",
                        job.key_id
                    )))
                }
                None => {
                    return Err(NodeError::Refused(format!("party {party} is not a party of key {}", job.key_id)))
                }
            }
        }
        Ok(())
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
        let session_id = session;
        let result: Result<Outcome, NodeError> = (|| match running.protocol {
            Protocol::Dkg(mut s) => {
                let share = s.take_output().ok_or_else(|| NodeError::Refused("no output".into()))?;
                self.store.insert_new_key_with_parties(&share, &running.job.participants)?;
                self.store.record_epoch_start(share.key_id(), share.epoch(), (self.clock)())?;
                Ok(Outcome::KeyCreated { public_key: share.public_key().to_vec() })
            }
            Protocol::Derive(mut s) => {
                let tweak = s.take_output().ok_or_else(|| NodeError::Refused("no output".into()))?;
                self.store.put_tweak(&tweak)?;
                crate::fault::crash_point(self.id, "derived");
                Ok(Outcome::Derived { public_key: tweak.public_key.clone(), chain_code: tweak.chain_code })
            }
            Protocol::Sign { mut session, signed, intent } => {
                let signature = session.take_output().ok_or_else(|| NodeError::Refused("no output".into()))?;
                // The intent already records the job; a failed completion
                // write leaves it reading "may have contributed", which is
                // true, so the signature is still reported.
                if let Err(error) = self.store.log_completion(intent, &signature.bytes) {
                    tracing::warn!(node = %self.id, %session_id, %error, "sign log: completion not recorded");
                }
                Ok(Outcome::Signed { signed, signature })
            }
            Protocol::Refresh(mut s) => {
                let share = s.take_output().ok_or_else(|| NodeError::Refused("no output".into()))?;
                self.store.insert_pending(&share)?;
                crate::fault::crash_point(self.id, "refresh-stored");
                // Signed only once the new share is durable: the certificate
                // that lets every node delete the old epoch is made of these.
                let statement = RefreshCertificate::statement(key_id, share.epoch(), share.public_key());
                let stored = self.identity.sign(RefreshCertificate::DOMAIN, &statement).to_vec();
                Ok(Outcome::Refreshed { epoch: share.epoch(), stored })
            }
            Protocol::Escrow(mut s) => {
                let escrow = s.take_output().ok_or_else(|| NodeError::Refused("no output".into()))?;
                self.store.put_escrow(&escrow)?;
                Ok(Outcome::Escrowed)
            }
            Protocol::Repair { mut session, parties, epoch } => {
                match session.take_output().ok_or_else(|| NodeError::Refused("no output".into()))? {
                    RepairOutput::Repaired(share) => {
                        self.store.insert_repaired_key(&share, &parties)?;
                        crate::fault::crash_point(self.id, "repair-stored");
                        tracing::warn!(node = %self.id, key = %key_id, epoch = %share.epoch(), "share repaired; a complete refresh must follow");
                        Ok(Outcome::Repaired { epoch: share.epoch() })
                    }
                    RepairOutput::Helped => {
                        let epoch = epoch.ok_or_else(|| NodeError::Refused("a helper without a share".into()))?;
                        Ok(Outcome::Repaired { epoch })
                    }
                }
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

/// One frame through the channel and the protocol. Refused frames and
/// refused protocol messages are logged and dropped: they cannot end a run.
fn step(running: &mut Running, frame: Frame) -> Result<Vec<FromNode>, NodeError> {
    let from = frame.from;
    let received = match running.channels.receive(frame) {
        Ok(received) => {
            *running.heard.entry(from).or_default() += 1;
            received
        }
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
        let bytes = envelope.to_bytes()?;
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
