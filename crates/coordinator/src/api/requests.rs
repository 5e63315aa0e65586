//! Governed requests: a creating call makes a pending request (202) whose
//! canonical bytes members sign; approvals and rejections arrive at
//! `/v1/requests/{id}/approvals|rejections`; once the policy is met the
//! stored call runs with the request and its approvals attached to every
//! job, and each node checks them itself. The coordinator's own policy
//! check here only decides when to try and what to tell the caller.

use std::str::FromStr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State as Extract};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Value};
use shardvault_api::{
    AddMember, Approve, AuditLog, ErrorBody, ErrorCode, GovernanceLog, GovernedRecord, LogEntryBody, MemberEntry,
    MemberList, Pending, PolicyAnswer, Reject, RemoveMember, RequestList, RequestRecord, SetPolicy, Signoff,
};
use shardvault_governance::{
    request_hash_hex, Approval, LogEntry, Member, Operation, Policy, Request, DEFAULT_LIFETIME_SECS, REJECT_NAMESPACE,
};
use shardvault_wire::Governed;

use super::{answer, idempotent, parse, Answer, ApiError, REQUEST_ID};
use crate::auth::{now, Caller};
use crate::db::{Call, GovernedRow};
use crate::jobs::State;

/// A request the members approved, as the call that runs it sees it.
pub(crate) struct Approved {
    pub request: Request,
    pub governed: Governed,
}

/// Answers a creating call with a pending request for `operation` (202).
pub(super) async fn propose(
    state: &State,
    headers: &HeaderMap,
    caller: &Caller,
    route: &str,
    key: Option<&str>,
    body: &Bytes,
    operation: impl FnOnce() -> Result<Operation, ApiError>,
) -> Response {
    idempotent(state, headers, route, body, async {
        let operation = operation()?;
        let request_id = REQUEST_ID.try_with(String::clone).map_err(|_| ApiError::bug("request id not set"))?;
        let id = shardvault_governance::RequestId::from_str(&request_id).map_err(|e| ApiError::bug(e.to_string()))?;
        let organisation = state.organisation().state().organisation();
        let mut request = Request::new(organisation, &caller.0.public_key, operation, now(), DEFAULT_LIFETIME_SECS)
            .map_err(|e| ApiError::bad(e.to_string()))?;
        request.id = id;
        let bytes = request.to_bytes().map_err(|e| ApiError::bug(e.to_string()))?;
        let text = String::from_utf8(bytes).map_err(|_| ApiError::bug("canonical JSON is UTF-8"))?;
        let body = std::str::from_utf8(body).map_err(|_| ApiError::bad("the body is not UTF-8"))?;
        let row = GovernedRow {
            request: text.clone(),
            operation: request.operation.kind().into(),
            key_id: request.operation.key_id().map(|k| k.to_string()),
            creator: caller.0.name.to_string(),
            created_at: request.created_at,
            expires_at: request.expires_at,
            call: Call { route: route.into(), key: key.map(str::to_owned), body: body.to_owned() },
            approvals: Vec::new(),
            rejections: Vec::new(),
        };
        {
            let db = state.db();
            db.put_governed(&request_id, &row).map_err(ApiError::storage)?;
            let detail = json!({ "operation": row.operation, "creator": row.creator, "request_hash": request_hash_hex(text.as_bytes()) });
            db.audit(row.created_at, "created", &request_id, &detail).map_err(ApiError::storage)?;
        }
        let pending = Pending {
            request_id: request_id.clone(),
            status: "pending".into(),
            request_hash: request_hash_hex(text.as_bytes()),
            request: text,
        };
        answer(StatusCode::ACCEPTED, &pending)
    })
    .await
}

fn load(state: &State, id: &str) -> Result<GovernedRow, ApiError> {
    state
        .db()
        .governed(id)
        .map_err(ApiError::storage)?
        .ok_or_else(|| ApiError::new(ErrorCode::UnknownRequest, format!("no governed request {id:?}")))
}

