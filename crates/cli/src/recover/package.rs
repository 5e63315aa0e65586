//! The backup package (docs/FORMATS.md, "Backups"): read it, check its
//! format and every entry's checksum, pick the key, open the shares the
//! identities can open, and check each against the entry it came in.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{bail, Context, Result};
use base64::Engine;
use shardvault_api::{BackupPackage, ExportedKeyShare, BACKUP_FORMAT, BACKUP_MIN_VERSION, BACKUP_VERSION};
use shardvault_backup::SeedSharePlaintext;
use shardvault_mpc::{ChainSeed, KeyId, PartyId, Scheme, ShareBackup};

use super::identities::BackupIdentity;

/// The largest package read (thousands of keys' shares).
const MAX_PACKAGE: u64 = 256 * 1024 * 1024;

/// Reads a package and refuses anything but this release's format with
/// every entry intact.
pub fn read(file: &Path) -> Result<BackupPackage> {
    let size = std::fs::metadata(file).with_context(|| format!("reading the backup {}", file.display()))?.len();
    if size > MAX_PACKAGE {
        bail!("{} is {size} bytes, more than a backup package ({MAX_PACKAGE} at most)", file.display());
    }
    let text = std::fs::read(file).with_context(|| format!("reading the backup {}", file.display()))?;
    let package: BackupPackage = serde_json::from_slice(&text).with_context(|| {
        format!("{} is not a shardvault backup package (docs/FORMATS.md, \"Backups\")", file.display())
    })?;
    if package.format != BACKUP_FORMAT || !(BACKUP_MIN_VERSION..=BACKUP_VERSION).contains(&package.version) {
        bail!(
            "{} is format {:?} version {}; this release reads {BACKUP_FORMAT} versions \
             {BACKUP_MIN_VERSION} to {BACKUP_VERSION}",
            file.display(),
            package.format,
            package.version
        );
    }
    for entry in &package.exported_key_shares {
        check_entry(entry)?;
    }
    Ok(package)
}

/// An entry's checksum and shape: one recipient and one share per party,
/// the parties `1..=n`, and the names the entry's fields use.
pub fn check_entry(entry: &ExportedKeyShare) -> Result<()> {
    let key = &entry.key_id;
    if entry.compute_checksum() != entry.checksum.to_ascii_lowercase() {
        bail!(
            "the backup entry of key {key} fails its checksum: the package is damaged or was tampered with; \
             refusing to use it (use another copy of the backup)"
        );
    }
    let n = entry.party_ids.len();
    if entry.encrypted_shares.len() != n || entry.encryption_pubkeys.len() != n {
        bail!(
            "the backup entry of key {key} lists {n} parties but {} recipients and {} shares",
            entry.encryption_pubkeys.len(),
            entry.encrypted_shares.len()
        );
    }
    if !entry.party_ids.iter().copied().eq(1..=u8::try_from(n).unwrap_or(u8::MAX)) {
        bail!("the backup entry of key {key} lists parties {:?}; expected 1..={n} in order", entry.party_ids);
    }
    if usize::from(entry.threshold) > n || entry.threshold < 1 {
        bail!("the backup entry of key {key} is {}-of-{n}", entry.threshold);
    }
    let scheme = scheme(entry)?;
    let curve = shardvault_chains::KeyType::from(scheme).curve();
    if entry.key_type != curve {
        bail!("the backup entry of key {key} is of scheme {scheme} but key type {:?}", entry.key_type);
    }
    let root = hex::decode(&entry.root_public_key)
        .with_context(|| format!("the backup entry of key {key}: root_public_key is not hex"))?;
    let chain_code = shardvault_mpc::child_chain_code(&root, &shardvault_mpc::DerivationPath::root());
    if hex::encode(chain_code) != entry.chaincode.to_ascii_lowercase() {
        bail!("the backup entry of key {key}: its chaincode is not the one of its root public key");
    }
    Ok(())
}

/// The entry's scheme.
pub fn scheme(entry: &ExportedKeyShare) -> Result<Scheme> {
    entry.scheme.parse().map_err(|e| anyhow::anyhow!("the backup entry of key {}: {e}", entry.key_id))
}

/// The entry of `key`, or the package's only one.
pub fn select<'a>(package: &'a BackupPackage, key: Option<&str>) -> Result<&'a ExportedKeyShare> {
    let ids: Vec<&str> = package.exported_key_shares.iter().map(|e| e.key_id.as_str()).collect();
    match (key, package.exported_key_shares.as_slice()) {
        (_, []) => bail!("the backup package holds no key"),
        (None, [only]) => Ok(only),
        (None, _) => bail!("the backup package holds {} keys; choose one with --key: {}", ids.len(), ids.join(", ")),
        (Some(key), entries) => entries
            .iter()
            .find(|e| e.key_id.eq_ignore_ascii_case(key))
            .ok_or_else(|| anyhow::anyhow!("the backup package holds no key {key}; it holds: {}", ids.join(", "))),
    }
}

