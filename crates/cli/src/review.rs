//! What you see is what you sign: a request as this CLI decodes it itself.
//!
//! The coordinator's record of a request carries its canonical bytes; every
//! word shown here — operation, chain, amount, recipient, fee, which rule
//! applies, whose approvals count — is recomputed from those bytes and from
//! a local replay of the governance log over the (pinned) genesis, never
//! taken from the coordinator's summary. Pure functions: fed with the API's
//! JSON, no network.

use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};
use shardvault_api::{GovernanceLog, GovernedRecord, RequestRecord, Signoff};
use shardvault_chains::transaction::Summary;
use shardvault_chains::Transaction;
use shardvault_governance::{
    facts_of, request_hash_hex, Approval, Asset, Facts, Genesis, LogEntry, Member, Operation, Payload, Request,
    Signing, State, REJECT_NAMESPACE,
};

/// A request whose bytes decode canonically and match the hash and the
/// labels the coordinator gave them.
#[derive(Debug, Clone)]
pub struct Checked {
    pub record: RequestRecord,
    pub governed: GovernedRecord,
    pub request: Request,
}

impl Checked {
    /// The canonical bytes: exactly what an approval signs.
    pub fn bytes(&self) -> &[u8] {
        self.governed.request.as_bytes()
    }
}

/// Checks the coordinator's record of request `id`: it is that request, its
/// bytes are a canonical request with that id, their SHA-256 is
/// `request_hash`, and the coordinator's labels (operation, key) agree with
/// them. Anything else is refused: the coordinator would be showing one
/// thing and asking for a signature on another.
pub fn check(record: &RequestRecord, id: &str) -> Result<Checked> {
    if record.request_id != id {
        bail!("asked for request {id}, the coordinator answered with {}; not trusting it", record.request_id);
    }
    let governed = record.governed.clone().ok_or_else(|| {
        anyhow!("request {id} ({}) is not a governed request: it has no bytes to review or approve", record.kind)
    })?;
    let bytes = governed.request.as_bytes();
    let request = Request::from_bytes(bytes)
        .with_context(|| format!("request {id}: the coordinator's request bytes are not a canonical request"))?;
    if request.id.to_string() != id {
        bail!("request {id}: its bytes are request {}; the coordinator swapped them", request.id);
    }
    let hash = request_hash_hex(bytes);
    if hash != governed.request_hash {
        bail!(
            "request {id}: the bytes hash to {hash}, the coordinator says {}; refusing (do not approve it)",
            governed.request_hash
        );
    }
    if request.operation.kind() != governed.operation {
        bail!(
            "request {id}: the bytes ask for {}, the coordinator labels it {}; refusing",
            request.operation.kind(),
            governed.operation
        );
    }
    let key = request.operation.key_id().map(|k| k.to_string());
    if key != governed.key_id {
        bail!("request {id}: the bytes name key {key:?}, the coordinator says {:?}; refusing", governed.key_id);
    }
    Ok(Checked { record: record.clone(), governed, request })
}

/// The governance state replayed locally, and whether its genesis is pinned.
#[derive(Debug, Clone)]
pub struct Governance {
    pub state: State,
    /// Every member the log ever had (for approvals made before a removal).
    pub ever: Vec<Member>,
    /// The pinned genesis file, if one was given.
    pub pinned: Option<String>,
}

/// Reads a pinned genesis file (`--genesis`, SHARDVAULT_GENESIS).
pub fn read_pinned(path: &Path) -> Result<Genesis> {
    crate::daemon::read_genesis(path)
        .context("--genesis (SHARDVAULT_GENESIS) must name the organisation's genesis file")
}

/// Replays the coordinator's governance log over its genesis, which must be
/// `pinned` when given; every entry is checked as the nodes check it.
pub fn replay(log: &GovernanceLog, pinned: Option<(&Genesis, &Path)>) -> Result<Governance> {
    let genesis = Genesis::from_bytes(log.genesis.as_bytes()).context("the coordinator's genesis does not read")?;
    let id = genesis.id()?.to_string();
    if let Some((pinned, file)) = pinned {
        let want = pinned.id()?.to_string();
        if want != id {
            bail!(
                "the coordinator serves organisation {id}, not the pinned one ({want}, {}): wrong --api, or a \
                 coordinator that is not your organisation's",
                file.display()
            );
        }
    }
    if log.organisation != id {
        bail!("the coordinator names organisation {} but its genesis is {id}", log.organisation);
    }
    let mut state = State::genesis(&genesis)?;
    let mut ever = state.members().to_vec();
    for (index, entry) in log.entries.iter().enumerate() {
        let entry = LogEntry { request: entry.request.clone(), approvals: entry.approvals.clone() };
        state.apply(&entry).with_context(|| {
            format!("governance log entry {} does not replay; the coordinator's log is not valid", index + 1)
        })?;
        for member in state.members() {
            if !ever.iter().any(|m| m.public_key == member.public_key) {
                ever.push(member.clone());
            }
        }
    }
    let head = hex::encode(state.head());
    if head != log.head {
        bail!("the governance log replays to head {head}, the coordinator says {}", log.head);
    }
    Ok(Governance { state, ever, pinned: pinned.map(|(_, file)| file.display().to_string()) })
}

