//! Replacing a lost node (docs/DESIGN.md "Replacing a lost node"), on the
//! nodes themselves: node 2's disk is gone; a new machine with new keys
//! takes its place under an approved replacement request; nodes 1 and 3
//! rebuild its share and its chain seed; a complete refresh follows; the key
//! and the address are unchanged, the new node signs (checked by
//! libsecp256k1), and the old node's keys and share no longer count. The
//! coordinator is the attacker: it relays whatever jobs it likes.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use shardvault_chains::MessageFormat;
use shardvault_governance::{Identity, LogEntry, Operation, Role, State};
use shardvault_harness::{one_owner_or_admin, open_store, Nodes, Organisation, Results};
use shardvault_mpc::{DerivationPath, Epoch, KeyId, PartyId, Scheme, SessionId, Threshold};
use shardvault_node::Node;
use shardvault_testkit as tk;
use shardvault_wire::{
    generate_keypair, Job, JobKind, NodeId, NodeIdentity, NoisePublicKey, NoiseSecretKey, Outcome, RefreshCertificate,
    SignPayload,
};

const PATH: &str = "m/9'/0'/60'/0'/0'/0'";

fn participants(nodes: &[u16]) -> BTreeMap<PartyId, NodeId> {
    nodes.iter().map(|n| (PartyId::new(u8::try_from(*n).unwrap()).unwrap(), NodeId(*n))).collect()
}

fn job(key_id: KeyId, nodes: &[u16], kind: JobKind) -> Job {
    Job { session: SessionId::random(), key_id, participants: participants(nodes), kind, governance: None }
}

fn all_ok(results: &Results) {
    assert!(results.values().all(Result::is_ok), "{results:?}");
}

/// A 2-of-3 ECDSA key on nodes 1–3 of a two-owner organisation, with a
/// derived path and its seeds escrowed.
struct Fixture {
    c: Nodes,
    key_id: KeyId,
    public_key: Vec<u8>,
    child: Vec<u8>,
}

impl Fixture {
    fn new(escrow: bool) -> Self {
        let organisation = Organisation::with_owners("replace", one_owner_or_admin(), 2);
        let mut c = Nodes::with_organisation(3, organisation);
        let key_id = KeyId::random();
        let create = JobKind::CreateKey { scheme: Scheme::EcdsaSecp256k1, threshold: Threshold::new(2, 3).unwrap() };
        let created = c.run(c.approve(job(key_id, &[1, 2, 3], create)));
        all_ok(&created);
        let Some(Ok(Outcome::KeyCreated { public_key })) = created.get(&NodeId(1)).cloned() else { panic!() };
        let derived =
            c.run(c.approve(job(key_id, &[1, 2, 3], JobKind::DeriveHardened { path: PATH.parse().unwrap() })));
        all_ok(&derived);
        let Some(Ok(Outcome::Derived { public_key: child, .. })) = derived.get(&NodeId(1)).cloned() else { panic!() };
        if escrow {
            let escrowed = c.run(job(key_id, &[1, 2, 3], JobKind::EscrowSeeds));
            assert!(escrowed.values().all(|r| *r == Ok(Outcome::Escrowed)), "{escrowed:?}");
        }
        Fixture { c, key_id, public_key, child }
    }

    /// Node 2's disk is gone: a new machine, new keys, an empty store, and
    /// its own cluster file naming its new key (the others keep theirs).
    fn lose_node_2(&mut self) -> NoiseSecretKey {
        let (secret, public) = generate_keypair().unwrap();
        let id = NodeId(2);
        let path = self.c.dir().join("node-2-new.db");
        let mut cluster = self.c.cluster.clone();
        cluster.nodes.insert(id, public);
        cluster.identities.insert(id, NodeIdentity::derive(&secret).public());
        let clock = self.c.clock.clone();
        let node = Node::new(id, secret.clone(), cluster, open_store(&path, id), self.c.organisation.genesis.clone())
            .with_clock(Arc::new(move || clock.load(Ordering::SeqCst)));
        self.c.nodes.insert(id, node);
        secret
    }

