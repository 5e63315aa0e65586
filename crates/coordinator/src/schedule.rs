//! Scheduled refresh (docs/POLICY.md "Scheduled refresh"): while the policy
//! sets `refresh_every_secs`, every key whose active epoch is that old is
//! refreshed without a request. The coordinator only proposes the moment:
//! each node refuses unless, by its own clock and its own record of when
//! the epoch began, the refresh is due.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use shardvault_types::KeyId;
use tokio::sync::watch;

use crate::auth::now;
use crate::jobs::State;

/// Checks every `interval` until `shutdown`, refreshing the keys that are due.
pub(crate) async fn run(state: Arc<State>, interval: Duration, mut shutdown: watch::Receiver<bool>) {
    // When each key is next tried: a key's epoch start is known here only
    // for refreshes this process ran; otherwise its creation (or this
    // process's start) is the estimate, and the nodes' refusal says more.
    let mut next: HashMap<KeyId, u64> = HashMap::new();
    loop {
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            changed = shutdown.changed() => {
                // The sender gone is a shutdown too (else this would spin).
                if changed.is_err() {
                    return;
                }
            }
        }
        if *shutdown.borrow() {
            return;
        }
        let period = state.organisation().state().policy().refresh_every_secs;
        if period == 0 {
            next.clear();
            continue;
        }
        let keys = match state.db().keys() {
            Ok(keys) => keys,
            Err(error) => {
                tracing::warn!(%error, "scheduled refresh: cannot read the keys");
                continue;
            }
        };
        for key in keys {
            let id = key.key_id;
            let created = state.db().key_created(&id).ok().flatten().unwrap_or_else(now);
            let due = *next.entry(id).or_insert(created.saturating_add(period));
            if now() < due {
                continue;
            }
            let from = key.epoch;
            match crate::api::refresh::scheduled(&state, key).await {
                Ok(_) => {
                    tracing::info!(key = %id, %from, "scheduled refresh done");
                    next.insert(id, now().saturating_add(period));
                }
                Err(error) => {
                    // Not due on some node, one offline, a refresh in
                    // progress: try again after a tenth of the period.
                    let retry = (period / 10).clamp(interval.as_secs().max(1), 86_400);
                    tracing::info!(key = %id, error = error.message(), retry_in_secs = retry, "scheduled refresh not done");
                    next.insert(id, now().saturating_add(retry));
                }
            }
        }
    }
}