/// The record of a request, as `GET /v1/requests/{id}` answers.
pub(super) fn record(state: &State, id: &str) -> Result<RequestRecord, ApiError> {
    let (kind, status, response) = state
        .db()
        .request(id)
        .map_err(ApiError::storage)?
        .ok_or_else(|| ApiError::new(ErrorCode::UnknownRequest, format!("no request {id:?}")))?;
    let response: Value = match response {
        None => Value::Null,
        Some(text) => serde_json::from_str(&text).map_err(|_| {
            ApiError::new(ErrorCode::Storage, format!("the stored answer of request {id:?} does not read back"))
        })?,
    };
    let governed = state.db().governed(id).map_err(ApiError::storage)?.map(|row| GovernedRecord {
        request_hash: request_hash_hex(row.request.as_bytes()),
        request: row.request,
        operation: row.operation,
        key_id: row.key_id,
        creator: row.creator,
        created_at: row.created_at,
        expires_at: row.expires_at,
        approvals: row.approvals,
        rejections: row.rejections,
    });
    let status = match (&governed, status.as_str()) {
        (Some(g), "pending") if now() >= g.expires_at => "expired".to_string(),
        _ => status,
    };
    Ok(RequestRecord { request_id: id.to_string(), kind, status, response, governed })
}

/// Refuses a request that is no longer open, naming its state.
fn open(state: &State, id: &str, row: &GovernedRow) -> Result<(), ApiError> {
    let status = record(state, id)?.status;
    if status != "pending" {
        return Err(ApiError::new(ErrorCode::RequestClosed, format!("request {id} is {status}, not pending")));
    }
    if now() >= row.expires_at {
        return Err(ApiError::new(
            ErrorCode::RequestClosed,
            format!("request {id} expired at {}; create it again", row.expires_at),
        ));
    }
    Ok(())
}

/// Approve a request: an SSHSIG of its canonical bytes (namespace `shardvault-request`). Runs it once the policy is met.
#[utoipa::path(post, path = "/v1/requests/{id}/approvals", tag = "requests", request_body = Approve,
    params(("id" = String, Path, description = "the request id")),
    responses(
        (status = 200, description = "the request after the approval (its answer, once it ran)", body = RequestRecord),
        (status = 400, description = "`invalid_approval`", body = ErrorBody),
        (status = 404, description = "`unknown_request`", body = ErrorBody),
        (status = 409, description = "`request_closed`", body = ErrorBody),
    ))]
pub(super) async fn approve(
    Extract(state): Extract<Arc<State>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<RequestRecord>, ApiError> {
    let approve: Approve = parse(&body)?;
    let row = load(&state, &id)?;
    open(&state, &id, &row)?;
    let member = signer(&state, &row, &approve.signature, |key, bytes, sig| key.verify(bytes, sig))?;
    if member.name != caller.0.name {
        tracing::info!(%id, by = %caller.0.name, approver = %member.name, "approval made elsewhere submitted");
    }
    let mut approvals = row.approvals.clone();
    if !approvals.iter().any(|a| a.member == member.name.as_str()) {
        approvals.push(signoff(&member, approve.signature.trim()));
        let db = state.db();
        db.set_signoffs(&id, &approvals, &row.rejections).map_err(ApiError::storage)?;
        db.audit(
            now(),
            "approved",
            &id,
            &json!({ "member": member.name.as_str(), "signature": approve.signature.trim() }),
        )
        .map_err(ApiError::storage)?;
    }
    match ready(&state, &row, &approvals)? {
        Readiness::Ready => execute(&state, &id, row, approvals).await?,
        Readiness::Waiting => {}
        Readiness::Denied(reason) => deny(&state, &id, &reason)?,
    }
    Ok(Json(record(&state, &id)?))
}

/// Reject a request: an SSHSIG of its canonical bytes (namespace `shardvault-reject`). One rejection ends it.
#[utoipa::path(post, path = "/v1/requests/{id}/rejections", tag = "requests", request_body = Reject,
    params(("id" = String, Path, description = "the request id")),
    responses(
        (status = 200, description = "the rejected request", body = RequestRecord),
        (status = 400, description = "`invalid_approval`", body = ErrorBody),
        (status = 404, description = "`unknown_request`", body = ErrorBody),
        (status = 409, description = "`request_closed`", body = ErrorBody),
    ))]
