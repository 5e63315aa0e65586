//! The node's storage: one SQLite file, every secret sealed.
//!
//! - `shares`: one row per (key, epoch), sealed with AAD binding node, key,
//!   epoch and kind. A refresh writes the new epoch as `pending` beside the
//!   `active` one; [`Store::activate`] flips it and deletes older epochs in
//!   one transaction, so a crash at any point leaves one consistent active
//!   epoch. The node calls it only on a certificate that every party stored
//!   the new epoch; pending epochs of refreshes that never completed stay
//!   until a later epoch is activated.
//! - `bans`: counterparties this node will not sign with, per key (DKLs23
//!   ban aborts), until a later epoch is activated.
//! - `tweaks`: cached hardened-derivation tweaks per (key, path), sealed.
//! - `sign_log`: append-only, hash-chained record of every signature.
//! - `meta`: KDF salt and parameters, and a KEK verifier, so a wrong
//!   passphrase is reported as such.

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};
use sha2::{Digest, Sha256};
use shardvault_mpc::{DerivationPath, Epoch, HardenedTweak, KeyId, KeyShare, PartyId, ShareBinding};
use shardvault_vault::{open, seal, KdfParams, Kek, SealContext};

const SCHEMA_VERSION: i64 = 1;

/// Errors of the store. Each names what to do next.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database could not be read or written.
    #[error("storage error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The passphrase or key file does not match this store.
    #[error(transparent)]
    Vault(#[from] shardvault_vault::Error),
    /// A share does not open or decode: this key cannot sign on this node
    /// until it is restored from backup; other keys are unaffected.
    #[error("key {key_id}: stored share is unusable ({detail}); restore it from backup — other keys are unaffected")]
    Corrupt {
        /// The key.
        key_id: KeyId,
        /// Why.
        detail: String,
    },
    /// No share for this key.
    #[error("no share of key {0} on this node")]
    UnknownKey(KeyId),
    /// No share of this key at this epoch.
    #[error("no share of key {key_id} at epoch {epoch} on this node; finish or repeat the key's refresh")]
    NoEpoch {
        /// The key.
        key_id: KeyId,
        /// The epoch.
        epoch: Epoch,
    },
    /// A pending epoch to activate does not exist.
    #[error("key {key_id} has no pending epoch {epoch} to activate")]
    NoPending {
        /// The key.
        key_id: KeyId,
        /// The epoch.
        epoch: Epoch,
    },
    /// The file was written by a newer release, or belongs to another node.
    #[error("store at this path is not usable: {0}")]
    Incompatible(String),
    /// The sign log's hash chain is broken at this entry.
    #[error("sign log entry {0} was altered or removed")]
    LogTampered(i64),
}

/// Where the key-encryption key comes from.
#[derive(Debug)]
pub enum KekSource<'a> {
    /// A passphrase, stretched with Argon2id (salt kept in the store).
    Passphrase(&'a [u8], KdfParams),
    /// A 32-byte key file's contents.
    KeyFile(&'a [u8]),
}

/// One entry of the node's sign log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignLogEntry {
    /// Position in the log.
    pub seq: i64,
    /// The key.
    pub key_id: KeyId,
    /// The path signed under.
    pub path: String,
    /// What was signed (digest or message hash).
    pub signed: Vec<u8>,
    /// The request's own hash, as the coordinator and members see it.
    pub request: Vec<u8>,
}

/// The node's store.
#[derive(Debug)]
pub struct Store {
    db: Connection,
    node_id: String,
    kek: Kek,
}

