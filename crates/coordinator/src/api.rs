//! The REST API. Errors are JSON `{code, message}` with the matching HTTP
//! status; every creating call honours `Idempotency-Key`; bad input is
//! refused before any state changes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State as Extract};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use shardvault_chains::{Chain, KeyType};
use shardvault_mpc::{
    root_extended_public_key, DerivationPath, ExtendedPublicKey, KeyId, PartyId, Scheme, SessionId, Threshold,
};
use shardvault_wire::{Job, JobKind, NodeId, Outcome, SignPayload};

mod addresses;
mod transactions;

use crate::db::{Derived, KeyRecord};
use crate::jobs::{Failure, NodeResult, State};

/// An API error: status, stable code, and a message that says what to do.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into() }
    }
    fn bad(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }
    fn storage(error: rusqlite::Error) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "storage", error.to_string())
    }
    fn body(&self) -> Value {
        json!({ "code": self.code, "message": self.message })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body())).into_response()
    }
}

type Answer = Result<(StatusCode, Value), ApiError>;

pub(crate) fn router(state: Arc<State>) -> Router {
    Router::new()
        .route("/v1/health", get(health))
        .route("/v1/keys", post(create_key).get(list_keys))
        .route("/v1/keys/{key_id}", get(get_key))
        .route("/v1/keys/{key_id}/addresses", post(addresses::address))
        .route("/v1/keys/{key_id}/signatures", post(sign))
        .route("/v1/keys/{key_id}/refresh", post(refresh))
        .route("/v1/keys/{key_id}/transactions", post(transactions::transaction))
        .route("/v1/requests/{id}", get(request))
        .route("/openapi.json", get(|| async { Json(crate::openapi::document()) }))
        .with_state(state)
}

fn parse<T: for<'de> Deserialize<'de>>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad(format!("request body: {e}")))
}

fn key_id(text: &str) -> Result<KeyId, ApiError> {
    text.parse().map_err(|_| ApiError::new(StatusCode::NOT_FOUND, "unknown_key", format!("no key {text:?}")))
}

/// Runs a creating call once per `Idempotency-Key`: a repeat with the same
/// body gets the stored answer; with another body, 409. Each call is also a
/// request record, readable at `/v1/requests/{id}`.
async fn idempotent<F>(state: &State, headers: &HeaderMap, route: &str, body: &Bytes, run: F) -> Response
where
    F: std::future::Future<Output = Answer>,
{
    let idem_key = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let body_hash = hex::encode(Sha256::new().chain_update(route).chain_update(body).finalize());
    // Two requests with one key must not both run. The key is claimed before
    // the stored answer is looked up and released after it is stored, so a
    // second request is told to retry while the first runs, and then replays.
    let _claim = match &idem_key {
        Some(key) => match state.claim(key) {
            Some(claim) => Some(claim),
            None => {
                return ApiError::new(
                    StatusCode::CONFLICT,
                    "idempotency_in_progress",
                    "a request with this Idempotency-Key is still running; retry it shortly for its answer",
                )
                .into_response()
            }
        },
        None => None,
    };
    if let Some(idem_key) = &idem_key {
        match state.db().idempotent(idem_key) {
            Ok(Some((_, hash, status, response))) => {
                if hash != body_hash {
                    return ApiError::new(
                        StatusCode::CONFLICT,
                        "idempotency_conflict",
                        "this Idempotency-Key was used with another request",
                    )
                    .into_response();
                }
                let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
                let value: Value = serde_json::from_str(&response).unwrap_or(Value::Null);
                return (status, [("idempotent-replay", "true")], Json(value)).into_response();
            }
            Ok(None) => {}
            Err(error) => return ApiError::storage(error).into_response(),
        }
    }
    // The id is first seen by the client in the answer, so the record is
    // written once, when the request is done.
    let request_id = SessionId::random().to_string()[..32].to_string();
    let (status, mut value) = match run.await {
        Ok(answer) => answer,
        Err(error) => (error.status, error.body()),
    };
    if let Value::Object(map) = &mut value {
        map.insert("request_id".into(), json!(request_id));
    }
    let text = value.to_string();
    let outcome = if status.is_success() { "succeeded" } else { "failed" };
    let _ = state.db().put_request(&request_id, route, outcome, Some(&text));
    // Transient failures (5xx) are not remembered, so a retry can succeed.
    if let Some(idem_key) = idem_key.filter(|_| !status.is_server_error()) {
        let _ = state.db().remember(&idem_key, route, &body_hash, status.as_u16(), &text);
    }
    (status, Json(value)).into_response()
}