    /// The replacement of node 2 by `secret`'s keys, approved by the owners
    /// `approvers`, with no governance log.
    fn replacement(&self, secret: &NoiseSecretKey, approvers: &[usize]) -> shardvault_wire::Governed {
        let owners: Vec<&Identity> = approvers.iter().map(|i| self.c.organisation.owners[*i].as_ref()).collect();
        let genesis = State::genesis(&self.c.organisation.genesis).unwrap();
        self.replacement_by(secret, &owners, Vec::new(), genesis.head())
    }

    /// The replacement of node 2 by `secret`'s keys over governance `log`,
    /// vouching for `log_head`, approved by `approvers`.
    fn replacement_by(
        &self,
        secret: &NoiseSecretKey,
        approvers: &[&Identity],
        log: Vec<LogEntry>,
        log_head: [u8; 32],
    ) -> shardvault_wire::Governed {
        let operation = Operation::ReplaceNode {
            node: 2,
            noise_key: NoisePublicKey::from_secret(secret).unwrap().0.to_vec(),
            identity_key: NodeIdentity::derive(secret).public().0.to_vec(),
            log_head: log_head.to_vec(),
        };
        let request = self.c.organisation.request(operation, self.c.now());
        Organisation::governed(&request, approvers, log)
    }

    fn governed(&self, mut job: Job, governed: &shardvault_wire::Governed) -> Job {
        job.governance = Some(governed.clone());
        job
    }

    /// Repair of party 2 by `helpers`, under `governed`.
    fn repair(&mut self, helpers: &[u16], governed: &shardvault_wire::Governed) -> Results {
        let nodes: Vec<u16> = helpers.iter().copied().chain([2]).collect();
        let kind = JobKind::RepairShare { target: PartyId::new(2).unwrap(), parties: participants(&[1, 2, 3]) };
        let repair = self.governed(job(self.key_id, &nodes, kind), governed);
        self.c.run_or_abort(repair)
    }

    /// The complete refresh and its activation, under `governed`.
    fn refresh(&mut self, governed: &shardvault_wire::Governed, from: Epoch, to: Epoch) {
        let refreshed =
            self.c.run(self.governed(job(self.key_id, &[1, 2, 3], JobKind::Refresh { from, to }), governed));
        all_ok(&refreshed);
        let signatures = refreshed
            .iter()
            .map(|(node, r)| match r {
                Ok(Outcome::Refreshed { stored, .. }) => (*node, stored.clone()),
                other => panic!("{other:?}"),
            })
            .collect();
        let certificate = RefreshCertificate { epoch: to, public_key: self.public_key.clone(), signatures };
        all_ok(&self.c.run(job(self.key_id, &[1, 2, 3], JobKind::Activate { certificate })));
    }

    fn sign(&mut self, signers: &[u16], message: &[u8]) -> Results {
        let epoch = self.c.nodes[&NodeId(signers[0])].store().active_share(self.key_id).unwrap().epoch();
        let payload = SignPayload::Message { message: message.to_vec(), format: MessageFormat::Eip191 };
        let sign = JobKind::Sign { epoch, path: PATH.parse().unwrap(), payload };
        let job = self.c.approve(job(self.key_id, signers, sign));
        self.c.run_or_abort(job)
    }

    /// The signature `signers` make, checked by libsecp256k1 under the
    /// path's child key.
    fn signs(&mut self, signers: &[u16]) {
        let message = format!("signed by {signers:?}");
        let results = self.sign(signers, message.as_bytes());
        let Some(Ok(Outcome::Signed { signed, signature })) = results.values().next().cloned() else {
            panic!("{results:?}")
        };
        assert_eq!(signed, tk::eip191_digest(message.as_bytes()));
        tk::verify_ecdsa(&self.child, &signed, &signature.bytes, signature.recovery_id.unwrap())
            .unwrap_or_else(|e| panic!("{signers:?}: {e}"));
    }
}

