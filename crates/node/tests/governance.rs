//! Every node enforces governance itself (docs/GOVERNANCE.md, "What the nodes
//! check, per job"). The coordinator is the attacker here: it relays jobs
//! with requests, approvals and governance logs of its choosing. Each attack
//! must be refused by every participant with a reason naming it, and leave
//! nothing in any node's sign log.

use std::collections::BTreeMap;

use shardvault_chains::MessageFormat;
use shardvault_governance::{
    Action, Conditions, Group, Identity, LogEntry, Operation, Policy, Request, Role, Rule, Spend,
};
use shardvault_harness::{identity, one_owner_or_admin, operation_of, Nodes, Organisation};
use shardvault_mpc::{Epoch, KeyId, PartyId, Scheme, SessionId, Threshold};
use shardvault_node::{SignIntent, Spending};
use shardvault_wire::{Job, JobKind, NodeId, Outcome, SignPayload};

const PATH: &str = "m/1'";

fn participants(nodes: &[u16]) -> BTreeMap<PartyId, NodeId> {
    nodes.iter().map(|n| (PartyId::new(u8::try_from(*n).unwrap()).unwrap(), NodeId(*n))).collect()
}

fn unapproved(key_id: KeyId, nodes: &[u16], kind: JobKind) -> Job {
    Job { session: SessionId::random(), key_id, participants: participants(nodes), kind, governance: None }
}

fn message(text: &str) -> SignPayload {
    SignPayload::Message { message: text.as_bytes().to_vec(), format: MessageFormat::SolanaOffchain }
}

fn sign_kind(payload: SignPayload) -> JobKind {
    JobKind::Sign { epoch: Epoch(0), path: PATH.parse().unwrap(), payload }
}

/// Three nodes governed by `organisation`, with an Ed25519 key created and
/// `m/1'` derived on them (both approved by the owner): a sign job at `m/1'`
/// with an approved request is signed (see [`Fixture::signed`]).
struct Fixture {
    c: Nodes,
    key_id: KeyId,
}

impl Fixture {
    fn new(organisation: Organisation) -> Self {
        let mut c = Nodes::with_organisation(3, organisation);
        let key_id = KeyId::random();
        let create = JobKind::CreateKey { scheme: Scheme::EddsaEd25519, threshold: Threshold::new(2, 3).unwrap() };
        let created = c.run(c.approve(unapproved(key_id, &[1, 2, 3], create)));
        assert!(created.values().all(Result::is_ok), "{created:?}");
        let derive = JobKind::DeriveHardened { path: PATH.parse().unwrap() };
        let derived = c.run(c.approve(unapproved(key_id, &[1, 2, 3], derive)));
        assert!(derived.values().all(Result::is_ok), "{derived:?}");
        Fixture { c, key_id }
    }

    fn shared() -> Self {
        Self::new(Organisation::shared().clone())
    }

    fn organisation(&self) -> &Organisation {
        &self.c.organisation
    }

    /// A sign job for `text` on nodes 1 and 2, carrying no request.
    fn sign_job(&self, text: &str) -> Job {
        unapproved(self.key_id, &[1, 2], sign_kind(message(text)))
    }

    /// The request for exactly what `job` does, created now.
    fn request(&self, job: &Job) -> Request {
        self.organisation().request(operation_of(job).unwrap(), self.c.now())
    }

    /// `job` carrying `request` approved by `approvers`, with `log`.
    fn carrying(mut job: Job, request: &Request, approvers: &[&Identity], log: Vec<LogEntry>) -> Job {
        job.governance = Some(Organisation::governed(request, approvers, log));
        job
    }

    /// `job` approved for exactly what it does by `approvers`, with `log`.
    fn approved_by(&self, job: Job, approvers: &[&Identity], log: Vec<LogEntry>) -> Job {
        let request = self.request(&job);
        Self::carrying(job, &request, approvers, log)
    }

