//! Coordinator metadata in SQLite: keys, derived addresses, requests and
//! idempotency records. Nothing secret is stored here.
//!
//! The database carries a schema version (`PRAGMA user_version`): a database
//! from before versions (0) is migrated to [`SCHEMA_VERSION`] when opened; a
//! newer one is refused, so an older coordinator never writes over a layout it
//! does not know.

use std::collections::BTreeMap;
use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use shardvault_types::{Epoch, KeyId, PartyId, Scheme, Threshold};
use shardvault_wire::{IdentityPublicKey, NodeId, NoisePublicKey, RefreshCertificate};

pub(crate) mod backups;
pub(crate) mod governance;
pub(crate) use governance::{Call, GovernedRow};

/// The layout this coordinator reads and writes.
pub(crate) const SCHEMA_VERSION: u32 = 4;

/// Why the database cannot be opened.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OpenError {
    #[error("coordinator database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error(
        "the coordinator database has schema version {found}, but this coordinator knows versions up to \
         {SCHEMA_VERSION}: it was written by a newer shardvault; run that version (or restore a backup from \
         before the upgrade)"
    )]
    Newer { found: u32 },
}

/// A key as the coordinator knows it, checked when read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct KeyRecord {
    pub key_id: KeyId,
    pub scheme: Scheme,
    pub threshold: Threshold,
    /// The group public key.
    pub public_key: Vec<u8>,
    /// The epoch signing uses.
    pub epoch: Epoch,
    /// Which node holds which party.
    pub nodes: BTreeMap<PartyId, NodeId>,
}

/// How a [`KeyRecord`] is stored (JSON in `keys.record`; the layout of
/// schema version 0 and 1).
#[derive(Serialize, Deserialize)]
struct StoredKey {
    key_id: String,
    scheme: String,
    threshold: u8,
    parties: u8,
    public_key: String,
    epoch: u32,
    nodes: BTreeMap<PartyId, NodeId>,
}

impl From<&KeyRecord> for StoredKey {
    fn from(key: &KeyRecord) -> Self {
        StoredKey {
            key_id: key.key_id.to_string(),
            scheme: key.scheme.as_str().to_string(),
            threshold: key.threshold.threshold(),
            parties: key.threshold.parties(),
            public_key: hex::encode(&key.public_key),
            epoch: key.epoch.0,
            nodes: key.nodes.clone(),
        }
    }
}

impl TryFrom<StoredKey> for KeyRecord {
    type Error = String;
    fn try_from(stored: StoredKey) -> Result<Self, String> {
        let key = KeyRecord {
            key_id: stored.key_id.parse().map_err(|e| format!("key id: {e}"))?,
            scheme: stored.scheme.parse().map_err(|e| format!("scheme: {e}"))?,
            threshold: Threshold::new(stored.threshold, stored.parties).map_err(|e| e.to_string())?,
            public_key: hex::decode(&stored.public_key).map_err(|_| "the public key is not hex".to_string())?,
            epoch: Epoch(stored.epoch),
            nodes: stored.nodes,
        };
        // Exactly the key's parties 1..=n, each on a node (found by review:
        // a count alone let {1, 2, 5} through, to fail only when signing).
        if !key.nodes.keys().copied().eq(key.threshold.party_ids()) {
            let parties: Vec<_> = key.nodes.keys().map(|p| p.get()).collect();
            return Err(format!("nodes are given for parties {parties:?}, not for 1..={}", key.threshold.parties()));
        }
        Ok(key)
    }
}

/// A stored key record that does not parse: an error, never skipped.
fn unreadable(column: usize, what: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(column, rusqlite::types::Type::Text, what.into())
}

fn read_key(text: &str) -> rusqlite::Result<KeyRecord> {
    let stored: StoredKey = serde_json::from_str(text).map_err(|e| unreadable(0, format!("key record: {e}")))?;
    let id = stored.key_id.clone();
    KeyRecord::try_from(stored).map_err(|e| unreadable(0, format!("key record {id}: {e}")))
}