impl Store {
    /// Opens (or creates) the store at `path` for `node_id`. A new store
    /// records the KDF salt and a KEK verifier; an existing one checks them.
    pub fn open(path: &Path, node_id: &str, kek: KekSource<'_>) -> Result<Self, StoreError> {
        let db = Connection::open(path)?;
        // Other connections (an operator reading the sign log) may hold locks briefly.
        db.busy_timeout(std::time::Duration::from_secs(10))?;
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.pragma_update(None, "synchronous", "FULL")?;
        db.execute_batch(
            "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value BLOB NOT NULL);
             CREATE TABLE IF NOT EXISTS shares (key_id BLOB NOT NULL, epoch INTEGER NOT NULL, state TEXT NOT NULL
                 CHECK (state IN ('pending', 'active')), sealed BLOB NOT NULL, PRIMARY KEY (key_id, epoch));
             CREATE TABLE IF NOT EXISTS tweaks (key_id BLOB NOT NULL, path TEXT NOT NULL, sealed BLOB NOT NULL,
                 PRIMARY KEY (key_id, path));
             CREATE TABLE IF NOT EXISTS bans (key_id BLOB NOT NULL, party INTEGER NOT NULL, node INTEGER NOT NULL,
                 epoch INTEGER NOT NULL, reason TEXT NOT NULL, PRIMARY KEY (key_id, party));
             CREATE TABLE IF NOT EXISTS sign_log (seq INTEGER PRIMARY KEY AUTOINCREMENT, key_id BLOB NOT NULL,
                 path TEXT NOT NULL, signed BLOB NOT NULL, request BLOB NOT NULL, hash BLOB NOT NULL);",
        )?;
        let meta = |name: &str| -> Result<Option<Vec<u8>>, StoreError> {
            Ok(db.query_row("SELECT value FROM meta WHERE name = ?1", [name], |r| r.get(0)).optional()?)
        };
        match meta("schema")? {
            None => {}
            Some(v) if v == SCHEMA_VERSION.to_be_bytes() => {}
            Some(_) => return Err(StoreError::Incompatible("written by a newer shardvault".into())),
        }
        if let Some(owner) = meta("node_id")? {
            if owner != node_id.as_bytes() {
                return Err(StoreError::Incompatible(format!(
                    "it belongs to node {:?}, not {node_id:?}",
                    String::from_utf8_lossy(&owner)
                )));
            }
        }
        let salt: [u8; 16] = match meta("kdf_salt")? {
            Some(salt) => salt.try_into().map_err(|_| StoreError::Incompatible("bad KDF salt".into()))?,
            None => Kek::new_salt(),
        };
        let kek = match kek {
            KekSource::Passphrase(passphrase, params) => Kek::from_passphrase(passphrase, &salt, params)?,
            KekSource::KeyFile(contents) => Kek::from_key_file(contents)?,
        };
        match meta("kek_verifier")? {
            Some(verifier) => kek.verify(&verifier)?,
            None => {
                let tx = db.unchecked_transaction()?;
                for (name, value) in [
                    ("schema", SCHEMA_VERSION.to_be_bytes().to_vec()),
                    ("node_id", node_id.as_bytes().to_vec()),
                    ("kdf_salt", salt.to_vec()),
                    ("kek_verifier", kek.verifier()),
                ] {
                    tx.execute("INSERT INTO meta (name, value) VALUES (?1, ?2)", params![name, value])?;
                }
                tx.commit()?;
            }
        }
        Ok(Store { db, node_id: node_id.to_string(), kek })
    }

    fn context(&self, key_id: KeyId, epoch: Epoch, kind: &str) -> SealContext {
        SealContext { node_id: self.node_id.clone(), key_id, epoch, kind: kind.to_string() }
    }

    /// Stores the share of a new key (epoch 0) as active.
    pub fn insert_new_key(&self, share: &KeyShare) -> Result<(), StoreError> {
        self.write_share(share, "active")
    }

    /// Stores a refreshed share as pending beside the active one.
    pub fn insert_pending(&self, share: &KeyShare) -> Result<(), StoreError> {
        self.write_share(share, "pending")
    }

    fn write_share(&self, share: &KeyShare, state: &str) -> Result<(), StoreError> {
        let bytes =
            share.to_bytes().map_err(|e| StoreError::Corrupt { key_id: share.key_id(), detail: e.to_string() })?;
        let sealed = seal(&self.kek, &self.context(share.key_id(), share.epoch(), "key-share"), &bytes);
        self.db.execute(
            "INSERT INTO shares (key_id, epoch, state, sealed) VALUES (?1, ?2, ?3, ?4)",
            params![share.key_id().as_bytes(), share.epoch().0, state, sealed],
        )?;
        Ok(())
    }

    /// Makes a pending epoch the active one, deletes every older epoch
    /// (also pending ones of refreshes that never completed) and the bans
    /// recorded before it, atomically. Activating the epoch that is already
    /// active does nothing, so an interrupted activation can be repeated.
    /// The caller has checked that every party stored `epoch`.
    pub fn activate(&mut self, key_id: KeyId, epoch: Epoch) -> Result<(), StoreError> {
        let tx = self.db.transaction()?;
        let active: Option<u32> = tx
            .query_row("SELECT epoch FROM shares WHERE key_id = ?1 AND state = 'active'", [key_id.as_bytes()], |r| {
                r.get(0)
            })
            .optional()?;
        if active == Some(epoch.0) {
            return Ok(());
        }
        let updated = tx.execute(
            "UPDATE shares SET state = 'active' WHERE key_id = ?1 AND epoch = ?2 AND state = 'pending'",
            params![key_id.as_bytes(), epoch.0],
        )?;
        if updated != 1 || active.is_some_and(|a| a > epoch.0) {
            return Err(StoreError::NoPending { key_id, epoch });
        }
        tx.execute("DELETE FROM shares WHERE key_id = ?1 AND epoch < ?2", params![key_id.as_bytes(), epoch.0])?;
        tx.execute("DELETE FROM bans WHERE key_id = ?1 AND epoch < ?2", params![key_id.as_bytes(), epoch.0])?;
        tx.commit()?;
        Ok(())
    }

