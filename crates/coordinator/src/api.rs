//! The REST API. Requests and answers are `shardvault-api`'s types, and the
//! OpenAPI document at `/openapi.json` is generated from them and from the
//! `#[utoipa::path]` of each handler. Errors are JSON `{code, message}` with
//! the code's HTTP status; every creating call honours `Idempotency-Key`; bad
//! input is refused before any state changes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State as Extract};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use shardvault_api::{
    Ban, CreateKey, ErrorBody, ErrorCode, FailedAttempt, Health, Key, KeyDetails, KeyList, LastRefresh, NodeHealth,
    SignRequest, SignatureAnswer, Target,
};
use shardvault_chains::{Chain, KeyType};
use shardvault_types::{derive_public, DerivationPath, ExtendedPublicKey, KeyId, PartyId, SessionId, Threshold};
use shardvault_wire::{Job, JobKind, NodeId, Outcome, SignPayload};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

mod addresses;
mod backups;
mod openapi;
pub(crate) mod refresh;
mod replace;
mod requests;
mod transactions;

pub(crate) use requests::Approved;

use crate::db::{Derived, KeyRecord};
use crate::jobs::{Failure, NodeResult, State};

/// An API error: a stable code, its status, and a message that says what to do.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: ErrorCode,
    message: String,
}

impl ApiError {
    /// An error with the code's status.
    pub(crate) fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        let status = StatusCode::from_u16(code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        ApiError { status, code, message: message.into() }
    }
    /// What went wrong, for logs.
    pub(crate) fn message(&self) -> &str {
        &self.message
    }
    /// The same error, saying what was being done.
    pub(crate) fn context(self, doing: &str) -> Self {
        ApiError { message: format!("{doing}: {}", self.message), ..self }
    }
    /// The same code with another status (`storage` when nothing ran: 503).
    fn with_status(self, status: StatusCode) -> Self {
        ApiError { status, ..self }
    }
    pub(crate) fn bad(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, message)
    }
    pub(crate) fn storage(error: rusqlite::Error) -> Self {
        Self::new(ErrorCode::Storage, error.to_string())
    }
    pub(crate) fn bug(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Bug, message)
    }
    /// The stable code.
    pub fn code(&self) -> ErrorCode {
        self.code
    }
    pub(crate) fn status(&self) -> StatusCode {
        self.status
    }
    pub(crate) fn body(&self) -> Value {
        // An `ErrorBody` is a code and a string: it always serializes.
        json!(ErrorBody { code: self.code, message: self.message.clone(), request_id: None })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body())).into_response()
    }
}

type Answer = Result<(StatusCode, Value), ApiError>;

/// An answer of type `T`, as the JSON `idempotent` stores and replays.
fn answer<T: Serialize>(status: StatusCode, value: &T) -> Answer {
    serde_json::to_value(value).map(|value| (status, value)).map_err(|e| ApiError::bug(format!("answer: {e}")))
}

/// The API's routes and the OpenAPI document generated from them.
fn routes() -> OpenApiRouter<Arc<State>> {
    OpenApiRouter::with_openapi(openapi::base())
        .routes(routes!(health))
        .routes(routes!(create_key, list_keys))
        .routes(routes!(get_key))
        .routes(routes!(addresses::address))
        .routes(routes!(sign))
        .routes(routes!(refresh))
        .routes(routes!(finish_refresh))
        .routes(routes!(transactions::transaction))
        .routes(routes!(requests::list))
        .routes(routes!(requests::show))
        .routes(routes!(requests::approve))
        .routes(routes!(requests::reject))
        .routes(routes!(requests::members, requests::add_member))
        .routes(routes!(requests::remove_member))
        .routes(routes!(requests::policy, requests::set_policy))
        .routes(routes!(requests::governance))
        .routes(routes!(requests::audit))
        .routes(routes!(backups::export, backups::list))
        .routes(routes!(replace::replace))
        .routes(routes!(replace::escrow_seeds))
        .routes(routes!(crate::auth::login))
}

/// The OpenAPI document, as served at `/openapi.json`.
pub fn document() -> Value {
    openapi::finish(routes().into_openapi())
}

pub(crate) fn router(state: Arc<State>) -> Router {
    let (router, document) = routes().split_for_parts();
    let document = Arc::new(openapi::finish(document));
    // A route layer: it runs only for a route and method that exist, so an
    // unknown path is 404 and a wrong method 405 before credentials matter.
    router
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), crate::auth::authenticate))
        .route("/openapi.json", get(move || async move { Json(document.as_ref().clone()) }))
        .layer(axum::middleware::from_fn(with_target))
        .with_state(state)
}

tokio::task_local! {
    /// The request being served, `METHOD /path` (with the key id, not the
    /// route template): what an Idempotency-Key is bound to.
    static TARGET: String;
    /// The id of the request record being made (a governed request takes it).
    pub(crate) static REQUEST_ID: String;
}

async fn with_target(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let target = format!("{} {}", request.method(), request.uri().path());
    TARGET.scope(target, next.run(request)).await
}

/// A request body: a JSON object of exactly `T`'s fields (serde alone would
/// also take an array of the fields in order).
pub(crate) fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::bad("request body: expected a JSON object"));
    }
    serde_json::from_slice(body).map_err(|e| ApiError::bad(format!("request body: {e}")))
}

/// The body of a call that takes none: nothing, or `{}`.
fn no_body(body: &Bytes) -> Result<(), ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    parse::<shardvault_api::Empty>(body).map(|_| ())
}

