//! The coordinator's REST contract, in one place: what each call takes,
//! what it answers and how it fails. The coordinator's handlers parse and
//! answer with these types, `shardvault-client` sends and reads them, and the
//! OpenAPI document served at `/openapi.json` is generated from them.
//!
//! Request bodies refuse unknown fields (a misspelled `"signer"` is a 400,
//! not silently ignored) and take integers only where the schema says
//! `integer` (`13.0` is refused). Answers are open: a client ignores fields
//! it does not know, so the server may add some.
#![forbid(unsafe_code)]

mod backup;
mod governance;
pub use backup::*;
pub use governance::*;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::ToSchema;

/// The header that makes a creating call safe to repeat.
pub const IDEMPOTENCY_KEY: &str = "Idempotency-Key";
/// The header on an answer replayed for a repeated Idempotency-Key.
pub const IDEMPOTENT_REPLAY: &str = "idempotent-replay";

fn strings<'a>(values: impl IntoIterator<Item = &'a str>, description: &str) -> ObjectBuilder {
    let values: Vec<&str> = values.into_iter().collect();
    ObjectBuilder::new().schema_type(Type::String).enum_values(Some(values)).description(Some(description))
}

fn scheme_schema() -> ObjectBuilder {
    strings(shardvault_types::Scheme::ALL.iter().map(|s| s.as_str()), "signature scheme")
}

/// Every chain name a request takes: the chains, and the EVM chains by name.
fn chain_schema() -> ObjectBuilder {
    let names: std::collections::BTreeSet<&str> =
        shardvault_chains::Chain::ALL.iter().map(|c| c.name()).chain(shardvault_chains::EVM_CHAINS).collect();
    strings(names, "chain (the EVM chains may also be named here)")
}

fn format_schema() -> ObjectBuilder {
    strings(
        shardvault_chains::MessageFormat::NAMES,
        "message format (default: the chain's): EIP-191/EIP-712 (EVM), Bitcoin/Litecoin signed message (ECDSA), \
         BIP-322 simple (Bitcoin Taproot), TIP-191 (Tron), Solana off-chain message v0, Aptos AIP-62, Sui personal \
         message, Cosmos ADR-036 (with bech32_prefix); aliases eip191, eip712, bip322, tip191, solana-offchain, \
         aip62, adr036",
    )
}

// ---------------------------------------------------------------- requests

/// `POST /v1/keys`: a distributed key generation on `parties` nodes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    #[schema(schema_with = scheme_schema)]
    pub scheme: String,
    /// How many parties must sign (t).
    #[schema(minimum = 2, maximum = 16)]
    pub threshold: u8,
    /// How many parties hold shares (n); at most the cluster's node count.
    #[schema(minimum = 2, maximum = 16)]
    pub parties: u8,
    /// Which nodes hold the parties, in party order (default: the first connected ones).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<Vec<u16>>,
}

/// Which key path a request is about: an MPCVault index or an explicit path.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Target {
    pub chain: String,
    pub index: Option<u32>,
    pub path: Option<String>,
    pub bech32_prefix: Option<String>,
}

/// `POST /v1/keys/{key_id}/addresses`: the address of a path, attested by the nodes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddressRequest {
    #[schema(schema_with = chain_schema)]
    pub chain: String,
    /// MPCVault path `m/9'/0'/coin'/0'/0'/index'` (give this or `path`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(maximum = 2147483647)]
    pub index: Option<u32>,
    /// An explicit path that starts hardened (give this or `index`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "m/9'/0'/60'/0'/0/1")]
    pub path: Option<String>,
    /// Cosmos SDK chains: the address's bech32 prefix (default `cosmos`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "osmo")]
    pub bech32_prefix: Option<String>,
}

impl AddressRequest {
    pub fn target(&self) -> Target {
        Target {
            chain: self.chain.clone(),
            index: self.index,
            path: self.path.clone(),
            bech32_prefix: self.bech32_prefix.clone(),
        }
    }
}

impl From<Target> for AddressRequest {
    fn from(t: Target) -> Self {
        AddressRequest { chain: t.chain, index: t.index, path: t.path, bech32_prefix: t.bech32_prefix }
    }
}

