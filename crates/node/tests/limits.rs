//! A node bounds what others can make it hold or run: bytes of early frames,
//! concurrent jobs; and when a job is aborted it says whom it was waiting on.

use std::collections::VecDeque;

use shardvault_mpc::{KeyId, PartyId, Scheme, SessionId, Threshold};
use shardvault_node::Limits;
use shardvault_wire::{Frame, FromNode, Job, JobKind, NodeId, ToNode};

/// Three nodes in this process (the shared harness).
fn nodes() -> shardvault_harness::Nodes {
    shardvault_harness::Nodes::new()
}

fn create_key(nodes: &[u16]) -> Job {
    let participants = nodes.iter().map(|n| (PartyId::new(u8::try_from(*n).unwrap()).unwrap(), NodeId(*n))).collect();
    shardvault_harness::approved(Job {
        session: SessionId::random(),
        key_id: KeyId::random(),
        participants,
        kind: JobKind::CreateKey { scheme: Scheme::EddsaEd25519, threshold: Threshold::new(2, 3).unwrap() },
        governance: None,
    })
}

#[test]
fn early_frames_are_bounded_in_bytes_not_only_in_count() {
    let mut c = nodes();
    let node = c.node(1);
    // A peer (or the coordinator) sends 1 MiB frames for sessions that never start:
    // 4 sessions x 50 frames is within the count limits (64 x 64) but is 200 MiB.
    let sessions: Vec<SessionId> = (0..4).map(|_| SessionId::random()).collect();
    for seq in 0..50 {
        for session in &sessions {
            let frame =
                Frame { session: *session, from: NodeId(2), to: NodeId(1), seq, messages: vec![vec![0xab; 1 << 20]] };
            assert!(node.handle(ToNode::Frame(frame)).is_empty());
        }
    }
    let limit = Limits::default().early_bytes;
    assert!(node.early_bytes() > 0, "early frames are still kept");
    assert!(node.early_bytes() <= limit, "{} bytes buffered, over the {limit}-byte limit", node.early_bytes());
    // Aborting the sessions releases their bytes.
    for session in &sessions {
        node.handle(ToNode::Abort(*session));
    }
    assert_eq!(node.early_bytes(), 0);
}

#[test]
fn a_job_over_the_concurrency_limit_is_refused_with_the_reason() {
    let mut c = nodes();
    let node = c.node(1);
    node.set_limits(Limits { running: 2, ..Limits::default() });
    for _ in 0..2 {
        let out = node.handle(ToNode::Start(create_key(&[1, 2, 3])));
        assert!(!out.iter().any(|m| matches!(m, FromNode::Failed { .. })), "{out:?}");
    }
    let job = create_key(&[1, 2, 3]);
    let out = node.handle(ToNode::Start(job.clone()));
    let [FromNode::Failed { session, reason, culprit: None, .. }] = out.as_slice() else { panic!("{out:?}") };
    assert_eq!(*session, job.session);
    assert!(reason.contains("limit"), "{reason}");
    assert_eq!(node.running(), 2);
}

#[test]
fn an_aborted_job_names_the_peer_it_was_waiting_on() {
    let mut nodes = nodes();
    // Node 3 is frozen: it never starts and nothing reaches it or comes from it.
    let job = create_key(&[1, 2, 3]);
    let starts: VecDeque<(NodeId, ToNode)> =
        [NodeId(1), NodeId(2)].into_iter().map(|n| (n, ToNode::Start(job.clone()))).collect();
    let unexpected = nodes.deliver(starts, |frame| frame.to != NodeId(3));
    assert!(unexpected.is_empty(), "unexpected {unexpected:?}");
    for me in [1, 2] {
        let out = nodes.node(me).handle(ToNode::Abort(job.session));
        assert_eq!(out, vec![FromNode::Waiting { session: job.session, on: vec![NodeId(3)] }], "node {me}");
        assert_eq!(nodes.nodes[&NodeId(me)].running(), 0);
    }
    // An abort for a session not running here says nothing.
    assert!(nodes.node(3).handle(ToNode::Abort(job.session)).is_empty());
}
