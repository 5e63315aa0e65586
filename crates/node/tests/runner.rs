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
    generate_keypair, Cluster, FromNode, Job, JobKind, NodeId, NoiseSecretKey, Outcome, RefreshCertificate,
    SignPayload, ToNode,
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
        let identities =
            secrets.iter().map(|(id, s)| (*id, shardvault_wire::NodeIdentity::derive(s).public())).collect();
        let cluster = Cluster { coordinator, nodes: keys, identities };
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
        let results = self.relay(&job);
        let left: Vec<_> = self.nodes.values().filter(|n| n.running() > 0).map(|n| n.id()).collect();
        assert!(left.is_empty(), "jobs left behind on {left:?} after {} ({results:?})", job.kind.name());
        results
    }

    /// Runs a job that may fail, and aborts it everywhere afterwards, as the
    /// coordinator does after the first failure.
    fn run_or_abort(&mut self, job: Job) -> BTreeMap<NodeId, Result<Outcome, String>> {
        let results = self.relay(&job);
        for node in job.nodes() {
            self.nodes.get_mut(&node).unwrap().handle(ToNode::Abort(job.session));
        }
        results
    }

    fn relay(&mut self, job: &Job) -> BTreeMap<NodeId, Result<Outcome, String>> {
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
                }
            }
        }
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

/// Refreshes `key_id` on nodes 1, 2, 3 from `from` to `to`; every node's
/// confirmation, as the coordinator assembles it.
fn refresh(c: &mut Cluster3, key_id: KeyId, from: Epoch, to: Epoch) -> RefreshCertificate {
    let results = c.run(job(key_id, &[1, 2, 3], JobKind::Refresh { from, to }));
    certificate(c, key_id, to, &results)
}

/// The certificate made of the `Refreshed` answers in `results`.
fn certificate(
    c: &Cluster3,
    key_id: KeyId,
    epoch: Epoch,
    results: &BTreeMap<NodeId, Result<Outcome, String>>,
) -> RefreshCertificate {
    let signatures = results
        .iter()
        .filter_map(|(node, r)| match r {
            Ok(Outcome::Refreshed { epoch: e, stored }) if *e == epoch => Some((*node, stored.clone())),
            _ => None,
        })
        .collect();
    let public_key = c.nodes[&NodeId(1)].store().active_share(key_id).unwrap().public_key().to_vec();
    RefreshCertificate { epoch, public_key, signatures }
}

fn sign_eth(
    c: &mut Cluster3,
    key_id: KeyId,
    path: &str,
    signers: &[u16],
    message: &[u8],
) -> (Vec<u8>, shardvault_mpc::Signature) {
    let payload = SignPayload::Message { message: message.to_vec(), encoding: MessageEncoding::Eip191 };
    let epoch = c.nodes[&NodeId(signers[0])].store().active_share(key_id).unwrap().epoch();
    let outcomes = all_ok(
        c.run(job(key_id, signers, JobKind::Sign { epoch, path: path.parse().unwrap(), payload })),
        signers.len(),
    );
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
    let certificate = refresh(&mut c, key_id, Epoch(0), Epoch(1));
    all_ok(c.run(job(key_id, &[1, 2, 3], JobKind::Activate { certificate })), 3);
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
    let outcomes =
        all_ok(c.run(job(key_id, &[2, 3], JobKind::Sign { epoch: Epoch(0), path: path.parse().unwrap(), payload })), 2);
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
        epoch: Epoch(0),
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
            JobKind::Sign { epoch: Epoch(0), path: DerivationPath::root(), payload: SignPayload::RawDigest([1; 32]) },
            "Ed25519 signs messages",
        ),
        (
            ecdsa,
            JobKind::Sign {
                epoch: Epoch(0),
                path: DerivationPath::root(),
                payload: SignPayload::Message { message: b"x".to_vec(), encoding: MessageEncoding::Raw },
            },
            "signs a digest",
        ),
        (
            ecdsa,
            JobKind::Sign {
                epoch: Epoch(0),
                path: "m/9'/0'/60'/0'/0'/0'".parse().unwrap(),
                payload: SignPayload::RawDigest([1; 32]),
            },
            "has not been derived",
        ),
        (KeyId::random(), JobKind::Refresh { from: Epoch(0), to: Epoch(1) }, "no share of key"),
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
            JobKind::Sign { epoch: Epoch(0), path: DerivationPath::root(), payload: SignPayload::RawDigest([9; 32]) },
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
    let mut swapped = job(
        key_id,
        &[2, 1],
        JobKind::Sign { epoch: Epoch(0), path: DerivationPath::root(), payload: SignPayload::RawDigest([3; 32]) },
    );
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
    all_ok(c.run(job(key_id, &[1, 3], JobKind::Sign { epoch: Epoch(0), path: DerivationPath::root(), payload })), 2);
    // A finished session id cannot be started again.
    let signed = job(
        key_id,
        &[1, 3],
        JobKind::Sign {
            epoch: Epoch(0),
            path: DerivationPath::root(),
            payload: SignPayload::Message { message: b"x".to_vec(), encoding: MessageEncoding::Raw },
        },
    );
    all_ok(c.run(signed.clone()), 2);
    let replayed = c.run(signed);
    assert!(replayed.values().all(|r| r.as_ref().unwrap_err().contains("session id already used")), "{replayed:?}");
}

