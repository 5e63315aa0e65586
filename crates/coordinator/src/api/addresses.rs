//! `POST /v1/keys/{id}/addresses`: the address of a path, with the nodes'
//! attestations. The coordinator derives the address from its cache (to
//! answer quickly and to refuse bad input), then asks every connected node of
//! the key to attest it: each node derives the child key from its own share
//! and tweak, computes the address and signs the statement. The answer
//! carries the statement's fields and the signatures, so a client that pins
//! the cluster file can check them without trusting the coordinator — the
//! coordinator's own checks here are only for friendly errors.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State as Extract};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use shardvault_api::{AddressRequest, Attestation, AttestedAddress, ErrorBody, ErrorCode};
use shardvault_types::{derive_public, SessionId};
use shardvault_wire::{
    address_for, AddressStatement, Job, JobKind, NodeId, Outcome, ADDRESS_ATTESTATION_DOMAIN,
    ADDRESS_ATTESTATION_VERSION,
};

use shardvault_types::DerivationPath;

use super::{answer, hardened, idempotent, openapi, parse, requests, resolve, Answer, ApiError, Approved, Resolved};
use crate::jobs::State;

/// Derive an address. The coordinator derives the address, then every
/// connected node of the key derives it from its own share and signs the
/// statement (docs/FORMATS.md "Address attestation"). Clients must check the
/// signatures against the identity keys of their pinned cluster file (at
/// least max(2, threshold) distinct nodes) and recompute the address from
/// `public_key`; `shardvault address` does.
#[utoipa::path(post, path = "/v1/keys/{key_id}/addresses", tag = "addresses", request_body = AddressRequest,
    params(openapi::KeyPath, openapi::IdempotencyKey),
    responses(
        (status = 200, description = "the address and the nodes' attestations", body = AttestedAddress),
        (status = 202, description = "a new path: a pending request to derive it; once approved, its answer is the address", body = shardvault_api::Pending),
        (status = 400, description = "`invalid_request`", body = ErrorBody),
        (status = 404, description = "`unknown_key`", body = ErrorBody),
        (status = 409, description = "`idempotency_conflict`, `idempotency_in_progress`, `idempotency_outcome_unknown`", body = ErrorBody),
        (status = 502, description = "`disagreement` when a node attests another address; `node_failure`", body = ErrorBody),
        (status = 503, description = "`not_enough_attestations` when fewer nodes attest; `storage`", body = ErrorBody),
    ))]
pub(super) async fn address(
    Extract(state): Extract<Arc<State>>,
    axum::Extension(caller): axum::Extension<crate::auth::Caller>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // A path already derived is only attested: nothing changes, nothing to approve.
    let derived = (|| -> Result<Option<DerivationPath>, ApiError> {
        let request: AddressRequest = parse(&body)?;
        let r = resolve(&state, &id, &request.target())?;
        let prefix = r.path.hardened_prefix();
        let known = state.db().derived(&r.key_id, &prefix.to_string()).map_err(ApiError::storage)?.is_some();
        Ok((!known).then_some(prefix))
    })();
    match derived {
        Ok(None) => {
            idempotent(&state, &headers, "POST /v1/keys/{id}/addresses", &body, run(&state, &id, &body, None)).await
        }
        Ok(Some(prefix)) => {
            let operation = || {
                let key_id = super::key_id(&id)?;
                Ok(shardvault_governance::Operation::DeriveAddress { key_id, path: prefix })
            };
            requests::propose(&state, &headers, &caller, "POST /v1/keys/{id}/addresses", Some(&id), &body, operation)
                .await
        }
        Err(error) => idempotent(&state, &headers, "POST /v1/keys/{id}/addresses", &body, async { Err(error) }).await,
    }
}

/// Derives (when approved) and attests the address.
pub(super) async fn run(state: &State, id: &str, body: &Bytes, approved: Option<&Approved>) -> Answer {
    let request: AddressRequest = parse(body)?;
    let r = resolve(state, id, &request.target())?;
    let base = hardened(state, &r, approved).await?;
    let child = derive_public(r.scheme, &base, r.path.normal_suffix()).map_err(|e| ApiError::bad(e.to_string()))?;
    let prefix = request.bech32_prefix.as_deref();
    let address =
        address_for(r.chain, r.scheme, &child.public_key, prefix).map_err(|e| ApiError::bad(e.to_string()))?;
    let threshold = r.key.threshold;
    let statement = AddressStatement {
        key_id: r.key_id,
        scheme: r.scheme,
        threshold,
        path: r.path.clone(),
        chain: r.chain,
        bech32_prefix: prefix.map(str::to_string),
        public_key: child.public_key,
        address,
    };
    let attestations = attest(state, &r, &statement).await?;
    let attested = AttestedAddress {
        key_id: r.key.key_id.to_string(),
        scheme: r.scheme.as_str().into(),
        threshold: threshold.threshold(),
        parties: threshold.parties(),
        chain: r.chain.name().into(),
        bech32_prefix: statement.bech32_prefix,
        path: r.path.to_string(),
        public_key: hex::encode(&statement.public_key),
        address: statement.address,
        attestation_domain: ADDRESS_ATTESTATION_DOMAIN.into(),
        attestation_version: ADDRESS_ATTESTATION_VERSION,
        attestations: attestations
            .iter()
            .map(|(node, signature)| Attestation { node: node.0, signature: hex::encode(signature) })
            .collect(),
        request_id: None,
    };
    answer(StatusCode::OK, &attested)
}

