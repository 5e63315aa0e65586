//! The kind of key an address or a signature is made from, as the chains
//! see it (a scheme names the protocol; a key type names the key).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::Scheme;

/// The kind of key an address is made from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyType {
    /// secp256k1, signing with ECDSA (33-byte SEC1 compressed key).
    EcdsaSecp256k1,
    /// secp256k1, signing with BIP340 Schnorr (33-byte internal key).
    SchnorrSecp256k1,
    /// Ed25519 (32-byte key).
    Ed25519,
}

impl From<Scheme> for KeyType {
    fn from(scheme: Scheme) -> Self {
        match scheme {
            Scheme::EcdsaSecp256k1 => KeyType::EcdsaSecp256k1,
            Scheme::EddsaEd25519 => KeyType::Ed25519,
            Scheme::SchnorrSecp256k1 => KeyType::SchnorrSecp256k1,
        }
    }
}

impl KeyType {
    /// The curve, as backups name it (`secp256k1`, `ed25519`).
    pub fn curve(self) -> &'static str {
        match self {
            KeyType::EcdsaSecp256k1 | KeyType::SchnorrSecp256k1 => "secp256k1",
            KeyType::Ed25519 => "ed25519",
        }
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyType::EcdsaSecp256k1 => "ECDSA secp256k1",
            KeyType::SchnorrSecp256k1 => "BIP340 secp256k1",
            KeyType::Ed25519 => "Ed25519",
        })
    }
}
