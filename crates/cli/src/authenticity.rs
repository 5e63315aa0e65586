//! Is a backup package what the nodes sealed? (docs/FORMATS.md "Backup
//! statement"; docs/SECURITY.md "Backups".)
//!
//! age has no sender authentication, so the package alone proves nothing:
//! whoever knows the officers' public keys can encrypt other shares to them
//! and write a matching checksum. Each node signs, with the identity key
//! the cluster file pins, a statement naming the key, epoch, party, export,
//! recipients and the SHA-256 of every file it sealed. Here each party's
//! statement is rebuilt from the package itself — the entry's fields and
//! the files as they are in it — and its node's signature checked, so a
//! party counts only if its files are exactly those its node sealed. An
//! address counts only if max(2, t) pinned nodes attested it, and so does a
//! hardened path's child public key that the nodes list in their
//! statements (which the coordinator therefore cannot leave out).

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{anyhow, Context, Result};
use base64::Engine;
use serde::Serialize;
use sha2::{Digest, Sha256};
use shardvault_api::{BackupAddress, BackupPackage, ExportedKeyShare};
use shardvault_mpc::{DerivationPath, Epoch, KeyId, PartyId, Scheme, Threshold};
use shardvault_wire::{AddressAttestation, AddressStatement, BackupStatement, Cluster, NodeId};

/// What the signatures in one entry vouch for.
#[derive(Debug, Serialize)]
pub struct Authenticity {
    /// Parties whose share and seed-share files their node signed.
    pub parties: BTreeSet<u8>,
    /// The node that signed for each of them.
    pub nodes: BTreeMap<u8, u16>,
    /// Parties that do not count, and why.
    pub rejected: Vec<(u8, String)>,
    /// The addresses max(2, t) pinned nodes attested.
    #[serde(skip)]
    pub addresses: Vec<BackupAddress>,
    /// Addresses the package lists that are not attested, and why.
    pub unattested: Vec<(String, String)>,
    /// Hardened paths with the child public key max(2, t) of the counted
    /// parties' nodes signed: what the recovered chain seeds must give.
    #[serde(skip)]
    pub hardened: BTreeMap<DerivationPath, Vec<u8>>,
}

impl Authenticity {
    /// Every party of the entry is vouched for.
    pub fn complete(&self, entry: &ExportedKeyShare) -> bool {
        self.rejected.is_empty() && entry.party_ids.iter().all(|p| self.parties.contains(p))
    }

    /// The refusals, one line.
    pub fn describe_rejected(&self) -> String {
        let why: Vec<String> = self.rejected.iter().map(|(p, why)| format!("party {p}: {why}")).collect();
        why.join("; ")
    }
}

/// Checks every party's signature and every address's attestations in
/// `entry` against `cluster`. Errors only on an entry it cannot read; a
/// party or address that fails is listed, not counted.
pub fn check(package: &BackupPackage, entry: &ExportedKeyShare, cluster: &Cluster) -> Result<Authenticity> {
    let facts = Facts::of(entry)?;
    // The party map the package claims; every node signed the map it was
    // pinned to, so a claim no honest node made fails their signatures.
    let mut nodes = BTreeMap::new();
    for attestation in &entry.share_attestations {
        if nodes.insert(PartyId::new(attestation.party)?, NodeId(attestation.node)).is_some() {
            anyhow::bail!(
                "the backup entry of key {} carries two node signatures for party {}: it was tampered with",
                entry.key_id,
                attestation.party
            );
        }
    }
    let mut authenticity = Authenticity {
        parties: BTreeSet::new(),
        nodes: BTreeMap::new(),
        rejected: Vec::new(),
        addresses: Vec::new(),
        unattested: Vec::new(),
        hardened: BTreeMap::new(),
    };
    let mut listed: BTreeMap<(DerivationPath, Vec<u8>), usize> = BTreeMap::new();
    for party in &entry.party_ids {
        match check_party(package, entry, &facts, &nodes, *party, cluster) {
            Ok((node, _)) if authenticity.nodes.values().any(|n| *n == node) => authenticity
                .rejected
                .push((*party, format!("node {node} also signed for another party; a node holds one party"))),
            Ok((node, hardened)) => {
                authenticity.parties.insert(*party);
                authenticity.nodes.insert(*party, node);
                for derived in hardened {
                    *listed.entry(derived).or_default() += 1;
                }
            }
            Err(error) => authenticity.rejected.push((*party, format!("{error:#}"))),
        }
    }
    let required = usize::from(facts.threshold.threshold()).max(2);
    authenticity.hardened = listed.into_iter().filter(|(_, n)| *n >= required).map(|(derived, _)| derived).collect();
    for address in &entry.addresses {
        match check_address(&facts, address, cluster) {
            Ok(()) => authenticity.addresses.push(address.clone()),
            Err(error) => {
                authenticity.unattested.push((format!("{} {}", address.chain, address.path), format!("{error:#}")))
            }
        }
    }
    Ok(authenticity)
}

