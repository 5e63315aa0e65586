//! Refresh across the cluster, so that no message lost and no crash can
//! destroy a key:
//!
//! 1. `Refresh { from, to }` on every node: each stores epoch `to` as
//!    *pending* beside `from` and signs "I stored `to`" with its identity key.
//! 2. With every node's statement, the coordinator has a
//!    [`RefreshCertificate`]; it records it, and from then on signs with `to`
//!    (every node holds it).
//! 3. `Activate { certificate }` on every node: each checks the certificate
//!    itself and only then deletes older epochs. Repeating it is harmless, so
//!    an interrupted activation is finished by `POST …/refresh/finish`.
//!
//! Without a certificate nothing is deleted anywhere: the old epoch stays
//! active on every node, and the next refresh goes to a later epoch (the
//! unfinished one's pending shares are deleted when a later epoch activates).

use std::collections::BTreeMap;

use axum::http::StatusCode;
use shardvault_api::{ErrorCode, RefreshFinished, Refreshed};
use shardvault_types::{Epoch, KeyId, SessionId};
use shardvault_wire::{Governed, Job, JobKind, NodeId, Outcome, RefreshCertificate};

use super::{agree, answer, Answer, ApiError};
use crate::db::KeyRecord;
use crate::jobs::{NodeResult, State};

/// Refreshes every share of `key` and activates the new epoch, under an
/// approved request's `governed` (or, scheduled, the log and no request).
pub(super) async fn refresh(state: &State, mut key: KeyRecord, governed: Governed) -> Answer {
    let id = key.key_id;
    let latest = state.db().latest_refresh(&id).map_err(ApiError::storage)?;
    if let Some((epoch, status, _)) = &latest {
        if status == "certified" {
            return Err(ApiError::new(
                ErrorCode::RefreshUnfinished,
                format!(
                    "epoch {epoch} of this key is confirmed by every node but not yet activated everywhere; \
                     finish it first (`shardvault refresh --key {} --finish`)",
                    key.key_id
                ),
            ));
        }
    }
    let from = key.epoch;
    let to = Epoch(
        latest
            .map_or(from.0, |(epoch, _, _)| epoch.0.max(from.0))
            .checked_add(1)
            .ok_or_else(|| ApiError::new(ErrorCode::EpochsExhausted, "this key has no epochs left to refresh to"))?,
    );
    state.db().put_refresh(&id, to, "started", None).map_err(ApiError::storage)?;
    let job = Job {
        session: SessionId::random(),
        key_id: id,
        participants: key.nodes.clone(),
        kind: JobKind::Refresh { from, to },
        governance: Some(governed),
    };
    let certificate = match certificate(&key, to, &state.run(job).await) {
        Ok(certificate) => certificate,
        Err(error) => {
            state.db().put_refresh(&id, to, "failed", None).map_err(ApiError::storage)?;
            let message = format!(
                "{}; the refresh did not complete on every node, so epoch {from} stays active everywhere and \
                 nothing was deleted — retry the refresh",
                error.message
            );
            return Err(ApiError { message, ..error });
        }
    };
    certificate
        .verify(id, &key.nodes, &state.cluster().map_err(ApiError::storage)?)
        .map_err(|e| ApiError::new(ErrorCode::BadCertificate, format!("a node's confirmation does not verify: {e}")))?;
    state.db().put_refresh(&id, to, "certified", Some(&certificate)).map_err(ApiError::storage)?;
    // Every node holds `to` now: sign with it, and a complete refresh clears bans.
    key.epoch = to;
    state.db().put_key(&key).map_err(ApiError::storage)?;
    let bans_cleared = state.db().bans(&id).map_err(ApiError::storage)?;
    state.db().clear_bans(&id).map_err(ApiError::storage)?;
    activate(state, &key, id, &certificate).await?;
    let refreshed = Refreshed {
        key_id: key.key_id.to_string(),
        epoch_before: from.0,
        epoch_after: to.0,
        bans_cleared: bans_cleared.keys().map(|p| p.get()).collect(),
        request_id: None,
    };
    answer(StatusCode::OK, &refreshed)
}