pub(super) async fn reject(
    Extract(state): Extract<Arc<State>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<RequestRecord>, ApiError> {
    let reject: Reject = parse(&body)?;
    let row = load(&state, &id)?;
    open(&state, &id, &row)?;
    let member =
        signer(&state, &row, &reject.signature, |key, bytes, sig| key.verify_in(REJECT_NAMESPACE, bytes, sig))?;
    let mut rejections = row.rejections.clone();
    rejections.push(signoff(&member, reject.signature.trim()));
    {
        let db = state.db();
        db.set_signoffs(&id, &row.approvals, &rejections).map_err(ApiError::storage)?;
        db.set_status(&id, "rejected").map_err(ApiError::storage)?;
        db.audit(
            now(),
            "rejected",
            &id,
            &json!({ "member": member.name.as_str(), "signature": reject.signature.trim() }),
        )
        .map_err(ApiError::storage)?;
    }
    Ok(Json(record(&state, &id)?))
}

type Check = fn(&shardvault_governance::MemberKey, &[u8], &Approval) -> Result<(), shardvault_governance::Error>;

/// The current member who made `signature` over the request, checked.
fn signer(state: &State, row: &GovernedRow, signature: &str, check: Check) -> Result<Member, ApiError> {
    let invalid = |e: shardvault_governance::Error| ApiError::new(ErrorCode::InvalidApproval, e.to_string());
    let signature_parsed = Approval::from_str(signature).map_err(invalid)?;
    let key = signature_parsed.claimed_signer().map_err(invalid)?;
    let member = state.organisation().member(&key.fingerprint()).cloned().ok_or_else(|| {
        ApiError::new(ErrorCode::InvalidApproval, format!("{} is not a member's key", key.fingerprint()))
    })?;
    if !member.role.may_approve() {
        return Err(ApiError::new(
            ErrorCode::InvalidApproval,
            format!("{} is a {}, who cannot approve or reject", member.name, member.role),
        ));
    }
    check(&member.public_key, row.request.as_bytes(), &signature_parsed).map_err(invalid)?;
    Ok(member)
}

fn signoff(member: &Member, signature: &str) -> Signoff {
    Signoff {
        member: member.name.to_string(),
        fingerprint: member.public_key.fingerprint(),
        signature: signature.to_owned(),
        at: now(),
    }
}

/// Whether the approvals meet the policy as the coordinator sees it (the
/// nodes decide; period limits only they can count).
fn ready(state: &State, row: &GovernedRow, approvals: &[Signoff]) -> Result<Readiness, ApiError> {
    let request = Request::from_bytes(row.request.as_bytes()).map_err(|e| ApiError::bug(e.to_string()))?;
    let facts = shardvault_governance::facts_of(&request.operation).map_err(|e| ApiError::bad(e.to_string()))?;
    let armored: Vec<String> = approvals.iter().map(|a| a.signature.clone()).collect();
    let organisation = state.organisation();
    let governance = organisation.state();
    if request.operation.is_governance() {
        let entry = LogEntry { request: row.request.clone(), approvals: armored };
        return Ok(match governance.clone().apply(&entry) {
            Ok(()) => Readiness::Ready,
            Err(_) => Readiness::Waiting,
        });
    }
    // Nothing spent is the most a period limit allows: a denial now is final.
    Ok(
        match governance.authorize(
            row.request.as_bytes(),
            &request,
            &armored,
            &facts,
            &shardvault_governance::NothingSpent,
            now(),
        ) {
            Ok(_) => Readiness::Ready,
            Err(denied @ shardvault_governance::Error::Denied { .. }) => Readiness::Denied(denied.to_string()),
            Err(_) => Readiness::Waiting,
        },
    )
}

/// What the approvals so far make of a request.
enum Readiness {
    /// The policy is met (as far as the coordinator can tell): run it.
    Ready,
    /// More approvals are needed.
    Waiting,
    /// The policy denies it, whoever approves: it ends failed, naming the rule.
    Denied(String),
}

/// Ends a request the policy denies.
fn deny(state: &State, id: &str, reason: &str) -> Result<(), ApiError> {
    let answer = ApiError::new(ErrorCode::NotApproved, reason).body();
    let mut answer = answer;
    if let Value::Object(map) = &mut answer {
        map.insert("request_id".into(), json!(id));
    }
    let db = state.db();
    db.audit(now(), "failed", id, &answer).map_err(ApiError::storage)?;
    db.set_status(id, "failed").map_err(ApiError::storage)?;
    db.set_response(id, &answer.to_string()).map_err(ApiError::storage)
}

/// Runs an approved request's call and stores its answer.
async fn execute(state: &State, id: &str, row: GovernedRow, approvals: Vec<Signoff>) -> Result<(), ApiError> {
    if !state.db().start_running(id).map_err(ApiError::storage)? {
        return Ok(()); // Another approval started it: it runs once.
    }
    let request = Request::from_bytes(row.request.as_bytes()).map_err(|e| ApiError::bug(e.to_string()))?;
    let armored: Vec<String> = approvals.iter().map(|a| a.signature.clone()).collect();
    let governed = state.organisation().governed(&row.request, armored);
    let approved = Approved { request, governed };
    let body = Bytes::from(row.call.body.clone());
    let key = row.call.key.clone().unwrap_or_default();
    let outcome = match row.call.route.as_str() {
        "POST /v1/keys" => super::run_create_key(state, &body, &approved).await,
        "POST /v1/keys/{id}/signatures" => super::run_sign(state, &key, &body, &approved).await,
        "POST /v1/keys/{id}/transactions" => super::transactions::run(state, &key, &body, &approved).await,
        "POST /v1/keys/{id}/addresses" => super::addresses::run(state, &key, &body, Some(&approved)).await,
        "POST /v1/keys/{id}/refresh" => super::run_refresh(state, &key, &approved).await,
        "POST /v1/backups" => super::backups::run(state, &approved).await,
        "POST /v1/nodes/{node}/replace" => super::replace::run(state, &approved).await,
        "POST /v1/members" | "POST /v1/members/remove" | "POST /v1/policy" => govern(state, &approved),
        other => Err(ApiError::bug(format!("no runner for {other}"))),
    };
    let (status, mut value) = match outcome {
        Ok(answer) => answer,
        Err(error) => (error.status(), error.body()),
    };
    if let Value::Object(map) = &mut value {
        map.insert("request_id".into(), json!(id));
    }
    let succeeded = status.is_success();
    let db = state.db();
    db.audit(now(), if succeeded { "executed" } else { "failed" }, id, &value).map_err(ApiError::storage)?;
    db.set_status(id, if succeeded { "succeeded" } else { "failed" }).map_err(ApiError::storage)?;
    db.set_response(id, &value.to_string()).map_err(ApiError::storage)?;
    Ok(())
}

/// An approved governance change: appended to the log (checked again) and
/// answered with the new members or policy.
fn govern(state: &State, approved: &Approved) -> Answer {
    let entry = LogEntry { request: approved.governed.request.clone(), approvals: approved.governed.approvals.clone() };
    let mut organisation = state.organisation();
    organisation.append(entry, &state.db()).map_err(|e| ApiError::new(ErrorCode::NotApproved, e))?;
    match approved.request.operation {
        Operation::SetPolicy { .. } => answer(StatusCode::OK, &policy_answer(&organisation)?),
        _ => answer(StatusCode::OK, &member_list(&organisation)),
    }
}

fn member_list(organisation: &crate::governance::Organisation) -> MemberList {
    let members = organisation
        .state()
        .members()
        .iter()
        .map(|m| MemberEntry {
            name: m.name.to_string(),
            role: m.role.to_string(),
            public_key: m.public_key.to_openssh().unwrap_or_default(),
            fingerprint: m.public_key.fingerprint(),
        })
        .collect();
    MemberList { members, log_head: hex::encode(organisation.state().head()) }
}

fn policy_answer(organisation: &crate::governance::Organisation) -> Result<PolicyAnswer, ApiError> {
    let policy = serde_json::to_value(organisation.state().policy()).map_err(|e| ApiError::bug(e.to_string()))?;
    Ok(PolicyAnswer { policy, log_head: hex::encode(organisation.state().head()) })
}

/// A request's status, governance and answer.
#[utoipa::path(get, path = "/v1/requests/{id}", tag = "requests",
    params(("id" = String, Path, description = "the `request_id` of an answer")),
    responses(
        (status = 200, description = "the request", body = RequestRecord),
        (status = 404, description = "`unknown_request`", body = ErrorBody),
        (status = 500, description = "`storage`", body = ErrorBody),
    ))]