fn key_id(text: &str) -> Result<KeyId, ApiError> {
    text.parse().map_err(|_| ApiError::new(ErrorCode::UnknownKey, format!("no key {text:?}")))
}

/// Runs a creating call once per `Idempotency-Key`: a repeat with the same
/// method, path and body gets the stored answer; with anything else, 409.
/// Each call is also a request record, readable at `/v1/requests/{id}`.
///
/// The record and the key's claim are written before the request runs: if
/// that fails, nothing runs (503). If the answer cannot be stored afterwards,
/// the key stays claimed with its outcome unknown, and a retry is told to look
/// at the request record instead of signing (or creating a key) a second time.
async fn idempotent<F>(state: &State, headers: &HeaderMap, route: &str, body: &Bytes, run: F) -> Response
where
    F: std::future::Future<Output = Answer>,
{
    let Ok(target) = TARGET.try_with(String::clone) else {
        // The router always sets it; refuse rather than bind a key to nothing.
        return ApiError::bug("request target not recorded").into_response();
    };
    let idem_key = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let body_hash = request_hash(&target, body);
    // Two requests with one key must not both run. The key is claimed in
    // memory before the stored record is looked up and released after the
    // answer is stored, so a second request is told to retry while the first runs.
    let _claim = match &idem_key {
        Some(key) => match state.claim(key) {
            Some(claim) => Some(claim),
            None => {
                return ApiError::new(
                    ErrorCode::IdempotencyInProgress,
                    "a request with this Idempotency-Key is still running; retry it shortly for its answer",
                )
                .into_response()
            }
        },
        None => None,
    };
    if let Some(idem_key) = &idem_key {
        match state.db().idempotent(idem_key) {
            Ok(Some(record)) => return replay(record, &body_hash),
            Ok(None) => {}
            Err(error) => return unrecorded(error).into_response(),
        }
    }
    let request_id = SessionId::random().to_string()[..32].to_string();
    let claim = idem_key.as_deref().map(|key| (key, target.as_str(), body_hash.as_str()));
    if let Err(error) = state.db().begin_request(&request_id, route, claim) {
        return unrecorded(error).into_response();
    }
    let (status, mut value) = match REQUEST_ID.scope(request_id.clone(), run).await {
        Ok(answer) => answer,
        Err(error) => (error.status, error.body()),
    };
    if let Value::Object(map) = &mut value {
        map.insert("request_id".into(), json!(request_id));
    }
    let text = value.to_string();
    let outcome = match status {
        StatusCode::ACCEPTED => "pending",
        _ if status.is_success() => "succeeded",
        _ => "failed",
    };
    // Transient failures (5xx) release the key, so a retry can succeed.
    let answer = idem_key.as_deref().map(|key| (key, (!status.is_server_error()).then_some(status.as_u16())));
    if let Err(error) = state.db().finish_request(&request_id, outcome, &text, answer) {
        tracing::error!(%request_id, %error, "the request ran but its answer could not be stored; its \
            Idempotency-Key now answers 409 idempotency_outcome_unknown");
    }
    (status, Json(value)).into_response()
}

/// What an Idempotency-Key is bound to: the request target and the body.
fn request_hash(target: &str, body: &[u8]) -> String {
    let length = u64::try_from(target.len()).unwrap_or(u64::MAX).to_be_bytes();
    hex::encode(Sha256::new().chain_update(length).chain_update(target).chain_update(body).finalize())
}

/// The answer to a repeated Idempotency-Key.
fn replay(record: crate::db::Idempotency, body_hash: &str) -> Response {
    if record.body_hash != body_hash {
        return ApiError::new(
            ErrorCode::IdempotencyConflict,
            "this Idempotency-Key was used with another request (another method, path or body)",
        )
        .into_response();
    }
    let Some((status, response)) = record.answer else {
        let check = match &record.request_id {
            Some(request) => format!("check GET /v1/requests/{request} (and the key's signatures)"),
            None => "check the key's signatures".into(),
        };
        return ApiError::new(
            ErrorCode::IdempotencyOutcomeUnknown,
            format!(
                "a request with this Idempotency-Key ran but its outcome was not stored; it may have succeeded: \
                 {check} before sending it again under a new key"
            ),
        )
        .into_response();
    };
    // A stored answer that does not read back is a storage error, never a
    // 200 with an empty body that a client could take for success.
    let (Ok(status), Ok(value)) = (StatusCode::from_u16(status), serde_json::from_str::<Value>(&response)) else {
        return ApiError::new(
            ErrorCode::Storage,
            "the stored answer for this Idempotency-Key does not read back; check the key's state before retrying",
        )
        .into_response();
    };
    (status, [("idempotent-replay", "true")], Json(value)).into_response()
}

/// The request could not be recorded before running: refuse it.
fn unrecorded(error: rusqlite::Error) -> ApiError {
    ApiError::new(
        ErrorCode::Storage,
        format!("the coordinator cannot record this request, so it did not run it: {error}; retry later"),
    )
    .with_status(StatusCode::SERVICE_UNAVAILABLE)
}

#[utoipa::path(get, path = "/v1/health", tag = "cluster", responses((status = 200, description = "the cluster's nodes and which are connected", body = Health)))]
async fn health(Extract(state): Extract<Arc<State>>) -> Json<Health> {
    let connected = state.connected();
    let nodes = state
        .config
        .cluster
        .nodes
        .keys()
        .map(|id| NodeHealth { id: id.0, connected: connected.contains(id) })
        .collect();
    let count = u32::try_from(connected.len()).unwrap_or(u32::MAX);
    let organisation = state.organisation().state().organisation().to_string();
    Json(Health { status: "ok".into(), nodes, connected: count, organisation })
}

