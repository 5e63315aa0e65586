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
//! - `tweaks`: cached hardened-derivation tweaks per (key, path), sealed;
//!   never replaced by a tweak for another child key.
//! - `key_parties`: which node plays which party of each key, pinned when
//!   the key's DKG completed; later jobs must keep to it.
//! - `sign_log`: append-only, write-ahead record of every signing job, a
//!   hash chain keyed by a sealed log key ([`sign_log`]).
//! - `governance_log` and `spends`: the organisation's log of approved
//!   member and policy changes as this node received it, and the spend
//!   ledger of the policy's period limits ([`governance`]).
//! - `meta`: KDF salt and parameters, and a KEK verifier, so a wrong
//!   passphrase is reported as such; the node's sealed Noise identity key.
//!
//! Files: the database and its `-wal`/`-shm` are created `0600`, and
//! [`Store::open`] refuses looser modes (the node daemon also refuses a data
//! directory that is not `0700`). Deleted rows are
//! overwritten (`secure_delete`) and the WAL is truncated after an epoch is
//! deleted or the KEK rotated, so old sealed blobs do not linger on disk.

use std::collections::BTreeMap;
use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};
use shardvault_mpc::{DerivationPath, Epoch, HardenedTweak, KeyId, KeyShare, PartyId, Secret32, ShareBinding};
use shardvault_vault::files::{check_private_if_exists, create_private_file, FileError};
use shardvault_vault::{open, seal, KdfParams, Kek, SealContext};
use shardvault_wire::NodeId;

mod backups;
mod epochs;
mod governance;
mod replacement;
mod sign_log;
pub use backups::BackupEntry;
pub use governance::{Spending, StoreLedger, StoredEntry};
pub use replacement::ReplacedNode;
pub use sign_log::{
    SignIntent, SignLogEntry, SignLogHead, SignLogStatus, SIGN_LOG_HEAD_DOMAIN, SIGN_LOG_KEY_KIND, SIGN_LOG_KEY_ROW,
};

const SCHEMA_VERSION: i64 = 1;
const KIND_SHARE: &str = "key-share";
const KIND_IDENTITY: &str = "noise-identity";
const META_IDENTITY: &str = "noise_identity";

fn tweak_kind(path: &str) -> String {
    format!("hardened-tweak:{path}")
}

/// Every sealed value in the store, for [`Store::rotate_kek`]. Each `select`
/// yields `(rowid, key_id, epoch, kind argument, sealed blob)`; `kind` turns
/// the argument into the AAD kind the write path used. A new sealed table or
/// meta row goes here, and rotation re-seals it.
struct SealedItems {
    table: &'static str,
    column: &'static str,
    select: &'static str,
    kind: fn(&str) -> String,
}

/// `(rowid, key_id, epoch, kind argument, sealed blob)`.
type SealedRow = (i64, Vec<u8>, u32, String, Vec<u8>);

