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
use shardvault_chains::tx::UnsignedTx;
use shardvault_chains::Chain;
use shardvault_types::PartyId;
use shardvault_wire::SignPayload;

use super::{
    answer, hardened, idempotent, openapi, parse, requested_signers, resolve, sign_with_retry, Answer, ApiError,
    Resolved,
};
use crate::jobs::State;

/// A chain's summary of what it signs, as JSON.
fn summary_json<T: serde::Serialize>(summary: &T) -> Result<serde_json::Value, ApiError> {
    serde_json::to_value(summary).map_err(|e| ApiError::bug(format!("transaction summary: {e}")))
}

/// Signs an EVM transaction preimage (each node decodes it, checks the chain
/// id and hashes it itself) and returns the raw signed transaction.
async fn evm_transaction(
    state: &State,
    r: &Resolved,
    request: &TransactionRequest,
    requested: Option<&BTreeSet<PartyId>>,
) -> Answer {
    let text = request.tx_hex.as_deref().ok_or_else(|| ApiError::bad("EVM transactions need \"tx_hex\""))?;
    let preimage = hex::decode(text.trim_start_matches("0x")).map_err(|_| ApiError::bad("tx_hex is not hex"))?;
    // `"chain": "polygon"` names the EVM chain as well as `"evm_chain"` does.
    let named = shardvault_chains::EVM_CHAINS.contains(&request.chain.as_str());
    let evm_chain = request.evm_chain.as_deref().unwrap_or(if named { &request.chain } else { "ethereum" });
    let chain_id = shardvault_chains::evm::chain_id(evm_chain, request.network.as_deref())
        .map_err(|e| ApiError::bad(e.to_string()))?;
    let unsigned =
        shardvault_chains::evm::UnsignedEvmTx::parse(&preimage, chain_id).map_err(|e| ApiError::bad(e.to_string()))?;
    let (summary, digest) = (unsigned.summary(), unsigned.digest());
    hardened(state, r).await?;
    let payload = SignPayload::EvmTransaction { preimage, chain_id };
    let (_, signature, attempts) = sign_with_retry(state, r, &payload, requested).await?;
    let recovery_id = signature.recovery_id.ok_or_else(|| ApiError::new(ErrorCode::NodeFailure, "no recovery id"))?;
    let signed = unsigned
        .assemble(&signature.bytes, recovery_id)
        .map_err(|e| ApiError::new(ErrorCode::NodeFailure, e.to_string()))?;
    let signed = EvmTransaction {
        key_id: r.key.key_id.to_string(),
        chain: evm_chain.into(),
        chain_id,
        path: r.path.to_string(),
        summary: summary_json(&summary)?,
        digest: hex::encode(digest),
        signature: hex::encode(&signature.bytes),
        recovery_id,
        transaction: signed.raw.trim_start_matches("0x").into(),
        id: signed.hash.clone(),
        raw: signed.raw,
        hash: signed.hash,
        signers: signature.signers.iter().map(|p| p.get()).collect(),
        failed_attempts: attempts,
        request_id: None,
    };
    answer(StatusCode::OK, &SignedTransaction::Evm(signed))
}

/// `POST /v1/keys/{id}/transactions`: by the key's chain, a PSBT, an EVM
/// preimage or a single-signer transaction.
/// Sign an unsigned transaction (each node decodes it and derives what it
/// signs) and return it signed, in the chain's wire format, with its id.
#[utoipa::path(post, path = "/v1/keys/{key_id}/transactions", tag = "signing", request_body = TransactionRequest,
    params(openapi::KeyPath, openapi::IdempotencyKey),
    responses(
        (status = 200, description = "the signed transaction", body = SignedTransaction),
        (status = 400, description = "`invalid_request`", body = ErrorBody),
        (status = 404, description = "`unknown_key`", body = ErrorBody),
        (status = 409, description = "`party_banned`; `idempotency_conflict`, `idempotency_in_progress`, `idempotency_outcome_unknown`", body = ErrorBody),
        (status = 502, description = "`signing_failed`, `node_failure`, `disagreement`", body = ErrorBody),
        (status = 503, description = "`not_enough_signers`; `storage`", body = ErrorBody),
    ))]
pub(super) async fn transaction(
    Extract(state): Extract<Arc<State>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    idempotent(&state, &headers, "POST /v1/keys/{id}/transactions", &body, async {
        let request: TransactionRequest = parse(&body)?;
        let r = resolve(&state, &id, &request.target())?;
        let requested = requested_signers(request.signers.as_deref())?;
        match r.chain {
            Chain::Bitcoin | Chain::Litecoin => utxo_transaction(&state, &r, &request, requested.as_ref()).await,
            Chain::Ethereum => evm_transaction(&state, &r, &request, requested.as_ref()).await,
            _ => chain_transaction(&state, &r, &request, requested.as_ref()).await,
        }
    })
    .await
}

