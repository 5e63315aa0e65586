//! `shardvault audit verify`: the coordinator's audit log checked here — the
//! hash chain (every entry's hash recomputed with the coordinator's own
//! formula, each `prev` the previous hash, sequence numbers contiguous from
//! one) and every approval and rejection's signature over the request's
//! canonical bytes by a key the locally replayed log made a member.
//!
//! What it cannot see: entries cut off the end of the log (nothing after
//! them is left to break), or a log rewritten from scratch by whoever holds
//! the coordinator's database. Keep the last verified head somewhere else to
//! catch either.

use std::collections::BTreeMap;

use serde_json::{json, Value};
use shardvault_api::AuditEntry;
use shardvault_governance::{audit_hash, request_hash_hex, Approval, Member, AUDIT_START, NAMESPACE, REJECT_NAMESPACE};

/// One problem found in the log.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Failure {
    /// The entry's position (1-based) in the log as served.
    pub position: usize,
    pub seq: u64,
    pub problem: String,
}

/// Everything `audit verify` found.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Report {
    pub entries: usize,
    /// The last entry's hash (keep it to compare with a later run).
    pub head: Option<String>,
    pub signatures_verified: usize,
    pub failures: Vec<Failure>,
}

impl Report {
    pub fn to_json(&self) -> Value {
        json!({
            "entries": self.entries,
            "head": self.head,
            "signatures_verified": self.signatures_verified,
            "ok": self.failures.is_empty(),
            "failures": self.failures,
        })
    }
}

/// Checks the chain: entry k has seq k, its `prev` is entry k−1's hash
/// ([`AUDIT_START`] for the first), and its hash is recomputed from its fields.
pub fn verify_chain(entries: &[AuditEntry]) -> Vec<Failure> {
    let mut failures = Vec::new();
    let mut prev = AUDIT_START.to_string();
    for (index, entry) in entries.iter().enumerate() {
        let position = index + 1;
        let mut fail = |problem: String| failures.push(Failure { position, seq: entry.seq, problem });
        if entry.seq != position as u64 {
            fail(format!(
                "sequence number {} where {position} was due: an entry was dropped, added or moved",
                entry.seq
            ));
        }
        if entry.prev != prev {
            fail(format!("prev is {}, the previous entry's hash is {prev}: the chain is broken here", entry.prev));
        }
        let hash =
            audit_hash(&entry.prev, entry.seq, entry.at, &entry.event, &entry.request_id, &entry.detail.to_string());
        if hash != entry.hash {
            fail(format!("the entry hashes to {hash}, not the {} it states: it was edited", entry.hash));
        }
        prev = entry.hash.clone();
    }
    failures
}

/// Checks each `approved` and `rejected` entry's `detail.signature` over
/// its request's canonical bytes (`request_bytes(id)`, as the CLI fetched
/// and checked them), made by one of `members` (everyone the replayed log
/// ever admitted) whose name is `detail.member`; and each `created` entry's
/// `detail.request_hash`. Returns how many signatures verified.
pub fn verify_signoffs(
    entries: &[AuditEntry],
    request_bytes: &mut dyn FnMut(&str) -> Result<String, String>,
    members: &[Member],
) -> (usize, Vec<Failure>) {
    let mut verified = 0;
    let mut failures = Vec::new();
    let mut cache: BTreeMap<String, Result<String, String>> = BTreeMap::new();
    for (index, entry) in entries.iter().enumerate() {
        let namespace = match entry.event.as_str() {
            "approved" => Some(NAMESPACE),
            "rejected" => Some(REJECT_NAMESPACE),
            "created" => None,
            _ => continue,
        };
        let bytes = cache.entry(entry.request_id.clone()).or_insert_with(|| request_bytes(&entry.request_id)).clone();
        let outcome = bytes.and_then(|bytes| match namespace {
            Some(namespace) => check_signoff(entry, &bytes, namespace, members).map(|()| 1),
            None => check_created(entry, &bytes).map(|()| 0),
        });
        match outcome {
            Ok(n) => verified += n,
            Err(problem) => failures.push(Failure { position: index + 1, seq: entry.seq, problem }),
        }
    }
    (verified, failures)
}

