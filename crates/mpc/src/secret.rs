//! The chain seed, a party's hardened-derivation secret: zeroized on drop,
//! `<redacted>` in `Debug`, readable only through an explicit call.

use std::fmt;

use rand_core::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::Secret32;

/// A party's per-key chain seed `c_k` for hardened derivation
/// (docs/HD-DERIVATION.md): drawn at DKG, never sent, never refreshed.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop, Serialize, Deserialize)]
pub struct ChainSeed(Secret32);

impl ChainSeed {
    /// A fresh seed from `rng` (`OsRng` outside tests).
    pub fn random(rng: &mut (impl RngCore + CryptoRng)) -> Self {
        let mut bytes = [0u8; 32];
        rng.fill_bytes(&mut bytes);
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
