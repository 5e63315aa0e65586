//! The governance state — members and policy — as the replay of a
//! hash-chained log of approved changes from the genesis
//! (docs/GOVERNANCE.md, "Governance log"). Nodes and the coordinator run the
//! same replay; rows edited in a database grant nothing.

use std::collections::BTreeSet;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::canonical::sha256;
use crate::request::Operation;
use crate::{Approval, Decision, Error, Facts, Genesis, Group, Ledger, Member, OrganisationId, Policy, Request, Role};

/// One approved governance change: the request's canonical bytes (as text:
/// canonical JSON is UTF-8) and the approvals that carried it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogEntry {
    /// The request, canonical JSON.
    pub request: String,
    /// Armored SSHSIG approvals.
    pub approvals: Vec<String>,
}

/// The most approvals an entry or a job may carry.
pub const MAX_APPROVALS: usize = 64;

/// Members and policy after some prefix of the log.
#[derive(Clone, Debug)]
pub struct State {
    organisation: OrganisationId,
    members: Vec<Member>,
    policy: Policy,
    head: [u8; 32],
    entries: usize,
    /// Ids of the requests the log applied: each applies once.
    applied: BTreeSet<crate::RequestId>,
}

/// A request's approvals as this state counts them.
#[derive(Debug, Default)]
pub struct Count<'a> {
    /// Distinct current members whose approval verified.
    pub approvers: Vec<&'a Member>,
    /// Why each other approval did not count.
    pub ignored: Vec<String>,
}

impl State {
    /// The state a genesis makes (no log entries).
    pub fn genesis(genesis: &Genesis) -> Result<Self, Error> {
        let organisation = genesis.id()?;
        let head = Sha256::new().chain_update(b"shardvault-governance-v1").chain_update(organisation.0).finalize();
        Ok(State {
            organisation,
            members: genesis.members(),
            policy: genesis.policy.clone(),
            head: head.into(),
            entries: 0,
            applied: BTreeSet::new(),
        })
    }

    /// The organisation.
    pub fn organisation(&self) -> OrganisationId {
        self.organisation
    }

    /// The members, in the order they were added.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// The policy in force.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The log head: the hash chain's value after the applied entries.
    pub fn head(&self) -> [u8; 32] {
        self.head
    }

    /// How many log entries are applied.
    pub fn entries(&self) -> usize {
        self.entries
    }

    /// This state with only the members `other` has too: approvals on jobs
    /// are counted in the state in force (grants wait out the change delay)
    /// less whoever a later entry removed (removals take effect at once).
    pub fn without_members_missing_from(&self, other: &State) -> State {
        let mut state = self.clone();
        state.members.retain(|m| other.members.iter().any(|o| o.public_key == m.public_key && o.role == m.role));
        state
    }