const SEALED: &[SealedItems] = &[
    SealedItems {
        table: "shares",
        column: "sealed",
        select: "SELECT rowid, key_id, epoch, '', sealed FROM shares",
        kind: |_| KIND_SHARE.to_string(),
    },
    SealedItems {
        table: "tweaks",
        column: "sealed",
        select: "SELECT rowid, key_id, 0, path, sealed FROM tweaks",
        kind: tweak_kind,
    },
    SealedItems {
        table: "meta",
        column: "value",
        select: "SELECT rowid, zeroblob(16), 0, '', value FROM meta WHERE name = 'noise_identity'",
        kind: |_| KIND_IDENTITY.to_string(),
    },
    SealedItems {
        table: "meta",
        column: "value",
        select: "SELECT rowid, zeroblob(16), 0, '', value FROM meta WHERE name = 'sign_log_key'",
        kind: |_| SIGN_LOG_KEY_KIND.to_string(),
    },
];

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
    /// The sign log's keyed chain is broken at this entry (0: its key or
    /// head record is missing or altered). Keep the file for investigation.
    #[error(
        "sign log entry {0} was altered or removed (0: the log's key or head record); keep node.db for investigation"
    )]
    LogTampered(i64),
    /// A file or directory of the store is accessible by group or others, or
    /// could not be created with private permissions.
    #[error(transparent)]
    Files(#[from] FileError),
    /// The stored governance log or spend ledger does not read back, or a
    /// write to it was refused.
    #[error("governance store: {0}; keep node.db for investigation")]
    GovernanceLog(String),
    /// The store already holds a node identity key.
    #[error("this store already holds a node identity key; it is never replaced")]
    IdentityExists,
    /// An escrow gave another seed commitment for a party than the one stored.
    #[error(
        "key {key_id}: the escrow commits to another chain seed for party {party} than the one stored here; \
         a seed never changes, so one of the nodes misbehaves"
    )]
    EscrowMismatch {
        /// The key.
        key_id: KeyId,
        /// The party.
        party: PartyId,
    },
    /// A replacement of a node older than the one pinned for it.
    #[error("node {node} was replaced by a later request ({request}); this older one is not applied")]
    ReplacementSuperseded {
        /// The node.
        node: NodeId,
        /// The request in force.
        request: String,
    },
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
    ///
    /// The database file is created `0600` before SQLite opens it (SQLite
    /// gives its `-wal` and `-shm` the database file's mode), and each of the
    /// three is refused if group or others can access it. The directory is
    /// the caller's to check (the node daemon refuses one that is not `0700`).
    ///
    /// For a passphrase, the Argon2id parameters stored with the salt are
    /// used; a new store records the parameters given here; a store made
    /// before parameters were stored is opened with [`KdfParams::LEGACY_V1`]
    /// (and gets them recorded).
    pub fn open(path: &Path, node_id: &str, kek: KekSource<'_>) -> Result<Self, StoreError> {
        let files = StoreFiles::new(path);
        create_private_file(path)?;
        files.check_companions()?;
        let db = Connection::open(path)?;
        // Other connections (an operator reading the sign log) may hold locks briefly.
        db.busy_timeout(std::time::Duration::from_secs(10))?;
        // Deleted content is overwritten with zeros, so a deleted epoch does
        // not stay readable in free pages (set before anything is written).
        db.pragma_update(None, "secure_delete", "ON")?;
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.pragma_update(None, "synchronous", "FULL")?;
        files.check_companions()?;
        db.execute_batch(
            "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value BLOB NOT NULL);
             CREATE TABLE IF NOT EXISTS shares (key_id BLOB NOT NULL, epoch INTEGER NOT NULL, state TEXT NOT NULL
                 CHECK (state IN ('pending', 'active')), sealed BLOB NOT NULL, PRIMARY KEY (key_id, epoch));
             CREATE TABLE IF NOT EXISTS tweaks (key_id BLOB NOT NULL, path TEXT NOT NULL, sealed BLOB NOT NULL,
                 PRIMARY KEY (key_id, path));
             CREATE TABLE IF NOT EXISTS bans (key_id BLOB NOT NULL, party INTEGER NOT NULL, node INTEGER NOT NULL,
                 epoch INTEGER NOT NULL, reason TEXT NOT NULL, PRIMARY KEY (key_id, party));",
        )?;
        db.execute_batch(sign_log::CREATE_TABLE)?;
        db.execute_batch(governance::CREATE_TABLES)?;
        db.execute_batch(backups::CREATE_TABLE)?;
        db.execute_batch(epochs::CREATE_TABLE)?;
        db.execute_batch(replacement::CREATE_TABLES)?;
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
        let verifier = meta("kek_verifier")?;
        let stored_params = meta("kdf_params")?.map(|bytes| KdfParams::from_bytes(&bytes)).transpose()?;
        let (kek, params) = match kek {
            KekSource::Passphrase(passphrase, default) => {
                let params = match (&verifier, stored_params) {
                    (_, Some(stored)) => stored,
                    (Some(_), None) => KdfParams::LEGACY_V1,
                    (None, None) => default,
                };
                (Kek::from_passphrase(passphrase, &salt, params)?, Some(params))
            }
            KekSource::KeyFile(contents) => (Kek::from_key_file(contents)?, None),
        };
        match verifier {
            Some(verifier) => {
                kek.verify(&verifier)?;
                if let (Some(params), None) = (params, stored_params) {
                    // A store from before parameters were stored: record them.
                    db.execute("INSERT INTO meta (name, value) VALUES ('kdf_params', ?1)", [params.to_bytes()])?;
                }
            }
            None => {
                let tx = db.unchecked_transaction()?;
                let mut rows = vec![
                    ("schema", SCHEMA_VERSION.to_be_bytes().to_vec()),
                    ("node_id", node_id.as_bytes().to_vec()),
                    ("kdf_salt", salt.to_vec()),
                    ("kek_verifier", kek.verifier()?),
                ];
                if let Some(params) = params {
                    rows.push(("kdf_params", params.to_bytes()));
                }
                for (name, value) in rows {
                    tx.execute("INSERT INTO meta (name, value) VALUES (?1, ?2)", params![name, value])?;
                }
                tx.commit()?;
            }
        }
        let store = Store { db, node_id: node_id.to_string(), kek };
        store.init_sign_log()?;
        Ok(store)
    }

    /// Copies the WAL into the database and truncates it to zero bytes, so
    /// deleted or re-sealed blobs do not stay in old WAL frames. Runs after a
    /// committed transaction, so it does not fail the operation: if another
    /// connection is reading at that moment and the WAL cannot be reset, that
    /// is logged and the next checkpoint finishes the job.
    fn checkpoint_truncate(&self) {
        match self.db.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get::<_, i64>(0)) {
            Ok(0) => {}
            Ok(_) => tracing::warn!(
                "the WAL could not be truncated now (another connection is reading); old pages stay until the next checkpoint"
            ),
            Err(error) => tracing::warn!(%error, "the WAL could not be truncated; old pages stay until the next checkpoint"),
        }
    }

    /// The node's sealed Noise identity key, if one was stored.
    pub fn identity(&self) -> Result<Option<Secret32>, StoreError> {
        let sealed: Option<Vec<u8>> =
            self.db.query_row("SELECT value FROM meta WHERE name = ?1", [META_IDENTITY], |r| r.get(0)).optional()?;
        let Some(sealed) = sealed else { return Ok(None) };
        let bytes = open(&self.kek, &self.identity_context(), &sealed)?;
        let key: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| StoreError::Incompatible("the sealed identity key is not 32 bytes".into()))?;
        Ok(Some(Secret32::new(key)))
    }

    /// Stores the node's Noise identity key, sealed. Refused if one is
    /// already stored: a node's identity is pinned in the cluster file.
    pub fn set_identity(&self, secret: &Secret32) -> Result<(), StoreError> {
        let sealed = seal(&self.kek, &self.identity_context(), secret.expose_secret())?;
        let inserted = self
            .db
            .execute("INSERT OR IGNORE INTO meta (name, value) VALUES (?1, ?2)", params![META_IDENTITY, sealed])?;
        if inserted != 1 {
            return Err(StoreError::IdentityExists);
        }
        Ok(())
    }

    fn identity_context(&self) -> SealContext {
        self.context(KeyId::from_bytes([0; 16]), Epoch(0), KIND_IDENTITY)
    }

    /// Re-seals every sealed value (see `SEALED`: shares of every epoch,
    /// tweaks, the identity key) under a KEK from `new`, with a fresh salt,
    /// the given Argon2id parameters and a new verifier, in one transaction;
    /// then overwrites the old blobs on disk (secure delete, WAL truncated).
    /// Afterwards only the new passphrase or key file opens the store. A
    /// value that does not open under the current KEK aborts the rotation
    /// and changes nothing.
    pub fn rotate_kek(&mut self, new: KekSource<'_>) -> Result<(), StoreError> {
        let salt = Kek::new_salt();
        let (kek, params) = match new {
            KekSource::Passphrase(passphrase, params) => {
                (Kek::from_passphrase(passphrase, &salt, params)?, Some(params))
            }
            KekSource::KeyFile(contents) => (Kek::from_key_file(contents)?, None),
        };
        let tx = rusqlite::Transaction::new_unchecked(&self.db, rusqlite::TransactionBehavior::Immediate)?;
        for items in SEALED {
            let rows: Vec<SealedRow> = {
                let mut statement = tx.prepare(items.select)?;
                let rows = statement.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))?;
                rows.collect::<Result<_, _>>()?
            };
            for (rowid, key_id, epoch, argument, sealed) in rows {
                let key_id = KeyId::from_bytes(
                    key_id
                        .try_into()
                        .map_err(|_| StoreError::Incompatible(format!("bad key id in {}", items.table)))?,
                );
                let context = self.context(key_id, Epoch(epoch), &(items.kind)(&argument));
                let plaintext = open(&self.kek, &context, &sealed).map_err(|e| StoreError::Corrupt {
                    key_id,
                    detail: format!("{e}; the KEK was not rotated (nothing changed)"),
                })?;
                let resealed = seal(&kek, &context, &plaintext)?;
                tx.execute(
                    &format!("UPDATE {} SET {} = ?1 WHERE rowid = ?2", items.table, items.column),
                    params![resealed, rowid],
                )?;
            }
        }
        tx.execute("UPDATE meta SET value = ?1 WHERE name = 'kdf_salt'", [salt.to_vec()])?;
        tx.execute("UPDATE meta SET value = ?1 WHERE name = 'kek_verifier'", [kek.verifier()?])?;
        match params {
            Some(params) => {
                tx.execute("INSERT OR REPLACE INTO meta (name, value) VALUES ('kdf_params', ?1)", [params.to_bytes()])?
            }
            None => tx.execute("DELETE FROM meta WHERE name = 'kdf_params'", [])?,
        };
        tx.commit()?;
        self.kek = kek;
        self.checkpoint_truncate();
        Ok(())
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
        self.insert_active(&tx, share)?;
        if let Some(parties) = parties {
            insert_parties(&tx, key_id, parties)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Seals `share` and inserts it as its key's active one, in `tx`.
    fn insert_active(&self, tx: &Connection, share: &KeyShare) -> Result<(), StoreError> {
        let key_id = share.key_id();
        let bytes = share.to_bytes().map_err(|e| StoreError::Corrupt { key_id, detail: e.to_string() })?;
        let sealed = seal(&self.kek, &self.context(key_id, share.epoch(), KIND_SHARE), &bytes)?;
        tx.execute(
            "INSERT INTO shares (key_id, epoch, state, sealed) VALUES (?1, ?2, 'active', ?3)",
            params![key_id.as_bytes(), share.epoch().0, sealed],
        )?;
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
        let sealed = seal(&self.kek, &self.context(share.key_id(), share.epoch(), KIND_SHARE), &bytes)?;
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
        // Older epochs go first: at most one active row per key (unique index).
        // Without a pending epoch the transaction is dropped, undoing the delete.
        tx.execute("DELETE FROM shares WHERE key_id = ?1 AND epoch < ?2", params![key_id.as_bytes(), epoch.0])?;
        tx.execute(
            "DELETE FROM repaired_shares WHERE key_id = ?1 AND epoch < ?2",
            params![key_id.as_bytes(), epoch.0],
        )?;
        let updated = tx.execute(
            "UPDATE shares SET state = 'active' WHERE key_id = ?1 AND epoch = ?2 AND state = 'pending'",
            params![key_id.as_bytes(), epoch.0],
        )?;
        if updated != 1 || active.is_some_and(|a| a > epoch.0) {
            return Err(StoreError::NoPending { key_id, epoch });
        }
        tx.execute("DELETE FROM bans WHERE key_id = ?1 AND epoch < ?2", params![key_id.as_bytes(), epoch.0])?;
        tx.commit()?;
        // The deleted epochs were zeroed in their pages (secure_delete); old
        // copies in WAL frames go now.
        self.checkpoint_truncate();
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
        // A store written before the unique index may hold two active epochs
        // of one id (a key shadowed by a second DKG): use neither.
        let mut statement =
            self.db.prepare(&format!("SELECT epoch, sealed FROM shares WHERE key_id = ?1 AND {condition} LIMIT 2"))?;
        let mut rows: Vec<(u32, rusqlite::types::Value)> = statement
            .query_map(params![key_id.as_bytes(), value], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
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
            open(&self.kek, &self.context(key_id, epoch, KIND_SHARE), &sealed).map_err(|e| corrupt(e.to_string()))?;
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
        let kind = tweak_kind(&tweak.path.to_string());
        let sealed = seal(&self.kek, &self.context(tweak.key_id, Epoch(0), &kind), &bytes)?;
        // A plain INSERT: if another writer cached this path meanwhile, it fails
        // rather than replacing what is there.
        self.db.execute(
            "INSERT INTO tweaks (key_id, path, sealed) VALUES (?1, ?2, ?3)",
            params![tweak.key_id.as_bytes(), tweak.path.to_string(), sealed],
        )?;
        Ok(())
    }

    /// Every hardened path derived here for `key_id`, with its tweak.
    pub fn tweaks(&self, key_id: KeyId) -> Result<Vec<HardenedTweak>, StoreError> {
        let mut query = self.db.prepare("SELECT path FROM tweaks WHERE key_id = ?1 ORDER BY path")?;
        let paths = query.query_map([key_id.as_bytes()], |r| r.get::<_, String>(0))?.collect::<Result<Vec<_>, _>>()?;
        let corrupt = |detail: String| StoreError::Corrupt { key_id, detail };
        paths
            .iter()
            .map(|text| {
                let path: DerivationPath = text.parse().map_err(|e| corrupt(format!("tweak path {text}: {e}")))?;
                self.tweak(key_id, &path)?.ok_or_else(|| corrupt(format!("tweak {text} vanished")))
            })
            .collect()
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
        let kind = tweak_kind(&path.to_string());
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

    /// The parties banned for `key_id`, with why, whatever epoch a job names:
    /// a refreshed epoch that is only pending clears nothing (the coordinator
    /// could refresh and never activate), only [`Store::activate`] does.
    pub fn bans(&self, key_id: KeyId) -> Result<Vec<(PartyId, String)>, StoreError> {
        let mut statement = self.db.prepare("SELECT party, reason FROM bans WHERE key_id = ?1 ORDER BY party")?;
        let rows = statement.query_map(params![key_id.as_bytes()], |r| Ok((r.get::<_, u8>(0)?, r.get(1)?)))?;
        let mut bans = Vec::new();
        for row in rows {
            let (party, reason) = row?;
            let party = PartyId::new(party).map_err(|_| StoreError::Incompatible("bad party id in bans".into()))?;
            bans.push((party, reason));
        }
        Ok(bans)
    }
}

/// The store's database file and its SQLite companions.
struct StoreFiles {
    companions: [std::path::PathBuf; 3],
}

impl StoreFiles {
    fn new(path: &Path) -> Self {
        let with_suffix = |suffix: &str| {
            let mut name = path.as_os_str().to_os_string();
            name.push(suffix);
            std::path::PathBuf::from(name)
        };
        StoreFiles { companions: [path.to_path_buf(), with_suffix("-wal"), with_suffix("-shm")] }
    }

    /// The database, `-wal` and `-shm`, where they exist.
    fn check_companions(&self) -> Result<(), StoreError> {
        for path in &self.companions {
            check_private_if_exists(path)?;
        }
        Ok(())
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
    shardvault_wire::check_party_map(parties)
        .map_err(|e| StoreError::PartiesMismatch { key_id, detail: e.to_string() })?;
    for (party, node) in parties {
        db.execute(
            "INSERT INTO key_parties (key_id, party, node) VALUES (?1, ?2, ?3)",
            params![key_id.as_bytes(), party.get(), node.0],
        )?;
    }
    Ok(())
}