/// `POST /v1/keys/{key_id}/signatures`: exactly one of `message_hex`,
/// `typed_data`, `digest_hex` or `raw_hex`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignRequest {
    #[schema(schema_with = chain_schema)]
    pub chain: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(maximum = 2147483647)]
    pub index: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bech32_prefix: Option<String>,
    /// A message, signed only in a chain's domain-separated message format
    /// (`format`); each node checks the format against the key type and the
    /// path's coin type and builds what is signed itself. Aptos: the AIP-62
    /// full message, or the message with `nonce`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_hex: Option<String>,
    /// The format of `message_hex`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = format_schema)]
    pub format: Option<String>,
    /// Aptos: the AIP-62 nonce; the full message is built from the UTF-8 message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// EIP-712 typed data as `eth_signTypedData_v4` takes it (EVM chains).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub typed_data: Option<Value>,
    /// RAW SIGNING: a 32-byte digest (ECDSA, BIP340), signed as given. It can
    /// be any chain's transaction, so nodes refuse it unless started with
    /// --allow-raw-signing, and a policy denies it by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest_hex: Option<String>,
    /// RAW SIGNING: bytes an Ed25519 key signs as given (refused like `digest_hex`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_hex: Option<String>,
    /// Party ids to sign with (exactly t); default: any t healthy ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signers: Option<Vec<u8>>,
}

impl SignRequest {
    /// A request about `target` that carries nothing to sign yet.
    pub fn to(target: Target) -> Self {
        SignRequest {
            chain: target.chain,
            index: target.index,
            path: target.path,
            bech32_prefix: target.bech32_prefix,
            ..SignRequest::default()
        }
    }

    pub fn target(&self) -> Target {
        Target {
            chain: self.chain.clone(),
            index: self.index,
            path: self.path.clone(),
            bech32_prefix: self.bech32_prefix.clone(),
        }
    }
}

/// `POST /v1/keys/{key_id}/transactions`: an unsigned transaction, signed and assembled.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransactionRequest {
    #[schema(schema_with = chain_schema)]
    pub chain: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(maximum = 2147483647)]
    pub index: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bech32_prefix: Option<String>,
    /// bitcoin|testnet|signet|regtest (Bitcoin), mainnet|testnet|regtest
    /// (Litecoin), mainnet|sepolia|… (EVM), mainnet|testnet|… elsewhere, the
    /// chain id for Cosmos (default cosmoshub-4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// Bitcoin and Litecoin: the unsigned PSBT, base64; every input carries witness_utxo.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub psbt: Option<String>,
    /// EVM signing preimage (EIP-1559 `0x02‖rlp(…)` or legacy EIP-155),
    /// Solana message, Aptos RawTransaction, Sui TransactionData, Tron
    /// raw_data or Cosmos SignDoc, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tx_hex: Option<String>,
    /// The same, base64 (as the Solana and Sui SDKs print it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tx_base64: Option<String>,
    /// EVM: the chain that gives the chain id, when `chain` is ethereum.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evm_chain: Option<String>,
    /// Party ids to sign with (exactly t); default: any t healthy ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signers: Option<Vec<u8>>,
}

impl TransactionRequest {
    /// A request about `target` that carries no transaction yet.
    pub fn to(target: Target) -> Self {
        TransactionRequest {
            chain: target.chain,
            index: target.index,
            path: target.path,
            bech32_prefix: target.bech32_prefix,
            ..TransactionRequest::default()
        }
    }

    pub fn target(&self) -> Target {
        Target {
            chain: self.chain.clone(),
            index: self.index,
            path: self.path.clone(),
            bech32_prefix: self.bech32_prefix.clone(),
        }
    }
}

/// The body of a call that takes none (`refresh`, `refresh/finish`): empty or `{}`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Empty {}

impl<'de> Deserialize<'de> for Empty {
    /// Only an object without fields: serde's derive would take `[]` too.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let fields = BTreeMap::<String, serde::de::IgnoredAny>::deserialize(deserializer)?;
        match fields.keys().next() {
            None => Ok(Empty {}),
            Some(field) => Err(serde::de::Error::custom(format!("unknown field `{field}`: this call takes no body"))),
        }
    }
}

