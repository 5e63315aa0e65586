//! Policy rules through real processes (a devnet): an allowlisted
//! destination needs fewer approvals than any other, an EIP-712 rule holds
//! only for its domain, and a raw digest is denied whoever approves.

use serde_json::json;
use shardvault_api::{AddMember, CreateKey, SetPolicy, SignRequest, Target, TransactionRequest};
use shardvault_chains::{Chain, KeyType};
use shardvault_client::{Client, Error};
use shardvault_governance::Identity;

mod common;
use common::{Devnet, EXE};

/// The sample transfer's recipient (chains::sample).
const ALLOWED: &str = "7E5F4552091A69125d5DfCb7b8C2659029395Bdf";

const TYPED: &str = r#"{"types":{"EIP712Domain":[{"name":"name","type":"string"},{"name":"version","type":"string"},{"name":"chainId","type":"uint256"},{"name":"verifyingContract","type":"address"}],"Person":[{"name":"name","type":"string"},{"name":"wallet","type":"address"}],"Mail":[{"name":"from","type":"Person"},{"name":"to","type":"Person"},{"name":"contents","type":"string"}]},"primaryType":"Mail","domain":{"name":"Ether Mail","version":"1","chainId":1,"verifyingContract":"0xCcCCccccCCCCcCCCCCCcCcCccCcCCCcCcccccccC"},"message":{"from":{"name":"Cow","wallet":"0xCD2a3d9F938E13CD947Ec05AbC7FE734Df8DD826"},"to":{"name":"Bob","wallet":"0xbBbBBBBbbBBBbbbBbbBbbbbBBbBbbbbBbBbbBBbB"},"contents":"Hello, Bob!"}}"#;

fn policy() -> serde_json::Value {
    json!({
        "version": 1,
        "address_books": { "exchanges": [format!("0x{ALLOWED}")] },
        "rules": [
            { "name": "raw signing denied", "when": { "signing": ["raw"] }, "action": "deny" },
            { "name": "to the exchanges", "when": { "chains": ["ethereum"], "signing": ["transaction"],
                "assets": ["native"], "destinations": ["exchanges"] },
              "action": { "require": [{ "count": 1, "roles": ["owner", "admin"] }] } },
            { "name": "ether mail", "when": { "signing": ["eip712"], "eip712_domain": { "name": "Ether Mail", "chain_id": 1 } },
              "action": { "require": [{ "count": 1, "roles": ["owner", "admin"] }] } },
            { "name": "everything else", "when": {},
              "action": { "require": [{ "count": 2, "roles": ["owner", "admin"] }] } }
        ]
    })
}

/// `client`'s call left pending: its request id.
fn pending(outcome: Result<impl std::fmt::Debug, Error>) -> String {
    match outcome {
        Err(Error::NotDone { request_id, status, .. }) if status == "pending" => request_id,
        other => panic!("expected a pending request, got {other:?}"),
    }
}

fn approve(client: &Client, id: &str) -> shardvault_api::RequestRecord {
    let record = client.request(id).unwrap();
    let request = record.governed.unwrap().request;
    client.approve(id, request.as_bytes()).unwrap()
}

#[test]
fn allowlists_eip712_domains_and_raw_digests_are_ruled_by_the_nodes_policy() {
    let dir = tempfile::tempdir().unwrap();
    let net = Devnet::start(EXE, dir.path());
    let owner = net.client();
    // Before the policy: a key and its address, and a second admin.
    let create = CreateKey { scheme: "ecdsa-secp256k1".into(), threshold: 2, parties: 3, nodes: None };
    let key = owner.create_key(&create, None).unwrap().key_id;
    let target = Target { chain: "ethereum".into(), index: Some(0), ..Target::default() };
    let address = owner.address(&key, &target.clone().into(), None).unwrap();
    let ann = Identity::generate("ann").unwrap();
    let add = AddMember {
        name: "ann".into(),
        role: "admin".into(),
        public_key: ann.member_key().unwrap().to_openssh().unwrap(),
    };
    let pending_add: shardvault_api::Pending = owner.post("/v1/members", &add, None).unwrap().into_typed().unwrap();
    assert_eq!(owner.approve(&pending_add.request_id, pending_add.request.as_bytes()).unwrap().status, "succeeded");
    let set: shardvault_api::Pending =
        owner.post("/v1/policy", &SetPolicy { policy: policy() }, None).unwrap().into_typed().unwrap();
    assert_eq!(owner.approve(&set.request_id, set.request.as_bytes()).unwrap().status, "succeeded");
    let ann = Client::new(&net.api).login(ann).unwrap();

    // To the allowlisted exchange: the owner's own approval is enough.
    let public_key = hex::decode(&address.public_key).unwrap();
    let sample = shardvault_chains::sample::transfer(Chain::Ethereum, KeyType::EcdsaSecp256k1, &public_key).unwrap();
    let transfer = |unsigned: &[u8]| TransactionRequest {
        network: Some(sample.network.into()),
        tx_hex: Some(hex::encode(unsigned)),
        ..TransactionRequest::to(target.clone())
    };
    let signed = owner.transaction(&key, &transfer(&sample.unsigned), None).unwrap();
    assert!(!signed.transaction().is_empty());
    // The same transfer to anyone else needs a second approval.
    let elsewhere = hex::encode(&sample.unsigned).replace(&ALLOWED.to_lowercase(), &"11".repeat(20));
    let elsewhere = hex::decode(elsewhere).unwrap();
    assert_ne!(elsewhere, sample.unsigned);
    let id = pending(owner.transaction(&key, &transfer(&elsewhere), None));
    assert_eq!(approve(&ann, &id).status, "succeeded", "two approvals sign it");

    // EIP-712: Ether Mail's domain on one approval; another domain needs two.
    let typed: serde_json::Value = serde_json::from_str(TYPED).unwrap();
    let mail = SignRequest { typed_data: Some(typed.clone()), ..SignRequest::to(target.clone()) };
    assert_eq!(owner.sign(&key, &mail, None).unwrap().message_encoding, "eip712-typed-data");
    let mut other = typed;
    other["domain"]["name"] = json!("Not Ether Mail");
    let other = SignRequest { typed_data: Some(other), ..SignRequest::to(target.clone()) };
    let id = pending(owner.sign(&key, &other, None));
    assert_eq!(approve(&ann, &id).status, "succeeded");

    // A raw digest is denied at once, whoever approves, naming the rule.
    let raw = SignRequest { digest_hex: Some("ab".repeat(32)), ..SignRequest::to(target) };
    let error = owner.sign(&key, &raw, None).unwrap_err().to_string();
    assert!(error.contains("raw signing denied"), "{error}");
}
