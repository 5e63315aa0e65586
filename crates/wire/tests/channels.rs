//! Noise channels between nodes: an MPC protocol runs through them while a
//! recording relay moves the frames; the relay never sees protocol bytes, and
//! tampered, replayed, reordered, cross-session and impostor frames are refused.

use std::collections::{BTreeMap, VecDeque};

use proptest::prelude::*;
use shardvault_mpc::OsRng;
use shardvault_mpc::{dkg, Envelope, KeyId, KeyShare, PartyId, Scheme, Session, SessionId, Threshold};
use shardvault_wire::{generate_keypair, Channels, Cluster, Error, Frame, NodeId, NoiseSecretKey};

struct Net {
    cluster: Cluster,
    secrets: BTreeMap<NodeId, NoiseSecretKey>,
}

fn net(n: u16) -> Net {
    let (_, coordinator) = generate_keypair().unwrap();
    let mut nodes = BTreeMap::new();
    let mut secrets = BTreeMap::new();
    for id in 1..=n {
        let (secret, public) = generate_keypair().unwrap();
        nodes.insert(NodeId(id), public);
        secrets.insert(NodeId(id), secret);
    }
    Net { cluster: Cluster { coordinator, nodes, identities: Default::default() }, secrets }
}

fn node(party: PartyId) -> NodeId {
    NodeId(u16::from(party.get()))
}

/// What a relayed run produced: the shares, every frame the relay saw, every
/// protocol payload the parties sent.
struct Relayed {
    shares: BTreeMap<PartyId, KeyShare>,
    relay_view: Vec<Vec<u8>>,
    plaintexts: Vec<Vec<u8>>,
}

/// Runs a DKG where every envelope goes through Noise channels and a relay
/// that records every frame it forwards.
fn dkg_over_relay(scheme: Scheme) -> Relayed {
    let net = net(3);
    let threshold = Threshold::new(2, 3).unwrap();
    let (key_id, session) = (KeyId::random(), SessionId::random());
    let nodes: Vec<NodeId> = net.cluster.nodes.keys().copied().collect();
    let mut relay: VecDeque<Frame> = VecDeque::new();
    let mut channels = BTreeMap::new();
    let mut sessions: BTreeMap<PartyId, Session<shardvault_mpc::Dkg>> = BTreeMap::new();
    let mut plaintexts = Vec::new();
    for (id, secret) in &net.secrets {
        let (c, frames) = Channels::open(session, &[], *id, secret, &net.cluster, nodes.clone()).unwrap();
        relay.extend(frames);
        channels.insert(*id, c);
    }
    let mut outgoing: Vec<Envelope> = Vec::new();
    for me in threshold.party_ids() {
        let (s, out) = dkg(scheme, key_id, threshold, me, session, &mut OsRng).unwrap();
        outgoing.extend(out);
        sessions.insert(me, s);
    }
    let mut seen_by_relay = Vec::new();
    loop {
        for envelope in outgoing.drain(..) {
            plaintexts.push(envelope.payload.as_bytes().to_vec());
            let bytes = envelope.to_bytes().unwrap();
            let from = node(envelope.from);
            let recipients: Vec<NodeId> = match envelope.to {
                Some(to) => vec![node(to)],
                None => nodes.iter().copied().filter(|n| *n != from).collect(),
            };
            for to in recipients {
                relay.extend(channels.get_mut(&from).unwrap().send(to, &bytes).unwrap());
            }
        }
        let Some(frame) = relay.pop_front() else { break };
        let wire_bytes = frame.to_bytes().unwrap();
        seen_by_relay.push(wire_bytes.clone());
        let frame = Frame::from_bytes(&wire_bytes).unwrap();
        let to = frame.to;
        let received = channels.get_mut(&to).unwrap().receive(frame).unwrap();
        relay.extend(received.frames);
        for (_, plaintext) in received.messages {
            let envelope = Envelope::from_bytes(&plaintext).unwrap();
            let party = PartyId::new(u8::try_from(to.0).unwrap()).unwrap();
            outgoing.extend(sessions.get_mut(&party).unwrap().receive(envelope).unwrap());
        }
    }
    let shares = sessions.into_iter().map(|(p, mut s)| (p, s.take_output().expect("finished"))).collect();
    Relayed { shares, relay_view: seen_by_relay, plaintexts }
}