// ----------------------------------------------------------------- answers

/// `GET /v1/health`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    pub status: String,
    /// Every node of the cluster file.
    pub nodes: Vec<NodeHealth>,
    /// How many nodes are connected.
    pub connected: u32,
    /// The organisation id (SHA-256 of its genesis, hex): what a login names.
    #[serde(default)]
    pub organisation: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NodeHealth {
    pub id: u16,
    pub connected: bool,
}

/// A key as the coordinator knows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Key {
    pub key_id: String,
    #[schema(schema_with = scheme_schema)]
    pub scheme: String,
    pub threshold: u8,
    pub parties: u8,
    /// The group public key, hex.
    pub public_key: String,
    /// The share epoch signing uses.
    pub epoch: u32,
    /// Which node holds which party (party id → node id).
    pub nodes: BTreeMap<String, u16>,
    /// The request that created it (on `POST /v1/keys` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// `GET /v1/keys`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct KeyList {
    pub keys: Vec<Key>,
}

/// `GET /v1/keys/{key_id}`: the key, its bans and its last refresh.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct KeyDetails {
    pub key_id: String,
    #[schema(schema_with = scheme_schema)]
    pub scheme: String,
    pub threshold: u8,
    pub parties: u8,
    pub public_key: String,
    pub epoch: u32,
    pub nodes: BTreeMap<String, u16>,
    /// Parties that nodes banned for this key until its next refresh.
    pub banned: Vec<Ban>,
    pub last_refresh: Option<LastRefresh>,
    /// How the last seed escrow of the key ended, which a node replacement
    /// needs: `complete`, `incomplete` (run `shardvault key escrow` again
    /// while every node is up), `none` (never ran: run it), or
    /// `not_applicable` (an n-of-n key: only its backups bring back a node).
    pub seed_escrow: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Ban {
    pub party: u8,
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LastRefresh {
    pub epoch: u32,
    /// `started`, `failed`, `certified`, `activated` or `abandoned`.
    pub state: String,
}

/// The fields of the attested statement, and the node signatures over it.
/// Clients must check the signatures against the identity keys of their
/// pinned cluster file (at least max(2, threshold) distinct nodes) and
/// recompute the address from `public_key`; `shardvault address` does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AttestedAddress {
    pub key_id: String,
    #[schema(schema_with = scheme_schema)]
    pub scheme: String,
    pub threshold: u8,
    pub parties: u8,
    pub chain: String,
    pub bech32_prefix: Option<String>,
    pub path: String,
    /// The child public key, hex.
    pub public_key: String,
    pub address: String,
    /// `address-attestation`.
    pub attestation_domain: String,
    pub attestation_version: u8,
    pub attestations: Vec<Attestation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Attestation {
    pub node: u16,
    /// Ed25519 under the node's identity key, hex (64 bytes).
    pub signature: String,
}

/// A signing attempt that failed and was retried without the parties at fault.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FailedAttempt {
    pub signers: Vec<u8>,
    pub error: String,
}

/// `POST /v1/keys/{key_id}/signatures`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SignatureAnswer {
    pub key_id: String,
    pub chain: String,
    pub path: String,
    /// The child public key that signed, hex.
    pub public_key: String,
    /// The message, hex (empty for raw signing).
    pub message: String,
    /// The message format, `raw-digest` or `raw-bytes`.
    pub message_encoding: String,
    /// What the key signed, hex, where it is not the message itself.
    pub digest: Option<String>,
    pub signature: String,
    pub recovery_id: Option<u8>,
    pub signers: Vec<u8>,
    pub epoch: u32,
    pub failed_attempts: Vec<FailedAttempt>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// `POST /v1/keys/{key_id}/transactions`, by chain family. Every shape has
/// `transaction` (hex, the chain's wire format) and `id` (the chain's text form).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum SignedTransaction {
    Utxo(UtxoTransaction),
    Evm(EvmTransaction),
    Other(ChainTransaction),
}

impl SignedTransaction {
    /// The signed transaction, hex.
    pub fn transaction(&self) -> &str {
        match self {
            SignedTransaction::Utxo(t) => &t.transaction,
            SignedTransaction::Evm(t) => &t.transaction,
            SignedTransaction::Other(t) => &t.transaction,
        }
    }