impl Governance {
    /// How the organisation was checked, for the output.
    pub fn organisation(&self) -> Value {
        let id = self.state.organisation().to_string();
        match &self.pinned {
            Some(file) => json!({ "id": id, "pinned": true, "genesis": file }),
            None => json!({
                "id": id, "pinned": false,
                "warning": "UNPINNED: the organisation (members, policy) is the coordinator's word; give --genesis \
                            FILE or SHARDVAULT_GENESIS to check it"
            }),
        }
    }

    /// The members as JSON.
    pub fn members(&self) -> Value {
        let members: Vec<Value> = self
            .state
            .members()
            .iter()
            .map(|m| {
                json!({
                    "name": m.name.as_str(), "role": m.role.to_string(),
                    "public_key": m.public_key.to_openssh().unwrap_or_default(),
                    "fingerprint": m.public_key.fingerprint(),
                })
            })
            .collect();
        Value::Array(members)
    }
}

/// `native`, or the token.
fn asset_name(asset: &Asset) -> String {
    match asset {
        Asset::Native => "native".into(),
        Asset::Token(token) => token.clone(),
    }
}

/// The operation, decoded: its fields as the request states them, and for
/// a signing request what the chains crate reads in the payload.
pub fn operation(request: &Request) -> Value {
    let mut value = serde_json::to_value(&request.operation).unwrap_or(Value::Null);
    if let (Operation::AddMember { public_key, .. }, Value::Object(map)) = (&request.operation, &mut value) {
        map.insert("fingerprint".into(), json!(public_key.fingerprint()));
    }
    if let (Operation::Sign { payload, .. }, Value::Object(map)) = (&request.operation, &mut value) {
        map.insert("decoded".into(), decoded(&request.operation, payload));
    }
    value
}

/// What the payload is, decoded locally (or why it cannot be).
fn decoded(operation: &Operation, payload: &Payload) -> Value {
    let facts = facts_of(operation);
    match payload {
        Payload::Transaction { chain, network, .. } => match transaction(payload) {
            Ok(summary) => {
                let facts = facts.ok();
                let (transfers, calls) = match facts.as_ref().and_then(|f| f.signing.as_ref()) {
                    Some(Signing::Transaction { transfers, calls }) => (
                        transfers
                            .iter()
                            .map(|t| json!({ "to": t.to, "amount": t.amount.map(|a| a.to_string()), "asset": asset_name(&t.asset) }))
                            .collect::<Vec<_>>(),
                        calls
                            .iter()
                            .map(|c| json!({ "to": c.to, "selector": c.selector.map(|s| format!("0x{}", hex::encode(s))) }))
                            .collect::<Vec<_>>(),
                    ),
                    _ => (Vec::new(), Vec::new()),
                };
                let bound = facts.as_ref().and_then(|f| f.network.clone());
                json!({
                    "type": "transaction",
                    "chain": chain.name(),
                    "network": bound.clone().unwrap_or_else(|| network.clone()),
                    "network_committed": bound.is_some(),
                    "transfers": transfers,
                    "calls": calls,
                    "fee": fee(&summary),
                    "summary": summary,
                })
            }
            Err(error) => json!({ "type": "transaction", "error": error }),
        },
        Payload::Message { format, message } => {
            let mut value = json!({ "type": "message", "format": format.name() });
            match std::str::from_utf8(message) {
                Ok(text) if !text.chars().any(|c| c.is_control() && c != '\n' && c != '\t') => {
                    value["text"] = json!(text);
                }
                _ => value["hex"] = json!(hex::encode(message)),
            }
            if let Err(error) = facts {
                value["error"] = json!(error.to_string());
            }
            value
        }
        Payload::RawDigest { digest } => json!({
            "type": "raw_digest", "hex": hex::encode(digest),
            "warning": "a raw digest can be any transaction: nothing is known about what it signs"
        }),
        Payload::RawBytes { bytes } => json!({
            "type": "raw_bytes", "hex": hex::encode(bytes),
            "warning": "raw bytes can be any transaction: nothing is known about what they sign"
        }),
    }
}