impl Cluster3 {
    /// Runs `job` like [`Cluster3::run`], but as a coordinator that cuts
    /// `victim` off at the end: frames to it are held back while anything
    /// else can be delivered, and once every other participant is done, the
    /// ones still held (its last messages) are dropped and it is aborted.
    fn run_withholding_last(&mut self, job: Job, victim: NodeId) -> BTreeMap<NodeId, Result<Outcome, String>> {
        let mut queue: VecDeque<(NodeId, ToNode)> =
            job.nodes().into_iter().map(|n| (n, ToNode::Start(job.clone()))).collect();
        let mut results = BTreeMap::new();
        let others = job.nodes().len() - 1;
        let to_victim = |(n, m): &(NodeId, ToNode)| *n == victim && matches!(m, ToNode::Frame(_));
        loop {
            let next = match queue.iter().position(|m| !to_victim(m)) {
                Some(i) => queue.remove(i).unwrap(),
                None if results.keys().filter(|n| **n != victim).count() == others => break,
                None => match queue.pop_front() {
                    Some(next) => next,
                    None => break,
                },
            };
            let (to, message) = next;
            for reply in self.nodes.get_mut(&to).unwrap().handle(message) {
                match reply {
                    FromNode::Frame(frame) => queue.push_back((frame.to, ToNode::Frame(frame))),
                    FromNode::Done { outcome, .. } => {
                        results.insert(to, Ok(outcome));
                    }
                    FromNode::Failed { reason, .. } => {
                        results.insert(to, Err(reason));
                    }
                }
            }
        }
        assert!(queue.iter().any(to_victim), "the victim's last messages were withheld");
        self.nodes.get_mut(&victim).unwrap().handle(ToNode::Abort(job.session));
        results
    }

    fn epochs(&self, key_id: KeyId) -> Vec<u32> {
        let mut epochs: Vec<u32> =
            self.nodes.values().map(|n| n.store().active_share(key_id).unwrap().epoch().0).collect();
        epochs.dedup();
        epochs
    }
}

fn create_3_of_3(c: &mut Cluster3, scheme: Scheme) -> (KeyId, Vec<u8>) {
    let key_id = KeyId::random();
    let outcomes = all_ok(
        c.run(job(key_id, &[1, 2, 3], JobKind::CreateKey { scheme, threshold: Threshold::new(3, 3).unwrap() })),
        3,
    );
    let Outcome::KeyCreated { public_key } = outcomes[0].clone() else { panic!() };
    (key_id, public_key)
}

fn sign_root_digest(
    c: &mut Cluster3,
    key_id: KeyId,
    epoch: Epoch,
    signers: &[u16],
) -> Result<shardvault_mpc::Signature, String> {
    let kind = JobKind::Sign { epoch, path: DerivationPath::root(), payload: SignPayload::RawDigest([5; 32]) };
    let results = c.run_or_abort(job(key_id, signers, kind));
    match results.into_values().next().unwrap() {
        Ok(Outcome::Signed { signature, .. }) => Ok(signature),
        Ok(other) => Err(format!("{other:?}")),
        Err(reason) => Err(reason),
    }
}