    fn signed_entries(&self) -> usize {
        self.c.nodes.values().map(|n| n.store().sign_log().unwrap().len()).sum()
    }

    /// Every participant refuses `job` naming `expected`; no sign log grows.
    #[track_caller]
    fn refused(&mut self, job: Job, expected: &str) {
        let logged = self.signed_entries();
        let participants = job.nodes();
        let results = self.c.run(job);
        assert_eq!(results.len(), participants.len(), "{results:?}");
        for (node, result) in &results {
            let reason = result.as_ref().err().unwrap_or_else(|| panic!("node {node} did not refuse: {result:?}"));
            assert!(reason.contains("governance"), "node {node}: {reason}");
            assert!(reason.contains(expected), "node {node}: expected {expected:?} in {reason:?}");
        }
        assert_eq!(self.signed_entries(), logged, "a refused job reached a sign log");
    }

    /// Every participant signs `job`, and logs it.
    #[track_caller]
    fn signed(&mut self, job: Job) {
        let logged = self.signed_entries();
        let signers = job.nodes().len();
        let results = self.c.run(job);
        assert!(results.values().all(|r| matches!(r, Ok(Outcome::Signed { .. }))), "{results:?}");
        assert_eq!(self.signed_entries(), logged + signers);
    }

    /// A governance change approved by the first owner.
    fn change(&self, operation: Operation) -> LogEntry {
        let owner = self.organisation().owner.clone();
        self.organisation().change(operation, &[&owner], self.c.now())
    }

    fn stored_log(&self, node: u16) -> usize {
        self.c.nodes[&NodeId(node)].store().governance_log().unwrap().len()
    }
}

fn add_member(name: &str, role: Role, key: &Identity) -> Operation {
    Operation::AddMember { name: name.parse().unwrap(), role, public_key: key.member_key().unwrap() }
}

#[test]
fn the_owners_approval_signs_and_the_control_for_every_attack_here_passes() {
    let mut f = Fixture::shared();
    let job = f.sign_job("approved");
    let owner = f.organisation().owner.clone();
    f.signed(f.approved_by(job, &[&owner], Vec::new()));
}

// (a) The coordinator swaps what is done under gathered approvals.

#[test]
fn a_payload_swapped_under_gathered_approvals_is_refused() {
    let mut f = Fixture::shared();
    let owner = f.organisation().owner.clone();
    let approved = f.request(&f.sign_job("pay alice"));
    // Another message.
    let swapped = Fixture::carrying(f.sign_job("pay mallory"), &approved, &[&owner], Vec::new());
    f.refused(swapped, "the job's payload is not the one the request names");
    // Another transaction: the approved bytes are not the job's.
    let tx = |byte: u8| SignPayload::EvmTransaction { preimage: vec![0x02, 0xc0, byte], chain_id: 1 };
    let approved_tx = f.request(&unapproved(f.key_id, &[1, 2], sign_kind(tx(1))));
    let swapped =
        Fixture::carrying(unapproved(f.key_id, &[1, 2], sign_kind(tx(2))), &approved_tx, &[&owner], Vec::new());
    f.refused(swapped, "the job's payload is not the one the request names");
    // The same message at another path, with another key, or as another operation.
    let other_path = JobKind::Sign { epoch: Epoch(0), path: "m/2'".parse().unwrap(), payload: message("pay alice") };
    f.refused(
        Fixture::carrying(unapproved(f.key_id, &[1, 2], other_path), &approved, &[&owner], Vec::new()),
        "signs at m/2'",
    );
    let other_key = unapproved(KeyId::random(), &[1, 2], sign_kind(message("pay alice")));
    f.refused(Fixture::carrying(other_key, &approved, &[&owner], Vec::new()), "but the request for key");
    let refresh = unapproved(f.key_id, &[1, 2, 3], JobKind::Refresh { from: Epoch(0), to: Epoch(1) });
    f.refused(
        Fixture::carrying(refresh, &approved, &[&owner], Vec::new()),
        "the job is a refresh job but the request asks for sign",
    );
    // A key generation approved as 3-of-3 run as 2-of-3.
    let key_id = KeyId::random();
    let create = |t| JobKind::CreateKey { scheme: Scheme::EddsaEd25519, threshold: Threshold::new(t, 3).unwrap() };
    let approved_create = f.request(&unapproved(key_id, &[1, 2, 3], create(3)));
    let weaker = Fixture::carrying(unapproved(key_id, &[1, 2, 3], create(2)), &approved_create, &[&owner], Vec::new());
    f.refused(weaker, "2-of-3 key but the request asks for a");
    assert!(f.c.nodes.values().all(|n| !n.store().knows_key(key_id).unwrap()));
}