/// The transaction's summary, as the signer will decode it.
fn transaction(payload: &Payload) -> Result<Summary, String> {
    let unsigned = shardvault_governance::unsigned(payload)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| "not a transaction".to_string())?;
    let tx = Transaction::parse(unsigned).map_err(|e| e.to_string())?;
    tx.summary().map_err(|e| e.to_string())
}

/// The fee (or the most it may be), in the chain's smallest unit.
fn fee(summary: &Summary) -> Option<String> {
    match summary {
        Summary::Psbt(psbt) => Some(psbt.fee_sat.to_string()),
        Summary::Evm(evm) => u128::from(evm.gas_limit).checked_mul(evm.max_fee_per_gas).map(|fee| fee.to_string()),
        Summary::SingleSigner(tx) => tx.fee.clone(),
    }
}

/// Which rule applies and whether the approvals satisfy it, as the local
/// replay sees it.
pub fn policy(checked: &Checked, governance: &Governance, now: u64) -> Value {
    let state = &governance.state;
    let armored: Vec<String> = checked.governed.approvals.iter().map(|a| a.signature.clone()).collect();
    let count = state.count(checked.bytes(), &armored);
    let counted: Vec<&str> = count.approvers.iter().map(|m| m.name.as_str()).collect();
    let note = "period limits are counted by the nodes from their own spend ledgers; this evaluation assumes \
                nothing was spent yet";
    let facts: Result<Facts, _> = facts_of(&checked.request.operation);
    let evaluated = facts
        .and_then(|facts| state.decide(&checked.request.operation, &facts, &shardvault_governance::NothingSpent, now));
    let mut value = match evaluated {
        Ok(decision) => {
            let requires: Vec<Value> = decision
                .groups
                .iter()
                .map(|g| {
                    json!({ "count": g.count, "roles": g.roles.iter().map(|r| r.to_string()).collect::<Vec<_>>(),
                            "members": g.members.iter().map(|m| m.as_str()).collect::<Vec<_>>() })
                })
                .collect();
            let check = decision.check(&count.approvers);
            json!({
                "rule": decision.rule, "rule_index": decision.rule_index, "requires": requires,
                "satisfied": check.is_ok(),
                "shortfall": check.err().map(|e| e.to_string()),
            })
        }
        Err(error) => json!({ "denied": error.to_string(), "satisfied": false }),
    };
    value["counted_approvers"] = json!(counted);
    value["not_counted"] = json!(count.ignored);
    value["note"] = json!(note);
    if checked.request.operation.is_governance() {
        value["owner_recovery"] =
            json!("a governance change approved by a strict majority of the owners is valid whatever the policy says");
    }
    if state.policy().change_delay_secs > 0 {
        value["change_delay_secs"] = json!(state.policy().change_delay_secs);
    }
    value
}

/// Each approval (or rejection) with what the local replay makes of it.
fn signoffs(checked: &Checked, governance: &Governance, list: &[Signoff], namespace: Option<&str>) -> Vec<Value> {
    list.iter()
        .map(|signoff| {
            let verified = verify_signoff(checked.bytes(), &signoff.signature, namespace, governance);
            let mut value = json!({
                "member": signoff.member, "fingerprint": signoff.fingerprint,
                "signature": signoff.signature, "at": signoff.at,
            });
            match verified {
                Ok(member) if member.name.as_str() == signoff.member => value["verified"] = json!(true),
                Ok(member) => {
                    value["verified"] = json!(true);
                    value["warning"] =
                        json!(format!("made by {}, not by {} as the coordinator says", member.name, signoff.member));
                }
                Err(error) => {
                    value["verified"] = json!(false);
                    value["error"] = json!(error);
                }
            }
            value
        })
        .collect()
}