/// Create a key (returns when every node agrees on the public key).
#[utoipa::path(post, path = "/v1/keys", tag = "keys", request_body = CreateKey,
    params(openapi::IdempotencyKey),
    responses(
        (status = 202, description = "a pending request to approve (`POST /v1/requests/{id}/approvals`); once approved, its answer is the key", body = shardvault_api::Pending),
        (status = 400, description = "`invalid_request`; `too_many_parties` when the cluster has fewer nodes than `parties`", body = ErrorBody),
        (status = 409, description = "`idempotency_conflict`, `idempotency_in_progress`, `idempotency_outcome_unknown`", body = ErrorBody),
        (status = 502, description = "`node_failure`, `disagreement`", body = ErrorBody),
        (status = 503, description = "`not_enough_nodes` connected; `storage`", body = ErrorBody),
    ))]
async fn create_key(
    Extract(state): Extract<Arc<State>>,
    axum::Extension(caller): axum::Extension<crate::auth::Caller>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let operation = || {
        let plan = plan_key(&state, &body)?;
        let (scheme, threshold) = (plan.scheme, plan.threshold);
        Ok(shardvault_governance::Operation::CreateKey { key_id: KeyId::random(), scheme, threshold })
    };
    requests::propose(&state, &headers, &caller, "POST /v1/keys", None, &body, operation).await
}

/// A key to create, checked against the cluster.
struct KeyPlan {
    scheme: shardvault_types::Scheme,
    threshold: Threshold,
    participants: BTreeMap<PartyId, NodeId>,
}

fn plan_key(state: &State, body: &Bytes) -> Result<KeyPlan, ApiError> {
    let request: CreateKey = parse(body)?;
    let scheme: shardvault_types::Scheme =
        request.scheme.parse().map_err(|e: shardvault_types::Error| ApiError::bad(e.to_string()))?;
    let threshold = Threshold::new(request.threshold, request.parties).map_err(|e| ApiError::bad(e.to_string()))?;
    let parties = usize::from(threshold.parties());
    let cluster = &state.config.cluster.nodes;
    if parties > cluster.len() {
        return Err(ApiError::new(
            ErrorCode::TooManyParties,
            format!(
                "a {parties}-party key needs {parties} nodes, but the cluster has {}; ask for at most {} parties",
                cluster.len(),
                cluster.len()
            ),
        ));
    }
    let connected = state.connected();
    let nodes: Vec<NodeId> = match request.nodes {
        Some(nodes) => {
            let nodes: Vec<NodeId> = nodes.into_iter().map(NodeId).collect();
            if let Some(stranger) = nodes.iter().find(|n| !cluster.contains_key(n)) {
                return Err(ApiError::bad(format!("node {stranger} is not in the cluster")));
            }
            if nodes.len() != parties || nodes.iter().collect::<BTreeSet<_>>().len() != nodes.len() {
                return Err(ApiError::bad(format!("\"nodes\" must name {parties} distinct nodes, one per party")));
            }
            nodes
        }
        None => connected.iter().copied().take(parties).collect(),
    };
    if nodes.len() != parties {
        return Err(ApiError::new(
            ErrorCode::NotEnoughNodes,
            format!(
                "a {parties}-party key needs {parties} distinct connected nodes; {} are connected",
                connected.len()
            ),
        ));
    }
    let participants: BTreeMap<PartyId, NodeId> = threshold.party_ids().zip(nodes).collect();
    Ok(KeyPlan { scheme, threshold, participants })
}

/// Creates the approved key (returns when every node agrees on the public key).
pub(crate) async fn run_create_key(state: &State, body: &Bytes, approved: &Approved) -> Answer {
    let plan = plan_key(state, body)?;
    let shardvault_governance::Operation::CreateKey { key_id, scheme, threshold } = approved.request.operation else {
        return Err(ApiError::bug("a key creation ran for another operation"));
    };
    if (scheme, threshold) != (plan.scheme, plan.threshold) {
        return Err(ApiError::bug("the approved key is not the one asked for"));
    }
    let participants = plan.participants;
    let job = Job {
        session: SessionId::random(),
        key_id,
        participants: participants.clone(),
        kind: JobKind::CreateKey { scheme, threshold },
        governance: Some(approved.governed.clone()),
    };
    let results = state.run(job).await;
    let public_key = agree(&results, |o| match o {
        Outcome::KeyCreated { public_key } => Some(public_key.clone()),
        _ => None,
    })?;
    let record =
        KeyRecord { key_id, scheme, threshold, public_key, epoch: shardvault_types::Epoch(0), nodes: participants };
    state.db().put_key(&record).map_err(ApiError::storage)?;
    // So that a lost node can be replaced (docs/DESIGN.md "Replacing a lost
    // node"). The key exists either way; `POST …/escrow` repeats it.
    if threshold.threshold() < threshold.parties() {
        if let Err(error) = replace::escrow(state, &record).await {
            tracing::warn!(key = %key_id, error = %error.message(), "seed escrow failed; run `shardvault key escrow` for this key");
        }
    }
    answer(StatusCode::CREATED, &key_answer(&record))
}

fn nodes_answer(key: &KeyRecord) -> BTreeMap<String, u16> {
    key.nodes.iter().map(|(p, n)| (p.get().to_string(), n.0)).collect()
}

