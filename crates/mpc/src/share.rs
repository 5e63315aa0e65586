//! Key shares: one party's secret part of one key in one epoch.
//!
//! Versioned, self-checking encoding (`SVKS` ‖ u16 version ‖ postcard body);
//! zeroized on drop (the libraries' share types zeroize themselves, the chain
//! seed is a [`ChainSeed`]); `Debug` prints only public metadata.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::Error;
use crate::group::{Ed25519, Group, Secp256k1};
use crate::{ChainSeed, Secret32};
use crate::{Epoch, KeyId, PartyId, Scheme, Threshold};

const MAGIC: &[u8; 4] = b"SVKS";

/// The share encoding this release writes. Older versions stay readable
/// (see the fixtures under `test-vectors/`).
pub const SHARE_FORMAT_VERSION: u16 = 1;

/// The library-specific secret part.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) enum SecretShare {
    Ecdsa(Box<dkls23::secp256k1::Party>),
    Ed25519(frost_ed25519::keys::KeyPackage),
    Schnorr(frost_secp256k1_tr::keys::KeyPackage),
}

/// One party's share of one key in one epoch, with its chain seed.
#[derive(Clone, Serialize, Deserialize)]
pub struct KeyShare {
    key_id: KeyId,
    scheme: Scheme,
    party: PartyId,
    threshold: Threshold,
    epoch: Epoch,
    /// Root public key `X`, canonical encoding.
    public_key: Vec<u8>,
    /// Verifying share `V_m` of every party in this epoch.
    verifying_shares: BTreeMap<PartyId, Vec<u8>>,
    chain_seed: ChainSeed,
    secret: SecretShare,
}

impl fmt::Debug for KeyShare {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyShare")
            .field("key_id", &self.key_id)
            .field("scheme", &self.scheme)
            .field("party", &self.party)
            .field("threshold", &self.threshold)
            .field("epoch", &self.epoch)
            .field("public_key", &hex::encode(&self.public_key))
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// What a share must be for: a loaded share that names another key, party
/// or epoch is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShareBinding {
    /// The key.
    pub key_id: KeyId,
    /// The holder.
    pub party: PartyId,
    /// The epoch.
    pub epoch: Epoch,
}

