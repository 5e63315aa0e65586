//! What one party's backup holds: the key material recovery needs, as plain
//! values an independent tool can read (docs/FORMATS.md, "Backups"), not the
//! libraries' internal share encodings.
//!
//! A node makes one with [`KeyShare::backup`] and encrypts it; the recovery
//! tool decrypts t of them and hands them to [`crate::recover_key`], which
//! checks them first ([`ShareBackup::check`]).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::group::{lagrange_at_zero, Ed25519, Group, Secp256k1};
use crate::share::KeyShare;
use crate::{ChainSeed, Secret32};
use crate::{Epoch, KeyId, PartyId, Scheme, Threshold};

/// One party's share of one key in one epoch, with its chain seed: secret.
/// `Debug` prints only public metadata; the secrets zeroize on drop.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShareBackup {
    /// The key.
    #[serde(with = "text")]
    pub key_id: KeyId,
    /// Its scheme.
    #[serde(with = "text")]
    pub scheme: Scheme,
    /// t.
    pub threshold: u8,
    /// n (the parties are `1..=n`).
    pub parties: u8,
    /// The holder (the x coordinate its share is at).
    pub party: PartyId,
    /// The share's epoch.
    pub epoch: Epoch,
    /// Root public key `X`: SEC1 compressed for secp256k1, 32 bytes for edwards25519.
    #[serde(with = "hex_bytes")]
    pub root_public_key: Vec<u8>,
    /// Every party's verifying share `V_m = s_m·B` in this epoch.
    pub verifying_shares: BTreeMap<PartyId, HexPoint>,
    /// The secret share `s_k` (big-endian for secp256k1, little-endian for edwards25519).
    #[serde(with = "secret_hex")]
    pub secret_share: Secret32,
    /// The party's chain seed `c_k` (docs/HD-DERIVATION.md).
    #[serde(with = "seed_hex")]
    pub chain_seed: ChainSeed,
}

/// A public point, hex in JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct HexPoint(#[serde(with = "hex_bytes")] pub Vec<u8>);

impl fmt::Debug for ShareBackup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShareBackup")
            .field("key_id", &self.key_id)
            .field("scheme", &self.scheme)
            .field("threshold", &self.threshold)
            .field("parties", &self.parties)
            .field("party", &self.party)
            .field("epoch", &self.epoch)
            .field("root_public_key", &hex::encode(&self.root_public_key))
            .field("secret_share", &"<redacted>")
            .field("chain_seed", &"<redacted>")
            .finish()
    }
}

impl KeyShare {
    /// What this share's backup holds. Secret: encrypt it before it leaves memory.
    pub fn backup(&self) -> Result<ShareBackup, Error> {
        Ok(ShareBackup {
            key_id: self.key_id(),
            scheme: self.scheme(),
            threshold: self.threshold().threshold(),
            parties: self.threshold().parties(),
            party: self.party(),
            epoch: self.epoch(),
            root_public_key: self.public_key().to_vec(),
            verifying_shares: self.verifying_shares().iter().map(|(p, v)| (*p, HexPoint(v.clone()))).collect(),
            secret_share: self.secret_scalar()?,
            chain_seed: self.chain_seed().clone(),
        })
    }
}

impl ShareBackup {
    /// t-of-n.
    pub fn threshold(&self) -> Result<Threshold, Error> {
        Ok(Threshold::new(self.threshold, self.parties)?)
    }

    /// Everything a tampered or mislabelled backup would break: the party inside `1..=n`, verifying shares for exactly
    /// the parties and valid points, the secret matching this party's
    /// verifying share, and any t verifying shares interpolating to the root
    /// public key.
    pub fn check(&self) -> Result<(), Error> {
        match self.scheme {
            Scheme::EcdsaSecp256k1 | Scheme::SchnorrSecp256k1 => self.check_in::<Secp256k1>(),
            Scheme::EddsaEd25519 => self.check_in::<Ed25519>(),
        }
    }

    fn check_in<G: Group>(&self) -> Result<(), Error> {
        let threshold = self.threshold()?;
        if !threshold.contains(self.party) {
            return Err(bad(format!("party {} is outside {}-of-{}", self.party, self.threshold, self.parties)));
        }
        if !self.verifying_shares.keys().copied().eq(threshold.party_ids()) {
            return Err(bad("verifying shares do not cover exactly the key's parties".into()));
        }
        let point = |bytes: &[u8], what: &str| {
            G::point_from_bytes(bytes).ok_or_else(|| bad(format!("{what} is not a valid point")))
        };
        let root = point(&self.root_public_key, "the root public key")?;
        let mut shares = BTreeMap::new();
        for (party, share) in &self.verifying_shares {
            shares.insert(party.get(), point(&share.0, &format!("party {party}'s verifying share"))?);
        }
        let secret = G::scalar_from_bytes(self.secret_share.expose_secret())
            .ok_or_else(|| bad("the secret share is not a canonical scalar".into()))?;
        let own = shares.get(&self.party.get()).ok_or(Error::Bug("checked verifying shares lack the holder's"))?;
        if G::point_to_bytes(&G::mul_base(&secret)) != G::point_to_bytes(own) {
            return Err(bad("the secret share does not match its verifying share".into()));
        }
        let xs: Vec<u8> = shares.keys().copied().take(usize::from(self.threshold)).collect();
        let mut sum = G::identity();
        for x in &xs {
            let lambda =
                lagrange_at_zero::<G>(*x, &xs).ok_or(Error::Bug("distinct parties have a Lagrange coefficient"))?;
            let share = shares.get(x).ok_or(Error::Bug("x came from the map"))?;
            sum = sum + G::mul(share, &lambda);
        }
        if G::point_to_bytes(&sum) != G::point_to_bytes(&root) {
            return Err(bad("the verifying shares do not interpolate to the root public key".into()));
        }
        Ok(())
    }
}

