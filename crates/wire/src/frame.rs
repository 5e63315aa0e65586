//! The relay's unit: a routing header in the clear and Noise ciphertext.

use serde::{Deserialize, Serialize};
use shardvault_types::SessionId;

use crate::{Error, NodeId};

/// Version of the frame encoding.
pub const FRAME_VERSION: u8 = 1;

/// The largest encoded frame accepted (the largest protocol message, a
/// DKLs23 DKG round-3 message for 16 parties, is well below).
pub const MAX_FRAME: usize = 8 << 20;

/// One frame between two nodes of one session. The header is what the relay
/// routes by; it is authenticated by the channel (a changed header makes the
/// frame fail at the receiver).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Frame {
    /// The protocol session.
    pub session: SessionId,
    /// Sender.
    pub from: NodeId,
    /// Recipient.
    pub to: NodeId,
    /// Per-direction sequence number: 0 is the handshake message, data from 1.
    pub seq: u64,
    /// Noise messages (a plaintext larger than one Noise message is split).
    pub messages: Vec<Vec<u8>>,
}

impl Frame {
    /// Wire encoding: version byte, then postcard. Postcard does not fail
    /// on these plain types; if it ever did, that is [`Error::Bug`], never an
    /// empty frame.
    pub fn to_bytes(&self) -> Result<Vec<u8>, Error> {
        let mut out = vec![FRAME_VERSION];
        out.extend(postcard::to_stdvec(self).map_err(|_| Error::Bug("a frame does not encode"))?);
        Ok(out)
    }

    /// Parses the wire encoding; refuses other versions, oversized input and trailing bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        if bytes.len() > MAX_FRAME {
            return Err(Error::Malformed(format!("{} bytes is over the {MAX_FRAME}-byte limit", bytes.len())));
        }
        let (version, body) = bytes.split_first().ok_or_else(|| Error::Malformed("empty".into()))?;
        if *version != FRAME_VERSION {
            return Err(Error::Malformed(format!("unsupported version {version}")));
        }
        let (frame, rest): (Frame, _) = postcard::take_from_bytes(body).map_err(|e| Error::Malformed(e.to_string()))?;
        if !rest.is_empty() {
            return Err(Error::Malformed("trailing bytes".into()));
        }
        Ok(frame)
    }

    /// The bytes a relay learns: everything but the ciphertext's content.
    pub fn ciphertext_len(&self) -> usize {
        self.messages.iter().map(Vec::len).sum()
    }
}