/// The current member whose signature `armored` is over `bytes`
/// (`namespace` None: an approval).
fn verify_signoff<'a>(
    bytes: &[u8],
    armored: &str,
    namespace: Option<&str>,
    governance: &'a Governance,
) -> Result<&'a Member, String> {
    let approval: Approval = armored.parse().map_err(|e: shardvault_governance::Error| e.to_string())?;
    let key = approval.claimed_signer().map_err(|e| e.to_string())?;
    let member = governance
        .state
        .members()
        .iter()
        .find(|m| m.public_key == key)
        .ok_or_else(|| format!("{} is not a current member's key", key.fingerprint()))?;
    match namespace {
        None => member.public_key.verify(bytes, &approval),
        Some(namespace) => member.public_key.verify_in(namespace, bytes, &approval),
    }
    .map_err(|e| e.to_string())?;
    Ok(member)
}

/// `request show`: the request as decoded here, the rule, the approvals and
/// (once it ran) the call's answer.
pub fn review(checked: &Checked, governance: &Governance, now: u64) -> Value {
    let request = &checked.request;
    let creator = governance.state.member_by_fingerprint(&request.creator).map(|m| m.name.to_string());
    let organisation_ok = request.organisation == governance.state.organisation();
    let mut value = json!({
        "request_id": checked.record.request_id,
        "status": checked.record.status,
        "request_hash": checked.governed.request_hash,
        "hash_verified": true,
        "organisation": governance.organisation(),
        "creator": { "fingerprint": request.creator, "member": creator, "coordinator_says": checked.governed.creator },
        "created_at": request.created_at,
        "expires_at": request.expires_at,
        "expired": now >= request.expires_at,
        "operation": operation(request),
        "policy": policy(checked, governance, now),
        "approvals": signoffs(checked, governance, &checked.governed.approvals, None),
        "rejections": signoffs(checked, governance, &checked.governed.rejections, Some(REJECT_NAMESPACE)),
        "request": checked.governed.request,
    });
    if !organisation_ok {
        value["organisation"]["error"] =
            json!(format!("the request is for organisation {}, not this one", request.organisation));
    }
    if matches!(checked.record.status.as_str(), "succeeded" | "failed") {
        value["response"] = checked.record.response.clone();
    }
    value
}

/// Refuses to approve a request that cannot be what the approver thinks:
/// another organisation, a payload that does not decode, or not pending.
pub fn approvable(checked: &Checked, governance: &Governance, now: u64) -> Result<()> {
    let id = &checked.record.request_id;
    if now >= checked.request.expires_at {
        bail!("request {id} expired at {} (now {now}): nodes refuse it; create it again", checked.request.expires_at);
    }
    if checked.request.organisation != governance.state.organisation() {
        bail!("request {id} is for organisation {}, not this one; not signing it", checked.request.organisation);
    }
    if let Err(error) = facts_of(&checked.request.operation) {
        bail!("request {id}: {error}; reject it rather than approve what cannot be read");
    }
    if checked.record.status != "pending" {
        bail!("request {id} is {}, not pending: there is nothing to sign", checked.record.status);
    }
    // The approvers vouch for the history a replacement names, which the
    // new machine adopts (docs/GOVERNANCE.md): the whole log, as replayed here.
    if let Operation::ReplaceNode { log_head, .. } = &checked.request.operation {
        if governance.state.head().as_slice() != log_head.as_slice() {
            bail!(
                "request {id} was made at governance log head {}, but the log replayed here is at {}: the \
                 organisation changed since, or the request was made over another history; reject it and ask \
                 for the replacement again",
                hex::encode(log_head),
                hex::encode(governance.state.head())
            );
        }
    }
    Ok(())
}

/// Checks an approval made elsewhere (`ssh-keygen -Y sign`) before sending
/// it: it parses, is a current member's, and verifies over exactly these bytes.
pub fn check_external(
    checked: &Checked,
    governance: &Governance,
    armored: &str,
    namespace: Option<&str>,
) -> Result<String> {
    verify_signoff(checked.bytes(), armored, namespace, governance)
        .map(|m| m.name.to_string())
        .map_err(|e| anyhow!("the signature does not approve request {}: {e}", checked.record.request_id))
}