/// The entry's fields, parsed once.
struct Facts {
    key_id: KeyId,
    scheme: Scheme,
    threshold: Threshold,
    epoch: Epoch,
    root_public_key: Vec<u8>,
}

impl Facts {
    fn of(entry: &ExportedKeyShare) -> Result<Facts> {
        let of = |what: &str| format!("the backup entry of key {}: {what}", entry.key_id);
        let parties = u8::try_from(entry.party_ids.len()).map_err(|_| anyhow!(of("too many parties")))?;
        Ok(Facts {
            key_id: entry.key_id.parse().map_err(|e| anyhow!("{}: {e}", of("key id")))?,
            scheme: entry.scheme.parse().map_err(|e| anyhow!("{}: {e}", of("scheme")))?,
            threshold: Threshold::new(entry.threshold, parties).map_err(|e| anyhow!("{}: {e}", of("threshold")))?,
            epoch: Epoch(u32::try_from(entry.epoch).map_err(|_| anyhow!(of("epoch out of range")))?),
            root_public_key: hex::decode(&entry.root_public_key).with_context(|| of("root_public_key"))?,
        })
    }
}

/// The node that signed `party`'s files and the hardened paths it listed,
/// if its signature verifies over the statement rebuilt from the package.
fn check_party(
    package: &BackupPackage,
    entry: &ExportedKeyShare,
    facts: &Facts,
    nodes: &BTreeMap<PartyId, NodeId>,
    party: u8,
    cluster: &Cluster,
) -> Result<(u16, BTreeMap<DerivationPath, Vec<u8>>)> {
    let Some(attestation) = entry.share_attestations.iter().find(|a| a.party == party) else {
        anyhow::bail!("the package carries no node signature for it (a version 1 package carries none)");
    };
    let index = entry.party_ids.iter().position(|p| *p == party).context("unlisted party")?;
    let digest = |text: &str| -> Result<[u8; 32]> {
        let bytes = base64::engine::general_purpose::STANDARD.decode(text.trim()).context("a file is not base64")?;
        Ok(Sha256::digest(bytes).into())
    };
    let sealed = entry.encrypted_shares.get(index).context("no share")?;
    let mut seed_shares_sha256 = BTreeMap::new();
    for seed in entry.encrypted_seed_shares.iter().filter(|s| s.from_party == party) {
        if seed_shares_sha256.insert(PartyId::new(seed.to_party)?, digest(&seed.encrypted_share)?).is_some() {
            anyhow::bail!("two seed shares of it for party {}", seed.to_party);
        }
    }
    let mut hardened = BTreeMap::new();
    for derived in &attestation.hardened {
        let path: DerivationPath = derived.path.parse().with_context(|| format!("hardened path {}", derived.path))?;
        let public_key = hex::decode(&derived.public_key).context("a hardened path's public key is not hex")?;
        if hardened.insert(path, public_key).is_some() {
            anyhow::bail!("hardened path {} is listed twice", derived.path);
        }
    }
    let statement = BackupStatement {
        organisation: package.organisation.clone(),
        request_id: package.request_id.clone(),
        node: NodeId(attestation.node),
        key_id: facts.key_id,
        scheme: facts.scheme,
        threshold: facts.threshold,
        epoch: facts.epoch,
        party: PartyId::new(party)?,
        nodes: nodes.clone(),
        root_public_key: facts.root_public_key.clone(),
        recipients: entry.encryption_pubkeys.clone(),
        sealed_sha256: digest(sealed)?,
        seed_shares_sha256,
        hardened,
    };
    let signature = signature(&attestation.signature)?;
    statement.verify(cluster, &signature).with_context(|| {
        format!(
            "node {}'s signature does not verify over this package's files and facts for it: they are not what \
             the node sealed (or the cluster file is not this cluster's)",
            attestation.node
        )
    })?;
    Ok((attestation.node, statement.hardened))
}

fn check_address(facts: &Facts, address: &BackupAddress, cluster: &Cluster) -> Result<()> {
    let statement = AddressStatement {
        key_id: facts.key_id,
        scheme: facts.scheme,
        threshold: facts.threshold,
        path: address.path.parse::<DerivationPath>()?,
        chain: address.chain.parse()?,
        bech32_prefix: address.bech32_prefix.clone(),
        public_key: hex::decode(&address.public_key).context("public_key is not hex")?,
        address: address.address.clone(),
    };
    let attestations = address
        .attestations
        .iter()
        .map(|a| Ok(AddressAttestation { node: NodeId(a.node), signature: signature(&a.signature)? }))
        .collect::<Result<Vec<_>>>()?;
    statement.verify_attestations(cluster, &attestations)?;
    Ok(())
}

fn signature(text: &str) -> Result<[u8; 64]> {
    let bytes = hex::decode(text).context("a signature is not hex")?;
    <[u8; 64]>::try_from(bytes.as_slice()).map_err(|_| anyhow!("a signature is not 64 bytes"))
}