    /// The transaction's id in the chain's text form.
    pub fn id(&self) -> &str {
        match self {
            SignedTransaction::Utxo(t) => &t.id,
            SignedTransaction::Evm(t) => &t.id,
            SignedTransaction::Other(t) => &t.id,
        }
    }

    /// What the nodes were asked to sign, for review.
    pub fn summary(&self) -> &Value {
        match self {
            SignedTransaction::Utxo(t) => &t.summary,
            SignedTransaction::Evm(t) => &t.summary,
            SignedTransaction::Other(t) => &t.summary,
        }
    }
}

/// Bitcoin and Litecoin: the finalised PSBT and transaction.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct UtxoTransaction {
    pub key_id: String,
    pub chain: String,
    pub network: String,
    pub path: String,
    #[schema(value_type = Object)]
    pub summary: Value,
    pub txid: String,
    pub tx_hex: String,
    /// The finalised PSBT, base64.
    pub psbt: String,
    pub transaction: String,
    pub id: String,
    /// The signers of each input.
    pub signers: Vec<Vec<u8>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// EVM: the raw signed transaction and its hash.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EvmTransaction {
    pub key_id: String,
    pub chain: String,
    pub chain_id: u64,
    pub path: String,
    #[schema(value_type = Object)]
    pub summary: Value,
    pub digest: String,
    pub signature: String,
    pub recovery_id: u8,
    /// `0x`-prefixed.
    pub raw: String,
    pub hash: String,
    pub transaction: String,
    pub id: String,
    pub signers: Vec<u8>,
    pub failed_attempts: Vec<FailedAttempt>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// Solana, Aptos, Sui, Tron and Cosmos.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ChainTransaction {
    pub key_id: String,
    pub chain: String,
    pub network: String,
    pub path: String,
    #[schema(value_type = Object)]
    pub summary: Value,
    pub signing_input: String,
    pub signature: String,
    pub transaction: String,
    /// Solana and Sui: the transaction, base64.
    pub transaction_base64: Option<String>,
    /// Sui: the serialized signature, base64.
    pub signature_base64: Option<String>,
    pub id: String,
    pub signers: Vec<u8>,
    pub failed_attempts: Vec<FailedAttempt>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// `POST /v1/keys/{key_id}/refresh`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Refreshed {
    pub key_id: String,
    pub epoch_before: u32,
    pub epoch_after: u32,
    /// Parties whose bans the refresh cleared.
    pub bans_cleared: Vec<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// `POST /v1/nodes/{node}/replace`: the lost node's id (in the path) gets
/// these keys, from the new machine's `shardvault node-identity --dir DIR`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplaceNode {
    /// The new machine's Noise static public key (64 hex digits).
    pub noise_key: String,
    /// Its identity public key (64 hex digits).
    pub identity_key: String,
}

/// One key a node replacement rebuilt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct KeyRepaired {
    pub key_id: String,
    /// The repaired party.
    pub party: u8,
    /// The key's epoch when this run began (the one its share was rebuilt
    /// at, unless a run before got further), and its epoch after.
    pub epoch_before: u32,
    pub epoch_after: u32,
    /// Hardened paths the new node derived again (each the same child key on every node).
    pub paths: Vec<String>,
}

/// The answer to an approved `POST /v1/nodes/{node}/replace`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NodeReplaced {
    pub node: u16,
    /// Every key the node is a party of, rebuilt on the new machine.
    pub keys: Vec<KeyRepaired>,
    /// The n-of-n keys it is a party of: no n − 1 parties can rebuild a
    /// share of those, so the node's share comes back only from a backup.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_repairable: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// `POST /v1/keys/{key_id}/escrow`: every party holds a piece of every
/// other party's chain seed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SeedsEscrowed {
    pub key_id: String,
    /// The parties whose nodes took part (all of the key's).
    pub parties: Vec<u8>,
}