pub(super) async fn show(
    Extract(state): Extract<Arc<State>>,
    Path(id): Path<String>,
) -> Result<Json<RequestRecord>, ApiError> {
    Ok(Json(record(&state, &id)?))
}

/// Filters of the history.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub(super) struct ListQuery {
    /// Only this status.
    status: Option<String>,
    /// Only this key.
    key: Option<String>,
    /// Only requests made at or after this unix time.
    since: Option<u64>,
    /// At most this many (default 100, at most 1000).
    limit: Option<u32>,
}

/// The history: every request, newest first.
#[utoipa::path(get, path = "/v1/requests", tag = "requests", params(ListQuery),
    responses((status = 200, description = "requests, newest first", body = RequestList)))]
pub(super) async fn list(
    Extract(state): Extract<Arc<State>>,
    Query(query): Query<ListQuery>,
) -> Result<Json<RequestList>, ApiError> {
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    let ids = state
        .db()
        .request_ids(query.status.as_deref(), query.key.as_deref(), query.since, limit)
        .map_err(ApiError::storage)?;
    let requests = ids.iter().map(|id| record(&state, id)).collect::<Result<_, _>>()?;
    Ok(Json(RequestList { requests }))
}

/// The members, replayed from the governance log.
#[utoipa::path(get, path = "/v1/members", tag = "governance", responses((status = 200, description = "members", body = MemberList)))]
pub(super) async fn members(Extract(state): Extract<Arc<State>>) -> Json<MemberList> {
    Json(member_list(&state.organisation()))
}

