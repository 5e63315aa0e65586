//! The sign log: a write-ahead, keyed hash chain of what this node signed.
//!
//! - A Sign job appends an **intent** before any message of the job leaves
//!   the node ([`Store::log_intent`]); when the node assembles the signature
//!   it appends a **completion** that refers to the intent
//!   ([`Store::log_completion`]). An intent without a completion reads as
//!   [`SignLogStatus::MayHaveContributed`]: peers may hold a signature this
//!   node helped to make.
//! - Each row's `hash` column is `HMAC-SHA256(log key, seq ‖ previous MAC ‖
//!   fields)`. The log key is 32 random bytes sealed under the KEK in the
//!   `meta` row [`SIGN_LOG_KEY_ROW`] (seal kind [`SIGN_LOG_KEY_KIND`]); the
//!   `meta` row `sign_log_head` holds the last seq and MAC, itself MACed, so
//!   a deleted tail is detected.
//! - Rows written by releases before this one (kind `v1`, unkeyed SHA-256
//!   chain) are verified once when the store is first opened by this release,
//!   then pinned by a `keyed` row whose MAC covers the last v1 hash.
//!
//! docs/FORMATS.md ("Sign log") is the byte-level description.

use std::collections::{BTreeMap, HashMap};

use hmac::{Hmac, Mac};
use rand_core::{OsRng, RngCore};
use rusqlite::{params, OptionalExtension, Transaction, TransactionBehavior};
use sha2::{Digest, Sha256};
use shardvault_mpc::{Epoch, KeyId, PartyId, SessionId};
use shardvault_vault::{open, seal, SealContext};
use shardvault_wire::NodeId;
use zeroize::Zeroizing;

use super::governance::{record_spends, Spending};
use super::{Store, StoreError};

/// The `meta` row holding the sign-log key, sealed under the KEK with
/// [`SIGN_LOG_KEY_KIND`] (node id, all-zero key id, epoch 0). KEK rotation
/// must re-seal it like every other sealed value.
pub const SIGN_LOG_KEY_ROW: &str = "sign_log_key";
/// The seal kind (AAD) of the sign-log key.
pub const SIGN_LOG_KEY_KIND: &str = "sign-log-key";
/// The `meta` row holding the log's head: last seq, its MAC, and a MAC over both.
const HEAD_ROW: &str = "sign_log_head";

const ENTRY_TAG: &[u8] = b"shardvault/sign-log/v2";
const HEAD_TAG: &[u8] = b"shardvault/sign-log/head/v2";
const V1_TAG: &[u8] = b"shardvault/sign-log/v1";
const PUBLIC_TAG: &[u8] = b"shardvault/sign-log/public/v1";

/// The table, as created by this release (v1 stores gain the new columns on first open).
pub(super) const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS sign_log (seq INTEGER PRIMARY KEY AUTOINCREMENT,
    key_id BLOB NOT NULL, path TEXT NOT NULL, signed BLOB NOT NULL, request BLOB NOT NULL, hash BLOB NOT NULL,
    kind TEXT NOT NULL DEFAULT 'v1', session BLOB NOT NULL DEFAULT x'', signers BLOB NOT NULL DEFAULT x'',
    refers INTEGER NOT NULL DEFAULT 0, signature BLOB NOT NULL DEFAULT x'');";

/// Columns a v1 table lacks, added on first open by this release.
const NEW_COLUMNS: [(&str, &str); 5] = [
    ("kind", "TEXT NOT NULL DEFAULT 'v1'"),
    ("session", "BLOB NOT NULL DEFAULT x''"),
    ("signers", "BLOB NOT NULL DEFAULT x''"),
    ("refers", "INTEGER NOT NULL DEFAULT 0"),
    ("signature", "BLOB NOT NULL DEFAULT x''"),
];

const KIND_V1: &str = "v1";
const KIND_KEYED: &str = "keyed";
const KIND_INTENT: &str = "intent";
const KIND_DONE: &str = "done";