/// Node signatures over `statement`: the stored ones, and — while fewer than
/// max(2, t) — fresh ones from every connected node of the key that has not
/// attested yet. A node that attests something else (another key or address)
/// is reported, never counted.
async fn attest(
    state: &State,
    r: &Resolved,
    statement: &AddressStatement,
) -> Result<BTreeMap<NodeId, Vec<u8>>, ApiError> {
    let bytes = statement.to_bytes();
    let needed = statement.required_attestations();
    let cluster = &state.cluster().map_err(ApiError::storage)?;
    // Where the cluster file pins a node's identity, only signatures that
    // verify are kept (a client pinning the same file would refuse the rest).
    let verifies = |node: NodeId, signature: &[u8]| match cluster.identities.get(&node) {
        None => true,
        Some(key) => <[u8; 64]>::try_from(signature)
            .ok()
            .is_some_and(|signature| key.verify(ADDRESS_ATTESTATION_DOMAIN, &bytes, &signature).is_ok()),
    };
    let stored = state.db().attestations(&r.key_id, &bytes).map_err(ApiError::storage)?;
    let mut attested: BTreeMap<NodeId, Vec<u8>> =
        stored.into_iter().filter(|(node, signature)| verifies(*node, signature)).collect();
    if attested.len() >= needed {
        return Ok(attested);
    }
    let connected = state.connected();
    let ask: Vec<_> = r
        .key
        .nodes
        .iter()
        .filter(|(_, node)| connected.contains(node) && !attested.contains_key(node))
        .map(|(party, node)| (*party, *node))
        .collect();
    let kind = JobKind::Attest {
        path: statement.path.clone(),
        chain: statement.chain,
        bech32_prefix: statement.bech32_prefix.clone(),
    };
    // One job per node, so that one node's refusal does not stop the others.
    let runs = ask.iter().map(|(party, node)| {
        let job = Job {
            session: SessionId::random(),
            key_id: r.key_id,
            participants: BTreeMap::from([(*party, *node)]),
            kind: kind.clone(),
            // Read-only: the node attests a path it derived under an approval.
            governance: None,
        };
        async move { (*node, state.run(job).await.remove(node)) }
    });
    let mut problems = Vec::new();
    let mut disagreement = false;
    for (node, result) in futures_util::future::join_all(runs).await {
        match result {
            Some(Ok(Outcome::Attested { statement: theirs, signature })) if theirs == *statement => {
                if verifies(node, &signature) {
                    state
                        .db()
                        .put_attestation(
                            &r.key_id,
                            &statement.path.to_string(),
                            statement.chain.name(),
                            &bytes,
                            node,
                            &signature,
                        )
                        .map_err(ApiError::storage)?;
                    attested.insert(node, signature);
                } else {
                    problems.push(format!("node {node}: its signature does not verify under its pinned identity"));
                }
            }
            Some(Ok(Outcome::Attested { statement: theirs, .. })) => {
                disagreement = true;
                tracing::warn!(%node, key = %r.key_id, path = %statement.path, ours = %statement.address,
                    theirs = %theirs.address, "a node attested another address than the coordinator derived");
                problems.push(format!(
                    "node {node} attests {} (key {}) where the coordinator derived {} (key {})",
                    theirs.address,
                    hex::encode(&theirs.public_key),
                    statement.address,
                    hex::encode(&statement.public_key)
                ));
            }
            Some(Ok(_)) => problems.push(format!("node {node}: unexpected answer")),
            Some(Err(failure)) => problems.push(format!("node {node}: {failure}")),
            None => problems.push(format!("node {node}: no answer")),
        }
    }
    if attested.len() >= needed {
        return Ok(attested);
    }
    let offline: Vec<String> =
        r.key.nodes.values().filter(|node| !connected.contains(node)).map(|node| format!("node {node}")).collect();
    if !offline.is_empty() {
        problems.push(format!("not connected: {}", offline.join(", ")));
    }
    let message = format!(
        "the address {} needs attestations from {needed} nodes of the key; {} attested{}",
        statement.address,
        attested.len(),
        if problems.is_empty() { String::new() } else { format!(" ({})", problems.join("; ")) }
    );
    Err(match disagreement {
        true => ApiError::new(ErrorCode::Disagreement, message),
        false => ApiError::new(ErrorCode::NotEnoughAttestations, message),
    })
}
