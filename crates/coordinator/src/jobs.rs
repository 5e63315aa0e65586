//! Connected nodes and running jobs: start a job on its participants, relay
//! their frames, and collect every participant's outcome (or failure).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use shardvault_types::SessionId;
use shardvault_wire::{Cluster, Frame, FromNode, Job, JobKind, NodeId, Outcome, ToNode};
use tokio::sync::{mpsc, watch, Notify};

use crate::db::Db;
use crate::governance::Organisation;
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
    /// Timed out here while waiting for these participants' messages.
    Waiting(Vec<NodeId>),
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
            Failure::Waiting(on) => {
                let on: Vec<String> = on.iter().map(|n| format!("node {n}")).collect();
                write!(f, "timed out waiting for {}", on.join(", "))
            }
        }
    }
}

/// One participant's answer.
pub(crate) type NodeResult = Result<Outcome, Failure>;

struct Pending {
    expected: BTreeSet<NodeId>,
    results: BTreeMap<NodeId, NodeResult>,
    /// Woken on every result recorded.
    changed: Arc<Notify>,
}

impl Pending {
    /// The first failure ends a job: the others would only wait for the timeout.
    fn settled(&self) -> bool {
        self.results.len() == self.expected.len() || self.results.values().any(Result::is_err)
    }
}

/// Messages queued for one node, at most (its outbox is a bounded channel).
pub(crate) const OUTBOX_MESSAGES: usize = 256;
/// Relayed frame bytes queued for one node, at most.
pub(crate) const OUTBOX_FRAME_BYTES: usize = 64 << 20;

struct Connection {
    id: u64,
    sender: mpsc::Sender<ToNode>,
    /// Frame bytes in `sender`'s queue now.
    queued: Arc<AtomicUsize>,
}

/// The receiving end of a node's outbox (held by its relay connection).
pub(crate) struct Outbox {
    receiver: mpsc::Receiver<ToNode>,
    queued: Arc<AtomicUsize>,
}

impl Outbox {
    /// The next message for the node; `None` once the connection was dropped.
    pub(crate) async fn recv(&mut self) -> Option<ToNode> {
        let message = self.receiver.recv().await?;
        self.taken(&message);
        Some(message)
    }

    /// Releases a message's share of the queued bytes.
    fn taken(&self, message: &ToNode) {
        if let ToNode::Frame(frame) = message {
            self.queued.fetch_sub(frame.ciphertext_len(), Ordering::Relaxed);
        }
    }
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
    /// Members and policy, replayed from the stored governance log.
    organisation: Mutex<Organisation>,
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
    /// The state, with the governance log in `db` replayed over the genesis
    /// (an error if the stored log does not verify).
    pub(crate) fn new(config: Config, db: Db, shutdown: watch::Receiver<bool>) -> Result<Self, String> {
        let organisation = Mutex::new(Organisation::load(config.genesis.clone(), &db)?);
        Ok(State {
            config,
            db: Mutex::new(db),
            shutdown,
            nodes: Mutex::new(BTreeMap::new()),
            jobs: Mutex::new(HashMap::new()),
            next_connection: std::sync::atomic::AtomicU64::new(1),
            in_flight: Mutex::new(std::collections::HashSet::new()),
            organisation,
        })
    }