async fn health(Extract(state): Extract<Arc<State>>) -> Json<Value> {
    let connected = state.connected();
    let nodes: Vec<Value> = state
        .config
        .cluster
        .nodes
        .keys()
        .map(|id| json!({ "id": id.0, "connected": connected.contains(id) }))
        .collect();
    Json(json!({ "status": "ok", "nodes": nodes, "connected": connected.len() }))
}

#[derive(Deserialize)]
struct CreateKey {
    scheme: String,
    threshold: u8,
    parties: u8,
    /// Which nodes hold the parties (default: the first connected ones).
    nodes: Option<Vec<u16>>,
}

async fn create_key(Extract(state): Extract<Arc<State>>, headers: HeaderMap, body: Bytes) -> Response {
    idempotent(&state, &headers, "POST /v1/keys", &body, async {
        let request: CreateKey = parse(&body)?;
        let scheme: Scheme = request.scheme.parse().map_err(|e: shardvault_mpc::Error| ApiError::bad(e.to_string()))?;
        let threshold = Threshold::new(request.threshold, request.parties).map_err(|e| ApiError::bad(e.to_string()))?;
        let connected = state.connected();
        let nodes: Vec<NodeId> = match request.nodes {
            Some(nodes) => nodes.into_iter().map(NodeId).collect(),
            None => connected.iter().copied().take(usize::from(threshold.parties())).collect(),
        };
        if nodes.len() != usize::from(threshold.parties()) || nodes.iter().collect::<BTreeSet<_>>().len() != nodes.len()
        {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "not_enough_nodes",
                format!(
                    "a {}-party key needs {} distinct connected nodes; {} are connected",
                    threshold.parties(),
                    threshold.parties(),
                    connected.len()
                ),
            ));
        }
        let participants: BTreeMap<PartyId, NodeId> = threshold.party_ids().zip(nodes).collect();
        let key_id = KeyId::random();
        let job = Job {
            session: SessionId::random(),
            key_id,
            participants: participants.clone(),
            kind: JobKind::CreateKey { scheme, threshold },
        };
        let results = state.run(job).await;
        let public_key = agree(&results, |o| match o {
            Outcome::KeyCreated { public_key } => Some(public_key.clone()),
            _ => None,
        })?;
        let record = KeyRecord {
            key_id: key_id.to_string(),
            scheme: scheme.to_string(),
            threshold: threshold.threshold(),
            parties: threshold.parties(),
            public_key: hex::encode(public_key),
            epoch: 0,
            nodes: participants,
        };
        state.db().put_key(&record).map_err(ApiError::storage)?;
        Ok((StatusCode::CREATED, key_json(&record)))
    })
    .await
}

fn key_json(key: &KeyRecord) -> Value {
    let nodes: BTreeMap<String, u16> = key.nodes.iter().map(|(p, n)| (p.get().to_string(), n.0)).collect();
    json!({ "key_id": key.key_id, "scheme": key.scheme, "threshold": key.threshold, "parties": key.parties,
            "public_key": key.public_key, "epoch": key.epoch, "nodes": nodes })
}

/// Every participant must answer with the same value.
fn agree<T: PartialEq>(
    results: &BTreeMap<NodeId, NodeResult>,
    pick: impl Fn(&Outcome) -> Option<T>,
) -> Result<T, ApiError> {
    let failures: Vec<String> =
        results.iter().filter_map(|(node, r)| r.as_ref().err().map(|e| format!("node {node}: {e}"))).collect();
    if !failures.is_empty() {
        return Err(ApiError::new(StatusCode::BAD_GATEWAY, "node_failure", failures.join("; ")));
    }
    let mut values = results.values().filter_map(|r| r.as_ref().ok().and_then(&pick));
    let first =
        values.next().ok_or_else(|| ApiError::new(StatusCode::BAD_GATEWAY, "node_failure", "no node answered"))?;
    if values.any(|v| v != first) || results.values().any(|r| r.as_ref().ok().and_then(&pick).is_none()) {
        return Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            "disagreement",
            "nodes reported different results; nothing was stored",
        ));
    }
    Ok(first)
}

async fn list_keys(Extract(state): Extract<Arc<State>>) -> Result<Json<Value>, ApiError> {
    let keys = state.db().keys().map_err(ApiError::storage)?;
    Ok(Json(json!({ "keys": keys.iter().map(key_json).collect::<Vec<_>>() })))
}