#[test]
fn a_dkg_runs_over_noise_and_the_relay_sees_no_protocol_bytes() {
    for scheme in [Scheme::EddsaEd25519, Scheme::EcdsaSecp256k1] {
        let Relayed { shares, relay_view, plaintexts } = dkg_over_relay(scheme);
        let keys: Vec<_> = shares.values().map(|s| s.public_key().to_vec()).collect();
        assert_eq!(keys.len(), 3);
        assert!(keys.windows(2).all(|w| w[0] == w[1]));
        // No 24-byte window of any protocol message appears in anything the relay saw.
        let windows: std::collections::HashSet<&[u8]> =
            plaintexts.iter().flat_map(|p| p.windows(24).step_by(8)).filter(|w| w.iter().any(|b| *b != 0)).collect();
        assert!(windows.len() > 20, "the check must have protocol bytes to look for");
        for frame in &relay_view {
            assert!(!frame.windows(24).any(|w| windows.contains(w)), "the relay saw protocol bytes");
        }
    }
}

/// Two open channels between nodes 1 and 2 of one session.
fn pair() -> (Channels, Channels, Net, SessionId) {
    let net = net(2);
    let session = SessionId::random();
    let peers = [NodeId(1), NodeId(2)];
    let (mut a, hello) =
        Channels::open(session, &[], NodeId(1), &net.secrets[&NodeId(1)], &net.cluster, peers).unwrap();
    let (mut b, none) = Channels::open(session, &[], NodeId(2), &net.secrets[&NodeId(2)], &net.cluster, peers).unwrap();
    assert!(none.is_empty(), "the higher id responds");
    let reply = b.receive(hello.into_iter().next().unwrap()).unwrap().frames;
    a.receive(reply.into_iter().next().unwrap()).unwrap();
    (a, b, net, session)
}

#[test]
fn large_messages_are_chunked_and_arrive_whole() {
    let (mut a, mut b, _, _) = pair();
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let frames = a.send(NodeId(2), &big).unwrap();
    assert_eq!(frames.len(), 1);
    assert!(frames[0].messages.len() >= 4);
    let got = b.receive(frames.into_iter().next().unwrap()).unwrap().messages;
    assert_eq!(&got[0].1[..], &big[..]);
}

#[test]
fn received_plaintexts_do_not_print_in_debug() {
    let (mut a, mut b, _, _) = pair();
    let secret = b"dkg share for node 2: 0123456789abcdef";
    let received = b.receive(a.send(NodeId(2), secret).unwrap().into_iter().next().unwrap()).unwrap();
    assert_eq!(&received.messages[0].1[..], &secret[..]);
    let printed = format!("{received:?}");
    assert!(printed.contains("redacted") && printed.contains(&secret.len().to_string()), "{printed}");
    for shown in [String::from_utf8_lossy(secret).to_string(), format!("{:?}", &secret[..8])] {
        assert!(!printed.contains(&shown), "{printed}");
    }
}

#[test]
fn tampered_frames_are_refused_and_the_genuine_one_still_arrives() {
    let (mut a, mut b, _, _) = pair();
    let frame = a.send(NodeId(2), b"round 1 message").unwrap().remove(0);
    let mut tampered = frame.clone();
    tampered.messages[0][3] ^= 1;
    assert!(matches!(b.receive(tampered), Err(Error::Unauthentic { .. })));
    let mut relabelled = frame.clone();
    relabelled.messages.push(vec![0; 20]);
    assert!(b.receive(relabelled).is_err());
    assert_eq!(&b.receive(frame).unwrap().messages[0].1[..], b"round 1 message");
}

#[test]
fn replayed_and_reordered_frames_are_refused() {
    let (mut a, mut b, _, _) = pair();
    let first = a.send(NodeId(2), b"one").unwrap().remove(0);
    let second = a.send(NodeId(2), b"two").unwrap().remove(0);
    let error = b.receive(second.clone()).unwrap_err();
    assert!(matches!(error, Error::OutOfSequence { expected: 1, got: 2, .. }), "{error}");
    assert!(error.to_string().contains("reordered"));
    b.receive(first.clone()).unwrap();
    let error = b.receive(first).unwrap_err();
    assert!(error.to_string().contains("replayed"), "{error}");
    b.receive(second).unwrap();
}

