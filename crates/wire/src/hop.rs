//! The node↔coordinator hop: a Noise IK session in which the node initiates
//! to the coordinator's pinned static key and the coordinator checks the
//! node's static key against the cluster file. What it carries
//! ([`crate::ToNode`], [`crate::FromNode`]) is encrypted again here; the
//! pairwise frames inside are already end-to-end encrypted between nodes.

use snow::{HandshakeState, TransportState};
use zeroize::Zeroizing;

use crate::channel::{noise, open_chunks, seal_chunks, MAX_NOISE_MESSAGE};
use crate::cluster::{Cluster, NodeId, NoisePublicKey, NoiseSecretKey};
use crate::{Error, NOISE_PARAMS};

const PROLOGUE: &[u8] = b"shardvault/hop/v1";

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

impl HopInitiator {
    /// Node side: the coordinator's reply completes the hop.
    pub fn finish(mut self, reply: &[u8]) -> Result<Hop, Error> {
        let mut payload = vec![0u8; MAX_NOISE_MESSAGE];
        self.state.read_message(reply, &mut payload).map_err(|_| {
            Error::Malformed("coordinator handshake reply does not authenticate (wrong coordinator key?)".into())
        })?;
        Ok(Hop { transport: self.state.into_transport_mode().map_err(noise)? })
    }
}

/// Coordinator side: authenticates the node against the cluster file and replies.
pub fn respond(secret: &NoiseSecretKey, cluster: &Cluster, first: &[u8]) -> Result<(Hop, NodeId, Vec<u8>), Error> {
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
    let mut reply = vec![0u8; MAX_NOISE_MESSAGE];
    let len = state.write_message(&[], &mut reply).map_err(noise)?;
    reply.truncate(len);
    Ok((Hop { transport: state.into_transport_mode().map_err(noise)? }, node, reply))
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
