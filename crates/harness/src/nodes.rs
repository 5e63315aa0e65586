//! n node state machines in this process, relayed synchronously.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use shardvault_mpc::KeyId;
use shardvault_node::{KekSource, Node, RawSigning, Store};
use shardvault_vault::KdfParams;
use shardvault_wire::{
    generate_keypair, Cluster, Frame, FromNode, Job, NodeId, NodeIdentity, NoiseSecretKey, Outcome, ToNode,
};

use crate::organisation::{now, Organisation};

/// Each participant's answer to a job: its outcome, or why it failed.
pub type Results = BTreeMap<NodeId, Result<Outcome, String>>;

/// Nodes `1..=n`, each with its own sealed store (passphrase KEK, test KDF
/// parameters) in a temporary directory, pinned in one cluster file, all
/// governed by one [`Organisation`] and reading one settable clock. The
/// fields are public: tests reach into a node's store, open its database
/// directly, or play a node themselves with its secret.
pub struct Nodes {
    dir: tempfile::TempDir,
    /// Each node's store file.
    pub paths: BTreeMap<NodeId, PathBuf>,
    /// Each node's Noise static key.
    pub secrets: BTreeMap<NodeId, NoiseSecretKey>,
    /// The cluster every node pins (the coordinator's key is a fresh one).
    pub cluster: Cluster,
    /// The running state machines.
    pub nodes: BTreeMap<NodeId, Node>,
    /// What the operator allows; applied at [`Nodes::restart`].
    pub raw_signing: RawSigning,
    /// The organisation every node is started with (its genesis).
    pub organisation: Organisation,
    /// The nodes' clock (unix seconds); starts at the system time, moved by
    /// [`Nodes::advance`].
    pub clock: Arc<AtomicU64>,
}

impl std::fmt::Debug for Nodes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nodes").field("dir", &self.dir.path()).field("nodes", &self.nodes.len()).finish()
    }
}

/// Opens (or creates) node `id`'s store at `path` as [`Nodes`] does.
pub fn open_store(path: &Path, id: NodeId) -> Store {
    Store::open(path, &format!("node-{id}"), KekSource::Passphrase(b"pw", KdfParams::INSECURE_FOR_TESTS))
        .unwrap_or_else(|e| panic!("opening node {id}'s store: {e}"))
}

impl Nodes {
    /// Three nodes, raw signing denied.
    pub fn new() -> Self {
        Self::with_count(3)
    }

    /// `count` nodes, raw signing denied, governed by [`Organisation::shared`].
    pub fn with_count(count: u16) -> Self {
        Self::with_organisation(count, Organisation::shared().clone())
    }

    /// `count` nodes governed by `organisation`, raw signing denied.
    pub fn with_organisation(count: u16, organisation: Organisation) -> Self {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temporary directory: {e}"));
        let keypair = || generate_keypair().unwrap_or_else(|e| panic!("Noise key: {e}"));
        let (_, coordinator) = keypair();
        let mut keys = BTreeMap::new();
        let mut secrets = BTreeMap::new();
        let mut paths = BTreeMap::new();
        for i in 1..=count {
            let (secret, public) = keypair();
            keys.insert(NodeId(i), public);
            secrets.insert(NodeId(i), secret);
            paths.insert(NodeId(i), dir.path().join(format!("node-{i}.db")));
        }
        let identities = secrets.iter().map(|(id, s)| (*id, NodeIdentity::derive(s).public())).collect();
        let cluster = Cluster { coordinator, nodes: keys, identities };
        let mut nodes = Nodes {
            dir,
            paths,
            secrets,
            cluster,
            nodes: BTreeMap::new(),
            raw_signing: RawSigning::Denied,
            organisation,
            clock: Arc::new(AtomicU64::new(now())),
        };
        nodes.restart();
        nodes
    }

    /// The temporary directory holding the stores.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Node `id`.
    pub fn node(&mut self, id: u16) -> &mut Node {
        self.nodes.get_mut(&NodeId(id)).unwrap_or_else(|| panic!("no node {id}"))
    }

    /// Drops every node and reopens it from its store, as after a crash.
    pub fn restart(&mut self) {
        self.nodes.clear();
        for (id, path) in &self.paths {
            let clock = self.clock.clone();
            let store = open_store(path, *id);
            let genesis = self.organisation.genesis.clone();
            let node = Node::new(*id, self.secrets[id].clone(), self.cluster.clone(), store, genesis)
                .with_raw_signing(self.raw_signing)
                .with_clock(Arc::new(move || clock.load(Ordering::SeqCst)));
            self.nodes.insert(*id, node);
        }
    }

    /// The nodes' time now (unix seconds).
    pub fn now(&self) -> u64 {
        self.clock.load(Ordering::SeqCst)
    }

    /// Moves the nodes' clock `seconds` forward.
    pub fn advance(&self, seconds: u64) {
        self.clock.fetch_add(seconds, Ordering::SeqCst);
    }