/// Ask to add a member (a governed request).
#[utoipa::path(post, path = "/v1/members", tag = "governance", request_body = AddMember,
    responses((status = 202, description = "the pending request", body = Pending), (status = 400, description = "`invalid_request`", body = ErrorBody)))]
pub(super) async fn add_member(
    Extract(state): Extract<Arc<State>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let operation = || {
        let add: AddMember = parse(&body)?;
        let bad = |e: shardvault_governance::Error| ApiError::bad(e.to_string());
        Ok(Operation::AddMember {
            name: add.name.parse().map_err(bad)?,
            role: add.role.parse().map_err(bad)?,
            public_key: add.public_key.parse().map_err(bad)?,
        })
    };
    propose(&state, &headers, &caller, "POST /v1/members", None, &body, operation).await
}

/// Ask to remove a member (a governed request).
#[utoipa::path(post, path = "/v1/members/remove", tag = "governance", request_body = RemoveMember,
    responses((status = 202, description = "the pending request", body = Pending), (status = 400, description = "`invalid_request`", body = ErrorBody)))]
pub(super) async fn remove_member(
    Extract(state): Extract<Arc<State>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let operation = || {
        let remove: RemoveMember = parse(&body)?;
        Ok(Operation::RemoveMember {
            name: remove.name.parse().map_err(|e: shardvault_governance::Error| ApiError::bad(e.to_string()))?,
        })
    };
    propose(&state, &headers, &caller, "POST /v1/members/remove", None, &body, operation).await
}

/// The policy in force.
#[utoipa::path(get, path = "/v1/policy", tag = "governance", responses((status = 200, description = "the policy", body = PolicyAnswer)))]
pub(super) async fn policy(Extract(state): Extract<Arc<State>>) -> Result<Json<PolicyAnswer>, ApiError> {
    Ok(Json(policy_answer(&state.organisation())?))
}

/// Ask to replace the policy (a governed request).
#[utoipa::path(post, path = "/v1/policy", tag = "governance", request_body = SetPolicy,
    responses((status = 202, description = "the pending request", body = Pending), (status = 400, description = "`invalid_request`", body = ErrorBody)))]
pub(super) async fn set_policy(
    Extract(state): Extract<Arc<State>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let operation = || {
        let set: SetPolicy = parse(&body)?;
        let policy: Policy = serde_json::from_value(set.policy).map_err(|e| ApiError::bad(format!("policy: {e}")))?;
        policy.validate(state.organisation().state().members()).map_err(|e| ApiError::bad(e.to_string()))?;
        Ok(Operation::SetPolicy { policy })
    };
    propose(&state, &headers, &caller, "POST /v1/policy", None, &body, operation).await
}

/// The genesis and every log entry, for clients to replay themselves.
#[utoipa::path(get, path = "/v1/governance", tag = "governance", responses((status = 200, description = "genesis and log", body = GovernanceLog)))]
pub(super) async fn governance(Extract(state): Extract<Arc<State>>) -> Result<Json<GovernanceLog>, ApiError> {
    let organisation = state.organisation();
    let genesis = organisation.genesis().to_bytes().map_err(|e| ApiError::bug(e.to_string()))?;
    Ok(Json(GovernanceLog {
        genesis: String::from_utf8(genesis).map_err(|_| ApiError::bug("canonical JSON is UTF-8"))?,
        organisation: organisation.state().organisation().to_string(),
        entries: organisation
            .log()
            .iter()
            .map(|e| LogEntryBody { request: e.request.clone(), approvals: e.approvals.clone() })
            .collect(),
        head: hex::encode(organisation.state().head()),
    }))
}

/// The audit log: every request, approval, rejection, execution and failure, hash-chained.
#[utoipa::path(get, path = "/v1/audit", tag = "governance", responses((status = 200, description = "the audit log, oldest first", body = AuditLog)))]
pub(super) async fn audit(Extract(state): Extract<Arc<State>>) -> Result<Json<AuditLog>, ApiError> {
    Ok(Json(AuditLog { entries: state.db().audit_log().map_err(ApiError::storage)? }))
}
