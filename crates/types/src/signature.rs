//! A finished signature and what it verifies under.

use serde::{Deserialize, Serialize};

use crate::{PartyId, Scheme};

/// A threshold signature.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    /// The scheme that made it.
    pub scheme: Scheme,
    /// 64 bytes: `r ‖ s` (ECDSA, low-S), `R ‖ s` (Ed25519), `x(R) ‖ s` (BIP340).
    pub bytes: Vec<u8>,
    /// ECDSA's recovery id (0 or 1), as Bitcoin message signing and EVM need.
    pub recovery_id: Option<u8>,
    /// The key it verifies under: SEC1-compressed (ECDSA), 32 bytes (Ed25519),
    /// 32-byte x-only BIP341-tweaked output key (BIP340).
    pub public_key: Vec<u8>,
    /// Who signed, in order.
    pub signers: Vec<PartyId>,
}