fn refusal(results: &Results, node: u16) -> String {
    match results.get(&NodeId(node)) {
        Some(Err(reason)) => reason.clone(),
        other => panic!("node {node} answered {other:?}"),
    }
}

#[test]
fn a_lost_node_is_replaced_and_the_old_address_still_signs() {
    let mut f = Fixture::new(true);
    let old_store = f.c.paths[&NodeId(2)].clone();
    let new = f.lose_node_2();
    let governed = f.replacement(&new, &[0, 1]);

    let repaired = f.repair(&[1, 3], &governed);
    assert!(repaired.values().all(|r| *r == Ok(Outcome::Repaired { epoch: Epoch(0) })), "{repaired:?}");
    // The hollow share is for the complete refresh only.
    let refused = f.sign(&[1, 2], b"too early");
    assert!(refusal(&refused, 2).contains("repaired"), "{refused:?}");

    f.refresh(&governed, Epoch(0), Epoch(1));
    // The new node has the path again from its rebuilt seed: same child key.
    let path: DerivationPath = PATH.parse().unwrap();
    let derived = f.c.run(f.governed(job(f.key_id, &[1, 2, 3], JobKind::DeriveHardened { path }), &governed));
    all_ok(&derived);
    assert!(derived.values().all(|r| matches!(r, Ok(Outcome::Derived { public_key, .. }) if *public_key == f.child)));
    // …and the escrow again, so the new node holds pieces and its own seed is escrowed anew.
    all_ok(&f.c.run(job(f.key_id, &[1, 2, 3], JobKind::EscrowSeeds)));
    assert_eq!(f.c.nodes[&NodeId(2)].store().escrowed_parties(f.key_id).unwrap().len(), 2);

    f.signs(&[1, 2]);
    f.signs(&[2, 3]);
    assert_eq!(f.c.nodes[&NodeId(2)].store().active_share(f.key_id).unwrap().public_key(), f.public_key);

    // The old machine, brought back with its disk: its key is no longer
    // pinned and its epoch-0 share is gone everywhere else.
    let old_secret = f.c.secrets[&NodeId(2)].clone();
    let old = Node::new(
        NodeId(2),
        old_secret,
        f.c.cluster.clone(),
        open_store(&old_store, NodeId(2)),
        f.c.organisation.genesis.clone(),
    );
    f.c.nodes.insert(NodeId(2), old);
    let results = f.sign(&[1, 2], b"from the old disk");
    assert!(results.values().any(Result::is_err), "the old node took part: {results:?}");
    assert!(!results.values().any(|r| matches!(r, Ok(Outcome::Signed { .. }))), "{results:?}");
}

#[test]
fn a_replacement_needs_every_member_and_a_repair_needs_a_replacement() {
    let mut f = Fixture::new(true);
    let new = f.lose_node_2();
    // One of the two owners: refused by the helpers.
    let one = f.replacement(&new, &[0]);
    let refused = f.repair(&[1, 3], &one);
    assert!(refusal(&refused, 1).contains("not approved"), "{refused:?}");
    // No request at all.
    let kind = JobKind::RepairShare { target: PartyId::new(2).unwrap(), parties: participants(&[1, 2, 3]) };
    let refused = f.c.run_or_abort(job(f.key_id, &[1, 3, 2], kind));
    assert!(refusal(&refused, 1).contains("governance"), "{refused:?}");
    // A request to replace node 2 does not repair party 1 onto node 2.
    let all = f.replacement(&new, &[0, 1]);
    let kind = JobKind::RepairShare { target: PartyId::new(1).unwrap(), parties: participants(&[1, 2, 3]) };
    let refused = f.c.run_or_abort(f.governed(job(f.key_id, &[2, 3, 1], kind), &all));
    assert!(refusal(&refused, 3).contains("not node 2's"), "{refused:?}");
    assert!(!f.c.nodes[&NodeId(2)].store().knows_key(f.key_id).unwrap());
}

