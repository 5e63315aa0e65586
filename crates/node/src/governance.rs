//! The node decides itself whether a job was approved (docs/GOVERNANCE.md,
//! "What the nodes check, per job"). The coordinator relays a request, its
//! approvals and the organisation's governance log with every job that
//! changes state; it is not trusted with any of them. For each such job the
//! node:
//!
//! 1. applies the job's log to its own stored log ([`apply_log`]): the
//!    stored entries must be a prefix of it, each new entry must verify
//!    against the state before it, and new entries are stored with the time
//!    this node first saw them;
//! 2. takes as the governance state in force the genesis plus every stored
//!    entry whose change delay (of the policy before it) has passed since it
//!    was first seen here — stopping at the first that has not;
//! 3. decodes the request (canonical bytes only, this organisation, alive);
//! 4. checks the job is exactly what the request says ([`same_as_request`]);
//! 5. evaluates the policy on what the node decoded itself and counts the
//!    approvals ([`policy::authorize`]).
//!
//! A new machine replacing a lost node first adopts the history its
//! replacement request was made at ([`adopt_vouched_log`]), and every node
//! judges a replacement over that whole history ([`check_replacement_log`]).
//!
//! Any refusal is a [`NodeError::Refused`] naming the reason, before the job
//! touches a share or the sign log.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use shardvault_governance::{canonical::sha256, Decision, Genesis, LogEntry, Operation, Request, State};
use shardvault_mpc::{Epoch, KeyId};
use shardvault_wire::{Governed, Job, JobKind, NodeId};

use crate::runner::NodeError;
use crate::store::{Store, StoredEntry};

mod policy;

/// Where the node reads the time, in unix seconds. The daemon uses
/// [`system_clock`]; tests pass their own to move time.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The operating system's clock (0 before 1970, so every request then reads
/// as created in the future and is refused).
pub fn system_clock() -> Clock {
    Arc::new(|| SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_secs()))
}

/// What an approved job carries forward: the request's hash (the spend
/// ledger's key) and the policy's decision (its spends).
#[derive(Debug)]
pub(crate) struct Approved {
    /// The request's id.
    pub id: shardvault_governance::RequestId,
    /// SHA-256 of the request's canonical bytes.
    pub request: [u8; 32],
    /// The rule that allowed it, and what it moves.
    pub decision: Decision,
    /// What it asks, as this node decoded it.
    pub operation: Operation,
    /// When it was created (unix seconds, the creator's clock).
    pub created_at: u64,
}

fn refused(reason: impl std::fmt::Display) -> NodeError {
    NodeError::Refused(format!("governance: {reason}"))
}

/// Steps 1–5 for `job` at `now`, on machine `me`: the approved request, or why not.
pub(crate) fn approve(
    genesis: &Genesis,
    store: &Store,
    job: &Job,
    me: &Machine,
    now: u64,
) -> Result<Approved, NodeError> {
    let governed = job.governance.as_ref().ok_or_else(|| {
        refused(format!(
            "a {} job must carry its approved request, approvals and the governance log; this one carries none",
            job.kind.name()
        ))
    })?;
    adopt_vouched_log(genesis, store, governed, job, me, now)?;
    let state = apply_log(genesis, store, &governed.log, now)?;
    let request = decode(governed, &state, now)?;
    same_as_request(job, &request.operation).map_err(refused)?;
    if let Operation::ReplaceNode { log_head, .. } = &request.operation {
        check_replacement_log(genesis, store, &governed.log, log_head)?;
    }
    let hash = sha256(governed.request.as_bytes());
    let decision = policy::authorize(&state, governed, &request, job, &store.ledger(hash), now)?;
    tracing::info!(request = %request.id, rule = %decision.rule, log = state.entries(), "request approved");
    Ok(Approved {
        id: request.id,
        request: hash,
        decision,
        operation: request.operation,
        created_at: request.created_at,
    })
}

/// A refresh job with the governance `log` and no request (docs/POLICY.md
/// "Scheduled refresh"): allowed only when the policy in force here (after
/// the log, whose entries carry their own approvals) schedules refreshes
/// and the key's `active` epoch began at least that long ago by this node's
/// clock. An epoch with no recorded start (a key from an earlier release)
/// is recorded as starting now, and refused.
pub(crate) fn check_scheduled_refresh(
    genesis: &Genesis,
    store: &Store,
    log: &[LogEntry],
    key_id: KeyId,
    active: Epoch,
    now: u64,
) -> Result<(), NodeError> {
    let state = apply_log(genesis, store, log, now)?;
    let every = state.policy().refresh_every_secs;
    if every == 0 {
        return Err(refused(
            "a refresh job must carry its approved request: the policy in force on this node schedules no refresh \
             (its refresh_every_secs is 0)"
                .to_string(),
        ));
    }
    let Some(since) = store.epoch_start(key_id, active)? else {
        store.record_epoch_start(key_id, active, now)?;
        return Err(refused(format!(
            "this node has no record of when epoch {active} of key {key_id} began; it counts from now, so its \
             scheduled refresh is due in {every} s"
        )));
    };
    let due = since.saturating_add(every);
    if now < due {
        return Err(refused(format!(
            "epoch {active} of key {key_id} is active here since {since}; the policy refreshes every {every} s, so \
             its scheduled refresh is due at {due} (in {} s)",
            due - now
        )));
    }
    tracing::info!(key = %key_id, epoch = %active, since, every, "scheduled refresh due");
    Ok(())
}

