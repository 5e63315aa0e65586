//! Three nodes, each with its own sealed store, run whole jobs through a relay
//! that only moves frames: key generation, derivation, signing (checked with
//! independent verifiers), refresh with activation, and restarts.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;

use shardvault_chains::{sample, Chain, KeyType, MessageEncoding};
use shardvault_mpc::{DerivationPath, Epoch, KeyId, PartyId, Scheme, SessionId, Threshold};
use shardvault_node::{KekSource, Node, Store};
use shardvault_testkit as tk;
use shardvault_vault::KdfParams;
use shardvault_wire::{
    generate_keypair, Cluster, FromNode, Job, JobKind, NodeId, NoiseSecretKey, Outcome, SignPayload, ToNode,
};

struct Cluster3 {
    _dir: tempfile::TempDir,
    paths: BTreeMap<NodeId, PathBuf>,
    secrets: BTreeMap<NodeId, NoiseSecretKey>,
    cluster: Cluster,
    nodes: BTreeMap<NodeId, Node>,
}

fn store(path: &std::path::Path, id: NodeId) -> Store {
    Store::open(path, &format!("node-{id}"), KekSource::Passphrase(b"pw", KdfParams::INSECURE_FOR_TESTS)).unwrap()
}

impl Cluster3 {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (_, coordinator) = generate_keypair().unwrap();
        let mut keys = BTreeMap::new();
        let mut secrets = BTreeMap::new();
        let mut paths = BTreeMap::new();
        for i in 1..=3 {
            let (secret, public) = generate_keypair().unwrap();
            keys.insert(NodeId(i), public);
            secrets.insert(NodeId(i), secret);
            paths.insert(NodeId(i), dir.path().join(format!("node-{i}.db")));
        }
        let cluster = Cluster { coordinator, nodes: keys };
        let mut c = Cluster3 { _dir: dir, paths, secrets, cluster, nodes: BTreeMap::new() };
        c.restart();
        c
    }

    /// Drops every node and reopens it from its store, as after a crash.
    fn restart(&mut self) {
        self.nodes.clear();
        for (id, path) in &self.paths {
            let node = Node::new(*id, self.secrets[id].clone(), self.cluster.clone(), store(path, *id));
            self.nodes.insert(*id, node);
        }
    }

    /// Starts `job` on its participants, lowest id first (initiators talk to
    /// nodes that have not started yet, so their early frames get buffered),
    /// and relays until every participant answered.
    fn run(&mut self, job: Job) -> BTreeMap<NodeId, Result<Outcome, String>> {
        let mut queue: VecDeque<(NodeId, ToNode)> =
            job.nodes().into_iter().map(|n| (n, ToNode::Start(job.clone()))).collect();
        let mut results = BTreeMap::new();
        while let Some((to, message)) = queue.pop_front() {
            for reply in self.nodes.get_mut(&to).unwrap().handle(message) {
                match reply {
                    FromNode::Frame(frame) => queue.push_back((frame.to, ToNode::Frame(frame))),
                    FromNode::Done { outcome, .. } => {
                        results.insert(to, Ok(outcome));
                    }
                    FromNode::Failed { reason, .. } => {
                        results.insert(to, Err(reason));
                    }
                    FromNode::Ping(_) | FromNode::Pong(_) | FromNode::Waiting { .. } => {}
                }
            }
        }
        let left: Vec<_> = self.nodes.values().filter(|n| n.running() > 0).map(|n| n.id()).collect();
        assert!(left.is_empty(), "jobs left behind on {left:?} after {} ({results:?})", job.kind.name());
        results
    }
}

/// Keys here are created on nodes 1, 2, 3 as parties 1, 2, 3.
fn job(key_id: KeyId, nodes: &[u16], kind: JobKind) -> Job {
    let participants = nodes.iter().map(|n| (PartyId::new(u8::try_from(*n).unwrap()).unwrap(), NodeId(*n))).collect();
    Job { session: SessionId::random(), key_id, participants, kind }
}

fn all_ok(results: BTreeMap<NodeId, Result<Outcome, String>>, expected: usize) -> Vec<Outcome> {
    assert_eq!(results.len(), expected, "{results:?}");
    results.into_values().map(|r| r.unwrap()).collect()
}

fn create(c: &mut Cluster3, scheme: Scheme) -> (KeyId, Vec<u8>) {
    let key_id = KeyId::random();
    let outcomes = all_ok(
        c.run(job(key_id, &[1, 2, 3], JobKind::CreateKey { scheme, threshold: Threshold::new(2, 3).unwrap() })),
        3,
    );
    let Outcome::KeyCreated { public_key } = outcomes[0].clone() else { panic!() };
    assert!(outcomes.iter().all(|o| *o == Outcome::KeyCreated { public_key: public_key.clone() }));
    (key_id, public_key)
}