/// Brings a database of schema version 0 (every coordinator before
/// versions, with or without the claim columns; or a new, empty file) to
/// the current version, in one transaction.
fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    let tx = conn.unchecked_transaction()?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS keys (key_id TEXT PRIMARY KEY, record TEXT NOT NULL, created INTEGER NOT NULL);
         CREATE TABLE IF NOT EXISTS derivations (key_id TEXT NOT NULL, path TEXT NOT NULL, public_key BLOB NOT NULL,
             chain_code BLOB NOT NULL, PRIMARY KEY (key_id, path));
         CREATE TABLE IF NOT EXISTS requests (id TEXT PRIMARY KEY, kind TEXT NOT NULL, status TEXT NOT NULL,
             response TEXT, created INTEGER NOT NULL);
         CREATE TABLE IF NOT EXISTS attestations (key_id TEXT NOT NULL, path TEXT NOT NULL, chain TEXT NOT NULL,
             statement BLOB NOT NULL, node INTEGER NOT NULL, signature BLOB NOT NULL,
             PRIMARY KEY (key_id, statement, node));
         CREATE TABLE IF NOT EXISTS refreshes (key_id TEXT NOT NULL, epoch INTEGER NOT NULL, state TEXT NOT NULL
             CHECK (state IN ('started', 'failed', 'certified', 'activated', 'abandoned')), certificate TEXT,
             PRIMARY KEY (key_id, epoch));
         CREATE TABLE IF NOT EXISTS bans (key_id TEXT NOT NULL, party INTEGER NOT NULL, node INTEGER NOT NULL,
             reason TEXT NOT NULL, PRIMARY KEY (key_id, party));
         CREATE TABLE IF NOT EXISTS idempotency (idem_key TEXT PRIMARY KEY, route TEXT NOT NULL,
             body_hash TEXT NOT NULL, status INTEGER NOT NULL, response TEXT NOT NULL);",
    )?;
    // Claims: a key is recorded as `running` (with its request) before the
    // request runs, and `done` once its answer is stored.
    let columns: Vec<String> = tx
        .prepare("SELECT name FROM pragma_table_info('idempotency')")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    if !columns.iter().any(|c| c == "state") {
        tx.execute_batch(
            "ALTER TABLE idempotency ADD COLUMN request_id TEXT;
             ALTER TABLE idempotency ADD COLUMN state TEXT NOT NULL DEFAULT 'done';",
        )?;
    }
    // Version 2: governance (log, governed requests, sessions, audit).
    tx.execute_batch(governance::TABLES)?;
    // Version 3: backups.
    tx.execute_batch(backups::TABLE)?;
    // Version 4: node replacement (the replaced nodes' pinned keys, each
    // key's steps done, how each key's last seed escrow ended).
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS escrows (key_id TEXT PRIMARY KEY,
             state TEXT NOT NULL CHECK (state IN ('complete', 'incomplete')));
         CREATE TABLE IF NOT EXISTS node_keys (node INTEGER PRIMARY KEY, noise TEXT NOT NULL, identity TEXT NOT NULL,
             request TEXT NOT NULL);
         CREATE TABLE IF NOT EXISTS replacements (node INTEGER NOT NULL, noise TEXT NOT NULL, key_id TEXT NOT NULL,
             step TEXT NOT NULL CHECK (step IN ('repaired', 'refreshed', 'derived', 'escrowed')),
             PRIMARY KEY (node, noise, key_id));",
    )?;
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    tx.commit()
}

/// A derived hardened path's public data.
#[derive(Clone, Debug)]
pub(crate) struct Derived {
    pub public_key: Vec<u8>,
    pub chain_code: [u8; 32],
}

pub(crate) struct Db {
    conn: Connection,
    /// Requests that ran in this process but whose outcome could not be stored.
    unrecorded: std::collections::HashSet<String>,
}

/// What an Idempotency-Key is bound to, and its answer once stored.
#[derive(Debug)]
pub(crate) struct Idempotency {
    pub body_hash: String,
    /// The request that claimed the key (none for records from before claims were stored).
    pub request_id: Option<String>,
    /// Status and JSON answer; `None` while it runs, or if its outcome is unknown.
    pub answer: Option<(u16, String)>,
}

