//! The demo's governed part: the devnet's owner adds a treasurer (admin) and
//! a security officer (member), sets a policy — small Ethereum transfers on
//! one admin's approval within a daily limit, anything else on an admin's
//! and the security officer's — and gets transfers approved. The third small
//! transfer is over the day's limit: the coordinator (which cannot count
//! spends) runs it, and every node refuses it for want of the security
//! officer's approval. The fourth carries both approvals and is signed.

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use shardvault_api::{AddMember, CreateKey, Pending, RequestRecord, SetPolicy, Target, TransactionRequest};
use shardvault_chains::Chain;
use shardvault_governance::Identity;

use crate::client::Api;
use crate::devnet::Devnet;
use crate::report::{GovernanceReport, MemberReport, RequestReport};

/// Wei moved by the EVM sample transfer.
const SAMPLE_WEI: u128 = 10_000_000_000_000_000;

/// The members the demo adds: name, role.
const MEMBERS: [(&str, &str); 2] = [("treasurer", "admin"), ("security", "member")];

/// The demo's policy for key `key_id` (docs/POLICY.md).
fn policy(key_id: &str) -> Value {
    let day_max = (2 * SAMPLE_WEI).to_string();
    json!({
        "version": 1,
        "rules": [
            { "name": "raw signing denied", "when": { "signing": ["raw"] }, "action": "deny" },
            {
                "name": "small ethereum transfers",
                "when": {
                    "keys": [key_id], "chains": ["ethereum"], "signing": ["transaction"], "assets": ["native"],
                    "max_amount": SAMPLE_WEI.to_string(), "period": { "window": "24h", "max": day_max }
                },
                "action": { "require": [{ "count": 1, "roles": ["admin"] }] }
            },
            {
                "name": "other signatures with this key",
                "when": { "keys": [key_id], "operations": ["sign"] },
                "action": { "require": [{ "count": 1, "roles": ["admin"] }, { "count": 1, "members": ["security"] }] }
            },
            {
                "name": "everything else",
                "when": {},
                "action": { "require": [{ "count": 1, "roles": ["owner", "admin"] }] }
            }
        ]
    })
}

/// One member of the demo: a client logged in as them.
struct Acting {
    api: Api,
}

pub fn run(devnet: &Devnet, owner: &Api) -> Result<GovernanceReport> {
    let dir = devnet.dir.join("members");
    std::fs::create_dir_all(&dir)?;
    let mut requests = Vec::new();
    let mut acting = Vec::new();
    for (name, role) in MEMBERS {
        let identity = Identity::generate(name)?;
        identity.write(&dir.join(name), None)?;
        let body = AddMember { name: name.into(), role: role.into(), public_key: identity.member_key()?.to_openssh()? };
        let record = owner_request(owner, "/v1/members", &body)?;
        requests.push(report(&record, &format!("add {name} as {role}")));
        let api = Api::connect(&devnet.api, devnet.tls_ca.as_deref(), false)?.login(identity)?;
        acting.push(Acting { api });
    }
    let [treasurer, security] = [&acting[0], &acting[1]];
    let create = CreateKey { scheme: "ecdsa-secp256k1".into(), threshold: 2, parties: 3, nodes: None };
    let key = owner.create_key(&create, None)?;
    let target = Target { chain: "ethereum".into(), index: Some(0), ..Target::default() };
    let address = owner.address(&key.key_id, &target.clone().into(), None)?;
    let record = owner_request(owner, "/v1/policy", &SetPolicy { policy: policy(&key.key_id) })?;
    requests.push(report(&record, "set the treasury policy"));

    let public_key = hex::decode(&address.public_key)?;
    let sample =
        shardvault_chains::sample::transfer(Chain::Ethereum, shardvault_chains::KeyType::EcdsaSecp256k1, &public_key)?;
    let body = TransactionRequest {
        network: Some(sample.network.to_string()),
        tx_hex: Some(hex::encode(&sample.unsigned)),
        ..TransactionRequest::to(target)
    };
    let transfer = |purpose: &str, approvers: &[&Acting]| -> Result<RequestReport> {
        let path = format!("/v1/keys/{}/transactions", key.key_id);
        // Created by the owner, whose approval no rule for this key counts.
        let pending: Pending = owner.post(&path, &body, None)?.into_typed()?;
        let mut record = owner.request(&pending.request_id)?;
        for approver in approvers {
            record = approver
                .api
                .approve(&pending.request_id, pending.request.as_bytes())
                .with_context(|| format!("{purpose}: an approval"))?;
        }
        Ok(report(&record, purpose))
    };
    requests.push(transfer("0.01 ETH, the treasurer approves", &[treasurer])?);
    requests.push(transfer("0.01 ETH more, the treasurer approves (the day's limit reached)", &[treasurer])?);
    let over = transfer("0.01 ETH over the day's limit, the treasurer alone approves", &[treasurer])?;
    if over.status != "failed" {
        bail!("the nodes signed a transfer over the day's limit: {over:?}");
    }
    requests.push(over);
    // The security officer first: the coordinator, which cannot count
    // spends, runs a request as soon as its own reading of the policy is met.
    requests.push(transfer(
        "0.01 ETH over the limit, the security officer and the treasurer approve",
        &[security, treasurer],
    )?);
    let members = owner.get("/v1/members")?.into_typed::<shardvault_api::MemberList>()?;
    let health = owner.health()?;
    Ok(GovernanceReport {
        organisation: health.organisation,
        members: members
            .members
            .into_iter()
            .map(|m| MemberReport { name: m.name, role: m.role, fingerprint: m.fingerprint })
            .collect(),
        policy_rules: policy(&key.key_id)["rules"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["name"].as_str().map(str::to_string))
            .collect(),
        requests,
    })
}

/// A governance change by the owner, approved by them alone (the default
/// policy, and the demo's "everything else").
fn owner_request<B: serde::Serialize>(owner: &Api, path: &str, body: &B) -> Result<RequestRecord> {
    let pending: Pending = owner.post(path, body, None)?.into_typed()?;
    let record = owner.approve(&pending.request_id, pending.request.as_bytes())?;
    if record.status != "succeeded" {
        bail!("{path}: the owner's request ended {}: {}", record.status, record.response);
    }
    Ok(record)
}

fn report(record: &RequestRecord, purpose: &str) -> RequestReport {
    let governed = record.governed.as_ref();
    let error =
        (record.status == "failed").then(|| record.response["message"].as_str().unwrap_or_default().to_string());
    RequestReport {
        request_id: record.request_id.clone(),
        operation: governed.map(|g| g.operation.clone()).unwrap_or_default(),
        purpose: purpose.into(),
        status: record.status.clone(),
        approvals: governed.map(|g| g.approvals.iter().map(|a| a.member.clone()).collect()).unwrap_or_default(),
        error,
        transaction_id: record.response.get("id").and_then(Value::as_str).map(str::to_string),
    }
}