/// The coordinator tells the new node that node 1 plays parties 1 and 3:
/// node 1, were it hostile, would be both helpers and could hand the new
/// node a key of its own making, which the new node would then attest.
#[test]
fn a_party_map_giving_one_node_two_parties_is_refused() {
    let mut f = Fixture::new(true);
    let new = f.lose_node_2();
    let governed = f.replacement(&new, &[0, 1]);
    let doubled: BTreeMap<PartyId, NodeId> =
        [(1, 1), (2, 2), (3, 1)].into_iter().map(|(p, n)| (PartyId::new(p).unwrap(), NodeId(n))).collect();
    let kind = JobKind::RepairShare { target: PartyId::new(2).unwrap(), parties: doubled.clone() };
    let repair = Job { participants: doubled.clone(), ..f.governed(job(f.key_id, &[1, 2], kind), &governed) };
    let refused = f.c.run_or_abort(repair);
    for node in [1, 2] {
        assert!(refusal(&refused, node).contains("both mapped to node 1"), "{refused:?}");
    }
    assert!(!f.c.nodes[&NodeId(2)].store().knows_key(f.key_id).unwrap());
    // Nor does any node make a key with one node holding two shares.
    let create = JobKind::CreateKey { scheme: Scheme::EcdsaSecp256k1, threshold: Threshold::new(2, 3).unwrap() };
    let create = Job { participants: doubled, ..job(KeyId::random(), &[1, 2], create) };
    let refused = f.c.run_or_abort(f.c.approve(create));
    assert!(refusal(&refused, 2).contains("both mapped to node 1"), "{refused:?}");
}

#[test]
fn a_replacement_for_other_keys_is_refused_by_the_new_node() {
    let mut f = Fixture::new(true);
    let new = f.lose_node_2();
    // Approved, but for keys that are not the new machine's: it refuses.
    let (other, _) = generate_keypair().unwrap();
    let governed = f.replacement(&other, &[0, 1]);
    let refused = f.repair(&[1, 3], &governed);
    assert!(refusal(&refused, 2).contains("another machine"), "{refused:?}");
    drop(new);
}

/// A request (approved by members who were fooled) that names node 1's
/// keys for node 2 would give node 1 a second share, and one naming node
/// 2's old keys would let its old disk back in: the helpers refuse both.
#[test]
fn a_replacement_naming_another_nodes_keys_is_refused() {
    let mut f = Fixture::new(true);
    f.lose_node_2();
    let node_1 = f.c.secrets[&NodeId(1)].clone();
    let governed = f.replacement(&node_1, &[0, 1]);
    let refused = f.repair(&[1, 3], &governed);
    assert!(refusal(&refused, 3).contains("another machine of the cluster has or had"), "{refused:?}");
    // Nor the lost machine's own keys: its disk, stolen, would come back in.
    let old_node_2 = f.c.secrets[&NodeId(2)].clone();
    let refused = f.repair(&[1, 3], &f.replacement(&old_node_2, &[0, 1]));
    assert!(refusal(&refused, 3).contains("another machine of the cluster has or had"), "{refused:?}");
}

