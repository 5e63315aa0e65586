//! Backup rows: one per key per completed export (schema version 3), for
//! `GET /v1/backups`. The package itself is the export request's stored
//! answer; nothing secret is here (the shares in it are age files only their
//! recipients open).

use rusqlite::{params, OptionalExtension};
use shardvault_api::BackupRecord;
use shardvault_types::{Epoch, KeyId};

use super::Db;

/// Schema version 3's addition (run inside the migration's transaction).
pub(super) const TABLE: &str = "
    CREATE TABLE IF NOT EXISTS backups (request_id TEXT NOT NULL, key_id TEXT NOT NULL, epoch INTEGER NOT NULL,
        at INTEGER NOT NULL, recipients TEXT NOT NULL, PRIMARY KEY (request_id, key_id));";

impl Db {
    /// Records that `request_id` exported epoch `epoch` of `key_id`.
    pub(crate) fn put_backup(
        &self,
        request_id: &str,
        key_id: &KeyId,
        epoch: Epoch,
        at: u64,
        recipients: &[String],
    ) -> rusqlite::Result<()> {
        let recipients =
            serde_json::to_string(recipients).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        self.conn.execute(
            "INSERT OR REPLACE INTO backups (request_id, key_id, epoch, at, recipients) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![request_id, key_id.to_string(), epoch.0, i64::try_from(at).unwrap_or(i64::MAX), recipients],
        )?;
        Ok(())
    }

    /// The key's most recent export.
    pub(crate) fn last_backup(&self, key_id: &KeyId) -> rusqlite::Result<Option<BackupRecord>> {
        let row: Option<(String, u32, i64, String)> = self
            .conn
            .query_row(
                "SELECT request_id, epoch, at, recipients FROM backups WHERE key_id = ?1
                 ORDER BY at DESC, epoch DESC LIMIT 1",
                [key_id.to_string()],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()?;
        row.map(|(request_id, epoch, at, recipients)| {
            let recipients: Vec<String> = serde_json::from_str(&recipients)
                .map_err(|e| rusqlite::Error::FromSqlConversionFailure(3, rusqlite::types::Type::Text, Box::new(e)))?;
            Ok(BackupRecord { request_id, epoch: u64::from(epoch), at: u64::try_from(at).unwrap_or(0), recipients })
        })
        .transpose()
    }

    /// Every distinct address statement (canonical bytes) stored for the key.
    pub(crate) fn address_statements(&self, key_id: &KeyId) -> rusqlite::Result<Vec<Vec<u8>>> {
        let mut query = self
            .conn
            .prepare("SELECT DISTINCT statement FROM attestations WHERE key_id = ?1 ORDER BY path, chain, statement")?;
        let rows = query.query_map([key_id.to_string()], |r| r.get(0))?;
        rows.collect()
    }
}