/// What this node's part in a logged signing job was.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignLogStatus {
    /// The intent was logged before the node released any message of the
    /// job, and no completion follows: the job failed, was aborted, or a
    /// co-signer withheld its last message — **other parties may hold a
    /// signature this node contributed to**.
    MayHaveContributed,
    /// The node assembled the signature.
    Completed {
        /// The signature's bytes, as the node assembled them.
        signature: Vec<u8>,
    },
    /// Logged by a release before write-ahead logging, after the node
    /// assembled the signature; no session or signers recorded.
    Legacy,
}

/// One signing job in the node's sign log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignLogEntry {
    /// Position of the entry (the intent) in the log.
    pub seq: i64,
    /// The key.
    pub key_id: KeyId,
    /// The path signed under.
    pub path: String,
    /// What was signed (digest or message hash).
    pub signed: Vec<u8>,
    /// The request's own hash, as the coordinator and members see it.
    pub request: Vec<u8>,
    /// The job's session; `None` for [`SignLogStatus::Legacy`] entries.
    pub session: Option<SessionId>,
    /// The job's signers (party → node); empty for legacy entries.
    pub signers: Vec<(PartyId, NodeId)>,
    /// Whether the node assembled the signature.
    pub status: SignLogStatus,
}

impl SignLogEntry {
    /// Whether the node assembled the signature (including legacy entries,
    /// which were logged only after that).
    pub fn completed(&self) -> bool {
        !matches!(self.status, SignLogStatus::MayHaveContributed)
    }
}

/// What a Sign job is about to do, logged before it sends anything.
#[derive(Clone, Copy, Debug)]
pub struct SignIntent<'a> {
    /// The key.
    pub key_id: KeyId,
    /// The path signed under.
    pub path: &'a str,
    /// What is signed (the digest or message this node computed).
    pub signed: &'a [u8],
    /// The request's hash.
    pub request: &'a [u8],
    /// The job's session.
    pub session: SessionId,
    /// The job's signers.
    pub signers: &'a BTreeMap<PartyId, NodeId>,
}

/// One row as stored (all columns but `seq` and `hash`).
#[derive(Default)]
struct Row {
    kind: String,
    key_id: Vec<u8>,
    path: String,
    signed: Vec<u8>,
    request: Vec<u8>,
    session: Vec<u8>,
    signers: Vec<u8>,
    refers: i64,
    signature: Vec<u8>,
}

pub(super) struct LogKey(Zeroizing<Vec<u8>>);

impl LogKey {
    pub(super) fn mac(&self) -> Hmac<Sha256> {
        // HMAC takes keys of any length; this cannot fail.
        <Hmac<Sha256> as Mac>::new_from_slice(&self.0).unwrap_or_else(|_| unreachable!("HMAC accepts any key length"))
    }

    fn entry_mac(&self, seq: i64, previous: &[u8], row: &Row) -> Vec<u8> {
        let mut mac = self.mac();
        mac.update(ENTRY_TAG);
        mac.update(&seq.to_be_bytes());
        for field in std::iter::once(previous).chain(row.fields()) {
            mac.update(&length(field.len()));
            mac.update(field);
        }
        mac.update(&row.refers.to_be_bytes());
        mac.finalize().into_bytes().to_vec()
    }

    fn head_tag(&self, seq: i64, last: &[u8]) -> Hmac<Sha256> {
        let mut mac = self.mac();
        mac.update(HEAD_TAG);
        mac.update(&seq.to_be_bytes());
        mac.update(last);
        mac
    }
}

/// The log's last seq and MAC (seq 0 and 32 zero bytes for an empty log).
struct Head {
    seq: i64,
    last: Vec<u8>,
}

impl Store {
    fn log_key_context(&self) -> SealContext {
        SealContext {
            node_id: self.node_id.clone(),
            key_id: KeyId::from_bytes([0; 16]),
            epoch: Epoch(0),
            kind: SIGN_LOG_KEY_KIND.to_string(),
        }
    }