    /// `job` with the request for exactly what it does, created now and
    /// approved by the organisation's owner, and no governance log (see
    /// [`Organisation::approve_with_log`]).
    pub fn approve(&self, job: Job) -> Job {
        self.organisation.approve(job, self.now())
    }

    /// Starts `job` on its participants, lowest id first (initiators talk to
    /// nodes that have not started yet, so their early frames get buffered),
    /// and relays until every participant answered; asserts that no job is
    /// left running anywhere.
    pub fn run(&mut self, job: Job) -> Results {
        let results = self.relay(&job);
        let left: Vec<_> = self.nodes.values().filter(|n| n.running() > 0).map(|n| n.id()).collect();
        assert!(left.is_empty(), "jobs left behind on {left:?} after {} ({results:?})", job.kind.name());
        results
    }

    /// Runs a job that may fail, and aborts it everywhere afterwards, as the
    /// coordinator does after the first failure.
    pub fn run_or_abort(&mut self, job: Job) -> Results {
        let results = self.relay(&job);
        for node in job.nodes() {
            self.node(node.0).handle(ToNode::Abort(job.session));
        }
        results
    }

    /// Starts `job` on its participants and delivers every frame until
    /// nothing moves; no check of what is left running.
    pub fn relay(&mut self, job: &Job) -> Results {
        let replies = self.deliver(Self::starts(job), |_| true);
        collect(replies)
    }

    /// `ToNode::Start(job)` for each participant, lowest id first.
    pub fn starts(job: &Job) -> VecDeque<(NodeId, ToNode)> {
        job.nodes().into_iter().map(|n| (n, ToNode::Start(job.clone()))).collect()
    }

    /// The relay as a network that may lose frames: hands each message of
    /// `queue` to its node in order, queues every frame a node sends for
    /// which `deliver` says true (the others are lost), and returns every
    /// other reply with the node that sent it, in order.
    pub fn deliver(
        &mut self,
        mut queue: VecDeque<(NodeId, ToNode)>,
        mut deliver: impl FnMut(&Frame) -> bool,
    ) -> Vec<(NodeId, FromNode)> {
        let mut replies = Vec::new();
        while let Some((to, message)) = queue.pop_front() {
            for reply in self.node(to.0).handle(message) {
                match reply {
                    FromNode::Frame(frame) => {
                        if deliver(&frame) {
                            queue.push_back((frame.to, ToNode::Frame(frame)));
                        }
                    }
                    other => replies.push((to, other)),
                }
            }
        }
        replies
    }

    /// Runs `job` like [`Nodes::run`], but as a coordinator that cuts
    /// `victim` off at the end: frames to it are held back while anything
    /// else can be delivered, and once every other participant is done, the
    /// ones still held (its last messages) are dropped and it is aborted.
    pub fn run_withholding_last(&mut self, job: Job, victim: NodeId) -> Results {
        let mut queue = Self::starts(&job);
        let mut results = BTreeMap::new();
        let others = job.nodes().len() - 1;
        let to_victim = |(n, m): &(NodeId, ToNode)| *n == victim && matches!(m, ToNode::Frame(_));
        loop {
            let next = match queue.iter().position(|m| !to_victim(m)) {
                Some(i) => queue.remove(i),
                None if results.keys().filter(|n| **n != victim).count() == others => break,
                None => queue.pop_front(),
            };
            let Some((to, message)) = next else { break };
            for reply in self.node(to.0).handle(message) {
                match reply {
                    FromNode::Frame(frame) => queue.push_back((frame.to, ToNode::Frame(frame))),
                    FromNode::Done { outcome, .. } => {
                        results.insert(to, Ok(outcome));
                    }
                    FromNode::Failed { reason, .. } => {
                        results.insert(to, Err(reason));
                    }
                    _ => {}
                }
            }
        }
        assert!(queue.iter().any(to_victim), "the victim's last messages were withheld");
        self.node(victim.0).handle(ToNode::Abort(job.session));
        results
    }

    /// The distinct active epochs of `key_id` across the nodes, in node order.
    pub fn epochs(&self, key_id: KeyId) -> Vec<u32> {
        let mut epochs: Vec<u32> = self
            .nodes
            .values()
            .map(|n| n.store().active_share(key_id).unwrap_or_else(|e| panic!("{e}")).epoch().0)
            .collect();
        epochs.dedup();
        epochs
    }
}

impl Default for Nodes {
    fn default() -> Self {
        Self::new()
    }
}

/// The `Done`/`Failed` answers among `replies`, by node (a later one wins).
pub fn collect(replies: Vec<(NodeId, FromNode)>) -> Results {
    let mut results = BTreeMap::new();
    for (node, reply) in replies {
        match reply {
            FromNode::Done { outcome, .. } => {
                results.insert(node, Ok(outcome));
            }
            FromNode::Failed { reason, .. } => {
                results.insert(node, Err(reason));
            }
            _ => {}
        }
    }
    results
}