// (b) Approvals that must not count.

#[test]
fn an_approval_by_a_key_that_is_not_a_members_is_refused() {
    let mut f = Fixture::shared();
    let stranger = identity("stranger@example");
    let job = f.approved_by(f.sign_job("hello"), &[&stranger], Vec::new());
    f.refused(job, "is not a member's key");
}

#[test]
fn an_approval_by_a_removed_member_counts_for_nothing() {
    let mut f = Fixture::shared();
    let bob = identity("bob@example");
    let added = f.change(add_member("bob", Role::Admin, &bob));
    // Control: while bob is an admin, his approval signs.
    f.signed(f.approved_by(f.sign_job("while bob is an admin"), &[&bob], vec![added.clone()]));
    let removed = f.change(Operation::RemoveMember { name: "bob".parse().unwrap() });
    let log = vec![added.clone(), removed];
    f.refused(f.approved_by(f.sign_job("after bob left"), &[&bob], log), "is not a member's key");
    // A coordinator that hides the removal (a shorter log) changes nothing:
    // the nodes evaluate under their own, longer log.
    f.refused(f.approved_by(f.sign_job("after bob left"), &[&bob], vec![added]), "is not a member's key");
    f.refused(f.approved_by(f.sign_job("after bob left"), &[&bob], Vec::new()), "is not a member's key");
}

#[test]
fn an_approval_of_another_request_is_not_an_approval_of_this_one() {
    let mut f = Fixture::shared();
    let owner = f.organisation().owner.clone();
    let other = f.approved_by(f.sign_job("something the owner approved"), &[&owner], Vec::new());
    let replayed = other.governance.unwrap().approvals;
    let mut job = f.approved_by(f.sign_job("something else"), &[], Vec::new());
    job.governance.as_mut().unwrap().approvals = replayed;
    f.refused(job, "does not verify");
}

/// Two owners; every operation needs two approvals by owners.
fn two_owner_organisation() -> Organisation {
    let group = Group { count: 2, roles: vec![Role::Owner], members: Vec::new() };
    let policy = Policy {
        rules: vec![Rule {
            name: "two owners".into(),
            when: Conditions::default(),
            action: Action::Require(vec![group]),
        }],
        ..one_owner_or_admin()
    };
    Organisation::with_owners("two-owners", policy, 2)
}

#[test]
fn one_members_approval_twice_is_one_approval() {
    let organisation = two_owner_organisation();
    let (first, second) = (organisation.owners[0].clone(), organisation.owners[1].clone());
    // Setting up needs two owners' approvals; Fixture::new approves with the first only.
    let mut c = Nodes::with_organisation(3, organisation);
    let key_id = KeyId::random();
    let create = JobKind::CreateKey { scheme: Scheme::EddsaEd25519, threshold: Threshold::new(2, 3).unwrap() };
    let derive = JobKind::DeriveHardened { path: PATH.parse().unwrap() };
    for kind in [create, derive] {
        let job = unapproved(key_id, &[1, 2, 3], kind);
        let request = c.organisation.request(operation_of(&job).unwrap(), c.now());
        let results = c.run(Fixture::carrying(job, &request, &[&first, &second], Vec::new()));
        assert!(results.values().all(Result::is_ok), "{results:?}");
    }
    let mut f = Fixture { c, key_id };
    f.refused(f.approved_by(f.sign_job("twice"), &[&first, &first], Vec::new()), "a second one by owner");
    f.refused(f.approved_by(f.sign_job("once"), &[&first], Vec::new()), "1 more approval(s) from role owner");
    f.signed(f.approved_by(f.sign_job("two owners"), &[&first, &second], Vec::new()));
}