/// Text form of a JSON value: one `name: value` per line, nested values
/// indented; armored signatures and the canonical request left out (see `--json`).
pub fn outline(value: &Value, indent: usize, out: &mut String) {
    let pad = "  ".repeat(indent);
    match value {
        Value::Object(map) => {
            let mut fields: Vec<(&String, &Value)> = map.iter().collect();
            fields.sort_by_key(|(name, _)| (rank(name), name.as_str()));
            for (name, field) in fields {
                if matches!(name.as_str(), "signature" | "request") && field.is_string() {
                    continue;
                }
                match field {
                    Value::Object(_) | Value::Array(_) if !is_empty(field) => {
                        out.push_str(&format!("{pad}{name}:\n"));
                        outline(field, indent + 1, out);
                    }
                    other => out.push_str(&format!("{pad}{name}: {}\n", scalar(other))),
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                match item {
                    Value::Object(_) | Value::Array(_) => {
                        out.push_str(&format!("{pad}-\n"));
                        outline(item, indent + 1, out);
                    }
                    other => out.push_str(&format!("{pad}- {}\n", scalar(other))),
                }
            }
        }
        other => out.push_str(&format!("{pad}{}\n", scalar(other))),
    }
}

/// Where a field goes in the text form: what is asked first, then who decides.
fn rank(name: &str) -> usize {
    const FIRST: [&str; 18] = [
        "request_id",
        "status",
        "kind",
        "type",
        "chain",
        "network",
        "transfers",
        "operation",
        "decoded",
        "organisation",
        "creator",
        "policy",
        "rule",
        "denied",
        "satisfied",
        "shortfall",
        "approvals",
        "rejections",
    ];
    FIRST.iter().position(|first| *first == name).unwrap_or(FIRST.len())
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Object(map) => map.is_empty(),
        Value::Array(items) => items.is_empty(),
        _ => false,
    }
}

fn scalar(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Array(_) => "[]".into(),
        Value::Object(_) => "{}".into(),
        other => other.to_string(),
    }
}

/// One line of `request list`: decoded here, like `request show`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Row {
    pub id: String,
    pub created: Option<u64>,
    pub status: String,
    pub operation: String,
    pub key: Option<String>,
    pub chain: Option<String>,
    pub asset: Option<String>,
    pub amount: Option<String>,
    pub destination: Option<String>,
    /// Members whose approvals verify under the local replay; others as
    /// `name (not counted)`.
    pub approvers: Vec<String>,
    /// The signed transaction's id, or a message's signature.
    pub tx: Option<String>,
    /// `ok`, or why the request could not be checked.
    pub check: String,
}

/// The history line of `record`.
pub fn row(record: &RequestRecord, governance: &Governance) -> Row {
    let mut row = Row {
        id: record.request_id.clone(),
        status: record.status.clone(),
        operation: record.kind.clone(),
        check: "ok".into(),
        ..Row::default()
    };
    if record.status == "succeeded" {
        row.tx =
            ["id", "signature"].iter().find_map(|f| record.response.get(*f).and_then(Value::as_str)).map(String::from);
    }
    let checked = match check(record, &record.request_id) {
        Ok(checked) => checked,
        Err(_) if record.governed.is_none() => {
            row.check = "not a governed request".into();
            return row;
        }
        Err(error) => {
            row.operation = "UNVERIFIED".into();
            row.check = format!("{error:#}");
            return row;
        }
    };
    let request = &checked.request;
    row.created = Some(request.created_at);
    row.operation = request.operation.kind().into();
    row.key = request.operation.key_id().map(|k| k.to_string());
    match facts_of(&request.operation) {
        Ok(facts) => {
            row.chain = facts.chain.map(|c| c.name().to_string());
            if let Some(Signing::Transaction { transfers, .. }) = &facts.signing {
                let join = |items: Vec<String>| (!items.is_empty()).then(|| items.join(";"));
                row.asset = join(transfers.iter().map(|t| asset_name(&t.asset)).collect());
                row.amount = join(
                    transfers.iter().map(|t| t.amount.map_or_else(|| "unknown".into(), |a| a.to_string())).collect(),
                );
                row.destination =
                    join(transfers.iter().map(|t| t.to.clone().unwrap_or_else(|| "none".into())).collect());
            }
        }
        Err(error) => row.check = error.to_string(),
    }
    row.approvers = checked
        .governed
        .approvals
        .iter()
        .map(|a| match verify_signoff(checked.bytes(), &a.signature, None, governance) {
            Ok(member) => member.name.to_string(),
            Err(_) => format!("{} (not counted)", a.member),
        })
        .collect();
    row
}

/// The CSV columns of `request list --csv`.
const COLUMNS: [&str; 12] = [
    "id",
    "created",
    "status",
    "operation",
    "key",
    "chain",
    "asset",
    "amount",
    "destination",
    "approvers",
    "tx",
    "check",
];