fn check_signoff(entry: &AuditEntry, bytes: &str, namespace: &str, members: &[Member]) -> Result<(), String> {
    let field = |name: &str| entry.detail.get(name).and_then(Value::as_str);
    let event = &entry.event;
    let armored = field("signature").ok_or_else(|| format!("the {event} entry carries no signature"))?;
    let approval: Approval = armored.parse().map_err(|e| format!("the {event} entry's signature: {e}"))?;
    let key = approval.claimed_signer().map_err(|e| e.to_string())?;
    let member = members
        .iter()
        .find(|m| m.public_key == key)
        .ok_or_else(|| format!("signed by {}, which the governance log never made a member", key.fingerprint()))?;
    member
        .public_key
        .verify_in(namespace, bytes.as_bytes(), &approval)
        .map_err(|e| format!("the signature does not {} request {}: {e}", verb(event), entry.request_id))?;
    if field("member") != Some(member.name.as_str()) {
        return Err(format!("signed by {}, but the entry names {:?}", member.name, field("member")));
    }
    Ok(())
}

fn verb(event: &str) -> &'static str {
    match event {
        "rejected" => "reject",
        _ => "approve",
    }
}

fn check_created(entry: &AuditEntry, bytes: &str) -> Result<(), String> {
    let stated = entry.detail.get("request_hash").and_then(Value::as_str);
    let hash = request_hash_hex(bytes.as_bytes());
    if stated != Some(hash.as_str()) {
        return Err(format!("created with request hash {stated:?}, but the request's bytes hash to {hash}"));
    }
    Ok(())
}

/// The canonical bytes of a request record, checked (see [`crate::review::check`]).
pub fn checked_bytes(record: &shardvault_api::RequestRecord, id: &str) -> Result<String, String> {
    let checked = crate::review::check(record, id).map_err(|e| format!("{e:#}"))?;
    Ok(checked.governed.request)
}

/// The whole check.
pub fn verify(
    entries: &[AuditEntry],
    request_bytes: &mut dyn FnMut(&str) -> Result<String, String>,
    members: &[Member],
) -> Report {
    let mut failures = verify_chain(entries);
    let (signatures_verified, more) = verify_signoffs(entries, request_bytes, members);
    failures.extend(more);
    failures.sort_by_key(|f| f.position);
    Report { entries: entries.len(), head: entries.last().map(|e| e.hash.clone()), signatures_verified, failures }
}

#[cfg(test)]
mod tests {
    use shardvault_governance::{Identity, Operation, OrganisationId, Request, Role};

    use super::*;

    /// A chain as the coordinator writes it (`db::audit`).
    fn chain(events: &[(&str, &str, Value)]) -> Vec<AuditEntry> {
        let mut entries: Vec<AuditEntry> = Vec::new();
        for (index, (event, request_id, detail)) in events.iter().enumerate() {
            let seq = index as u64 + 1;
            let prev = entries.last().map_or_else(|| AUDIT_START.to_string(), |e| e.hash.clone());
            let at = 1_767_225_600 + seq;
            // Stored as text and read back, as the coordinator does.
            let detail: Value = serde_json::from_str(&detail.to_string()).unwrap();
            let hash = audit_hash(&prev, seq, at, event, request_id, &detail.to_string());
            entries.push(AuditEntry {
                seq,
                at,
                event: event.to_string(),
                request_id: request_id.to_string(),
                detail,
                prev,
                hash,
            });
        }
        entries
    }

    fn sample() -> Vec<AuditEntry> {
        chain(&[
            ("created", "r1", json!({ "operation": "sign", "creator": "alice" })),
            ("approved", "r1", json!({ "member": "alice", "signature": "x" })),
            ("executed", "r1", json!({ "id": "0xabc" })),
            ("created", "r2", json!({ "operation": "refresh" })),
        ])
    }

    #[test]
    fn an_untouched_chain_verifies() {
        assert_eq!(verify_chain(&sample()), Vec::new());
        assert_eq!(verify_chain(&[]), Vec::new());
    }

