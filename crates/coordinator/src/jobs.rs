//! Connected nodes and running jobs: start a job on its participants, relay
//! their frames, and collect every participant's outcome (or failure).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;

use shardvault_mpc::SessionId;
use shardvault_wire::{FromNode, Job, NodeId, Outcome, ToNode};
use tokio::sync::{mpsc, oneshot, watch};

use crate::db::Db;
use crate::Config;

/// Why a participant has no outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The node itself failed (disconnected, refused, its storage…).
    Own(String),
    /// The node's protocol run named another participant as the culprit.
    Blames(NodeId, String),
    /// As `Blames`, and the node now refuses to sign with the culprit for
    /// this key until a refresh (a DKLs23 ban abort).
    Bans(NodeId, String),
    /// Aborted because another participant failed first: not its fault.
    Stopped,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Own(reason) => f.write_str(reason),
            Failure::Blames(culprit, reason) => write!(f, "{reason} (node {culprit} blamed)"),
            Failure::Bans(culprit, reason) => {
                write!(f, "{reason} (node {culprit} banned for this key until a refresh)")
            }
            Failure::Stopped => f.write_str("stopped because another participant failed"),
        }
    }
}

/// One participant's answer.
pub(crate) type NodeResult = Result<Outcome, Failure>;

struct Pending {
    expected: BTreeSet<NodeId>,
    results: BTreeMap<NodeId, NodeResult>,
    done: Option<oneshot::Sender<()>>,
}

struct Connection {
    id: u64,
    sender: mpsc::UnboundedSender<ToNode>,
}

/// Shared coordinator state.
pub(crate) struct State {
    pub(crate) config: Config,
    pub(crate) db: Mutex<Db>,
    pub(crate) shutdown: watch::Receiver<bool>,
    nodes: Mutex<BTreeMap<NodeId, Connection>>,
    jobs: Mutex<HashMap<SessionId, Pending>>,
    next_connection: std::sync::atomic::AtomicU64,
    /// Idempotency keys whose request is running now.
    in_flight: Mutex<std::collections::HashSet<String>>,
}

/// An Idempotency-Key claimed for one running request; released on drop
/// (also when the client goes away and the request future is dropped).
pub(crate) struct Claim<'a> {
    state: &'a State,
    key: String,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        lock(&self.state.in_flight).remove(&self.key);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding a lock cannot leave these maps inconsistent.
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl State {
    pub(crate) fn new(config: Config, db: Db, shutdown: watch::Receiver<bool>) -> Self {
        State {
            config,
            db: Mutex::new(db),
            shutdown,
            nodes: Mutex::new(BTreeMap::new()),
            jobs: Mutex::new(HashMap::new()),
            next_connection: std::sync::atomic::AtomicU64::new(1),
            in_flight: Mutex::new(std::collections::HashSet::new()),
        }
    }

    /// Claims `key` for a request about to run; `None` while another request
    /// with the same key runs.
    pub(crate) fn claim(&self, key: &str) -> Option<Claim<'_>> {
        lock(&self.in_flight).insert(key.to_string()).then(|| Claim { state: self, key: key.to_string() })
    }

    pub(crate) fn db(&self) -> std::sync::MutexGuard<'_, Db> {
        lock(&self.db)
    }

    /// Registers a node's connection (replacing an older one); returns its id.
    pub(crate) fn connect(&self, node: NodeId, sender: mpsc::UnboundedSender<ToNode>) -> u64 {
        let id = self.next_connection.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        lock(&self.nodes).insert(node, Connection { id, sender });
        tracing::info!(%node, "node connected");
        id
    }

    /// Forgets a connection and fails the node's part of every running job.
    pub(crate) fn disconnect(&self, node: NodeId, connection: u64) {
        let mut nodes = lock(&self.nodes);
        if nodes.get(&node).is_some_and(|c| c.id == connection) {
            nodes.remove(&node);
            tracing::warn!(%node, "node disconnected");
        }
        drop(nodes);
        let sessions: Vec<SessionId> = lock(&self.jobs)
            .iter()
            .filter(|(_, p)| p.expected.contains(&node) && !p.results.contains_key(&node))
            .map(|(s, _)| *s)
            .collect();
        for session in sessions {
            self.record(session, node, Err(Failure::Own(format!("node {node} disconnected"))));
        }
    }

    /// The nodes connected now.
    pub(crate) fn connected(&self) -> BTreeSet<NodeId> {
        lock(&self.nodes).keys().copied().collect()
    }

    fn send(&self, node: NodeId, message: ToNode) -> bool {
        lock(&self.nodes).get(&node).is_some_and(|c| c.sender.send(message).is_ok())
    }

    /// A message from an authenticated node.
    pub(crate) fn on_node_message(&self, node: NodeId, message: FromNode) {
        match message {
            FromNode::Frame(frame) => {
                if frame.from != node {
                    tracing::warn!(%node, claimed = %frame.from, "frame with a forged sender dropped");
                } else if !self.send(frame.to, ToNode::Frame(frame)) {
                    tracing::debug!(%node, "frame for a disconnected node dropped");
                }
            }
            FromNode::Done { session, outcome } => self.record(session, node, Ok(outcome)),
            FromNode::Failed { session, reason, culprit, banned } => {
                let failure = match culprit {
                    Some(culprit) if culprit != node && banned => Failure::Bans(culprit, reason),
                    Some(culprit) if culprit != node => Failure::Blames(culprit, reason),
                    _ => Failure::Own(reason),
                };
                self.record(session, node, Err(failure));
            }
        }
    }

    fn record(&self, session: SessionId, node: NodeId, result: NodeResult) {
        let mut jobs = lock(&self.jobs);
        let Some(pending) = jobs.get_mut(&session) else { return };
        if !pending.expected.contains(&node) {
            return;
        }
        let failed = result.is_err();
        pending.results.entry(node).or_insert(result);
        // One failure ends the job: the others would only wait for the timeout.
        if failed || pending.results.len() == pending.expected.len() {
            if let Some(done) = pending.done.take() {
                let _ = done.send(());
            }
        }
    }

    /// Runs `job` on its participants and waits for all of them (or the
    /// timeout: missing answers become failures and the job is aborted).
    pub(crate) async fn run(&self, job: Job) -> BTreeMap<NodeId, NodeResult> {
        let expected = job.nodes();
        let session = job.session;
        let (done, finished) = oneshot::channel();
        lock(&self.jobs)
            .insert(session, Pending { expected: expected.clone(), results: BTreeMap::new(), done: Some(done) });
        tracing::info!(%session, key = %job.key_id, job = job.kind.name(), nodes = ?expected, "job started");
        for node in &expected {
            if !self.send(*node, ToNode::Start(job.clone())) {
                self.record(session, *node, Err(Failure::Own(format!("node {node} is not connected"))));
            }
        }
        let timed_out = tokio::time::timeout(self.config.job_timeout, finished).await.is_err();
        let mut results = lock(&self.jobs).remove(&session).map(|p| p.results).unwrap_or_default();
        for node in &expected {
            if !results.contains_key(node) {
                self.send(*node, ToNode::Abort(session));
                let failure = if timed_out {
                    Failure::Own(format!("node {node} did not answer in time"))
                } else {
                    Failure::Stopped
                };
                results.insert(*node, Err(failure));
            }
        }
        results
    }
}