/// The organisation changed long before the disk was lost. The new machine
/// saw none of it: on its own clock every change is new, and one whose
/// request expired long ago would be refused. It adopts the history the
/// replacement was made at, each change as first seen when its request
/// expired (no honest node saw it later). A replacement must carry that
/// whole history: not another head, not a log cut short.
#[test]
fn a_new_node_adopts_the_governance_history_the_replacement_was_made_at() {
    let mut f = Fixture::new(true);
    let bob = shardvault_harness::identity("bob@harness");
    let organisation = f.c.organisation.clone();
    let add_bob =
        Operation::AddMember { name: "bob".parse().unwrap(), role: Role::Admin, public_key: bob.member_key().unwrap() };
    let added = organisation.change(add_bob, &[organisation.owner.as_ref()], f.c.now());
    let derive = job(f.key_id, &[1, 2, 3], JobKind::DeriveHardened { path: PATH.parse().unwrap() });
    all_ok(&f.c.run(organisation.approve_with_log(derive, f.c.now(), vec![added.clone()])));
    f.c.advance(40 * 86_400);
    let new = f.lose_node_2();
    let everyone: Vec<&Identity> = organisation.owners.iter().map(AsRef::as_ref).chain([&bob]).collect();
    let genesis = State::genesis(&organisation.genesis).unwrap();
    let mut after = genesis.clone();
    after.apply(&added).unwrap();

    // Made over another history, or before bob was added: refused everywhere.
    for head in [[7; 32], genesis.head()] {
        let refused = f.repair(&[1, 3], &f.replacement_by(&new, &everyone, vec![added.clone()], head));
        for node in [1, 2, 3] {
            assert!(refusal(&refused, node).contains("changed since"), "{refused:?}");
        }
    }
    // The history cut back to the genesis (bob's admission hidden): the
    // helpers, which hold it, refuse.
    let cut = f.replacement_by(&new, &everyone, Vec::new(), genesis.head());
    let refused = f.repair(&[1, 3], &cut);
    assert!(refusal(&refused, 1).contains("whole governance log"), "{refused:?}");
    assert!(f.c.nodes[&NodeId(2)].store().governance_log().unwrap().is_empty());

    let governed = f.replacement_by(&new, &everyone, vec![added.clone()], after.head());
    let repaired = f.repair(&[1, 3], &governed);
    assert!(repaired.values().all(Result::is_ok), "{repaired:?}");
    let adopted = f.c.nodes[&NodeId(2)].store().governance_log().unwrap();
    let expired = shardvault_governance::Request::from_bytes(added.request.as_bytes()).unwrap().expires_at;
    assert_eq!(adopted.iter().map(|e| e.first_seen).collect::<Vec<_>>(), vec![expired]);
}

#[test]
fn without_an_escrow_the_helpers_say_to_restore_from_backup() {
    let mut f = Fixture::new(false);
    let new = f.lose_node_2();
    let governed = f.replacement(&new, &[0, 1]);
    let refused = f.repair(&[1, 3], &governed);
    assert!(refusal(&refused, 1).contains("seed escrow never ran"), "{refused:?}");
}

#[test]
fn an_older_replacement_cannot_bring_back_replaced_keys() {
    let mut f = Fixture::new(true);
    let first = f.lose_node_2();
    let older = f.replacement(&first, &[0, 1]);
    f.c.advance(10);
    let second = f.lose_node_2();
    let newer = f.replacement(&second, &[0, 1]);
    let repaired = f.repair(&[1, 3], &newer);
    assert!(repaired.values().all(Result::is_ok), "{repaired:?}");
    // The coordinator replays the first, older request to the helpers.
    let refused = f.repair(&[1, 3], &older);
    assert!(refusal(&refused, 1).contains("replaced by a later request"), "{refused:?}");
}

#[test]
fn a_replacement_re_derives_only_paths_derived_before() {
    let mut f = Fixture::new(true);
    let new = f.lose_node_2();
    let governed = f.replacement(&new, &[0, 1]);
    all_ok(&f.repair(&[1, 3], &governed));
    f.refresh(&governed, Epoch(0), Epoch(1));
    let fresh: DerivationPath = "m/9'/0'/60'/0'/7'/0'".parse().unwrap();
    let refused =
        f.c.run_or_abort(f.governed(job(f.key_id, &[1, 2, 3], JobKind::DeriveHardened { path: fresh }), &governed));
    assert!(refusal(&refused, 1).contains("only paths derived before"), "{refused:?}");
}
