//! Pairwise Noise IK channels for one protocol session.

use std::collections::BTreeMap;
use std::fmt;

use shardvault_types::SessionId;
use snow::{HandshakeState, TransportState};
use zeroize::Zeroizing;

use crate::cluster::{Cluster, NodeId, NoisePublicKey, NoiseSecretKey};
use crate::frame::Frame;
use crate::{Error, NOISE_PARAMS};

/// Noise's largest message, and the plaintext that fits in it with its tag.
pub(crate) const MAX_NOISE_MESSAGE: usize = 65_535;
const MAX_CHUNK: usize = MAX_NOISE_MESSAGE - 16;

enum LinkState {
    /// We initiated (lower node id) and wait for the responder's message.
    AwaitingResponse(Box<HandshakeState>),
    /// We respond and wait for the initiator's first message.
    AwaitingInitiation(Box<HandshakeState>),
    /// Handshake done.
    Open(Box<TransportState>),
    /// A handshake failed after our state moved on; the session must be retried.
    Broken,
}

struct Link {
    peer_key: NoisePublicKey,
    state: LinkState,
    /// Next sequence number we send (0 is our handshake message).
    send_seq: u64,
    /// Next sequence number we accept from the peer.
    recv_seq: u64,
    /// Plaintexts waiting for the handshake to finish.
    queued: Vec<Zeroizing<Vec<u8>>>,
}

/// What a received frame produced: decrypted messages for the protocol, and
/// frames to send (handshake replies, messages released by a finished handshake).
/// `Debug` shows senders and plaintext lengths, never the plaintexts (they
/// carry DKG shares and derivation values).
#[derive(Default)]
pub struct Received {
    /// `(sender, plaintext)`.
    pub messages: Vec<(NodeId, Zeroizing<Vec<u8>>)>,
    /// Frames to hand to the relay.
    pub frames: Vec<Frame>,
}

impl fmt::Debug for Received {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Redacted<'a>(&'a [(NodeId, Zeroizing<Vec<u8>>)]);
        impl fmt::Debug for Redacted<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_list()
                    .entries(
                        self.0.iter().map(|(from, plaintext)| format!("{from}: <{} bytes redacted>", plaintext.len())),
                    )
                    .finish()
            }
        }
        f.debug_struct("Received").field("messages", &Redacted(&self.messages)).field("frames", &self.frames).finish()
    }
}

/// This node's channels to every other node of one session.
pub struct Channels {
    session: SessionId,
    binding: Vec<u8>,
    me: NodeId,
    secret: NoiseSecretKey,
    links: BTreeMap<NodeId, Link>,
}

impl fmt::Debug for Channels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Channels").field("session", &self.session).field("me", &self.me).finish_non_exhaustive()
    }
}

/// Binds a channel to its session and to its two ends (initiator first).
fn prologue(session: &SessionId, binding: &[u8], initiator: NodeId, responder: NodeId) -> Vec<u8> {
    let mut prologue = b"shardvault/wire/v2".to_vec();
    prologue.extend_from_slice(session.as_bytes());
    prologue.extend_from_slice(&(binding.len() as u64).to_be_bytes());
    prologue.extend_from_slice(binding);
    prologue.extend_from_slice(&initiator.0.to_be_bytes());
    prologue.extend_from_slice(&responder.0.to_be_bytes());
    prologue
}

pub(crate) fn noise(e: snow::Error) -> Error {
    Error::Noise(e.to_string())
}

fn builder<'a>(secret: &'a NoiseSecretKey, prologue: &'a [u8]) -> Result<snow::Builder<'a>, Error> {
    let params = NOISE_PARAMS.parse().map_err(|e| Error::Noise(format!("{e:?}")))?;
    snow::Builder::new(params)
        .local_private_key(secret.expose_secret())
        .map_err(noise)?
        .prologue(prologue)
        .map_err(noise)
}

