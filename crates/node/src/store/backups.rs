//! The node's own record of every backup it sealed (docs/FORMATS.md,
//! "Backups"): `backups` holds one row per export job this node carried out
//! — the key, the epoch of the share sealed, the request that approved it
//! (its id and the SHA-256 of its canonical bytes), the recipient's
//! fingerprint, the SHA-256 of the age file, and the time. Written before
//! the sealed share leaves the node, so a share that left is on record.

use rusqlite::params;
use shardvault_mpc::{Epoch, KeyId};

use super::{Store, StoreError};

/// The table, created when the store is opened (stores of earlier releases
/// gain it then, empty).
pub(super) const CREATE_TABLE: &str = "
    CREATE TABLE IF NOT EXISTS backups (seq INTEGER PRIMARY KEY AUTOINCREMENT, key_id BLOB NOT NULL,
        epoch INTEGER NOT NULL, request_id TEXT NOT NULL, request BLOB NOT NULL, recipient TEXT NOT NULL,
        sealed_sha256 BLOB NOT NULL, at INTEGER NOT NULL);";

/// One backup this node sealed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupEntry {
    /// The key.
    pub key_id: KeyId,
    /// The epoch of the share sealed.
    pub epoch: Epoch,
    /// The export request's id.
    pub request_id: String,
    /// SHA-256 of the request's canonical bytes.
    pub request: [u8; 32],
    /// The recipient's `SHA256:…` fingerprint.
    pub recipient: String,
    /// SHA-256 of the age file handed out.
    pub sealed_sha256: [u8; 32],
    /// Unix seconds.
    pub at: u64,
}

impl Store {
    /// Records a sealed backup (durably, before it is handed out).
    pub fn log_backup(&self, entry: &BackupEntry) -> Result<(), StoreError> {
        self.db.execute(
            "INSERT INTO backups (key_id, epoch, request_id, request, recipient, sealed_sha256, at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                entry.key_id.as_bytes(),
                entry.epoch.0,
                entry.request_id,
                entry.request,
                entry.recipient,
                entry.sealed_sha256,
                i64::try_from(entry.at).unwrap_or(i64::MAX),
            ],
        )?;
        Ok(())
    }

    /// Every backup this node sealed, oldest first.
    pub fn backups(&self) -> Result<Vec<BackupEntry>, StoreError> {
        let mut statement = self.db.prepare(
            "SELECT key_id, epoch, request_id, request, recipient, sealed_sha256, at FROM backups ORDER BY seq",
        )?;
        let rows = statement.query_map([], |r| {
            Ok((
                r.get::<_, Vec<u8>>(0)?,
                r.get::<_, u32>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, Vec<u8>>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, Vec<u8>>(5)?,
                r.get::<_, i64>(6)?,
            ))
        })?;
        let corrupt = || StoreError::Incompatible("a backups row is malformed".into());
        let mut entries = Vec::new();
        for row in rows {
            let (key_id, epoch, request_id, request, recipient, sealed, at) = row?;
            entries.push(BackupEntry {
                key_id: KeyId::from_bytes(key_id.try_into().map_err(|_| corrupt())?),
                epoch: Epoch(epoch),
                request_id,
                request: request.try_into().map_err(|_| corrupt())?,
                recipient,
                sealed_sha256: sealed.try_into().map_err(|_| corrupt())?,
                at: u64::try_from(at).map_err(|_| corrupt())?,
            });
        }
        Ok(entries)
    }
}
