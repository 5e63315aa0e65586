//! Seed shares: any t backups recover every hardened path, not only the
//! root (docs/HD-DERIVATION.md, "Recovery from any t backups").
//!
//! A hardened path's tweak needs every party's chain seed, and a party's
//! backup holds only its own. So at export each node also splits its chain
//! seed t-of-n (Shamir in GF(2^8), the Vault share format of
//! `shardvault-shamir`) and seals share `j` to party `j`'s recipient: whoever
//! opens t parties' files holds t shares of every other party's seed. Fewer
//! than t learn nothing about the seeds they do not hold, just as they learn
//! nothing about the root secret.

use serde::{Deserialize, Serialize};
use shardvault_mpc::ChainSeed;
use zeroize::Zeroizing;

use crate::{decrypt, seal_json, BackupPlaintext, Error};

/// The `format` field of every decrypted seed share.
pub const SEED_SHARE_FORMAT: &str = "shardvault-seed-share";

/// One share of party `from_party`'s chain seed, for party `to_party`.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedSharePlaintext {
    /// Always [`SEED_SHARE_FORMAT`].
    pub format: String,
    /// Always [`crate::PLAINTEXT_VERSION`].
    pub version: u16,
    /// The organisation id (hex).
    pub organisation: String,
    /// The export request it was made for.
    pub request_id: String,
    /// The key (hex id).
    pub key_id: String,
    /// The key's root public key (hex).
    pub root_public_key: String,
    /// t: how many shares rebuild the seed.
    pub threshold: u8,
    /// n.
    pub parties: u8,
    /// Whose seed this is a share of.
    pub from_party: u8,
    /// Whose recipient it is sealed to.
    pub to_party: u8,
    /// The share, in Vault's format (y bytes, then the x byte), hex.
    #[serde(with = "secret_hex")]
    pub share: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for SeedSharePlaintext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeedSharePlaintext")
            .field("key_id", &self.key_id)
            .field("from_party", &self.from_party)
            .field("to_party", &self.to_party)
            .field("share", &"<redacted>")
            .finish()
    }
}

/// Splits `own`'s chain seed t-of-n and seals share `j` to `recipients[j-1]`
/// for every other party `j`: `(j, age file)` in party order.
pub fn seal_seed_shares(own: &BackupPlaintext, recipients: &[String]) -> Result<Vec<(u8, Vec<u8>)>, Error> {
    let share = &own.share;
    if recipients.len() != usize::from(share.parties) {
        return Err(Error::Encrypt(format!("{} recipients for {} parties", recipients.len(), share.parties)));
    }
    let pieces = shardvault_shamir::split(share.chain_seed.expose_secret(), share.parties, share.threshold)
        .map_err(|e| Error::Encrypt(format!("splitting the chain seed: {e}")))?;
    let mut sealed = Vec::with_capacity(recipients.len().saturating_sub(1));
    for ((to_party, recipient), piece) in (1u8..).zip(recipients).zip(pieces) {
        if to_party == share.party.get() {
            continue;
        }
        let plaintext = SeedSharePlaintext {
            format: SEED_SHARE_FORMAT.into(),
            version: crate::PLAINTEXT_VERSION,
            organisation: own.organisation.clone(),
            request_id: own.request_id.clone(),
            key_id: share.key_id.to_string(),
            root_public_key: hex::encode(&share.root_public_key),
            threshold: share.threshold,
            parties: share.parties,
            from_party: share.party.get(),
            to_party,
            share: piece,
        };
        sealed.push((to_party, seal_json(&plaintext, std::slice::from_ref(recipient))?));
    }
    Ok(sealed)
}

/// Decrypts a seed share with any of `identities` and checks its shape.
pub fn open_seed_share(sealed: &[u8], identities: &[&dyn age::Identity]) -> Result<SeedSharePlaintext, Error> {
    let json = decrypt(sealed, identities)?;
    let plaintext: SeedSharePlaintext =
        serde_json::from_slice(&json).map_err(|e| Error::Plaintext(format!("a seed share: {e}")))?;
    let parties = 1..=plaintext.parties;
    if plaintext.format != SEED_SHARE_FORMAT
        || plaintext.version != crate::PLAINTEXT_VERSION
        || plaintext.threshold < 2
        || plaintext.threshold > plaintext.parties
        || !parties.contains(&plaintext.from_party)
        || !parties.contains(&plaintext.to_party)
        || plaintext.from_party == plaintext.to_party
        || plaintext.share.len() != 33
    {
        return Err(Error::Plaintext(format!(
            "not a {SEED_SHARE_FORMAT} version {} this release reads",
            crate::PLAINTEXT_VERSION
        )));
    }
    Ok(plaintext)
}

/// Rebuilds one party's chain seed from seed shares of it (all of one key
/// and one source party, from distinct holders, at least t). With more than
/// t, every share must agree: the first t and all of them give one seed.
pub fn combine_seed(shares: &[&SeedSharePlaintext]) -> Result<ChainSeed, Error> {
    let first = shares.first().ok_or_else(|| Error::Plaintext("no seed shares".into()))?;
    let mut holders: Vec<u8> = shares.iter().map(|s| s.to_party).collect();
    holders.sort_unstable();
    holders.dedup();
    let foreign = shares.iter().any(|s| {
        (s.key_id.as_str(), s.from_party, s.threshold, s.parties)
            != (first.key_id.as_str(), first.from_party, first.threshold, first.parties)
    });
    if foreign || holders.len() != shares.len() {
        return Err(Error::Plaintext("seed shares of different keys or parties, or one holder twice".into()));
    }
    let needed = usize::from(first.threshold);
    if shares.len() < needed {
        return Err(Error::Plaintext(format!(
            "party {}'s chain seed needs {needed} seed shares, {} given",
            first.from_party,
            shares.len()
        )));
    }
    let pieces: Vec<&[u8]> = shares.iter().map(|s| s.share.as_slice()).collect();
    let all = shardvault_shamir::combine(&pieces).map_err(|e| Error::Plaintext(e.to_string()))?;
    let least = shardvault_shamir::combine(pieces.get(..needed).unwrap_or_default())
        .map_err(|e| Error::Plaintext(e.to_string()))?;
    if all != least {
        return Err(Error::Plaintext(format!(
            "party {}'s seed shares disagree: one of them is not what its node sealed",
            first.from_party
        )));
    }
    let bytes: [u8; 32] = all.as_slice().try_into().map_err(|_| Error::Plaintext("a seed is 32 bytes".into()))?;
    Ok(ChainSeed::from_bytes(bytes))
}

mod secret_hex {
    use serde::{Deserialize, Deserializer, Serializer};
    use zeroize::Zeroizing;

    pub fn serialize<S: Serializer>(bytes: &Zeroizing<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&Zeroizing::new(hex::encode(bytes.as_slice())))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Zeroizing<Vec<u8>>, D::Error> {
        let text = Zeroizing::new(String::deserialize(d)?);
        hex::decode(text.as_str()).map(Zeroizing::new).map_err(serde::de::Error::custom)
    }
}
