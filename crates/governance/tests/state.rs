//! The governance state a node replays: who counts as an approver, which
//! log entries are valid, and which request bytes decode. Each test is an
//! attack a lying coordinator could try.

use shardvault_governance::{
    Genesis, Identity, LogEntry, Member, Operation, OrganisationId, Owner, Payload, Policy, Request, Role, State,
};
use shardvault_types::{DerivationPath, KeyId};

const NOW: u64 = 1_767_225_600;

fn identity(comment: &str) -> Identity {
    Identity::generate(comment).unwrap()
}

fn owner(name: &str, identity: &Identity) -> Owner {
    Owner { name: name.parse().unwrap(), public_key: identity.member_key().unwrap() }
}

fn genesis(owners: &[(&str, &Identity)]) -> Genesis {
    Genesis::new("acme", owners.iter().map(|(n, i)| owner(n, i)).collect(), NOW).unwrap()
}

fn request(org: OrganisationId, creator: &Identity, operation: Operation) -> (Request, Vec<u8>) {
    let request = Request::new(org, &creator.member_key().unwrap(), operation, NOW, 3600).unwrap();
    let bytes = request.to_bytes().unwrap();
    (request, bytes)
}

fn approve(identity: &Identity, bytes: &[u8]) -> String {
    identity.approve(bytes).unwrap().to_armored().unwrap()
}

fn entry(org: OrganisationId, creator: &Identity, operation: Operation, approvers: &[&Identity]) -> LogEntry {
    let (_, bytes) = request(org, creator, operation);
    LogEntry {
        approvals: approvers.iter().map(|a| approve(a, &bytes)).collect(),
        request: String::from_utf8(bytes).unwrap(),
    }
}

fn add(name: &str, role: Role, who: &Identity) -> Operation {
    Operation::AddMember { name: name.parse().unwrap(), role, public_key: who.member_key().unwrap() }
}

fn sign_request(org: OrganisationId, creator: &Identity) -> (Request, Vec<u8>) {
    let payload = Payload::Message { format: shardvault_chains::MessageFormat::Eip191, message: b"hi".to_vec() };
    let path: DerivationPath = "m/9'/0'/60'/0'/0'/0'".parse().unwrap();
    request(org, creator, Operation::Sign { key_id: KeyId::random(), path, payload })
}

#[test]
fn only_current_members_approvals_count_once_each_and_only_for_their_request() {
    let (alice, mallory) = (identity("alice"), identity("mallory"));
    let state = State::genesis(&genesis(&[("alice", &alice)])).unwrap();
    let org = state.organisation();
    let (_, bytes) = sign_request(org, &alice);
    let (_, other) = sign_request(org, &alice);
    let mut forged = approve(&alice, &bytes).into_bytes();
    let middle = forged.len() / 2;
    forged[middle] = if forged[middle] == b'A' { b'B' } else { b'A' };
    let approvals = vec![
        approve(&mallory, &bytes),          // not a member
        approve(&alice, &other),            // another request's approval
        String::from_utf8(forged).unwrap(), // tampered
        approve(&alice, &bytes),            // counts
        approve(&alice, &bytes),            // the same member again
    ];
    let count = state.count(&bytes, &approvals);
    let names: Vec<&str> = count.approvers.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["alice"]);
    assert_eq!(count.ignored.len(), 4, "{:?}", count.ignored);
    assert!(count.ignored[0].contains("not a member"), "{:?}", count.ignored);
    assert!(count.ignored[3].contains("second one by alice"), "{:?}", count.ignored);
}

#[test]
fn a_removed_member_no_longer_approves_and_a_viewer_never_does() {
    let (alice, bob, vera) = (identity("alice"), identity("bob"), identity("vera"));
    let mut state = State::genesis(&genesis(&[("alice", &alice)])).unwrap();
    let org = state.organisation();
    state.apply(&entry(org, &alice, add("bob", Role::Admin, &bob), &[&alice])).unwrap();
    state.apply(&entry(org, &alice, add("vera", Role::Viewer, &vera), &[&alice])).unwrap();
    let (_, bytes) = sign_request(org, &alice);
    assert_eq!(state.count(&bytes, &[approve(&bob, &bytes)]).approvers.len(), 1);
    let viewer = state.count(&bytes, &[approve(&vera, &bytes)]);
    assert!(viewer.approvers.is_empty() && viewer.ignored[0].contains("viewer"), "{:?}", viewer.ignored);
    state.apply(&entry(org, &alice, Operation::RemoveMember { name: "bob".parse().unwrap() }, &[&alice])).unwrap();
    let removed = state.count(&bytes, &[approve(&bob, &bytes)]);
    assert!(removed.approvers.is_empty() && removed.ignored[0].contains("not a member"), "{:?}", removed.ignored);
}

#[test]
fn a_log_entry_needs_the_approvals_of_the_state_before_it() {
    let (alice, bob, mallory) = (identity("alice"), identity("bob"), identity("mallory"));
    let mut state = State::genesis(&genesis(&[("alice", &alice), ("bob", &bob)])).unwrap();
    let org = state.organisation();
    // The new member approving their own admission.
    let self_approved = entry(org, &mallory, add("mallory", Role::Owner, &mallory), &[&mallory]);
    assert!(state.apply(&self_approved).is_err());
    // No approvals at all; an approval of other bytes.
    assert!(state.apply(&entry(org, &alice, add("mallory", Role::Owner, &mallory), &[])).is_err());
    let mut swapped = entry(org, &alice, add("mallory", Role::Owner, &mallory), &[&alice]);
    swapped.request = entry(org, &alice, add("eve", Role::Owner, &mallory), &[]).request;
    assert!(state.apply(&swapped).is_err());
    // A signing request is not a governance change, however approved.
    let (_, bytes) = sign_request(org, &alice);
    let not_governance =
        LogEntry { approvals: vec![approve(&alice, &bytes)], request: String::from_utf8(bytes).unwrap() };
    assert!(state.apply(&not_governance).unwrap_err().to_string().contains("not a governance change"));
    // Nothing changed, and the head did not move.
    assert_eq!(state.entries(), 0);
    assert_eq!(state.members().len(), 2);
}

