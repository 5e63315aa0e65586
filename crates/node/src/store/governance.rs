//! What the node keeps of the organisation's governance (docs/GOVERNANCE.md):
//!
//! - `governance_log`: the hash-chained log of approved member and policy
//!   changes, as this node received it with its jobs: `position` (1, 2, …),
//!   `entry` (the [`LogEntry`] as JSON: the request's canonical bytes and its
//!   armored approvals) and `first_seen` (unix seconds when this node first
//!   stored it — the change delay runs from then). Append-only: a job's log
//!   must extend it, never rewrite it. Rows are checked again on every use
//!   (their approvals are re-verified by the replay), so an edited row fails
//!   the replay instead of granting anything. Each row also carries `mac`,
//!   `HMAC-SHA256(log key, "shardvault/governance-log/v1" ‖ u64be(position)
//!   ‖ u64be(first_seen) ‖ u64be(len) ‖ entry ‖ previous row's mac)` under
//!   the sign log's sealed key, and the `meta` row `governance_log_head`
//!   holds `u64be(count) ‖ last mac ‖ HMAC("…/head/v1" ‖ count ‖ last mac)`:
//!   a removed tail entry (a removal of a member undone) or an edited
//!   `first_seen` (a change delay skipped) is refused like a forged entry.
//!   What this cannot tell apart: a log deleted whole, head row included,
//!   from the empty log of a store that never had one; the next job's log
//!   restores the entries unless the coordinator withholds them too.
//! - `spends`: the spend ledger of the policy's period limits: one row per
//!   (request hash, key, chain, asset) with the amount (decimal TEXT, the
//!   smallest unit, up to `u128`) and the time it was recorded. A request is
//!   recorded once, however many jobs carry it out (a PSBT's inputs, a
//!   retry), and in the same database transaction as the sign-log intent of
//!   its first job ([`Store::log_intent_spending`]).

use hmac::{Hmac, Mac};
use rusqlite::{params, OptionalExtension, Transaction, TransactionBehavior};
use sha2::Sha256;
use shardvault_chains::Chain;
use shardvault_governance::{Asset, Ledger, LogEntry, Spend};

use super::sign_log::LogKey;
use super::{Store, StoreError};

/// The tables, created when the store is opened (stores of earlier
/// releases gain them then, empty).
pub(super) const CREATE_TABLES: &str = "
    CREATE TABLE IF NOT EXISTS governance_log (position INTEGER PRIMARY KEY CHECK (position >= 1),
        entry TEXT NOT NULL, first_seen INTEGER NOT NULL, mac BLOB NOT NULL);
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

fn altered(position: u64) -> StoreError {
    governance_error(format!(
        "stored governance log entry {position} was altered or removed (0: the log's head record)"
    ))
}

const ENTRY_TAG: &[u8] = b"shardvault/governance-log/v1";
const HEAD_TAG: &[u8] = b"shardvault/governance-log/head/v1";
const HEAD_ROW: &str = "governance_log_head";

/// The stored log's length and last MAC (0 and 32 zero bytes when empty).
struct GovernanceHead {
    count: u64,
    last: Vec<u8>,
}

fn entry_mac(key: &LogKey, position: u64, first_seen: u64, json: &str, previous: &[u8]) -> Hmac<Sha256> {
    let mut mac = key.mac();
    mac.update(ENTRY_TAG);
    mac.update(&position.to_be_bytes());
    mac.update(&first_seen.to_be_bytes());
    mac.update(&(json.len() as u64).to_be_bytes());
    mac.update(json.as_bytes());
    mac.update(previous);
    mac
}

fn head_mac(key: &LogKey, head: &GovernanceHead) -> Hmac<Sha256> {
    let mut mac = key.mac();
    mac.update(HEAD_TAG);
    mac.update(&head.count.to_be_bytes());
    mac.update(&head.last);
    mac
}

