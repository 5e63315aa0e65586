//! What a node signs for a [`SignPayload`]: it decodes the request itself,
//! computes what is signed itself, and refuses what does not fit the key.
//!
//! - Transactions of every family go through one [`Transaction`] path:
//!   decoded once per job, their signer (a PSBT input's script) checked to be
//!   the key in use, their network or chain id the one named.
//! - Messages are signed only in a chain's domain-separated message format
//!   ([`MessageFormat`]), refused for a key of another type or a path of
//!   another chain (MPCVault's `m/9'/0'/coin'/…`).
//! - A raw digest or raw Ed25519 bytes can be a transaction of any chain, so
//!   they are refused unless the operator started the node with
//!   `--allow-raw-signing` ([`RawSigning::Allowed`]).

use shardvault_chains::{KeyType, MessageFormat, Transaction};
use shardvault_mpc::{DerivationPath, Scheme};
use shardvault_wire::SignPayload;

use crate::runner::NodeError;

/// Whether this node signs raw digests and raw Ed25519 bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RawSigning {
    /// Refused (the default): only transactions and message formats are signed.
    #[default]
    Denied,
    /// Signed as given, by the operator's explicit choice.
    Allowed,
}

/// What this node signs for `payload` with the key `public_key` at `path`.
pub(crate) fn what_to_sign(
    scheme: Scheme,
    public_key: &[u8],
    path: &DerivationPath,
    payload: &SignPayload,
    raw: RawSigning,
) -> Result<Vec<u8>, NodeError> {
    let key = KeyType::from(scheme);
    match (scheme, payload) {
        (
            _,
            SignPayload::BitcoinInput { .. } | SignPayload::EvmTransaction { .. } | SignPayload::Transaction { .. },
        ) => transaction_input(key, public_key, payload),
        (_, SignPayload::Message { message, format }) => message_input(key, public_key, path, message, format),
        (Scheme::EddsaEd25519, SignPayload::RawDigest(_)) => {
            Err(NodeError::Refused("Ed25519 signs bytes, not digests: name raw bytes or a message format".into()))
        }
        (_, SignPayload::RawBytes(_)) if scheme != Scheme::EddsaEd25519 => {
            Err(NodeError::Refused(format!("{scheme} signs 32-byte digests, not raw bytes")))
        }
        (_, SignPayload::RawDigest(digest)) => raw_allowed(raw, "raw digests").map(|()| digest.to_vec()),
        (_, SignPayload::RawBytes(bytes)) => raw_allowed(raw, "raw bytes").map(|()| bytes.clone()),
    }
}

/// Every transaction family, one path: the transaction is decoded once, here,
/// from the job's own bytes, and what is signed comes only with the key check.
fn transaction_input(key: KeyType, public_key: &[u8], payload: &SignPayload) -> Result<Vec<u8>, NodeError> {
    let refused = |e: shardvault_chains::Error| NodeError::Refused(e.to_string());
    let (unsigned, index) = payload.unsigned().ok_or_else(|| NodeError::Refused("not a transaction".into()))?;
    let tx = Transaction::parse(unsigned).map_err(refused)?;
    let index = usize::try_from(index).map_err(|_| NodeError::Refused("input index".into()))?;
    tx.signing_input(index, key, public_key).map_err(refused)
}

fn message_input(
    key: KeyType,
    public_key: &[u8],
    path: &DerivationPath,
    message: &[u8],
    format: &MessageFormat,
) -> Result<Vec<u8>, NodeError> {
    let refused = |e: shardvault_chains::Error| NodeError::Refused(e.to_string());
    format.check(key, path).map_err(refused)?;
    format.signing_input(public_key, message).map_err(refused)
}

fn raw_allowed(raw: RawSigning, what: &str) -> Result<(), NodeError> {
    match raw {
        RawSigning::Allowed => Ok(()),
        RawSigning::Denied => Err(NodeError::Refused(format!(
            "raw signing is off on this node: {what} can be a transaction of any chain and skip every check; \
             sign the transaction, or a message in its chain's format, or start the node with --allow-raw-signing"
        ))),
    }
}
