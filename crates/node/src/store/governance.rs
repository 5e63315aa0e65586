//! What the node keeps of the organisation's governance (docs/GOVERNANCE.md):
//!
//! - `governance_log`: the hash-chained log of approved member and policy
//!   changes, as this node received it with its jobs: `position` (1, 2, …),
//!   `entry` (the [`LogEntry`] as JSON: the request's canonical bytes and its
//!   armored approvals) and `first_seen` (unix seconds when this node first
//!   stored it — the change delay runs from then). Append-only: a job's log
//!   must extend it, never rewrite it. Rows are checked again on every use
//!   (their approvals are re-verified by the replay), so an edited row fails
//!   the replay instead of granting anything.
//! - `spends`: the spend ledger of the policy's period limits: one row per
//!   (request hash, key, chain, asset) with the amount (decimal TEXT, the
//!   smallest unit, up to `u128`) and the time it was recorded. A request is
//!   recorded once, however many jobs carry it out (a PSBT's inputs, a
//!   retry), and in the same database transaction as the sign-log intent of
//!   its first job ([`Store::log_intent_spending`]).

use rusqlite::{params, OptionalExtension, Transaction, TransactionBehavior};
use shardvault_chains::Chain;
use shardvault_governance::{Asset, Ledger, LogEntry, Spend};

use super::{Store, StoreError};

/// The tables, created when the store is opened (stores of earlier
/// releases gain them then, empty).
pub(super) const CREATE_TABLES: &str = "
    CREATE TABLE IF NOT EXISTS governance_log (position INTEGER PRIMARY KEY CHECK (position >= 1),
        entry TEXT NOT NULL, first_seen INTEGER NOT NULL);
    CREATE TABLE IF NOT EXISTS spends (request BLOB NOT NULL, key_id TEXT NOT NULL, chain TEXT NOT NULL,
        asset TEXT NOT NULL, amount TEXT NOT NULL, at INTEGER NOT NULL, PRIMARY KEY (request, key_id, chain, asset));
    CREATE INDEX IF NOT EXISTS spends_window ON spends (key_id, chain, asset, at);";

/// One entry of the stored governance log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredEntry {
    /// Its position, from 1.
    pub position: u64,
    /// The approved change.
    pub entry: LogEntry,
    /// Unix seconds when this node first stored it.
    pub first_seen: u64,
}

/// The spends a signing request records, with its first sign-log intent.
#[derive(Clone, Copy, Debug)]
pub struct Spending<'a> {
    /// SHA-256 of the request's canonical bytes: a request is recorded once.
    pub request: [u8; 32],
    /// Unix seconds (the node's clock).
    pub at: u64,
    /// What the policy's decision says the request moves.
    pub spends: &'a [Spend],
}

/// The spend ledger as the policy reads it, leaving out one request's own
/// spends: a retried request (or a PSBT's next input) is evaluated as if it
/// had not been recorded yet, so its amount is not counted twice.
#[derive(Debug)]
pub struct StoreLedger<'a> {
    store: &'a Store,
    excluding: [u8; 32],
}

fn governance_error(detail: String) -> StoreError {
    StoreError::GovernanceLog(detail)
}

fn seconds(value: u64) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| governance_error(format!("time {value} does not fit the store")))
}