impl Db {
    pub(crate) fn open(path: &Path) -> Result<Self, OpenError> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let found: u32 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if found > SCHEMA_VERSION {
            return Err(OpenError::Newer { found });
        }
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // A claim must be on disk before its request runs.
        conn.pragma_update(None, "synchronous", "FULL")?;
        if found < SCHEMA_VERSION {
            migrate(&conn)?;
        }
        // Nothing runs before this process serves: whatever was running when
        // the last one stopped ended without a stored outcome.
        conn.execute("UPDATE requests SET status = 'unknown' WHERE status = 'running'", [])?;
        Ok(Db { conn, unrecorded: std::collections::HashSet::new() })
    }

    pub(crate) fn put_key(&self, key: &KeyRecord) -> rusqlite::Result<()> {
        let record = serde_json::to_string(&StoredKey::from(key))
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        self.conn.execute(
            "INSERT OR REPLACE INTO keys (key_id, record, created) VALUES (?1, ?2, COALESCE((SELECT created FROM keys WHERE key_id = ?1), unixepoch()))",
            params![key.key_id.to_string(), record],
        )?;
        Ok(())
    }

    pub(crate) fn key(&self, key_id: &KeyId) -> rusqlite::Result<Option<KeyRecord>> {
        let record: Option<String> = self
            .conn
            .query_row("SELECT record FROM keys WHERE key_id = ?1", [key_id.to_string()], |r| r.get(0))
            .optional()?;
        record.map(|r| read_key(&r)).transpose()
    }

    pub(crate) fn keys(&self) -> rusqlite::Result<Vec<KeyRecord>> {
        let mut statement = self.conn.prepare("SELECT record FROM keys ORDER BY created, key_id")?;
        let rows = statement.query_map([], |r| r.get::<_, String>(0))?;
        rows.map(|row| read_key(&row?)).collect()
    }

    /// When the key was first recorded (unix seconds).
    pub(crate) fn key_created(&self, key_id: &KeyId) -> rusqlite::Result<Option<u64>> {
        let created: Option<i64> = self
            .conn
            .query_row("SELECT created FROM keys WHERE key_id = ?1", [key_id.to_string()], |r| r.get(0))
            .optional()?;
        Ok(created.map(|c| u64::try_from(c).unwrap_or(0)))
    }

    pub(crate) fn put_derived(&self, key_id: &KeyId, path: &str, derived: &Derived) -> rusqlite::Result<()> {
        self.conn.execute(
            "INSERT OR REPLACE INTO derivations (key_id, path, public_key, chain_code) VALUES (?1, ?2, ?3, ?4)",
            params![key_id.to_string(), path, derived.public_key, derived.chain_code.to_vec()],
        )?;
        Ok(())
    }

    /// Every hardened path derived for `key_id`.
    pub(crate) fn derived_paths(&self, key_id: &KeyId) -> rusqlite::Result<Vec<String>> {
        let mut query = self.conn.prepare("SELECT path FROM derivations WHERE key_id = ?1 ORDER BY path")?;
        let rows = query.query_map([key_id.to_string()], |r| r.get(0))?;
        rows.collect()
    }

    /// Records a replaced node's new keys (approved by the request `request`).
    pub(crate) fn put_node_keys(
        &self,
        node: NodeId,
        noise: NoisePublicKey,
        identity: IdentityPublicKey,
        request: &str,
    ) -> rusqlite::Result<()> {
        self.conn.execute(
            "INSERT OR REPLACE INTO node_keys (node, noise, identity, request) VALUES (?1, ?2, ?3, ?4)",
            params![node.0, String::from(noise), String::from(identity), request],
        )?;
        Ok(())
    }

    /// Records how `key_id`'s last seed escrow ended: `complete` when every
    /// node answered that it stored its pieces.
    pub(crate) fn put_escrow(&self, key_id: &KeyId, complete: bool) -> rusqlite::Result<()> {
        let state = if complete { "complete" } else { "incomplete" };
        self.conn.execute(
            "INSERT INTO escrows (key_id, state) VALUES (?1, ?2) ON CONFLICT (key_id) DO UPDATE SET state = ?2",
            params![key_id.to_string(), state],
        )?;
        Ok(())
    }

    /// How `key_id`'s last seed escrow ended, if one ran.
    pub(crate) fn escrow(&self, key_id: &KeyId) -> rusqlite::Result<Option<String>> {
        self.conn
            .query_row("SELECT state FROM escrows WHERE key_id = ?1", [key_id.to_string()], |r| r.get(0))
            .optional()
    }

    /// How far the replacement of `node` by the machine with Noise key
    /// `noise` got for `key_id` (`repaired`, `refreshed`, `derived`,
    /// `escrowed`), so that a replacement asked again goes on from there.
    pub(crate) fn replacement_step(
        &self,
        node: NodeId,
        noise: NoisePublicKey,
        key_id: &KeyId,
    ) -> rusqlite::Result<Option<String>> {
        self.conn
            .query_row(
                "SELECT step FROM replacements WHERE node = ?1 AND noise = ?2 AND key_id = ?3",
                params![node.0, String::from(noise), key_id.to_string()],
                |r| r.get(0),
            )
            .optional()
    }

    /// Records that the replacement got to `step` for `key_id`.
    pub(crate) fn put_replacement_step(
        &self,
        node: NodeId,
        noise: NoisePublicKey,
        key_id: &KeyId,
        step: &str,
    ) -> rusqlite::Result<()> {
        self.conn.execute(
            "INSERT OR REPLACE INTO replacements (node, noise, key_id, step) VALUES (?1, ?2, ?3, ?4)",
            params![node.0, String::from(noise), key_id.to_string(), step],
        )?;
        Ok(())
    }

    /// Every replaced node's keys.
    pub(crate) fn node_keys(&self) -> rusqlite::Result<Vec<(NodeId, NoisePublicKey, IdentityPublicKey)>> {
        let mut query = self.conn.prepare("SELECT node, noise, identity FROM node_keys ORDER BY node")?;
        let rows =
            query.query_map([], |r| Ok((r.get::<_, u16>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?)))?;
        rows.map(|row| {
            let (node, noise, identity) = row?;
            let noise = noise.parse().map_err(|e| unreadable(1, format!("node {node}'s Noise key: {e}")))?;
            let identity = identity.parse().map_err(|e| unreadable(2, format!("node {node}'s identity key: {e}")))?;
            Ok((NodeId(node), noise, identity))
        })
        .collect()
    }

    pub(crate) fn derived(&self, key_id: &KeyId, path: &str) -> rusqlite::Result<Option<Derived>> {
        let row: Option<(Vec<u8>, Vec<u8>)> = self
            .conn
            .query_row(
                "SELECT public_key, chain_code FROM derivations WHERE key_id = ?1 AND path = ?2",
                params![key_id.to_string(), path],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        row.map(|(public_key, cc)| {
            // A stored chain code of another length is corrupt, not "not derived yet".
            let chain_code = <[u8; 32]>::try_from(cc.as_slice())
                .map_err(|e| rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Blob, Box::new(e)))?;
            Ok(Derived { public_key, chain_code })
        })
        .transpose()
    }

    /// Stores node `node`'s signature over an address statement (its
    /// canonical bytes; `path` and `chain` are for people reading the table).
    pub(crate) fn put_attestation(
        &self,
        key_id: &KeyId,
        path: &str,
        chain: &str,
        statement: &[u8],
        node: NodeId,
        signature: &[u8],
    ) -> rusqlite::Result<()> {
        self.conn.execute(
            "INSERT OR REPLACE INTO attestations (key_id, path, chain, statement, node, signature)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![key_id.to_string(), path, chain, statement, node.0, signature],
        )?;
        Ok(())
    }

    /// Every stored node signature over exactly `statement`, by node.
    pub(crate) fn attestations(&self, key_id: &KeyId, statement: &[u8]) -> rusqlite::Result<Vec<(NodeId, Vec<u8>)>> {
        let mut query = self
            .conn
            .prepare("SELECT node, signature FROM attestations WHERE key_id = ?1 AND statement = ?2 ORDER BY node")?;
        let rows = query.query_map(params![key_id.to_string(), statement], |r| Ok((NodeId(r.get(0)?), r.get(1)?)))?;
        rows.collect()
    }

    /// Records a refresh attempt's state (and, once certified, its certificate).
    pub(crate) fn put_refresh(
        &self,
        key_id: &KeyId,
        epoch: Epoch,
        state: &str,
        certificate: Option<&RefreshCertificate>,
    ) -> rusqlite::Result<()> {
        let certificate = certificate
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        self.conn.execute(
            "INSERT INTO refreshes (key_id, epoch, state, certificate) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (key_id, epoch) DO UPDATE SET state = excluded.state,
                 certificate = COALESCE(excluded.certificate, refreshes.certificate)",
            params![key_id.to_string(), epoch.0, state, certificate],
        )?;
        Ok(())
    }

    /// The key's latest refresh attempt: epoch, state and certificate.
    pub(crate) fn latest_refresh(
        &self,
        key_id: &KeyId,
    ) -> rusqlite::Result<Option<(Epoch, String, Option<RefreshCertificate>)>> {
        let row: Option<(u32, String, Option<String>)> = self
            .conn
            .query_row(
                "SELECT epoch, state, certificate FROM refreshes WHERE key_id = ?1 ORDER BY epoch DESC LIMIT 1",
                [key_id.to_string()],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let Some((epoch, state, certificate)) = row else { return Ok(None) };
        let certificate = certificate
            .map(|text| serde_json::from_str(&text))
            .transpose()
            .map_err(|e| rusqlite::Error::FromSqlConversionFailure(3, rusqlite::types::Type::Text, Box::new(e)))?;
        Ok(Some((Epoch(epoch), state, certificate)))
    }

    /// Records that `party` (on `node`) is banned for `key_id`.
    pub(crate) fn put_ban(&self, key_id: &KeyId, party: PartyId, node: NodeId, reason: &str) -> rusqlite::Result<()> {
        self.conn.execute(
            "INSERT OR REPLACE INTO bans (key_id, party, node, reason) VALUES (?1, ?2, ?3, ?4)",
            params![key_id.to_string(), party.get(), node.0, reason],
        )?;
        Ok(())
    }

    /// The parties banned for `key_id`, with why.
    pub(crate) fn bans(&self, key_id: &KeyId) -> rusqlite::Result<BTreeMap<PartyId, String>> {
        let mut statement = self.conn.prepare("SELECT party, reason FROM bans WHERE key_id = ?1")?;
        let rows = statement.query_map([key_id.to_string()], |r| Ok((r.get::<_, u8>(0)?, r.get::<_, String>(1)?)))?;
        let mut bans = BTreeMap::new();
        for row in rows {
            let (party, reason) = row?;
            let party = PartyId::new(party).map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Integer, Box::new(e))
            })?;
            bans.insert(party, reason);
        }
        Ok(bans)
    }

    /// Forgets the key's bans (its shares were refreshed: a new epoch).
    pub(crate) fn clear_bans(&self, key_id: &KeyId) -> rusqlite::Result<()> {
        self.conn.execute("DELETE FROM bans WHERE key_id = ?1", [key_id.to_string()])?;
        Ok(())
    }

    /// Records request `id` as running and, with an Idempotency-Key
    /// `(key, target, body hash)`, claims the key for it, in one durable
    /// transaction, before the request runs.
    pub(crate) fn begin_request(
        &self,
        id: &str,
        kind: &str,
        claim: Option<(&str, &str, &str)>,
    ) -> rusqlite::Result<()> {
        let tx = self.conn.unchecked_transaction()?;
        tx.execute(
            "INSERT INTO requests (id, kind, status, response, created) VALUES (?1, ?2, 'running', NULL, unixepoch())",
            params![id, kind],
        )?;
        if let Some((key, target, body_hash)) = claim {
            tx.execute(
                "INSERT INTO idempotency (idem_key, route, body_hash, status, response, request_id, state)
                 VALUES (?1, ?2, ?3, 0, '', ?4, 'running')",
                params![key, target, body_hash, id],
            )?;
        }
        tx.commit()
    }

    /// Stores request `id`'s outcome and, for its Idempotency-Key, the
    /// answer to replay (`Some(status)`) or the key's release (`None`).
    /// On failure everything stays as `begin_request` left it: outcome unknown.
    pub(crate) fn finish_request(
        &mut self,
        id: &str,
        outcome: &str,
        response: &str,
        answer: Option<(&str, Option<u16>)>,
    ) -> rusqlite::Result<()> {
        let stored = self.store_outcome(id, outcome, response, answer);
        if stored.is_err() {
            self.unrecorded.insert(id.to_string());
        }
        stored
    }

    fn store_outcome(
        &self,
        id: &str,
        outcome: &str,
        response: &str,
        answer: Option<(&str, Option<u16>)>,
    ) -> rusqlite::Result<()> {
        let tx = self.conn.unchecked_transaction()?;
        tx.execute("UPDATE requests SET status = ?2, response = ?3 WHERE id = ?1", params![id, outcome, response])?;
        match answer {
            Some((key, Some(status))) => tx.execute(
                "UPDATE idempotency SET status = ?3, response = ?4, state = 'done' WHERE idem_key = ?1 AND request_id = ?2",
                params![key, id, status, response],
            )?,
            Some((key, None)) => {
                tx.execute("DELETE FROM idempotency WHERE idem_key = ?1 AND request_id = ?2", params![key, id])?
            }
            None => 0,
        };
        tx.commit()
    }

    /// Replaces a request's stored answer.
    pub(crate) fn set_response(&self, id: &str, response: &str) -> rusqlite::Result<()> {
        self.conn.execute("UPDATE requests SET response = ?2 WHERE id = ?1", params![id, response])?;
        Ok(())
    }

    /// Kind, status (`running`, `succeeded`, `failed` or `unknown`) and answer of a request.
    pub(crate) fn request(&self, id: &str) -> rusqlite::Result<Option<(String, String, Option<String>)>> {
        let row: Option<(String, String, Option<String>)> = self
            .conn
            .query_row("SELECT kind, status, response FROM requests WHERE id = ?1", [id], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .optional()?;
        Ok(row.map(|(kind, status, response)| {
            let status = if status == "running" && self.unrecorded.contains(id) { "unknown".into() } else { status };
            (kind, status, response)
        }))
    }

    pub(crate) fn idempotent(&self, idem_key: &str) -> rusqlite::Result<Option<Idempotency>> {
        self.conn
            .query_row(
                "SELECT body_hash, request_id, state, status, response FROM idempotency WHERE idem_key = ?1",
                [idem_key],
                |r| {
                    let done = r.get::<_, String>(2)? == "done";
                    Ok(Idempotency {
                        body_hash: r.get(0)?,
                        request_id: r.get(1)?,
                        answer: if done { Some((r.get(3)?, r.get(4)?)) } else { None },
                    })
                },
            )
            .optional()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> (Db, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        (Db::open(&dir.path().join("coordinator.db")).unwrap(), dir)
    }

    #[test]
    fn a_key_record_that_does_not_decode_is_an_error_not_a_missing_key() {
        let (db, _dir) = db();
        let key_id = KeyId::random();
        db.conn
            .execute("INSERT INTO keys (key_id, record, created) VALUES (?1, '', unixepoch())", [key_id.to_string()])
            .unwrap();
        assert!(db.key(&key_id).is_err(), "an empty record read as no key");
        assert!(db.keys().is_err(), "an empty record left out of the list");
        assert!(db.key(&KeyId::random()).unwrap().is_none());
    }

    #[test]
    fn a_stored_chain_code_of_another_length_is_an_error_not_underived() {
        let (db, _dir) = db();
        let key_id = KeyId::random();
        db.conn
            .execute(
                "INSERT INTO derivations (key_id, path, public_key, chain_code) VALUES (?1, 'm/1h', x'02', x'0102')",
                [key_id.to_string()],
            )
            .unwrap();
        assert!(db.derived(&key_id, "m/1h").is_err());
        assert!(db.derived(&key_id, "m/2h").unwrap().is_none());
    }

    fn key() -> KeyRecord {
        let threshold = Threshold::new(2, 3).unwrap();
        KeyRecord {
            key_id: KeyId::random(),
            scheme: Scheme::SchnorrSecp256k1,
            threshold,
            public_key: vec![2; 33],
            epoch: Epoch(4),
            nodes: threshold.party_ids().zip([NodeId(1), NodeId(2), NodeId(3)]).collect(),
        }
    }

    fn version(path: &Path) -> u32 {
        Connection::open(path).unwrap().pragma_query_value(None, "user_version", |r| r.get(0)).unwrap()
    }

    #[test]
    fn a_key_is_stored_and_read_back_typed() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("c.db")).unwrap();
        let key = key();
        db.put_key(&key).unwrap();
        assert_eq!(db.key(&key.key_id).unwrap(), Some(key.clone()));
        assert_eq!(db.keys().unwrap(), vec![key]);
        assert_eq!(version(&dir.path().join("c.db")), SCHEMA_VERSION);
    }

    #[test]
    fn a_stored_key_that_does_not_parse_is_an_error_not_a_missing_key() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("c.db")).unwrap();
        let key = key();
        db.put_key(&key).unwrap();
        db.conn.execute("UPDATE keys SET record = replace(record, '\"threshold\":2', '\"threshold\":9')", []).unwrap();
        let error = db.key(&key.key_id).unwrap_err().to_string();
        assert!(error.contains(&key.key_id.to_string()) && error.contains("9-of-3"), "{error}");
        assert!(db.keys().is_err());
    }

    /// A database as the coordinator wrote it before schema versions (and
    /// before claims had their columns), with a key in it.
    #[test]
    fn an_unversioned_database_is_migrated_and_keeps_its_data() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        let key = key();
        let record = serde_json::to_string(&StoredKey::from(&key)).unwrap();
        let old = Connection::open(&path).unwrap();
        old.execute_batch(
            "CREATE TABLE keys (key_id TEXT PRIMARY KEY, record TEXT NOT NULL, created INTEGER NOT NULL);
             CREATE TABLE requests (id TEXT PRIMARY KEY, kind TEXT NOT NULL, status TEXT NOT NULL,
                 response TEXT, created INTEGER NOT NULL);
             CREATE TABLE idempotency (idem_key TEXT PRIMARY KEY, route TEXT NOT NULL,
                 body_hash TEXT NOT NULL, status INTEGER NOT NULL, response TEXT NOT NULL);
             INSERT INTO idempotency VALUES ('k', 'POST /v1/keys', 'h', 201, '{}');
             INSERT INTO requests VALUES ('r', 'POST /v1/keys', 'running', NULL, 0);",
        )
        .unwrap();
        old.execute("INSERT INTO keys VALUES (?1, ?2, 0)", params![key.key_id.to_string(), record]).unwrap();
        drop(old);
        assert_eq!(version(&path), 0);
        let db = Db::open(&path).unwrap();
        assert_eq!(version(&path), SCHEMA_VERSION);
        assert_eq!(db.key(&key.key_id).unwrap(), Some(key));
        let replay = db.idempotent("k").unwrap().unwrap();
        assert_eq!((replay.body_hash.as_str(), replay.answer), ("h", Some((201, "{}".to_string()))));
        assert_eq!(db.request("r").unwrap().unwrap().1, "unknown");
        assert!(db.bans(&KeyId::random()).unwrap().is_empty(), "the tables added since exist");
        drop(db);
        // Opening again changes nothing.
        Db::open(&path).unwrap();
        assert_eq!(version(&path), SCHEMA_VERSION);
    }

    /// A database of schema version 3 (the release before node
    /// replacement) gets the replacement's tables when opened.
    #[test]
    fn a_version_3_database_gets_the_replacement_tables() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        drop(Db::open(&path).unwrap());
        let old = Connection::open(&path).unwrap();
        old.execute_batch(
            "DROP TABLE node_keys; DROP TABLE replacements; DROP TABLE escrows; PRAGMA user_version = 3;",
        )
        .unwrap();
        drop(old);
        let db = Db::open(&path).unwrap();
        assert_eq!(version(&path), SCHEMA_VERSION);
        let key_id = KeyId::random();
        assert_eq!(db.replacement_step(NodeId(2), NoisePublicKey([1; 32]), &key_id).unwrap(), None);
        assert!(db.node_keys().unwrap().is_empty(), "{path:?}");
        assert_eq!(db.escrow(&key_id).unwrap(), None);
        db.put_escrow(&key_id, false).unwrap();
        db.put_escrow(&key_id, true).unwrap();
        assert_eq!(db.escrow(&key_id).unwrap().as_deref(), Some("complete"));
    }

    #[test]
    fn a_database_from_a_newer_coordinator_is_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        let newer = Connection::open(&path).unwrap();
        newer.execute_batch("CREATE TABLE future (x); PRAGMA user_version = 7;").unwrap();
        drop(newer);
        let error = Db::open(&path).err().unwrap();
        assert!(matches!(error, OpenError::Newer { found: 7 }), "{error}");
        let message = error.to_string();
        assert!(
            message.contains("schema version 7") && message.contains(&format!("up to {SCHEMA_VERSION}")),
            "{message}"
        );
        assert_eq!(version(&path), 7);
        let tables: i64 = Connection::open(&path)
            .unwrap()
            .query_row("SELECT COUNT(*) FROM sqlite_master WHERE name = 'keys'", [], |r| r.get(0))
            .unwrap();
        assert_eq!(tables, 0, "it created tables in a database it refused");
    }
}