/// `request list --csv`: a header row, then one row per request; fields
/// quoted as RFC 4180 says, lines ending CRLF.
pub fn csv(rows: &[Row]) -> String {
    let mut out = String::new();
    let line = |fields: Vec<String>| fields.iter().map(|f| csv_field(f)).collect::<Vec<_>>().join(",") + "\r\n";
    out.push_str(&line(COLUMNS.iter().map(|c| c.to_string()).collect()));
    for row in rows {
        let text = |o: &Option<String>| o.clone().unwrap_or_default();
        out.push_str(&line(vec![
            row.id.clone(),
            row.created.map(|c| c.to_string()).unwrap_or_default(),
            row.status.clone(),
            row.operation.clone(),
            text(&row.key),
            text(&row.chain),
            text(&row.asset),
            text(&row.amount),
            text(&row.destination),
            row.approvers.join(";"),
            text(&row.tx),
            row.check.clone(),
        ]));
    }
    out
}

/// One CSV field: quoted (inner quotes doubled) when it holds a comma, a
/// quote, CR or LF, or starts or ends with a blank.
pub fn csv_field(field: &str) -> String {
    let needs = field.contains([',', '"', '\r', '\n']) || field.starts_with(' ') || field.ends_with(' ');
    match needs {
        true => format!("\"{}\"", field.replace('"', "\"\"")),
        false => field.to_string(),
    }
}