impl Channels {
    /// Opens channels from `me` to every `peer` of `session`. The lower node id
    /// of each pair initiates; returns the initiators' handshake frames.
    /// `binding` (e.g. the hash of the job as this node received it) enters
    /// every channel's prologue: two nodes that were told different things
    /// about the session fail the handshake instead of running the protocol.
    pub fn open(
        session: SessionId,
        binding: &[u8],
        me: NodeId,
        secret: &NoiseSecretKey,
        cluster: &Cluster,
        peers: impl IntoIterator<Item = NodeId>,
    ) -> Result<(Self, Vec<Frame>), Error> {
        cluster.key_of(me)?;
        let mut links = BTreeMap::new();
        let mut frames = Vec::new();
        for peer in peers.into_iter().filter(|p| *p != me) {
            let peer_key = *cluster.key_of(peer)?;
            let link = if me < peer {
                let prologue = prologue(&session, binding, me, peer);
                let mut state = builder(secret, &prologue)?
                    .remote_public_key(&peer_key.0)
                    .map_err(noise)?
                    .build_initiator()
                    .map_err(noise)?;
                let mut message = vec![0u8; MAX_NOISE_MESSAGE];
                let len = state.write_message(&[], &mut message).map_err(noise)?;
                message.truncate(len);
                frames.push(Frame { session, from: me, to: peer, seq: 0, messages: vec![message] });
                Link {
                    peer_key,
                    state: LinkState::AwaitingResponse(Box::new(state)),
                    send_seq: 1,
                    recv_seq: 0,
                    queued: Vec::new(),
                }
            } else {
                let prologue = prologue(&session, binding, peer, me);
                let state = builder(secret, &prologue)?.build_responder().map_err(noise)?;
                Link {
                    peer_key,
                    state: LinkState::AwaitingInitiation(Box::new(state)),
                    send_seq: 0,
                    recv_seq: 0,
                    queued: Vec::new(),
                }
            };
            links.insert(peer, link);
        }
        Ok((Channels { session, binding: binding.to_vec(), me, secret: secret.clone(), links }, frames))
    }

    /// Encrypts `plaintext` for `to`. Before the handshake with `to` is done
    /// it is queued and sent when it completes.
    pub fn send(&mut self, to: NodeId, plaintext: &[u8]) -> Result<Vec<Frame>, Error> {
        let (session, me) = (self.session, self.me);
        let link =
            self.links.get_mut(&to).ok_or_else(|| Error::Misdirected(format!("node {to} is not in this session")))?;
        match &mut link.state {
            LinkState::Open(_) => Ok(vec![link.seal(session, me, to, plaintext)?]),
            LinkState::Broken => Err(Error::Noise(format!("channel to node {to} is broken; retry the session"))),
            _ => {
                link.queued.push(Zeroizing::new(plaintext.to_vec()));
                Ok(Vec::new())
            }
        }
    }

    /// Authenticates and decrypts one frame. A refused frame leaves the
    /// channel able to take the genuine one, except a forged handshake
    /// *reply* to our initiation: that breaks this session's channel (the
    /// relay could as well have dropped the frame) and the session is retried.
    pub fn receive(&mut self, frame: Frame) -> Result<Received, Error> {
        if frame.session != self.session {
            return Err(Error::Misdirected("frame belongs to another session".into()));
        }
        if frame.to != self.me {
            return Err(Error::Misdirected(format!("frame is addressed to node {}", frame.to)));
        }
        let (session, me, from) = (self.session, self.me, frame.from);
        let link = self
            .links
            .get_mut(&from)
            .ok_or_else(|| Error::Misdirected(format!("node {from} is not in this session")))?;
        if frame.seq != link.recv_seq {
            return Err(Error::OutOfSequence { from, expected: link.recv_seq, got: frame.seq });
        }
        let mut received = Received::default();
        let state = std::mem::replace(&mut link.state, LinkState::Broken);
        link.state = match state {
            LinkState::AwaitingInitiation(hs) => match respond(hs, &frame, link.peer_key) {
                Ok((transport, reply)) => {
                    received.frames.push(Frame { session, from: me, to: from, seq: 0, messages: vec![reply] });
                    link.send_seq = 1;
                    LinkState::Open(transport)
                }
                Err((error, retryable)) => {
                    if retryable {
                        let prologue = prologue(&session, &self.binding, from, me);
                        let fresh = builder(&self.secret, &prologue)?.build_responder().map_err(noise)?;
                        link.state = LinkState::AwaitingInitiation(Box::new(fresh));
                    }
                    return Err(error);
                }
            },
            LinkState::AwaitingResponse(hs) => LinkState::Open(complete(hs, &frame)?),
            LinkState::Open(mut transport) => {
                let plaintext = open_messages(&mut transport, &frame);
                link.state = LinkState::Open(transport);
                received.messages.push((from, plaintext?));
                link.recv_seq += 1;
                return Ok(received);
            }
            LinkState::Broken => {
                return Err(Error::Noise(format!("channel to node {from} is broken; retry the session")))
            }
        };
        link.recv_seq += 1;
        for plaintext in std::mem::take(&mut link.queued) {
            received.frames.push(link.seal(session, me, from, &plaintext)?);
        }
        Ok(received)
    }
}

