//! `POST /v1/keys/{id}/transactions`: unsigned transactions in, signed
//! transactions out — for every chain as `transaction` (hex, the chain's
//! wire format) and `id` (the chain's text form), beside the family's own
//! customary fields (`tx_hex`/`txid`/`psbt`, `raw`/`hash`, base64 forms). Every node decodes the transaction and derives what it
//! signs itself; the coordinator decodes it too, to refuse bad input early
//! and to return a review summary and the assembled transaction.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State as Extract};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use base64::Engine;
use shardvault_api::{
    ChainTransaction, ErrorBody, ErrorCode, EvmTransaction, SignedTransaction, TransactionRequest, UtxoTransaction,
};
use shardvault_chains::transaction::Signed;
use shardvault_chains::{Chain, Transaction, Unsigned};
use shardvault_types::PartyId;
use shardvault_wire::SignPayload;

use super::{
    answer, hardened, openapi, parse, requested_signers, requests, resolve, sign_with_retry, Answer, ApiError,
    Approved, Resolved,
};
use crate::jobs::State;

/// A chain's summary of what it signs, as JSON.
fn summary_json<T: serde::Serialize>(summary: &T) -> Result<serde_json::Value, ApiError> {
    serde_json::to_value(summary).map_err(|e| ApiError::bug(format!("transaction summary: {e}")))
}

/// `POST /v1/keys/{id}/transactions`: by the key's chain, a PSBT, an EVM
/// preimage or a single-signer transaction.
/// Sign an unsigned transaction (each node decodes it and derives what it
/// signs) and return it signed, in the chain's wire format, with its id.
#[utoipa::path(post, path = "/v1/keys/{key_id}/transactions", tag = "signing", request_body = TransactionRequest,
    params(openapi::KeyPath, openapi::IdempotencyKey),
    responses(
        (status = 202, description = "a pending request to approve; once approved, its answer is the signed transaction", body = shardvault_api::Pending),
        (status = 400, description = "`invalid_request`", body = ErrorBody),
        (status = 404, description = "`unknown_key`", body = ErrorBody),
        (status = 409, description = "`party_banned`; `idempotency_conflict`, `idempotency_in_progress`, `idempotency_outcome_unknown`", body = ErrorBody),
        (status = 502, description = "`signing_failed`, `node_failure`, `disagreement`", body = ErrorBody),
        (status = 503, description = "`not_enough_signers`; `storage`", body = ErrorBody),
    ))]
pub(super) async fn transaction(
    Extract(state): Extract<Arc<State>>,
    axum::Extension(caller): axum::Extension<crate::auth::Caller>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let operation = || {
        let (_, r, named) = plan(&state, &id, &body)?;
        // The request names the transaction as the nodes will receive it
        // (a PSBT decoded from base64, whole), so each job matches it.
        let bad = |e: shardvault_chains::Error| ApiError::bad(e.to_string());
        let tx = Transaction::parse(named.unsigned(r.chain)).map_err(bad)?;
        let payload = SignPayload::transaction(tx.unsigned(), 0).map_err(bad)?.requested();
        Ok(shardvault_governance::Operation::Sign { key_id: r.key_id, path: r.path, payload })
    };
    requests::propose(&state, &headers, &caller, "POST /v1/keys/{id}/transactions", Some(&id), &body, operation).await
}

fn plan(state: &State, id: &str, body: &Bytes) -> Result<(TransactionRequest, Resolved, Named), ApiError> {
    let request: TransactionRequest = parse(body)?;
    let r = resolve(state, id, &request.target())?;
    let named = Named::from_request(&r, &request)?;
    Ok((request, r, named))
}

/// Signs an approved transaction.
pub(super) async fn run(state: &State, id: &str, body: &Bytes, approved: &Approved) -> Answer {
    let (request, r, named) = plan(state, id, body)?;
    let requested = requested_signers(request.signers.as_deref())?;
    sign_transaction(state, &r, named, requested.as_ref(), approved).await
}

enum Named {
    /// A Bitcoin or Litecoin PSBT (base64 text) on `network`.
    Psbt { network: String, psbt: Vec<u8> },
    /// An EVM preimage for the chain id of `evm_chain` on the request's network.
    Evm { evm_chain: String, chain_id: u64, preimage: Vec<u8> },
    /// A Solana, Aptos, Sui, Tron or Cosmos transaction on `network`.
    SingleSigner { network: String, bytes: Vec<u8> },
}

impl Named {
    fn from_request(r: &Resolved, request: &TransactionRequest) -> Result<Self, ApiError> {
        let network = || request.network.clone().unwrap_or_else(|| r.chain.default_network().to_string());
        match r.chain {
            Chain::Bitcoin | Chain::Litecoin => {
                let psbt = request
                    .psbt
                    .as_deref()
                    .ok_or_else(|| ApiError::bad("bitcoin and litecoin transactions need \"psbt\" (base64)"))?;
                Ok(Named::Psbt { network: network(), psbt: psbt.as_bytes().to_vec() })
            }
            Chain::Ethereum => {
                let text =
                    request.tx_hex.as_deref().ok_or_else(|| ApiError::bad("EVM transactions need \"tx_hex\""))?;
                let preimage =
                    hex::decode(text.trim_start_matches("0x")).map_err(|_| ApiError::bad("tx_hex is not hex"))?;
                // `"chain": "polygon"` names the EVM chain as well as `"evm_chain"` does.
                let named = shardvault_chains::EVM_CHAINS.contains(&request.chain.as_str());
                let evm_chain =
                    request.evm_chain.clone().unwrap_or(if named { request.chain.clone() } else { "ethereum".into() });
                let chain_id = shardvault_chains::evm::chain_id(&evm_chain, request.network.as_deref())
                    .map_err(|e| ApiError::bad(e.to_string()))?;
                Ok(Named::Evm { evm_chain, chain_id, preimage })
            }
            _ => {
                let bytes = match (&request.tx_hex, &request.tx_base64) {
                    (Some(text), None) => {
                        hex::decode(text.trim_start_matches("0x")).map_err(|_| ApiError::bad("tx_hex is not hex"))?
                    }
                    (None, Some(text)) => base64::engine::general_purpose::STANDARD
                        .decode(text)
                        .map_err(|_| ApiError::bad("tx_base64 is not base64"))?,
                    _ => return Err(ApiError::bad("give exactly one of \"tx_hex\" or \"tx_base64\"")),
                };
                Ok(Named::SingleSigner { network: network(), bytes })
            }
        }
    }