/// `POST /v1/keys/{key_id}/refresh/finish`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RefreshFinished {
    pub key_id: String,
    /// The epoch activated, or (otherwise) the key's active epoch.
    pub epoch: u32,
    /// `activated`, `abandoned` or `nothing to finish`.
    pub finished: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// `GET /v1/requests/{id}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RequestRecord {
    pub request_id: String,
    /// The route, e.g. `POST /v1/keys/{id}/signatures`.
    pub kind: String,
    /// `pending` (waiting for approvals), `running`, `succeeded`, `failed`,
    /// `rejected`, `expired` or `unknown`.
    pub status: String,
    /// The answer as it was sent, once stored (for a pending request: the
    /// pending answer).
    #[schema(value_type = Option<Object>)]
    pub response: Value,
    /// The governed request, for calls that make one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub governed: Option<GovernedRecord>,
}

// ------------------------------------------------------------------ errors

/// The stable error codes. The HTTP status of each:
///
/// | code | status |
/// |---|---|
/// | `invalid_request` | 400 |
/// | `too_many_parties` | 400 |
/// | `invalid_approval` | 400 |
/// | `unauthenticated` | 401 |
/// | `cross_site`, `forbidden`, `not_approved` | 403 |
/// | `request_closed` | 409 |
/// | `unknown_key`, `unknown_request` | 404 |
/// | `idempotency_conflict`, `idempotency_in_progress`, `idempotency_outcome_unknown`, `party_banned`, `refresh_unfinished`, `epochs_exhausted` | 409 |
/// | `body_too_large` | 413 |
/// | `unsupported_media_type` | 415 |
/// | `unknown_host` | 421 |
/// | `bug` | 500 |
/// | `storage` | 500, or 503 when the request could not be recorded and did not run |
/// | `node_failure`, `disagreement`, `bad_certificate`, `signing_failed`, `activation_incomplete` | 502 |
/// | `not_enough_nodes`, `not_enough_signers`, `not_enough_attestations` | 503 |
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    InvalidRequest,
    TooManyParties,
    CrossSite,
    UnknownKey,
    UnknownRequest,
    IdempotencyConflict,
    IdempotencyInProgress,
    IdempotencyOutcomeUnknown,
    PartyBanned,
    RefreshUnfinished,
    EpochsExhausted,
    BodyTooLarge,
    UnsupportedMediaType,
    UnknownHost,
    Bug,
    Storage,
    NodeFailure,
    Disagreement,
    BadCertificate,
    SigningFailed,
    ActivationIncomplete,
    NotEnoughNodes,
    NotEnoughSigners,
    NotEnoughAttestations,
    Unauthenticated,
    Forbidden,
    NotApproved,
    RequestClosed,
    InvalidApproval,
}

impl ErrorCode {
    /// Every code, in the table's order.
    pub const ALL: [ErrorCode; 29] = [
        ErrorCode::InvalidRequest,
        ErrorCode::TooManyParties,
        ErrorCode::CrossSite,
        ErrorCode::UnknownKey,
        ErrorCode::UnknownRequest,
        ErrorCode::IdempotencyConflict,
        ErrorCode::IdempotencyInProgress,
        ErrorCode::IdempotencyOutcomeUnknown,
        ErrorCode::PartyBanned,
        ErrorCode::RefreshUnfinished,
        ErrorCode::EpochsExhausted,
        ErrorCode::BodyTooLarge,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::UnknownHost,
        ErrorCode::Bug,
        ErrorCode::Storage,
        ErrorCode::NodeFailure,
        ErrorCode::Disagreement,
        ErrorCode::BadCertificate,
        ErrorCode::SigningFailed,
        ErrorCode::ActivationIncomplete,
        ErrorCode::NotEnoughNodes,
        ErrorCode::NotEnoughSigners,
        ErrorCode::NotEnoughAttestations,
        ErrorCode::Unauthenticated,
        ErrorCode::Forbidden,
        ErrorCode::NotApproved,
        ErrorCode::RequestClosed,
        ErrorCode::InvalidApproval,
    ];

