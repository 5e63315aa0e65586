//! The organisation the in-memory nodes serve: a genesis whose owner's
//! private key the test holds, and helpers that turn a job into the request
//! it carries out with its approvals (what the coordinator relays).

use std::sync::{Arc, OnceLock};

use shardvault_governance::{
    Action, Conditions, Genesis, Group, Identity, LogEntry, Operation, OrganisationId, Owner, Policy, Request, Role,
    Rule, DEFAULT_LIFETIME_SECS,
};
use shardvault_wire::{Governed, Job, JobKind};

/// The genesis time of the harness's organisations (2026-01-01).
pub const GENESIS_TIME: u64 = 1_767_225_600;

/// An organisation whose owners' keys the test holds: `owner` (the first,
/// [`Organisation::owner`]), then `owner2`, `owner3`, …
#[derive(Clone, Debug)]
pub struct Organisation {
    /// The genesis every node of the set is started with.
    pub genesis: Genesis,
    /// Its id.
    pub id: OrganisationId,
    /// The first owner's private key (approves requests and governance changes).
    pub owner: Arc<Identity>,
    /// Every owner's private key, in the genesis's order (the first is `owner`).
    pub owners: Vec<Arc<Identity>>,
}

/// A new random member key.
pub fn identity(name: &str) -> Identity {
    Identity::generate(name).unwrap_or_else(|e| panic!("member key: {e}"))
}

/// The policy of [`Organisation::shared`]: one approval by an owner or an
/// admin for everything. Raw signing is left to each node's own switch
/// (`--allow-raw-signing`), so the node's checks are what tests see.
pub fn one_owner_or_admin() -> Policy {
    let group = Group { count: 1, roles: vec![Role::Owner, Role::Admin], members: Vec::new() };
    Policy {
        version: 1,
        change_delay_secs: 0,
        refresh_every_secs: 0,
        address_books: Default::default(),
        rules: vec![Rule {
            name: "one owner or admin".into(),
            when: Conditions::default(),
            action: Action::Require(vec![group]),
        }],
    }
}

impl Organisation {
    /// An organisation named `name` with a new owner `owner` and `policy`.
    pub fn new(name: &str, policy: Policy) -> Self {
        Self::with_owners(name, policy, 1)
    }

    /// An organisation named `name` with `count` new owners and `policy`.
    pub fn with_owners(name: &str, policy: Policy, count: usize) -> Self {
        let keys: Vec<Arc<Identity>> = (1..=count).map(|i| Arc::new(identity(&format!("owner{i}@harness")))).collect();
        let owners = keys
            .iter()
            .enumerate()
            .map(|(i, key)| {
                let name = if i == 0 { "owner".to_string() } else { format!("owner{}", i + 1) };
                let name = name.parse().unwrap_or_else(|e| panic!("{e}"));
                Owner { name, public_key: key.member_key().unwrap_or_else(|e| panic!("{e}")) }
            })
            .collect();
        let genesis = Genesis { version: 1, name: name.into(), created_at: GENESIS_TIME, owners, policy };
        // Through the bytes, as a node reads its genesis file.
        let bytes = genesis.to_bytes().unwrap_or_else(|e| panic!("{e}"));
        let genesis = Genesis::from_bytes(&bytes).unwrap_or_else(|e| panic!("test genesis: {e}"));
        let id = genesis.id().unwrap_or_else(|e| panic!("{e}"));
        let owner = keys.first().cloned().unwrap_or_else(|| panic!("an organisation needs an owner"));
        Organisation { genesis, id, owner, owners: keys }
    }

