//! Every call this node makes into the policy evaluator, in one place: the
//! facts it decodes itself from the job, and the evaluation with the
//! approvals counted.

use shardvault_governance::{Decision, Facts, Ledger, Request, State};
use shardvault_wire::{Governed, Job, JobKind, SignPayload};

use super::refused;
use crate::runner::NodeError;

/// Evaluates the policy on the facts of `job` (already checked to be exactly
/// `request`) and counts the approvals of `governed.request`.
pub(super) fn authorize(
    state: &State,
    governed: &Governed,
    request: &Request,
    job: &Job,
    ledger: &dyn Ledger,
    now: u64,
) -> Result<Decision, NodeError> {
    let facts = facts(job, request)?;
    state
        .authorize(governed.request.as_bytes(), request, &governed.approvals, &facts, ledger, now)
        .map_err(|e| refused(format!("request {} is not approved: {e}", request.id)))
}

/// What the policy is evaluated on, decoded by this node from the job's own
/// bytes: the transaction or message for signing, the operation otherwise.
fn facts(job: &Job, request: &Request) -> Result<Facts, NodeError> {
    let key_id = job.key_id.to_string();
    let undecodable =
        |e: shardvault_governance::Error| refused(format!("what is to be signed does not decode for the policy: {e}"));
    if let JobKind::ExportBackup { .. } = &job.kind {
        // One job per key: rules about keys apply to each key exported.
        return Facts::operation(request.operation.kind(), Some(&key_id)).map_err(undecodable);
    }
    let JobKind::Sign { payload, .. } = &job.kind else {
        // A derivation for a signature is judged as that signature, decoded
        // from the request's own bytes.
        return shardvault_governance::facts_of(&request.operation).map_err(undecodable);
    };
    match payload {
        SignPayload::Message { message, format } => {
            Facts::message(&key_id, format.chain(), format, message).map_err(undecodable)
        }
        SignPayload::RawDigest(_) | SignPayload::RawBytes(_) => Ok(Facts::raw(&key_id)),
        SignPayload::BitcoinInput { .. } | SignPayload::EvmTransaction { .. } | SignPayload::Transaction { .. } => {
            let (unsigned, _) =
                payload.unsigned().ok_or_else(|| refused("a transaction payload without a transaction"))?;
            Facts::transaction(&key_id, unsigned)
                .map_err(|e| refused(format!("the transaction does not decode for the policy: {e}")))
        }
    }
}
