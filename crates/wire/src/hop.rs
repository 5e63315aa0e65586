//! The node↔coordinator hop: a Noise IK session in which the node initiates
//! to the coordinator's pinned static key and the coordinator checks the
//! node's static key against the cluster file. What it carries
//! ([`crate::ToNode`], [`crate::FromNode`]) is encrypted again here; the
//! pairwise frames inside are already end-to-end encrypted between nodes.
//!
//! Freshness: an IK first message can be replayed (Noise spec §7.7), so the
//! coordinator must not treat a handshake as a live node. Its reply carries a
//! random challenge, and the node's first transport message is that
//! challenge, sealed. Only the holder of the handshake's ephemeral key can
//! produce it, so [`HopResponder::confirm`] succeeding proves the node is
//! live; a replayer gets a reply it cannot use.
//!
//! Versions: the node's first handshake message carries its
//! [`PROTOCOL_VERSION`] (`u16be`), the coordinator's reply carries its own
//! before the challenge. Each end compares the other's with its own and
//! refuses a difference with [`Error::Version`], naming both; the coordinator
//! still sends its reply to a node it refuses, so that the node can say the
//! same. A payload without a version is a release from before versions were
//! exchanged (the same prologue, no version): version 2.

use snow::{HandshakeState, TransportState};
use zeroize::Zeroizing;

use crate::channel::{noise, open_chunks, seal_chunks, MAX_NOISE_MESSAGE};
use crate::cluster::{Cluster, NodeId, NoisePublicKey, NoiseSecretKey};
use crate::{Error, NOISE_PARAMS, PROTOCOL_VERSION};

use rand_core::RngCore;
use subtle::ConstantTimeEq;

const PROLOGUE: &[u8] = b"shardvault/hop/v2";

/// Length of the coordinator's freshness challenge.
pub const CHALLENGE_LEN: usize = 32;

/// An established hop (either end).
pub struct Hop {
    transport: TransportState,
}

impl std::fmt::Debug for Hop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hop(..)")
    }
}

/// A node's half-done hop, waiting for the coordinator's reply.
pub struct HopInitiator {
    state: HandshakeState,
    /// The version this node sent.
    version: u16,
}

impl std::fmt::Debug for HopInitiator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HopInitiator(..)")
    }
}

fn builder(secret: &NoiseSecretKey) -> Result<snow::Builder<'_>, Error> {
    let params = NOISE_PARAMS.parse().map_err(|e| Error::Noise(format!("{e:?}")))?;
    snow::Builder::new(params)
        .local_private_key(secret.expose_secret())
        .map_err(noise)?
        .prologue(PROLOGUE)
        .map_err(noise)
}

/// The version that stands for the releases from before versions were
/// exchanged (they used this prologue already).
const UNVERSIONED: u16 = 2;

/// The version at the start of a handshake payload, and what follows it; a
/// payload of exactly `unversioned_len` bytes is from a release without one.
fn split_version(payload: &[u8], unversioned_len: usize) -> Result<(u16, &[u8]), Error> {
    if payload.len() == unversioned_len {
        return Ok((UNVERSIONED, payload));
    }
    let (version, rest) = payload
        .split_first_chunk::<2>()
        .ok_or_else(|| Error::Malformed("handshake payload without a version".into()))?;
    Ok((u16::from_be_bytes(*version), rest))
}

/// Node side: the first handshake message, to the coordinator's pinned key.
pub fn initiate(secret: &NoiseSecretKey, coordinator: &NoisePublicKey) -> Result<(HopInitiator, Vec<u8>), Error> {
    initiate_as(secret, coordinator, PROTOCOL_VERSION)
}

fn initiate_as(
    secret: &NoiseSecretKey,
    coordinator: &NoisePublicKey,
    version: u16,
) -> Result<(HopInitiator, Vec<u8>), Error> {
    let mut state =
        builder(secret)?.remote_public_key(&coordinator.0).map_err(noise)?.build_initiator().map_err(noise)?;
    let mut message = vec![0u8; MAX_NOISE_MESSAGE];
    let len = state.write_message(&version.to_be_bytes(), &mut message).map_err(noise)?;
    message.truncate(len);
    Ok((HopInitiator { state, version }, message))
}

