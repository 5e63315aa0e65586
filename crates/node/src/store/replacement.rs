//! What replacing a lost node needs on disk (docs/DESIGN.md "Replacing a
//! lost node"):
//!
//! - `seed_commitments` and `seed_pieces`: every party's commitment to its
//!   chain seed, and this node's sealed piece of every other party's seed,
//!   from the key's seed escrow. Seeds never change, so a commitment once
//!   stored is never replaced by another;
//! - `repaired_shares`: a share this node got by repair, usable only for the
//!   complete refresh that must follow (an ECDSA one cannot sign at all);
//! - `node_keys`: the Noise and identity keys of a replaced node, pinned
//!   over the cluster file's on an approved replacement request.

use rusqlite::{params, OptionalExtension};
use shardvault_mpc::{Epoch, EscrowedSeeds, KeyId, KeyShare, PartyId, SeedPiece};
use shardvault_wire::NodeId;

use super::{knows_key, open, seal, Store, StoreError};

/// The tables, created when the store is opened (stores of earlier releases
/// gain them then, empty).
pub(super) const CREATE_TABLES: &str = "
    CREATE TABLE IF NOT EXISTS seed_commitments (key_id BLOB NOT NULL, party INTEGER NOT NULL,
        commitment BLOB NOT NULL, PRIMARY KEY (key_id, party));
    CREATE TABLE IF NOT EXISTS seed_pieces (key_id BLOB NOT NULL, from_party INTEGER NOT NULL,
        sealed BLOB NOT NULL, PRIMARY KEY (key_id, from_party));
    CREATE TABLE IF NOT EXISTS repaired_shares (key_id BLOB NOT NULL, epoch INTEGER NOT NULL,
        PRIMARY KEY (key_id, epoch));
    CREATE TABLE IF NOT EXISTS node_keys (node INTEGER PRIMARY KEY, noise BLOB NOT NULL, identity BLOB NOT NULL,
        request TEXT NOT NULL, created_at INTEGER NOT NULL);";

fn piece_kind(party: PartyId) -> String {
    format!("seed-piece-{party}")
}

/// A replaced node's keys, as pinned here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplacedNode {
    /// The node.
    pub node: NodeId,
    /// Its Noise static public key.
    pub noise: [u8; 32],
    /// Its identity public key.
    pub identity: [u8; 32],
    /// The replacement request's id.
    pub request: String,
    /// When that request was created (unix seconds).
    pub created_at: u64,
}