/// The armored approval with one character of its signature changed.
fn forged(armored: &str) -> String {
    let mut lines: Vec<String> = armored.lines().map(str::to_string).collect();
    // The last base64 line holds the end of the blob: the Ed25519 signature.
    let last = lines.iter().rposition(|l| !l.starts_with("-----")).unwrap();
    let mut chars: Vec<char> = lines[last].chars().collect();
    chars[10] = if chars[10] == 'A' { 'B' } else { 'A' };
    lines[last] = chars.into_iter().collect();
    lines.join("\n") + "\n"
}

#[test]
fn a_forged_approval_is_refused() {
    let mut f = Fixture::shared();
    let owner = f.organisation().owner.clone();
    let mut job = f.approved_by(f.sign_job("forged"), &[&owner], Vec::new());
    let governed = job.governance.as_mut().unwrap();
    governed.approvals[0] = forged(&governed.approvals[0]);
    f.refused(job, "does not verify");
}

// (c) No governance at all.

#[test]
fn a_job_without_an_approved_request_is_refused_for_every_state_changing_kind() {
    let mut f = Fixture::shared();
    let key_id = KeyId::random();
    let create = JobKind::CreateKey { scheme: Scheme::EddsaEd25519, threshold: Threshold::new(2, 3).unwrap() };
    f.refused(unapproved(key_id, &[1, 2, 3], create), "a create-key job must carry its approved request");
    assert!(f.c.nodes.values().all(|n| !n.store().knows_key(key_id).unwrap()));
    let derive = JobKind::DeriveHardened { path: "m/3'".parse().unwrap() };
    f.refused(unapproved(f.key_id, &[1, 2, 3], derive), "a derive job must carry");
    f.refused(f.sign_job("no request"), "a sign job must carry");
    let refresh = JobKind::Refresh { from: Epoch(0), to: Epoch(1) };
    f.refused(unapproved(f.key_id, &[1, 2, 3], refresh), "a refresh job must carry");
    assert!(f.c.nodes.values().all(|n| n.store().latest_epoch(f.key_id).unwrap() == Some(Epoch(0))));
}

// (d) Requests a node must not accept whatever their approvals.

#[test]
fn an_expired_request_is_refused() {
    let mut f = Fixture::shared();
    let owner = f.organisation().owner.clone();
    let job = f.approved_by(f.sign_job("yesterday's"), &[&owner], Vec::new());
    f.c.advance(shardvault_governance::DEFAULT_LIFETIME_SECS);
    f.refused(job, "expired");
}

#[test]
fn a_request_from_the_future_is_refused() {
    let mut f = Fixture::shared();
    let owner = f.organisation().owner.clone();
    let job = f.sign_job("tomorrow's");
    let request = f.organisation().request(operation_of(&job).unwrap(), f.c.now() + 3600);
    f.refused(Fixture::carrying(job, &request, &[&owner], Vec::new()), "check the clocks");
}

#[test]
fn a_request_for_another_organisation_is_refused() {
    let mut f = Fixture::shared();
    let other = Organisation::new("other", one_owner_or_admin());
    let job = f.sign_job("for the other organisation");
    let request = other.request(operation_of(&job).unwrap(), f.c.now());
    // Approved by the other organisation's owner, and by ours.
    let owner = f.organisation().owner.clone();
    let job = Fixture::carrying(job, &request, &[&other.owner, &owner], Vec::new());
    f.refused(job, "is for organisation");
}