fn derive(c: &mut Cluster3, key_id: KeyId, path: &str) -> Vec<u8> {
    let outcomes = all_ok(c.run(job(key_id, &[1, 2, 3], JobKind::DeriveHardened { path: path.parse().unwrap() })), 3);
    let Outcome::Derived { public_key, .. } = outcomes[0].clone() else { panic!() };
    public_key
}

fn sign_eth(
    c: &mut Cluster3,
    key_id: KeyId,
    path: &str,
    signers: &[u16],
    message: &[u8],
) -> (Vec<u8>, shardvault_mpc::Signature) {
    let payload = SignPayload::Message { message: message.to_vec(), encoding: MessageEncoding::Eip191 };
    let outcomes =
        all_ok(c.run(job(key_id, signers, JobKind::Sign { path: path.parse().unwrap(), payload })), signers.len());
    let Outcome::Signed { signed, signature } = outcomes[0].clone() else { panic!() };
    (signed, signature)
}

#[test]
fn an_ethereum_key_through_its_whole_life() {
    let mut c = Cluster3::new();
    let (key_id, _) = create(&mut c, Scheme::EcdsaSecp256k1);
    let path = "m/9'/0'/60'/0'/0'/0'";
    let child = derive(&mut c, key_id, path);
    let address = Chain::Ethereum.address(KeyType::EcdsaSecp256k1, &child).unwrap();
    assert_eq!(address, tk::eip55_address(&child).unwrap());

    // Each node computed the EIP-191 digest itself; the signature recovers to the address.
    let message = b"transfer 1 ETH";
    let (signed, signature) = sign_eth(&mut c, key_id, path, &[1, 3], message);
    assert_eq!(signed, tk::eip191_digest(message));
    tk::verify_ecdsa(&child, &signed, &signature.bytes, signature.recovery_id.unwrap()).unwrap();
    // Only the signers logged it.
    let logged: Vec<usize> = c.nodes.values().map(|n| n.store().sign_log().unwrap().len()).collect();
    assert_eq!(logged, vec![1, 0, 1]);

    // Refresh (pending), activate, sign with another set: same address.
    let refreshed = all_ok(c.run(job(key_id, &[1, 2, 3], JobKind::Refresh)), 3);
    assert!(refreshed.iter().all(|o| *o == Outcome::Refreshed { epoch: Epoch(1) }));
    all_ok(c.run(job(key_id, &[1, 2, 3], JobKind::Activate { epoch: Epoch(1) })), 3);
    let (signed, signature) = sign_eth(&mut c, key_id, path, &[2, 3], b"after refresh");
    tk::verify_ecdsa(&child, &signed, &signature.bytes, signature.recovery_id.unwrap()).unwrap();

    // Restart every node: the key, its epoch and the derived path are still there.
    c.restart();
    let again = derive(&mut c, key_id, path);
    assert_eq!(again, child);
    let (signed, signature) = sign_eth(&mut c, key_id, path, &[1, 2], b"after restart");
    tk::verify_ecdsa(&child, &signed, &signature.bytes, signature.recovery_id.unwrap()).unwrap();
    assert!(c.nodes.values().all(|n| n.store().active_share(key_id).unwrap().epoch() == Epoch(1)));
}

#[test]
fn a_solana_key_signs_raw_messages() {
    let mut c = Cluster3::new();
    let (key_id, _) = create(&mut c, Scheme::EddsaEd25519);
    let child = derive(&mut c, key_id, "m/9'/0'/501'/0'");
    let path = "m/9'/0'/501'/0'/0/7";
    let payload = SignPayload::Message { message: b"solana tx message".to_vec(), encoding: MessageEncoding::Raw };
    let outcomes = all_ok(c.run(job(key_id, &[2, 3], JobKind::Sign { path: path.parse().unwrap(), payload })), 2);
    let Outcome::Signed { signature, .. } = &outcomes[0] else { panic!() };
    let derived = shardvault_mpc::derive_public(
        Scheme::EddsaEd25519,
        &shardvault_mpc::ExtendedPublicKey { public_key: child.clone(), chain_code: chain_code(&mut c, key_id) },
        &[0, 7],
    )
    .unwrap();
    assert_eq!(signature.public_key, derived.public_key);
    tk::verify_ed25519(&signature.public_key, b"solana tx message", &signature.bytes).unwrap();
}

fn chain_code(c: &mut Cluster3, key_id: KeyId) -> [u8; 32] {
    let outcomes =
        all_ok(c.run(job(key_id, &[1, 2, 3], JobKind::DeriveHardened { path: "m/9'/0'/501'/0'".parse().unwrap() })), 3);
    let Outcome::Derived { chain_code, .. } = outcomes[0] else { panic!() };
    chain_code
}

