//! From a root share to the share of any path: the cached hardened tweak
//! (docs/HD-DERIVATION.md) for the hardened prefix, then BIP32 public
//! derivation (CKDpub, in `shardvault-types`) for the non-hardened levels
//! below. Every party adds the same public tweaks, so the child shares stay a
//! sharing of the child key.

use std::collections::BTreeMap;

use shardvault_types::derive::ckd_pub;
use zeroize::Zeroize;

use crate::error::Error;
use crate::group::Group;
use crate::hd::HardenedTweak;
use crate::share::KeyShare;
use crate::PartyId;
use crate::{derive_public, root_extended_public_key, DerivationPath, ExtendedPublicKey};

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
    Ok(derive_public(share.scheme(), &base, path.normal_suffix())?)
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