    #[test]
    fn an_edited_detail_is_detected() {
        let mut entries = sample();
        entries[1].detail["member"] = json!("mallory");
        let failures = verify_chain(&entries);
        assert_eq!(failures.len(), 1, "{failures:?}");
        assert_eq!(failures[0].seq, 2);
        assert!(failures[0].problem.contains("edited"));
        // Edited and rehashed: the next entry's prev no longer matches.
        let mut entries = sample();
        entries[1].detail["member"] = json!("mallory");
        let e = &entries[1];
        entries[1].hash = audit_hash(&e.prev, e.seq, e.at, &e.event, &e.request_id, &e.detail.to_string());
        let failures = verify_chain(&entries);
        assert_eq!(failures.iter().map(|f| f.seq).collect::<Vec<_>>(), vec![3]);
        assert!(failures[0].problem.contains("broken"));
    }

    #[test]
    fn a_dropped_entry_is_detected() {
        let mut entries = sample();
        entries.remove(1);
        let failures = verify_chain(&entries);
        assert!(!failures.is_empty());
        assert!(failures.iter().all(|f| f.position >= 2));
        assert!(failures.iter().any(|f| f.problem.contains("sequence")));
        assert!(failures.iter().any(|f| f.problem.contains("broken")));
        // The first one dropped: its successor does not start the chain.
        let mut entries = sample();
        entries.remove(0);
        assert!(!verify_chain(&entries).is_empty());
    }

    #[test]
    fn reordered_entries_are_detected() {
        let mut entries = sample();
        entries.swap(1, 2);
        let failures = verify_chain(&entries);
        assert!(failures.iter().any(|f| f.position == 2), "{failures:?}");
        assert!(failures.iter().any(|f| f.position == 3), "{failures:?}");
        // Renumbered too: the hashes still break.
        let mut entries = sample();
        entries.swap(1, 2);
        entries[1].seq = 2;
        entries[2].seq = 3;
        assert!(!verify_chain(&entries).is_empty());
    }

    #[test]
    fn signatures_are_checked_against_the_requests_bytes_and_the_members() {
        let alice = Identity::generate("alice").unwrap();
        let mallory = Identity::generate("mallory").unwrap();
        let members =
            vec![Member { name: "alice".parse().unwrap(), role: Role::Owner, public_key: alice.member_key().unwrap() }];
        let request = Request::new(
            OrganisationId([7; 32]),
            &alice.member_key().unwrap(),
            Operation::Refresh { key_id: "0123456789abcdef0123456789abcdef".parse().unwrap() },
            1_767_225_600,
            3600,
        )
        .unwrap();
        let text = String::from_utf8(request.to_bytes().unwrap()).unwrap();
        let id = request.id.to_string();
        let approve = alice.approve(text.as_bytes()).unwrap().to_armored().unwrap();
        let reject = alice.sign_in(REJECT_NAMESPACE, text.as_bytes()).unwrap().to_armored().unwrap();
        let forged = mallory.approve(text.as_bytes()).unwrap().to_armored().unwrap();
        let entries = chain(&[
            ("created", &id, json!({ "request_hash": request_hash_hex(text.as_bytes()) })),
            ("approved", &id, json!({ "member": "alice", "signature": approve })),
            ("rejected", &id, json!({ "member": "alice", "signature": reject })),
            ("approved", &id, json!({ "member": "alice", "signature": forged })),
            ("approved", &id, json!({ "member": "bob", "signature": approve })),
            ("rejected", &id, json!({ "member": "alice", "signature": approve })),
        ]);
        let mut bytes = |asked: &str| if asked == id { Ok(text.clone()) } else { Err("unknown".into()) };
        let report = verify(&entries, &mut bytes, &members);
        assert_eq!(report.signatures_verified, 2);
        let bad: Vec<u64> = report.failures.iter().map(|f| f.seq).collect();
        assert_eq!(bad, vec![4, 5, 6], "{:?}", report.failures);
        assert!(report.failures[0].problem.contains("never made a member"));
        assert!(report.failures[1].problem.contains("names"));
        // A created entry whose hash is not the request's.
        let entries = chain(&[("created", &id, json!({ "request_hash": "00" }))]);
        assert_eq!(verify(&entries, &mut bytes, &members).failures.len(), 1);
    }
}