/// A refresh the policy schedules (docs/POLICY.md "Scheduled refresh"): the
/// job carries the governance log and no request; every node checks that
/// the policy schedules it and that its active epoch is old enough.
pub(crate) async fn scheduled(state: &State, key: KeyRecord) -> Answer {
    let governed = state.organisation().governed("", Vec::new());
    refresh(state, key, governed).await
}

/// Finishes the key's last refresh: activates a certified epoch everywhere,
/// or, for an attempt that never got every node's confirmation, records that
/// it was abandoned (nothing to undo: no node deleted anything for it).
pub(super) async fn finish(state: &State, key: KeyRecord) -> Answer {
    let id = key.key_id;
    let latest = state.db().latest_refresh(&id).map_err(ApiError::storage)?;
    match latest {
        Some((epoch, status, Some(certificate))) if status == "certified" => {
            activate(state, &key, id, &certificate).await?;
            answer(StatusCode::OK, &finished(&key, epoch, "activated", None))
        }
        Some((epoch, status, _)) if status == "started" || status == "failed" => {
            state.db().put_refresh(&id, epoch, "abandoned", None).map_err(ApiError::storage)?;
            let message = format!(
                "the refresh to epoch {epoch} never had every node's confirmation; epoch {} stays active",
                key.epoch
            );
            answer(StatusCode::OK, &finished(&key, key.epoch, "abandoned", Some(message)))
        }
        _ => answer(StatusCode::OK, &finished(&key, key.epoch, "nothing to finish", None)),
    }
}

fn finished(key: &KeyRecord, epoch: Epoch, finished: &str, message: Option<String>) -> RefreshFinished {
    RefreshFinished {
        key_id: key.key_id.to_string(),
        epoch: epoch.0,
        finished: finished.into(),
        message,
        request_id: None,
    }
}

/// Every node's "I stored `to`", as a certificate.
fn certificate(
    key: &KeyRecord,
    to: Epoch,
    results: &BTreeMap<NodeId, NodeResult>,
) -> Result<RefreshCertificate, ApiError> {
    agree(results, |o| match o {
        Outcome::Refreshed { epoch, .. } => Some(*epoch),
        _ => None,
    })
    .and_then(|epoch| match epoch == to {
        true => Ok(()),
        false => Err(ApiError::new(ErrorCode::Disagreement, format!("nodes refreshed to {epoch}, not {to}"))),
    })?;
    let signatures = results
        .iter()
        .filter_map(|(node, result)| match result {
            Ok(Outcome::Refreshed { stored, .. }) => Some((*node, stored.clone())),
            _ => None,
        })
        .collect();
    Ok(RefreshCertificate { epoch: to, public_key: key.public_key.clone(), signatures })
}

/// Sends the certificate to every node of the key; done when all activated.
async fn activate(state: &State, key: &KeyRecord, id: KeyId, certificate: &RefreshCertificate) -> Result<(), ApiError> {
    let job = Job {
        session: SessionId::random(),
        key_id: id,
        participants: key.nodes.clone(),
        kind: JobKind::Activate { certificate: certificate.clone() },
        // Needs no approval: it only activates what every node confirmed storing.
        governance: None,
    };
    let epoch = certificate.epoch;
    agree(&state.run(job).await, |o| match o {
        Outcome::Activated { epoch } => Some(*epoch),
        _ => None,
    })
    .map_err(|error| {
        ApiError::new(
            ErrorCode::ActivationIncomplete,
            format!(
                "{}; every node holds epoch {epoch} and signing uses it, but older epochs are not deleted everywhere \
                 yet — run `shardvault refresh --key {} --finish` once every node is back",
                error.message, key.key_id
            ),
        )
        .with_status(error.status)
    })?;
    state.db().put_refresh(&id, epoch, "activated", None).map_err(ApiError::storage)?;
    Ok(())
}
