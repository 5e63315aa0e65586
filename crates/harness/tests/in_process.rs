//! The in-process cluster serves the real API: a key is made and signs
//! through the coordinator and the node services, over loopback, on the
//! owner's approvals.

use shardvault_api::{CreateKey, SignRequest, Target};
use shardvault_harness::InProcess;

#[test]
fn an_in_process_cluster_creates_a_key_and_signs() {
    let cluster = InProcess::start(3);
    let client = cluster.client();
    let create = CreateKey { scheme: "eddsa-ed25519".into(), threshold: 2, parties: 3, nodes: None };
    let key = client.create_key(&create, None).unwrap();
    let target = Target { chain: "solana".into(), index: Some(0), ..Target::default() };
    let request = SignRequest { message_hex: Some("68656c6c6f".into()), ..SignRequest::to(target) };
    let signed = client.sign(&key.key_id, &request, None).unwrap();
    assert_eq!(signed.signature.len(), 128, "{signed:?}");
}
