//! Backup export (docs/FORMATS.md, "Backups"): a governed request naming the
//! keys and one `ssh-ed25519` recipient per party. Once every member who
//! may approve has approved, each node of each key checks that itself,
//! seals its own share to its party's recipient and logs it; the coordinator
//! only assembles the sealed shares, with the keys' public facts, into the
//! package. It never sees a share.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State as Extract;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Json;
use base64::Engine;
use shardvault_api::{
    Attestation, BackupAddress, BackupList, BackupPackage, BackupRequest, BackupStatus, EncryptedSeedShare, ErrorBody,
    ErrorCode, ExportedKeyShare, HardenedKey, ShareAttestation, BACKUP_FORMAT, BACKUP_VERSION,
};
use shardvault_governance::{MemberKey, Operation};
use shardvault_types::derive::child_chain_code;
use shardvault_types::{DerivationPath, KeyId, KeyType, SessionId};
use shardvault_wire::{AddressStatement, Job, JobKind, NodeId, Outcome};

use super::{agree, answer, key_id, load_key, parse, requests, Answer, ApiError, Approved};
use crate::auth::{now, Caller};
use crate::db::KeyRecord;
use crate::jobs::{NodeResult, State};

/// Export an encrypted backup of keys' shares. Every member who may approve
/// must approve; each node encrypts its own share to its party's recipient.
#[utoipa::path(post, path = "/v1/backups", tag = "backups", request_body = BackupRequest,
    params(super::openapi::IdempotencyKey),
    responses(
        (status = 202, description = "a pending request every member must approve; once approved, its answer is the package", body = shardvault_api::Pending),
        (status = 400, description = "`invalid_request`", body = ErrorBody),
        (status = 404, description = "`unknown_key`", body = ErrorBody),
        (status = 409, description = "`idempotency_conflict`, `idempotency_in_progress`, `idempotency_outcome_unknown`", body = ErrorBody),
        (status = 502, description = "`node_failure`, `disagreement`", body = ErrorBody),
        (status = 503, description = "`storage`", body = ErrorBody),
    ))]
pub(super) async fn export(
    Extract(state): Extract<Arc<State>>,
    axum::Extension(caller): axum::Extension<Caller>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let operation = || {
        let asked: BackupRequest = parse(&body)?;
        let recipients = asked
            .recipients
            .iter()
            .map(|line| line.parse::<MemberKey>().map_err(|e| ApiError::bad(format!("recipient: {e}"))))
            .collect::<Result<Vec<_>, _>>()?;
        let mut keys = match asked.keys.is_empty() {
            true => state.db().keys().map_err(ApiError::storage)?,
            false => asked.keys.iter().map(|id| load_key(&state, &key_id(id)?)).collect::<Result<_, _>>()?,
        };
        if keys.is_empty() {
            return Err(ApiError::bad("there are no keys to back up"));
        }
        keys.sort_by_key(|key| key.key_id);
        keys.dedup_by_key(|key| key.key_id);
        if let Some(key) = keys.iter().find(|key| usize::from(key.threshold.parties()) != recipients.len()) {
            return Err(ApiError::bad(format!(
                "key {} has {} parties but {} recipients are given; give one per party, in party order",
                key.key_id,
                key.threshold.parties(),
                recipients.len()
            )));
        }
        Ok(Operation::ExportBackup { keys: keys.iter().map(|key| key.key_id).collect(), recipients })
    };
    requests::propose(&state, &headers, &caller, "POST /v1/backups", None, &body, operation).await
}

