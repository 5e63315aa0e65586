//! Cluster membership: node id → pinned Noise static public key.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use shardvault_types::Secret32;

use crate::{Error, NOISE_PARAMS};

/// A node of the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeId(pub u16);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A Noise static public key (X25519), hex in files.
#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NoisePublicKey(pub [u8; 32]);

impl fmt::Debug for NoisePublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NoisePublicKey({})", hex::encode(self.0))
    }
}

impl NoisePublicKey {
    /// The public half of a static secret key (X25519 with the key clamped,
    /// as Noise's 25519 DH does).
    pub fn from_secret(secret: &NoiseSecretKey) -> Result<Self, Error> {
        Ok(Self(curve25519_dalek::MontgomeryPoint::mul_base_clamped(*secret.expose_secret()).to_bytes()))
    }
}

impl FromStr for NoisePublicKey {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let mut key = [0u8; 32];
        hex::decode_to_slice(s.trim(), &mut key)
            .map_err(|_| Error::Cluster(format!("{s:?} is not a 64-hex-digit key")))?;
        Ok(Self(key))
    }
}

impl TryFrom<String> for NoisePublicKey {
    type Error = Error;
    fn try_from(s: String) -> Result<Self, Error> {
        s.parse()
    }
}

impl From<NoisePublicKey> for String {
    fn from(key: NoisePublicKey) -> String {
        hex::encode(key.0)
    }
}

/// A Noise static private key. Zeroized on drop, redacted in `Debug`.
#[derive(Clone)]
pub struct NoiseSecretKey(pub(crate) Secret32);

impl fmt::Debug for NoiseSecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NoiseSecretKey(<redacted>)")
    }
}

impl NoiseSecretKey {
    /// Wraps raw key bytes (from the node's sealed storage).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Secret32::new(bytes))
    }

    /// The key bytes. Do not log them.
    pub fn expose_secret(&self) -> &[u8; 32] {
        self.0.expose_secret()
    }
}

/// A fresh static keypair for a node or the coordinator.
pub fn generate_keypair() -> Result<(NoiseSecretKey, NoisePublicKey), Error> {
    let params = NOISE_PARAMS.parse().map_err(|e| Error::Noise(format!("{e:?}")))?;
    let pair = snow::Builder::new(params).generate_keypair().map_err(|e| Error::Noise(e.to_string()))?;
    let secret: [u8; 32] = pair.private.as_slice().try_into().map_err(|_| Error::Noise("key length".into()))?;
    let public: [u8; 32] = pair.public.as_slice().try_into().map_err(|_| Error::Noise("key length".into()))?;
    Ok((NoiseSecretKey::from_bytes(secret), NoisePublicKey(public)))
}

/// Who is in the cluster: the coordinator's key (for the node↔coordinator
/// hop) and every node's key. Read from a JSON file:
/// `{"coordinator": "<hex>", "nodes": {"1": "<hex>", "2": "<hex>"}}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cluster {
    /// The coordinator's static key.
    pub coordinator: NoisePublicKey,
    /// Every node's static key.
    pub nodes: BTreeMap<NodeId, NoisePublicKey>,
    /// Every node's identity key ([`crate::NodeIdentity`]), which signs
    /// refresh certificates and address attestations. Cluster files written
    /// before identities existed have none; whatever needs one then fails
    /// with a message saying how to add them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub identities: BTreeMap<NodeId, crate::IdentityPublicKey>,
}

impl Cluster {
    /// Parses a cluster file.
    pub fn from_json(text: &str) -> Result<Self, Error> {
        let cluster: Cluster = serde_json::from_str(text).map_err(|e| Error::Cluster(e.to_string()))?;
        let mut seen = std::collections::BTreeSet::new();
        for key in cluster.nodes.values().chain(std::iter::once(&cluster.coordinator)) {
            if !seen.insert(key.0) {
                return Err(Error::Cluster("two members share a static key".into()));
            }
        }
        if let Some(node) = cluster.identities.keys().find(|node| !cluster.nodes.contains_key(node)) {
            return Err(Error::Cluster(format!("identity for node {node}, which has no static key")));
        }
        Ok(cluster)
    }

    /// The pinned identity key of `node`.
    pub fn identity_of(&self, node: NodeId) -> Result<&crate::IdentityPublicKey, Error> {
        self.identities.get(&node).ok_or_else(|| {
            Error::Cluster(format!(
                "no identity key for node {node}: add \"identities\" to the cluster file \
                 (`shardvault node identity --data DIR` prints a node's)"
            ))
        })
    }

    /// The pinned key of `node`.
    pub fn key_of(&self, node: NodeId) -> Result<&NoisePublicKey, Error> {
        self.nodes.get(&node).ok_or(Error::UnknownNode(node))
    }
}