fn load_key(state: &State, key_id: &KeyId) -> Result<KeyRecord, ApiError> {
    state
        .db()
        .key(key_id)
        .map_err(ApiError::storage)?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "unknown_key", format!("no key {key_id}")))
}

async fn get_key(Extract(state): Extract<Arc<State>>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    Ok(Json(key_json(&load_key(&state, &key_id(&id)?)?)))
}

async fn request(Extract(state): Extract<Arc<State>>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let (kind, status, response) = state
        .db()
        .request(&id)
        .map_err(ApiError::storage)?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "unknown_request", format!("no request {id:?}")))?;
    let response: Value = response.and_then(|r| serde_json::from_str(&r).ok()).unwrap_or(Value::Null);
    Ok(Json(json!({ "request_id": id, "kind": kind, "status": status, "response": response })))
}

#[derive(Deserialize)]
struct Target {
    chain: String,
    index: Option<u32>,
    path: Option<String>,
    /// Cosmos SDK chains: the address's bech32 prefix (default `cosmos`).
    bech32_prefix: Option<String>,
}

struct Resolved {
    key: KeyRecord,
    key_id: KeyId,
    scheme: Scheme,
    chain: Chain,
    key_type: KeyType,
    path: DerivationPath,
}

/// Key, chain and path of a request; MPCVault's all-hardened shape
/// `m/9'/0'/coin'/0'/0'/index'` unless a path is given.
fn resolve(state: &State, id: &str, target: &Target) -> Result<Resolved, ApiError> {
    let key_id = key_id(id)?;
    let key = load_key(state, &key_id)?;
    let scheme: Scheme =
        key.scheme.parse().map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "storage", "bad scheme"))?;
    let chain: Chain = target.chain.parse().map_err(|e: shardvault_chains::Error| ApiError::bad(e.to_string()))?;
    let key_type = KeyType::from(scheme);
    if !chain.accepts(key_type) {
        return Err(ApiError::bad(format!("{chain} has no addresses for {scheme} keys")));
    }
    let path: DerivationPath = match (&target.path, target.index) {
        (Some(path), None) => path.parse().map_err(|e: shardvault_mpc::Error| ApiError::bad(e.to_string()))?,
        (None, Some(index)) if index < (1 << 31) => format!("m/9'/0'/{}'/0'/0'/{index}'", chain.coin_type())
            .parse()
            .map_err(|e: shardvault_mpc::Error| ApiError::bad(e.to_string()))?,
        (None, Some(_)) => return Err(ApiError::bad("index must be below 2^31")),
        _ => return Err(ApiError::bad("give exactly one of \"index\" or \"path\"")),
    };
    Ok(Resolved { key, key_id, scheme, chain, key_type, path })
}

/// The extended public key of `path`'s hardened prefix, deriving it on every
/// node of the key first if this is a new path (all n nodes must be online).
async fn hardened(state: &State, r: &Resolved) -> Result<ExtendedPublicKey, ApiError> {
    let prefix = r.path.hardened_prefix();
    let root = hex::decode(&r.key.public_key)
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "storage", "bad key"))?;
    if prefix.components().is_empty() {
        return Ok(root_extended_public_key(&root));
    }
    if let Some(derived) = state.db().derived(&r.key_id, &prefix.to_string()).map_err(ApiError::storage)? {
        return Ok(ExtendedPublicKey { public_key: derived.public_key, chain_code: derived.chain_code });
    }
    let job = Job {
        session: SessionId::random(),
        key_id: r.key_id,
        participants: r.key.nodes.clone(),
        kind: JobKind::DeriveHardened { path: prefix.clone() },
    };
    let (public_key, chain_code) = agree(&state.run(job).await, |o| match o {
        Outcome::Derived { public_key, chain_code } => Some((public_key.clone(), *chain_code)),
        _ => None,
    })?;
    let derived = Derived { public_key, chain_code };
    state.db().put_derived(&r.key_id, &prefix.to_string(), &derived).map_err(ApiError::storage)?;
    Ok(ExtendedPublicKey { public_key: derived.public_key, chain_code: derived.chain_code })
}

#[derive(Deserialize)]
struct SignBody {
    #[serde(flatten)]
    target: Target,
    message_hex: Option<String>,
    digest_hex: Option<String>,
    /// EIP-712 typed data, as `eth_signTypedData_v4` takes it (EVM chains).
    typed_data: Option<Value>,
    signers: Option<Vec<u8>>,
}

