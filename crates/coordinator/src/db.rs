//! Coordinator metadata in SQLite: keys, derived addresses, requests and
//! idempotency records. Nothing secret is stored here.

use std::collections::BTreeMap;
use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use shardvault_mpc::{Epoch, KeyId, PartyId};
use shardvault_wire::{NodeId, RefreshCertificate};

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
             CREATE TABLE IF NOT EXISTS requests (id TEXT PRIMARY KEY, kind TEXT NOT NULL, status TEXT NOT NULL,
                 response TEXT, created INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS refreshes (key_id TEXT NOT NULL, epoch INTEGER NOT NULL, state TEXT NOT NULL
                 CHECK (state IN ('started', 'failed', 'certified', 'activated', 'abandoned')), certificate TEXT,
                 PRIMARY KEY (key_id, epoch));
             CREATE TABLE IF NOT EXISTS bans (key_id TEXT NOT NULL, party INTEGER NOT NULL, node INTEGER NOT NULL,
                 reason TEXT NOT NULL, PRIMARY KEY (key_id, party));
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