/// `request list` without `--json` or `--csv`: aligned columns.
pub fn table(rows: &[Row]) -> String {
    let mut out = String::new();
    for row in rows {
        let amount = match (&row.amount, &row.asset) {
            (Some(amount), Some(asset)) => format!("{amount} {asset}"),
            _ => String::new(),
        };
        out.push_str(&format!(
            "{}  {:<10}  {:<9}  {:<14}  {:<9}  {}{}{}{}\n",
            row.id,
            row.created.map(|c| c.to_string()).unwrap_or_default(),
            row.status,
            row.operation,
            row.chain.clone().unwrap_or_default(),
            if amount.is_empty() { String::new() } else { format!("{amount} ") },
            row.destination.as_ref().map(|d| format!("to {d} ")).unwrap_or_default(),
            if row.approvers.is_empty() { String::new() } else { format!("approved by {} ", row.approvers.join(", ")) },
            row.tx.as_ref().map(|t| format!("tx {t}")).unwrap_or_default(),
        ));
        if row.check != "ok" {
            out.push_str(&format!("    NOT CHECKED: {}\n", row.check));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use shardvault_governance::{Identity, Owner};

    use super::*;

    pub(crate) struct Org {
        pub owner: Identity,
        pub genesis: Genesis,
    }

    pub(crate) fn org() -> Org {
        let owner = Identity::generate("alice").unwrap();
        let genesis = Genesis::new(
            "acme",
            vec![Owner { name: "alice".parse().unwrap(), public_key: owner.member_key().unwrap() }],
            1_767_225_600,
        )
        .unwrap();
        Org { owner, genesis }
    }

    fn log(org: &Org) -> GovernanceLog {
        let state = State::genesis(&org.genesis).unwrap();
        GovernanceLog {
            genesis: String::from_utf8(org.genesis.to_bytes().unwrap()).unwrap(),
            organisation: org.genesis.id().unwrap().to_string(),
            entries: Vec::new(),
            head: hex::encode(state.head()),
        }
    }

    /// A record of a refresh request by the owner, approved by them.
    fn record(org: &Org) -> RequestRecord {
        let key_id = "0123456789abcdef0123456789abcdef".parse().unwrap();
        let request = Request::new(
            org.genesis.id().unwrap(),
            &org.owner.member_key().unwrap(),
            Operation::Refresh { key_id },
            1_767_225_600,
            3600,
        )
        .unwrap();
        let text = String::from_utf8(request.to_bytes().unwrap()).unwrap();
        let signature = org.owner.approve(text.as_bytes()).unwrap().to_armored().unwrap();
        RequestRecord {
            request_id: request.id.to_string(),
            kind: "POST /v1/keys/{id}/refresh".into(),
            status: "pending".into(),
            response: Value::Null,
            governed: Some(GovernedRecord {
                request_hash: request_hash_hex(text.as_bytes()),
                request: text,
                operation: "refresh".into(),
                key_id: Some(key_id.to_string()),
                creator: "alice".into(),
                created_at: 1_767_225_600,
                expires_at: 1_767_229_200,
                approvals: vec![Signoff {
                    member: "alice".into(),
                    fingerprint: org.owner.member_key().unwrap().fingerprint(),
                    signature,
                    at: 1_767_225_601,
                }],
                rejections: Vec::new(),
            }),
        }
    }

    #[test]
    fn csv_fields_are_quoted_as_rfc_4180_says() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field(""), "");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("two\nlines"), "\"two\nlines\"");
        assert_eq!(csv_field("cr\rhere"), "\"cr\rhere\"");
        assert_eq!(csv_field(" padded"), "\" padded\"");
        let rows = vec![Row {
            id: "r1".into(),
            created: Some(7),
            status: "succeeded".into(),
            operation: "sign".into(),
            approvers: vec!["alice".into(), "bob, jr".into()],
            check: "ok".into(),
            ..Row::default()
        }];
        let text = csv(&rows);
        let mut lines = text.split("\r\n");
        assert_eq!(
            lines.next(),
            Some("id,created,status,operation,key,chain,asset,amount,destination,approvers,tx,check")
        );
        assert_eq!(lines.next(), Some("r1,7,succeeded,sign,,,,,,\"alice;bob, jr\",,ok"));
        assert_eq!(lines.next(), Some(""));
    }

    #[test]
    fn a_record_that_decodes_and_matches_its_hash_is_reviewed_from_its_bytes() {
        let org = org();
        let record = record(&org);
        let governance = replay(&log(&org), Some((&org.genesis, Path::new("genesis.json")))).unwrap();
        let checked = check(&record, &record.request_id).unwrap();
        let review = review(&checked, &governance, 1_767_225_700);
        assert_eq!(review["operation"]["kind"], "refresh");
        assert_eq!(review["organisation"]["pinned"], true);
        assert_eq!(review["policy"]["rule"], "one owner or admin");
        assert_eq!(review["policy"]["satisfied"], true);
        assert_eq!(review["policy"]["counted_approvers"], json!(["alice"]));
        assert_eq!(review["approvals"][0]["verified"], true);
        assert!(review["approvals"][0]["signature"].as_str().unwrap().starts_with("-----BEGIN SSH SIGNATURE-----"));
        approvable(&checked, &governance, 1_767_225_700).unwrap();
        assert!(approvable(&checked, &governance, 1_767_229_200).is_err());
        // Unpinned: said so.
        let unpinned = replay(&log(&org), None).unwrap();
        let review = super::review(&checked, &unpinned, 1_767_225_700);
        assert!(review["organisation"]["warning"].as_str().unwrap().contains("UNPINNED"));
    }

    #[test]
    fn a_tampered_request_or_hash_is_refused() {
        let org = org();
        let good = record(&org);
        let id = good.request_id.clone();
        fn governed(r: &mut RequestRecord) -> &mut GovernedRecord {
            r.governed.as_mut().unwrap()
        }

        // The hash the coordinator shows is not the bytes' hash.
        let mut record = good.clone();
        governed(&mut record).request_hash = "00".repeat(32);
        assert!(format!("{:#}", check(&record, &id).unwrap_err()).contains("hash"));

        // The bytes changed (and the hash with them, so only decoding catches it):
        // a non-canonical encoding (a blank added).
        let mut record = good.clone();
        let text = governed(&mut record).request.replacen(",\"id\"", ", \"id\"", 1);
        governed(&mut record).request_hash = request_hash_hex(text.as_bytes());
        governed(&mut record).request = text;
        assert!(check(&record, &id).is_err());

        // Another operation under the same labels.
        let mut record = good.clone();
        let text = governed(&mut record).request.replace("\"refresh\"", "\"create_key\"");
        governed(&mut record).request_hash = request_hash_hex(text.as_bytes());
        governed(&mut record).request = text;
        assert!(check(&record, &id).is_err());

        // The coordinator's label disagrees with the bytes.
        let mut record = good.clone();
        governed(&mut record).operation = "sign".into();
        assert!(format!("{:#}", check(&record, &id).unwrap_err()).contains("labels"));

        // Another request's (valid) bytes under this id.
        let other = super::tests::record(&org);
        let mut record = good.clone();
        record.governed = other.governed.clone();
        assert!(format!("{:#}", check(&record, &id).unwrap_err()).contains("swapped"));

        // The answer is about another request.
        assert!(check(&good, &other.request_id).is_err());
        assert!(check(&good, &id).is_ok());
    }

    #[test]
    fn a_genesis_other_than_the_pinned_one_is_refused() {
        let (ours, theirs) = (org(), org());
        let error = replay(&log(&theirs), Some((&ours.genesis, Path::new("genesis.json")))).unwrap_err();
        assert!(error.to_string().contains("not the pinned one"), "{error}");
        let mut forged = log(&ours);
        forged.head = "00".repeat(32);
        assert!(replay(&forged, None).is_err());
    }

    #[test]
    fn an_approval_by_someone_else_or_over_other_bytes_does_not_count() {
        let org = org();
        let governance = replay(&log(&org), None).unwrap();
        let mut record = record(&org);
        let stranger = Identity::generate("mallory").unwrap();
        let signoffs = &mut record.governed.as_mut().unwrap().approvals;
        signoffs[0].signature = stranger.approve(b"other bytes").unwrap().to_armored().unwrap();
        signoffs.push(Signoff {
            member: "alice".into(),
            fingerprint: String::new(),
            signature: org.owner.approve(b"other bytes").unwrap().to_armored().unwrap(),
            at: 0,
        });
        let checked = check(&record, &record.request_id).unwrap();
        let review = review(&checked, &governance, 1_767_225_700);
        assert_eq!(review["policy"]["satisfied"], false);
        assert_eq!(review["approvals"][0]["verified"], false);
        assert_eq!(review["approvals"][1]["verified"], false);
        assert!(check_external(&checked, &governance, &signoffs_of(&checked)[1], None).is_err());
        let good = org.owner.approve(checked.bytes()).unwrap().to_armored().unwrap();
        assert_eq!(check_external(&checked, &governance, &good, None).unwrap(), "alice");
        // A rejection signature is not an approval.
        let reject = org.owner.sign_in(REJECT_NAMESPACE, checked.bytes()).unwrap().to_armored().unwrap();
        assert!(check_external(&checked, &governance, &reject, None).is_err());
        assert!(check_external(&checked, &governance, &reject, Some(REJECT_NAMESPACE)).is_ok());
    }

    #[test]
    fn a_transaction_is_described_from_its_own_bytes() {
        let org = org();
        let generator = hex::decode("0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798").unwrap();
        let sample = shardvault_chains::sample::transfer(
            shardvault_chains::Chain::Ethereum,
            shardvault_chains::KeyType::EcdsaSecp256k1,
            &generator,
        )
        .unwrap();
        let key_id = "0123456789abcdef0123456789abcdef".parse().unwrap();
        let operation = Operation::Sign {
            key_id,
            path: "m/9'/0'/60'/0'/0'/0'".parse().unwrap(),
            payload: Payload::Transaction {
                chain: shardvault_chains::Chain::Ethereum,
                network: "1".into(),
                unsigned: sample.unsigned,
            },
        };
        let request =
            Request::new(org.genesis.id().unwrap(), &org.owner.member_key().unwrap(), operation, 1_767_225_600, 3600)
                .unwrap();
        let decoded = &super::operation(&request)["decoded"];
        assert_eq!(decoded["chain"], "ethereum", "{decoded}");
        assert_eq!((&decoded["network"], &decoded["network_committed"]), (&json!("1"), &json!(true)));
        let transfer = &decoded["transfers"][0];
        assert_eq!(transfer["amount"], "10000000000000000", "{decoded}");
        assert_eq!(transfer["asset"], "native");
        assert!(transfer["to"].as_str().unwrap().eq_ignore_ascii_case("0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf"));
        assert_eq!(decoded["fee"], (21_000u128 * 30_000_000_000).to_string());
        assert_eq!(decoded["calls"], json!([]));

        // The history line says the same, from the same bytes, whatever the coordinator labels.
        let mut record = super::tests::record(&org);
        let text = String::from_utf8(request.to_bytes().unwrap()).unwrap();
        record.request_id = request.id.to_string();
        let governed = record.governed.as_mut().unwrap();
        governed.request_hash = request_hash_hex(text.as_bytes());
        governed.request = text;
        governed.operation = "sign".into();
        governed.approvals.clear();
        let row = row(&record, &replay(&log(&org), None).unwrap());
        assert_eq!(row.check, "ok");
        assert_eq!((row.operation.as_str(), row.chain.as_deref()), ("sign", Some("ethereum")));
        assert_eq!(row.amount.as_deref(), Some("10000000000000000"));
        assert!(row.destination.unwrap().eq_ignore_ascii_case("0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf"));
    }

    fn signoffs_of(checked: &Checked) -> Vec<String> {
        checked.governed.approvals.iter().map(|a| a.signature.clone()).collect()
    }
}