impl Store {
    /// The stored governance log, oldest first.
    pub fn governance_log(&self) -> Result<Vec<StoredEntry>, StoreError> {
        let mut statement =
            self.db.prepare("SELECT position, entry, first_seen FROM governance_log ORDER BY position")?;
        let rows =
            statement.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?)))?;
        let mut log = Vec::new();
        for (expected, row) in (1u64..).zip(rows) {
            let (position, json, first_seen) = row?;
            let unreadable = |why: String| governance_error(format!("stored entry {position}: {why}"));
            if u64::try_from(position).ok() != Some(expected) {
                return Err(unreadable(format!("expected position {expected}; an entry was removed")));
            }
            let entry: LogEntry = serde_json::from_str(&json).map_err(|e| unreadable(e.to_string()))?;
            let first_seen = u64::try_from(first_seen).map_err(|e| unreadable(e.to_string()))?;
            log.push(StoredEntry { position: expected, entry, first_seen });
        }
        Ok(log)
    }

    /// Appends `entries` after the first `after` stored ones, all or none,
    /// first seen at `first_seen`. Refuses if the store does not hold
    /// exactly `after` entries (another writer appended meanwhile).
    pub fn append_governance_log(&self, after: usize, entries: &[LogEntry], first_seen: u64) -> Result<(), StoreError> {
        let tx = Transaction::new_unchecked(&self.db, TransactionBehavior::Immediate)?;
        let stored: i64 = tx.query_row("SELECT count(*) FROM governance_log", [], |r| r.get(0))?;
        if usize::try_from(stored).ok() != Some(after) {
            return Err(governance_error(format!(
                "the store holds {stored} entries, not {after}; the job's log was checked against another log"
            )));
        }
        for (position, entry) in (after.saturating_add(1)..).zip(entries) {
            let json = serde_json::to_string(entry).map_err(|e| governance_error(e.to_string()))?;
            let position = i64::try_from(position).map_err(|e| governance_error(e.to_string()))?;
            tx.execute(
                "INSERT INTO governance_log (position, entry, first_seen) VALUES (?1, ?2, ?3)",
                params![position, json, seconds(first_seen)?],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// The spend ledger, leaving out the spends of request `excluding`.
    pub fn ledger(&self, excluding: [u8; 32]) -> StoreLedger<'_> {
        StoreLedger { store: self, excluding }
    }

    /// The spends recorded for `request` (its hash), with when.
    pub fn spends_of(&self, request: &[u8; 32]) -> Result<Vec<(Spend, u64)>, StoreError> {
        let mut statement = self.db.prepare(
            "SELECT key_id, chain, asset, amount, at FROM spends WHERE request = ?1 ORDER BY key_id, chain, asset",
        )?;
        let rows = statement.query_map([request.as_slice()], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, i64>(4)?,
            ))
        })?;
        let mut spends = Vec::new();
        for row in rows {
            let (key_id, chain, asset, amount, at) = row?;
            let unreadable = |why: String| governance_error(format!("a recorded spend of {key_id}: {why}"));
            let chain: Chain = chain.parse().map_err(|e: shardvault_chains::Error| unreadable(e.to_string()))?;
            let amount = amount.parse::<u128>().map_err(|e| unreadable(format!("amount {amount:?}: {e}")))?;
            let at = u64::try_from(at).map_err(|e| unreadable(e.to_string()))?;
            let asset = asset_from_text(&asset).map_err(unreadable)?;
            spends.push((Spend { key_id, chain, asset, amount }, at));
        }
        Ok(spends)
    }

    fn spent(
        &self,
        key_id: &str,
        chain: Chain,
        asset: &Asset,
        since: u64,
        excluding: &[u8; 32],
    ) -> Result<u128, StoreError> {
        let mut statement = self.db.prepare(
            "SELECT amount FROM spends WHERE key_id = ?1 AND chain = ?2 AND asset = ?3 AND at >= ?4 AND request != ?5",
        )?;
        let since = i64::try_from(since).unwrap_or(i64::MAX);
        let rows = statement
            .query_map(params![key_id, chain.name(), asset_text(asset), since, excluding.as_slice()], |r| {
                r.get::<_, String>(0)
            })?;
        let mut total: u128 = 0;
        for amount in rows {
            let amount = amount?;
            let value = amount
                .parse::<u128>()
                .map_err(|e| governance_error(format!("a recorded spend of {key_id} reads {amount:?}: {e}")))?;
            total = total
                .checked_add(value)
                .ok_or_else(|| governance_error(format!("the spends of {key_id} overflow 128 bits")))?;
        }
        Ok(total)
    }
}

impl Ledger for StoreLedger<'_> {
    fn spent(&self, key_id: &str, chain: Chain, asset: &Asset, since: u64) -> Result<u128, String> {
        self.store.spent(key_id, chain, asset, since, &self.excluding).map_err(|e| e.to_string())
    }
}

/// Records `spending` in `tx` unless its request is recorded already.
pub(super) fn record_spends(tx: &Transaction<'_>, spending: &Spending<'_>) -> Result<(), StoreError> {
    let recorded: bool = tx
        .query_row("SELECT 1 FROM spends WHERE request = ?1 LIMIT 1", [spending.request.as_slice()], |_| Ok(true))
        .optional()?
        .unwrap_or(false);
    if recorded {
        return Ok(());
    }
    for spend in spending.spends {
        // One request naming one (key, chain, asset) twice moves the sum.
        tx.execute(
            "INSERT INTO spends (request, key_id, chain, asset, amount, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (request, key_id, chain, asset) DO UPDATE SET amount = ?5",
            params![
                spending.request.as_slice(),
                spend.key_id,
                spend.chain.name(),
                asset_text(&spend.asset),
                sum_with(tx, spending, spend)?.to_string(),
                seconds(spending.at)?
            ],
        )?;
    }
    Ok(())
}

/// `spend`'s amount plus what this request already recorded for its (key,
/// chain, asset) in this transaction.
fn sum_with(tx: &Transaction<'_>, spending: &Spending<'_>, spend: &Spend) -> Result<u128, StoreError> {
    let before: Option<String> = tx
        .query_row(
            "SELECT amount FROM spends WHERE request = ?1 AND key_id = ?2 AND chain = ?3 AND asset = ?4",
            params![spending.request.as_slice(), spend.key_id, spend.chain.name(), asset_text(&spend.asset)],
            |r| r.get(0),
        )
        .optional()?;
    let before = before.map(|a| a.parse::<u128>()).transpose().map_err(|e| governance_error(e.to_string()))?;
    before
        .unwrap_or(0)
        .checked_add(spend.amount)
        .ok_or_else(|| governance_error(format!("the spends of {} overflow 128 bits", spend.key_id)))
}

/// `native`, or `token:` and the token's contract or mint address.
fn asset_text(asset: &Asset) -> String {
    match asset {
        Asset::Native => "native".into(),
        Asset::Token(address) => format!("token:{address}"),
    }
}

fn asset_from_text(text: &str) -> Result<Asset, String> {
    match (text, text.strip_prefix("token:")) {
        ("native", _) => Ok(Asset::Native),
        (_, Some(address)) => Ok(Asset::Token(address.to_string())),
        _ => Err(format!("asset {text:?} is neither native nor token:ADDRESS")),
    }
}
