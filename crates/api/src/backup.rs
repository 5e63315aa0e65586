//! Key-share backups: the export request, the package the coordinator
//! assembles from the nodes' encrypted blobs, and the backup list
//! (docs/FORMATS.md, "Backups").

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

/// The `format` field of every backup package.
pub const BACKUP_FORMAT: &str = "shardvault-backup";

/// The package version this release writes and reads.
pub const BACKUP_VERSION: u16 = 2;

/// The oldest package version this release reads (version 1 packages carry
/// no node signatures: they are read only unverified).
pub const BACKUP_MIN_VERSION: u16 = 1;

/// `POST /v1/backups`: export the named keys (none: every key), one
/// recipient per party in party order (recipient 1 for party 1, …). A
/// governed request that every member who may approve must approve; each
/// node checks that itself and encrypts its own share to its party's
/// recipient.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BackupRequest {
    /// Key ids (hex); empty or absent: every key.
    #[serde(default)]
    pub keys: Vec<String>,
    /// OpenSSH `ssh-ed25519` public keys (`ssh-ed25519 AAAA… [comment]`),
    /// one per party in party order.
    pub recipients: Vec<String>,
}

/// A backup package: every exported key's encrypted shares.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BackupPackage {
    /// Always [`BACKUP_FORMAT`].
    pub format: String,
    /// [`BACKUP_VERSION`] when written; read from [`BACKUP_MIN_VERSION`] up.
    pub version: u16,
    /// The organisation id (hex SHA-256 of its genesis).
    pub organisation: String,
    /// The approved export request this package answers.
    pub request_id: String,
    /// Unix seconds when the coordinator assembled it.
    pub timestamp: u64,
    /// One entry per key.
    pub exported_key_shares: Vec<ExportedKeyShare>,
}

/// One key's encrypted shares, with the public facts recovery checks.
/// The metadata here is a convenience; what recovery trusts is inside the
/// encrypted shares, which repeat it and which it compares.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExportedKeyShare {
    /// Key id, hex.
    pub key_id: String,
    /// The curve: `secp256k1` or `ed25519`.
    pub key_type: String,
    /// The scheme: `ecdsa-secp256k1`, `eddsa-ed25519` or `schnorr-secp256k1`.
    pub scheme: String,
    /// t.
    pub threshold: u8,
    /// The party ids, `1..=n`, in the order of the lists below.
    pub party_ids: Vec<u8>,
    /// The epoch the shares are of.
    pub epoch: u64,
    /// Root public key `X`, hex.
    pub root_public_key: String,
    /// The root chain code, hex (docs/HD-DERIVATION.md: public, computed from `X`).
    pub chaincode: String,
    /// Each party's recipient, in party order.
    pub encryption_pubkeys: Vec<String>,
    /// Each party's share: an age file (binary), base64 (standard, padded).
    pub encrypted_shares: Vec<String>,
    /// Shares of every party's chain seed, each sealed to another party's
    /// recipient: with them any t parties' files recover hardened paths.
    pub encrypted_seed_shares: Vec<EncryptedSeedShare>,
    /// Every node's signature over its backup statement (docs/FORMATS.md
    /// "Backup statement"), in party order: what `recover --cluster` and
    /// `backup fetch` check the files against. Empty in version 1 packages.
    #[serde(default)]
    pub share_attestations: Vec<ShareAttestation>,
    /// Every address the nodes attested for the key, with their
    /// attestations, for `recover --verify-addresses`.
    pub addresses: Vec<BackupAddress>,
    /// [`ExportedKeyShare::compute_checksum`], hex.
    pub checksum: String,
}

/// A share of party `from_party`'s chain seed, sealed to `to_party`'s recipient.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EncryptedSeedShare {
    /// Whose seed.
    pub from_party: u8,
    /// Whose recipient opens it.
    pub to_party: u8,
    /// An age file (binary), base64 (standard, padded).
    pub encrypted_share: String,
}

/// One node's signature over the backup statement of its party's files.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ShareAttestation {
    /// The party whose files the node sealed.
    pub party: u8,
    /// The node (its identity key is pinned in the cluster file).
    pub node: u16,
    /// Ed25519 under the node's identity key over the backup statement, hex (64 bytes).
    pub signature: String,
    /// Every hardened path the node derived for the key, in path order, with
    /// its child public key: signed in the statement, so recovered chain
    /// seeds are checked against them and none can be left out.
    #[serde(default)]
    pub hardened: Vec<HardenedKey>,
}

/// A hardened path a node derived, and its child public key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HardenedKey {
    /// The path (every component hardened at its end).
    pub path: String,
    /// `X'`, hex.
    pub public_key: String,
}

/// An address of a backed-up key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BackupAddress {
    /// The chain family (`bitcoin`, `ethereum`, …).
    pub chain: String,
    /// The full derivation path.
    pub path: String,
    /// The address.
    pub address: String,
    /// Cosmos chains: the bech32 prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bech32_prefix: Option<String>,
    /// The child public key at `path`, hex (absent in version 1 packages).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub public_key: String,
    /// The nodes' address attestations (docs/FORMATS.md "Address
    /// attestation"); empty in version 1 packages.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attestations: Vec<crate::Attestation>,
}

impl ExportedKeyShare {
    /// SHA-256 over the entry's fields, each as a big-endian u32 length then
    /// its UTF-8 bytes, in this order: key_id, key_type, scheme, threshold
    /// and epoch (decimal), root_public_key, chaincode, then for each party
    /// its id (decimal), its recipient and its encrypted share (the base64
    /// text), then for each seed share its from and to parties (decimal) and
    /// its base64 text. It catches a package damaged in storage; it is no signature
    /// (see docs/FORMATS.md for what recovery checks instead).
    pub fn compute_checksum(&self) -> String {
        let mut hash = Sha256::new();
        let mut field = |text: &str| {
            hash.update((text.len() as u32).to_be_bytes());
            hash.update(text.as_bytes());
        };
        field(&self.key_id);
        field(&self.key_type);
        field(&self.scheme);
        field(&self.threshold.to_string());
        field(&self.epoch.to_string());
        field(&self.root_public_key);
        field(&self.chaincode);
        for (i, party) in self.party_ids.iter().enumerate() {
            field(&party.to_string());
            field(self.encryption_pubkeys.get(i).map_or("", String::as_str));
            field(self.encrypted_shares.get(i).map_or("", String::as_str));
        }
        for seed in &self.encrypted_seed_shares {
            field(&seed.from_party.to_string());
            field(&seed.to_party.to_string());
            field(&seed.encrypted_share);
        }
        hex::encode(hash.finalize())
    }
}

/// `GET /v1/backups`: every key, its epoch, and its last backup.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BackupList {
    /// One row per key.
    pub keys: Vec<BackupStatus>,
}

/// One key's backup status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BackupStatus {
    /// Key id, hex.
    pub key_id: String,
    /// Its scheme.
    pub scheme: String,
    /// Its active epoch.
    pub epoch: u64,
    /// Its last backup, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_backup: Option<BackupRecord>,
    /// False when the key has no backup of its active epoch (never backed
    /// up, or refreshed since): back it up again.
    pub current: bool,
}

/// One export of one key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BackupRecord {
    /// The export request.
    pub request_id: String,
    /// The epoch backed up.
    pub epoch: u64,
    /// Unix seconds.
    pub at: u64,
    /// The recipients, in party order.
    pub recipients: Vec<String>,
}
