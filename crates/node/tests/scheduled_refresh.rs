//! Scheduled refresh (docs/POLICY.md "Scheduled refresh"): a refresh job
//! with the governance log and no request runs only when the policy in
//! force on the node schedules refreshes and the key's active epoch is that
//! old by the node's own clock. The coordinator is the attacker: it sends
//! such jobs whenever it likes.

use std::collections::BTreeMap;

use shardvault_governance::Policy;
use shardvault_harness::{one_owner_or_admin, Nodes, Organisation};
use shardvault_mpc::{Epoch, KeyId, PartyId, Scheme, SessionId, Threshold};
use shardvault_wire::{Governed, Job, JobKind, NodeId, Outcome, RefreshCertificate};

const DAY: u64 = 86_400;

fn job(key_id: KeyId, kind: JobKind, governance: Option<Governed>) -> Job {
    let participants: BTreeMap<PartyId, NodeId> =
        (1..=3u8).map(|n| (PartyId::new(n).unwrap(), NodeId(u16::from(n)))).collect();
    Job { session: SessionId::random(), key_id, participants, kind, governance }
}

/// What the coordinator sends when the policy schedules a refresh: the log
/// and no request.
fn scheduled(key_id: KeyId, from: u32, to: u32) -> Job {
    let governed = Governed { request: String::new(), approvals: Vec::new(), log: Vec::new() };
    job(key_id, JobKind::Refresh { from: Epoch(from), to: Epoch(to) }, Some(governed))
}

fn cluster(refresh_every_secs: u64) -> (Nodes, KeyId) {
    let policy = Policy { refresh_every_secs, ..one_owner_or_admin() };
    let mut c = Nodes::with_organisation(3, Organisation::with_owners("scheduled", policy, 1));
    let key_id = KeyId::random();
    let create = JobKind::CreateKey { scheme: Scheme::EcdsaSecp256k1, threshold: Threshold::new(2, 3).unwrap() };
    let created = c.run(c.approve(job(key_id, create, None)));
    assert!(created.values().all(Result::is_ok), "{created:?}");
    (c, key_id)
}

/// Every node refuses `job`, naming `reason`; no epoch is added anywhere.
fn refused(c: &mut Nodes, key_id: KeyId, job: Job, reason: &str) {
    let before = c.epochs(key_id);
    let results = c.run_or_abort(job);
    assert_eq!(results.len(), 3, "{results:?}");
    for (node, result) in &results {
        let error = result.as_ref().expect_err(&format!("node {node} refreshed: {result:?}"));
        assert!(error.contains(reason), "node {node}: {error}");
    }
    assert_eq!(c.epochs(key_id), before);
}

/// Runs a scheduled refresh from `from` to `to` and activates it.
fn refresh(c: &mut Nodes, key_id: KeyId, from: u32, to: u32) {
    let results = c.run(scheduled(key_id, from, to));
    let signatures = results
        .iter()
        .map(|(node, r)| match r {
            Ok(Outcome::Refreshed { epoch, stored }) if *epoch == Epoch(to) => (*node, stored.clone()),
            other => panic!("node {node}: {other:?}"),
        })
        .collect();
    let public_key = c.nodes[&NodeId(1)].store().active_share(key_id).unwrap().public_key().to_vec();
    let certificate = RefreshCertificate { epoch: Epoch(to), public_key, signatures };
    let activated = c.run(job(key_id, JobKind::Activate { certificate }, None));
    assert!(activated.values().all(|r| matches!(r, Ok(Outcome::Activated { .. }))), "{activated:?}");
}

#[test]
fn a_scheduled_refresh_runs_only_once_the_active_epoch_is_as_old_as_the_policy_says() {
    let (mut c, key_id) = cluster(30 * DAY);
    let public_key = c.nodes[&NodeId(1)].store().active_share(key_id).unwrap().public_key().to_vec();
    refused(&mut c, key_id, scheduled(key_id, 0, 1), "its scheduled refresh is due at");
    c.advance(30 * DAY - 1);
    refused(&mut c, key_id, scheduled(key_id, 0, 1), "(in 1 s)");
    c.advance(1);
    refresh(&mut c, key_id, 0, 1);
    assert_eq!(c.epochs(key_id), vec![1]);
    // The period starts again at the activation, on each node's clock.
    refused(&mut c, key_id, scheduled(key_id, 1, 2), "its scheduled refresh is due at");
    c.advance(30 * DAY);
    // Only from the node's own active epoch.
    refused(&mut c, key_id, scheduled(key_id, 0, 2), "epoch 1 is active here");
    refresh(&mut c, key_id, 1, 2);
    let after = c.nodes[&NodeId(1)].store().active_share(key_id).unwrap();
    assert_eq!((after.epoch(), after.public_key()), (Epoch(2), public_key.as_slice()));
}

#[test]
fn without_a_schedule_a_refresh_needs_its_approved_request() {
    let (mut c, key_id) = cluster(0);
    c.advance(365 * DAY);
    refused(&mut c, key_id, scheduled(key_id, 0, 1), "schedules no refresh");
    // No governance at all is no scheduled refresh either.
    refused(&mut c, key_id, job(key_id, JobKind::Refresh { from: Epoch(0), to: Epoch(1) }, None), "carries none");
    // A request-less job of another kind is not let through by the schedule.
    let (mut c, key_id) = cluster(DAY);
    c.advance(2 * DAY);
    let mut derive = scheduled(key_id, 0, 1);
    derive.kind = JobKind::DeriveHardened { path: "m/9'/0'/60'".parse().unwrap() };
    refused(&mut c, key_id, derive, "request");
}