#[test]
fn nodes_refuse_what_they_should_not_sign() {
    let mut c = Cluster3::new();
    let (ed, _) = create(&mut c, Scheme::EddsaEd25519);
    let (ecdsa, ecdsa_key) = create(&mut c, Scheme::EcdsaSecp256k1);
    let transaction = |chain: Chain, network: &str, unsigned: Vec<u8>| JobKind::Sign {
        path: DerivationPath::root(),
        payload: SignPayload::Transaction { chain, network: network.into(), unsigned },
    };
    let someone_elses = sample::transfer(Chain::Solana, KeyType::Ed25519, &[7; 32]).unwrap().unsigned;
    let cosmos_hub = sample::transfer(Chain::Cosmos, KeyType::EcdsaSecp256k1, &ecdsa_key).unwrap().unsigned;
    let refusals = [
        (ed, transaction(Chain::Solana, "mainnet", someone_elses), "fee payer"),
        (ecdsa, transaction(Chain::Cosmos, "osmosis-1", cosmos_hub.clone()), "chain id"),
        (ed, transaction(Chain::Cosmos, "cosmoshub-4", cosmos_hub), "no address for Ed25519"),
        (
            ed,
            JobKind::Sign { path: DerivationPath::root(), payload: SignPayload::RawDigest([1; 32]) },
            "Ed25519 signs messages",
        ),
        (
            ecdsa,
            JobKind::Sign {
                path: DerivationPath::root(),
                payload: SignPayload::Message { message: b"x".to_vec(), encoding: MessageEncoding::Raw },
            },
            "signs a digest",
        ),
        (
            ecdsa,
            JobKind::Sign { path: "m/9'/0'/60'/0'/0'/0'".parse().unwrap(), payload: SignPayload::RawDigest([1; 32]) },
            "has not been derived",
        ),
        (KeyId::random(), JobKind::Refresh, "no share of key"),
    ];
    for (key_id, kind, expected) in refusals {
        let results = c.run(job(key_id, &[1, 2], kind));
        for result in results.values() {
            let reason = result.as_ref().unwrap_err();
            assert!(reason.contains(expected), "{reason}");
        }
    }
    // A named raw digest is signed as is.
    let results = all_ok(
        c.run(job(
            ecdsa,
            &[1, 3],
            JobKind::Sign { path: DerivationPath::root(), payload: SignPayload::RawDigest([9; 32]) },
        )),
        2,
    );
    let Outcome::Signed { signed, .. } = &results[0] else { panic!() };
    assert_eq!(signed, &[9u8; 32].to_vec());
    // Nothing was logged for refused jobs: only the two signers of the raw digest.
    let logged: usize = c.nodes.values().map(|n| n.store().sign_log().unwrap().len()).sum();
    assert_eq!(logged, 2);
}

#[test]
fn a_node_not_in_the_job_or_a_party_mismatch_is_refused() {
    let mut c = Cluster3::new();
    let (key_id, _) = create(&mut c, Scheme::SchnorrSecp256k1);
    // Nodes swapped: node 2 is asked to play party 1.
    let mut swapped =
        job(key_id, &[2, 1], JobKind::Sign { path: DerivationPath::root(), payload: SignPayload::RawDigest([3; 32]) });
    swapped.participants =
        BTreeMap::from([(PartyId::new(1).unwrap(), NodeId(2)), (PartyId::new(2).unwrap(), NodeId(1))]);
    let results = c.run(swapped);
    assert!(results.values().all(|r| r.as_ref().unwrap_err().contains("holds party")), "{results:?}");
}

#[test]
fn stray_frames_never_block_new_jobs() {
    let mut c = Cluster3::new();
    // Frames for 200 sessions that never start on node 3 (aborted elsewhere, or replays).
    let (key_id, _) = create(&mut c, Scheme::EddsaEd25519);
    for _ in 0..200 {
        let stray = shardvault_wire::Frame {
            session: SessionId::random(),
            from: NodeId(1),
            to: NodeId(3),
            seq: 0,
            messages: vec![vec![0; 48]],
        };
        assert!(c.nodes.get_mut(&NodeId(3)).unwrap().handle(ToNode::Frame(stray)).is_empty());
    }
    // A job whose peers talk to node 3 before node 3 starts it still completes.
    let payload = SignPayload::Message { message: b"still works".to_vec(), encoding: MessageEncoding::Raw };
    all_ok(c.run(job(key_id, &[1, 3], JobKind::Sign { path: DerivationPath::root(), payload })), 2);
    // A finished session id cannot be started again.
    let signed = job(
        key_id,
        &[1, 3],
        JobKind::Sign {
            path: DerivationPath::root(),
            payload: SignPayload::Message { message: b"x".to_vec(), encoding: MessageEncoding::Raw },
        },
    );
    all_ok(c.run(signed.clone()), 2);
    let replayed = c.run(signed);
    assert!(replayed.values().all(|r| r.as_ref().unwrap_err().contains("session id already used")), "{replayed:?}");
}
