//! Address attestation on the node: a node attests only what it derives
//! itself from its own share and cached tweak, and refuses a path whose
//! hardened prefix it never derived.

use std::collections::BTreeMap;

use shardvault_chains::Chain;
use shardvault_mpc::{DerivationPath, KeyId, PartyId, Scheme, SessionId, Threshold};
use shardvault_testkit as tk;
use shardvault_wire::{AddressAttestation, Job, JobKind, NodeId, Outcome};

/// Three nodes in this process (the shared harness); `run` relays a job
/// until every participant answered.
struct Nodes(shardvault_harness::Nodes);

fn three_nodes() -> Nodes {
    Nodes(shardvault_harness::Nodes::new())
}

impl std::ops::Deref for Nodes {
    type Target = shardvault_harness::Nodes;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl Nodes {
    /// Starts `job` on its participants and relays frames until all answered.
    fn run(&mut self, job: Job) -> BTreeMap<NodeId, Result<Outcome, String>> {
        self.0.relay(&job)
    }
}

fn party(i: u16) -> PartyId {
    PartyId::new(u8::try_from(i).unwrap()).unwrap()
}

fn job(key_id: KeyId, nodes: &[u16], kind: JobKind) -> Job {
    let participants = nodes.iter().map(|n| (party(*n), NodeId(*n))).collect();
    shardvault_harness::approved(Job { session: SessionId::random(), key_id, participants, kind, governance: None })
}

fn attest_kind(path: &str) -> JobKind {
    JobKind::Attest { path: path.parse().unwrap(), chain: Chain::Solana, bech32_prefix: None }
}

#[test]
fn a_node_attests_what_it_derived_itself_and_nothing_it_did_not_derive() {
    let mut c = three_nodes();
    let key_id = KeyId::random();
    let threshold = Threshold::new(2, 3).unwrap();
    let created = c.run(job(key_id, &[1, 2, 3], JobKind::CreateKey { scheme: Scheme::EddsaEd25519, threshold }));
    assert!(created.values().all(Result::is_ok), "{created:?}");
    let path = "m/9'/0'/501'/0'/0'/0'";

    // Not derived yet: every node refuses to attest it.
    for node in 1..=3u16 {
        let results = c.run(job(key_id, &[node], attest_kind(path)));
        let reason = results[&NodeId(node)].clone().unwrap_err();
        assert!(reason.contains("has not been derived on this node"), "{reason}");
    }

    let derived = c.run(job(key_id, &[1, 2, 3], JobKind::DeriveHardened { path: path.parse().unwrap() }));
    let Ok(Outcome::Derived { public_key: child, .. }) = derived[&NodeId(1)].clone() else { panic!("{derived:?}") };

    // Derived: each node attests the same statement on its own, signed with its identity.
    let mut attestations = Vec::new();
    let mut statements = Vec::new();
    for node in 1..=3u16 {
        let results = c.run(job(key_id, &[node], attest_kind(path)));
        let Ok(Outcome::Attested { statement, signature }) = results[&NodeId(node)].clone() else {
            panic!("{results:?}")
        };
        assert_eq!(statement.key_id, key_id);
        assert_eq!(statement.scheme, Scheme::EddsaEd25519);
        assert_eq!(statement.threshold, threshold);
        assert_eq!(statement.path, path.parse::<DerivationPath>().unwrap());
        assert_eq!(statement.public_key, child);
        // Independently: the Solana address is the base58 of the attested key.
        assert_eq!(tk::solana_key(&statement.address).unwrap(), child);
        let signature: [u8; 64] = signature.try_into().unwrap();
        attestations.push(AddressAttestation { node: NodeId(node), signature });
        statements.push(statement);
    }
    assert!(statements.windows(2).all(|w| w[0] == w[1]));
    let check = statements[0].verify_attestations(&c.cluster, &attestations).unwrap();
    assert_eq!(check.nodes.len(), 3);

    // A non-hardened child below a derived prefix is attested too; one below
    // a prefix never derived is refused.
    let results = c.run(job(key_id, &[2], attest_kind("m/9'/0'/501'/0'/0'/0'/7")));
    let Ok(Outcome::Attested { statement: below, .. }) = results[&NodeId(2)].clone() else { panic!("{results:?}") };
    assert_ne!(below.public_key, child);
    assert_eq!(tk::solana_key(&below.address).unwrap(), below.public_key);
    let results = c.run(job(key_id, &[2], attest_kind("m/9'/0'/501'/0'/0'/1'")));
    assert!(results[&NodeId(2)].clone().unwrap_err().contains("has not been derived"));

    // A node asked to attest as another party of the key refuses.
    let wrong = Job {
        session: SessionId::random(),
        key_id,
        participants: BTreeMap::from([(party(2), NodeId(1))]),
        kind: attest_kind(path),
        governance: None,
    };
    assert!(c.run(wrong)[&NodeId(1)].clone().unwrap_err().contains("holds party 1"));
    // Another chain's address for this key is refused (Ed25519 has no Bitcoin address).
    let bitcoin = JobKind::Attest { path: path.parse().unwrap(), chain: Chain::Bitcoin, bech32_prefix: None };
    assert!(c.run(job(key_id, &[3], bitcoin))[&NodeId(3)].is_err());
}