/// The attack of the review: the coordinator drops the last refresh message
/// to one node of a 3-of-3 key and tells the others to activate. Before
/// certificates, they deleted epoch 0 while the victim held only epoch 0:
/// the key was gone. Now nothing is deleted without every node's signed
/// confirmation, and the key keeps signing.
#[test]
fn a_refresh_that_missed_one_node_cannot_destroy_a_3_of_3_key() {
    let mut c = Cluster3::new();
    let (key_id, public_key) = create_3_of_3(&mut c, Scheme::EcdsaSecp256k1);
    let results =
        c.run_withholding_last(job(key_id, &[1, 2, 3], JobKind::Refresh { from: Epoch(0), to: Epoch(1) }), NodeId(3));
    assert!(matches!(results[&NodeId(1)], Ok(Outcome::Refreshed { .. })), "{results:?}");
    assert!(!results.contains_key(&NodeId(3)), "node 3 never finished: {results:?}");
    let partial = certificate(&c, key_id, Epoch(1), &results);
    assert_eq!(partial.signatures.len(), 2);

    // The coordinator asserts activation anyway — with two confirmations, or
    // with node 1's signature passed off as node 3's.
    let mut forged = partial.clone();
    forged.signatures.insert(NodeId(3), partial.signatures[&NodeId(1)].clone());
    for certificate in [partial, forged] {
        let refused = c.run(job(key_id, &[1, 2, 3], JobKind::Activate { certificate }));
        for node in [1, 2] {
            let reason = refused[&NodeId(node)].as_ref().unwrap_err();
            assert!(reason.contains("node 3"), "{reason}");
        }
    }
    assert_eq!(c.epochs(key_id), vec![0], "every node still signs with epoch 0");
    let signature = sign_root_digest(&mut c, key_id, Epoch(0), &[1, 2, 3]).unwrap();
    tk::verify_ecdsa(&public_key, &[5; 32], &signature.bytes, signature.recovery_id.unwrap()).unwrap();

    // Refreshing to epoch 1 again is refused where epoch 1 is kept; the next
    // attempt goes to epoch 2, is confirmed by all and activates everywhere.
    let again = c.run_or_abort(job(key_id, &[1, 2, 3], JobKind::Refresh { from: Epoch(0), to: Epoch(1) }));
    assert!(again[&NodeId(1)].as_ref().unwrap_err().contains("already holds epoch 1"), "{again:?}");
    let certificate = refresh(&mut c, key_id, Epoch(0), Epoch(2));
    all_ok(c.run(job(key_id, &[1, 2, 3], JobKind::Activate { certificate })), 3);
    assert_eq!(c.epochs(key_id), vec![2]);
    let signature = sign_root_digest(&mut c, key_id, Epoch(2), &[1, 2, 3]).unwrap();
    tk::verify_ecdsa(&public_key, &[5; 32], &signature.bytes, signature.recovery_id.unwrap()).unwrap();
    // Epoch 0 and the unfinished epoch 1 are gone from every node.
    for node in c.nodes.values() {
        assert!(node.store().share_at(key_id, Epoch(0)).is_err() && node.store().share_at(key_id, Epoch(1)).is_err());
    }
}

/// A crash (or a lost message) during activation leaves some nodes at the
/// new epoch and some at the old: the confirmed epoch signs on all of them,
/// and repeating the activation finishes it.
#[test]
fn an_interrupted_activation_is_finished_by_repeating_it() {
    let mut c = Cluster3::new();
    let (key_id, public_key) = create_3_of_3(&mut c, Scheme::EddsaEd25519);
    let certificate = refresh(&mut c, key_id, Epoch(0), Epoch(1));
    // Only node 1 gets the activation before the coordinator crashes.
    let activation = job(key_id, &[1, 2, 3], JobKind::Activate { certificate: certificate.clone() });
    let replies = c.nodes.get_mut(&NodeId(1)).unwrap().handle(ToNode::Start(activation));
    assert!(matches!(replies[..], [FromNode::Done { outcome: Outcome::Activated { .. }, .. }]), "{replies:?}");
    c.restart();
    assert_eq!(c.epochs(key_id), vec![1, 0]);
    let signature = sign_root_digest_ed(&mut c, key_id, Epoch(1));
    tk::verify_ed25519(&public_key, b"mixed epochs", &signature.bytes).unwrap();
    all_ok(c.run(job(key_id, &[1, 2, 3], JobKind::Activate { certificate })), 3);
    assert_eq!(c.epochs(key_id), vec![1]);
}

fn sign_root_digest_ed(c: &mut Cluster3, key_id: KeyId, epoch: Epoch) -> shardvault_mpc::Signature {
    let payload = SignPayload::Message { message: b"mixed epochs".to_vec(), encoding: MessageEncoding::Raw };
    let outcomes =
        all_ok(c.run(job(key_id, &[1, 2, 3], JobKind::Sign { epoch, path: DerivationPath::root(), payload })), 3);
    let Outcome::Signed { signature, .. } = outcomes[0].clone() else { panic!() };
    signature
}

