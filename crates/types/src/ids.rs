//! Identifiers and parameters shared by every protocol.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::Error;

/// The largest number of parties a key may have.
pub const MAX_PARTIES: u8 = 16;

/// A participant's identifier inside one key: 1..=16, the x-coordinate the
/// libraries use for Lagrange interpolation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub struct PartyId(u8);

impl PartyId {
    /// A party identifier, 1..=16.
    pub fn new(id: u8) -> Result<Self, Error> {
        if (1..=MAX_PARTIES).contains(&id) {
            Ok(Self(id))
        } else {
            Err(Error::InvalidInput(format!("party id {id} is out of range 1..={MAX_PARTIES}")))
        }
    }

    /// The identifier as a number.
    pub fn get(self) -> u8 {
        self.0
    }
}

impl TryFrom<u8> for PartyId {
    type Error = Error;
    fn try_from(id: u8) -> Result<Self, Error> {
        Self::new(id)
    }
}

impl From<PartyId> for u8 {
    fn from(id: PartyId) -> u8 {
        id.0
    }
}

impl fmt::Display for PartyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

macro_rules! byte_id {
    ($(#[$doc:meta])* $name:ident, $len:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub struct $name([u8; $len]);

        impl $name {
            /// Wraps raw bytes.
            pub const fn from_bytes(bytes: [u8; $len]) -> Self {
                Self(bytes)
            }

            /// A fresh random identifier from the operating system's RNG.
            pub fn random() -> Self {
                let mut bytes = [0u8; $len];
                rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut bytes);
                Self(bytes)
            }

            /// The raw bytes.
            pub const fn as_bytes(&self) -> &[u8; $len] {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&hex::encode(self.0))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), hex::encode(self.0))
            }
        }

        impl FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self, Error> {
                let mut bytes = [0u8; $len];
                hex::decode_to_slice(s, &mut bytes).map_err(|_| {
                    Error::InvalidInput(format!(
                        "{} must be {} hex characters",
                        stringify!($name),
                        2 * $len
                    ))
                })?;
                Ok(Self(bytes))
            }
        }
    };
}

byte_id!(
    /// Names a key for its whole life (all epochs, all derived children).
    KeyId,
    16
);
byte_id!(
    /// Names one run of one protocol. Every message carries it; a message
    /// from another session is refused.
    SessionId,
    32
);

/// The generation of a key's shares: 0 after DKG, +1 per refresh.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Epoch(pub u32);

impl Epoch {
    /// The epoch after a refresh.
    pub fn next(self) -> Result<Self, Error> {
        self.0.checked_add(1).map(Epoch).ok_or_else(|| Error::InvalidInput("epoch counter exhausted".into()))
    }
}

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A signature scheme and the library that implements it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Scheme {
    /// ECDSA over secp256k1 (DKLs23, `dkls23`): Bitcoin P2WPKH, EVM, Tron, Cosmos.
    #[serde(rename = "ecdsa-secp256k1")]
    EcdsaSecp256k1,
    /// Ed25519 (FROST, RFC 9591, `frost-ed25519`): Solana, Aptos, Sui.
    #[serde(rename = "eddsa-ed25519")]
    EddsaEd25519,
    /// BIP340 Schnorr over secp256k1 (FROST, `frost-secp256k1-tr`): Taproot.
    #[serde(rename = "schnorr-secp256k1")]
    SchnorrSecp256k1,
}

impl Scheme {
    /// Every scheme, in a stable order.
    pub const ALL: [Scheme; 3] = [Scheme::EcdsaSecp256k1, Scheme::EddsaEd25519, Scheme::SchnorrSecp256k1];

    /// The scheme's identifier, as used in APIs and in derivation contexts.
    pub const fn as_str(self) -> &'static str {
        match self {
            Scheme::EcdsaSecp256k1 => "ecdsa-secp256k1",
            Scheme::EddsaEd25519 => "eddsa-ed25519",
            Scheme::SchnorrSecp256k1 => "schnorr-secp256k1",
        }
    }

    /// Whether the scheme signs a 32-byte digest (ECDSA) rather than a message.
    pub const fn signs_digest(self) -> bool {
        matches!(self, Scheme::EcdsaSecp256k1)
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scheme {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Scheme::ALL.into_iter().find(|scheme| scheme.as_str() == s).ok_or_else(|| {
            Error::InvalidInput(format!(
                "unknown scheme {s:?}; expected one of ecdsa-secp256k1, eddsa-ed25519, schnorr-secp256k1"
            ))
        })
    }
}

/// `t`-of-`n`: any `threshold` of the `parties` can sign.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "RawThreshold")]
pub struct Threshold {
    threshold: u8,
    parties: u8,
}

#[derive(Deserialize)]
struct RawThreshold {
    threshold: u8,
    parties: u8,
}

impl TryFrom<RawThreshold> for Threshold {
    type Error = Error;
    fn try_from(raw: RawThreshold) -> Result<Self, Error> {
        Threshold::new(raw.threshold, raw.parties)
    }
}

impl Threshold {
    /// Requires 2 ≤ t ≤ n ≤ 16.
    pub fn new(threshold: u8, parties: u8) -> Result<Self, Error> {
        if threshold < 2 || threshold > parties || parties > MAX_PARTIES {
            return Err(Error::InvalidInput(format!(
                "threshold {threshold}-of-{parties} is not supported; need 2 <= t <= n <= {MAX_PARTIES}"
            )));
        }
        Ok(Self { threshold, parties })
    }

    /// How many parties must sign (t).
    pub fn threshold(self) -> u8 {
        self.threshold
    }

    /// How many parties hold shares (n).
    pub fn parties(self) -> u8 {
        self.parties
    }

    /// Every party id of the key: 1..=n.
    pub fn party_ids(self) -> impl Iterator<Item = PartyId> {
        (1..=self.parties).map(PartyId)
    }

    /// Whether `id` is one of this key's parties.
    pub fn contains(self, id: PartyId) -> bool {
        id.0 <= self.parties
    }
}
