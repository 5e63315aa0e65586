//! Public key derivation: BIP32 CKDpub for non-hardened levels (exactly
//! BIP32 over secp256k1, the same formula over edwards25519), and the chain
//! code hardened derivation assigns to a hardened child
//! (docs/HD-DERIVATION.md). Everything here is public data: a watch-only
//! wallet or the coordinator computes it without any share.

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::Sha512;

use crate::group::{Ed25519, Group, Secp256k1};
use crate::{DerivationPath, Error, Scheme, HARDENED};

const CHAIN_CODE_KEY: &[u8] = b"shardvault/hd/v1/chaincode";

/// A public child key and its chain code: an extended public key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtendedPublicKey {
    /// The key (SEC1 compressed for secp256k1, 32 bytes for ed25519).
    pub public_key: Vec<u8>,
    /// The chain code for non-hardened children.
    pub chain_code: [u8; 32],
}

/// One BIP32 public derivation step.
pub struct Child<G: Group> {
    /// `I_L`, added to every share.
    pub tweak: G::Scalar,
    /// `P + I_L·B`.
    pub point: G::Point,
    /// `I_R`.
    pub chain_code: [u8; 32],
}

impl<G: Group> fmt::Debug for Child<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Child").field("chain_code", &hex::encode(self.chain_code)).finish_non_exhaustive()
    }
}

/// BIP32 CKDpub: `I = HMAC-SHA512(cc, enc(P) ‖ ser32(i))`, tweak `I_L`,
/// `P_child = P + I_L·B`, `cc_child = I_R`.
pub fn ckd_pub<G: Group>(parent: &G::Point, chain_code: &[u8; 32], index: u32) -> Result<Child<G>, Error> {
    if index & HARDENED != 0 {
        return Err(Error::InvalidInput(format!(
            "index {index} is hardened; public derivation needs an index below 2^31"
        )));
    }
    let mut mac =
        Hmac::<Sha512>::new_from_slice(chain_code).unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(&G::point_to_bytes(parent));
    mac.update(&index.to_be_bytes());
    let out: [u8; 64] = mac.finalize().into_bytes().into();
    let (il, ir) = out.split_at(32);
    let (mut il_bytes, mut cc) = ([0u8; 32], [0u8; 32]);
    il_bytes.copy_from_slice(il);
    cc.copy_from_slice(ir);
    let il = il_bytes;
    let invalid =
        || Error::InvalidInput(format!("BIP32 index {index} gives an invalid child here; use the next index"));
    let tweak = G::bip32_tweak(&il).ok_or_else(invalid)?;
    let child = *parent + G::mul_base(&tweak);
    if child == G::identity() {
        return Err(invalid());
    }
    Ok(Child { tweak, point: child, chain_code: cc })
}

/// Public derivation of non-hardened levels from an extended public key:
/// what a watch-only wallet or the coordinator computes. For secp256k1 this
/// is exactly BIP32; for ed25519 the same formula over edwards25519.
pub fn derive_public(scheme: Scheme, parent: &ExtendedPublicKey, suffix: &[u32]) -> Result<ExtendedPublicKey, Error> {
    match scheme {
        Scheme::EcdsaSecp256k1 | Scheme::SchnorrSecp256k1 => derive_public_in::<Secp256k1>(parent, suffix),
        Scheme::EddsaEd25519 => derive_public_in::<Ed25519>(parent, suffix),
    }
}

fn derive_public_in<G: Group>(parent: &ExtendedPublicKey, suffix: &[u32]) -> Result<ExtendedPublicKey, Error> {
    let mut point = G::point_from_bytes(&parent.public_key)
        .ok_or_else(|| Error::InvalidInput("public key is not a valid point".into()))?;
    let mut chain_code = parent.chain_code;
    for index in suffix {
        let child = ckd_pub::<G>(&point, &chain_code, *index)?;
        point = child.point;
        chain_code = child.chain_code;
    }
    Ok(ExtendedPublicKey { public_key: G::point_to_bytes(&point), chain_code })
}

/// The extended public key of a root key (`m`), from public data only: the
/// chain code is docs/HD-DERIVATION.md's `cc'` formula applied to the empty path.
pub fn root_extended_public_key(public_key: &[u8]) -> ExtendedPublicKey {
    ExtendedPublicKey {
        public_key: public_key.to_vec(),
        chain_code: child_chain_code(public_key, &DerivationPath::root()),
    }
}

/// `cc' = HMAC-SHA512(key = "shardvault/hd/v1/chaincode", enc(X') ‖ enc(path))[0..32]`.
pub fn child_chain_code(public_key: &[u8], path: &DerivationPath) -> [u8; 32] {
    let mut mac =
        Hmac::<Sha512>::new_from_slice(CHAIN_CODE_KEY).unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(public_key);
    mac.update(&path.encode());
    let out = mac.finalize().into_bytes();
    let mut cc = [0u8; 32];
    let (left, _) = out.split_at(32);
    cc.copy_from_slice(left);
    cc
}
