//! The `shardvault.demo.v1` report: what `simulate` (and, networked, `demo`)
//! prints. Every byte string is lowercase hex.

use serde::{Deserialize, Serialize};

/// The schema identifier.
pub const SCHEMA: &str = "shardvault.demo.v1";

/// The whole report.
#[derive(Debug, Serialize, Deserialize)]
pub struct Report {
    /// Always [`SCHEMA`].
    pub schema: String,
    /// How the parties talked: `in-process` (all parties in this process).
    pub transport: String,
    /// One entry per key created.
    pub keys: Vec<KeyReport>,
    /// `demo` only: the organisation, its members and policy, and governed
    /// requests with their approvals (one refused by the nodes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub governance: Option<GovernanceReport>,
}

/// The governed part of the demo.
#[derive(Debug, Serialize, Deserialize)]
pub struct GovernanceReport {
    /// The organisation id (SHA-256 of its genesis).
    pub organisation: String,
    /// Members after the demo's changes.
    pub members: Vec<MemberReport>,
    /// The policy's rule names, in order.
    pub policy_rules: Vec<String>,
    /// Every request the governed part made, in order.
    pub requests: Vec<RequestReport>,
}

/// A member.
#[derive(Debug, Serialize, Deserialize)]
pub struct MemberReport {
    pub name: String,
    pub role: String,
    pub fingerprint: String,
}

/// One governed request and how it ended.
#[derive(Debug, Serialize, Deserialize)]
pub struct RequestReport {
    pub request_id: String,
    /// `add_member`, `set_policy`, `sign`, …
    pub operation: String,
    /// What it was for, in words.
    pub purpose: String,
    /// `succeeded`, `failed`, `pending`, `rejected`.
    pub status: String,
    /// Who approved it (member names, in order).
    pub approvals: Vec<String>,
    /// For a failed request: why (the nodes' refusals).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// For a signed transaction: its id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction_id: Option<String>,
}

/// One key's lifecycle.
#[derive(Debug, Serialize, Deserialize)]
pub struct KeyReport {
    /// The key's id.
    pub key_id: String,
    /// `ecdsa-secp256k1`, `eddsa-ed25519` or `schnorr-secp256k1`.
    pub scheme: String,
    /// t.
    pub threshold: u8,
    /// n.
    pub parties: u8,
    /// Root public key: SEC1 compressed (secp256k1) or 32 bytes (ed25519).
    pub public_key: String,
    /// Derived keys and their addresses.
    pub derivations: Vec<DerivationReport>,
    /// Signatures, before and after the refresh.
    pub signatures: Vec<SignatureReport>,
    /// The refresh.
    pub refresh: RefreshReport,
    /// One sample transaction per chain family, signed through the cluster
    /// (`demo` only; `simulate` has no transaction path).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub transactions: Vec<TransactionReport>,
}

/// One signed transaction.
#[derive(Debug, Serialize, Deserialize)]
pub struct TransactionReport {
    /// Chain name.
    pub chain: String,
    /// Network it is for (Cosmos: chain id).
    pub network: String,
    /// Path of the signing key.
    pub path: String,
    /// The sender: the key's address at `path`.
    pub address: String,
    /// The unsigned transaction as given (Bitcoin: binary PSBT).
    pub unsigned: String,
    /// What the nodes reviewed.
    pub summary: serde_json::Value,
    /// What the key signed (absent for Bitcoin, which signs one sighash per input).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub signing_input: Option<String>,
    /// The signature in the chain's encoding (absent for Bitcoin: it is in the witness).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub signature: Option<String>,
    /// The signed transaction in the chain's wire format.
    pub transaction: String,
    /// Its id (txid, hash, signature or digest, in the chain's text form).
    pub id: String,
}

/// One derived address.
#[derive(Debug, Serialize, Deserialize)]
pub struct DerivationReport {
    /// MPCVault-shaped path.
    pub path: String,
    /// Chain name.
    pub chain: String,
    /// The child public key (same encoding as the root's).
    pub public_key: String,
    /// The chain's address for it.
    pub address: String,
}

/// One signature.
#[derive(Debug, Serialize, Deserialize)]
pub struct SignatureReport {
    /// Path of the signing key.
    pub path: String,
    /// Chain whose message format was used.
    pub chain: String,
    /// The key the signature verifies under (BIP340: 32-byte x-only output key).
    pub public_key: String,
    /// The message.
    pub message: String,
    /// The chain's message format that made the message into what was signed
    /// (`eip191-personal-sign`, `bip322-simple`, `solana-offchain-message`, `cosmos-adr036`, …).
    pub message_encoding: String,
    /// What the key signed, where it is not the message itself: the digest
    /// (ECDSA, BIP340, Sui) or the serialized Solana off-chain message; absent
    /// for Aptos, which signs the AIP-62 full message (the message here).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub digest: Option<String>,
    /// 64 bytes.
    pub signature: String,
    /// ECDSA recovery id (0/1).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub recovery_id: Option<u8>,
    /// The t parties that signed.
    pub signers: Vec<u8>,
    /// Epoch of the shares that signed.
    pub epoch: u32,
}

/// Share refresh.
#[derive(Debug, Serialize, Deserialize)]
pub struct RefreshReport {
    /// Epoch before.
    pub epoch_before: u32,
    /// Epoch after.
    pub epoch_after: u32,
}