fn key_answer(key: &KeyRecord) -> Key {
    Key {
        key_id: key.key_id.to_string(),
        scheme: key.scheme.as_str().into(),
        threshold: key.threshold.threshold(),
        parties: key.threshold.parties(),
        public_key: hex::encode(&key.public_key),
        epoch: key.epoch.0,
        nodes: nodes_answer(key),
        request_id: None,
    }
}

/// Every participant must answer with the same value.
fn agree<T: PartialEq>(
    results: &BTreeMap<NodeId, NodeResult>,
    pick: impl Fn(&Outcome) -> Option<T>,
) -> Result<T, ApiError> {
    let failures: Vec<String> =
        results.iter().filter_map(|(node, r)| r.as_ref().err().map(|e| format!("node {node}: {e}"))).collect();
    if !failures.is_empty() {
        return Err(ApiError::new(ErrorCode::NodeFailure, failures.join("; ")));
    }
    let mut values = results.values().filter_map(|r| r.as_ref().ok().and_then(&pick));
    let first = values.next().ok_or_else(|| ApiError::new(ErrorCode::NodeFailure, "no node answered"))?;
    if values.any(|v| v != first) || results.values().any(|r| r.as_ref().ok().and_then(&pick).is_none()) {
        return Err(ApiError::new(ErrorCode::Disagreement, "nodes reported different results; nothing was stored"));
    }
    Ok(first)
}

/// List keys.
#[utoipa::path(get, path = "/v1/keys", tag = "keys", responses(
    (status = 200, description = "every key, oldest first", body = KeyList),
    (status = 500, description = "`storage`", body = ErrorBody),
))]
async fn list_keys(Extract(state): Extract<Arc<State>>) -> Result<Json<KeyList>, ApiError> {
    let keys = state.db().keys().map_err(ApiError::storage)?;
    Ok(Json(KeyList { keys: keys.iter().map(key_answer).collect() }))
}

fn load_key(state: &State, key_id: &KeyId) -> Result<KeyRecord, ApiError> {
    state
        .db()
        .key(key_id)
        .map_err(ApiError::storage)?
        .ok_or_else(|| ApiError::new(ErrorCode::UnknownKey, format!("no key {key_id}")))
}

/// A key, its bans, its last refresh and its seed escrow.
#[utoipa::path(get, path = "/v1/keys/{key_id}", tag = "keys", params(openapi::KeyPath), responses(
    (status = 200, description = "the key", body = KeyDetails),
    (status = 404, description = "`unknown_key`", body = ErrorBody),
    (status = 500, description = "`storage`", body = ErrorBody),
))]
async fn get_key(Extract(state): Extract<Arc<State>>, Path(id): Path<String>) -> Result<Json<KeyDetails>, ApiError> {
    let key_id = key_id(&id)?;
    let key = load_key(&state, &key_id)?;
    let bans = state.db().bans(&key_id).map_err(ApiError::storage)?;
    let refresh = state.db().latest_refresh(&key_id).map_err(ApiError::storage)?;
    let seed_escrow = if key.threshold.threshold() >= key.threshold.parties() {
        "not_applicable".to_string()
    } else {
        state.db().escrow(&key_id).map_err(ApiError::storage)?.unwrap_or_else(|| "none".to_string())
    };
    Ok(Json(KeyDetails {
        key_id: key.key_id.to_string(),
        scheme: key.scheme.as_str().into(),
        threshold: key.threshold.threshold(),
        parties: key.threshold.parties(),
        public_key: hex::encode(&key.public_key),
        epoch: key.epoch.0,
        nodes: nodes_answer(&key),
        banned: bans.into_iter().map(|(party, reason)| Ban { party: party.get(), reason }).collect(),
        last_refresh: refresh.map(|(epoch, state, _)| LastRefresh { epoch: epoch.0, state }),
        seed_escrow,
    }))
}

struct Resolved {
    key: KeyRecord,
    key_id: KeyId,
    scheme: shardvault_types::Scheme,
    chain: Chain,
    key_type: KeyType,
    path: DerivationPath,
}

/// Key, chain and path of a request; MPCVault's all-hardened shape
/// `m/9'/0'/coin'/0'/0'/index'` unless a path is given.
fn resolve(state: &State, id: &str, target: &Target) -> Result<Resolved, ApiError> {
    let key_id = key_id(id)?;
    let key = load_key(state, &key_id)?;
    let scheme = key.scheme;
    let chain: Chain = target.chain.parse().map_err(|e: shardvault_chains::Error| ApiError::bad(e.to_string()))?;
    let key_type = KeyType::from(scheme);
    if !chain.accepts(key_type) {
        return Err(ApiError::bad(format!("{chain} has no addresses for {scheme} keys")));
    }
    let path: DerivationPath = match (&target.path, target.index) {
        (Some(path), None) => path.parse().map_err(|e: shardvault_types::Error| ApiError::bad(e.to_string()))?,
        (None, Some(index)) if index < (1 << 31) => format!("m/9'/0'/{}'/0'/0'/{index}'", chain.coin_type())
            .parse()
            .map_err(|e: shardvault_types::Error| ApiError::bad(e.to_string()))?,
        (None, Some(_)) => return Err(ApiError::bad("index must be below 2^31")),
        _ => return Err(ApiError::bad("give exactly one of \"index\" or \"path\"")),
    };
    // Nodes refuse root-based paths too; this only makes the error friendly.
    path.require_hardened_start().map_err(|e| ApiError::bad(e.to_string()))?;
    Ok(Resolved { key, key_id, scheme, chain, key_type, path })
}