/// The shares the identities opened, each checked against its entry.
#[derive(Debug)]
pub struct Opened {
    /// The shares, by party.
    pub shares: Vec<ShareBackup>,
    /// The parties whose shares were opened.
    pub parties: BTreeSet<u8>,
    /// The parties that were not, with their recipients.
    pub missing: Vec<(u8, String)>,
    /// The chain seeds of missing parties, rebuilt from the seed shares the
    /// opened parties hold (docs/HD-DERIVATION.md, "Recovery from any t backups").
    pub seeds: BTreeMap<PartyId, ChainSeed>,
}

impl Opened {
    /// Refuses unless every party's chain seed is at hand (its share, or t
    /// seed shares of it): what a hardened path needs.
    pub fn require_every_seed(&self, path: &shardvault_mpc::DerivationPath) -> Result<()> {
        let lacking: Vec<String> = self
            .missing
            .iter()
            .filter(|(p, _)| PartyId::new(*p).map_or(true, |party| !self.seeds.contains_key(&party)))
            .map(|(p, r)| format!("party {p} ({r})"))
            .collect();
        if lacking.is_empty() {
            return Ok(());
        }
        bail!(
            "path {path} is hardened, and a hardened path needs every party's chain seed (docs/HD-DERIVATION.md): \
             opened the shares of parties {}; no share and too few seed shares of {}. Give those parties' \
             identities too, or a backup exported by this release (its files carry seed shares)",
            list(&self.parties),
            lacking.join(", ")
        )
    }
}

/// Decrypts every share of `entry` that one of `identities` opens, checks
/// each against the entry, and refuses fewer than t. With `trusted` (the
/// parties whose node signed their files), no other party's share or seed
/// shares are used.
pub fn open(
    package: &BackupPackage,
    entry: &ExportedKeyShare,
    identities: &[BackupIdentity],
    trusted: Option<&BTreeSet<u8>>,
) -> Result<Opened> {
    let key = &entry.key_id;
    let ages: Vec<&dyn age::Identity> = identities.iter().map(BackupIdentity::age).collect();
    let (mut shares, mut parties, mut missing) = (Vec::new(), BTreeSet::new(), Vec::new());
    for ((party, recipient), blob) in entry.party_ids.iter().zip(&entry.encryption_pubkeys).zip(&entry.encrypted_shares)
    {
        if trusted.is_some_and(|trusted| !trusted.contains(party)) {
            missing.push((*party, format!("{recipient}; not signed by its node")));
            continue;
        }
        let sealed = base64::engine::general_purpose::STANDARD
            .decode(blob.trim())
            .with_context(|| format!("key {key}: the share of party {party} is not base64: the package is damaged"))?;
        match shardvault_backup::open(&sealed, &ages) {
            Ok(plaintext) => {
                if plaintext.organisation != package.organisation || plaintext.request_id != package.request_id {
                    bail!(
                        "key {key}: the share of party {party} was sealed for organisation {} and export {}, \
                         the package is organisation {} export {}: shares from different backups were mixed",
                        plaintext.organisation,
                        plaintext.request_id,
                        package.organisation,
                        package.request_id
                    );
                }
                check_share(entry, *party, &plaintext.share)?;
                parties.insert(*party);
                shares.push(plaintext.share);
            }
            Err(shardvault_backup::Error::NoIdentity) => {
                if let Some(identity) = identities.iter().find(|i| i.is_recipient(recipient)) {
                    bail!(
                        "key {key}: the share of party {party} is listed for {recipient}, which {} is, but it \
                         is not encrypted to it: the package was tampered with",
                        identity.file.display()
                    );
                }
                missing.push((*party, recipient.clone()));
            }
            Err(error) => bail!(
                "key {key}: the share of party {party} does not decrypt: {error}. It is damaged or was tampered \
                 with; refusing to use it"
            ),
        }
    }
    let t = usize::from(entry.threshold);
    let unsigned: BTreeSet<u8> =
        entry.party_ids.iter().copied().filter(|p| trusted.is_some_and(|trusted| !trusted.contains(p))).collect();
    if parties.is_empty() && !unsigned.is_empty() {
        bail!(
            "no share of key {key} is both opened by the identities and signed by its node: parties {} are not \
             signed by their node (the warnings above say why). This package is not what the cluster sealed; use \
             another copy, and check that --cluster is this cluster's file",
            list(&unsigned)
        );
    }
    if parties.is_empty() {
        let files: Vec<String> = identities.iter().map(|i| i.describe()).collect();
        let recipients: Vec<String> =
            entry.encryption_pubkeys.iter().zip(&entry.party_ids).map(|(r, p)| format!("party {p}: {r}")).collect();
        bail!(
            "wrong identity: none of {} opens any share of key {key}. The shares are encrypted to {}",
            files.join(", "),
            recipients.join("; ")
        );
    }
    if parties.len() < t {
        let missing: Vec<String> = missing.iter().map(|(p, r)| format!("party {p} ({r})")).collect();
        bail!(
            "too few shares: key {key} is {t}-of-{} and needs {t} shares; the identities opened {} (parties {}). \
             Not opened: {}",
            entry.party_ids.len(),
            parties.len(),
            list(&parties),
            missing.join(", ")
        );
    }
    let seeds = seeds(package, entry, &ages, &parties, &missing, trusted)?;
    Ok(Opened { shares, parties, missing, seeds })
}