/// Runs an approved export: the keys and recipients the request names (not
/// the call's body), one job per key on every party's node.
pub(crate) async fn run(state: &State, approved: &Approved) -> Answer {
    let Operation::ExportBackup { keys, recipients } = &approved.request.operation else {
        return Err(ApiError::bug("an export call without an export request"));
    };
    let lines = recipients
        .iter()
        .map(|key| key.to_openssh().map_err(|e| ApiError::bug(e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    let mut exported = Vec::with_capacity(keys.len());
    let mut epochs = Vec::with_capacity(keys.len());
    for id in keys {
        let key = load_key(state, id)?;
        let job = Job {
            session: SessionId::random(),
            key_id: key.key_id,
            participants: key.nodes.clone(),
            kind: JobKind::ExportBackup { recipients: recipients.clone() },
            governance: Some(approved.governed.clone()),
        };
        let results = state.run(job).await;
        exported.push(entry(state, &key, &lines, &results)?);
        // `entry` refused any epoch but the key's.
        epochs.push((key.key_id, key.epoch));
    }
    let at = now();
    let request_id = approved.request.id.to_string();
    for (key, epoch) in &epochs {
        state.db().put_backup(&request_id, key, *epoch, at, &lines).map_err(ApiError::storage)?;
    }
    let package = BackupPackage {
        format: BACKUP_FORMAT.into(),
        version: BACKUP_VERSION,
        organisation: approved.request.organisation.to_string(),
        request_id,
        timestamp: at,
        exported_key_shares: exported,
    };
    answer(StatusCode::OK, &package)
}

/// One key's package entry from its nodes' sealed shares.
fn entry(
    state: &State,
    key: &KeyRecord,
    recipients: &[String],
    results: &BTreeMap<NodeId, NodeResult>,
) -> Result<ExportedKeyShare, ApiError> {
    let epoch = agree(results, |o| match o {
        Outcome::BackedUp { epoch, .. } => Some(*epoch),
        _ => None,
    })?;
    if epoch != key.epoch {
        return Err(ApiError::new(
            ErrorCode::Disagreement,
            format!(
                "the nodes sealed epoch {epoch} of key {} but it signs with epoch {}; finish its refresh \
                 (`shardvault refresh --key {} --finish`) and export again",
                key.key_id, key.epoch, key.key_id
            ),
        ));
    }
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let mut sealed = Vec::with_capacity(key.nodes.len());
    let mut seeds = Vec::new();
    let mut share_attestations = Vec::with_capacity(key.nodes.len());
    for (party, node) in &key.nodes {
        let Some(Ok(Outcome::BackedUp { sealed: own, seed_shares, hardened, signature, .. })) = results.get(node)
        else {
            return Err(ApiError::new(ErrorCode::NodeFailure, format!("node {node} sealed no share")));
        };
        let others: Vec<_> = key.nodes.keys().filter(|p| *p != party).collect();
        if !seed_shares.keys().eq(others) {
            return Err(ApiError::new(
                ErrorCode::NodeFailure,
                format!("node {node} sealed seed shares for other parties than the key's"),
            ));
        }
        // Whether it verifies is for the client to check, against the
        // cluster file it pins (the coordinator's word would prove nothing).
        share_attestations.push(ShareAttestation {
            party: party.get(),
            node: node.0,
            signature: hex::encode(signature),
            hardened: hardened
                .iter()
                .map(|(path, public_key)| HardenedKey { path: path.to_string(), public_key: hex::encode(public_key) })
                .collect(),
        });
        sealed.push(b64(own));
        seeds.extend(seed_shares.iter().map(|(to, file)| EncryptedSeedShare {
            from_party: party.get(),
            to_party: to.get(),
            encrypted_share: b64(file),
        }));
    }
    let mut entry = ExportedKeyShare {
        key_id: key.key_id.to_string(),
        key_type: KeyType::from(key.scheme).curve().into(),
        scheme: key.scheme.as_str().into(),
        threshold: key.threshold.threshold(),
        party_ids: key.nodes.keys().map(|party| party.get()).collect(),
        epoch: u64::from(epoch.0),
        root_public_key: hex::encode(&key.public_key),
        chaincode: hex::encode(child_chain_code(&key.public_key, &DerivationPath::root())),
        encryption_pubkeys: recipients.to_vec(),
        encrypted_shares: sealed,
        encrypted_seed_shares: seeds,
        share_attestations,
        addresses: addresses(state, &key.key_id)?,
        checksum: String::new(),
    };
    entry.checksum = entry.compute_checksum();
    Ok(entry)
}

/// Every address the nodes attested for the key, with their attestations.
fn addresses(state: &State, key_id: &KeyId) -> Result<Vec<BackupAddress>, ApiError> {
    let db = state.db();
    let statements = db.address_statements(key_id).map_err(ApiError::storage)?;
    let mut addresses: Vec<BackupAddress> = Vec::new();
    for bytes in statements {
        let statement = AddressStatement::from_bytes(&bytes)
            .map_err(|e| ApiError::new(ErrorCode::Storage, format!("a stored address statement: {e}")))?;
        let attestations = db.attestations(key_id, &bytes).map_err(ApiError::storage)?;
        addresses.push(BackupAddress {
            chain: statement.chain.name().into(),
            path: statement.path.to_string(),
            address: statement.address,
            bech32_prefix: statement.bech32_prefix,
            public_key: hex::encode(&statement.public_key),
            attestations: attestations
                .into_iter()
                .map(|(node, signature)| Attestation { node: node.0, signature: hex::encode(signature) })
                .collect(),
        });
    }
    Ok(addresses)
}

/// List every key with its epoch and its last backup.
#[utoipa::path(get, path = "/v1/backups", tag = "backups", responses(
    (status = 200, description = "every key; `current` is false where the active epoch has no backup", body = BackupList),
    (status = 503, description = "`storage`", body = ErrorBody),
))]
pub(super) async fn list(Extract(state): Extract<Arc<State>>) -> Result<Json<BackupList>, ApiError> {
    let db = state.db();
    let mut keys = Vec::new();
    for key in db.keys().map_err(ApiError::storage)? {
        let last_backup = db.last_backup(&key.key_id).map_err(ApiError::storage)?;
        let current = last_backup.as_ref().is_some_and(|b| b.epoch == u64::from(key.epoch.0));
        keys.push(BackupStatus {
            key_id: key.key_id.to_string(),
            scheme: key.scheme.as_str().into(),
            epoch: u64::from(key.epoch.0),
            last_backup,
            current,
        });
    }
    Ok(Json(BackupList { keys }))
}
