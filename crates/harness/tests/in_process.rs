//! The in-process cluster serves the real API: a key is made and signs
//! through the coordinator and the node services, over loopback.

use serde_json::{json, Value};
use shardvault_harness::InProcess;

fn post(api: &str, path: &str, body: Value) -> Value {
    ureq::post(format!("{api}{path}")).send_json(body).unwrap().body_mut().read_json().unwrap()
}

#[test]
fn an_in_process_cluster_creates_a_key_and_signs() {
    let cluster = InProcess::start(3);
    let key = post(&cluster.api, "/v1/keys", json!({ "scheme": "eddsa-ed25519", "threshold": 2, "parties": 3 }));
    let key_id = key["key_id"].as_str().unwrap();
    let path = format!("/v1/keys/{key_id}/signatures");
    let signed = post(&cluster.api, &path, json!({ "chain": "solana", "index": 0, "message_hex": "68656c6c6f" }));
    assert_eq!(signed["signature"].as_str().map(str::len), Some(128), "{signed}");
}