/// The chain seeds of the `missing` parties, each from the seed shares of it
/// sealed to the opened `parties` (t of them needed; more must agree).
fn seeds(
    package: &BackupPackage,
    entry: &ExportedKeyShare,
    identities: &[&dyn age::Identity],
    parties: &BTreeSet<u8>,
    missing: &[(u8, String)],
    trusted: Option<&BTreeSet<u8>>,
) -> Result<BTreeMap<PartyId, ChainSeed>> {
    let key = &entry.key_id;
    let mut opened: BTreeMap<u8, Vec<SeedSharePlaintext>> = BTreeMap::new();
    for seed in &entry.encrypted_seed_shares {
        let vouched = trusted.is_none_or(|trusted| trusted.contains(&seed.from_party));
        if !vouched || !parties.contains(&seed.to_party) || !missing.iter().any(|(p, _)| *p == seed.from_party) {
            continue;
        }
        let sealed =
            base64::engine::general_purpose::STANDARD.decode(seed.encrypted_share.trim()).with_context(|| {
                format!("key {key}: a seed share of party {} is not base64: the package is damaged", seed.from_party)
            })?;
        let share = shardvault_backup::open_seed_share(&sealed, identities).with_context(|| {
            format!(
                "key {key}: the seed share of party {} for party {} does not open with that party's identity: \
                 it is damaged or was tampered with",
                seed.from_party, seed.to_party
            )
        })?;
        let expected =
            (key.to_ascii_lowercase(), entry.root_public_key.to_ascii_lowercase(), seed.from_party, seed.to_party);
        let found = (share.key_id.clone(), share.root_public_key.clone(), share.from_party, share.to_party);
        let shape = (share.threshold, usize::from(share.parties)) == (entry.threshold, entry.party_ids.len());
        if found != expected
            || !shape
            || share.organisation != package.organisation
            || share.request_id != package.request_id
        {
            bail!(
                "key {key}: the seed share listed from party {} to party {} is of another key, party or backup",
                seed.from_party,
                seed.to_party
            );
        }
        opened.entry(seed.from_party).or_default().push(share);
    }
    let mut seeds = BTreeMap::new();
    for (from, shares) in &opened {
        if shares.len() < usize::from(entry.threshold) {
            continue;
        }
        let shares: Vec<&SeedSharePlaintext> = shares.iter().collect();
        let seed =
            shardvault_backup::combine_seed(&shares).with_context(|| format!("key {key}: party {from}'s seed"))?;
        seeds.insert(PartyId::new(*from)?, seed);
    }
    Ok(seeds)
}

/// A decrypted share must be of the entry's key, scheme, epoch, threshold,
/// root public key, and of the party whose place it came in.
fn check_share(entry: &ExportedKeyShare, party: u8, share: &ShareBackup) -> Result<()> {
    let key = &entry.key_id;
    let entry_key: KeyId =
        key.parse().map_err(|e| anyhow::anyhow!("the backup entry's key id {key:?} is not a key id: {e}"))?;
    let of = format!("key {key}: the share in party {party}'s place");
    if share.key_id != entry_key {
        bail!("{of} is a share of key {}: shares of different keys do not combine", share.key_id);
    }
    if share.scheme != scheme(entry)? {
        bail!("{of} is of scheme {}, the entry says {}", share.scheme, entry.scheme);
    }
    if u64::from(share.epoch.0) != entry.epoch {
        bail!(
            "{of} is of epoch {}, the entry's shares of epoch {}: shares from different epochs do not combine \
             (a refresh changed them); use the shares of one backup",
            share.epoch,
            entry.epoch
        );
    }
    if share.party.get() != party {
        bail!("{of} is party {}'s share", share.party);
    }
    if share.threshold != entry.threshold || usize::from(share.parties) != entry.party_ids.len() {
        bail!(
            "{of} is {}-of-{}, the entry {}-of-{}",
            share.threshold,
            share.parties,
            entry.threshold,
            entry.party_ids.len()
        );
    }
    if hex::encode(&share.root_public_key) != entry.root_public_key.to_ascii_lowercase() {
        bail!(
            "{of} is of root public key {}, the entry's is {}",
            hex::encode(&share.root_public_key),
            entry.root_public_key
        );
    }
    Ok(())
}

fn list(parties: &BTreeSet<u8>) -> String {
    parties.iter().map(u8::to_string).collect::<Vec<_>>().join(", ")
}