    fn unsigned(&self, chain: Chain) -> Unsigned<'_> {
        match self {
            Named::Psbt { network, psbt } => Unsigned::Psbt { chain, network, psbt },
            Named::Evm { chain_id, preimage, .. } => Unsigned::Evm { chain_id: *chain_id, preimage },
            Named::SingleSigner { network, bytes } => Unsigned::SingleSigner { chain, network, bytes },
        }
    }
}

/// Every family, one path: decode and review the transaction, refuse it
/// unless the key may sign it (each node checks again on bytes it decodes
/// itself), run one sign job per signature it takes (a PSBT: one per input;
/// each node computes the input's sighash itself), assemble, answer.
async fn sign_transaction(
    state: &State,
    r: &Resolved,
    named: Named,
    requested: Option<&BTreeSet<PartyId>>,
    approved: &Approved,
) -> Answer {
    let bad = |e: shardvault_chains::Error| ApiError::bad(e.to_string());
    let node_failure = |e: shardvault_chains::Error| ApiError::new(ErrorCode::NodeFailure, e.to_string());
    let tx = Transaction::parse(named.unsigned(r.chain)).map_err(bad)?;
    let summary = tx.summary().map_err(bad)?;
    // Refused here already (each node checks again) when an input or the signer is not this key.
    let public_key = signing_key(state, r, approved).await?;
    let signing_inputs = tx.signing_inputs(r.key_type, &public_key).map_err(bad)?;
    let (mut signatures, mut failed_attempts) = (Vec::new(), Vec::new());
    for index in 0..tx.signature_count() {
        let payload = SignPayload::transaction(tx.unsigned(), index).map_err(bad)?;
        let (_, signature, attempts) = sign_with_retry(state, r, &payload, requested, approved).await?;
        signatures.push(signature);
        failed_attempts.extend(attempts);
    }
    let signers: Vec<Vec<u8>> = signatures.iter().map(|s| s.signers.iter().map(|p| p.get()).collect()).collect();
    let signed = tx.assemble(&public_key, &signatures).map_err(node_failure)?;
    let (key_id, path) = (r.key.key_id.to_string(), r.path.to_string());
    let (transaction, id) = (signed.transaction_hex(), signed.id().to_string());
    let summary = summary_json(&summary)?;
    let signed = match (named, signed, signatures.as_slice(), signers.as_slice(), signing_inputs.as_slice()) {
        (Named::Psbt { network, .. }, Signed::Psbt(signed), _, signers, _) => {
            SignedTransaction::Utxo(UtxoTransaction {
                key_id,
                chain: r.chain.name().into(),
                network,
                path,
                summary,
                transaction,
                id,
                txid: signed.txid,
                tx_hex: signed.tx_hex,
                psbt: signed.psbt_base64,
                signers: signers.to_vec(),
                request_id: None,
            })
        }
        (Named::Evm { evm_chain, chain_id, .. }, Signed::Evm(signed), [signature], [signers], [digest]) => {
            let recovery_id =
                signature.recovery_id.ok_or_else(|| ApiError::new(ErrorCode::NodeFailure, "no recovery id"))?;
            SignedTransaction::Evm(EvmTransaction {
                key_id,
                chain: evm_chain,
                chain_id,
                path,
                summary,
                digest: hex::encode(digest),
                signature: hex::encode(&signature.bytes),
                recovery_id,
                transaction,
                id,
                raw: signed.raw,
                hash: signed.hash,
                signers: signers.clone(),
                failed_attempts,
                request_id: None,
            })
        }
        (Named::SingleSigner { network, .. }, Signed::SingleSigner(signed), _, [signers], [signing_input]) => {
            // Solana and Sui SDKs speak base64: the transaction, and Sui's serialized signature.
            let base64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
            let transaction_base64 = matches!(r.chain, Chain::Solana | Chain::Sui).then(|| base64(&signed.transaction));
            let signature_base64 = (r.chain == Chain::Sui).then(|| base64(&signed.signature));
            SignedTransaction::Other(ChainTransaction {
                key_id,
                chain: r.chain.name().into(),
                network,
                path,
                summary,
                signing_input: hex::encode(signing_input),
                signature: hex::encode(&signed.signature),
                transaction,
                transaction_base64,
                signature_base64,
                id,
                signers: signers.clone(),
                failed_attempts,
                request_id: None,
            })
        }
        _ => return Err(ApiError::bug("the signed transaction is not of the request's family")),
    };
    answer(StatusCode::OK, &signed)
}

/// The public key at the request's path (its hardened prefix derived on the
/// nodes first if new): the key whose address must be the sender.
async fn signing_key(state: &State, r: &Resolved, approved: &Approved) -> Result<Vec<u8>, ApiError> {
    let base = hardened(state, r, Some(approved)).await?;
    let child = shardvault_types::derive_public(r.scheme, &base, r.path.normal_suffix())
        .map_err(|e| ApiError::bad(e.to_string()))?;
    Ok(child.public_key)
}