/// Plays node 1 as a malicious co-signer of one signing job: it runs the
/// protocol honestly except that its DKLs23 round-2 multiplication message
/// to party 2 is altered — the selective-abort probe that leaks a bit of the
/// victim's OT correlation each time. Returns node 2's answers.
fn sign_with_a_cheating_node_1(c: &mut Cluster3, key_id: KeyId, epoch: Epoch) -> Vec<FromNode> {
    use dkls23::protocols::signing::TransmitPhase2to3;
    use k256_dkls::elliptic_curve::Group;
    use shardvault_mpc::{Envelope, Payload};
    let digest = [6u8; 32];
    let kind = JobKind::Sign { epoch, path: DerivationPath::root(), payload: SignPayload::RawDigest(digest) };
    let job = job(key_id, &[1, 2], kind);
    let share = c.nodes[&NodeId(1)].store().share_at(key_id, epoch).unwrap();
    let victim = PartyId::new(2).unwrap();
    let path = DerivationPath::root();
    let signers = job.participants.keys().copied().collect();
    let request =
        shardvault_mpc::SignRequest { share: &share, hardened: None, path: &path, signers: &signers, message: &digest };
    let (mut session, first) = shardvault_mpc::sign(&request, job.session).unwrap();
    let (mut channels, mut to_victim) = shardvault_wire::Channels::open(
        job.session,
        &job.digest().unwrap(),
        NodeId(1),
        &c.secrets[&NodeId(1)],
        &c.cluster,
        job.nodes(),
    )
    .unwrap();
    let send = |channels: &mut shardvault_wire::Channels, envelopes: Vec<Envelope>| -> Vec<shardvault_wire::Frame> {
        let mut frames = Vec::new();
        for mut envelope in envelopes {
            if envelope.to == Some(victim) && envelope.round == 1 {
                let mut m: TransmitPhase2to3<k256_dkls::Secp256k1> =
                    postcard::from_bytes(envelope.payload.as_bytes()).unwrap();
                m.public_share = (k256_dkls::ProjectivePoint::from(m.public_share)
                    + k256_dkls::ProjectivePoint::generator())
                .to_affine();
                envelope.payload = Payload::new(postcard::to_stdvec(&m).unwrap());
            }
            frames.extend(channels.send(NodeId(2), &envelope.to_bytes()).unwrap());
        }
        frames
    };
    to_victim.extend(send(&mut channels, first));
    let mut answers = Vec::new();
    let mut inbox: VecDeque<ToNode> = VecDeque::from([ToNode::Start(job.clone())]);
    while let Some(message) = inbox.pop_front() {
        inbox.extend(to_victim.drain(..).map(ToNode::Frame));
        for reply in c.nodes.get_mut(&NodeId(2)).unwrap().handle(message) {
            match reply {
                FromNode::Frame(frame) => {
                    let received = channels.receive(frame).unwrap();
                    to_victim.extend(received.frames);
                    for (_, plaintext) in received.messages {
                        let envelope = Envelope::from_bytes(&plaintext).unwrap();
                        if let Ok(out) = session.receive(envelope) {
                            to_victim.extend(send(&mut channels, out));
                        }
                    }
                }
                other => answers.push(other),
            }
        }
        inbox.extend(to_victim.drain(..).map(ToNode::Frame));
    }
    answers
}

/// DKLs23's ban abort is acted on: the victim records the ban durably,
/// refuses every later job with the culprit for that key (also after a
/// restart, also when the coordinator names the signers), keeps signing
/// with the others, and a complete refresh — which renews the OT state the
/// probe attacks — clears it.
#[test]
fn a_dkls23_ban_is_kept_and_enforced_until_a_refresh() {
    let mut c = Cluster3::new();
    let (key_id, public_key) = create(&mut c, Scheme::EcdsaSecp256k1);
    let answers = sign_with_a_cheating_node_1(&mut c, key_id, Epoch(0));
    assert!(matches!(&answers[..], [FromNode::Failed { culprit: Some(NodeId(1)), banned: true, .. }]), "{answers:?}");
    c.restart();
    let refused = sign_root_digest(&mut c, key_id, Epoch(0), &[1, 2]).unwrap_err();
    assert!(refused.contains("banned"), "{refused}");
    let signature = sign_root_digest(&mut c, key_id, Epoch(0), &[2, 3]).unwrap();
    tk::verify_ecdsa(&public_key, &[5; 32], &signature.bytes, signature.recovery_id.unwrap()).unwrap();

    let certificate = refresh(&mut c, key_id, Epoch(0), Epoch(1));
    all_ok(c.run(job(key_id, &[1, 2, 3], JobKind::Activate { certificate })), 3);
    let signature = sign_root_digest(&mut c, key_id, Epoch(1), &[1, 2]).unwrap();
    tk::verify_ecdsa(&public_key, &[5; 32], &signature.bytes, signature.recovery_id.unwrap()).unwrap();
}

/// Different epochs are not a ban: a coordinator that names an epoch one
/// signer does not hold gets a refusal that blames no one.
#[test]
fn an_epoch_mismatch_is_a_refusal_not_a_ban() {
    let mut c = Cluster3::new();
    let (key_id, _) = create(&mut c, Scheme::EcdsaSecp256k1);
    let kind =
        JobKind::Sign { epoch: Epoch(1), path: DerivationPath::root(), payload: SignPayload::RawDigest([5; 32]) };
    let job = job(key_id, &[1, 2], kind);
    let replies = c.nodes.get_mut(&NodeId(1)).unwrap().handle(ToNode::Start(job));
    assert!(
        matches!(&replies[..], [FromNode::Failed { culprit: None, banned: false, reason, .. }] if reason.contains("epoch 1")),
        "{replies:?}"
    );
}