fn bad(detail: String) -> Error {
    Error::InvalidInput(format!("share backup: {detail}"))
}

mod text {
    use std::fmt::Display;
    use std::str::FromStr;

    use serde::{de::Error as _, Deserialize, Deserializer, Serializer};

    pub fn serialize<T: Display, S: Serializer>(value: &T, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(value)
    }

    pub fn deserialize<'de, T, D>(d: D) -> Result<T, D::Error>
    where
        T: FromStr,
        T::Err: Display,
        D: Deserializer<'de>,
    {
        let text = String::deserialize(d)?;
        text.parse().map_err(D::Error::custom)
    }
}

mod hex_bytes {
    use serde::{de::Error as _, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        hex::decode(String::deserialize(d)?).map_err(D::Error::custom)
    }
}

/// 32 secret bytes as hex, without leaving unzeroized copies behind.
mod secret32_hex {
    use serde::{de::Error as _, Deserialize, Deserializer, Serializer};
    use zeroize::Zeroizing;

    pub fn serialize<S: Serializer>(bytes: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        let text = Zeroizing::new(hex::encode(bytes));
        s.serialize_str(&text)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Zeroizing<[u8; 32]>, D::Error> {
        let text = Zeroizing::new(String::deserialize(d)?);
        let mut bytes = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(text.as_bytes(), bytes.as_mut())
            .map_err(|_| D::Error::custom("expected 64 hex characters"))?;
        Ok(bytes)
    }
}

mod secret_hex {
    use serde::{Deserializer, Serializer};

    use crate::Secret32;

    pub fn serialize<S: Serializer>(secret: &Secret32, s: S) -> Result<S::Ok, S::Error> {
        super::secret32_hex::serialize(secret.expose_secret(), s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Secret32, D::Error> {
        super::secret32_hex::deserialize(d).map(|bytes| Secret32::new(*bytes))
    }
}

mod seed_hex {
    use serde::{Deserializer, Serializer};

    use crate::ChainSeed;

    pub fn serialize<S: Serializer>(seed: &ChainSeed, s: S) -> Result<S::Ok, S::Error> {
        super::secret32_hex::serialize(seed.expose_secret(), s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<ChainSeed, D::Error> {
        super::secret32_hex::deserialize(d).map(|bytes| ChainSeed::from_bytes(*bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{dkg, local, OsRng, SessionId};

    fn backups(scheme: Scheme) -> Vec<ShareBackup> {
        let threshold = Threshold::new(2, 3).unwrap();
        let (key_id, session) = (KeyId::random(), SessionId::random());
        let started = threshold
            .party_ids()
            .map(|me| dkg(scheme, key_id, threshold, me, session, &mut OsRng))
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        local::run(started).unwrap().values().map(|share| share.backup().unwrap()).collect()
    }

    #[test]
    fn a_fresh_backup_checks_and_round_trips_through_json() {
        for scheme in [Scheme::EcdsaSecp256k1, Scheme::EddsaEd25519, Scheme::SchnorrSecp256k1] {
            for backup in backups(scheme) {
                backup.check().unwrap();
                let json = serde_json::to_string(&backup).unwrap();
                let again: ShareBackup = serde_json::from_str(&json).unwrap();
                again.check().unwrap();
                assert_eq!(serde_json::to_string(&again).unwrap(), json);
                assert!(!format!("{backup:?}").contains(&hex::encode(backup.secret_share.expose_secret())));
            }
        }
    }

    #[test]
    fn tampering_is_refused() {
        let mut run = backups(Scheme::EcdsaSecp256k1);
        let backup = run.remove(0);
        let mut wrong_secret = backup.clone();
        wrong_secret.secret_share = run[0].secret_share.clone();
        assert!(wrong_secret.check().unwrap_err().to_string().contains("does not match its verifying share"));
        let mut wrong_root = backup.clone();
        wrong_root.root_public_key = backup.verifying_shares[&backup.party].0.clone();
        assert!(wrong_root.check().unwrap_err().to_string().contains("do not interpolate"));
        let mut outside = backup;
        outside.party = PartyId::new(4).unwrap();
        assert!(outside.check().is_err());
    }
}