    /// The member whose key made `approval`, if any.
    pub fn member_by_fingerprint(&self, fingerprint: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.public_key.fingerprint() == fingerprint)
    }

    /// Checks every approval of `request` (its canonical bytes): it must
    /// parse, be made by a current member who may approve, verify over
    /// exactly these bytes, and be that member's first.
    pub fn count(&self, request: &[u8], approvals: &[String]) -> Count<'_> {
        let mut count = Count::default();
        let mut seen = BTreeSet::new();
        for (index, armored) in approvals.iter().enumerate().take(MAX_APPROVALS) {
            match self.approver(request, armored) {
                Ok(member) if seen.insert(member.name.clone()) => count.approvers.push(member),
                Ok(member) => count.ignored.push(format!("approval {index}: a second one by {}", member.name)),
                Err(reason) => count.ignored.push(format!("approval {index}: {reason}")),
            }
        }
        if approvals.len() > MAX_APPROVALS {
            count
                .ignored
                .push(format!("{} approvals beyond the first {MAX_APPROVALS}", approvals.len() - MAX_APPROVALS));
        }
        count
    }

    fn approver(&self, request: &[u8], armored: &str) -> Result<&Member, Error> {
        let approval = Approval::from_str(armored)?;
        let key = approval.claimed_signer()?;
        let member = self
            .members
            .iter()
            .find(|m| m.public_key == key)
            .ok_or_else(|| Error::Invalid(format!("{} is not a member's key", key.fingerprint())))?;
        if !member.role.may_approve() {
            return Err(Error::Invalid(format!("{} is a {}, who cannot approve", member.name, member.role)));
        }
        member.public_key.verify(request, &approval)?;
        Ok(member)
    }

    /// Decides whether the request (canonical bytes, decoded by the caller as
    /// `decoded`) with `approvals` may run now: alive and for this
    /// organisation, allowed by the policy on `facts`, and approved enough.
    pub fn authorize(
        &self,
        request: &[u8],
        decoded: &Request,
        approvals: &[String],
        facts: &Facts,
        ledger: &dyn Ledger,
        now: u64,
    ) -> Result<Decision, Error> {
        decoded.check_alive(self.organisation, now)?;
        let decision = self.decide(&decoded.operation, facts, ledger, now)?;
        let count = self.count(request, approvals);
        decision.check(&count.approvers).map_err(|error| with_ignored(error, &count.ignored))?;
        Ok(decision)
    }

    /// The approvals `operation` needs, by the policy on `facts`. A backup
    /// export or a node replacement the policy allows needs every member who
    /// may approve, whatever the rule that matches it asks (a rule denying
    /// it, or no rule matching it, still denies it): each hands out shares.
    pub fn decide(
        &self,
        operation: &Operation,
        facts: &Facts,
        ledger: &dyn Ledger,
        now: u64,
    ) -> Result<Decision, Error> {
        let evaluated = self.policy.evaluate(facts, ledger, now);
        if !operation.needs_everyone() {
            return evaluated;
        }
        // The rule that matches must allow it (no match denies, as for every
        // request); it then needs everyone, whatever that rule asks.
        let rule_index = evaluated?.rule_index;
        let groups: Vec<Group> = self
            .members
            .iter()
            .filter(|member| member.role.may_approve())
            .map(|member| Group { count: 1, roles: Vec::new(), members: vec![member.name.clone()] })
            .collect();
        if groups.is_empty() {
            return Err(Error::Governance(format!("no member may approve a {} request", operation.kind())));
        }
        let rule = format!("every member ({})", operation.kind().replace('_', " "));
        Ok(Decision { rule_index, rule, groups, spends: Vec::new() })
    }

    /// Applies one log entry after checking it: a governance request for this
    /// organisation whose approvals satisfy this state's policy — or carry a
    /// strict majority of the owners — and whose result is a valid state.
    /// Expiry is not checked here: a node cannot tell when a change was
    /// approved, only when it first saw it (the change delay runs from then).
    pub fn apply(&mut self, entry: &LogEntry) -> Result<(), Error> {
        let bytes = entry.request.as_bytes();
        let request = Request::from_bytes(bytes)?;
        if request.organisation != self.organisation {
            return Err(Error::Governance(format!("log entry {} is for another organisation", self.entries + 1)));
        }
        if self.applied.contains(&request.id) {
            return Err(Error::Governance(format!(
                "log entry {} repeats request {}, which the log applied already: a change applies once",
                self.entries + 1,
                request.id
            )));
        }
        if !request.operation.is_governance() {
            return Err(Error::Governance(format!(
                "log entry {} is a {} request, not a governance change",
                self.entries + 1,
                request.operation.kind()
            )));
        }
        let count = self.count(bytes, &entry.approvals);
        let owners = self.members.iter().filter(|m| m.role == Role::Owner).count();
        let owners_approving = count.approvers.iter().filter(|m| m.role == Role::Owner).count();
        if owners_approving * 2 <= owners {
            let facts = Facts::operation(request.operation.kind(), None)?;
            let decision = self.policy.evaluate(&facts, &crate::NothingSpent, request.created_at)?;
            decision.check(&count.approvers).map_err(|error| with_ignored(error, &count.ignored))?;
        }
        let mut next = self.members.clone();
        let mut policy = self.policy.clone();
        change(&mut next, &mut policy, &request.operation)?;
        check_unique(&next)?;
        policy.validate(&next)?;
        self.members = next;
        self.policy = policy;
        self.head = chain(&self.head, entry);
        self.entries += 1;
        self.applied.insert(request.id);
        Ok(())
    }

    /// The state after every entry of `log`, each checked.
    pub fn replay(genesis: &Genesis, log: &[LogEntry]) -> Result<Self, Error> {
        let mut state = State::genesis(genesis)?;
        for entry in log {
            state.apply(entry)?;
        }
        Ok(state)
    }
}

/// The next head of the hash chain after `entry`.
fn chain(head: &[u8; 32], entry: &LogEntry) -> [u8; 32] {
    let length = |n: usize| u64::try_from(n).unwrap_or(u64::MAX).to_be_bytes();
    let mut hash =
        Sha256::new().chain_update(head).chain_update(length(entry.request.len())).chain_update(&entry.request);
    hash.update(length(entry.approvals.len()));
    for approval in &entry.approvals {
        hash.update(length(approval.len()));
        hash.update(approval);
    }
    hash.finalize().into()
}

fn change(members: &mut Vec<Member>, policy: &mut Policy, operation: &Operation) -> Result<(), Error> {
    match operation {
        Operation::AddMember { name, role, public_key } => {
            members.push(Member { name: name.clone(), role: *role, public_key: public_key.clone() });
        }
        Operation::RemoveMember { name } => {
            let before = members.len();
            members.retain(|m| &m.name != name);
            if members.len() == before {
                return Err(Error::Governance(format!("there is no member {name} to remove")));
            }
            if !members.iter().any(|m| m.role == Role::Owner) {
                return Err(Error::Governance(format!(
                    "removing {name} would leave the organisation without an owner"
                )));
            }
        }
        Operation::SetPolicy { policy: next } => *policy = next.clone(),
        _ => return Err(Error::Governance(format!("a {} request does not change governance", operation.kind()))),
    }
    Ok(())
}

/// Refuses two members with one name or one key.
pub(crate) fn check_unique(members: &[Member]) -> Result<(), Error> {
    let mut names = BTreeSet::new();
    let mut keys = BTreeSet::new();
    for member in members {
        if !names.insert(member.name.as_str()) {
            return Err(Error::Governance(format!("there is already a member named {}", member.name)));
        }
        if !keys.insert(member.public_key.ed25519_bytes()) {
            return Err(Error::Governance(format!(
                "the key {} already belongs to a member",
                member.public_key.fingerprint()
            )));
        }
    }
    Ok(())
}

fn with_ignored(error: Error, ignored: &[String]) -> Error {
    if ignored.is_empty() {
        return error;
    }
    Error::Governance(format!("{error}; not counted: {}", ignored.join("; ")))
}

/// SHA-256 of a request's canonical bytes, hex (how logs and the API name it).
pub fn request_hash_hex(request: &[u8]) -> String {
    hex::encode(sha256(request))
}
