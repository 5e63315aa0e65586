//! The node's storage: one SQLite file, every secret sealed.
//!
//! - `shares`: one row per (key, epoch), sealed with AAD binding node, key,
//!   epoch and kind. A refresh writes the new epoch as `pending` beside the
//!   `active` one; [`Store::activate`] flips it and deletes older epochs in
//!   one transaction, so a crash at any point leaves one consistent active epoch.
//! - `tweaks`: cached hardened-derivation tweaks per (key, path), sealed;
//!   never replaced by a tweak for another child key.
//! - `key_parties`: which node plays which party of each key, pinned when
//!   the key's DKG completed; later jobs must keep to it.
//! - `sign_log`: append-only, hash-chained record of every signature.
//! - `meta`: KDF salt and parameters, and a KEK verifier, so a wrong
//!   passphrase is reported as such.

use std::collections::BTreeMap;
use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};
use sha2::{Digest, Sha256};
use shardvault_mpc::{DerivationPath, Epoch, HardenedTweak, KeyId, KeyShare, PartyId, ShareBinding};
use shardvault_vault::{open, seal, KdfParams, Kek, SealContext};
use shardvault_wire::NodeId;

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
    /// A new key under an id this node already holds a key (or a trace of one) for.
    #[error("key id {0} is already known on this node; a new key needs a new id")]
    KeyExists(KeyId),
    /// A derivation gave another child key for a path than the one cached.
    #[error("key {key_id}: path {path} was derived before to another child key; keeping the cached one and refusing the new one")]
    TweakMismatch {
        /// The key.
        key_id: KeyId,
        /// The hardened path.
        path: String,
    },
    /// A party→node map that differs from the one pinned for the key.
    #[error("key {key_id}: {detail}")]
    PartiesMismatch {
        /// The key.
        key_id: KeyId,
        /// What differs.
        detail: String,
    },
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
             CREATE TABLE IF NOT EXISTS sign_log (seq INTEGER PRIMARY KEY AUTOINCREMENT, key_id BLOB NOT NULL,
                 path TEXT NOT NULL, signed BLOB NOT NULL, request BLOB NOT NULL, hash BLOB NOT NULL);",
        )?;
        create_key_identity_tables(&db)?;
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

    /// Stores the share of a new key (epoch 0) as active. Refuses a key id
    /// this node already knows, in any epoch or state: a second DKG under an
    /// existing id would otherwise shadow the key.
    pub fn insert_new_key(&self, share: &KeyShare) -> Result<(), StoreError> {
        self.insert_new_key_inner(share, None)
    }

    /// [`Store::insert_new_key`], pinning the key's party→node map (all n
    /// parties) in the same transaction.
    pub fn insert_new_key_with_parties(
        &self,
        share: &KeyShare,
        parties: &BTreeMap<PartyId, NodeId>,
    ) -> Result<(), StoreError> {
        self.insert_new_key_inner(share, Some(parties))
    }

    fn insert_new_key_inner(
        &self,
        share: &KeyShare,
        parties: Option<&BTreeMap<PartyId, NodeId>>,
    ) -> Result<(), StoreError> {
        let key_id = share.key_id();
        let tx = rusqlite::Transaction::new_unchecked(&self.db, rusqlite::TransactionBehavior::Immediate)?;
        if knows_key(&tx, key_id)? {
            return Err(StoreError::KeyExists(key_id));
        }
        let bytes = share.to_bytes().map_err(|e| StoreError::Corrupt { key_id, detail: e.to_string() })?;
        let sealed = seal(&self.kek, &self.context(key_id, share.epoch(), "key-share"), &bytes);
        tx.execute(
            "INSERT INTO shares (key_id, epoch, state, sealed) VALUES (?1, ?2, 'active', ?3)",
            params![key_id.as_bytes(), share.epoch().0, sealed],
        )?;
        if let Some(parties) = parties {
            insert_parties(&tx, key_id, parties)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Whether this node holds anything under `key_id`: a share of any epoch
    /// or state, or a pinned party map.
    pub fn knows_key(&self, key_id: KeyId) -> Result<bool, StoreError> {
        knows_key(&self.db, key_id)
    }

    /// The party→node map pinned for `key_id` at its DKG (`None` for keys
    /// created before maps were pinned).
    pub fn key_parties(&self, key_id: KeyId) -> Result<Option<BTreeMap<PartyId, NodeId>>, StoreError> {
        let mut statement = self.db.prepare("SELECT party, node FROM key_parties WHERE key_id = ?1 ORDER BY party")?;
        let rows = statement.query_map([key_id.as_bytes()], |r| Ok((r.get::<_, u8>(0)?, r.get::<_, u16>(1)?)))?;
        let mut parties = BTreeMap::new();
        for row in rows {
            let (party, node) = row?;
            let party = PartyId::new(party)
                .map_err(|e| StoreError::Corrupt { key_id, detail: format!("pinned party map: {e}") })?;
            parties.insert(party, NodeId(node));
        }
        Ok((!parties.is_empty()).then_some(parties))
    }

    /// Pins the party→node map of a key that has none yet (a key created
    /// before maps were pinned). Refuses to change a pinned map.
    pub fn pin_key_parties(&self, key_id: KeyId, parties: &BTreeMap<PartyId, NodeId>) -> Result<(), StoreError> {
        let tx = rusqlite::Transaction::new_unchecked(&self.db, rusqlite::TransactionBehavior::Immediate)?;
        let pinned: i64 =
            tx.query_row("SELECT count(*) FROM key_parties WHERE key_id = ?1", [key_id.as_bytes()], |r| r.get(0))?;
        if pinned != 0 {
            return Err(StoreError::PartiesMismatch { key_id, detail: "its party map is pinned already".into() });
        }
        insert_parties(&tx, key_id, parties)?;
        tx.commit()?;
        Ok(())
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

    /// Makes a pending epoch the active one and deletes every older epoch, atomically.
    pub fn activate(&mut self, key_id: KeyId, epoch: Epoch) -> Result<(), StoreError> {
        let tx = self.db.transaction()?;
        // Older epochs go first: at most one active row per key (unique index).
        // Without a pending epoch the transaction is dropped, undoing the delete.
        tx.execute("DELETE FROM shares WHERE key_id = ?1 AND epoch < ?2", params![key_id.as_bytes(), epoch.0])?;
        let updated = tx.execute(
            "UPDATE shares SET state = 'active' WHERE key_id = ?1 AND epoch = ?2 AND state = 'pending'",
            params![key_id.as_bytes(), epoch.0],
        )?;
        if updated != 1 {
            return Err(StoreError::NoPending { key_id, epoch });
        }
        tx.commit()?;
        Ok(())
    }

    /// Drops a pending epoch (a refresh that did not complete everywhere).
    pub fn discard_pending(&self, key_id: KeyId) -> Result<(), StoreError> {
        self.db.execute("DELETE FROM shares WHERE key_id = ?1 AND state = 'pending'", [key_id.as_bytes()])?;
        Ok(())
    }

    /// The active share of `key_id`, unsealed and checked against its binding.
    pub fn active_share(&self, key_id: KeyId) -> Result<KeyShare, StoreError> {
        // A store written before the unique index may hold two active epochs
        // of one id (a key shadowed by a second DKG): use neither.
        let mut statement =
            self.db.prepare("SELECT epoch, sealed FROM shares WHERE key_id = ?1 AND state = 'active' LIMIT 2")?;
        let mut rows: Vec<(u32, rusqlite::types::Value)> =
            statement.query_map([key_id.as_bytes()], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?;
        if rows.len() > 1 {
            return Err(StoreError::Corrupt {
                key_id,
                detail: "more than one active epoch (the key id was reused by a second key generation); \
                         delete the row that is not the key's"
                    .into(),
            });
        }
        let (epoch, sealed) = rows.pop().ok_or(StoreError::UnknownKey(key_id))?;
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

    /// Caches a hardened tweak (it does not change with the epoch). A path
    /// derived before keeps its cached tweak: the same child key again is a
    /// no-op, another child key is refused ([`StoreError::TweakMismatch`]).
    pub fn put_tweak(&self, tweak: &HardenedTweak) -> Result<(), StoreError> {
        if let Some(cached) = self.tweak(tweak.key_id, &tweak.path)? {
            if cached.public_key != tweak.public_key || cached.chain_code != tweak.chain_code {
                return Err(StoreError::TweakMismatch { key_id: tweak.key_id, path: tweak.path.to_string() });
            }
            return Ok(());
        }
        let bytes =
            tweak.to_bytes().map_err(|e| StoreError::Corrupt { key_id: tweak.key_id, detail: e.to_string() })?;
        let kind = format!("hardened-tweak:{}", tweak.path);
        let sealed = seal(&self.kek, &self.context(tweak.key_id, Epoch(0), &kind), &bytes);
        // A plain INSERT: if another writer cached this path meanwhile, it fails
        // rather than replacing what is there.
        self.db.execute(
            "INSERT INTO tweaks (key_id, path, sealed) VALUES (?1, ?2, ?3)",
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

/// The tables and index that keep key ids unambiguous: the pinned
/// party→node maps, and at most one active epoch per key. A store written
/// before the index that already holds two active epochs of one id gets no
/// index (that key refuses to open, see [`Store::active_share`]) until an
/// operator removes the wrong row; new duplicates cannot appear meanwhile,
/// because [`Store::insert_new_key`] refuses known ids.
fn create_key_identity_tables(db: &Connection) -> Result<(), StoreError> {
    db.execute_batch(
        "CREATE TABLE IF NOT EXISTS key_parties (key_id BLOB NOT NULL, party INTEGER NOT NULL, node INTEGER NOT NULL,
             PRIMARY KEY (key_id, party));",
    )?;
    let duplicated: i64 = db.query_row(
        "SELECT count(*) FROM (SELECT key_id FROM shares WHERE state = 'active' GROUP BY key_id HAVING count(*) > 1)",
        [],
        |r| r.get(0),
    )?;
    if duplicated == 0 {
        db.execute_batch(
            "CREATE UNIQUE INDEX IF NOT EXISTS shares_one_active ON shares (key_id) WHERE state = 'active';",
        )?;
    } else {
        tracing::error!(keys = duplicated, "keys with more than one active epoch: they refuse to sign until repaired");
    }
    Ok(())
}

fn knows_key(db: &Connection, key_id: KeyId) -> Result<bool, StoreError> {
    Ok(db.query_row(
        "SELECT EXISTS (SELECT 1 FROM shares WHERE key_id = ?1) OR EXISTS (SELECT 1 FROM key_parties WHERE key_id = ?1)
             OR EXISTS (SELECT 1 FROM tweaks WHERE key_id = ?1)",
        [key_id.as_bytes()],
        |r| r.get(0),
    )?)
}

fn insert_parties(db: &Connection, key_id: KeyId, parties: &BTreeMap<PartyId, NodeId>) -> Result<(), StoreError> {
    for (party, node) in parties {
        db.execute(
            "INSERT INTO key_parties (key_id, party, node) VALUES (?1, ?2, ?3)",
            params![key_id.as_bytes(), party.get(), node.0],
        )?;
    }
    Ok(())
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