/// The extended public key of `path`'s hardened prefix, deriving it on every
/// node of the key first if this is a new path (all n nodes must be online).
/// A new path needs an approved request (a derivation, or a signature at a
/// path below it); `None` asks only for an already derived one.
async fn hardened(state: &State, r: &Resolved, approved: Option<&Approved>) -> Result<ExtendedPublicKey, ApiError> {
    let prefix = r.path.hardened_prefix();
    // `resolve` refused root-based paths, whose chain code is public.
    prefix.require_hardened_start().map_err(|e| ApiError::bad(e.to_string()))?;
    if let Some(derived) = state.db().derived(&r.key_id, &prefix.to_string()).map_err(ApiError::storage)? {
        return Ok(ExtendedPublicKey { public_key: derived.public_key, chain_code: derived.chain_code });
    }
    let Some(approved) = approved else {
        return Err(ApiError::new(
            ErrorCode::NotApproved,
            format!("path {prefix} of key {} is not derived yet: deriving it is a request to approve", r.key_id),
        ));
    };
    let job = Job {
        session: SessionId::random(),
        key_id: r.key_id,
        participants: r.key.nodes.clone(),
        kind: JobKind::DeriveHardened { path: prefix.clone() },
        governance: Some(approved.governed.clone()),
    };
    let (public_key, chain_code) = agree(&state.run(job).await, |o| match o {
        Outcome::Derived { public_key, chain_code } => Some((public_key.clone(), *chain_code)),
        _ => None,
    })?;
    let derived = Derived { public_key, chain_code };
    state.db().put_derived(&r.key_id, &prefix.to_string(), &derived).map_err(ApiError::storage)?;
    Ok(ExtendedPublicKey { public_key: derived.public_key, chain_code: derived.chain_code })
}

/// The payload of a sign request, and the message it carries (empty for raw kinds).
fn sign_payload(request: &SignRequest, r: &Resolved) -> Result<(SignPayload, Vec<u8>), ApiError> {
    let bad = |e: shardvault_chains::Error| ApiError::bad(e.to_string());
    let raw_hex = |text: &str, what: &str| hex::decode(text).map_err(|_| ApiError::bad(format!("{what} is not hex")));
    let format = || -> Result<shardvault_chains::MessageFormat, ApiError> {
        let prefix = request.bech32_prefix.as_deref();
        match &request.format {
            Some(name) => shardvault_chains::MessageFormat::parse(name, prefix).map_err(bad),
            None => match r.chain.message_format(r.key_type) {
                Some(shardvault_chains::MessageFormat::CosmosAdr36 { .. }) => {
                    shardvault_chains::MessageFormat::parse("cosmos-adr036", prefix).map_err(bad)
                }
                Some(format) => Ok(format),
                None => Err(ApiError::bad(format!(
                    "{} has no message format for {} keys (BIP-322 covers Bitcoin Taproot only)",
                    r.chain, r.key_type
                ))),
            },
        }
    };
    match (&request.message_hex, &request.typed_data, &request.digest_hex, &request.raw_hex) {
        (Some(m), None, None, None) => {
            let mut message = raw_hex(m, "message_hex")?;
            let format = format()?;
            if let Some(nonce) = &request.nonce {
                if format != shardvault_chains::MessageFormat::AptosSignMessage {
                    return Err(ApiError::bad("a nonce is only for Aptos (AIP-62) messages"));
                }
                let text = String::from_utf8(message).map_err(|_| ApiError::bad("an Aptos message is UTF-8 text"))?;
                message = shardvault_chains::message::aptos_full_message(&text, nonce).into_bytes();
            }
            Ok((SignPayload::Message { message: message.clone(), format }, message))
        }
        (None, Some(typed), None, None) if r.chain == Chain::Ethereum => {
            let message = serde_json::to_vec(typed).map_err(|e| ApiError::bad(e.to_string()))?;
            let format = shardvault_chains::MessageFormat::Eip712;
            Ok((SignPayload::Message { message: message.clone(), format }, message))
        }
        (None, Some(_), None, None) => Err(ApiError::bad("typed data (EIP-712) is signed on EVM chains only")),
        (None, None, Some(_), None) if r.key_type == KeyType::Ed25519 => {
            Err(ApiError::bad("Ed25519 keys sign bytes, not digests: give raw_hex (raw signing) or message_hex"))
        }
        (None, None, Some(d), None) => {
            let digest: [u8; 32] = raw_hex(d, "digest_hex")?
                .try_into()
                .map_err(|_| ApiError::bad("digest_hex must be 32 bytes of hex"))?;
            Ok((SignPayload::RawDigest(digest), Vec::new()))
        }
        (None, None, None, Some(bytes)) if r.key_type == KeyType::Ed25519 => {
            Ok((SignPayload::RawBytes(raw_hex(bytes, "raw_hex")?), Vec::new()))
        }
        (None, None, None, Some(_)) => Err(ApiError::bad(format!(
            "{} keys sign digests: give digest_hex (raw signing) or message_hex",
            r.key_type
        ))),
        _ => Err(ApiError::bad("give exactly one of \"message_hex\", \"typed_data\", \"digest_hex\" or \"raw_hex\"")),
    }
}

