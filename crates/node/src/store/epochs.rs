//! When each epoch of a key became active on this node, by the node's own
//! clock: what a scheduled refresh (docs/POLICY.md "Scheduled refresh") is
//! checked against. A key's epoch 0 is recorded when its share is stored, a
//! later epoch when it is activated. Keys of stores from before this table
//! have no row; the first scheduled refresh asked for one records the time
//! it was asked as the epoch's start, so their first scheduled refresh comes
//! one period later — never earlier than the policy allows.

use rusqlite::{params, OptionalExtension};
use shardvault_mpc::{Epoch, KeyId};

use super::{Store, StoreError};

/// The table, created when the store is opened (stores of earlier releases
/// gain it then, empty).
pub(super) const CREATE_TABLE: &str = "
    CREATE TABLE IF NOT EXISTS epoch_starts (key_id BLOB NOT NULL, epoch INTEGER NOT NULL, since INTEGER NOT NULL,
        PRIMARY KEY (key_id, epoch));";

impl Store {
    /// Records that `epoch` of `key_id` is active since `since` (unix
    /// seconds). A time already recorded is kept: activating an epoch again
    /// (an interrupted activation repeated) does not restart its period.
    pub fn record_epoch_start(&self, key_id: KeyId, epoch: Epoch, since: u64) -> Result<(), StoreError> {
        self.db.execute(
            "INSERT OR IGNORE INTO epoch_starts (key_id, epoch, since) VALUES (?1, ?2, ?3)",
            params![key_id.as_bytes(), epoch.0, i64::try_from(since).unwrap_or(i64::MAX)],
        )?;
        Ok(())
    }

    /// Since when `epoch` of `key_id` is active here, if recorded.
    pub fn epoch_start(&self, key_id: KeyId, epoch: Epoch) -> Result<Option<u64>, StoreError> {
        let since: Option<i64> = self
            .db
            .query_row(
                "SELECT since FROM epoch_starts WHERE key_id = ?1 AND epoch = ?2",
                params![key_id.as_bytes(), epoch.0],
                |r| r.get(0),
            )
            .optional()?;
        Ok(since.map(|s| u64::try_from(s).unwrap_or(0)))
    }
}
