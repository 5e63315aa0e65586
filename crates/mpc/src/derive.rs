//! From a root share to the share of any path: the cached hardened tweak
//! (HD-DERIVATION.md) for the hardened prefix, then BIP32 public derivation
//! (CKDpub) for the non-hardened levels below. Every party adds the same
//! public tweaks, so the child shares stay a sharing of the child key.

use std::collections::BTreeMap;

use hmac::{Hmac, Mac};
use sha2::Sha512;
use zeroize::Zeroize;

use crate::error::Error;
use crate::group::{Ed25519, Group, Secp256k1};
use crate::hd::{child_chain_code, HardenedTweak};
use crate::path::{DerivationPath, HARDENED};
use crate::share::KeyShare;
use crate::types::{PartyId, Scheme};

/// A public child key and its chain code: an extended public key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtendedPublicKey {
    /// The key (SEC1 compressed for secp256k1, 32 bytes for ed25519).
    pub public_key: Vec<u8>,
    /// The chain code for non-hardened children.
    pub chain_code: [u8; 32],
}

/// A party's share moved to a derived path, ready to sign: parsed values,
/// so the signing libraries need not decode (and re-validate) them again.
pub(crate) struct ChildShare<G: Group> {
    pub(crate) secret: G::Scalar,
    pub(crate) public_key: G::Point,
    pub(crate) verifying_shares: BTreeMap<PartyId, G::Point>,
}

impl<G: Group> Drop for ChildShare<G> {
    fn drop(&mut self) {
        self.secret.zeroize();
    }
}

/// One BIP32 public derivation step.
pub(crate) struct Child<G: Group> {
    /// `I_L`, added to every share.
    pub(crate) tweak: G::Scalar,
    /// `P + I_L·B`.
    pub(crate) point: G::Point,
    /// `I_R`.
    pub(crate) chain_code: [u8; 32],
}

/// BIP32 CKDpub: `I = HMAC-SHA512(cc, enc(P) ‖ ser32(i))`, tweak `I_L`,
/// `P_child = P + I_L·B`, `cc_child = I_R`.
pub(crate) fn ckd_pub<G: Group>(parent: &G::Point, chain_code: &[u8; 32], index: u32) -> Result<Child<G>, Error> {
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
    let il: [u8; 32] = il.try_into().unwrap_or_default();
    let cc: [u8; 32] = ir.try_into().unwrap_or_default();
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
/// chain code is HD-DERIVATION.md's `cc'` formula applied to the empty path.
pub fn root_extended_public_key(public_key: &[u8]) -> ExtendedPublicKey {
    ExtendedPublicKey {
        public_key: public_key.to_vec(),
        chain_code: child_chain_code(public_key, &DerivationPath::root()),
    }
}

/// The extended public key at the hardened prefix of `path`: the root's
/// (with the chain code of the empty path) or the one a hardened tweak fixed.
fn hardened_base(
    share: &KeyShare,
    tweak: Option<&HardenedTweak>,
    path: &DerivationPath,
) -> Result<ExtendedPublicKey, Error> {
    let prefix = path.hardened_prefix();
    match tweak {
        None if prefix.components().is_empty() => Ok(root_extended_public_key(share.public_key())),
        None => Err(Error::InvalidInput(format!(
            "path {path} has a hardened prefix; run hardened derivation for {prefix} first"
        ))),
        Some(tweak) => {
            if tweak.path != prefix
                || tweak.key_id != share.key_id()
                || tweak.party != share.party()
                || tweak.scheme != share.scheme()
            {
                return Err(Error::InvalidInput(format!(
                    "hardened tweak is for key {} party {} path {}, not for key {} party {} path {prefix}",
                    tweak.key_id,
                    tweak.party,
                    tweak.path,
                    share.key_id(),
                    share.party()
                )));
            }
            Ok(ExtendedPublicKey { public_key: tweak.public_key.clone(), chain_code: tweak.chain_code })
        }
    }
}

/// The extended public key of `path`, from a share and (for a hardened
/// prefix) its cached tweak.
pub fn extended_public_key(
    share: &KeyShare,
    tweak: Option<&HardenedTweak>,
    path: &DerivationPath,
) -> Result<ExtendedPublicKey, Error> {
    let base = hardened_base(share, tweak, path)?;
    derive_public(share.scheme(), &base, path.normal_suffix())
}

/// This party's share of the key at `path`. The stored points it reads were
/// validated when the share and the tweak were made or loaded, so they are
/// only decompressed here (see [`Group::point_from_trusted_bytes`]).
pub(crate) fn child_share<G: Group>(
    share: &KeyShare,
    tweak: Option<&HardenedTweak>,
    path: &DerivationPath,
) -> Result<ChildShare<G>, Error> {
    let corrupt = |what: &str| Error::decode("key share", format!("{what} is not valid"));
    let base = hardened_base(share, tweak, path)?;
    let mut secret =
        G::scalar_from_bytes(share.secret_scalar()?.expose_secret()).ok_or_else(|| corrupt("secret share"))?;
    let mut verifying = BTreeMap::new();
    for (party, bytes) in share.verifying_shares() {
        let mut point = G::point_from_trusted_bytes(bytes).ok_or_else(|| corrupt("verifying share"))?;
        if let Some(tweak) = tweak {
            let t_m = tweak.verifying_tweaks.get(party).ok_or_else(|| corrupt("hardened tweak"))?;
            point = point + G::point_from_trusted_bytes(t_m).ok_or_else(|| corrupt("hardened tweak"))?;
        }
        verifying.insert(*party, point);
    }
    if let Some(tweak) = tweak {
        secret = secret + G::scalar_from_bytes(tweak.expose_tau()).ok_or_else(|| corrupt("hardened tweak"))?;
    }
    let mut point = G::point_from_trusted_bytes(&base.public_key).ok_or_else(|| corrupt("public key"))?;
    let mut chain_code = base.chain_code;
    for index in path.normal_suffix() {
        let child = ckd_pub::<G>(&point, &chain_code, *index)?;
        secret = secret + child.tweak;
        let offset_point = G::mul_base(&child.tweak);
        for v in verifying.values_mut() {
            *v = *v + offset_point;
        }
        point = child.point;
        chain_code = child.chain_code;
    }
    let child = ChildShare { secret, public_key: point, verifying_shares: verifying };
    secret.zeroize();
    Ok(child)
}