/// Sign a message in its chain's message format (or, raw signing, a named
/// digest or raw bytes); the answer has `message_encoding` (the format) and
/// `digest` (what the key signed, where not the message itself).
#[utoipa::path(post, path = "/v1/keys/{key_id}/signatures", tag = "signing", request_body = SignRequest,
    params(openapi::KeyPath, openapi::IdempotencyKey),
    responses(
        (status = 202, description = "a pending request to approve; once approved, its answer is the signature", body = shardvault_api::Pending),
        (status = 400, description = "`invalid_request`", body = ErrorBody),
        (status = 404, description = "`unknown_key`", body = ErrorBody),
        (status = 409, description = "`party_banned`; `idempotency_conflict`, `idempotency_in_progress`, `idempotency_outcome_unknown`", body = ErrorBody),
        (status = 502, description = "`signing_failed`, `node_failure`, `disagreement`", body = ErrorBody),
        (status = 503, description = "`not_enough_signers`; `storage`", body = ErrorBody),
    ))]
async fn sign(
    Extract(state): Extract<Arc<State>>,
    axum::Extension(caller): axum::Extension<crate::auth::Caller>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let operation = || {
        let (_, r, payload, _) = plan_sign(&state, &id, &body)?;
        Ok(shardvault_governance::Operation::Sign { key_id: r.key_id, path: r.path, payload: payload.requested() })
    };
    requests::propose(&state, &headers, &caller, "POST /v1/keys/{id}/signatures", Some(&id), &body, operation).await
}

fn plan_sign(state: &State, id: &str, body: &Bytes) -> Result<(SignRequest, Resolved, SignPayload, Vec<u8>), ApiError> {
    let request: SignRequest = parse(body)?;
    let r = resolve(state, id, &request.target())?;
    if request.format.is_some() && request.message_hex.is_none() {
        return Err(ApiError::bad("\"format\" names the format of \"message_hex\""));
    }
    let (payload, message) = sign_payload(&request, &r)?;
    Ok((request, r, payload, message))
}

/// Signs an approved message or raw payload.
pub(crate) async fn run_sign(state: &State, id: &str, body: &Bytes, approved: &Approved) -> Answer {
    let (request, r, payload, message) = plan_sign(state, id, body)?;
    let base = hardened(state, &r, Some(approved)).await?;
    // Refuse here what the nodes would refuse (they check again themselves).
    let format = match &payload {
        SignPayload::Message { message, format } => {
            let child =
                derive_public(r.scheme, &base, r.path.normal_suffix()).map_err(|e| ApiError::bad(e.to_string()))?;
            format.check(r.key_type, &r.path).map_err(|e| ApiError::bad(e.to_string()))?;
            format.signing_input(&child.public_key, message).map_err(|e| ApiError::bad(e.to_string()))?;
            format.name()
        }
        SignPayload::RawBytes(_) => "raw-bytes",
        _ => "raw-digest",
    };
    let requested = requested_signers(request.signers.as_deref())?;
    let (signed, signature, attempts) = sign_with_retry(state, &r, &payload, requested.as_ref(), approved).await?;
    // What was signed, where it is not the message itself.
    let digest = (signed != message).then(|| hex::encode(&signed));
    let signed = SignatureAnswer {
        key_id: r.key.key_id.to_string(),
        chain: r.chain.name().into(),
        path: r.path.to_string(),
        public_key: hex::encode(&signature.public_key),
        message: hex::encode(&message),
        message_encoding: format.into(),
        digest,
        signature: hex::encode(&signature.bytes),
        recovery_id: signature.recovery_id,
        signers: signature.signers.iter().map(|p| p.get()).collect(),
        epoch: r.key.epoch.0,
        failed_attempts: attempts,
        request_id: None,
    };
    answer(StatusCode::OK, &signed)
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
    approved: &Approved,
) -> Result<(Vec<u8>, shardvault_types::Signature, Vec<FailedAttempt>), ApiError> {
    let t = usize::from(r.key.threshold.threshold());
    // Banned parties are never chosen (every honest node would refuse to
    // sign with them anyway); naming one is an error that says what to do.
    let banned = state.db().bans(&r.key_id).map_err(ApiError::storage)?;
    if let Some((party, reason)) = requested.and_then(|set| banned.iter().find(|(p, _)| set.contains(p))) {
        return Err(ApiError::new(
            ErrorCode::PartyBanned,
            format!(
                "party {party} is banned for this key ({reason}); choose other signers, or refresh the key \
                 (`shardvault refresh --key {}`), which clears the ban",
                r.key.key_id
            ),
        ));
    }
    let mut excluded: BTreeSet<PartyId> = banned.keys().copied().collect();
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
                ErrorCode::NotEnoughSigners,
                format!("need {t} healthy signers; unavailable: {missing}; attempts: {}", json!(attempts)),
            ));
        }
        let participants: BTreeMap<PartyId, NodeId> =
            signers.iter().filter_map(|p| r.key.nodes.get(p).map(|n| (*p, *n))).collect();
        let kind = JobKind::Sign { epoch: r.key.epoch, path: r.path.clone(), payload: payload.clone() };
        let job = Job {
            session: SessionId::random(),
            key_id: r.key_id,
            participants: participants.clone(),
            kind,
            governance: Some(approved.governed.clone()),
        };
        let results = state.run(job).await;
        let signed = agree(&results, |o| match o {
            Outcome::Signed { signed, signature } => Some((signed.clone(), signature.clone())),
            _ => None,
        });
        match signed {
            Ok((signed, signature)) => return Ok((signed, signature, attempts)),
            Err(error) => {
                tracing::warn!(key = %r.key_id, signers = ?signers, %error.message, "signing attempt failed");
                attempts.push(FailedAttempt {
                    signers: signers.iter().map(|p| p.get()).collect(),
                    error: error.message.clone(),
                });
                record_bans(state, r, &participants, &results)?;
                if requested.is_some() {
                    return Err(error);
                }
                excluded.extend(at_fault(&participants, &results));
            }
        }
    }
    Err(ApiError::new(ErrorCode::SigningFailed, format!("no signer set succeeded: {}", json!(attempts))))
}

