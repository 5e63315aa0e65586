//! Members, policy, governed requests, approvals, sessions and the audit log.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// The answer to a creating call that needs approvals (202): the request,
/// whose canonical bytes approvers sign.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Pending {
    pub request_id: String,
    /// `pending`.
    pub status: String,
    /// The request's canonical JSON: exactly the bytes an approval signs
    /// (docs/GOVERNANCE.md). Decode it yourself; do not trust a summary.
    pub request: String,
    /// SHA-256 of `request`, hex.
    pub request_hash: String,
}

/// A governed request as the coordinator holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct GovernedRecord {
    /// The canonical JSON approvers sign.
    pub request: String,
    /// SHA-256 of `request`, hex.
    pub request_hash: String,
    /// `create_key`, `sign`, …
    pub operation: String,
    /// The key concerned, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// The creator's member name.
    pub creator: String,
    pub created_at: u64,
    pub expires_at: u64,
    /// Approvals, in the order received.
    pub approvals: Vec<Signoff>,
    /// Rejections (one ends the request).
    pub rejections: Vec<Signoff>,
}

/// One member's approval or rejection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Signoff {
    /// The member's name.
    pub member: String,
    /// Their key's fingerprint.
    pub fingerprint: String,
    /// The SSHSIG, armored (`-----BEGIN SSH SIGNATURE-----`).
    pub signature: String,
    /// Unix seconds when the coordinator received it.
    pub at: u64,
}

/// `POST /v1/requests/{id}/approvals`: an SSHSIG of the request's canonical
/// bytes under the namespace `shardvault-request`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Approve {
    pub signature: String,
}

/// `POST /v1/requests/{id}/rejections`: an SSHSIG of the request's canonical
/// bytes under the namespace `shardvault-reject`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Reject {
    pub signature: String,
}

/// `GET /v1/requests`: the history, newest first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RequestList {
    pub requests: Vec<super::RequestRecord>,
}

/// A member.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MemberEntry {
    pub name: String,
    /// `owner`, `admin`, `member`, `api` or `viewer`.
    pub role: String,
    /// `ssh-ed25519 AAAA… comment`.
    pub public_key: String,
    /// `SHA256:…`.
    pub fingerprint: String,
}

/// `GET /v1/members`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MemberList {
    pub members: Vec<MemberEntry>,
    /// The governance log head they result from (hex).
    pub log_head: String,
}

/// `POST /v1/members`: a request to add a member.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddMember {
    pub name: String,
    pub role: String,
    pub public_key: String,
}

/// `POST /v1/members/remove`: a request to remove a member.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RemoveMember {
    pub name: String,
}

/// `POST /v1/policy`: a request to replace the policy (docs/POLICY.md).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetPolicy {
    #[schema(value_type = Object)]
    pub policy: Value,
}

/// `GET /v1/policy`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PolicyAnswer {
    #[schema(value_type = Object)]
    pub policy: Value,
    /// The governance log head (hex).
    pub log_head: String,
}

/// `GET /v1/governance`: everything a client needs to replay the state itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct GovernanceLog {
    /// The genesis's canonical JSON.
    pub genesis: String,
    /// The organisation id (SHA-256 of the genesis, hex).
    pub organisation: String,
    /// Every entry, oldest first.
    pub entries: Vec<LogEntryBody>,
    /// The head after them (hex).
    pub head: String,
}

/// One governance log entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LogEntryBody {
    pub request: String,
    pub approvals: Vec<String>,
}

/// `POST /v1/sessions`: log in with a member's key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Login {
    /// The signed message: `shardvault-login-v1\n<organisation>\n<unix time>\n<32 hex nonce>\n`.
    pub message: String,
    /// SSHSIG of `message` under the namespace `shardvault-login`.
    pub signature: String,
}

/// A session token for `Authorization: Bearer`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Session {
    pub token: String,
    pub member: String,
    pub role: String,
    pub expires_at: u64,
}

/// One audit log entry: hash-chained.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AuditEntry {
    pub seq: u64,
    pub at: u64,
    /// `created`, `approved`, `rejected`, `executed`, `failed`, `expired`.
    pub event: String,
    pub request_id: String,
    /// The event's details (for approvals and rejections: the member and the signature).
    #[schema(value_type = Object)]
    pub detail: Value,
    /// Hash of the previous entry (hex; 64 zeros for the first).
    pub prev: String,
    /// SHA-256 over `prev` and this entry's canonical fields (docs/GOVERNANCE.md).
    pub hash: String,
}

/// `GET /v1/audit`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AuditLog {
    pub entries: Vec<AuditEntry>,
}