#[test]
fn frames_from_another_session_do_not_authenticate() {
    let net = net(2);
    let peers = [NodeId(1), NodeId(2)];
    let (s1, s2) = (SessionId::random(), SessionId::random());
    let (_, hello_for_s1) = Channels::open(s1, &[], NodeId(1), &net.secrets[&NodeId(1)], &net.cluster, peers).unwrap();
    let (_, hello_for_s2) = Channels::open(s2, &[], NodeId(1), &net.secrets[&NodeId(1)], &net.cluster, peers).unwrap();
    let (mut b, _) = Channels::open(s2, &[], NodeId(2), &net.secrets[&NodeId(2)], &net.cluster, peers).unwrap();
    // The relay relabels session 1's handshake as session 2's: the prologue differs.
    let mut injected = hello_for_s1[0].clone();
    injected.session = s2;
    assert!(matches!(b.receive(injected), Err(Error::Unauthentic { .. })));
    assert!(matches!(b.receive(hello_for_s1[0].clone()), Err(Error::Misdirected(_))));
    // The genuine handshake still completes.
    assert_eq!(b.receive(hello_for_s2[0].clone()).unwrap().frames.len(), 1);
}

#[test]
fn an_impostor_key_is_refused() {
    let net = net(2);
    let peers = [NodeId(1), NodeId(2)];
    let session = SessionId::random();
    // Someone with another key claims to be node 1.
    let (impostor_secret, impostor_public) = generate_keypair().unwrap();
    let mut forged = net.cluster.clone();
    forged.nodes.insert(NodeId(1), impostor_public);
    let (_, hello) = Channels::open(session, &[], NodeId(1), &impostor_secret, &forged, peers).unwrap();
    let (mut b, _) = Channels::open(session, &[], NodeId(2), &net.secrets[&NodeId(2)], &net.cluster, peers).unwrap();
    let error = b.receive(hello[0].clone()).unwrap_err();
    assert!(matches!(error, Error::KeyMismatch { node: NodeId(1) }), "{error}");
    // Unknown nodes cannot even open channels.
    assert!(matches!(
        Channels::open(session, &[], NodeId(2), &net.secrets[&NodeId(2)], &net.cluster, [NodeId(9)]),
        Err(Error::UnknownNode(NodeId(9)))
    ));
}

#[test]
fn cluster_files_are_checked() {
    let net = net(2);
    let text = serde_json::to_string(&net.cluster).unwrap();
    assert_eq!(Cluster::from_json(&text).unwrap(), net.cluster);
    let key = hex::encode(net.cluster.nodes[&NodeId(1)].0);
    let duplicate = format!(r#"{{"coordinator": "{key}", "nodes": {{"1": "{key}"}}}}"#);
    assert!(Cluster::from_json(&duplicate).is_err());
    assert!(Cluster::from_json(r#"{"coordinator": "zz", "nodes": {}}"#).is_err());
}

proptest! {
    #[test]
    fn frame_decoding_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = Frame::from_bytes(&bytes);
    }

    #[test]
    fn frames_round_trip(seq in any::<u64>(), from in any::<u16>(), to in any::<u16>(),
                         messages in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..4)) {
        let frame = Frame { session: SessionId::random(), from: NodeId(from), to: NodeId(to), seq, messages };
        prop_assert_eq!(Frame::from_bytes(&frame.to_bytes().unwrap()).unwrap(), frame);
    }
}

/// A coordinator that tells two nodes different things about one session
/// (another epoch, other signers, another payload) cannot get them to run
/// the protocol together: the job binding is in the Noise prologue.
#[test]
fn nodes_with_different_views_of_the_job_do_not_get_a_channel() {
    let net = net(2);
    let session = SessionId::random();
    let peers = [NodeId(1), NodeId(2)];
    let (_a, hello) =
        Channels::open(session, b"job as node 1 saw it", NodeId(1), &net.secrets[&NodeId(1)], &net.cluster, peers)
            .unwrap();
    let (mut b, _) =
        Channels::open(session, b"job as node 2 saw it", NodeId(2), &net.secrets[&NodeId(2)], &net.cluster, peers)
            .unwrap();
    assert!(b.receive(hello.into_iter().next().unwrap()).is_err());
}