#[test]
fn a_request_not_in_canonical_form_is_refused() {
    let mut f = Fixture::shared();
    let owner = f.organisation().owner.clone();
    let mut job = f.approved_by(f.sign_job("reformatted"), &[&owner], Vec::new());
    let governed = job.governance.as_mut().unwrap();
    // The same request with a space: the approval verifies over these bytes.
    governed.request = governed.request.replacen(",", ", ", 1);
    governed.approvals = Organisation::approvals(governed.request.as_bytes(), &[&owner]);
    f.refused(job, "not in canonical form");
}

// (e) Governance logs a node must not accept.

#[test]
fn a_log_that_diverges_from_the_stored_one_is_refused() {
    let mut f = Fixture::shared();
    let owner = f.organisation().owner.clone();
    let bob = identity("bob@example");
    let carol = identity("carol@example");
    let with_bob = vec![f.change(add_member("bob", Role::Admin, &bob))];
    f.signed(f.approved_by(f.sign_job("bob joins"), &[&owner], with_bob));
    assert_eq!(f.stored_log(1), 1);
    // Entry 1 rewritten: carol in bob's place (validly approved, but not history).
    let rewritten = vec![f.change(add_member("carol", Role::Admin, &carol))];
    f.refused(f.approved_by(f.sign_job("carol instead"), &[&carol], rewritten), "governance log diverges at entry 1");
    assert_eq!(f.stored_log(1), 1);
    // After a restart too: the log is stored.
    f.c.restart();
    let rewritten = vec![f.change(add_member("carol", Role::Admin, &carol))];
    f.refused(f.approved_by(f.sign_job("carol instead"), &[&owner], rewritten), "governance log diverges at entry 1");
}

#[test]
fn a_log_entry_without_enough_approvals_is_refused_and_not_stored() {
    let mut f = Fixture::shared();
    let mallory = identity("mallory@example");
    let owner = f.organisation().owner.clone();
    let operation = add_member("mallory", Role::Owner, &mallory);
    // Mallory approves her own admission: she is no member yet.
    let entry = f.organisation().change(operation.clone(), &[&mallory], f.c.now());
    f.refused(f.approved_by(f.sign_job("mallory's"), &[&mallory], vec![entry]), "governance log entry 1 is not valid");
    // No approvals at all.
    let entry = f.organisation().change(operation, &[], f.c.now());
    f.refused(f.approved_by(f.sign_job("mallory's"), &[&owner], vec![entry]), "governance log entry 1 is not valid");
    assert!((1..=3).all(|n| f.stored_log(n) == 0));
    // A log entry that is not a governance change.
    let sign = f.request(&f.sign_job("not a change"));
    let entry = LogEntry {
        request: String::from_utf8(sign.to_bytes().unwrap()).unwrap(),
        approvals: Organisation::approvals(&sign.to_bytes().unwrap(), &[&owner]),
    };
    f.refused(f.approved_by(f.sign_job("x"), &[&owner], vec![entry]), "not a governance change");
}

#[test]
fn a_member_or_policy_edit_outside_the_log_grants_nothing() {
    let mut f = Fixture::shared();
    // The coordinator's database says mallory is an admin; no log entry does.
    let mallory = identity("mallory@example");
    f.refused(f.approved_by(f.sign_job("mallory's"), &[&mallory], Vec::new()), "is not a member's key");
    // Someone edits a node's stored log directly: a forged entry is refused.
    let entry = f.organisation().change(add_member("mallory", Role::Owner, &mallory), &[&mallory], f.c.now());
    for node in [1u16, 2] {
        let db = rusqlite::Connection::open(&f.c.paths[&NodeId(node)]).unwrap();
        db.execute(
            "INSERT INTO governance_log (position, entry, first_seen, mac) VALUES (1, ?1, 0, x'00')",
            [serde_json::to_string(&entry).unwrap()],
        )
        .unwrap();
    }
    f.refused(f.approved_by(f.sign_job("mallory's"), &[&mallory], vec![entry]), "entry 1 was altered or removed");
}