/// The coordinator's half-done hop: the node authenticated its static key,
/// but has not yet proved it is live (its handshake may be a replay).
pub struct HopResponder {
    hop: Hop,
    challenge: [u8; CHALLENGE_LEN],
}

impl std::fmt::Debug for HopResponder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HopResponder(..)")
    }
}

impl HopInitiator {
    /// Node side: the coordinator's reply completes the hop. Returns the hop
    /// and the freshness proof, which must be the first message sent on it.
    /// A coordinator of another [`PROTOCOL_VERSION`] is refused
    /// ([`Error::Version`]).
    pub fn finish(mut self, reply: &[u8]) -> Result<(Hop, Vec<u8>), Error> {
        let mut payload = vec![0u8; MAX_NOISE_MESSAGE];
        let len = self.state.read_message(reply, &mut payload).map_err(|_| {
            Error::Malformed("coordinator handshake reply does not authenticate (wrong coordinator key?)".into())
        })?;
        payload.truncate(len);
        let (version, challenge) = split_version(&payload, CHALLENGE_LEN)?;
        if version != self.version {
            return Err(Error::Version {
                peer: "the coordinator".into(),
                us: "node",
                theirs: version,
                ours: self.version,
            });
        }
        if challenge.len() != CHALLENGE_LEN {
            return Err(Error::Malformed("coordinator handshake reply has no freshness challenge".into()));
        }
        let mut hop = Hop { transport: self.state.into_transport_mode().map_err(noise)? };
        let proof = hop.seal(challenge)?;
        Ok((hop, proof))
    }
}

impl HopResponder {
    /// Coordinator side: the node's first transport message must be the
    /// challenge. Only then is the hop live; a replayed handshake cannot
    /// produce it.
    pub fn confirm(mut self, proof: &[u8]) -> Result<Hop, Error> {
        let echoed = self.hop.open(proof).map_err(|_| {
            Error::Malformed("hop freshness proof does not authenticate (a replayed handshake?)".into())
        })?;
        if !bool::from(echoed.as_slice().ct_eq(&self.challenge)) {
            return Err(Error::Malformed("hop freshness proof does not echo the challenge".into()));
        }
        Ok(self.hop)
    }
}

/// The coordinator's answer to a node's first handshake message.
#[derive(Debug)]
pub struct Response {
    /// The node, authenticated by its static key.
    pub node: NodeId,
    /// The handshake reply. Send it in every case, also when `responder` is
    /// an error: it carries the coordinator's version, so that a node of
    /// another version can name both.
    pub reply: Vec<u8>,
    /// The half-done hop, or why the node is refused ([`Error::Version`]):
    /// then close the connection after sending `reply`.
    pub responder: Result<HopResponder, Error>,
}

/// Coordinator side: authenticates the node against the cluster file,
/// checks its [`PROTOCOL_VERSION`] and replies with this coordinator's
/// version and a fresh challenge. The hop is not live until
/// [`HopResponder::confirm`] accepts the node's proof.
pub fn respond(secret: &NoiseSecretKey, cluster: &Cluster, first: &[u8]) -> Result<Response, Error> {
    respond_as(secret, cluster, first, PROTOCOL_VERSION)
}

fn respond_as(secret: &NoiseSecretKey, cluster: &Cluster, first: &[u8], ours: u16) -> Result<Response, Error> {
    let mut state = builder(secret)?.build_responder().map_err(noise)?;
    let mut payload = vec![0u8; MAX_NOISE_MESSAGE];
    let len = state
        .read_message(first, &mut payload)
        .map_err(|_| Error::Malformed("node handshake does not authenticate".into()))?;
    payload.truncate(len);
    let remote = state.get_remote_static().ok_or_else(|| Error::Noise("no remote static key".into()))?;
    let node = cluster
        .nodes
        .iter()
        .find_map(|(id, key)| (key.0.as_slice() == remote).then_some(*id))
        .ok_or_else(|| Error::Cluster(format!("static key {} is not in the cluster file", hex::encode(remote))))?;
    let (theirs, rest) = split_version(&payload, 0)?;
    let mut challenge = [0u8; CHALLENGE_LEN];
    rand_core::OsRng.fill_bytes(&mut challenge);
    let mut reply = vec![0u8; MAX_NOISE_MESSAGE];
    let len = state.write_message(&[&ours.to_be_bytes()[..], &challenge].concat(), &mut reply).map_err(noise)?;
    reply.truncate(len);
    let responder = if theirs != ours {
        Err(Error::Version { peer: format!("node {node}"), us: "coordinator", theirs, ours })
    } else if !rest.is_empty() {
        Err(Error::Malformed(format!("node {node}'s handshake has {} bytes after its version", rest.len())))
    } else {
        Ok(HopResponder { hop: Hop { transport: state.into_transport_mode().map_err(noise)? }, challenge })
    };
    Ok(Response { node, reply, responder })
}