#[test]
fn a_change_for_another_organisation_or_in_another_encoding_is_refused() {
    let (alice, bob) = (identity("alice"), identity("bob"));
    let mut state = State::genesis(&genesis(&[("alice", &alice)])).unwrap();
    let elsewhere = State::genesis(&genesis(&[("alice", &alice), ("bob", &bob)])).unwrap().organisation();
    assert!(state.apply(&entry(elsewhere, &alice, add("bob", Role::Admin, &bob), &[&alice])).is_err());
    let mut spaced = entry(state.organisation(), &alice, add("bob", Role::Admin, &bob), &[]);
    spaced.request = spaced.request.replacen(",", ", ", 1);
    spaced.approvals = vec![approve(&alice, spaced.request.as_bytes())];
    assert!(state.apply(&spaced).unwrap_err().to_string().contains("canonical"));
}

#[test]
fn a_majority_of_owners_recovers_from_a_policy_nobody_can_satisfy_any_more() {
    let (a, b, c, d) = (identity("a"), identity("b"), identity("c"), identity("d"));
    let mut state = State::genesis(&genesis(&[("a", &a), ("b", &b), ("c", &c)])).unwrap();
    let org = state.organisation();
    // A policy that denies every change.
    let mut locked = Policy::default_for_new_organisation();
    locked.rules = vec![shardvault_governance::Rule {
        name: "frozen".into(),
        when: shardvault_governance::Conditions::default(),
        action: shardvault_governance::Action::Deny,
    }];
    state.apply(&entry(org, &a, Operation::SetPolicy { policy: locked }, &[&a])).unwrap();
    // One owner of three cannot change anything now; two of three can.
    assert!(state.apply(&entry(org, &a, add("d", Role::Admin, &d), &[&a])).is_err());
    state.apply(&entry(org, &a, add("d", Role::Admin, &d), &[&a, &b])).unwrap();
    assert!(state.members().iter().any(|m: &Member| m.name.as_str() == "d"));
}

#[test]
fn the_last_owner_cannot_be_removed_and_names_and_keys_stay_unique() {
    let (alice, bob) = (identity("alice"), identity("bob"));
    let mut state = State::genesis(&genesis(&[("alice", &alice)])).unwrap();
    let org = state.organisation();
    let remove = Operation::RemoveMember { name: "alice".parse().unwrap() };
    assert!(state.apply(&entry(org, &alice, remove, &[&alice])).unwrap_err().to_string().contains("without an owner"));
    assert!(state.apply(&entry(org, &alice, add("alice", Role::Admin, &bob), &[&alice])).is_err());
    assert!(state.apply(&entry(org, &alice, add("alias", Role::Admin, &alice), &[&alice])).is_err());
}

#[test]
fn the_head_chains_every_entry_and_replay_gives_the_same_state() {
    let (alice, bob) = (identity("alice"), identity("bob"));
    let genesis = genesis(&[("alice", &alice)]);
    let mut state = State::genesis(&genesis).unwrap();
    let start = state.head();
    let change = entry(state.organisation(), &alice, add("bob", Role::Member, &bob), &[&alice]);
    state.apply(&change).unwrap();
    assert_ne!(state.head(), start);
    let replayed = State::replay(&genesis, std::slice::from_ref(&change)).unwrap();
    assert_eq!(replayed.head(), state.head());
    assert_eq!(replayed.members(), state.members());
}

#[test]
fn expired_requests_and_requests_from_the_future_are_refused() {
    let alice = identity("alice");
    let state = State::genesis(&genesis(&[("alice", &alice)])).unwrap();
    let (request, _) = sign_request(state.organisation(), &alice);
    assert!(request.check_alive(state.organisation(), NOW + 10).is_ok());
    assert!(request.check_alive(state.organisation(), NOW + 3600).unwrap_err().to_string().contains("expired"));
    assert!(request.check_alive(state.organisation(), NOW - 301).is_err());
    let other = OrganisationId([7; 32]);
    assert!(request.check_alive(other, NOW + 10).is_err());
}

/// The review's attack: the coordinator appends a byte-identical copy of an
/// old entry (re-admitting a removed member). A request applies once.
#[test]
fn an_old_log_entry_appended_again_is_refused() {
    let (alice, mallory) = (identity("alice"), identity("mallory"));
    let mut state = State::genesis(&genesis(&[("alice", &alice)])).unwrap();
    let org = state.organisation();
    let admit = entry(org, &alice, add("mallory", Role::Admin, &mallory), &[&alice]);
    state.apply(&admit).unwrap();
    state.apply(&entry(org, &alice, Operation::RemoveMember { name: "mallory".parse().unwrap() }, &[&alice])).unwrap();
    let error = state.apply(&admit).unwrap_err().to_string();
    assert!(error.contains("applied already"), "{error}");
    assert!(state.members().iter().all(|m| m.name.as_str() != "mallory"));
}