async fn sign(
    Extract(state): Extract<Arc<State>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    idempotent(&state, &headers, "POST /v1/keys/{id}/signatures", &body, async {
        let request: SignBody = parse(&body)?;
        let r = resolve(&state, &id, &request.target)?;
        let encoding = r.chain.message_encoding(r.key_type);
        let (payload, message) = match (&request.message_hex, &request.digest_hex, &request.typed_data) {
            (Some(m), None, None) => {
                let message = hex::decode(m).map_err(|_| ApiError::bad("message_hex is not hex"))?;
                (SignPayload::Message { message: message.clone(), encoding }, message)
            }
            (None, None, Some(typed)) if r.chain == Chain::Ethereum => {
                let message = serde_json::to_vec(typed).map_err(|e| ApiError::bad(e.to_string()))?;
                // Refuse bad typed data here, before any node is involved.
                shardvault_chains::MessageEncoding::Eip712.digest(&message).map_err(|e| ApiError::bad(e.to_string()))?;
                (SignPayload::Message { message: message.clone(), encoding: shardvault_chains::MessageEncoding::Eip712 }, message)
            }
            (None, None, Some(_)) => return Err(ApiError::bad("typed data (EIP-712) is signed on EVM chains only")),
            (None, Some(d), None) => {
                let digest: [u8; 32] = hex::decode(d).ok().and_then(|d| d.try_into().ok()).ok_or_else(|| ApiError::bad("digest_hex must be 32 bytes of hex"))?;
                (SignPayload::RawDigest(digest), Vec::new())
            }
            _ => return Err(ApiError::bad("give exactly one of \"message_hex\", \"digest_hex\" or \"typed_data\"")),
        };
        hardened(&state, &r).await?;
        let requested = requested_signers(request.signers.as_deref())?;
        let (signed, signature, attempts) = sign_with_retry(&state, &r, &payload, requested.as_ref()).await?;
        // What was signed, where it is not the message itself (Ed25519 signs raw messages).
        let digest = (signed != message).then(|| hex::encode(&signed));
        let encoding_name = match &payload {
            SignPayload::RawDigest(_) => "raw-digest",
            SignPayload::Message { encoding, .. } => encoding.name(),
            _ => encoding.name(),
        };
        Ok((
            StatusCode::OK,
            json!({
                "key_id": r.key.key_id, "chain": r.chain, "path": r.path.to_string(),
                "public_key": hex::encode(&signature.public_key), "message": hex::encode(&message),
                "message_encoding": encoding_name, "digest": digest, "signature": hex::encode(&signature.bytes),
                "recovery_id": signature.recovery_id, "signers": signature.signers.iter().map(|p| p.get()).collect::<Vec<_>>(),
                "epoch": r.key.epoch, "failed_attempts": attempts }),
        ))
    })
    .await
}

/// The party ids a request names as signers, if it names any.
fn requested_signers(list: Option<&[u8]>) -> Result<Option<BTreeSet<PartyId>>, ApiError> {
    list.map(|list| list.iter().map(|p| PartyId::new(*p).map_err(|e| ApiError::bad(e.to_string()))).collect())
        .transpose()
}

