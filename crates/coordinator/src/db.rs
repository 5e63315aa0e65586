//! Coordinator metadata in SQLite: keys, derived addresses, requests and
//! idempotency records. Nothing secret is stored here.

use std::collections::BTreeMap;
use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use shardvault_mpc::{KeyId, PartyId};
use shardvault_wire::NodeId;

/// A key as the coordinator knows it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct KeyRecord {
    pub key_id: String,
    pub scheme: String,
    pub threshold: u8,
    pub parties: u8,
    pub public_key: String,
    pub epoch: u32,
    /// Which node holds which party.
    pub nodes: BTreeMap<PartyId, NodeId>,
}

/// A derived hardened path's public data.
#[derive(Clone, Debug)]
pub(crate) struct Derived {
    pub public_key: Vec<u8>,
    pub chain_code: [u8; 32],
}

pub(crate) struct Db {
    conn: Connection,
}

impl Db {
    pub(crate) fn open(path: &Path) -> rusqlite::Result<Self> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS keys (key_id TEXT PRIMARY KEY, record TEXT NOT NULL, created INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS derivations (key_id TEXT NOT NULL, path TEXT NOT NULL, public_key BLOB NOT NULL,
                 chain_code BLOB NOT NULL, PRIMARY KEY (key_id, path));
             CREATE TABLE IF NOT EXISTS attestations (key_id TEXT NOT NULL, path TEXT NOT NULL, chain TEXT NOT NULL,
                 statement BLOB NOT NULL, node INTEGER NOT NULL, signature BLOB NOT NULL,
                 PRIMARY KEY (key_id, statement, node));
             CREATE TABLE IF NOT EXISTS requests (id TEXT PRIMARY KEY, kind TEXT NOT NULL, status TEXT NOT NULL,
                 response TEXT, created INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS idempotency (idem_key TEXT PRIMARY KEY, route TEXT NOT NULL,
                 body_hash TEXT NOT NULL, status INTEGER NOT NULL, response TEXT NOT NULL);",
        )?;
        Ok(Db { conn })
    }

    pub(crate) fn put_key(&self, key: &KeyRecord) -> rusqlite::Result<()> {
        let record = serde_json::to_string(key).unwrap_or_default();
        self.conn.execute(
            "INSERT OR REPLACE INTO keys (key_id, record, created) VALUES (?1, ?2, COALESCE((SELECT created FROM keys WHERE key_id = ?1), unixepoch()))",
            params![key.key_id, record],
        )?;
        Ok(())
    }

    pub(crate) fn key(&self, key_id: &KeyId) -> rusqlite::Result<Option<KeyRecord>> {
        let record: Option<String> = self
            .conn
            .query_row("SELECT record FROM keys WHERE key_id = ?1", [key_id.to_string()], |r| r.get(0))
            .optional()?;
        Ok(record.and_then(|r| serde_json::from_str(&r).ok()))
    }

    pub(crate) fn keys(&self) -> rusqlite::Result<Vec<KeyRecord>> {
        let mut statement = self.conn.prepare("SELECT record FROM keys ORDER BY created, key_id")?;
        let rows = statement.query_map([], |r| r.get::<_, String>(0))?;
        let mut keys = Vec::new();
        for row in rows {
            if let Ok(key) = serde_json::from_str(&row?) {
                keys.push(key);
            }
        }
        Ok(keys)
    }

    pub(crate) fn put_derived(&self, key_id: &KeyId, path: &str, derived: &Derived) -> rusqlite::Result<()> {
        self.conn.execute(
            "INSERT OR REPLACE INTO derivations (key_id, path, public_key, chain_code) VALUES (?1, ?2, ?3, ?4)",
            params![key_id.to_string(), path, derived.public_key, derived.chain_code.to_vec()],
        )?;
        Ok(())
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
        Ok(row.and_then(|(public_key, cc)| Some(Derived { public_key, chain_code: cc.try_into().ok()? })))
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

    pub(crate) fn put_request(
        &self,
        id: &str,
        kind: &str,
        status: &str,
        response: Option<&str>,
    ) -> rusqlite::Result<()> {
        self.conn.execute(
            "INSERT INTO requests (id, kind, status, response, created) VALUES (?1, ?2, ?3, ?4, unixepoch())
             ON CONFLICT (id) DO UPDATE SET status = excluded.status, response = excluded.response",
            params![id, kind, status, response],
        )?;
        Ok(())
    }

    pub(crate) fn request(&self, id: &str) -> rusqlite::Result<Option<(String, String, Option<String>)>> {
        self.conn
            .query_row("SELECT kind, status, response FROM requests WHERE id = ?1", [id], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .optional()
    }

    pub(crate) fn idempotent(&self, idem_key: &str) -> rusqlite::Result<Option<(String, String, u16, String)>> {
        self.conn
            .query_row(
                "SELECT route, body_hash, status, response FROM idempotency WHERE idem_key = ?1",
                [idem_key],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()
    }

    pub(crate) fn remember(
        &self,
        idem_key: &str,
        route: &str,
        body_hash: &str,
        status: u16,
        response: &str,
    ) -> rusqlite::Result<()> {
        self.conn.execute(
            "INSERT OR IGNORE INTO idempotency (idem_key, route, body_hash, status, response) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![idem_key, route, body_hash, status, response],
        )?;
        Ok(())
    }
}
