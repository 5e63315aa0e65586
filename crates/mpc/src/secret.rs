//! Wrappers for secret bytes: zeroized on drop, `<redacted>` in `Debug`,
//! readable only through an explicit call.

use std::fmt;

use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// 32 secret bytes (a scalar, a seed). Equality is constant-time.
#[derive(Clone, Zeroize, ZeroizeOnDrop, Serialize, Deserialize)]
pub struct Secret32([u8; 32]);

impl ConstantTimeEq for Secret32 {
    fn ct_eq(&self, other: &Self) -> subtle::Choice {
        self.0.ct_eq(&other.0)
    }
}

/// Compares in constant time (through [`ConstantTimeEq`]): the time taken
/// does not depend on where the first differing byte is.
impl PartialEq for Secret32 {
    fn eq(&self, other: &Self) -> bool {
        bool::from(self.ct_eq(other))
    }
}

impl Eq for Secret32 {}

impl Secret32 {
    /// Wraps bytes; the caller should zeroize its copy.
    pub fn new(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The secret bytes. Do not log them.
    pub fn expose_secret(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for Secret32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A party's per-key chain seed `c_k` for hardened derivation
/// (HD-DERIVATION.md): drawn at DKG, never sent, never refreshed.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop, Serialize, Deserialize)]
pub struct ChainSeed(Secret32);

impl ChainSeed {
    /// A fresh seed from the operating system's RNG.
    pub fn random() -> Self {
        let mut bytes = [0u8; 32];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut bytes);
        let seed = Self(Secret32::new(bytes));
        bytes.zeroize();
        seed
    }

    /// Wraps existing seed bytes (recovery, fixtures).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Secret32::new(bytes))
    }

    /// The seed. Do not log it.
    pub fn expose_secret(&self) -> &[u8; 32] {
        self.0.expose_secret()
    }
}

impl fmt::Debug for ChainSeed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ChainSeed(<redacted>)")
    }
}