/// Signs with the requested signers, or with any t healthy ones: an attempt
/// that fails is retried (up to three attempts) without the parties that failed.
async fn sign_with_retry(
    state: &State,
    r: &Resolved,
    payload: &SignPayload,
    requested: Option<&BTreeSet<PartyId>>,
) -> Result<(Vec<u8>, shardvault_mpc::Signature, Vec<Value>), ApiError> {
    let t = usize::from(r.key.threshold);
    let mut excluded: BTreeSet<PartyId> = BTreeSet::new();
    let mut attempts = Vec::new();
    for _ in 0..3 {
        let connected = state.connected();
        let signers: BTreeSet<PartyId> = match requested {
            Some(set) => set.clone(),
            None => r
                .key
                .nodes
                .iter()
                .filter(|(p, n)| connected.contains(n) && !excluded.contains(p))
                .map(|(p, _)| *p)
                .take(t)
                .collect(),
        };
        if signers.len() != t || signers.iter().any(|p| !r.key.nodes.contains_key(p)) {
            let missing: Vec<String> = r
                .key
                .nodes
                .iter()
                .filter(|(_, n)| !connected.contains(n))
                .map(|(p, n)| format!("party {p} (node {n})"))
                .collect();
            let missing = if missing.is_empty() { "none".to_string() } else { missing.join(", ") };
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "not_enough_signers",
                format!("need {t} healthy signers; unavailable: {missing}; attempts: {}", json!(attempts)),
            ));
        }
        let participants: BTreeMap<PartyId, NodeId> =
            signers.iter().filter_map(|p| r.key.nodes.get(p).map(|n| (*p, *n))).collect();
        let kind = JobKind::Sign { path: r.path.clone(), payload: payload.clone() };
        let job = Job { session: SessionId::random(), key_id: r.key_id, participants: participants.clone(), kind };
        let results = state.run(job).await;
        let signed = agree(&results, |o| match o {
            Outcome::Signed { signed, signature } => Some((signed.clone(), signature.clone())),
            _ => None,
        });
        match signed {
            Ok((signed, signature)) => return Ok((signed, signature, attempts)),
            Err(error) => {
                tracing::warn!(key = %r.key_id, signers = ?signers, %error.message, "signing attempt failed");
                attempts.push(
                    json!({ "signers": signers.iter().map(|p| p.get()).collect::<Vec<_>>(), "error": error.message }),
                );
                if requested.is_some() {
                    return Err(error);
                }
                excluded.extend(at_fault(&participants, &results));
            }
        }
    }
    Err(ApiError::new(
        StatusCode::BAD_GATEWAY,
        "signing_failed",
        format!("no signer set succeeded: {}", json!(attempts)),
    ))
}

/// The parties to leave out of the next attempt: those that failed
/// themselves or that others blamed — not those stopped as collateral.
fn at_fault(participants: &BTreeMap<PartyId, NodeId>, results: &BTreeMap<NodeId, NodeResult>) -> BTreeSet<PartyId> {
    let party_of = |node: &NodeId| participants.iter().find_map(|(p, n)| (n == node).then_some(*p));
    let mut guilty = BTreeSet::new();
    for (node, result) in results {
        match result {
            Err(Failure::Own(_)) => guilty.extend(party_of(node)),
            Err(Failure::Blames(culprit, _)) => guilty.extend(party_of(culprit)),
            _ => {}
        }
    }
    guilty
}

async fn refresh(
    Extract(state): Extract<Arc<State>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    idempotent(&state, &headers, "POST /v1/keys/{id}/refresh", &body, async {
        let key_id = key_id(&id)?;
        let mut key = load_key(&state, &key_id)?;
        let job = Job { session: SessionId::random(), key_id, participants: key.nodes.clone(), kind: JobKind::Refresh };
        let epoch = agree(&state.run(job).await, |o| match o {
            Outcome::Refreshed { epoch } => Some(*epoch),
            _ => None,
        })?;
        // Every node holds the new epoch beside the old: now switch all of them.
        let job = Job {
            session: SessionId::random(),
            key_id,
            participants: key.nodes.clone(),
            kind: JobKind::Activate { epoch },
        };
        agree(&state.run(job).await, |o| match o {
            Outcome::Activated { epoch } => Some(*epoch),
            _ => None,
        })?;
        let before = key.epoch;
        key.epoch = epoch.0;
        state.db().put_key(&key).map_err(ApiError::storage)?;
        Ok((StatusCode::OK, json!({ "key_id": key.key_id, "epoch_before": before, "epoch_after": epoch.0 })))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(i: u8) -> PartyId {
        PartyId::new(i).unwrap()
    }

    #[test]
    fn only_the_guilty_are_left_out_of_a_retry() {
        let participants = BTreeMap::from([(p(1), NodeId(1)), (p(2), NodeId(2))]);
        // Node 1 was gone; node 2 was stopped because of it: retry without 1 only.
        let results = BTreeMap::from([
            (NodeId(1), Err(Failure::Own("node 1 is not connected".into()))),
            (NodeId(2), Err(Failure::Stopped)),
        ]);
        assert_eq!(at_fault(&participants, &results), BTreeSet::from([p(1)]));
        // Node 2 blames node 1: leave out 1, keep 2.
        let results = BTreeMap::from([
            (NodeId(1), Err(Failure::Stopped)),
            (NodeId(2), Err(Failure::Blames(NodeId(1), "bad share".into()))),
        ]);
        assert_eq!(at_fault(&participants, &results), BTreeSet::from([p(1)]));
    }
}