    /// The active share of `key_id`, unsealed and checked against its binding.
    pub fn active_share(&self, key_id: KeyId) -> Result<KeyShare, StoreError> {
        self.share_where(key_id, "state = 'active' AND ?2 = 0", 0)
    }

    /// The share of `key_id` at `epoch`, active or pending (a pending epoch
    /// that every party confirmed is as good as the active one: the
    /// coordinator may sign with it before every node has activated it).
    pub fn share_at(&self, key_id: KeyId, epoch: Epoch) -> Result<KeyShare, StoreError> {
        self.share_where(key_id, "epoch = ?2", epoch.0).map_err(|error| match error {
            StoreError::UnknownKey(_) => StoreError::NoEpoch { key_id, epoch },
            other => other,
        })
    }

    /// The latest epoch of `key_id` held here, in any state.
    pub fn latest_epoch(&self, key_id: KeyId) -> Result<Option<Epoch>, StoreError> {
        let latest: Option<u32> =
            self.db.query_row("SELECT MAX(epoch) FROM shares WHERE key_id = ?1", [key_id.as_bytes()], |r| r.get(0))?;
        Ok(latest.map(Epoch))
    }

    fn share_where(&self, key_id: KeyId, condition: &str, value: u32) -> Result<KeyShare, StoreError> {
        let row: Option<(u32, rusqlite::types::Value)> = self
            .db
            .query_row(
                &format!("SELECT epoch, sealed FROM shares WHERE key_id = ?1 AND {condition}"),
                params![key_id.as_bytes(), value],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let (epoch, sealed) = row.ok_or(StoreError::UnknownKey(key_id))?;
        let epoch = Epoch(epoch);
        let corrupt = |detail: String| StoreError::Corrupt { key_id, detail };
        let rusqlite::types::Value::Blob(sealed) = sealed else {
            return Err(corrupt("the sealed share is not a blob".into()));
        };
        let bytes =
            open(&self.kek, &self.context(key_id, epoch, "key-share"), &sealed).map_err(|e| corrupt(e.to_string()))?;
        let party = KeyShare::from_bytes(&bytes, None).map_err(|e| corrupt(e.to_string()))?.party();
        KeyShare::from_bytes(&bytes, Some(ShareBinding { key_id, party, epoch })).map_err(|e| corrupt(e.to_string()))
    }

    /// Every key with an active share.
    pub fn keys(&self) -> Result<Vec<KeyId>, StoreError> {
        let mut statement = self.db.prepare("SELECT key_id FROM shares WHERE state = 'active' ORDER BY key_id")?;
        let rows = statement.query_map([], |r| r.get::<_, Vec<u8>>(0))?;
        let mut keys = Vec::new();
        for row in rows {
            let bytes: [u8; 16] = row?.try_into().map_err(|_| StoreError::Incompatible("bad key id".into()))?;
            keys.push(KeyId::from_bytes(bytes));
        }
        Ok(keys)
    }

    /// Caches a hardened tweak (it does not change with the epoch).
    pub fn put_tweak(&self, tweak: &HardenedTweak) -> Result<(), StoreError> {
        let bytes =
            tweak.to_bytes().map_err(|e| StoreError::Corrupt { key_id: tweak.key_id, detail: e.to_string() })?;
        let kind = format!("hardened-tweak:{}", tweak.path);
        let sealed = seal(&self.kek, &self.context(tweak.key_id, Epoch(0), &kind), &bytes);
        self.db.execute(
            "INSERT OR REPLACE INTO tweaks (key_id, path, sealed) VALUES (?1, ?2, ?3)",
            params![tweak.key_id.as_bytes(), tweak.path.to_string(), sealed],
        )?;
        Ok(())
    }

    /// The cached hardened tweak of `path`, if derived before.
    pub fn tweak(&self, key_id: KeyId, path: &DerivationPath) -> Result<Option<HardenedTweak>, StoreError> {
        let sealed: Option<Vec<u8>> = self
            .db
            .query_row(
                "SELECT sealed FROM tweaks WHERE key_id = ?1 AND path = ?2",
                params![key_id.as_bytes(), path.to_string()],
                |r| r.get(0),
            )
            .optional()?;
        let Some(sealed) = sealed else { return Ok(None) };
        let corrupt = |detail: String| StoreError::Corrupt { key_id, detail };
        let kind = format!("hardened-tweak:{path}");
        let bytes =
            open(&self.kek, &self.context(key_id, Epoch(0), &kind), &sealed).map_err(|e| corrupt(e.to_string()))?;
        HardenedTweak::from_bytes(&bytes).map(Some).map_err(|e| corrupt(e.to_string()))
    }

    /// Records that this node will not sign with `party` (on `node`) for
    /// `key_id` at `epoch` or earlier: DKLs23 reported a failed consistency
    /// check by it, and continuing could leak this node's share. Only the
    /// activation of a later epoch (a complete refresh, which renews the
    /// state the check protects) clears it.
    pub fn ban(&self, key_id: KeyId, party: PartyId, node: u16, epoch: Epoch, reason: &str) -> Result<(), StoreError> {
        self.db.execute(
            "INSERT INTO bans (key_id, party, node, epoch, reason) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (key_id, party) DO UPDATE SET epoch = MAX(epoch, excluded.epoch)",
            params![key_id.as_bytes(), party.get(), node, epoch.0, reason],
        )?;
        Ok(())
    }

    /// The parties banned for `key_id` when signing at `epoch`, with why.
    pub fn bans(&self, key_id: KeyId, epoch: Epoch) -> Result<Vec<(PartyId, String)>, StoreError> {
        let mut statement =
            self.db.prepare("SELECT party, reason FROM bans WHERE key_id = ?1 AND epoch >= ?2 ORDER BY party")?;
        let rows = statement.query_map(params![key_id.as_bytes(), epoch.0], |r| Ok((r.get::<_, u8>(0)?, r.get(1)?)))?;
        let mut bans = Vec::new();
        for row in rows {
            let (party, reason) = row?;
            let party = PartyId::new(party).map_err(|_| StoreError::Incompatible("bad party id in bans".into()))?;
            bans.push((party, reason));
        }
        Ok(bans)
    }

    /// Appends to the sign log; each entry's hash covers the previous one.
    pub fn log_signature(&self, key_id: KeyId, path: &str, signed: &[u8], request: &[u8]) -> Result<i64, StoreError> {
        // IMMEDIATE: take the write lock before reading the chain's head, so
        // concurrent appenders (one per worker) queue instead of failing.
        let tx = rusqlite::Transaction::new_unchecked(&self.db, rusqlite::TransactionBehavior::Immediate)?;
        let previous: Vec<u8> = tx
            .query_row("SELECT hash FROM sign_log ORDER BY seq DESC LIMIT 1", [], |r| r.get(0))
            .optional()?
            .unwrap_or_else(|| vec![0; 32]);
        let hash = entry_hash(&previous, key_id, path, signed, request);
        tx.execute(
            "INSERT INTO sign_log (key_id, path, signed, request, hash) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![key_id.as_bytes(), path, signed, request, hash],
        )?;
        let seq = tx.last_insert_rowid();
        tx.commit()?;
        Ok(seq)
    }

    /// The whole sign log, after checking its hash chain.
    pub fn sign_log(&self) -> Result<Vec<SignLogEntry>, StoreError> {
        let mut statement =
            self.db.prepare("SELECT seq, key_id, path, signed, request, hash FROM sign_log ORDER BY seq")?;
        let rows = statement.query_map([], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get::<_, Vec<u8>>(5)?))
        })?;
        let mut previous = vec![0u8; 32];
        let mut entries = Vec::new();
        for (expected_seq, row) in (1..).zip(rows) {
            let (seq, key_id, path, signed, request, hash): (i64, Vec<u8>, String, Vec<u8>, Vec<u8>, Vec<u8>) = row?;
            let key_id = KeyId::from_bytes(key_id.try_into().map_err(|_| StoreError::LogTampered(seq))?);
            if seq != expected_seq || entry_hash(&previous, key_id, &path, &signed, &request) != hash {
                return Err(StoreError::LogTampered(seq));
            }
            previous = hash;
            entries.push(SignLogEntry { seq, key_id, path, signed, request });
        }
        Ok(entries)
    }
}

fn entry_hash(previous: &[u8], key_id: KeyId, path: &str, signed: &[u8], request: &[u8]) -> Vec<u8> {
    let mut hash = Sha256::new();
    hash.update(b"shardvault/sign-log/v1");
    for field in [previous, key_id.as_bytes(), path.as_bytes(), signed, request] {
        hash.update((field.len() as u64).to_be_bytes());
        hash.update(field);
    }
    hash.finalize().to_vec()
}
