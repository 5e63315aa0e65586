//! Replacing a lost node, and the seed escrow that makes it possible
//! (docs/DESIGN.md "Replacing a lost node"). The coordinator only sequences
//! jobs; every node checks the approved replacement request itself.
//!
//! For each key the lost node is a party of, once the request is approved
//! and the new machine connected with its new keys:
//!
//! 1. `RepairShare` on every party's node: the others rebuild its share and
//!    its chain seed, the new node stores them, usable only for step 2;
//! 2. a complete refresh of all n, certified and activated as every refresh
//!    ([`super::refresh`]): the old machine's epoch is deleted everywhere;
//! 3. `DeriveHardened` of every path derived before: the new node gets its
//!    tweaks back, and every node checks the child key is the cached one;
//! 4. `EscrowSeeds`, so the new node holds pieces of the others' seeds.
//!
//! How far each key got is recorded per node and new machine: a replacement
//! that failed half-way (a node crashed, say) is asked again and goes on
//! from the first step not done; every step can also be repeated.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State as Extract};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use shardvault_api::{ErrorCode, KeyRepaired, NodeReplaced, ReplaceNode, SeedsEscrowed};
use shardvault_governance::Operation;
use shardvault_types::{DerivationPath, PartyId, SessionId};
use shardvault_wire::{Governed, IdentityPublicKey, Job, JobKind, NodeId, NoisePublicKey, Outcome};

use super::{
    agree, answer, idempotent, key_id, load_key, no_body, openapi, parse, requests, Answer, ApiError, Approved,
    ErrorBody,
};
use crate::db::KeyRecord;
use crate::jobs::State;

/// How long an approved replacement waits for the new machine to connect.
const CONNECT_WAIT: Duration = Duration::from_secs(60);

/// Replace a lost node: the machine with these keys becomes node `node`,
/// and the other nodes rebuild its share of every key (same keys, same
/// addresses). Needs every member who may approve; every node checks.
#[utoipa::path(post, path = "/v1/nodes/{node}/replace", tag = "cluster", request_body = ReplaceNode,
    params(("node" = u16, Path, description = "the lost node's id"), openapi::IdempotencyKey),
    responses(
        (status = 202, description = "a pending request to approve; once approved, its answer is the replacement", body = shardvault_api::Pending),
        (status = 400, description = "`invalid_request`", body = ErrorBody),
        (status = 409, description = "`idempotency_conflict`, `idempotency_in_progress`, `idempotency_outcome_unknown`", body = ErrorBody),
        (status = 502, description = "`node_failure`, `disagreement`, `bad_certificate`, `activation_incomplete`", body = ErrorBody),
        (status = 503, description = "`not_enough_nodes`, `storage`", body = ErrorBody),
    ))]
pub(super) async fn replace(
    Extract(state): Extract<Arc<State>>,
    axum::Extension(caller): axum::Extension<crate::auth::Caller>,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let operation = || {
        let node: u16 = path.parse().map_err(|_| ApiError::bad(format!("node id {path:?}: expected 1 to 65535")))?;
        let asked: ReplaceNode = parse(&body)?;
        if !state.config.cluster.nodes.contains_key(&NodeId(node)) {
            return Err(ApiError::bad(format!("node {node} is not in the cluster file; replace a node it names")));
        }
        let noise: NoisePublicKey = asked.noise_key.parse().map_err(|e| ApiError::bad(format!("noise_key: {e}")))?;
        let identity: IdentityPublicKey =
            asked.identity_key.parse().map_err(|e| ApiError::bad(format!("identity_key: {e}")))?;
        let log_head = state.organisation().state().head().to_vec();
        Ok(Operation::ReplaceNode { node, noise_key: noise.0.to_vec(), identity_key: identity.0.to_vec(), log_head })
    };
    requests::propose(&state, &headers, &caller, "POST /v1/nodes/{node}/replace", Some(&path), &body, operation).await
}