impl Link {
    fn seal(&mut self, session: SessionId, me: NodeId, to: NodeId, plaintext: &[u8]) -> Result<Frame, Error> {
        let LinkState::Open(transport) = &mut self.state else {
            return Err(Error::Noise("channel not open".into()));
        };
        let mut messages = Vec::with_capacity(plaintext.len() / MAX_CHUNK + 1);
        let chunks: Vec<&[u8]> =
            if plaintext.is_empty() { vec![&[][..]] } else { plaintext.chunks(MAX_CHUNK).collect() };
        for chunk in chunks {
            let mut message = vec![0u8; chunk.len() + 16];
            let len = transport.write_message(chunk, &mut message).map_err(noise)?;
            message.truncate(len);
            messages.push(message);
        }
        let frame = Frame { session, from: me, to, seq: self.send_seq, messages };
        self.send_seq += 1;
        Ok(frame)
    }
}

/// Responder: read the initiator's message, check its static key is the
/// pinned one, reply. `Err((error, true))`: the state is spent but nothing of
/// ours was sent, so a fresh responder can take the genuine message.
fn respond(
    mut hs: Box<HandshakeState>,
    frame: &Frame,
    pinned: NoisePublicKey,
) -> Result<(Box<TransportState>, Vec<u8>), (Error, bool)> {
    let from = frame.from;
    let [message] = frame.messages.as_slice() else {
        return Err((Error::Malformed("a handshake frame holds exactly one message".into()), true));
    };
    let mut payload = vec![0u8; MAX_NOISE_MESSAGE];
    if hs.read_message(message, &mut payload).is_err() {
        return Err((Error::Unauthentic { from }, true));
    }
    if hs.get_remote_static() != Some(pinned.0.as_slice()) {
        return Err((Error::KeyMismatch { node: from }, true));
    }
    let mut reply = vec![0u8; MAX_NOISE_MESSAGE];
    let len = hs.write_message(&[], &mut reply).map_err(|e| (noise(e), false))?;
    reply.truncate(len);
    let transport = hs.into_transport_mode().map_err(|e| (noise(e), false))?;
    Ok((Box::new(transport), reply))
}

/// Initiator: read the responder's reply and switch to transport mode.
fn complete(mut hs: Box<HandshakeState>, frame: &Frame) -> Result<Box<TransportState>, Error> {
    let [message] = frame.messages.as_slice() else {
        return Err(Error::Malformed("a handshake frame holds exactly one message".into()));
    };
    let mut payload = vec![0u8; MAX_NOISE_MESSAGE];
    hs.read_message(message, &mut payload).map_err(|_| Error::Unauthentic { from: frame.from })?;
    hs.into_transport_mode().map(Box::new).map_err(noise)
}

/// Encrypts a plaintext as one or more Noise messages (each at most 64 KiB).
pub(crate) fn seal_chunks(transport: &mut TransportState, plaintext: &[u8]) -> Result<Vec<Vec<u8>>, Error> {
    let chunks: Vec<&[u8]> = if plaintext.is_empty() { vec![&[][..]] } else { plaintext.chunks(MAX_CHUNK).collect() };
    let mut messages = Vec::with_capacity(chunks.len());
    for chunk in chunks {
        let mut message = vec![0u8; chunk.len() + 16];
        let len = transport.write_message(chunk, &mut message).map_err(noise)?;
        message.truncate(len);
        messages.push(message);
    }
    Ok(messages)
}

/// Decrypts the messages of [`seal_chunks`]; on any failure the receiving
/// nonce is restored so the genuine messages can still be read.
pub(crate) fn open_chunks(transport: &mut TransportState, messages: &[Vec<u8>]) -> Result<Zeroizing<Vec<u8>>, ()> {
    let nonce = transport.receiving_nonce();
    let mut plaintext = Zeroizing::new(Vec::new());
    for message in messages {
        let mut chunk = Zeroizing::new(vec![0u8; message.len()]);
        // snow reports at most the buffer's length; anything else is refused, never read as empty.
        let opened = transport.read_message(message, &mut chunk).ok().and_then(|len| chunk.get(..len));
        match opened {
            Some(opened) => plaintext.extend_from_slice(opened),
            None => {
                transport.set_receiving_nonce(nonce);
                return Err(());
            }
        }
    }
    Ok(plaintext)
}

/// A data frame's plaintext.
fn open_messages(transport: &mut TransportState, frame: &Frame) -> Result<Zeroizing<Vec<u8>>, Error> {
    if frame.messages.is_empty() {
        return Err(Error::Malformed("data frame without messages".into()));
    }
    open_chunks(transport, &frame.messages).map_err(|()| Error::Unauthentic { from: frame.from })
}
