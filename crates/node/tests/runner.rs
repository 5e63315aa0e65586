//! Three nodes, each with its own sealed store, run whole jobs through a relay
//! that only moves frames: key generation, derivation, signing (checked with
//! independent verifiers), refresh with activation, and restarts.

use std::collections::{BTreeMap, VecDeque};

use shardvault_chains::{sample, Chain, KeyType, MessageFormat};
use shardvault_harness::approved;
use shardvault_mpc::OsRng;
use shardvault_mpc::{DerivationPath, Epoch, KeyId, PartyId, Scheme, SessionId, Threshold};
use shardvault_node::{RawSigning, SignLogStatus};
use shardvault_testkit as tk;
use shardvault_wire::{FromNode, Job, JobKind, NodeId, Outcome, RefreshCertificate, SignPayload, ToNode};

/// Three nodes in this process (the shared harness), relayed synchronously.
type Cluster3 = shardvault_harness::Nodes;

/// Keys here are created on nodes 1, 2, 3 as parties 1, 2, 3. The job
/// carries the request for exactly what it does, approved by the harness
/// organisation's owner (governance itself is tested in governance.rs).
fn job(key_id: KeyId, nodes: &[u16], kind: JobKind) -> Job {
    let participants = nodes.iter().map(|n| (PartyId::new(u8::try_from(*n).unwrap()).unwrap(), NodeId(*n))).collect();
    approved(Job { session: SessionId::random(), key_id, participants, kind, governance: None })
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
    let payload = SignPayload::Message { message: message.to_vec(), format: MessageFormat::Eip191 };
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
fn a_solana_key_signs_off_chain_messages() {
    let mut c = Cluster3::new();
    let (key_id, _) = create(&mut c, Scheme::EddsaEd25519);
    let child = derive(&mut c, key_id, "m/9'/0'/501'/0'");
    let path = "m/9'/0'/501'/0'/0/7";
    let payload =
        SignPayload::Message { message: b"I own this address".to_vec(), format: MessageFormat::SolanaOffchain };
    let outcomes =
        all_ok(c.run(job(key_id, &[2, 3], JobKind::Sign { epoch: Epoch(0), path: path.parse().unwrap(), payload })), 2);
    let Outcome::Signed { signature, signed } = &outcomes[0] else { panic!() };
    let derived = shardvault_mpc::derive_public(
        Scheme::EddsaEd25519,
        &shardvault_mpc::ExtendedPublicKey { public_key: child.clone(), chain_code: chain_code(&mut c, key_id) },
        &[0, 7],
    )
    .unwrap();
    assert_eq!(signature.public_key, derived.public_key);
    // The off-chain message names this key as its signer; ed25519-dalek verifies over the testkit's write-up.
    let expected = tk::solana_offchain_message(&derived.public_key, b"I own this address");
    assert_eq!(signed, &expected);
    tk::verify_ed25519(&signature.public_key, &expected, &signature.bytes).unwrap();
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
    // Every path here starts hardened (root-based paths are refused outright).
    let hardened: DerivationPath = "m/1'".parse().unwrap();
    derive(&mut c, ed, "m/1'");
    derive(&mut c, ecdsa, "m/1'");
    let transaction = |chain: Chain, network: &str, unsigned: Vec<u8>| JobKind::Sign {
        epoch: Epoch(0),
        path: hardened.clone(),
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
            JobKind::Sign { epoch: Epoch(0), path: hardened.clone(), payload: SignPayload::RawDigest([1; 32]) },
            "Ed25519 signs bytes, not digests",
        ),
        (
            ecdsa,
            JobKind::Sign { epoch: Epoch(0), path: hardened.clone(), payload: SignPayload::RawBytes(b"x".to_vec()) },
            "signs 32-byte digests",
        ),
        (
            ecdsa,
            JobKind::Sign { epoch: Epoch(0), path: hardened.clone(), payload: SignPayload::RawDigest([9; 32]) },
            "raw signing is off",
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
    // With the operator's opt-in, a named raw digest is signed as is.
    c.raw_signing = RawSigning::Allowed;
    c.restart();
    let results = all_ok(
        c.run(job(
            ecdsa,
            &[1, 3],
            JobKind::Sign { epoch: Epoch(0), path: hardened.clone(), payload: SignPayload::RawDigest([9; 32]) },
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
    derive(&mut c, key_id, "m/1'");
    let payload = SignPayload::Message { message: b"still works".to_vec(), format: MessageFormat::SolanaOffchain };
    all_ok(c.run(job(key_id, &[1, 3], JobKind::Sign { epoch: Epoch(0), path: "m/1'".parse().unwrap(), payload })), 2);
    // A finished session id cannot be started again.
    let signed = job(
        key_id,
        &[1, 3],
        JobKind::Sign {
            epoch: Epoch(0),
            path: "m/1'".parse().unwrap(),
            payload: SignPayload::Message { message: b"x".to_vec(), format: MessageFormat::SolanaOffchain },
        },
    );
    all_ok(c.run(signed.clone()), 2);
    let replayed = c.run(signed);
    assert!(replayed.values().all(|r| r.as_ref().unwrap_err().contains("session id already used")), "{replayed:?}");
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

/// The hardened path the refresh and ban tests sign at (derived first).
const ETH_PATH: &str = "m/9'/0'/60'/0'";
const MESSAGE: &[u8] = b"pay 1 ETH to Bob";

/// Signs [`MESSAGE`] (EIP-191) at [`ETH_PATH`] with `signers` at `epoch`,
/// and checks the signature against `child` with libsecp256k1.
fn sign_eip191(c: &mut Cluster3, key_id: KeyId, epoch: Epoch, signers: &[u16], child: &[u8]) -> Result<(), String> {
    let payload = SignPayload::Message { message: MESSAGE.to_vec(), format: MessageFormat::Eip191 };
    let kind = JobKind::Sign { epoch, path: ETH_PATH.parse().unwrap(), payload };
    let results = c.run_or_abort(job(key_id, signers, kind));
    match results.into_values().next().unwrap() {
        Ok(Outcome::Signed { signature, signed }) => {
            assert_eq!(signed, tk::eip191_digest(MESSAGE));
            tk::verify_ecdsa(child, &signed, &signature.bytes, signature.recovery_id.unwrap()).unwrap();
            Ok(())
        }
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
    let (key_id, _) = create_3_of_3(&mut c, Scheme::EcdsaSecp256k1);
    let child = derive(&mut c, key_id, ETH_PATH);
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
    sign_eip191(&mut c, key_id, Epoch(0), &[1, 2, 3], &child).unwrap();

    // Refreshing to epoch 1 again is refused where epoch 1 is kept; the next
    // attempt goes to epoch 2, is confirmed by all and activates everywhere.
    let again = c.run_or_abort(job(key_id, &[1, 2, 3], JobKind::Refresh { from: Epoch(0), to: Epoch(1) }));
    assert!(again[&NodeId(1)].as_ref().unwrap_err().contains("already holds epoch 1"), "{again:?}");
    let certificate = refresh(&mut c, key_id, Epoch(0), Epoch(2));
    all_ok(c.run(job(key_id, &[1, 2, 3], JobKind::Activate { certificate })), 3);
    assert_eq!(c.epochs(key_id), vec![2]);
    sign_eip191(&mut c, key_id, Epoch(2), &[1, 2, 3], &child).unwrap();
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
    let (key_id, _) = create_3_of_3(&mut c, Scheme::EcdsaSecp256k1);
    let child = derive(&mut c, key_id, ETH_PATH);
    let certificate = refresh(&mut c, key_id, Epoch(0), Epoch(1));
    // Only node 1 gets the activation before the coordinator crashes.
    let activation = job(key_id, &[1, 2, 3], JobKind::Activate { certificate: certificate.clone() });
    let replies = c.nodes.get_mut(&NodeId(1)).unwrap().handle(ToNode::Start(activation));
    assert!(matches!(replies[..], [FromNode::Done { outcome: Outcome::Activated { .. }, .. }]), "{replies:?}");
    c.restart();
    assert_eq!(c.epochs(key_id), vec![1, 0]);
    sign_eip191(&mut c, key_id, Epoch(1), &[1, 2, 3], &child).unwrap();
    all_ok(c.run(job(key_id, &[1, 2, 3], JobKind::Activate { certificate })), 3);
    assert_eq!(c.epochs(key_id), vec![1]);
}

/// Plays node 1 as a malicious co-signer of one signing job: it runs the
/// protocol honestly except that its DKLs23 round-2 multiplication message
/// to party 2 is altered — the selective-abort probe that leaks a bit of the
/// victim's OT correlation each time. Returns node 2's answers.
fn sign_with_a_cheating_node_1(c: &mut Cluster3, key_id: KeyId, epoch: Epoch) -> Vec<FromNode> {
    use dkls23::protocols::signing::TransmitPhase2to3;
    use k256_dkls::elliptic_curve::Group;
    use shardvault_mpc::{Envelope, Payload};
    let digest = tk::eip191_digest(MESSAGE);
    let payload = SignPayload::Message { message: MESSAGE.to_vec(), format: MessageFormat::Eip191 };
    let kind = JobKind::Sign { epoch, path: ETH_PATH.parse().unwrap(), payload };
    let job = job(key_id, &[1, 2], kind);
    let share = c.nodes[&NodeId(1)].store().share_at(key_id, epoch).unwrap();
    let victim = PartyId::new(2).unwrap();
    let path: DerivationPath = ETH_PATH.parse().unwrap();
    let tweak = c.nodes[&NodeId(1)].store().tweak(key_id, &path).unwrap().unwrap();
    let signers = job.participants.keys().copied().collect();
    let request = shardvault_mpc::SignRequest {
        share: &share,
        hardened: Some(&tweak),
        path: &path,
        signers: &signers,
        message: &digest,
    };
    let (mut session, first) = shardvault_mpc::sign(&request, job.session, &mut OsRng).unwrap();
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
            frames.extend(channels.send(NodeId(2), &envelope.to_bytes().unwrap()).unwrap());
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
    let (key_id, _) = create(&mut c, Scheme::EcdsaSecp256k1);
    let child = derive(&mut c, key_id, ETH_PATH);
    let answers = sign_with_a_cheating_node_1(&mut c, key_id, Epoch(0));
    assert!(matches!(&answers[..], [FromNode::Failed { culprit: Some(NodeId(1)), banned: true, .. }]), "{answers:?}");
    c.restart();
    let refused = sign_eip191(&mut c, key_id, Epoch(0), &[1, 2], &child).unwrap_err();
    assert!(refused.contains("banned"), "{refused}");
    sign_eip191(&mut c, key_id, Epoch(0), &[2, 3], &child).unwrap();

    // A refresh that is never activated clears nothing, also when a job
    // names the pending epoch.
    let certificate = refresh(&mut c, key_id, Epoch(0), Epoch(1));
    let refused = sign_eip191(&mut c, key_id, Epoch(1), &[1, 2], &child).unwrap_err();
    assert!(refused.contains("banned"), "{refused}");
    all_ok(c.run(job(key_id, &[1, 2, 3], JobKind::Activate { certificate })), 3);
    sign_eip191(&mut c, key_id, Epoch(1), &[1, 2], &child).unwrap();
}

/// Different epochs are not a ban: a coordinator that names an epoch one
/// signer does not hold gets a refusal that blames no one.
#[test]
fn an_epoch_mismatch_is_a_refusal_not_a_ban() {
    let mut c = Cluster3::new();
    let (key_id, _) = create(&mut c, Scheme::EcdsaSecp256k1);
    derive(&mut c, key_id, ETH_PATH);
    let payload = SignPayload::Message { message: MESSAGE.to_vec(), format: MessageFormat::Eip191 };
    let kind = JobKind::Sign { epoch: Epoch(1), path: ETH_PATH.parse().unwrap(), payload };
    let job = job(key_id, &[1, 2], kind);
    let replies = c.nodes.get_mut(&NodeId(1)).unwrap().handle(ToNode::Start(job));
    assert!(
        matches!(&replies[..], [FromNode::Failed { culprit: None, banned: false, reason, .. }] if reason.contains("epoch 1")),
        "{replies:?}"
    );
}

/// A key, a fully hardened path derived on every node (its child key is the
/// derived key) and a sign job at it that every release accepts: an EIP-191
/// message for ECDSA (DKLs23), a Solana transfer for Ed25519 (FROST).
struct Signing {
    key_id: KeyId,
    scheme: Scheme,
    child: Vec<u8>,
    kind: JobKind,
}

impl Signing {
    fn new(c: &mut Cluster3, scheme: Scheme) -> Self {
        let (key_id, _) = create(c, scheme);
        let path = match scheme {
            Scheme::EddsaEd25519 => "m/9'/0'/501'/0'",
            _ => "m/9'/0'/60'/0'",
        };
        let child = derive(c, key_id, path);
        let payload = match scheme {
            Scheme::EddsaEd25519 => {
                let sample = sample::transfer(Chain::Solana, KeyType::Ed25519, &child).unwrap();
                SignPayload::Transaction {
                    chain: Chain::Solana,
                    network: sample.network.into(),
                    unsigned: sample.unsigned,
                }
            }
            _ => SignPayload::Message { message: b"pay 1 ETH to Bob".to_vec(), format: MessageFormat::Eip191 },
        };
        Signing { key_id, scheme, child, kind: JobKind::Sign { epoch: Epoch(0), path: path.parse().unwrap(), payload } }
    }

    fn job(&self, nodes: &[u16]) -> Job {
        job(self.key_id, nodes, self.kind.clone())
    }

    /// Checks a signature with an independent verifier.
    fn verify(&self, signed: &[u8], signature: &shardvault_mpc::Signature) {
        match self.scheme {
            Scheme::EddsaEd25519 => tk::verify_ed25519(&self.child, signed, &signature.bytes).unwrap(),
            _ => tk::verify_ecdsa(&self.child, signed, &signature.bytes, signature.recovery_id.unwrap()).unwrap(),
        }
    }
}

/// Relays `job` like [`Cluster3::run`], but drops the `drop`-th frame
/// (1-based) from `from` to `to`; returns the outcomes and how many frames
/// went from `from` to `to`. Jobs may be left running.
fn relay(
    c: &mut Cluster3,
    job: &Job,
    (from, to): (NodeId, NodeId),
    drop: Option<usize>,
) -> (BTreeMap<NodeId, Result<Outcome, String>>, usize) {
    let mut seen = 0;
    let replies = c.deliver(Cluster3::starts(job), |frame| {
        if (frame.from, frame.to) == (from, to) {
            seen += 1;
            if Some(seen) == drop {
                return false;
            }
        }
        true
    });
    (shardvault_harness::collect(replies), seen)
}

/// Finding 8: a co-signer that withholds its last message gets a valid
/// signature; the honest node must have logged it before its own last
/// message left.
#[test]
fn a_cosigner_that_withholds_its_last_message_cannot_sign_unlogged() {
    let mut c = Cluster3::new();
    let (honest, cheat) = (NodeId(1), NodeId(2));
    for scheme in [Scheme::EcdsaSecp256k1, Scheme::EddsaEd25519] {
        let signing = Signing::new(&mut c, scheme);
        let logged_before = c.nodes[&honest].store().sign_log().unwrap().len();
        // How many frames the cheat sends the honest node in a whole run.
        let (results, frames) = relay(&mut c, &signing.job(&[1, 2]), (cheat, honest), None);
        assert_eq!(results.len(), 2, "{results:?}");
        // Again, with the cheat's last frame to the honest node dropped.
        let attack = signing.job(&[1, 2]);
        let (results, _) = relay(&mut c, &attack, (cheat, honest), Some(frames));
        let Some(Ok(Outcome::Signed { signed, signature })) = results.get(&cheat) else {
            panic!("the cheat should hold a signature: {results:?}")
        };
        signing.verify(signed, signature);
        assert!(!results.contains_key(&honest), "the honest node cannot have finished: {results:?}");
        assert_eq!(c.nodes[&honest].running(), 1);
        // Yet the signature is in the honest node's log.
        let log = c.nodes[&honest].store().sign_log().unwrap();
        assert_eq!(log.len(), logged_before + 2, "{scheme}: {log:?}");
        let entry = log.last().unwrap();
        assert_eq!(entry.session, Some(attack.session));
        assert_eq!(entry.key_id, signing.key_id);
        assert_eq!(&entry.signed, signed);
        assert_eq!(entry.signers, vec![(PartyId::new(1).unwrap(), NodeId(1)), (PartyId::new(2).unwrap(), NodeId(2))]);
        assert_eq!(entry.status, SignLogStatus::MayHaveContributed);
        assert!(!entry.completed());
        // The complete run before it is recorded as completed, with its signature.
        let previous = &log[log.len() - 2];
        assert!(matches!(&previous.status, SignLogStatus::Completed { signature } if signature.len() == 64));
        c.nodes.get_mut(&honest).unwrap().handle(ToNode::Abort(attack.session));
    }
}

/// Finding 8, disk full: when the sign log cannot be written, the node
/// sends nothing of the job (not even a handshake) and says why.
#[test]
fn a_node_whose_sign_log_cannot_be_written_sends_nothing() {
    let mut c = Cluster3::new();
    let signing = Signing::new(&mut c, Scheme::EcdsaSecp256k1);
    // The store's next insert into the log fails the way a full disk does (SQLITE_FULL).
    let db = rusqlite::Connection::open(&c.paths[&NodeId(1)]).unwrap();
    db.execute_batch(
        "CREATE TRIGGER disk_full BEFORE INSERT ON sign_log BEGIN SELECT RAISE(FAIL, 'database or disk is full'); END;",
    )
    .unwrap();
    let job = signing.job(&[1, 3]);
    // Node 3 starts first and talks to node 1, whose Start then fails.
    let early = c.nodes.get_mut(&NodeId(3)).unwrap().handle(ToNode::Start(job.clone()));
    let mut replies = Vec::new();
    for reply in early {
        let FromNode::Frame(frame) = reply else { panic!("{reply:?}") };
        replies.extend(c.nodes.get_mut(&NodeId(1)).unwrap().handle(ToNode::Frame(frame)));
    }
    replies.extend(c.nodes.get_mut(&NodeId(1)).unwrap().handle(ToNode::Start(job.clone())));
    assert_eq!(replies.len(), 1, "{replies:?}");
    let FromNode::Failed { reason, .. } = &replies[0] else { panic!("{replies:?}") };
    assert!(reason.contains("disk is full"), "{reason}");
    assert_eq!(c.nodes[&NodeId(1)].running(), 0);
    c.nodes.get_mut(&NodeId(3)).unwrap().handle(ToNode::Abort(job.session));
    // Room again: the node signs, and logs.
    db.execute_batch("DROP TRIGGER disk_full").unwrap();
    let outcomes = all_ok(c.run(signing.job(&[1, 3])), 2);
    let Outcome::Signed { signed, signature } = &outcomes[0] else { panic!() };
    signing.verify(signed, signature);
    let log = c.nodes[&NodeId(1)].store().sign_log().unwrap();
    assert_eq!(log.len(), 1);
    assert!(log[0].completed());
    // Full again, only by the time the signature is assembled: the intent
    // stands ("may have contributed") and the signature is still reported.
    db.execute_batch(
        "CREATE TRIGGER disk_full BEFORE INSERT ON sign_log WHEN NEW.kind = 'done'
         BEGIN SELECT RAISE(FAIL, 'database or disk is full'); END;",
    )
    .unwrap();
    let outcomes = all_ok(c.run(signing.job(&[1, 3])), 2);
    let Outcome::Signed { signed, signature } = &outcomes[0] else { panic!() };
    signing.verify(signed, signature);
    let log = c.nodes[&NodeId(1)].store().sign_log().unwrap();
    assert_eq!(log.len(), 2);
    assert_eq!(log[1].status, SignLogStatus::MayHaveContributed);
}

/// The transaction of each family that a message request could try to get
/// signed: its bytes as a "message", and a check that a signature (bytes,
/// the key it is under) is valid for it as a transaction, by an independent
/// verifier (libsecp256k1, ed25519-dalek).
struct TxAttack {
    family: &'static str,
    scheme: Scheme,
    /// The bytes passed as the message.
    message: Vec<u8>,
    /// What the chain's transaction signature is over (a digest, or Ed25519's message).
    tx_signing_input: Vec<u8>,
}

/// Where the attack and raw-signing tests sign: a hardened path of no chain's shape.
const ATTACK_PATH: &str = "m/1'";

fn attacks(c: &mut Cluster3) -> Vec<(KeyId, TxAttack)> {
    use shardvault_chains::{evm, psbt, tx::UnsignedTx};
    // Every key signs at ATTACK_PATH (root-based paths are refused), so the
    // transactions are built for that child key.
    let (ed, _) = create(c, Scheme::EddsaEd25519);
    let (ecdsa, _) = create(c, Scheme::EcdsaSecp256k1);
    let (schnorr, _) = create(c, Scheme::SchnorrSecp256k1);
    let ed_key = derive(c, ed, ATTACK_PATH);
    let ecdsa_key = derive(c, ecdsa, ATTACK_PATH);
    let schnorr_key = derive(c, schnorr, ATTACK_PATH);
    let tx_input = |chain: Chain, key: KeyType, pk: &[u8]| {
        let sample = sample::transfer(chain, key, pk).unwrap();
        let input = UnsignedTx::parse(chain, Some(sample.network), &sample.unsigned).unwrap().signing_input().to_vec();
        (sample.unsigned, input)
    };
    let mut out = Vec::new();
    // Ed25519: the Solana message and the Aptos signing message are what the
    // key signs for a transaction; a Sui transaction is signed over its intent digest.
    let (solana, input) = tx_input(Chain::Solana, KeyType::Ed25519, &ed_key);
    out.push((
        ed,
        TxAttack { family: "solana", scheme: Scheme::EddsaEd25519, message: solana, tx_signing_input: input },
    ));
    let (_, input) = tx_input(Chain::Aptos, KeyType::Ed25519, &ed_key);
    out.push((
        ed,
        TxAttack { family: "aptos", scheme: Scheme::EddsaEd25519, message: input.clone(), tx_signing_input: input },
    ));
    let (_, input) = tx_input(Chain::Sui, KeyType::Ed25519, &ed_key);
    out.push((
        ed,
        TxAttack { family: "sui", scheme: Scheme::EddsaEd25519, message: input.clone(), tx_signing_input: input },
    ));
    // ECDSA: a Cosmos SignDoc and a Tron raw_data are signed as sha256 of their bytes.
    for chain in [Chain::Cosmos, Chain::Tron] {
        let (unsigned, input) = tx_input(chain, KeyType::EcdsaSecp256k1, &ecdsa_key);
        assert_eq!(input, tk::sha256(&unsigned));
        out.push((
            ecdsa,
            TxAttack {
                family: chain.name(),
                scheme: Scheme::EcdsaSecp256k1,
                message: unsigned,
                tx_signing_input: input,
            },
        ));
    }
    // EVM: the EIP-1559 signing preimage (its digest is keccak256 of it).
    let preimage = sample::transfer(Chain::Ethereum, KeyType::EcdsaSecp256k1, &ecdsa_key).unwrap().unsigned;
    let digest = evm::UnsignedEvmTx::parse(&preimage, 1).unwrap().digest().to_vec();
    out.push((
        ecdsa,
        TxAttack { family: "ethereum", scheme: Scheme::EcdsaSecp256k1, message: preimage, tx_signing_input: digest },
    ));
    // Taproot: the BIP341 sighash is sha256(tag ‖ tag ‖ SigMsg); the attacker
    // passes that preimage, whose plain sha256 is the sighash.
    let unsigned = sample::transfer(Chain::Bitcoin, KeyType::SchnorrSecp256k1, &schnorr_key).unwrap().unsigned;
    let sighash = psbt::UnsignedPsbt::parse(&unsigned, psbt::network(Chain::Bitcoin, "bitcoin").unwrap())
        .unwrap()
        .input_digest(0)
        .unwrap()
        .digest
        .to_vec();
    let parsed = bitcoin::Psbt::deserialize(&unsigned).unwrap();
    let spent: Vec<bitcoin::TxOut> = parsed.inputs.iter().map(|i| i.witness_utxo.clone().unwrap()).collect();
    let mut sig_msg = Vec::new();
    bitcoin::sighash::SighashCache::new(&parsed.unsigned_tx)
        .taproot_encode_signing_data_to(
            &mut sig_msg,
            0,
            &bitcoin::sighash::Prevouts::All(&spent),
            None,
            None,
            bitcoin::TapSighashType::Default,
        )
        .unwrap();
    let tag = tk::sha256(b"TapSighash");
    let preimage = [&tag[..], &tag, &sig_msg].concat();
    assert_eq!(tk::sha256(&preimage).to_vec(), sighash, "the preimage hashes to the sighash");
    out.push((
        schnorr,
        TxAttack { family: "taproot", scheme: Scheme::SchnorrSecp256k1, message: preimage, tx_signing_input: sighash },
    ));
    out
}

/// Whether `signature` is a valid transaction signature for `attack`.
fn valid_as_transaction(attack: &TxAttack, signature: &shardvault_mpc::Signature) -> bool {
    match attack.scheme {
        Scheme::EddsaEd25519 => {
            tk::verify_ed25519(&signature.public_key, &attack.tx_signing_input, &signature.bytes).is_ok()
        }
        Scheme::EcdsaSecp256k1 => (0..2).any(|rid| {
            tk::recover_ecdsa(&attack.tx_signing_input, &signature.bytes, rid).is_ok_and(|k| k == signature.public_key)
        }),
        Scheme::SchnorrSecp256k1 => {
            tk::verify_bip340(&signature.public_key, &attack.tx_signing_input, &signature.bytes).is_ok()
        }
    }
}

/// Issue 8 item 1: a message request whose bytes are a valid transaction
/// (Solana message, Aptos signing message, Sui tx digest, Cosmos SignDoc,
/// Tron raw_data, EVM preimage, Taproot SigMsg preimage), sent in every
/// message format and as the raw kinds, is refused by the nodes or signed
/// into something libsecp256k1 / ed25519-dalek reject as the transaction's signature.
#[test]
fn a_message_request_never_yields_a_transaction_signature() {
    let mut c = Cluster3::new();
    let mut signed = 0;
    for (key_id, attack) in attacks(&mut c) {
        let mut payloads: Vec<(String, SignPayload)> = MessageFormat::NAMES
            .iter()
            .map(|name| {
                let format = MessageFormat::parse(name, None).unwrap();
                (name.to_string(), SignPayload::Message { message: attack.message.clone(), format })
            })
            .collect();
        payloads.push(("raw bytes".into(), SignPayload::RawBytes(attack.tx_signing_input.clone())));
        if let Ok(digest) = <[u8; 32]>::try_from(attack.tx_signing_input.as_slice()) {
            payloads.push(("raw digest".into(), SignPayload::RawDigest(digest)));
        }
        for (name, payload) in payloads {
            let results = c.run(job(
                key_id,
                &[1, 2],
                JobKind::Sign { epoch: Epoch(0), path: ATTACK_PATH.parse().unwrap(), payload },
            ));
            assert_eq!(results.len(), 2);
            for result in results.values() {
                if let Ok(Outcome::Signed { signature, .. }) = result {
                    signed += 1;
                    assert!(
                        !valid_as_transaction(&attack, signature),
                        "{}: a {name} request gave a valid transaction signature",
                        attack.family
                    );
                }
            }
        }
    }
    // Formats that take arbitrary bytes did sign (their prefix is what protects).
    assert!(signed > 0);
}

/// Raw kinds are their own gate: off by default on the node, on only by the
/// operator's choice; each format is refused for another chain's path.
#[test]
fn raw_signing_needs_the_operator_and_formats_their_chain() {
    let mut c = Cluster3::new();
    let (ed, _) = create(&mut c, Scheme::EddsaEd25519);
    let (ecdsa, _) = create(&mut c, Scheme::EcdsaSecp256k1);
    let (schnorr, _) = create(&mut c, Scheme::SchnorrSecp256k1);
    for key_id in [ed, ecdsa, schnorr] {
        derive(&mut c, key_id, ATTACK_PATH);
    }
    let raw = [
        (ed, SignPayload::RawBytes(b"anything".to_vec())),
        (ecdsa, SignPayload::RawDigest([5; 32])),
        (schnorr, SignPayload::RawDigest([6; 32])),
    ];
    for (key_id, payload) in raw.clone() {
        let results =
            c.run(job(key_id, &[1, 2], JobKind::Sign { epoch: Epoch(0), path: ATTACK_PATH.parse().unwrap(), payload }));
        assert!(results.values().all(|r| r.as_ref().unwrap_err().contains("--allow-raw-signing")), "{results:?}");
    }
    // A format on a path of another chain (MPCVault's coin type), and a format of another key type.
    derive(&mut c, ecdsa, "m/9'/0'/195'/0'/0'/0'");
    derive(&mut c, ed, "m/9'/0'/501'/0'/0'/0'");
    derive(&mut c, schnorr, "m/9'/0'/2'/0'/0'/0'");
    let wrong = [
        (ecdsa, "m/9'/0'/195'/0'/0'/0'", MessageFormat::Eip191, "coin type 195"),
        (
            ecdsa,
            "m/9'/0'/195'/0'/0'/0'",
            MessageFormat::CosmosAdr36 { bech32_prefix: "cosmos".into() },
            "coin type 195",
        ),
        (ed, "m/9'/0'/501'/0'/0'/0'", MessageFormat::SuiPersonalMessage, "coin type 501"),
        (ed, "m/9'/0'/501'/0'/0'/0'", MessageFormat::Eip191, "not Ed25519 keys"),
        (schnorr, "m/9'/0'/2'/0'/0'/0'", MessageFormat::Bip322Simple, "coin type 2"),
        (schnorr, "m/9'/0'/2'/0'/0'/0'", MessageFormat::LitecoinSignedMessage, "not BIP340"),
    ];
    for (key_id, path, format, expected) in wrong {
        let payload = SignPayload::Message { message: b"hello".to_vec(), format };
        let results =
            c.run(job(key_id, &[1, 3], JobKind::Sign { epoch: Epoch(0), path: path.parse().unwrap(), payload }));
        assert!(results.values().all(|r| r.as_ref().unwrap_err().contains(expected)), "{expected}: {results:?}");
    }
    // The right chain's path signs; the raw kinds sign once the operator allows them.
    let payload = SignPayload::Message { message: b"hello".to_vec(), format: MessageFormat::TronSignedMessage };
    all_ok(
        c.run(job(
            ecdsa,
            &[1, 3],
            JobKind::Sign { epoch: Epoch(0), path: "m/9'/0'/195'/0'/0'/0'".parse().unwrap(), payload },
        )),
        2,
    );
    c.raw_signing = RawSigning::Allowed;
    c.restart();
    for (key_id, payload) in raw {
        all_ok(
            c.run(job(key_id, &[2, 3], JobKind::Sign { epoch: Epoch(0), path: ATTACK_PATH.parse().unwrap(), payload })),
            2,
        );
    }
}

/// The failure `node` answers to `job` on its own (before any peer talks).
fn refusal(c: &mut Cluster3, node: u16, job: &Job) -> String {
    let replies = c.nodes.get_mut(&NodeId(node)).unwrap().handle(ToNode::Start(job.clone()));
    match replies.as_slice() {
        [FromNode::Failed { reason, culprit: None, .. }] => reason.clone(),
        other => panic!("node {node} did not refuse {}: {other:?}", job.kind.name()),
    }
}

#[test]
fn a_second_key_generation_under_a_known_id_is_refused() {
    let mut c = Cluster3::new();
    let (key_id, _) = create(&mut c, Scheme::EcdsaSecp256k1);
    let path = "m/9'/0'/60'/0'/0'/0'";
    let child = derive(&mut c, key_id, path);
    // Refresh first: the original key is at epoch 1, so a new epoch-0 row
    // would not collide with it on the primary key.
    let certificate = refresh(&mut c, key_id, Epoch(0), Epoch(1));
    all_ok(c.run(job(key_id, &[1, 2, 3], JobKind::Activate { certificate })), 3);
    let again = job(
        key_id,
        &[1, 2, 3],
        JobKind::CreateKey { scheme: Scheme::EcdsaSecp256k1, threshold: Threshold::new(2, 3).unwrap() },
    );
    for node in [1, 2, 3] {
        let reason = refusal(&mut c, node, &again);
        assert!(reason.contains("already known on this node"), "{reason}");
    }
    // The original key still signs, at its epoch, for the same address.
    let (signed, signature) = sign_eth(&mut c, key_id, path, &[1, 2], b"still the same key");
    tk::verify_ecdsa(&child, &signed, &signature.bytes, signature.recovery_id.unwrap()).unwrap();
    assert!(c.nodes.values().all(|n| n.store().active_share(key_id).unwrap().epoch() == Epoch(1)));
}

#[test]
fn the_party_map_is_pinned_at_key_generation() {
    let mut c = Cluster3::new();
    let (key_id, _) = create(&mut c, Scheme::EcdsaSecp256k1);
    derive(&mut c, key_id, "m/1'");
    let party = |p: u8| PartyId::new(p).unwrap();
    let payload = SignPayload::Message { message: b"pinned".to_vec(), format: MessageFormat::Eip191 };
    let sign = JobKind::Sign { epoch: Epoch(0), path: "m/1'".parse().unwrap(), payload };
    // The coordinator (with node 3 playing along) says node 3 is party 2:
    // node 1 checks its peer against the map pinned at the DKG and refuses.
    let mut remapped = job(key_id, &[1, 3], sign.clone());
    remapped.participants = BTreeMap::from([(party(1), NodeId(1)), (party(2), NodeId(3))]);
    let reason = refusal(&mut c, 1, &remapped);
    assert!(reason.contains("pinned it to node 2"), "{reason}");
    // The same for derivation, refresh and activation, and for a party the key does not have.
    let mut everyone = BTreeMap::from([(party(1), NodeId(1)), (party(2), NodeId(3)), (party(3), NodeId(2))]);
    for kind in [
        JobKind::DeriveHardened { path: "m/2'".parse().unwrap() },
        JobKind::Refresh { from: Epoch(0), to: Epoch(1) },
        JobKind::Activate {
            certificate: RefreshCertificate { epoch: Epoch(1), public_key: Vec::new(), signatures: BTreeMap::new() },
        },
    ] {
        let job = approved(Job {
            session: SessionId::random(),
            key_id,
            participants: everyone.clone(),
            kind,
            governance: None,
        });
        let reason = refusal(&mut c, 1, &job);
        assert!(reason.contains("pinned it to node"), "{reason}");
    }
    everyone = BTreeMap::from([(party(1), NodeId(1)), (party(4), NodeId(2))]);
    let reason = refusal(
        &mut c,
        1,
        &approved(Job {
            session: SessionId::random(),
            key_id,
            participants: everyone,
            kind: sign.clone(),
            governance: None,
        }),
    );
    assert!(reason.contains("not a party of key"), "{reason}");
    // The pinned assignments still sign.
    all_ok(c.run(job(key_id, &[1, 3], sign)), 2);
}

#[test]
fn root_based_paths_are_refused_by_every_node() {
    let mut c = Cluster3::new();
    let (key_id, _) = create(&mut c, Scheme::EcdsaSecp256k1);
    for path in ["m", "m/0/1"] {
        let payload = SignPayload::Message { message: b"root".to_vec(), format: MessageFormat::Eip191 };
        let kind = JobKind::Sign { epoch: Epoch(0), path: path.parse().unwrap(), payload };
        let results = c.run(job(key_id, &[1, 2], kind));
        assert_eq!(results.len(), 2);
        for result in results.values() {
            let reason = result.as_ref().unwrap_err();
            assert!(reason.contains("root-based"), "{path}: {reason}");
        }
    }
    let results = c.run(job(key_id, &[1, 2, 3], JobKind::DeriveHardened { path: DerivationPath::root() }));
    assert!(results.values().all(|r| r.as_ref().unwrap_err().contains("root-based")), "{results:?}");
    assert!(c.nodes.values().all(|n| n.store().sign_log().unwrap().is_empty()));
}

/// An unsigned PSBT spending two made-up P2WPKH outputs of `public_key`,
/// each with its (made-up) previous transaction.
fn two_input_psbt(public_key: &[u8]) -> Vec<u8> {
    use bitcoin::{absolute, transaction, Amount, OutPoint, ScriptBuf, Sequence, TxIn, TxOut, Txid, Witness};
    let script = shardvault_chains::psbt::key_script(KeyType::EcdsaSecp256k1, public_key).unwrap();
    let input = |previous_output| TxIn {
        previous_output,
        script_sig: ScriptBuf::new(),
        sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
        witness: Witness::new(),
    };
    let previous: Vec<bitcoin::Transaction> = [30_000u64, 50_000]
        .iter()
        .enumerate()
        .map(|(i, amount)| bitcoin::Transaction {
            version: transaction::Version::TWO,
            lock_time: absolute::LockTime::ZERO,
            input: vec![input(OutPoint { txid: format!("{:064x}", i + 1).parse::<Txid>().unwrap(), vout: 0 })],
            output: vec![TxOut { value: Amount::from_sat(*amount), script_pubkey: script.clone() }],
        })
        .collect();
    let tx = bitcoin::Transaction {
        version: transaction::Version::TWO,
        lock_time: absolute::LockTime::ZERO,
        input: previous.iter().map(|p| input(OutPoint { txid: p.compute_txid(), vout: 0 })).collect(),
        output: vec![TxOut { value: Amount::from_sat(79_000), script_pubkey: ScriptBuf::new_op_return([7u8; 4]) }],
    };
    let mut psbt = bitcoin::Psbt::from_unsigned_tx(tx).unwrap();
    for (input, previous) in psbt.inputs.iter_mut().zip(previous) {
        input.witness_utxo = previous.output.first().cloned();
        input.non_witness_utxo = Some(previous);
    }
    psbt.serialize()
}

/// Each node decodes a PSBT twice per sign job (one job per input): once for
/// the policy's facts and once for what it signs (sharing one decode is a
/// known leftover), signs the sighash it computed itself, and refuses an input that is not its key's;
/// an EVM preimage is refused for a key that is not ECDSA.
#[test]
fn a_psbt_is_decoded_for_the_policy_and_the_signature_per_node_and_job() {
    let mut c = Cluster3::new();
    let (key_id, _) = create(&mut c, Scheme::EcdsaSecp256k1);
    let child = derive(&mut c, key_id, "m/84'/0'/0'");
    let psbt = two_input_psbt(&child);
    let network = shardvault_chains::psbt::network(Chain::Bitcoin, "bitcoin").unwrap();
    let parsed = shardvault_chains::psbt::UnsignedPsbt::parse(&psbt, network).unwrap();
    let sign = |index: u32, psbt: &[u8]| JobKind::Sign {
        epoch: Epoch(0),
        path: "m/84'/0'/0'".parse().unwrap(),
        payload: SignPayload::BitcoinInput {
            chain: Chain::Bitcoin,
            psbt: psbt.to_vec(),
            index,
            network: "bitcoin".into(),
        },
    };
    for index in 0..2 {
        let before = shardvault_chains::psbt::decodes_on_this_thread();
        let outcomes = all_ok(c.run(job(key_id, &[1, 3], sign(index, &psbt))), 2);
        let decodes = shardvault_chains::psbt::decodes_on_this_thread() - before;
        assert_eq!(decodes, 4, "on each of two nodes: one decode for the policy, one for the signature");
        let Outcome::Signed { signed, signature } = &outcomes[0] else { panic!() };
        let digest = parsed.input_digest(usize::try_from(index).unwrap()).unwrap().digest;
        assert_eq!(signed, &digest.to_vec());
        tk::verify_ecdsa(&child, signed, &signature.bytes, signature.recovery_id.unwrap()).unwrap();
    }
    // Another key's coins: every node refuses (and decoded once to find out).
    let (other_key, _) = create(&mut c, Scheme::EcdsaSecp256k1);
    derive(&mut c, other_key, "m/84'/0'/0'");
    for result in c.run(job(other_key, &[1, 2], sign(1, &psbt))).values() {
        let reason = result.as_ref().unwrap_err();
        assert!(reason.contains("input 1 does not pay to this key"), "{reason}");
    }
    let (ed, _) = create(&mut c, Scheme::EddsaEd25519);
    derive(&mut c, ed, "m/1'");
    let preimage = sample::transfer(Chain::Ethereum, KeyType::EcdsaSecp256k1, &child).unwrap().unsigned;
    let evm = JobKind::Sign {
        epoch: Epoch(0),
        path: "m/1'".parse().unwrap(),
        payload: SignPayload::EvmTransaction { preimage, chain_id: 1 },
    };
    for result in c.run(job(ed, &[2, 3], evm)).values() {
        let reason = result.as_ref().unwrap_err();
        assert!(reason.contains("signed by ECDSA secp256k1 keys, not Ed25519"), "{reason}");
    }
}