/// Runs an approved replacement (what the request names, not the call's body).
pub(crate) async fn run(state: &State, approved: &Approved) -> Answer {
    let Operation::ReplaceNode { node, noise_key, identity_key, .. } = &approved.request.operation else {
        return Err(ApiError::bug("a replacement call without a replacement request"));
    };
    let node = NodeId(*node);
    let noise = NoisePublicKey(noise_key.as_slice().try_into().map_err(|_| ApiError::bug("noise key length"))?);
    let identity =
        IdentityPublicKey(identity_key.as_slice().try_into().map_err(|_| ApiError::bug("identity key length"))?);
    let pinned = state.cluster().map_err(ApiError::storage)?;
    let already = pinned.nodes.get(&node) == Some(&noise) && pinned.identities.get(&node) == Some(&identity);
    if !already {
        state.db().put_node_keys(node, noise, identity, &approved.request.id.to_string()).map_err(ApiError::storage)?;
        // The old machine, if it still talks to us, is no longer node `node`.
        state.drop_connection(node);
    }
    wait_for(state, node).await?;
    let keys = state.db().keys().map_err(ApiError::storage)?;
    let (mut repaired, mut not_repairable, mut failed) = (Vec::new(), Vec::new(), None::<ApiError>);
    for key in keys.into_iter().filter(|key| key.nodes.values().any(|n| *n == node)) {
        if key.threshold.threshold() >= key.threshold.parties() {
            tracing::warn!(key = %key.key_id, %node, "an n-of-n key cannot be repaired; restore the node from its backup");
            not_repairable.push(key.key_id.to_string());
            continue;
        }
        // One key that fails (made before the seed escrow, say) does not
        // hold up the others; the run then fails, naming it.
        let id = key.key_id;
        match repair_key(state, key, node, noise, &approved.governed).await {
            Ok(key) => repaired.push(key),
            Err(error) => {
                tracing::warn!(key = %id, %node, error = %error.message, "key not repaired");
                let error = error.context(&format!("key {id}"));
                failed = Some(match failed {
                    Some(earlier) => ApiError { message: format!("{}; {}", earlier.message, error.message), ..earlier },
                    None => error,
                });
            }
        }
    }
    if let Some(failed) = failed {
        let done: Vec<&str> = repaired.iter().map(|k| k.key_id.as_str()).collect();
        return Err(failed.context(&format!(
            "node {node} is replaced for {} key(s) [{}] but not for all (n-of-n, only from backups: [{}]); ask the \
             replacement again once fixed (steps done are not repeated)",
            done.len(),
            done.join(", "),
            not_repairable.join(", ")
        )));
    }
    answer(StatusCode::OK, &NodeReplaced { node: node.0, keys: repaired, not_repairable, request_id: None })
}

