//! Governance rows: the log of approved changes, governed requests with
//! their approvals, login sessions, and the hash-chained audit log. None of
//! this is trusted by a node: the log is re-verified on every node, and an
//! approval counts only if it verifies there.

use rusqlite::{params, OptionalExtension};
use serde::{Deserialize, Serialize};
use shardvault_api::{AuditEntry, Signoff};
use shardvault_governance::{audit_hash, LogEntry, AUDIT_START};

use super::Db;

/// Schema version 2's additions (run inside the migration's transaction).
pub(super) const TABLES: &str = "
    CREATE TABLE IF NOT EXISTS governance_log (position INTEGER PRIMARY KEY, entry TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS governed (id TEXT PRIMARY KEY, request TEXT NOT NULL, operation TEXT NOT NULL,
        key_id TEXT, creator TEXT NOT NULL, created_at INTEGER NOT NULL, expires_at INTEGER NOT NULL,
        call TEXT NOT NULL, approvals TEXT NOT NULL DEFAULT '[]', rejections TEXT NOT NULL DEFAULT '[]');
    CREATE TABLE IF NOT EXISTS sessions (token_hash TEXT PRIMARY KEY, fingerprint TEXT NOT NULL,
        expires_at INTEGER NOT NULL);
    CREATE TABLE IF NOT EXISTS login_nonces (nonce TEXT PRIMARY KEY, expires_at INTEGER NOT NULL);
    CREATE TABLE IF NOT EXISTS audit (seq INTEGER PRIMARY KEY, at INTEGER NOT NULL, event TEXT NOT NULL,
        request_id TEXT NOT NULL, detail TEXT NOT NULL, prev TEXT NOT NULL, hash TEXT NOT NULL);";

/// The call a governed request runs once approved: the route, its key id
/// parameter and the body as received.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Call {
    pub route: String,
    pub key: Option<String>,
    pub body: String,
}

/// A governed request as stored.
#[derive(Clone, Debug)]
pub(crate) struct GovernedRow {
    pub request: String,
    pub operation: String,
    pub key_id: Option<String>,
    pub creator: String,
    pub created_at: u64,
    pub expires_at: u64,
    pub call: Call,
    pub approvals: Vec<Signoff>,
    pub rejections: Vec<Signoff>,
}

fn json_column<T: serde::de::DeserializeOwned>(column: usize, text: &str) -> rusqlite::Result<T> {
    serde_json::from_str(text).map_err(|e| super::unreadable(column, e.to_string()))
}

fn to_json<T: Serialize>(value: &T) -> rusqlite::Result<String> {
    serde_json::to_string(value).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
}

impl Db {
    /// The governance log, oldest entry first.
    pub(crate) fn governance_log(&self) -> rusqlite::Result<Vec<LogEntry>> {
        let mut statement = self.conn.prepare("SELECT entry FROM governance_log ORDER BY position")?;
        let rows = statement.query_map([], |r| r.get::<_, String>(0))?;
        rows.map(|row| row.and_then(|text| json_column(0, &text))).collect()
    }

    /// Appends an entry at `position` (0-based); fails if one is there.
    pub(crate) fn append_governance(&self, position: usize, entry: &LogEntry) -> rusqlite::Result<()> {
        let position = i64::try_from(position).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        self.conn.execute(
            "INSERT INTO governance_log (position, entry) VALUES (?1, ?2)",
            params![position, to_json(entry)?],
        )?;
        Ok(())
    }