    /// The organisation every [`crate::Nodes`] serves unless told otherwise
    /// (one per test process): policy [`one_owner_or_admin`].
    pub fn shared() -> &'static Organisation {
        static SHARED: OnceLock<Organisation> = OnceLock::new();
        SHARED.get_or_init(|| Organisation::new("harness", one_owner_or_admin()))
    }

    /// A request for `operation` by the owner, created at `now`, living a day.
    pub fn request(&self, operation: Operation, now: u64) -> Request {
        let creator = self.owner.member_key().unwrap_or_else(|e| panic!("{e}"));
        Request::new(self.id, &creator, operation, now, DEFAULT_LIFETIME_SECS).unwrap_or_else(|e| panic!("{e}"))
    }

    /// `request`'s canonical bytes with the approvals of `approvers` and `log`.
    pub fn governed(request: &Request, approvers: &[&Identity], log: Vec<LogEntry>) -> Governed {
        let bytes = request.to_bytes().unwrap_or_else(|e| panic!("{e}"));
        Governed { request: utf8(bytes), approvals: approvals(request, approvers), log }
    }

    /// The armored approvals of `bytes` (any bytes: a test may approve
    /// something that is not a canonical request) by `approvers`.
    pub fn approvals(bytes: &[u8], approvers: &[&Identity]) -> Vec<String> {
        approvers
            .iter()
            .map(|identity| {
                let approval = identity.approve(bytes).unwrap_or_else(|e| panic!("{e}"));
                approval.to_armored().unwrap_or_else(|e| panic!("{e}"))
            })
            .collect()
    }

    /// A governance change (`add_member`, …) approved by `approvers`, as a log entry.
    pub fn change(&self, operation: Operation, approvers: &[&Identity], now: u64) -> LogEntry {
        let request = self.request(operation, now);
        let bytes = request.to_bytes().unwrap_or_else(|e| panic!("{e}"));
        LogEntry { request: utf8(bytes), approvals: approvals(&request, approvers) }
    }

    /// `job` carrying the request for exactly what it does, approved by the
    /// owner at `now`, with `log`; an activation or attestation unchanged
    /// (those carry no request).
    pub fn approve_with_log(&self, mut job: Job, now: u64, log: Vec<LogEntry>) -> Job {
        if let Some(operation) = operation_of(&job) {
            let request = self.request(operation, now);
            job.governance = Some(Self::governed(&request, &[&self.owner], log));
        }
        job
    }

    /// [`Organisation::approve_with_log`] with an empty log.
    pub fn approve(&self, job: Job, now: u64) -> Job {
        self.approve_with_log(job, now, Vec::new())
    }
}

/// `job` approved in [`Organisation::shared`] now (system clock).
pub fn approved(job: Job) -> Job {
    Organisation::shared().approve(job, now())
}

/// The system clock, unix seconds.
pub fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The operation a job carries out, as its request names it (`None` for
/// activations, attestations, seed escrows, and repairs, whose replacement
/// request names keys the job does not carry).
pub fn operation_of(job: &Job) -> Option<Operation> {
    let key_id = job.key_id;
    Some(match &job.kind {
        JobKind::CreateKey { scheme, threshold } => {
            Operation::CreateKey { key_id, scheme: *scheme, threshold: *threshold }
        }
        JobKind::DeriveHardened { path } => Operation::DeriveAddress { key_id, path: path.clone() },
        JobKind::Sign { path, payload, .. } => {
            Operation::Sign { key_id, path: path.clone(), payload: payload.requested() }
        }
        JobKind::Refresh { .. } => Operation::Refresh { key_id },
        JobKind::ExportBackup { recipients } => {
            Operation::ExportBackup { keys: vec![key_id], recipients: recipients.clone() }
        }
        JobKind::Activate { .. } | JobKind::Attest { .. } | JobKind::EscrowSeeds | JobKind::RepairShare { .. } => {
            return None
        }
    })
}

fn approvals(request: &Request, approvers: &[&Identity]) -> Vec<String> {
    Organisation::approvals(&request.to_bytes().unwrap_or_else(|e| panic!("{e}")), approvers)
}

fn utf8(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| panic!("canonical JSON is UTF-8: {e}"))
}