/// Waits until the new machine is connected as `node`.
async fn wait_for(state: &State, node: NodeId) -> Result<(), ApiError> {
    let deadline = tokio::time::Instant::now() + CONNECT_WAIT;
    while !state.connected().contains(&node) {
        if tokio::time::Instant::now() >= deadline {
            return Err(ApiError::new(
                ErrorCode::NotEnoughNodes,
                format!(
                    "the new node {node} has not connected within {} s: start it with its new keys (its cluster file \
                     names them), then ask the replacement again",
                    CONNECT_WAIT.as_secs()
                ),
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

/// The steps of one key's replacement, in order, as recorded.
const STEPS: [&str; 4] = ["repaired", "refreshed", "derived", "escrowed"];

/// Steps 1–4 for one key, from the first not recorded as done for this
/// node and this machine (a replacement asked again after a crash goes on).
async fn repair_key(
    state: &State,
    key: KeyRecord,
    node: NodeId,
    noise: NoisePublicKey,
    governed: &Governed,
) -> Result<KeyRepaired, ApiError> {
    let id = key.key_id;
    let party =
        key.nodes.iter().find_map(|(p, n)| (*n == node).then_some(*p)).ok_or_else(|| ApiError::bug("no party"))?;
    let done = state.db().replacement_step(node, noise, &id).map_err(ApiError::storage)?;
    let first = done.as_deref().and_then(|d| STEPS.iter().position(|s| *s == d)).map_or(0, |i| i + 1);
    let record = |step: &str| state.db().put_replacement_step(node, noise, &id, step).map_err(ApiError::storage);
    let epoch_before = key.epoch;
    let paths = state.db().derived_paths(&id).map_err(ApiError::storage)?;
    for step in STEPS.iter().skip(first) {
        match *step {
            "repaired" => {
                repair(state, &key, party, governed).await?;
                // The new node holds no pieces of the others' seeds until step 4.
                record_escrow(state, &key, false);
            }
            "refreshed" => refresh(state, &key, governed).await?,
            "derived" => derive_again(state, &key, &paths, governed).await?,
            _ => escrow(state, &key).await?,
        }
        record(step)?;
    }
    let epoch_after = load_key(state, &id)?.epoch;
    Ok(KeyRepaired {
        key_id: id.to_string(),
        party: party.get(),
        epoch_before: epoch_before.0,
        epoch_after: epoch_after.0,
        paths,
    })
}

fn job(key: &KeyRecord, kind: JobKind, governance: Option<Governed>) -> Job {
    Job { session: SessionId::random(), key_id: key.key_id, participants: key.nodes.clone(), kind, governance }
}

/// Step 1: every other party helps rebuild `party`'s share on its new node.
async fn repair(state: &State, key: &KeyRecord, party: PartyId, governed: &Governed) -> Result<(), ApiError> {
    let repair = JobKind::RepairShare { target: party, parties: key.nodes.clone() };
    agree(&state.run(job(key, repair, Some(governed.clone()))).await, |o| match o {
        Outcome::Repaired { epoch } => Some(*epoch),
        _ => None,
    })
    .map(|_| ())
    .map_err(|e| e.context(&format!("repairing party {party} of key {}", key.key_id)))
}

/// Step 2: the complete refresh, or the activation of one every node
/// already confirmed (a replacement interrupted after its certificate).
async fn refresh(state: &State, key: &KeyRecord, governed: &Governed) -> Result<(), ApiError> {
    let latest = state.db().latest_refresh(&key.key_id).map_err(ApiError::storage)?;
    let current = load_key(state, &key.key_id)?;
    let (status, body) = match latest {
        Some((_, status, Some(_))) if status == "certified" => super::refresh::finish(state, current).await?,
        _ => super::refresh::refresh(state, current, governed.clone()).await?,
    };
    match status.is_success() {
        true => Ok(()),
        false => Err(ApiError::new(
            ErrorCode::NodeFailure,
            format!("the refresh after the repair of key {}: {body}", key.key_id),
        )),
    }
}

/// Step 3: every path derived before, derived again (the new node's
/// tweaks), each the child key recorded for it.
async fn derive_again(state: &State, key: &KeyRecord, paths: &[String], governed: &Governed) -> Result<(), ApiError> {
    let id = key.key_id;
    for text in paths {
        let path: DerivationPath = text.parse().map_err(|e| ApiError::bug(format!("stored path {text}: {e}")))?;
        let known = state.db().derived(&id, text).map_err(ApiError::storage)?.map(|d| d.public_key);
        let results = state.run(job(key, JobKind::DeriveHardened { path }, Some(governed.clone()))).await;
        let derived = agree(&results, |o| match o {
            Outcome::Derived { public_key, .. } => Some(public_key.clone()),
            _ => None,
        })
        .map_err(|e| e.context(&format!("deriving {text} of key {id} again")))?;
        if known.is_some_and(|known| known != derived) {
            return Err(ApiError::new(ErrorCode::Disagreement, format!("path {text} of key {id} derived another key")));
        }
    }
    Ok(())
}

/// Records how the key's escrow stands; a failure to record is logged, not
/// made the answer (the escrow itself is what it is).
fn record_escrow(state: &State, key: &KeyRecord, complete: bool) {
    if let Err(error) = state.db().put_escrow(&key.key_id, complete) {
        tracing::warn!(key = %key.key_id, %error, "could not record the seed escrow's state");
    }
}

/// Runs the key's seed escrow on every party's node.
pub(crate) async fn escrow(state: &State, key: &KeyRecord) -> Result<(), ApiError> {
    // Moves nothing the nodes could not already rebuild; each checks the key's pinned parties.
    let job = job(key, JobKind::EscrowSeeds, None);
    let escrowed = agree(&state.run(job).await, |o| matches!(o, Outcome::Escrowed).then_some(()));
    // An escrow that ended on some nodes only leaves pieces of different
    // splits: recorded, so that `key show` says to run it again.
    record_escrow(state, key, escrowed.is_ok());
    escrowed.map_err(|e| {
        e.context(&format!(
            "escrowing the chain seeds of key {} (incomplete: run `shardvault key escrow --key {}` again while \
             every node is up)",
            key.key_id, key.key_id
        ))
    })
}

/// Escrow every party's chain seed among the key's other parties (done at
/// key generation; run it once for keys made before), so that a lost node
/// can be replaced. Refused for n-of-n keys, which no fewer than n parties
/// can help.
#[utoipa::path(post, path = "/v1/keys/{key_id}/escrow", tag = "keys", request_body(content = Option<shardvault_api::Empty>, description = "nothing, or `{}`"),
    params(openapi::KeyPath, openapi::IdempotencyKey),
    responses(
        (status = 200, description = "every party escrowed its seed", body = SeedsEscrowed),
        (status = 400, description = "`invalid_request`", body = ErrorBody),
        (status = 404, description = "`unknown_key`", body = ErrorBody),
        (status = 409, description = "`idempotency_conflict`, `idempotency_in_progress`, `idempotency_outcome_unknown`", body = ErrorBody),
        (status = 502, description = "`node_failure`", body = ErrorBody),
        (status = 503, description = "`storage`", body = ErrorBody),
    ))]
pub(super) async fn escrow_seeds(
    Extract(state): Extract<Arc<State>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    idempotent(&state, &headers, "POST /v1/keys/{id}/escrow", &body, async {
        no_body(&body)?;
        let key = load_key(&state, &key_id(&id)?)?;
        if key.threshold.threshold() >= key.threshold.parties() {
            return Err(ApiError::bad(format!(
                "key {id} is {}-of-{}: no fewer than all its parties can help a lost one, so its backups are the \
                 only way back",
                key.threshold.threshold(),
                key.threshold.parties()
            )));
        }
        escrow(&state, &key).await?;
        let parties = key.nodes.keys().map(|p| p.get()).collect();
        answer(StatusCode::OK, &SeedsEscrowed { key_id: key.key_id.to_string(), parties })
    })
    .await
}