impl Hop {
    /// Encrypts one message for the other end.
    pub fn seal(&mut self, plaintext: &[u8]) -> Result<Vec<u8>, Error> {
        let chunks = seal_chunks(&mut self.transport, plaintext)?;
        postcard::to_stdvec(&chunks).map_err(|e| Error::Noise(e.to_string()))
    }

    /// Decrypts one message from the other end; a failure means the hop is
    /// compromised or out of step, and the connection should be closed.
    pub fn open(&mut self, bytes: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error> {
        if bytes.len() > crate::MAX_FRAME {
            return Err(Error::Malformed("hop message too large".into()));
        }
        let (chunks, rest): (Vec<Vec<u8>>, _) =
            postcard::take_from_bytes(bytes).map_err(|e| Error::Malformed(e.to_string()))?;
        if !rest.is_empty() || chunks.is_empty() {
            return Err(Error::Malformed("hop message framing".into()));
        }
        open_chunks(&mut self.transport, &chunks)
            .map_err(|_| Error::Malformed("hop message does not authenticate".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate_keypair;
    use std::collections::BTreeMap;

    fn cluster() -> (Cluster, NoiseSecretKey, NoiseSecretKey) {
        let (coordinator_secret, coordinator) = generate_keypair().unwrap();
        let (node_secret, node) = generate_keypair().unwrap();
        let cluster = Cluster { coordinator, nodes: BTreeMap::from([(NodeId(1), node)]), identities: BTreeMap::new() };
        (cluster, coordinator_secret, node_secret)
    }

    fn accepted(response: Response) -> (HopResponder, NodeId, Vec<u8>) {
        (response.responder.unwrap(), response.node, response.reply)
    }

    #[test]
    fn a_live_node_proves_freshness_and_talks() {
        let (cluster, coordinator_secret, node_secret) = cluster();
        let (initiator, hello) = initiate(&node_secret, &cluster.coordinator).unwrap();
        let (responder, node, reply) = accepted(respond(&coordinator_secret, &cluster, &hello).unwrap());
        assert_eq!(node, NodeId(1));
        let (mut at_node, proof) = initiator.finish(&reply).unwrap();
        let mut at_coordinator = responder.confirm(&proof).unwrap();
        let sealed = at_node.seal(b"hello").unwrap();
        assert_eq!(at_coordinator.open(&sealed).unwrap().as_slice(), b"hello");
        let sealed = at_coordinator.seal(b"back").unwrap();
        assert_eq!(at_node.open(&sealed).unwrap().as_slice(), b"back");
    }

    #[test]
    fn a_replayed_handshake_cannot_prove_freshness() {
        let (cluster, coordinator_secret, node_secret) = cluster();
        let (initiator, hello) = initiate(&node_secret, &cluster.coordinator).unwrap();
        let (responder, _, reply) = accepted(respond(&coordinator_secret, &cluster, &hello).unwrap());
        let (mut live, proof) = initiator.finish(&reply).unwrap();
        responder.confirm(&proof).unwrap();
        // The attacker replays the recorded first message: the coordinator
        // accepts the handshake (IK cannot tell) but nothing the attacker
        // recorded confirms it — neither the old proof nor a later message.
        let (replayed, node, _) = accepted(respond(&coordinator_secret, &cluster, &hello).unwrap());
        assert_eq!(node, NodeId(1));
        assert!(replayed.confirm(&proof).is_err());
        let later = live.seal(b"a later transport message").unwrap();
        let (replayed, _, _) = accepted(respond(&coordinator_secret, &cluster, &hello).unwrap());
        assert!(replayed.confirm(&later).is_err());
    }

    #[test]
    fn the_coordinator_refuses_a_node_of_another_version_naming_both() {
        let (cluster, coordinator_secret, node_secret) = cluster();
        let (initiator, hello) = initiate_as(&node_secret, &cluster.coordinator, PROTOCOL_VERSION + 1).unwrap();
        let response = respond(&coordinator_secret, &cluster, &hello).unwrap();
        let error = response.responder.unwrap_err();
        assert!(
            matches!(error, Error::Version { theirs, ours: PROTOCOL_VERSION, .. } if theirs == PROTOCOL_VERSION + 1),
            "{error:?}"
        );
        let message = error.to_string();
        assert!(
            message.starts_with(&format!(
                "node 1 speaks node↔coordinator protocol version {}, this coordinator speaks version {PROTOCOL_VERSION}",
                PROTOCOL_VERSION + 1
            )),
            "{message}"
        );
        // The node still gets the reply, so it can tell its operator the same.
        let error = initiator.finish(&response.reply).unwrap_err();
        assert!(
            error.to_string().starts_with(&format!(
                "the coordinator speaks node↔coordinator protocol version {PROTOCOL_VERSION}, this node speaks version {}",
                PROTOCOL_VERSION + 1
            )),
            "{error}"
        );
    }

    #[test]
    fn a_node_refuses_a_coordinator_of_another_version_naming_both() {
        let (cluster, coordinator_secret, node_secret) = cluster();
        let (initiator, hello) = initiate(&node_secret, &cluster.coordinator).unwrap();
        let response = respond_as(&coordinator_secret, &cluster, &hello, PROTOCOL_VERSION + 1).unwrap();
        assert!(matches!(response.responder, Err(Error::Version { .. })), "the coordinator refuses too");
        let error = initiator.finish(&response.reply).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "the coordinator speaks node↔coordinator protocol version {}, this node speaks version {PROTOCOL_VERSION}: \
                 run the same shardvault release on the nodes and the coordinator",
                PROTOCOL_VERSION + 1
            )
        );
    }

    #[test]
    fn a_release_from_before_versions_counts_as_version_2() {
        let (cluster, coordinator_secret, node_secret) = cluster();
        // An old node's first message has an empty payload.
        let (_, hello) = initiate_as_unversioned(&node_secret, &cluster.coordinator);
        let error = respond(&coordinator_secret, &cluster, &hello).unwrap().responder.unwrap_err();
        assert!(matches!(error, Error::Version { theirs: 2, ours: PROTOCOL_VERSION, .. }), "{error:?}");
        // An old coordinator's reply is the bare 32-byte challenge.
        let (initiator, hello) = initiate(&node_secret, &cluster.coordinator).unwrap();
        let mut state = builder(&coordinator_secret).unwrap().build_responder().unwrap();
        state.read_message(&hello, &mut vec![0u8; MAX_NOISE_MESSAGE]).unwrap();
        let mut reply = vec![0u8; MAX_NOISE_MESSAGE];
        let len = state.write_message(&[7u8; CHALLENGE_LEN], &mut reply).unwrap();
        reply.truncate(len);
        let error = initiator.finish(&reply).unwrap_err();
        assert!(matches!(error, Error::Version { theirs: 2, ours: PROTOCOL_VERSION, .. }), "{error:?}");
    }

    fn initiate_as_unversioned(secret: &NoiseSecretKey, coordinator: &NoisePublicKey) -> (HopInitiator, Vec<u8>) {
        let mut state = builder(secret).unwrap().remote_public_key(&coordinator.0).unwrap().build_initiator().unwrap();
        let mut message = vec![0u8; MAX_NOISE_MESSAGE];
        let len = state.write_message(&[], &mut message).unwrap();
        message.truncate(len);
        (HopInitiator { state, version: UNVERSIONED }, message)
    }
}