impl KeyShare {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        key_id: KeyId,
        party: PartyId,
        threshold: Threshold,
        epoch: Epoch,
        public_key: Vec<u8>,
        verifying_shares: BTreeMap<PartyId, Vec<u8>>,
        chain_seed: ChainSeed,
        secret: SecretShare,
    ) -> Result<Self, Error> {
        let scheme = match &secret {
            SecretShare::Ecdsa(_) => Scheme::EcdsaSecp256k1,
            SecretShare::Ed25519(_) => Scheme::EddsaEd25519,
            SecretShare::Schnorr(_) => Scheme::SchnorrSecp256k1,
        };
        let share =
            KeyShare { key_id, scheme, party, threshold, epoch, public_key, verifying_shares, chain_seed, secret };
        share.check()?;
        Ok(share)
    }

    /// The key.
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }
    /// The scheme.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }
    /// The holder.
    pub fn party(&self) -> PartyId {
        self.party
    }
    /// t-of-n.
    pub fn threshold(&self) -> Threshold {
        self.threshold
    }
    /// The epoch (0 after DKG, +1 per refresh).
    pub fn epoch(&self) -> Epoch {
        self.epoch
    }
    /// The root public key `X` (SEC1 compressed for secp256k1, 32 bytes for ed25519).
    pub fn public_key(&self) -> &[u8] {
        &self.public_key
    }
    /// Every party's verifying share in this epoch.
    pub fn verifying_shares(&self) -> &BTreeMap<PartyId, Vec<u8>> {
        &self.verifying_shares
    }
    /// What this share is bound to.
    pub fn binding(&self) -> ShareBinding {
        ShareBinding { key_id: self.key_id, party: self.party, epoch: self.epoch }
    }
    pub(crate) fn chain_seed(&self) -> &ChainSeed {
        &self.chain_seed
    }
    pub(crate) fn secret(&self) -> &SecretShare {
        &self.secret
    }

    /// The share's scalar `s_k` in the scheme's canonical encoding.
    pub(crate) fn secret_scalar(&self) -> Result<Secret32, Error> {
        let bytes: Zeroizing<Vec<u8>> = match &self.secret {
            SecretShare::Ecdsa(party) => {
                use k256_dkls::elliptic_curve::PrimeField;
                Zeroizing::new(party.poly_point.to_repr().to_vec())
            }
            SecretShare::Ed25519(package) => Zeroizing::new(package.signing_share().serialize()),
            SecretShare::Schnorr(package) => Zeroizing::new(package.signing_share().serialize()),
        };
        let array: [u8; 32] =
            bytes.as_slice().try_into().map_err(|_| Error::decode("key share", "secret share is not 32 bytes"))?;
        Ok(Secret32::new(array))
    }

    /// Encodes the share. The bytes are secret: seal them before they leave memory.
    pub fn to_bytes(&self) -> Result<Zeroizing<Vec<u8>>, Error> {
        let mut out = Zeroizing::new(Vec::with_capacity(64 * 1024));
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&SHARE_FORMAT_VERSION.to_be_bytes());
        let body = Zeroizing::new(postcard::to_stdvec(self).map_err(|e| Error::decode("key share", e))?);
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// Decodes and checks a share: its format, its internal consistency
    /// (the secret matches the stored verifying share, the library's public
    /// key matches ours) and, if given, what it must be bound to.
    pub fn from_bytes(bytes: &[u8], expected: Option<ShareBinding>) -> Result<Self, Error> {
        let rest = bytes
            .strip_prefix(MAGIC.as_slice())
            .ok_or_else(|| Error::decode("key share", "not a shardvault key share (bad magic)"))?;
        let (version, body) = rest.split_first_chunk::<2>().ok_or_else(|| Error::decode("key share", "truncated"))?;
        let version = u16::from_be_bytes(*version);
        if version != SHARE_FORMAT_VERSION {
            return Err(Error::decode(
                "key share",
                format!("unsupported format version {version}; this release reads version {SHARE_FORMAT_VERSION}"),
            ));
        }
        let (share, trailing): (KeyShare, _) =
            postcard::take_from_bytes(body).map_err(|e| Error::decode("key share", e))?;
        if !trailing.is_empty() {
            return Err(Error::decode("key share", "trailing bytes"));
        }
        share.check_points()?;
        share.check()?;
        if let Some(expected) = expected {
            if share.binding() != expected {
                return Err(Error::decode(
                    "key share",
                    format!(
                        "share is for key {} party {} epoch {}, expected key {} party {} epoch {}",
                        share.key_id, share.party, share.epoch, expected.key_id, expected.party, expected.epoch
                    ),
                ));
            }
        }
        Ok(share)
    }

    /// Every stored point is a valid, canonical point of the prime-order group.
    /// Run on bytes from outside (not on library output, which is valid by
    /// construction), so that later reads may skip the check.
    fn check_points(&self) -> Result<(), Error> {
        let valid = match self.scheme {
            Scheme::EcdsaSecp256k1 | Scheme::SchnorrSecp256k1 => self.points_valid::<Secp256k1>(),
            Scheme::EddsaEd25519 => self.points_valid::<Ed25519>(),
        };
        if !valid {
            return Err(Error::decode("key share", "a stored public key or verifying share is not a valid point"));
        }
        Ok(())
    }

    /// Internal consistency: everything a corrupted or spliced share would break.
    fn check(&self) -> Result<(), Error> {
        let bad = |detail: String| Err(Error::decode("key share", detail));
        if !self.threshold.contains(self.party) {
            return bad(format!(
                "party {} is outside {}-of-{}",
                self.party,
                self.threshold.threshold(),
                self.threshold.parties()
            ));
        }
        if !self.verifying_shares.keys().copied().eq(self.threshold.party_ids()) {
            return bad("verifying shares do not cover exactly the key's parties".into());
        }
        let (library_party, library_threshold, library_key) = self.library_view()?;
        if library_party != self.party.get()
            || library_threshold != self.threshold.threshold()
            || library_key != self.public_key
        {
            return bad("library share does not match its metadata".into());
        }
        // Present: the verifying shares cover exactly the parties, this one included.
        let own = self
            .verifying_shares
            .get(&self.party)
            .cloned()
            .ok_or(Error::Bug("a checked share has no verifying share of its own"))?;
        let secret = self.secret_scalar()?;
        let matches = match self.scheme {
            Scheme::EcdsaSecp256k1 | Scheme::SchnorrSecp256k1 => public_of::<Secp256k1>(&secret) == Some(own),
            Scheme::EddsaEd25519 => public_of::<Ed25519>(&secret) == Some(own),
        };
        if !matches {
            return bad("secret share does not match its verifying share (corrupted?)".into());
        }
        Ok(())
    }

    fn points_valid<G: Group>(&self) -> bool {
        std::iter::once(&self.public_key)
            .chain(self.verifying_shares.values())
            .all(|p| G::point_from_bytes(p).is_some())
    }

    /// (party id, threshold, public key) as the library's own share states them.
    fn library_view(&self) -> Result<(u8, u8, Vec<u8>), Error> {
        let id_of = |serialized: Vec<u8>, little_endian: bool| -> Option<u8> {
            // FROST identifiers derived from u16 are small scalars.
            let (low, high) = if little_endian {
                (serialized.first().copied(), serialized.get(1..))
            } else {
                (serialized.last().copied(), serialized.get(..serialized.len().saturating_sub(1)))
            };
            high.filter(|h| h.iter().all(|b| *b == 0)).and(low)
        };
        let view = match &self.secret {
            SecretShare::Ecdsa(party) => {
                use k256_dkls::elliptic_curve::sec1::ToSec1Point;
                let key = party.pk.to_sec1_point(true).as_bytes().to_vec();
                Some((party.party_index.as_u8(), party.parameters.threshold, key))
            }
            SecretShare::Ed25519(p) => {
                let key = p.verifying_key().serialize().map_err(|e| Error::decode("key share", e))?;
                let threshold = u8::try_from(*p.min_signers()).ok();
                id_of(p.identifier().serialize(), true).zip(threshold).map(|(id, t)| (id, t, key))
            }
            SecretShare::Schnorr(p) => {
                let key = p.verifying_key().serialize().map_err(|e| Error::decode("key share", e))?;
                let threshold = u8::try_from(*p.min_signers()).ok();
                id_of(p.identifier().serialize(), false).zip(threshold).map(|(id, t)| (id, t, key))
            }
        };
        view.ok_or_else(|| Error::decode("key share", "library identifier or threshold is not a small number"))
    }
}

fn public_of<G: Group>(secret: &Secret32) -> Option<Vec<u8>> {
    G::scalar_from_bytes(secret.expose_secret()).map(|s| G::point_to_bytes(&G::mul_base(&s)))
}