/// The machine deciding: its node id and its own public keys.
pub(crate) struct Machine {
    pub node: NodeId,
    pub noise: [u8; 32],
    pub identity: [u8; 32],
}

/// A new machine replacing node `me` holds no governance log, so every
/// change would be first seen now: one whose request expired long ago would
/// be refused. A replacement's request names the log head it was made at,
/// which its approvers checked against the log they replayed, and its jobs
/// carry the whole log up to exactly that head ([`check_replacement_log`]).
/// The new machine, if it holds nothing yet and the request names its own
/// keys, stores that log with each entry first seen when its request
/// expired, or now if that is earlier: no honest node saw an entry later
/// than that (it would have refused it), so the new machine is never ahead
/// of one in counting change delays.
fn adopt_vouched_log(
    genesis: &Genesis,
    store: &Store,
    governed: &Governed,
    job: &Job,
    me: &Machine,
    now: u64,
) -> Result<(), NodeError> {
    let Ok(request) = Request::from_bytes(governed.request.as_bytes()) else { return Ok(()) };
    let Operation::ReplaceNode { node, noise_key, identity_key, log_head } = &request.operation else {
        return Ok(());
    };
    let mine = NodeId(*node) == me.node && *noise_key == me.noise && *identity_key == me.identity;
    if !mine || governed.log.is_empty() || !store.governance_log()?.is_empty() || !store.keys()?.is_empty() {
        return Ok(());
    }
    let state = vouched_state(genesis, &governed.log, log_head)?;
    request.check_alive(state.organisation(), now).map_err(refused)?;
    same_as_request(job, &request.operation).map_err(refused)?;
    let hash = sha256(governed.request.as_bytes());
    policy::authorize(&state, governed, &request, job, &store.ledger(hash), now)?;
    for (position, entry) in governed.log.iter().enumerate() {
        let expired = Request::from_bytes(entry.request.as_bytes()).map_or(now, |r| r.expires_at);
        store.append_governance_log(position, std::slice::from_ref(entry), expired.min(now))?;
    }
    tracing::warn!(entries = governed.log.len(), head = %hex::encode(log_head), "governance history adopted, as the approved replacement of this node vouches");
    Ok(())
}

/// A replacement is judged over the whole history it was made at: the
/// job's log must be at least what this node stores (so that no removal
/// is cut off it) and end exactly at the request's `log_head`.
fn check_replacement_log(genesis: &Genesis, store: &Store, log: &[LogEntry], head: &[u8]) -> Result<(), NodeError> {
    let stored = store.governance_log()?.len();
    if log.len() < stored {
        return Err(refused(format!(
            "a node replacement must carry the whole governance log; this one has {} entries, this node holds \
             {stored}",
            log.len()
        )));
    }
    vouched_state(genesis, log, head).map(|_| ())
}

/// The state after `log`, which must end at `head`.
fn vouched_state(genesis: &Genesis, log: &[LogEntry], head: &[u8]) -> Result<State, NodeError> {
    let mut state = State::genesis(genesis).map_err(|e| refused(format!("the genesis: {e}")))?;
    for (position, entry) in (1..).zip(log) {
        state.apply(entry).map_err(|e| refused(format!("governance log entry {position}: {e}")))?;
    }
    if state.head() != head {
        return Err(refused(format!(
            "the node replacement was made at governance log head {}, but the log is now at {}: the \
             organisation changed since (or the request was made over another history); ask for the \
             replacement again",
            hex::encode(head),
            hex::encode(state.head())
        )));
    }
    Ok(state)
}

/// Decodes the request: its canonical bytes and nothing else, for this
/// organisation, not expired, not from the future.
fn decode(governed: &Governed, state: &State, now: u64) -> Result<Request, NodeError> {
    let request = Request::from_bytes(governed.request.as_bytes())
        .map_err(|e| refused(format!("the request does not decode: {e}")))?;
    request.check_alive(state.organisation(), now).map_err(refused)?;
    Ok(request)
}