fn read_head(tx: &Transaction<'_>, key: &LogKey) -> Result<GovernanceHead, StoreError> {
    let value: Option<Vec<u8>> =
        tx.query_row("SELECT value FROM meta WHERE name = ?1", [HEAD_ROW], |r| r.get(0)).optional()?;
    let Some(value) = value else {
        // No head yet: an empty log (a row without a head is caught by the count).
        return Ok(GovernanceHead { count: 0, last: vec![0; 32] });
    };
    let (count, rest) = value.split_at_checked(8).ok_or_else(|| altered(0))?;
    let (last, tag) = rest.split_at_checked(32).ok_or_else(|| altered(0))?;
    let count = u64::from_be_bytes(count.try_into().map_err(|_| altered(0))?);
    let head = GovernanceHead { count, last: last.to_vec() };
    head_mac(key, &head).verify_slice(tag).map_err(|_| altered(0))?;
    Ok(head)
}

fn write_head(tx: &Transaction<'_>, key: &LogKey, head: &GovernanceHead) -> Result<(), StoreError> {
    let mut value = head.count.to_be_bytes().to_vec();
    value.extend_from_slice(&head.last);
    value.extend_from_slice(&head_mac(key, head).finalize().into_bytes());
    tx.execute("INSERT OR REPLACE INTO meta (name, value) VALUES (?1, ?2)", params![HEAD_ROW, value])?;
    Ok(())
}

fn seconds(value: u64) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| governance_error(format!("time {value} does not fit the store")))
}

impl Store {
    /// The stored governance log, oldest first, after checking each row's
    /// MAC and the head (an altered, inserted or removed row is refused).
    pub fn governance_log(&self) -> Result<Vec<StoredEntry>, StoreError> {
        let tx = Transaction::new_unchecked(&self.db, TransactionBehavior::Deferred)?;
        let (log, _) = self.verified_governance_log(&tx)?;
        Ok(log)
    }

    fn verified_governance_log(&self, tx: &Transaction<'_>) -> Result<(Vec<StoredEntry>, GovernanceHead), StoreError> {
        let key = self.log_key(tx)?;
        let head = read_head(tx, &key)?;
        let mut statement =
            tx.prepare("SELECT position, entry, first_seen, mac FROM governance_log ORDER BY position")?;
        let rows = statement.query_map([], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?, r.get::<_, Vec<u8>>(3)?))
        })?;
        let mut log = Vec::new();
        let mut last = vec![0u8; 32];
        for (expected, row) in (1u64..).zip(rows) {
            let (position, json, first_seen, mac) = row?;
            let altered = || altered(expected);
            let first_seen = u64::try_from(first_seen).map_err(|_| altered())?;
            if u64::try_from(position).ok() != Some(expected)
                || entry_mac(&key, expected, first_seen, &json, &last).verify_slice(&mac).is_err()
            {
                return Err(altered());
            }
            let entry: LogEntry = serde_json::from_str(&json).map_err(|_| altered())?;
            log.push(StoredEntry { position: expected, entry, first_seen });
            last = mac;
        }
        if head.count != log.len() as u64 || head.last != last {
            return Err(altered(head.count.max(log.len() as u64)));
        }
        Ok((log, head))
    }

    /// Appends `entries` after the first `after` stored ones, all or none,
    /// first seen at `first_seen`. Refuses if the store does not hold
    /// exactly `after` entries (another writer appended meanwhile) or its
    /// log does not check.
    pub fn append_governance_log(&self, after: usize, entries: &[LogEntry], first_seen: u64) -> Result<(), StoreError> {
        let tx = Transaction::new_unchecked(&self.db, TransactionBehavior::Immediate)?;
        let (stored, mut head) = self.verified_governance_log(&tx)?;
        if stored.len() != after {
            return Err(governance_error(format!(
                "the store holds {} entries, not {after}; the job's log was checked against another log",
                stored.len()
            )));
        }
        let key = self.log_key(&tx)?;
        for entry in entries {
            let json = serde_json::to_string(entry).map_err(|e| governance_error(e.to_string()))?;
            let position = head.count.saturating_add(1);
            let mac = entry_mac(&key, position, first_seen, &json, &head.last).finalize().into_bytes().to_vec();
            tx.execute(
                "INSERT INTO governance_log (position, entry, first_seen, mac) VALUES (?1, ?2, ?3, ?4)",
                params![seconds(position)?, json, seconds(first_seen)?, mac],
            )?;
            head = GovernanceHead { count: position, last: mac };
        }
        write_head(&tx, &key, &head)?;
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
