//! An approval: an SSHSIG signature (OpenSSH `PROTOCOL.sshsig`) over a
//! request's bytes, in the armored form `ssh-keygen -Y sign` writes.

use std::fmt;
use std::str::FromStr;

use ssh_key::{LineEnding, SshSig};

use crate::{Error, MemberKey};

/// The SSHSIG namespace of every approval. A signature under any other
/// namespace is refused, so a member's git or file signatures can never be
/// replayed as approvals.
pub const NAMESPACE: &str = "shardvault-request";

/// The SSHSIG namespace of a rejection: one ends a request.
pub const REJECT_NAMESPACE: &str = "shardvault-reject";

/// The SSHSIG namespace of a login to the coordinator's API.
pub const LOGIN_NAMESPACE: &str = "shardvault-login";

/// The message a member signs (under [`LOGIN_NAMESPACE`]) to log in to
/// organisation `organisation` at unix time `time`, with a fresh 32-hex-digit `nonce`.
pub fn login_message(organisation: &str, time: u64, nonce: &str) -> String {
    format!("shardvault-login-v1\n{organisation}\n{time}\n{nonce}\n")
}

/// The largest armored approval accepted (an ed25519 SSHSIG is ~300 bytes).
const MAX_ARMORED: usize = 4096;

/// A member's signature over one request. Which member made it is read from
/// the signature, but it counts only once [`MemberKey::verify`] accepts it
/// for a known member and the request's exact bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Approval(SshSig);

impl Approval {
    /// The key that claims to have made this approval (not yet verified).
    pub fn claimed_signer(&self) -> Result<MemberKey, Error> {
        MemberKey::from_public(ssh_key::PublicKey::from(self.0.public_key().clone()))
    }

    /// The armored form, `-----BEGIN SSH SIGNATURE-----` … with LF endings.
    pub fn to_armored(&self) -> Result<String, Error> {
        self.0.to_pem(LineEnding::LF).map_err(|e| Error::Malformed(format!("cannot encode the signature: {e}")))
    }

    pub(crate) fn new(signature: SshSig) -> Self {
        Self(signature)
    }

    pub(crate) fn ssh_sig(&self) -> &SshSig {
        &self.0
    }
}

impl FromStr for Approval {
    type Err = Error;
    fn from_str(armored: &str) -> Result<Self, Error> {
        if armored.len() > MAX_ARMORED {
            return Err(Error::Malformed(format!("{} bytes is longer than any approval", armored.len())));
        }
        let signature = SshSig::from_pem(armored.trim()).map_err(|e| Error::Malformed(e.to_string()))?;
        Ok(Self(signature))
    }
}

impl fmt::Debug for Approval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Approval")
            .field("namespace", &self.0.namespace())
            .field("hash", &self.0.hash_alg().as_str())
            .finish_non_exhaustive()
    }
}