/// Remembers the parties that nodes banned in this attempt.
fn record_bans(
    state: &State,
    r: &Resolved,
    participants: &BTreeMap<PartyId, NodeId>,
    results: &BTreeMap<NodeId, NodeResult>,
) -> Result<(), ApiError> {
    for result in results.values() {
        if let Err(Failure::Bans(culprit, reason)) = result {
            if let Some(party) = participants.iter().find_map(|(p, n)| (n == culprit).then_some(*p)) {
                tracing::error!(key = %r.key_id, %party, node = %culprit, "party banned for this key until a refresh");
                state.db().put_ban(&r.key_id, party, *culprit, reason).map_err(ApiError::storage)?;
            }
        }
    }
    Ok(())
}

/// The parties to leave out of the next attempt: those that failed
/// themselves (a disconnect, silence on pings, no answer to an abort) or that
/// others blamed or were waiting on — not those stopped as collateral.
/// A node names a culprit only on proof from its own authenticated
/// messages; an echo dispute ("one of A, B") comes with no culprit, so
/// neither suspect is left out (or, later, banned) on its word.
fn at_fault(participants: &BTreeMap<PartyId, NodeId>, results: &BTreeMap<NodeId, NodeResult>) -> BTreeSet<PartyId> {
    let party_of = |node: &NodeId| participants.iter().find_map(|(p, n)| (n == node).then_some(*p));
    let mut guilty = BTreeSet::new();
    for (node, result) in results {
        match result {
            Err(Failure::Own(_)) => guilty.extend(party_of(node)),
            Err(Failure::Blames(culprit, _) | Failure::Bans(culprit, _)) => guilty.extend(party_of(culprit)),
            // A node that timed out waiting is not at fault; the ones it waited on are.
            Err(Failure::Waiting(on)) => guilty.extend(on.iter().filter_map(party_of)),
            _ => {}
        }
    }
    guilty
}

/// Refresh every share (key and addresses unchanged): every node stores the
/// new epoch and signs that it did; only on every node's signed confirmation
/// does any node delete the old epoch. Clears the key's bans.
#[utoipa::path(post, path = "/v1/keys/{key_id}/refresh", tag = "keys", request_body(content = Option<shardvault_api::Empty>, description = "nothing, or `{}`"),
    params(openapi::KeyPath, openapi::IdempotencyKey),
    responses(
        (status = 202, description = "a pending request to approve; once approved, its answer is the refresh", body = shardvault_api::Pending),
        (status = 400, description = "`invalid_request`", body = ErrorBody),
        (status = 404, description = "`unknown_key`", body = ErrorBody),
        (status = 409, description = "`refresh_unfinished`, `epochs_exhausted`; `idempotency_conflict`, `idempotency_in_progress`, `idempotency_outcome_unknown`", body = ErrorBody),
        (status = 502, description = "`node_failure`, `disagreement`, `bad_certificate`, `activation_incomplete`", body = ErrorBody),
        (status = 503, description = "`storage`", body = ErrorBody),
    ))]
async fn refresh(
    Extract(state): Extract<Arc<State>>,
    axum::Extension(caller): axum::Extension<crate::auth::Caller>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let operation = || {
        no_body(&body)?;
        let key = load_key(&state, &key_id(&id)?)?;
        Ok(shardvault_governance::Operation::Refresh { key_id: key.key_id })
    };
    requests::propose(&state, &headers, &caller, "POST /v1/keys/{id}/refresh", Some(&id), &body, operation).await
}

/// Refreshes an approved key.
pub(crate) async fn run_refresh(state: &State, id: &str, approved: &Approved) -> Answer {
    let key = load_key(state, &key_id(id)?)?;
    refresh::refresh(state, key, approved.governed.clone()).await
}

/// Finish the key's last refresh: activate a confirmed epoch on every node,
/// or record an unconfirmed attempt as abandoned (nothing was deleted for it).
#[utoipa::path(post, path = "/v1/keys/{key_id}/refresh/finish", tag = "keys", request_body(content = Option<shardvault_api::Empty>, description = "nothing, or `{}`"),
    params(openapi::KeyPath, openapi::IdempotencyKey),
    responses(
        (status = 200, description = "what was finished", body = shardvault_api::RefreshFinished),
        (status = 400, description = "`invalid_request`", body = ErrorBody),
        (status = 404, description = "`unknown_key`", body = ErrorBody),
        (status = 409, description = "`idempotency_conflict`, `idempotency_in_progress`, `idempotency_outcome_unknown`", body = ErrorBody),
        (status = 502, description = "`activation_incomplete`", body = ErrorBody),
        (status = 503, description = "`storage`", body = ErrorBody),
    ))]