#[test]
fn a_stored_log_entry_removed_or_its_first_seen_moved_is_refused() {
    let delayed = Policy { change_delay_secs: 3600, ..one_owner_or_admin() };
    let mut f = Fixture::new(Organisation::new("delayed", delayed));
    let owner = f.organisation().owner.clone();
    let bob = identity("bob@example");
    let added = f.change(add_member("bob", Role::Admin, &bob));
    f.c.advance(3600);
    f.signed(f.approved_by(f.sign_job("bob waits"), &[&owner], vec![added.clone()]));
    f.c.advance(3600);
    f.signed(f.approved_by(f.sign_job("bob's"), &[&bob], vec![added.clone()]));
    let removed = f.change(Operation::RemoveMember { name: "bob".parse().unwrap() });
    f.signed(f.approved_by(f.sign_job("bob leaves"), &[&owner], vec![added.clone(), removed]));
    f.c.advance(3600);
    f.refused(f.approved_by(f.sign_job("bob, removed"), &[&bob], vec![added.clone()]), "is not a member's key");
    let db = |node: u16| rusqlite::Connection::open(&f.c.paths[&NodeId(node)]).unwrap();
    // On node 1 the removal is deleted; on node 2 it is dated into the
    // future, so its delay has not passed: either way bob would be back.
    db(1).execute("DELETE FROM governance_log WHERE position = 2", []).unwrap();
    db(2).execute("UPDATE governance_log SET first_seen = first_seen + 100000 WHERE position = 2", []).unwrap();
    let job = f.approved_by(f.sign_job("bob again"), &[&bob], vec![added]);
    f.refused(job, "entry 2 was altered or removed");
}

// (f) Change delays.

#[test]
fn a_governance_change_waits_out_the_change_delay_on_each_node() {
    let delayed = Policy { change_delay_secs: 3600, ..one_owner_or_admin() };
    let mut f = Fixture::new(Organisation::new("delayed", delayed));
    let bob = identity("bob@example");
    let added = vec![f.change(add_member("bob", Role::Admin, &bob))];
    f.refused(f.approved_by(f.sign_job("bob, at once"), &[&bob], added.clone()), "is not a member's key");
    assert_eq!(f.stored_log(1), 1, "the entry is stored (first seen now) while it waits");
    f.c.advance(3599);
    f.refused(f.approved_by(f.sign_job("bob, not yet"), &[&bob], added.clone()), "is not a member's key");
    f.c.advance(1);
    f.signed(f.approved_by(f.sign_job("bob, an hour later"), &[&bob], added));
}

#[test]
fn a_node_that_sees_a_change_later_starts_its_delay_later() {
    let delayed = Policy { change_delay_secs: 3600, ..one_owner_or_admin() };
    let mut f = Fixture::new(Organisation::new("delayed", delayed));
    let bob = identity("bob@example");
    let added = vec![f.change(add_member("bob", Role::Admin, &bob))];
    let owner = f.organisation().owner.clone();
    // Node 1 sees the change now (in a job it signs with node 2).
    f.signed(f.approved_by(f.sign_job("owner's"), &[&owner], added.clone()));
    assert_eq!((f.stored_log(1), f.stored_log(3)), (1, 0));
    f.c.advance(3600);
    // Node 3 sees it only now: for it the hour starts now, so it refuses bob.
    let job = f.approved_by(unapproved(f.key_id, &[1, 3], sign_kind(message("bob's"))), &[&bob], added);
    let results = f.c.run_or_abort(job);
    let reason = results[&NodeId(3)].as_ref().unwrap_err();
    assert!(reason.contains("is not a member's key"), "{reason}");
    assert_eq!(f.c.nodes[&NodeId(3)].store().sign_log().unwrap().len(), 0);
}

// The spend ledger.

fn spend(amount: u128) -> Spend {
    Spend {
        key_id: "k".into(),
        chain: shardvault_chains::Chain::Ethereum,
        asset: shardvault_governance::Asset::Native,
        amount,
    }
}