/// Applies the job's `log` to the stored one (storing new entries, first
/// seen `now`) and returns the state in force at `now`.
fn apply_log(genesis: &Genesis, store: &Store, log: &[LogEntry], now: u64) -> Result<State, NodeError> {
    let stored = store.governance_log()?;
    check_prefix(&stored, log)?;
    let mut full = State::genesis(genesis).map_err(|e| refused(format!("the genesis: {e}")))?;
    let mut in_force: Option<State> = None;
    for held in &stored {
        if in_force.is_none() && !effective(&full, held.first_seen, now) {
            in_force = Some(full.clone());
        }
        full.apply(&held.entry).map_err(|e| {
            refused(format!(
                "the governance log stored on this node does not replay at entry {}: {e}; restore node.db or \
                 investigate",
                held.position
            ))
        })?;
    }
    let new = log.get(stored.len()..).unwrap_or_default();
    for (position, entry) in (stored.len() + 1..).zip(new) {
        if in_force.is_none() && !effective(&full, now, now) {
            in_force = Some(full.clone());
        }
        // First seen now: a change whose request expired is refused (an
        // approval does not outlive its request), whenever it was approved.
        let expired = Request::from_bytes(entry.request.as_bytes()).is_ok_and(|r| now >= r.expires_at);
        if expired {
            return Err(refused(format!(
                "governance log entry {position} is a change whose request expired before this node saw it"
            )));
        }
        full.apply(entry).map_err(|e| refused(format!("governance log entry {position} is not valid: {e}")))?;
    }
    if !new.is_empty() {
        store.append_governance_log(stored.len(), new, now)?;
        tracing::info!(entries = new.len(), head = %hex::encode(full.head()), "governance log extended");
    }
    // Removals take effect at once; additions and policies wait their delay.
    Ok(in_force.map_or_else(|| full.clone(), |state| state.without_members_missing_from(&full)))
}

/// Whether an entry first seen at `first_seen` applies at `now` after
/// `before` (whose policy's change delay it waits).
fn effective(before: &State, first_seen: u64, now: u64) -> bool {
    first_seen.saturating_add(before.policy().change_delay_secs) <= now
}

/// Refuses a log that does not extend the stored one (or is not a prefix of it).
fn check_prefix(stored: &[StoredEntry], log: &[LogEntry]) -> Result<(), NodeError> {
    match stored.iter().zip(log).find(|(held, given)| held.entry != **given) {
        Some((held, _)) => Err(refused(format!(
            "governance log diverges at entry {}: the job's log is not the one this node holds; the coordinator \
             rewrote history or serves another organisation",
            held.position
        ))),
        None => Ok(()),
    }
}

/// Whether the job does exactly what the request says.
fn same_as_request(job: &Job, operation: &Operation) -> Result<(), String> {
    if let Some(requested) = operation.key_id().filter(|k| *k != job.key_id) {
        return Err(format!("the job is for key {} but the request for key {requested}", job.key_id));
    }
    match (&job.kind, operation) {
        (JobKind::CreateKey { scheme, threshold }, Operation::CreateKey { scheme: s, threshold: t, .. }) => {
            if scheme != s || threshold != t {
                return Err(format!(
                    "the job creates a {scheme} {}-of-{} key but the request asks for a {s} {}-of-{} key",
                    threshold.threshold(),
                    threshold.parties(),
                    t.threshold(),
                    t.parties()
                ));
            }
        }
        (JobKind::DeriveHardened { path }, Operation::DeriveAddress { path: p, .. }) if path != p => {
            return Err(format!("the job derives {path} but the request asks for {p}"));
        }
        (JobKind::Sign { path, payload, .. }, Operation::Sign { path: p, payload: q, .. }) => {
            if path != p {
                return Err(format!("the job signs at {path} but the request at {p}"));
            }
            if payload.requested() != *q {
                return Err("the job's payload is not the one the request names: the approvals are for another \
                            transaction or message"
                    .into());
            }
        }
        // Signing at a new path derives its hardened prefix first, under the
        // signing request's approvals (and the policy the signature needs).
        (JobKind::DeriveHardened { path }, Operation::Sign { path: p, .. }) if *path != p.hardened_prefix() => {
            return Err(format!("the job derives {path} but the request signs at {p}"));
        }
        (JobKind::ExportBackup { recipients }, Operation::ExportBackup { keys, recipients: approved }) => {
            if !keys.contains(&job.key_id) {
                return Err(format!("the job exports key {} but the request does not name it", job.key_id));
            }
            if recipients != approved {
                return Err("the job seals to other recipients than the request names".into());
            }
        }
        // A replacement rebuilds the node's share of every key it plays a
        // party of, refreshes those keys and re-derives their paths.
        (JobKind::RepairShare { target, parties }, Operation::ReplaceNode { node, .. }) => {
            if parties.get(target).map(|n| n.0) != Some(*node) {
                return Err(format!("the job repairs party {target}, which is not node {node}'s in its party map"));
            }
        }
        (JobKind::Refresh { .. } | JobKind::DeriveHardened { .. }, Operation::ReplaceNode { node, .. }) => {
            if !job.participants.values().any(|n| n.0 == *node) {
                return Err(format!("the job does not concern node {node}, which the replacement names"));
            }
        }
        (JobKind::DeriveHardened { .. }, Operation::DeriveAddress { .. } | Operation::Sign { .. })
        | (JobKind::Refresh { .. }, Operation::Refresh { .. }) => {}
        (kind, operation) => {
            return Err(format!("the job is a {} job but the request asks for {}", kind.name(), operation.kind()));
        }
    }
    Ok(())
}