    /// The organisation's governance state.
    pub(crate) fn organisation(&self) -> std::sync::MutexGuard<'_, Organisation> {
        lock(&self.organisation)
    }

    /// Claims `key` for a request about to run; `None` while another request
    /// with the same key runs.
    pub(crate) fn claim(&self, key: &str) -> Option<Claim<'_>> {
        lock(&self.in_flight).insert(key.to_string()).then(|| Claim { state: self, key: key.to_string() })
    }

    /// The cluster file, with the keys of every node replaced by an
    /// approved request over it (docs/DESIGN.md "Replacing a lost node").
    pub(crate) fn cluster(&self) -> rusqlite::Result<Cluster> {
        let mut cluster = self.config.cluster.clone();
        for (node, noise, identity) in self.db().node_keys()? {
            cluster.nodes.insert(node, noise);
            cluster.identities.insert(node, identity);
        }
        Ok(cluster)
    }

    /// Drops `node`'s connection, if any (its machine was replaced).
    pub(crate) fn drop_connection(&self, node: NodeId) {
        if lock(&self.nodes).remove(&node).is_some() {
            tracing::warn!(%node, "connection of a replaced node dropped");
        }
    }

    pub(crate) fn db(&self) -> std::sync::MutexGuard<'_, Db> {
        lock(&self.db)
    }

    /// Registers a node's connection (replacing an older one); returns its
    /// id and outbox. Call only for a hop that proved it is fresh
    /// (`HopResponder::confirm`): a replayed handshake must never replace a
    /// live connection.
    pub(crate) fn connect(&self, node: NodeId) -> (u64, Outbox) {
        let id = self.next_connection.fetch_add(1, Ordering::Relaxed);
        let (sender, receiver) = mpsc::channel(OUTBOX_MESSAGES);
        let queued = Arc::new(AtomicUsize::new(0));
        let replaced = lock(&self.nodes).insert(node, Connection { id, sender, queued: queued.clone() });
        tracing::info!(%node, reconnected = replaced.is_some(), "node connected");
        (id, Outbox { receiver, queued })
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

    /// Queues a message of the coordinator's own (start, abort) for `node`.
    /// A node whose outbox is full is not draining it (frozen, or flooded):
    /// its connection is dropped, which fails its jobs; it reconnects.
    fn send(&self, node: NodeId, message: ToNode) -> bool {
        let mut nodes = lock(&self.nodes);
        let Some(connection) = nodes.get(&node) else { return false };
        match connection.sender.try_send(message) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::warn!(%node, "node's outbox is full; dropping its connection");
                // Dropping the sender ends the relay connection, which calls `disconnect`.
                nodes.remove(&node);
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Queues a relayed frame. A frame that does not fit the recipient's
    /// outbox (messages or bytes) is dropped: only the session it belongs to
    /// suffers (it stalls and times out), not the recipient's other sessions.
    fn relay(&self, frame: Frame) -> bool {
        let to = frame.to;
        let len = frame.ciphertext_len();
        let nodes = lock(&self.nodes);
        let Some(connection) = nodes.get(&to) else { return false };
        if connection.queued.load(Ordering::Relaxed).saturating_add(len) > OUTBOX_FRAME_BYTES {
            tracing::warn!(node = %to, session = %frame.session, "node's outbox holds too many frame bytes; frame dropped");
            return false;
        }
        connection.queued.fetch_add(len, Ordering::Relaxed);
        match connection.sender.try_send(ToNode::Frame(frame)) {
            Ok(()) => true,
            Err(error) => {
                connection.queued.fetch_sub(len, Ordering::Relaxed);
                tracing::warn!(node = %to, %error, "frame not queued; dropped");
                false
            }
        }
    }

    /// Whether `frame` belongs to a running job and goes between two of its participants.
    fn in_session(&self, frame: &Frame) -> bool {
        frame.from != frame.to
            && lock(&self.jobs)
                .get(&frame.session)
                .is_some_and(|p| p.expected.contains(&frame.from) && p.expected.contains(&frame.to))
    }

    /// A message from an authenticated node.
    pub(crate) fn on_node_message(&self, node: NodeId, message: FromNode) {
        match message {
            FromNode::Frame(frame) => {
                if frame.from != node {
                    tracing::warn!(%node, claimed = %frame.from, "frame with a forged sender dropped");
                } else if !self.in_session(&frame) {
                    tracing::warn!(%node, to = %frame.to, session = %frame.session, "frame outside a running session between its participants dropped");
                } else if !self.relay(frame) {
                    tracing::debug!(%node, "frame not delivered");
                }
            }
            FromNode::Waiting { session, on } => {
                let on: Vec<NodeId> = on.into_iter().filter(|n| *n != node).collect();
                self.record(session, node, Err(Failure::Waiting(on)));
            }
            // Pings are answered by the relay connection itself.
            FromNode::Ping(_) | FromNode::Pong(_) => {}
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
        let result = match result {
            // Only participants can be waited on.
            Err(Failure::Waiting(on)) => {
                Err(Failure::Waiting(on.into_iter().filter(|n| pending.expected.contains(n)).collect()))
            }
            other => other,
        };
        pending.results.entry(node).or_insert(result);
        pending.changed.notify_one();
    }

    /// Waits until `done` holds for the job (or it is gone), or `deadline`
    /// passes; false on the deadline.
    async fn wait_for(&self, session: SessionId, deadline: tokio::time::Instant, done: fn(&Pending) -> bool) -> bool {
        loop {
            let changed = match lock(&self.jobs).get(&session) {
                Some(pending) if !done(pending) => pending.changed.clone(),
                _ => return true,
            };
            // `notify_one` keeps a permit, so a result recorded since the check is not missed.
            tokio::select! {
                _ = changed.notified() => {}
                _ = tokio::time::sleep_until(deadline) => return false,
            }
        }
    }

    /// Inserts `job` as pending and sends `Start` to its participants.
    fn begin(&self, job: &Job) {
        let expected = job.nodes();
        let session = job.session;
        let pending =
            Pending { expected: expected.clone(), results: BTreeMap::new(), changed: Arc::new(Notify::new()) };
        lock(&self.jobs).insert(session, pending);
        tracing::info!(%session, key = %job.key_id, job = job.kind.name(), nodes = ?expected, "job started");
        for node in &expected {
            if !self.send(*node, ToNode::Start(job.clone())) {
                self.record(session, *node, Err(Failure::Own(format!("node {node} is not connected"))));
            }
        }
    }

    /// Runs `job` on its participants and waits for all of them, or the
    /// first failure, or the timeout (signing has its own, shorter one). On
    /// the timeout the unfinished participants are aborted and, for a short
    /// grace period, asked whom they were waiting on: only those, and the
    /// ones that said nothing, are blamed.
    pub(crate) async fn run(&self, job: Job) -> BTreeMap<NodeId, NodeResult> {
        let expected = job.nodes();
        let session = job.session;
        let timeout = match job.kind {
            JobKind::Sign { .. } => self.config.sign_timeout,
            _ => self.config.job_timeout,
        };
        self.begin(&job);
        let deadline = tokio::time::Instant::now() + timeout;
        let timed_out = !self.wait_for(session, deadline, Pending::settled).await;
        if timed_out {
            // `begin` inserted the job and only this function removes it; were
            // it gone, no participant would have an answer we know of.
            let silent: Vec<NodeId> = lock(&self.jobs)
                .get(&session)
                .map(|p| expected.iter().copied().filter(|n| !p.results.contains_key(n)).collect())
                .unwrap_or_else(|| expected.iter().copied().collect());
            for node in &silent {
                self.send(*node, ToNode::Abort(session));
            }
            let grace = tokio::time::Instant::now() + self.config.ping_interval.saturating_mul(2);
            self.wait_for(session, grace, |p| p.results.len() == p.expected.len()).await;
        }
        // No entry would mean no answers: every participant then gets a failure below.
        let mut results = lock(&self.jobs).remove(&session).map(|p| p.results).unwrap_or_default();
        for node in &expected {
            if !results.contains_key(node) {
                let failure = if timed_out {
                    Failure::Own(format!("node {node} did not answer in time"))
                } else {
                    self.send(*node, ToNode::Abort(session));
                    Failure::Stopped
                };
                results.insert(*node, Err(failure));
            }
        }
        results
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use shardvault_types::{Epoch, KeyId, PartyId};
    use shardvault_wire::generate_keypair;

    use super::*;

    fn state(timeout: Duration) -> (Arc<State>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let (secret, coordinator) = generate_keypair().unwrap();
        let nodes = (1..=3).map(|i| (NodeId(i), generate_keypair().unwrap().1)).collect();
        let config = Config {
            genesis: crate::testing::genesis(),
            cluster: Cluster { coordinator, nodes, identities: Default::default() },
            secret,
            database: dir.path().join("coordinator.db"),
            job_timeout: timeout,
            sign_timeout: timeout,
            ping_interval: timeout / 2,
            silence_timeout: timeout,
            refresh_check: Duration::from_secs(60),
            tls: None,
            insecure_plaintext: false,
            allowed_hosts: Vec::new(),
        };
        let db = Db::open(&config.database).unwrap();
        let (_, shutdown) = watch::channel(false);
        (Arc::new(State::new(config, db, shutdown).unwrap()), dir)
    }

    fn job(nodes: &[u16]) -> Job {
        let participants =
            nodes.iter().map(|n| (PartyId::new(u8::try_from(*n).unwrap()).unwrap(), NodeId(*n))).collect();
        Job {
            session: SessionId::random(),
            key_id: KeyId::random(),
            participants,
            kind: JobKind::Refresh { from: Epoch(0), to: Epoch(1) },
            governance: None,
        }
    }

    fn frame(session: SessionId, from: u16, to: u16, len: usize) -> Frame {
        Frame { session, from: NodeId(from), to: NodeId(to), seq: 1, messages: vec![vec![7; len]] }
    }

    fn drain(outbox: &mut Outbox) -> Vec<ToNode> {
        let mut out = Vec::new();
        while let Ok(message) = outbox.receiver.try_recv() {
            outbox.taken(&message);
            out.push(message);
        }
        out
    }

    fn frames(messages: &[ToNode]) -> usize {
        messages.iter().filter(|m| matches!(m, ToNode::Frame(_))).count()
    }

    #[test]
    fn the_relay_forwards_only_frames_of_a_running_session_between_its_participants() {
        let (state, _dir) = state(Duration::from_secs(60));
        let mut outboxes: BTreeMap<u16, Outbox> = (1..=3).map(|n| (n, state.connect(NodeId(n)).1)).collect();
        let job = job(&[1, 2]);
        state.begin(&job);
        for outbox in outboxes.values_mut() {
            drain(outbox);
        }
        let session = job.session;
        let send = |from: u16, frame: Frame| state.on_node_message(NodeId(from), FromNode::Frame(frame));
        send(1, frame(session, 1, 2, 10));
        assert_eq!(frames(&drain(outboxes.get_mut(&2).unwrap())), 1, "a frame of the job between participants");
        // Another session, a non-participant recipient or sender, a forged sender, a frame to oneself.
        send(1, frame(SessionId::random(), 1, 2, 10));
        send(1, frame(session, 1, 3, 10));
        send(3, frame(session, 3, 2, 10));
        send(3, frame(session, 1, 2, 10));
        send(1, frame(session, 1, 1, 10));
        for n in 1..=3 {
            assert_eq!(frames(&drain(outboxes.get_mut(&n).unwrap())), 0, "node {n} got a frame it should not");
        }
        // Once the job is over, its frames are not relayed either.
        lock(&state.jobs).remove(&session);
        send(1, frame(session, 1, 2, 10));
        assert_eq!(frames(&drain(outboxes.get_mut(&2).unwrap())), 0);
    }

    #[test]
    fn a_full_outbox_drops_frames_and_a_node_that_does_not_drain_is_disconnected() {
        let (state, _dir) = state(Duration::from_secs(60));
        let (_, mut one) = state.connect(NodeId(1));
        let (_, mut two) = state.connect(NodeId(2));
        let job = job(&[1, 2]);
        state.begin(&job);
        drain(&mut one);
        // Bytes: frames of 4 MiB fit until 64 MiB are queued.
        for _ in 0..20 {
            state.on_node_message(NodeId(1), FromNode::Frame(frame(job.session, 1, 2, 4 << 20)));
        }
        let queued = drain(&mut two);
        assert_eq!(frames(&queued), OUTBOX_FRAME_BYTES / (4 << 20));
        // Messages: the channel holds OUTBOX_MESSAGES; frames beyond are dropped, the node stays.
        for _ in 0..OUTBOX_MESSAGES + 10 {
            state.on_node_message(NodeId(1), FromNode::Frame(frame(job.session, 1, 2, 10)));
        }
        assert!(state.connected().contains(&NodeId(2)));
        // The coordinator's own message does not fit: the node is not draining; it is dropped.
        assert!(!state.send(NodeId(2), ToNode::Abort(job.session)));
        assert!(!state.connected().contains(&NodeId(2)));
        assert_eq!(drain(&mut two).len(), OUTBOX_MESSAGES);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn on_a_timeout_only_the_node_waited_on_is_blamed() {
        let (state, _dir) = state(Duration::from_millis(300));
        let (_, _one) = state.connect(NodeId(1)); // never answers: frozen
        let (_, mut two) = state.connect(NodeId(2));
        let (_, mut three) = state.connect(NodeId(3));
        let job = job(&[1, 2, 3]);
        let session = job.session;
        // Nodes 2 and 3 answer the abort: both were waiting on node 1 (3 also names 2, wrongly;
        // only participants other than the reporter count).
        for (me, outbox, on) in [(2u16, &mut two, vec![1u16]), (3, &mut three, vec![1, 3])] {
            let state = state.clone();
            let mut receiver = std::mem::replace(&mut outbox.receiver, mpsc::channel(1).1);
            tokio::spawn(async move {
                while let Some(message) = receiver.recv().await {
                    if message == ToNode::Abort(session) {
                        let on = on.iter().copied().map(NodeId).collect();
                        state.on_node_message(NodeId(me), FromNode::Waiting { session, on });
                    }
                }
            });
        }
        let results = state.run(job).await;
        assert!(
            matches!(&results[&NodeId(1)], Err(Failure::Own(why)) if why.contains("did not answer")),
            "{results:?}"
        );
        assert_eq!(results[&NodeId(2)], Err(Failure::Waiting(vec![NodeId(1)])));
        assert_eq!(results[&NodeId(3)], Err(Failure::Waiting(vec![NodeId(1)])));
    }
}
