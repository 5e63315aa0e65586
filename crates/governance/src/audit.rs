//! The coordinator's audit log is a hash chain: each entry's hash covers
//! the previous entry's hash and this entry's fields, so an entry edited,
//! dropped or reordered breaks every hash after it (docs/GOVERNANCE.md,
//! "Audit log").

use sha2::{Digest, Sha256};

/// The `prev` of the first entry: 64 zeros.
pub const AUDIT_START: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// `SHA-256(prev ‖ u64be(seq) ‖ u64be(at) ‖ u64be(len) event ‖ u64be(len) request_id ‖ u64be(len) detail)`, hex;
/// `prev` is the previous entry's hash as 64 hex characters, `detail` the JSON text as stored.
pub fn audit_hash(prev: &str, seq: u64, at: u64, event: &str, request_id: &str, detail: &str) -> String {
    let mut hash = Sha256::new();
    hash.update(prev.as_bytes());
    hash.update(seq.to_be_bytes());
    hash.update(at.to_be_bytes());
    for field in [event, request_id, detail] {
        hash.update(u64::try_from(field.len()).unwrap_or(u64::MAX).to_be_bytes());
        hash.update(field.as_bytes());
    }
    hex::encode(hash.finalize())
}