    /// Stores a new governed request (its API call record must exist).
    pub(crate) fn put_governed(&self, id: &str, row: &GovernedRow) -> rusqlite::Result<()> {
        self.conn.execute(
            "INSERT INTO governed (id, request, operation, key_id, creator, created_at, expires_at, call)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                id,
                row.request,
                row.operation,
                row.key_id,
                row.creator,
                row.created_at,
                row.expires_at,
                to_json(&row.call)?
            ],
        )?;
        Ok(())
    }

    /// A governed request.
    pub(crate) fn governed(&self, id: &str) -> rusqlite::Result<Option<GovernedRow>> {
        self.conn
            .query_row(
                "SELECT request, operation, key_id, creator, created_at, expires_at, call, approvals, rejections
                 FROM governed WHERE id = ?1",
                [id],
                |r| {
                    Ok(GovernedRow {
                        request: r.get(0)?,
                        operation: r.get(1)?,
                        key_id: r.get(2)?,
                        creator: r.get(3)?,
                        created_at: r.get(4)?,
                        expires_at: r.get(5)?,
                        call: json_column(6, &r.get::<_, String>(6)?)?,
                        approvals: json_column(7, &r.get::<_, String>(7)?)?,
                        rejections: json_column(8, &r.get::<_, String>(8)?)?,
                    })
                },
            )
            .optional()
    }

    /// Replaces a governed request's approvals and rejections.
    pub(crate) fn set_signoffs(&self, id: &str, approvals: &[Signoff], rejections: &[Signoff]) -> rusqlite::Result<()> {
        self.conn.execute(
            "UPDATE governed SET approvals = ?2, rejections = ?3 WHERE id = ?1",
            params![id, to_json(&approvals)?, to_json(&rejections)?],
        )?;
        Ok(())
    }

    /// Sets a request's status (`pending`, `running`, `rejected`, `expired`, …).
    pub(crate) fn set_status(&self, id: &str, status: &str) -> rusqlite::Result<()> {
        self.conn.execute("UPDATE requests SET status = ?2 WHERE id = ?1", params![id, status])?;
        Ok(())
    }

    /// Moves a pending request to `running`; false if it was not pending (a
    /// concurrent approval started it already), so a call runs once.
    pub(crate) fn start_running(&self, id: &str) -> rusqlite::Result<bool> {
        let changed =
            self.conn.execute("UPDATE requests SET status = 'running' WHERE id = ?1 AND status = 'pending'", [id])?;
        Ok(changed == 1)
    }

    /// Request ids, newest first, with optional filters.
    pub(crate) fn request_ids(
        &self,
        status: Option<&str>,
        key: Option<&str>,
        since: Option<u64>,
        limit: u32,
    ) -> rusqlite::Result<Vec<String>> {
        let mut statement = self.conn.prepare(
            "SELECT r.id FROM requests r LEFT JOIN governed g ON g.id = r.id
             WHERE (?1 IS NULL OR r.status = ?1) AND (?2 IS NULL OR g.key_id = ?2) AND (?3 IS NULL OR r.created >= ?3)
             ORDER BY r.created DESC, r.rowid DESC LIMIT ?4",
        )?;
        let rows = statement.query_map(params![status, key, since, limit], |r| r.get(0))?;
        rows.collect()
    }

    /// Stores a session token's hash for `fingerprint` until `expires_at`.
    pub(crate) fn put_session(&self, token_hash: &str, fingerprint: &str, expires_at: u64) -> rusqlite::Result<()> {
        self.conn.execute(
            "INSERT INTO sessions (token_hash, fingerprint, expires_at) VALUES (?1, ?2, ?3)",
            params![token_hash, fingerprint, expires_at],
        )?;
        Ok(())
    }

    /// The fingerprint a live session token belongs to.
    pub(crate) fn session(&self, token_hash: &str, now: u64) -> rusqlite::Result<Option<String>> {
        self.conn
            .query_row(
                "SELECT fingerprint FROM sessions WHERE token_hash = ?1 AND expires_at > ?2",
                params![token_hash, now],
                |r| r.get(0),
            )
            .optional()
    }

    /// Records a login nonce; false if it was used already (a replayed login).
    pub(crate) fn use_nonce(&self, nonce: &str, expires_at: u64, now: u64) -> rusqlite::Result<bool> {
        self.conn.execute("DELETE FROM login_nonces WHERE expires_at <= ?1", [now])?;
        self.conn.execute("DELETE FROM sessions WHERE expires_at <= ?1", [now])?;
        let inserted = self.conn.execute(
            "INSERT OR IGNORE INTO login_nonces (nonce, expires_at) VALUES (?1, ?2)",
            params![nonce, expires_at],
        )?;
        Ok(inserted == 1)
    }

    /// Appends an audit entry, chained to the last one.
    pub(crate) fn audit(
        &self,
        at: u64,
        event: &str,
        request_id: &str,
        detail: &serde_json::Value,
    ) -> rusqlite::Result<()> {
        let tx = self.conn.unchecked_transaction()?;
        let last: Option<(u64, String)> = tx
            .query_row("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1", [], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        let (seq, prev) = match last {
            Some((seq, hash)) => (seq + 1, hash),
            None => (1, AUDIT_START.to_string()),
        };
        let detail = detail.to_string();
        let hash = audit_hash(&prev, seq, at, event, request_id, &detail);
        tx.execute(
            "INSERT INTO audit (seq, at, event, request_id, detail, prev, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![seq, at, event, request_id, detail, prev, hash],
        )?;
        tx.commit()
    }

    /// The audit log, oldest first.
    pub(crate) fn audit_log(&self) -> rusqlite::Result<Vec<AuditEntry>> {
        let mut statement =
            self.conn.prepare("SELECT seq, at, event, request_id, detail, prev, hash FROM audit ORDER BY seq")?;
        let rows = statement.query_map([], |r| {
            Ok(AuditEntry {
                seq: r.get(0)?,
                at: r.get(1)?,
                event: r.get(2)?,
                request_id: r.get(3)?,
                detail: json_column(4, &r.get::<_, String>(4)?)?,
                prev: r.get(5)?,
                hash: r.get(6)?,
            })
        })?;
        rows.collect()
    }
}