impl Store {
    /// Stores what an escrow gave this node, atomically: every party's seed
    /// commitment (refused if it differs from one stored before: a seed
    /// never changes) and a piece of every peer's seed (replacing an older
    /// piece of the same seed).
    pub fn put_escrow(&self, escrow: &EscrowedSeeds) -> Result<(), StoreError> {
        let key_id = escrow.key_id;
        let tx = rusqlite::Transaction::new_unchecked(&self.db, rusqlite::TransactionBehavior::Immediate)?;
        for (party, commitment) in &escrow.commitments {
            let stored: Option<Vec<u8>> = tx
                .query_row(
                    "SELECT commitment FROM seed_commitments WHERE key_id = ?1 AND party = ?2",
                    params![key_id.as_bytes(), party.get()],
                    |r| r.get(0),
                )
                .optional()?;
            match stored {
                Some(stored) if stored != commitment.as_slice() => {
                    return Err(StoreError::EscrowMismatch { key_id, party: *party })
                }
                Some(_) => {}
                None => {
                    tx.execute(
                        "INSERT INTO seed_commitments (key_id, party, commitment) VALUES (?1, ?2, ?3)",
                        params![key_id.as_bytes(), party.get(), commitment.as_slice()],
                    )?;
                }
            }
        }
        for (party, piece) in &escrow.pieces {
            let sealed = seal(&self.kek, &self.context(key_id, Epoch(0), &piece_kind(*party)), piece.expose_secret())?;
            tx.execute(
                "INSERT OR REPLACE INTO seed_pieces (key_id, from_party, sealed) VALUES (?1, ?2, ?3)",
                params![key_id.as_bytes(), party.get(), sealed],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// This node's piece of `party`'s seed of `key_id`, with the seed's
    /// commitment, if escrowed here.
    pub fn seed_piece(&self, key_id: KeyId, party: PartyId) -> Result<Option<(SeedPiece, [u8; 32])>, StoreError> {
        let row: Option<(Vec<u8>, Vec<u8>)> = self
            .db
            .query_row(
                "SELECT p.sealed, c.commitment FROM seed_pieces p JOIN seed_commitments c
                     ON c.key_id = p.key_id AND c.party = p.from_party
                 WHERE p.key_id = ?1 AND p.from_party = ?2",
                params![key_id.as_bytes(), party.get()],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let Some((sealed, commitment)) = row else { return Ok(None) };
        let corrupt = |detail: String| StoreError::Corrupt { key_id, detail };
        let bytes = open(&self.kek, &self.context(key_id, Epoch(0), &piece_kind(party)), &sealed)
            .map_err(|e| corrupt(format!("seed piece of party {party}: {e}")))?;
        let piece = SeedPiece::from_bytes(bytes.to_vec()).map_err(|e| corrupt(e.to_string()))?;
        let commitment = commitment.try_into().map_err(|_| corrupt("a seed commitment is not 32 bytes".into()))?;
        Ok(Some((piece, commitment)))
    }

    /// The parties whose seed this node holds a piece of, for `key_id`.
    pub fn escrowed_parties(&self, key_id: KeyId) -> Result<Vec<PartyId>, StoreError> {
        let mut query = self.db.prepare("SELECT from_party FROM seed_pieces WHERE key_id = ?1 ORDER BY from_party")?;
        let rows = query.query_map([key_id.as_bytes()], |r| r.get::<_, u8>(0))?;
        rows.map(|row| {
            let party = row?;
            PartyId::new(party).map_err(|e| StoreError::Corrupt { key_id, detail: format!("seed piece party: {e}") })
        })
        .collect()
    }

    /// Stores a repaired share as the key's active one, marked repaired,
    /// with the key's party map, atomically. A node that knows the key
    /// already takes it only in place of an earlier repaired share (a
    /// repair repeated before its refresh); anything else is refused.
    pub fn insert_repaired_key(
        &self,
        share: &KeyShare,
        parties: &std::collections::BTreeMap<PartyId, NodeId>,
    ) -> Result<(), StoreError> {
        let key_id = share.key_id();
        let tx = rusqlite::Transaction::new_unchecked(&self.db, rusqlite::TransactionBehavior::Immediate)?;
        if knows_key(&tx, key_id)? {
            let repaired: i64 =
                tx.query_row("SELECT count(*) FROM repaired_shares WHERE key_id = ?1", [key_id.as_bytes()], |r| {
                    r.get(0)
                })?;
            let others: i64 =
                tx.query_row("SELECT count(*) FROM tweaks WHERE key_id = ?1", [key_id.as_bytes()], |r| r.get(0))?;
            if repaired == 0 || others != 0 {
                return Err(StoreError::KeyExists(key_id));
            }
            for table in ["shares", "key_parties", "repaired_shares"] {
                tx.execute(&format!("DELETE FROM {table} WHERE key_id = ?1"), [key_id.as_bytes()])?;
            }
        }
        self.insert_active(&tx, share)?;
        tx.execute(
            "INSERT INTO repaired_shares (key_id, epoch) VALUES (?1, ?2)",
            params![key_id.as_bytes(), share.epoch().0],
        )?;
        super::insert_parties(&tx, key_id, parties)?;
        tx.commit()?;
        Ok(())
    }

    /// Whether this node's share of `key_id` at `epoch` came from a repair
    /// (and so may only be refreshed).
    pub fn is_repaired(&self, key_id: KeyId, epoch: Epoch) -> Result<bool, StoreError> {
        Ok(self.db.query_row(
            "SELECT EXISTS (SELECT 1 FROM repaired_shares WHERE key_id = ?1 AND epoch = ?2)",
            params![key_id.as_bytes(), epoch.0],
            |r| r.get(0),
        )?)
    }

    /// Pins `replaced`'s keys over the cluster file's. A request older than
    /// the one pinned for that node is refused (a replay cannot bring back
    /// a replaced key); the same keys again are a no-op.
    pub fn pin_replaced_node(&self, replaced: &ReplacedNode) -> Result<(), StoreError> {
        let tx = rusqlite::Transaction::new_unchecked(&self.db, rusqlite::TransactionBehavior::Immediate)?;
        let stored = read_replaced(&tx, Some(replaced.node))?.pop();
        if let Some(stored) = stored {
            if stored.noise == replaced.noise && stored.identity == replaced.identity {
                return Ok(());
            }
            if stored.created_at >= replaced.created_at {
                return Err(StoreError::ReplacementSuperseded { node: replaced.node, request: stored.request });
            }
        }
        tx.execute(
            "INSERT OR REPLACE INTO node_keys (node, noise, identity, request, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                replaced.node.0,
                replaced.noise.as_slice(),
                replaced.identity.as_slice(),
                replaced.request,
                i64::try_from(replaced.created_at).unwrap_or(i64::MAX)
            ],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Every replaced node's keys pinned here.
    pub fn replaced_nodes(&self) -> Result<Vec<ReplacedNode>, StoreError> {
        read_replaced(&self.db, None)
    }
}

fn read_replaced(db: &rusqlite::Connection, node: Option<NodeId>) -> Result<Vec<ReplacedNode>, StoreError> {
    let mut query = db.prepare(
        "SELECT node, noise, identity, request, created_at FROM node_keys WHERE ?1 IS NULL OR node = ?1 ORDER BY node",
    )?;
    let rows = query.query_map([node.map(|n| n.0)], |r| {
        Ok((r.get::<_, u16>(0)?, r.get::<_, Vec<u8>>(1)?, r.get::<_, Vec<u8>>(2)?, r.get(3)?, r.get::<_, i64>(4)?))
    })?;
    rows.map(|row| {
        let (node, noise, identity, request, created_at) = row?;
        let corrupt = || StoreError::Incompatible(format!("node_keys row of node {node} is malformed"));
        Ok(ReplacedNode {
            node: NodeId(node),
            noise: noise.try_into().map_err(|_| corrupt())?,
            identity: identity.try_into().map_err(|_| corrupt())?,
            request,
            created_at: u64::try_from(created_at).unwrap_or(0),
        })
    })
    .collect()
}