async fn finish_refresh(
    Extract(state): Extract<Arc<State>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    idempotent(&state, &headers, "POST /v1/keys/{id}/refresh/finish", &body, async {
        no_body(&body)?;
        let key = load_key(&state, &key_id(&id)?)?;
        refresh::finish(&state, key).await
    })
    .await
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::testing::fail_answer_writes;

    /// One signing call with Idempotency-Key `key` to `target`; `runs` counts
    /// how often the signing itself ran.
    async fn sign(state: &State, key: &str, target: &str, runs: &AtomicUsize) -> (u16, Value) {
        let mut headers = HeaderMap::new();
        headers.insert("idempotency-key", key.parse().unwrap());
        let body = Bytes::from_static(br#"{"chain":"ethereum","index":0,"message_hex":"00"}"#);
        let run = async {
            let n = runs.fetch_add(1, Ordering::SeqCst);
            Ok((StatusCode::OK, json!({ "signature": format!("signature {n}") })))
        };
        let response = TARGET
            .scope(target.to_string(), idempotent(state, &headers, "POST /v1/keys/{id}/signatures", &body, run))
            .await;
        let status = response.status().as_u16();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn an_idempotency_key_is_bound_to_the_key_id() {
        let dir = tempfile::tempdir().unwrap();
        let state = crate::testing::state(dir.path());
        let runs = AtomicUsize::new(0);
        let (a, b) = ("POST /v1/keys/aaaa/signatures", "POST /v1/keys/bbbb/signatures");
        let (status, first) = sign(&state, "k", a, &runs).await;
        assert_eq!((status, first["signature"].as_str()), (200, Some("signature 0")));
        // The same key and body for another key id: not key a's signature.
        let (status, other) = sign(&state, "k", b, &runs).await;
        assert_eq!((status, other["code"].as_str()), (409, Some("idempotency_conflict")), "{other}");
        let (status, again) = sign(&state, "k", a, &runs).await;
        assert_eq!((status, &again), (200, &first));
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_claim_that_cannot_be_stored_runs_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let state = crate::testing::state(dir.path());
        let runs = AtomicUsize::new(0);
        let conn = rusqlite::Connection::open(dir.path().join("coordinator.db")).unwrap();
        conn.execute_batch(
            "CREATE TRIGGER full BEFORE INSERT ON idempotency BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END;",
        )
        .unwrap();
        let target = "POST /v1/keys/aaaa/signatures";
        let (status, answer) = sign(&state, "k", target, &runs).await;
        assert_eq!((status, answer["code"].as_str()), (503, Some("storage")), "{answer}");
        assert_eq!(runs.load(Ordering::SeqCst), 0, "the request ran without its claim on disk");
        // Once the disk has room, the same request runs (once).
        conn.execute_batch("DROP TRIGGER full;").unwrap();
        assert_eq!(sign(&state, "k", target, &runs).await.0, 200);
        assert_eq!(sign(&state, "k", target, &runs).await.0, 200);
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn an_answer_that_cannot_be_stored_is_never_run_again() {
        let dir = tempfile::tempdir().unwrap();
        let database = dir.path().join("coordinator.db");
        let state = crate::testing::state(dir.path());
        let runs = AtomicUsize::new(0);
        let target = "POST /v1/keys/aaaa/signatures";
        fail_answer_writes(&database, true);
        let (status, answer) = sign(&state, "k", target, &runs).await;
        // The client that is still connected gets its signature...
        assert_eq!((status, answer["signature"].as_str()), (200, Some("signature 0")));
        let request_id = answer["request_id"].as_str().unwrap().to_string();
        let (_, status, _) = state.db().request(&request_id).unwrap().unwrap();
        assert_eq!(status, "unknown");
        fail_answer_writes(&database, false);
        // ...and a retry (its connection dropped) does not sign a second time.
        for _ in 0..2 {
            let (status, retry) = sign(&state, "k", target, &runs).await;
            assert_eq!((status, retry["code"].as_str()), (409, Some("idempotency_outcome_unknown")), "{retry}");
            assert!(retry["message"].as_str().unwrap().contains(&format!("/v1/requests/{request_id}")));
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        // Also after a restart.
        drop(state);
        let state = crate::testing::state(dir.path());
        let (_, status, _) = state.db().request(&request_id).unwrap().unwrap();
        assert_eq!(status, "unknown");
        assert_eq!(sign(&state, "k", target, &runs).await.0, 409);
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }

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

    #[test]
    fn an_echo_dispute_blames_neither_suspect() {
        // Node 2 saw parties 1 and 3 disagree about party 1's broadcast: it
        // reports no culprit, so neither 1 nor 3 is treated as proven at fault.
        let participants = BTreeMap::from([(p(1), NodeId(1)), (p(2), NodeId(2)), (p(3), NodeId(3))]);
        // The node's own report of shardvault-mpc's `Error::Disputed` (which
        // names no culprit; its tests check that).
        let dispute = "parties 1 and 3 disagree about party 1's round-0 broadcast: one of them misbehaved \
                       (party 1 equivocated, or party 3 echoed a broadcast it did not receive)";
        let results = BTreeMap::from([
            (NodeId(1), Err(Failure::Stopped)),
            (NodeId(2), Err(Failure::Own(dispute.into()))),
            (NodeId(3), Err(Failure::Stopped)),
        ]);
        let excluded = at_fault(&participants, &results);
        assert!(!excluded.contains(&p(1)) && !excluded.contains(&p(3)), "{excluded:?}");
    }

    #[test]
    fn a_timed_out_node_blames_only_the_one_it_waited_on() {
        // Node 1 froze mid-protocol: node 2 says it was waiting on 1; 1 said nothing.
        let participants = BTreeMap::from([(p(1), NodeId(1)), (p(2), NodeId(2))]);
        let results = BTreeMap::from([
            (NodeId(1), Err(Failure::Own("node 1 did not answer in time".into()))),
            (NodeId(2), Err(Failure::Waiting(vec![NodeId(1)]))),
        ]);
        assert_eq!(at_fault(&participants, &results), BTreeSet::from([p(1)]));
    }
}