/// Signs every input of a Bitcoin or Litecoin PSBT with the key at the given
/// path (each node decodes the PSBT and computes the input's sighash itself)
/// and returns the finalised transaction.
async fn utxo_transaction(
    state: &State,
    r: &Resolved,
    request: &TransactionRequest,
    requested: Option<&BTreeSet<PartyId>>,
) -> Answer {
    let psbt_text = request
        .psbt
        .as_deref()
        .ok_or_else(|| ApiError::bad("bitcoin and litecoin transactions need \"psbt\" (base64)"))?;
    let network_name = request.network.clone().unwrap_or_else(|| r.chain.default_network().into());
    let network = shardvault_chains::psbt::network(r.chain, &network_name).map_err(|e| ApiError::bad(e.to_string()))?;
    let mut unsigned = shardvault_chains::psbt::UnsignedPsbt::parse(psbt_text.as_bytes(), network)
        .map_err(|e| ApiError::bad(e.to_string()))?;
    let summary = unsigned.summary().map_err(|e| ApiError::bad(e.to_string()))?;
    // Refused here already (each node checks again) when an input is not this key's.
    let public_key = signing_key(state, r).await?;
    for index in 0..unsigned.input_count() {
        let input = unsigned.input_digest(index).map_err(|e| ApiError::bad(e.to_string()))?;
        input.check_key(r.key_type, &public_key).map_err(|e| ApiError::bad(e.to_string()))?;
    }
    let psbt = unsigned.to_bytes();
    let mut signed_by = Vec::new();
    for index in 0..unsigned.input_count() {
        let input = u32::try_from(index).map_err(|_| ApiError::bad("too many inputs"))?;
        let payload = SignPayload::BitcoinInput {
            chain: r.chain,
            psbt: psbt.clone(),
            index: input,
            network: network_name.clone(),
        };
        let (_, signature, _) = sign_with_retry(state, r, &payload, requested).await?;
        unsigned
            .add_signature(index, &signature.bytes, &signature.public_key)
            .map_err(|e| ApiError::new(ErrorCode::NodeFailure, e.to_string()))?;
        signed_by.push(signature.signers.iter().map(|p| p.get()).collect::<Vec<_>>());
    }
    let signed = unsigned.finalize().map_err(|e| ApiError::new(ErrorCode::NodeFailure, e.to_string()))?;
    let signed = UtxoTransaction {
        key_id: r.key.key_id.to_string(),
        chain: r.chain.name().into(),
        network: network_name,
        path: r.path.to_string(),
        summary: summary_json(&summary)?,
        transaction: signed.tx_hex.clone(),
        id: signed.txid.clone(),
        txid: signed.txid,
        tx_hex: signed.tx_hex,
        psbt: signed.psbt_base64,
        signers: signed_by,
        request_id: None,
    };
    answer(StatusCode::OK, &SignedTransaction::Utxo(signed))
}

/// Signs a Solana, Aptos, Sui, Tron or Cosmos transaction and returns it
/// in the chain's wire format with its id.
async fn chain_transaction(
    state: &State,
    r: &Resolved,
    request: &TransactionRequest,
    requested: Option<&BTreeSet<PartyId>>,
) -> Answer {
    let unsigned = match (&request.tx_hex, &request.tx_base64) {
        (Some(text), None) => {
            hex::decode(text.trim_start_matches("0x")).map_err(|_| ApiError::bad("tx_hex is not hex"))?
        }
        (None, Some(text)) => base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|_| ApiError::bad("tx_base64 is not base64"))?,
        _ => return Err(ApiError::bad("give exactly one of \"tx_hex\" or \"tx_base64\"")),
    };
    let network = request.network.clone().unwrap_or_else(|| r.chain.default_network().to_string());
    let tx = UnsignedTx::parse(r.chain, Some(&network), &unsigned).map_err(|e| ApiError::bad(e.to_string()))?;
    let summary = tx.summary();
    // Refused here already (each node checks again) when the signer is not this key.
    let public_key = signing_key(state, r).await?;
    tx.check_key(r.key_type, &public_key).map_err(|e| ApiError::bad(e.to_string()))?;
    let payload = SignPayload::Transaction { chain: r.chain, network: network.clone(), unsigned };
    let (_, signature, attempts) = sign_with_retry(state, r, &payload, requested).await?;
    let signed = tx
        .assemble(&public_key, &signature.bytes, signature.recovery_id)
        .map_err(|e| ApiError::new(ErrorCode::NodeFailure, e.to_string()))?;
    // Solana and Sui SDKs speak base64: the transaction, and Sui's serialized signature.
    let base64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let transaction_base64 = matches!(r.chain, Chain::Solana | Chain::Sui).then(|| base64(&signed.transaction));
    let signature_base64 = (r.chain == Chain::Sui).then(|| base64(&signed.signature));
    let signed = ChainTransaction {
        key_id: r.key.key_id.to_string(),
        chain: r.chain.name().into(),
        network,
        path: r.path.to_string(),
        summary: summary_json(&summary)?,
        signing_input: hex::encode(tx.signing_input()),
        signature: hex::encode(&signed.signature),
        transaction: hex::encode(&signed.transaction),
        transaction_base64,
        signature_base64,
        id: signed.id,
        signers: signature.signers.iter().map(|p| p.get()).collect(),
        failed_attempts: attempts,
        request_id: None,
    };
    answer(StatusCode::OK, &SignedTransaction::Other(signed))
}

/// The public key at the request's path (its hardened prefix derived on the
/// nodes first if new): the key whose address must be the sender.
async fn signing_key(state: &State, r: &Resolved) -> Result<Vec<u8>, ApiError> {
    let base = hardened(state, r).await?;
    let child = shardvault_types::derive_public(r.scheme, &base, r.path.normal_suffix())
        .map_err(|e| ApiError::bad(e.to_string()))?;
    Ok(child.public_key)
}
