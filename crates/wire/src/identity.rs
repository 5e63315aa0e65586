//! Node identity: the Ed25519 key with which a node signs statements that
//! others must be able to check later and elsewhere — "I stored epoch e of
//! key K" (refresh certificates) and "this is the address of path P"
//! (address attestations). The coordinator relays these statements; it
//! cannot make them.
//!
//! The signing key is derived from the node's Noise static secret with
//! HMAC-SHA256 under a fixed label, so a node has one secret to protect and
//! back up; the label separates the two uses (Noise DH and Ed25519 signing
//! never see the same key). Its public half is pinned per node in the
//! cluster file (`identities`).

use std::fmt;
use std::str::FromStr;

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::{Error, NoiseSecretKey};

const DERIVATION_LABEL: &[u8] = b"shardvault/node-identity/v1";

/// A node's statement-signing key. Redacted in `Debug`; the key material is
/// zeroized on drop (by `ed25519-dalek`).
pub struct NodeIdentity {
    key: SigningKey,
}

impl fmt::Debug for NodeIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeIdentity({:?}, <redacted>)", self.public())
    }
}

impl NodeIdentity {
    /// The identity of the node whose Noise static secret is `noise`.
    pub fn derive(noise: &NoiseSecretKey) -> Self {
        // HMAC accepts keys of any length; this cannot fail.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(DERIVATION_LABEL)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        mac.update(noise.expose_secret());
        let seed = Zeroizing::new(<[u8; 32]>::from(mac.finalize().into_bytes()));
        NodeIdentity { key: SigningKey::from_bytes(&seed) }
    }

    /// The public half, as pinned in the cluster file.
    pub fn public(&self) -> IdentityPublicKey {
        IdentityPublicKey(self.key.verifying_key().to_bytes())
    }

    /// Signs `statement` under `domain` (see [`IdentityPublicKey::verify`]).
    pub fn sign(&self, domain: &str, statement: &[u8]) -> [u8; 64] {
        self.key.sign(&signed_bytes(domain, statement)).to_bytes()
    }
}

/// What is actually signed: the domain (length-prefixed) and the statement,
/// so a statement of one kind is never a valid statement of another.
fn signed_bytes(domain: &str, statement: &[u8]) -> Vec<u8> {
    let mut bytes = b"shardvault/statement/v1".to_vec();
    bytes.extend_from_slice(&(domain.len() as u64).to_be_bytes());
    bytes.extend_from_slice(domain.as_bytes());
    bytes.extend_from_slice(statement);
    bytes
}

/// A node identity's public key (Ed25519), hex in files.
#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IdentityPublicKey(pub [u8; 32]);

impl IdentityPublicKey {
    /// Checks `signature` over `statement` under `domain` (strict RFC 8032
    /// verification: no malleable or small-order encodings).
    pub fn verify(&self, domain: &str, statement: &[u8], signature: &[u8; 64]) -> Result<(), Error> {
        let key = VerifyingKey::from_bytes(&self.0)
            .map_err(|_| Error::Cluster(format!("identity key {} is not an Ed25519 key", hex::encode(self.0))))?;
        let signature = ed25519_dalek::Signature::from_bytes(signature);
        key.verify_strict(&signed_bytes(domain, statement), &signature).map_err(|_| {
            Error::BadStatement(format!("{domain} signature does not verify under {}", hex::encode(self.0)))
        })
    }
}

impl fmt::Debug for IdentityPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdentityPublicKey({})", hex::encode(self.0))
    }
}

impl FromStr for IdentityPublicKey {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let mut key = [0u8; 32];
        hex::decode_to_slice(s.trim(), &mut key)
            .map_err(|_| Error::Cluster(format!("{s:?} is not a 64-hex-digit identity key")))?;
        Ok(Self(key))
    }
}

impl TryFrom<String> for IdentityPublicKey {
    type Error = Error;
    fn try_from(s: String) -> Result<Self, Error> {
        s.parse()
    }
}

impl From<IdentityPublicKey> for String {
    fn from(key: IdentityPublicKey) -> String {
        hex::encode(key.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_verify_only_under_their_domain_and_key() {
        let (secret, _) = crate::generate_keypair().unwrap();
        let identity = NodeIdentity::derive(&secret);
        assert_eq!(identity.public(), NodeIdentity::derive(&secret).public(), "deterministic");
        let signature = identity.sign("refresh-stored", b"statement");
        identity.public().verify("refresh-stored", b"statement", &signature).unwrap();
        assert!(identity.public().verify("address", b"statement", &signature).is_err());
        assert!(identity.public().verify("refresh-stored", b"statemenT", &signature).is_err());
        let (other, _) = crate::generate_keypair().unwrap();
        assert!(NodeIdentity::derive(&other).public().verify("refresh-stored", b"statement", &signature).is_err());
        assert!(!format!("{identity:?}").contains(&hex::encode(secret.expose_secret())));
    }

    #[test]
    fn the_public_noise_key_is_what_noise_generated() {
        let (secret, public) = crate::generate_keypair().unwrap();
        assert_eq!(crate::NoisePublicKey::from_secret(&secret).unwrap(), public);
    }
}