#[test]
fn a_request_is_counted_once_in_the_spend_ledger_with_its_intent() {
    use shardvault_governance::{Asset, Ledger};
    let f = Fixture::shared();
    let store = f.c.nodes[&NodeId(1)].store();
    let signers = participants(&[1, 2]);
    let intent = |session| SignIntent {
        key_id: f.key_id,
        path: PATH,
        signed: b"x",
        request: b"job",
        session,
        signers: &signers,
    };
    let request = [7u8; 32];
    let spends = [spend(40), spend(2)];
    let spending = Spending { request, at: 1000, spends: &spends };
    store.log_intent_spending(&intent(SessionId::random()), &spending).unwrap();
    // A retry of the same request (another job, e.g. the PSBT's next input) adds nothing.
    store.log_intent_spending(&intent(SessionId::random()), &spending).unwrap();
    let recorded = store.spends_of(&request).unwrap();
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert_eq!((recorded[0].0.amount, recorded[0].1), (42, 1000));
    assert_eq!(store.sign_log().unwrap().len(), 2);
    let eth = shardvault_chains::Chain::Ethereum;
    assert_eq!(store.ledger([0; 32]).spent("k", eth, &Asset::Native, 1000).unwrap(), 42);
    assert_eq!(store.ledger([0; 32]).spent("k", eth, &Asset::Native, 1001).unwrap(), 0, "outside the window");
    assert_eq!(store.ledger(request).spent("k", eth, &Asset::Native, 0).unwrap(), 0, "a request's own spends");
    assert_eq!(store.ledger([0; 32]).spent("k", eth, &Asset::Token("0xt".into()), 0).unwrap(), 0);
    // A second request adds up.
    let other = Spending { request: [8; 32], at: 1001, spends: &spends[..1] };
    store.log_intent_spending(&intent(SessionId::random()), &other).unwrap();
    assert_eq!(store.ledger([0; 32]).spent("k", eth, &Asset::Native, 0).unwrap(), 82);
}

#[test]
fn a_spend_is_not_recorded_when_its_intent_is_not() {
    let f = Fixture::shared();
    let store = f.c.nodes[&NodeId(1)].store();
    let db = rusqlite::Connection::open(&f.c.paths[&NodeId(1)]).unwrap();
    db.execute_batch("CREATE TRIGGER full BEFORE INSERT ON sign_log BEGIN SELECT RAISE(FAIL, 'disk full'); END;")
        .unwrap();
    let signers = participants(&[1, 2]);
    let intent = SignIntent {
        key_id: f.key_id,
        path: PATH,
        signed: b"x",
        request: b"job",
        session: SessionId::random(),
        signers: &signers,
    };
    let spends = [spend(5)];
    let spending = Spending { request: [9; 32], at: 1, spends: &spends };
    assert!(store.log_intent_spending(&intent, &spending).is_err());
    assert!(store.spends_of(&[9; 32]).unwrap().is_empty());
}

#[test]
fn a_node_signs_the_head_of_its_sign_log_with_its_identity() {
    let mut f = Fixture::shared();
    let owner = f.organisation().owner.clone();
    let (before, _) = f.c.nodes[&NodeId(1)].signed_sign_log_head().unwrap();
    f.signed(f.approved_by(f.sign_job("logged"), &[&owner], Vec::new()));
    let (head, signature) = f.c.nodes[&NodeId(1)].signed_sign_log_head().unwrap();
    assert!(head.seq > before.seq && head.hash != before.hash);
    let identity = f.c.cluster.identity_of(NodeId(1)).unwrap();
    identity.verify(shardvault_node::SIGN_LOG_HEAD_DOMAIN, &head.statement(), &signature).unwrap();
    assert!(identity.verify(shardvault_node::SIGN_LOG_HEAD_DOMAIN, &before.statement(), &signature).is_err());
}