    /// Called by `open`: creates the log key of a new store, or migrates a
    /// store written by a release with the unkeyed v1 log (verifying its
    /// chain once; a broken v1 chain is refused).
    pub(super) fn init_sign_log(&self) -> Result<(), StoreError> {
        let has_key = |db: &rusqlite::Connection| -> Result<bool, StoreError> {
            Ok(db.query_row("SELECT 1 FROM meta WHERE name = ?1", [SIGN_LOG_KEY_ROW], |_| Ok(())).optional()?.is_some())
        };
        // The common case without a write lock (a reader opens the store of a running node).
        if has_key(&self.db)? {
            return Ok(());
        }
        let tx = Transaction::new_unchecked(&self.db, TransactionBehavior::Immediate)?;
        if has_key(&tx)? {
            return Ok(()); // another opener was first
        }
        let columns: Vec<String> = {
            let mut statement = tx.prepare("SELECT name FROM pragma_table_info('sign_log')")?;
            let names = statement.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
            names
        };
        for (name, definition) in NEW_COLUMNS {
            if !columns.iter().any(|c| c == name) {
                tx.execute_batch(&format!("ALTER TABLE sign_log ADD COLUMN {name} {definition}"))?;
            }
        }
        // A store that has keyed entries but no key lost it to tampering: no
        // new key, so reading or appending reports the log as tampered.
        let keyed: Option<i64> =
            tx.query_row("SELECT min(seq) FROM sign_log WHERE kind != ?1", [KIND_V1], |r| r.get(0))?;
        if keyed.is_some() {
            return Ok(());
        }
        let v1_head = verify_v1(&tx).map_err(|error| match error {
            StoreError::LogTampered(seq) => StoreError::Incompatible(format!(
                "its unkeyed (v1) sign log does not verify at entry {seq}, so this release will not continue it; \
                 keep a copy of the file for investigation, then either restore node.db from a backup or move the \
                 log aside (ALTER TABLE sign_log RENAME TO sign_log_v1_broken) to start a new one"
            )),
            other => other,
        })?;
        let mut secret = Zeroizing::new(vec![0u8; 32]);
        OsRng.fill_bytes(&mut secret);
        let key = LogKey(secret);
        let sealed = seal(&self.kek, &self.log_key_context(), &key.0)?;
        tx.execute("INSERT INTO meta (name, value) VALUES (?1, ?2)", params![SIGN_LOG_KEY_ROW, sealed])?;
        let head = Head { seq: 0, last: vec![0; 32] };
        match v1_head {
            None => write_head(&tx, &key, &head)?,
            Some(v1) => {
                // Record the switch: this row's MAC pins every v1 row.
                tracing::warn!(
                    node = %self.node_id,
                    entries = v1.seq,
                    "sign log: unkeyed v1 chain verified and pinned; keyed from here. If this store was already \
                     keyed, its log key was deleted: treat the log as tampered"
                );
                let row = Row {
                    kind: KIND_KEYED.into(),
                    signed: v1.last.clone(),
                    refers: v1.seq,
                    key_id: vec![0; 16],
                    ..Row::default()
                };
                append_row(&tx, &key, &v1, &row)?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    pub(super) fn log_key(&self, tx: &Transaction<'_>) -> Result<LogKey, StoreError> {
        let sealed: Option<Vec<u8>> =
            tx.query_row("SELECT value FROM meta WHERE name = ?1", [SIGN_LOG_KEY_ROW], |r| r.get(0)).optional()?;
        // The key is written when the store is opened; without it the log cannot be trusted.
        let sealed = sealed.ok_or(StoreError::LogTampered(0))?;
        let key = open(&self.kek, &self.log_key_context(), &sealed).map_err(|_| StoreError::LogTampered(0))?;
        Ok(LogKey(key))
    }

    /// Appends the intent of a Sign job, durably (`synchronous=FULL`), before
    /// the job sends anything; returns its seq for [`Store::log_completion`].
    /// Refuses to append to a log whose head does not check.
    pub fn log_intent(&self, intent: &SignIntent<'_>) -> Result<i64, StoreError> {
        let row = intent_row(intent);
        self.append(&row, |_| Ok(()))
    }

    /// [`Store::log_intent`], recording the request's spends in the same
    /// database transaction (once per request: a later job of a request
    /// already recorded adds nothing), so a signing job is never logged
    /// without its spends nor its spends without the job.
    pub fn log_intent_spending(&self, intent: &SignIntent<'_>, spending: &Spending<'_>) -> Result<i64, StoreError> {
        let row = intent_row(intent);
        self.append(&row, |tx| record_spends(tx, spending))
    }

    /// Records that the job logged at `intent` produced `signature`.
    pub fn log_completion(&self, intent: i64, signature: &[u8]) -> Result<i64, StoreError> {
        let found: Option<(String, Vec<u8>, Vec<u8>)> = self
            .db
            .query_row("SELECT kind, key_id, session FROM sign_log WHERE seq = ?1", [intent], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .optional()?;
        let Some((KIND_INTENT, key_id, session)) = found.as_ref().map(|(k, i, s)| (k.as_str(), i, s)) else {
            return Err(StoreError::LogTampered(intent));
        };
        let row = Row {
            kind: KIND_DONE.into(),
            key_id: key_id.clone(),
            session: session.clone(),
            refers: intent,
            signature: signature.to_vec(),
            ..Row::default()
        };
        self.append(&row, |_| Ok(()))
    }

    /// Appends `row` after running `with` in the same transaction (which
    /// commits only if both succeed).
    fn append(
        &self,
        row: &Row,
        with: impl FnOnce(&Transaction<'_>) -> Result<(), StoreError>,
    ) -> Result<i64, StoreError> {
        // IMMEDIATE: take the write lock before reading the head, so
        // concurrent appenders (one per worker) queue instead of failing.
        let tx = Transaction::new_unchecked(&self.db, TransactionBehavior::Immediate)?;
        let key = self.log_key(&tx)?;
        let head = read_head(&tx, &key)?;
        let last: Option<(i64, Vec<u8>)> = tx
            .query_row("SELECT seq, hash FROM sign_log ORDER BY seq DESC LIMIT 1", [], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        let consistent = match &last {
            Some((seq, hash)) => *seq == head.seq && *hash == head.last,
            None => head.seq == 0,
        };
        if !consistent {
            return Err(StoreError::LogTampered(head.seq.max(last.map_or(0, |(seq, _)| seq))));
        }
        with(&tx)?;
        let seq = append_row(&tx, &key, &head, row)?;
        tx.commit()?;
        Ok(seq)
    }

    /// Every signing job in the log, after checking the keyed chain and its
    /// head: an altered, reordered, inserted or removed row (the last one
    /// included) is [`StoreError::LogTampered`].
    pub fn sign_log(&self) -> Result<Vec<SignLogEntry>, StoreError> {
        Ok(self.verified_sign_log()?.entries)
    }

    /// The head of the sign log ([`SignLogHead`]), after the same checks as
    /// [`Store::sign_log`].
    pub fn sign_log_head(&self) -> Result<SignLogHead, StoreError> {
        let chain = self.verified_sign_log()?;
        Ok(SignLogHead { seq: chain.seq, hash: chain.public })
    }

    fn verified_sign_log(&self) -> Result<Chain, StoreError> {
        // A read transaction: rows and head from one snapshot.
        let tx = Transaction::new_unchecked(&self.db, TransactionBehavior::Deferred)?;
        let key = self.log_key(&tx)?;
        let head = read_head(&tx, &key)?;
        let mut statement = tx.prepare(
            "SELECT seq, hash, kind, key_id, path, signed, request, session, signers, refers, signature
             FROM sign_log ORDER BY seq",
        )?;
        let rows = statement.query_map([], |r| {
            let row = Row {
                kind: r.get(2)?,
                key_id: r.get(3)?,
                path: r.get(4)?,
                signed: r.get(5)?,
                request: r.get(6)?,
                session: r.get(7)?,
                signers: r.get(8)?,
                refers: r.get(9)?,
                signature: r.get(10)?,
            };
            Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?, row))
        })?;
        let mut chain = Chain::new(&self.node_id);
        for row in rows {
            let (seq, hash, row) = row?;
            chain.check(&key, seq, hash, row)?;
        }
        if chain.seq != head.seq || chain.previous != head.last {
            // The head names an entry that is gone (a truncated tail).
            return Err(StoreError::LogTampered(head.seq.max(chain.seq)));
        }
        Ok(chain)
    }
}

/// The state of a verification pass over the rows, in seq order.
struct Chain {
    seq: i64,
    previous: Vec<u8>,
    v1_rows: i64,
    keyed: bool,
    entries: Vec<SignLogEntry>,
    intents: HashMap<i64, usize>,
    /// The unkeyed head over the rows so far ([`SignLogHead`]).
    public: [u8; 32],
}

impl Chain {
    fn new(node_id: &str) -> Self {
        Chain {
            seq: 0,
            previous: vec![0; 32],
            v1_rows: 0,
            keyed: false,
            entries: Vec::new(),
            intents: HashMap::new(),
            public: Sha256::new()
                .chain_update(PUBLIC_TAG)
                .chain_update(length(node_id.len()))
                .chain_update(node_id)
                .finalize()
                .into(),
        }
    }
}

/// The head of this node's sign log as anyone can recompute it from the
/// rows, without the log key: `h_0 = SHA-256("shardvault/sign-log/public/v1"
/// ‖ u64be(len) ‖ node id)`, and for each row in seq order `h_seq =
/// SHA-256(h_{seq−1} ‖ i64be(seq) ‖ for each of kind, key_id, path, signed,
/// request, session, signers, signature: u64be(len) ‖ bytes ‖ i64be(refers))`.
/// Rows are only appended (intents, then completions), so the head at seq
/// `n` commits to the log's first `n` rows: a node's signed head
/// ([`SIGN_LOG_HEAD_DOMAIN`]) is what an auditor holds it to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SignLogHead {
    /// The last row's seq (0 for an empty log).
    pub seq: i64,
    /// `h_seq`.
    pub hash: [u8; 32],
}

/// The identity-signature domain of a node's statement of its sign-log
/// head: [`SignLogHead::statement`], signed with its `NodeIdentity`.
pub const SIGN_LOG_HEAD_DOMAIN: &str = "sign-log-head";

impl SignLogHead {
    /// What the node signs: `i64be(seq) ‖ hash`.
    pub fn statement(&self) -> Vec<u8> {
        let mut statement = self.seq.to_be_bytes().to_vec();
        statement.extend_from_slice(&self.hash);
        statement
    }
}

impl Row {
    /// The row's fields in the order the MAC chain and the public head
    /// commit to them (each length-prefixed there; `refers` follows).
    fn fields(&self) -> [&[u8]; 8] {
        [
            self.kind.as_bytes(),
            &self.key_id,
            self.path.as_bytes(),
            &self.signed,
            &self.request,
            &self.session,
            &self.signers,
            &self.signature,
        ]
    }
}

fn length(n: usize) -> [u8; 8] {
    u64::try_from(n).unwrap_or(u64::MAX).to_be_bytes()
}

fn public_link(previous: &[u8; 32], seq: i64, row: &Row) -> [u8; 32] {
    let mut hash = Sha256::new().chain_update(previous).chain_update(seq.to_be_bytes());
    for field in row.fields() {
        hash.update(length(field.len()));
        hash.update(field);
    }
    hash.update(row.refers.to_be_bytes());
    hash.finalize().into()
}

impl Chain {
    fn check(&mut self, key: &LogKey, seq: i64, hash: Vec<u8>, row: Row) -> Result<(), StoreError> {
        let tampered = StoreError::LogTampered(seq);
        if seq != self.seq + 1 {
            return Err(tampered);
        }
        self.public = public_link(&self.public, seq, &row);
        if row.kind == KIND_V1 {
            // Unkeyed rows only before the switch; the switch row's MAC pins them.
            let key_id = key_id(&row.key_id).ok_or(StoreError::LogTampered(seq))?;
            if self.keyed || v1_hash(&self.previous, key_id, &row.path, &row.signed, &row.request) != hash {
                return Err(tampered);
            }
            self.v1_rows = seq;
            self.entries.push(SignLogEntry {
                seq,
                key_id,
                path: row.path,
                signed: row.signed,
                request: row.request,
                session: None,
                signers: Vec::new(),
                status: SignLogStatus::Legacy,
            });
        } else {
            let expected = key.entry_mac(seq, &self.previous, &row);
            if !bool::from(subtle::ConstantTimeEq::ct_eq(expected.as_slice(), hash.as_slice())) {
                return Err(tampered);
            }
            match row.kind.as_str() {
                KIND_KEYED if !self.keyed && self.v1_rows > 0 && row.refers == self.v1_rows => {}
                KIND_INTENT | KIND_DONE if !self.keyed && self.v1_rows > 0 => return Err(tampered),
                KIND_INTENT => self.intent(seq, row)?,
                KIND_DONE => self.completion(seq, &row)?,
                _ => return Err(tampered),
            }
            self.keyed = true;
        }
        self.seq = seq;
        self.previous = hash;
        Ok(())
    }

    fn intent(&mut self, seq: i64, row: Row) -> Result<(), StoreError> {
        let tampered = || StoreError::LogTampered(seq);
        let key_id = key_id(&row.key_id).ok_or_else(tampered)?;
        let session: [u8; 32] = row.session.as_slice().try_into().map_err(|_| tampered())?;
        let mut signers = Vec::new();
        for signer in row.signers.chunks(3) {
            let [party, high, low] = signer else { return Err(tampered()) };
            let party = PartyId::new(*party).map_err(|_| tampered())?;
            signers.push((party, NodeId(u16::from_be_bytes([*high, *low]))));
        }
        self.intents.insert(seq, self.entries.len());
        self.entries.push(SignLogEntry {
            seq,
            key_id,
            path: row.path,
            signed: row.signed,
            request: row.request,
            session: Some(SessionId::from_bytes(session)),
            signers,
            status: SignLogStatus::MayHaveContributed,
        });
        Ok(())
    }

    fn completion(&mut self, seq: i64, row: &Row) -> Result<(), StoreError> {
        // A completion names an earlier, open intent of the same key and session.
        let entry = self.intents.remove(&row.refers).and_then(|index| self.entries.get_mut(index));
        match entry {
            Some(entry)
                if entry.key_id.as_bytes().as_slice() == row.key_id.as_slice()
                    && entry.session.as_ref().map(|s| s.as_bytes().as_slice()) == Some(row.session.as_slice()) =>
            {
                entry.status = SignLogStatus::Completed { signature: row.signature.clone() };
                Ok(())
            }
            _ => Err(StoreError::LogTampered(seq)),
        }
    }
}

fn intent_row(intent: &SignIntent<'_>) -> Row {
    let mut signers = Vec::with_capacity(intent.signers.len() * 3);
    for (party, node) in intent.signers {
        signers.push(party.get());
        signers.extend_from_slice(&node.0.to_be_bytes());
    }
    Row {
        kind: KIND_INTENT.into(),
        key_id: intent.key_id.as_bytes().to_vec(),
        path: intent.path.to_string(),
        signed: intent.signed.to_vec(),
        request: intent.request.to_vec(),
        session: intent.session.as_bytes().to_vec(),
        signers,
        ..Row::default()
    }
}

fn key_id(bytes: &[u8]) -> Option<KeyId> {
    Some(KeyId::from_bytes(bytes.try_into().ok()?))
}

/// Appends `row` after `head` and moves the head to it; returns its seq.
fn append_row(tx: &Transaction<'_>, key: &LogKey, head: &Head, row: &Row) -> Result<i64, StoreError> {
    let seq = head.seq + 1;
    let hash = key.entry_mac(seq, &head.last, row);
    tx.execute(
        "INSERT INTO sign_log (seq, key_id, path, signed, request, hash, kind, session, signers, refers, signature)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        params![
            seq,
            row.key_id,
            row.path,
            row.signed,
            row.request,
            hash,
            row.kind,
            row.session,
            row.signers,
            row.refers,
            row.signature
        ],
    )?;
    write_head(tx, key, &Head { seq, last: hash })?;
    Ok(seq)
}

fn write_head(tx: &Transaction<'_>, key: &LogKey, head: &Head) -> Result<(), StoreError> {
    let mut value = head.seq.to_be_bytes().to_vec();
    value.extend_from_slice(&head.last);
    value.extend_from_slice(&key.head_tag(head.seq, &head.last).finalize().into_bytes());
    tx.execute("INSERT OR REPLACE INTO meta (name, value) VALUES (?1, ?2)", params![HEAD_ROW, value])?;
    Ok(())
}

fn read_head(tx: &Transaction<'_>, key: &LogKey) -> Result<Head, StoreError> {
    let value: Option<Vec<u8>> =
        tx.query_row("SELECT value FROM meta WHERE name = ?1", [HEAD_ROW], |r| r.get(0)).optional()?;
    let value = value.ok_or(StoreError::LogTampered(0))?;
    if value.len() != 8 + 32 + 32 {
        return Err(StoreError::LogTampered(0));
    }
    let (seq, rest) = value.split_at(8);
    let (last, tag) = rest.split_at(32);
    let seq = i64::from_be_bytes(seq.try_into().map_err(|_| StoreError::LogTampered(0))?);
    key.head_tag(seq, last).verify_slice(tag).map_err(|_| StoreError::LogTampered(seq))?;
    Ok(Head { seq, last: last.to_vec() })
}

/// Checks the unkeyed chain of a v1 store; returns its head, `None` if empty.
fn verify_v1(tx: &Transaction<'_>) -> Result<Option<Head>, StoreError> {
    let mut statement = tx.prepare("SELECT seq, key_id, path, signed, request, hash FROM sign_log ORDER BY seq")?;
    let rows = statement.query_map([], |r| {
        Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?, r.get::<_, String>(2)?, r.get(3)?, r.get(4)?, r.get(5)?))
    })?;
    let mut head = None;
    let mut previous = vec![0u8; 32];
    for (expected, row) in (1..).zip(rows) {
        let (seq, key_id_bytes, path, signed, request, hash): (i64, Vec<u8>, String, Vec<u8>, Vec<u8>, Vec<u8>) = row?;
        let key_id = key_id(&key_id_bytes).ok_or(StoreError::LogTampered(seq))?;
        if seq != expected || v1_hash(&previous, key_id, &path, &signed, &request) != hash {
            return Err(StoreError::LogTampered(seq));
        }
        previous = hash;
        head = Some(Head { seq, last: previous.clone() });
    }
    Ok(head)
}

/// The unkeyed entry hash of releases before the keyed log (v1).
fn v1_hash(previous: &[u8], key_id: KeyId, path: &str, signed: &[u8], request: &[u8]) -> Vec<u8> {
    let mut hash = Sha256::new();
    hash.update(V1_TAG);
    for field in [previous, key_id.as_bytes(), path.as_bytes(), signed, request] {
        hash.update((field.len() as u64).to_be_bytes());
        hash.update(field);
    }
    hash.finalize().to_vec()
}