    /// The code as it appears in an answer.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::TooManyParties => "too_many_parties",
            ErrorCode::CrossSite => "cross_site",
            ErrorCode::UnknownKey => "unknown_key",
            ErrorCode::UnknownRequest => "unknown_request",
            ErrorCode::IdempotencyConflict => "idempotency_conflict",
            ErrorCode::IdempotencyInProgress => "idempotency_in_progress",
            ErrorCode::IdempotencyOutcomeUnknown => "idempotency_outcome_unknown",
            ErrorCode::PartyBanned => "party_banned",
            ErrorCode::RefreshUnfinished => "refresh_unfinished",
            ErrorCode::EpochsExhausted => "epochs_exhausted",
            ErrorCode::BodyTooLarge => "body_too_large",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::UnknownHost => "unknown_host",
            ErrorCode::Bug => "bug",
            ErrorCode::Storage => "storage",
            ErrorCode::NodeFailure => "node_failure",
            ErrorCode::Disagreement => "disagreement",
            ErrorCode::BadCertificate => "bad_certificate",
            ErrorCode::SigningFailed => "signing_failed",
            ErrorCode::ActivationIncomplete => "activation_incomplete",
            ErrorCode::NotEnoughNodes => "not_enough_nodes",
            ErrorCode::NotEnoughSigners => "not_enough_signers",
            ErrorCode::NotEnoughAttestations => "not_enough_attestations",
            ErrorCode::Unauthenticated => "unauthenticated",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotApproved => "not_approved",
            ErrorCode::RequestClosed => "request_closed",
            ErrorCode::InvalidApproval => "invalid_approval",
        }
    }

    /// The HTTP status the code is answered with (`storage` is 503 instead
    /// when the request could not be recorded and so did not run).
    pub const fn status(self) -> u16 {
        match self {
            ErrorCode::InvalidRequest | ErrorCode::TooManyParties | ErrorCode::InvalidApproval => 400,
            ErrorCode::Unauthenticated => 401,
            ErrorCode::CrossSite | ErrorCode::Forbidden | ErrorCode::NotApproved => 403,
            ErrorCode::UnknownKey | ErrorCode::UnknownRequest => 404,
            ErrorCode::IdempotencyConflict
            | ErrorCode::IdempotencyInProgress
            | ErrorCode::IdempotencyOutcomeUnknown
            | ErrorCode::PartyBanned
            | ErrorCode::RefreshUnfinished
            | ErrorCode::EpochsExhausted
            | ErrorCode::RequestClosed => 409,
            ErrorCode::BodyTooLarge => 413,
            ErrorCode::UnsupportedMediaType => 415,
            ErrorCode::UnknownHost => 421,
            ErrorCode::Bug | ErrorCode::Storage => 500,
            ErrorCode::NodeFailure
            | ErrorCode::Disagreement
            | ErrorCode::BadCertificate
            | ErrorCode::SigningFailed
            | ErrorCode::ActivationIncomplete => 502,
            ErrorCode::NotEnoughNodes | ErrorCode::NotEnoughSigners | ErrorCode::NotEnoughAttestations => 503,
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Every error answer: a stable code and a message that says what to do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub code: ErrorCode,
    pub message: String,
    /// The request record, for calls that make one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_keep_their_strings() {
        for code in ErrorCode::ALL {
            let text = serde_json::to_value(code).unwrap();
            assert_eq!(text, Value::String(code.as_str().into()));
            assert_eq!(serde_json::from_value::<ErrorCode>(text).unwrap(), code);
        }
    }

    #[test]
    fn bodies_refuse_unknown_fields_and_fractional_numbers() {
        let refused = serde_json::from_str::<SignRequest>(r#"{"chain":"ethereum","index":0,"signer":[1,2]}"#);
        assert!(refused.unwrap_err().to_string().contains("unknown field `signer`"));
        let refused =
            serde_json::from_str::<CreateKey>(r#"{"scheme":"ecdsa-secp256k1","threshold":13.0,"parties":16}"#);
        assert!(refused.is_err());
        assert!(serde_json::from_str::<Empty>(r#"{"x":1}"#).is_err());
        assert!(serde_json::from_str::<Empty>("[]").is_err());
        assert!(serde_json::from_str::<Empty>("{}").is_ok());
    }

    #[test]
    fn optional_fields_are_left_out_of_requests() {
        let body =
            serde_json::to_value(AddressRequest { chain: "bitcoin".into(), index: Some(0), ..Default::default() });
        assert_eq!(body.unwrap(), serde_json::json!({ "chain": "bitcoin", "index": 0 }));
    }
}
