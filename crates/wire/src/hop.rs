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

use snow::{HandshakeState, TransportState};
use zeroize::Zeroizing;

use crate::channel::{noise, open_chunks, seal_chunks, MAX_NOISE_MESSAGE};
use crate::cluster::{Cluster, NodeId, NoisePublicKey, NoiseSecretKey};
use crate::{Error, NOISE_PARAMS};

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

/// Node side: the first handshake message, to the coordinator's pinned key.
pub fn initiate(secret: &NoiseSecretKey, coordinator: &NoisePublicKey) -> Result<(HopInitiator, Vec<u8>), Error> {
    let mut state =
        builder(secret)?.remote_public_key(&coordinator.0).map_err(noise)?.build_initiator().map_err(noise)?;
    let mut message = vec![0u8; MAX_NOISE_MESSAGE];
    let len = state.write_message(&[], &mut message).map_err(noise)?;
    message.truncate(len);
    Ok((HopInitiator { state }, message))
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
    pub fn finish(mut self, reply: &[u8]) -> Result<(Hop, Vec<u8>), Error> {
        let mut payload = vec![0u8; MAX_NOISE_MESSAGE];
        let len = self.state.read_message(reply, &mut payload).map_err(|_| {
            Error::Malformed("coordinator handshake reply does not authenticate (wrong coordinator key?)".into())
        })?;
        let challenge = payload
            .get(..len)
            .filter(|c| c.len() == CHALLENGE_LEN)
            .ok_or_else(|| Error::Malformed("coordinator handshake reply has no freshness challenge".into()))?;
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

/// Coordinator side: authenticates the node against the cluster file and
/// replies with a fresh challenge. The hop is not live until
/// [`HopResponder::confirm`] accepts the node's proof.
pub fn respond(
    secret: &NoiseSecretKey,
    cluster: &Cluster,
    first: &[u8],
) -> Result<(HopResponder, NodeId, Vec<u8>), Error> {
    let mut state = builder(secret)?.build_responder().map_err(noise)?;
    let mut payload = vec![0u8; MAX_NOISE_MESSAGE];
    state
        .read_message(first, &mut payload)
        .map_err(|_| Error::Malformed("node handshake does not authenticate".into()))?;
    let remote = state.get_remote_static().ok_or_else(|| Error::Noise("no remote static key".into()))?;
    let node = cluster
        .nodes
        .iter()
        .find_map(|(id, key)| (key.0.as_slice() == remote).then_some(*id))
        .ok_or_else(|| Error::Cluster(format!("static key {} is not in the cluster file", hex::encode(remote))))?;
    let mut challenge = [0u8; CHALLENGE_LEN];
    rand_core::OsRng.fill_bytes(&mut challenge);
    let mut reply = vec![0u8; MAX_NOISE_MESSAGE];
    let len = state.write_message(&challenge, &mut reply).map_err(noise)?;
    reply.truncate(len);
    let hop = Hop { transport: state.into_transport_mode().map_err(noise)? };
    Ok((HopResponder { hop, challenge }, node, reply))
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

    #[test]
    fn a_live_node_proves_freshness_and_talks() {
        let (cluster, coordinator_secret, node_secret) = cluster();
        let (initiator, hello) = initiate(&node_secret, &cluster.coordinator).unwrap();
        let (responder, node, reply) = respond(&coordinator_secret, &cluster, &hello).unwrap();
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
        let (responder, _, reply) = respond(&coordinator_secret, &cluster, &hello).unwrap();
        let (mut live, proof) = initiator.finish(&reply).unwrap();
        responder.confirm(&proof).unwrap();
        // The attacker replays the recorded first message: the coordinator
        // accepts the handshake (IK cannot tell) but nothing the attacker
        // recorded confirms it — neither the old proof nor a later message.
        let (replayed, node, _) = respond(&coordinator_secret, &cluster, &hello).unwrap();
        assert_eq!(node, NodeId(1));
        assert!(replayed.confirm(&proof).is_err());
        let later = live.seal(b"a later transport message").unwrap();
        let (replayed, _, _) = respond(&coordinator_secret, &cluster, &hello).unwrap();
        assert!(replayed.confirm(&later).is_err());
    }
}
