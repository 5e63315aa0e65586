//! The coordinator in-process on 127.0.0.1:0, driven through
//! `shardvault-client`, with fake nodes that speak the wire protocol (a Noise
//! hop over the relay's WebSocket) and answer jobs as each test scripts
//! them: no protocol library, no share, no other process.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use shardvault_api::{CreateKey, ErrorCode, SignRequest, Target};
use shardvault_client::Client;
use shardvault_governance::{Action, Genesis, Identity, Owner};
use shardvault_types::{Scheme, Signature};
use shardvault_wire::{
    generate_keypair, hop, Cluster, FromNode, Job, JobKind, NodeId, NoiseSecretKey, Outcome, ToNode,
};
use tokio_tungstenite::tungstenite::Message;

/// secp256k1's generator, compressed: a valid public key for every fake answer.
const POINT: &str = "0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798";
const DIGEST: &str = "1111111111111111111111111111111111111111111111111111111111111111";

/// How a fake node answers a signing job.
#[derive(Clone, Copy, Debug, PartialEq)]
enum OnSign {
    Sign,
    /// Fails on its own (no culprit).
    Fail,
    /// Blames `node` and bans it (a DKLs23 ban abort), once; signs afterwards.
    Ban(u16),
}

/// The jobs every node saw, and how each signs.
#[derive(Default)]
struct Script {
    on_sign: Mutex<BTreeMap<u16, OnSign>>,
    jobs: Mutex<Vec<(u16, JobKind)>>,
}

impl Script {
    fn set(&self, node: u16, on_sign: OnSign) {
        self.on_sign.lock().unwrap().insert(node, on_sign);
    }
    /// How `node` answers this signing job.
    fn take(&self, node: u16) -> OnSign {
        let mut on_sign = self.on_sign.lock().unwrap();
        let now = on_sign.get(&node).copied().unwrap_or(OnSign::Sign);
        if matches!(now, OnSign::Ban(_)) {
            on_sign.insert(node, OnSign::Sign);
        }
        now
    }
    fn jobs(&self) -> usize {
        self.jobs.lock().unwrap().len()
    }
    fn sign_jobs(&self) -> usize {
        self.jobs.lock().unwrap().iter().filter(|(_, kind)| matches!(kind, JobKind::Sign { .. })).count()
    }
}

fn answer(node: u16, job: &Job, script: &Script) -> FromNode {
    script.jobs.lock().unwrap().push((node, job.kind.clone()));
    let session = job.session;
    let done = |outcome| FromNode::Done { session, outcome };
    let point = hex::decode(POINT).unwrap();
    match &job.kind {
        JobKind::CreateKey { .. } => done(Outcome::KeyCreated { public_key: point }),
        JobKind::DeriveHardened { .. } => done(Outcome::Derived { public_key: point, chain_code: [7; 32] }),
        // Answered, so that a key creation (which escrows the seeds after)
        // ends with every node's answer in, and counting jobs is exact.
        JobKind::EscrowSeeds => done(Outcome::Escrowed),
        JobKind::Sign { .. } => match script.take(node) {
            OnSign::Sign => done(Outcome::Signed {
                signed: hex::decode(DIGEST).unwrap(),
                signature: Signature {
                    scheme: Scheme::EcdsaSecp256k1,
                    bytes: vec![9; 64],
                    recovery_id: Some(0),
                    public_key: point,
                    signers: job.participants.keys().copied().collect(),
                },
            }),
            OnSign::Fail => FromNode::Failed { session, reason: "fake failure".into(), culprit: None, banned: false },
            OnSign::Ban(culprit) => FromNode::Failed {
                session,
                reason: "fake ban abort".into(),
                culprit: Some(NodeId(culprit)),
                banned: true,
            },
        },
        other => {
            FromNode::Failed { session, reason: format!("fake node cannot {other:?}"), culprit: None, banned: false }
        }
    }
}

/// One fake node: connects, proves its key, answers pings and jobs.
async fn fake_node(id: u16, secret: NoiseSecretKey, cluster: Cluster, relay: String, script: Arc<Script>) {
    let (mut socket, _) = tokio_tungstenite::connect_async(relay.as_str()).await.unwrap();
    let (initiator, hello) = hop::initiate(&secret, &cluster.coordinator).unwrap();
    socket.send(Message::Binary(hello.into())).await.unwrap();
    let Some(Ok(Message::Binary(reply))) = socket.next().await else { panic!("no handshake reply") };
    let (mut hop, proof) = initiator.finish(&reply).unwrap();
    socket.send(Message::Binary(proof.into())).await.unwrap();
    while let Some(Ok(message)) = socket.next().await {
        let Message::Binary(bytes) = message else { continue };
        let Ok(message) = hop.open(&bytes).and_then(|plain| ToNode::from_bytes(&plain)) else { return };
        let reply = match message {
            ToNode::Ping(n) => FromNode::Pong(n),
            ToNode::Start(job) => answer(id, &job, &script),
            _ => continue,
        };
        let sealed = hop.seal(&reply.to_bytes().unwrap()).unwrap();
        if socket.send(Message::Binary(sealed.into())).await.is_err() {
            return;
        }
    }
}

/// One owner, and a policy that lets them approve anything alone, raw
/// digests included: the fake nodes sign whatever they are sent, and these
/// tests are about the coordinator's relay and retries, not governance.
fn permissive_genesis(owner: &Identity) -> Genesis {
    let owner = Owner { name: "owner".parse().unwrap(), public_key: owner.member_key().unwrap() };
    let mut genesis = Genesis::new("test", vec![owner], 1_767_225_600).unwrap();
    genesis.policy.rules.retain(|rule| rule.action != Action::Deny);
    genesis
}

/// A coordinator with `nodes` fake nodes, all connected, and a client logged in as its owner.
struct Net {
    client: Client,
    script: Arc<Script>,
    _runtime: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
    _stop: tokio::sync::watch::Sender<bool>,
}

fn start(nodes: u16) -> Net {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (secret, coordinator) = generate_keypair().unwrap();
    let keys: Vec<_> = (1..=nodes).map(|id| (id, generate_keypair().unwrap())).collect();
    let cluster = Cluster {
        coordinator,
        nodes: keys.iter().map(|(id, (_, public))| (NodeId(*id), *public)).collect(),
        identities: Default::default(),
    };
    let owner = Identity::generate("owner").unwrap();
    let config = shardvault_coordinator::Config {
        cluster: cluster.clone(),
        secret,
        genesis: permissive_genesis(&owner),
        database: dir.path().join("coordinator.db"),
        job_timeout: Duration::from_secs(5),
        sign_timeout: Duration::from_secs(5),
        ping_interval: Duration::from_secs(1),
        silence_timeout: Duration::from_secs(5),
        refresh_check: Duration::from_secs(60),
        tls: None,
        insecure_plaintext: false,
        allowed_hosts: Vec::new(),
    };
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    runtime.spawn(shardvault_coordinator::serve(listener, config, stopped));
    let script = Arc::new(Script::default());
    for (id, (secret, _)) in keys {
        let relay = format!("ws://{address}/v1/relay");
        runtime.spawn(fake_node(id, secret, cluster.clone(), relay, script.clone()));
    }
    let client = Client::connect(&format!("http://{address}"), None, false).unwrap();
    for _ in 0..200 {
        if client.health().is_ok_and(|h| h.connected == u32::from(nodes)) {
            let client = client.login(owner).unwrap();
            return Net { client, script, _runtime: runtime, _dir: dir, _stop: stop };
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("the fake nodes did not connect");
}

fn create(net: &Net, t: u8, n: u8) -> String {
    let request = CreateKey { scheme: "ecdsa-secp256k1".into(), threshold: t, parties: n, nodes: None };
    net.client.create_key(&request, None).unwrap().key_id
}

fn digest_request(signers: Option<Vec<u8>>) -> SignRequest {
    let target = Target { chain: "ethereum".into(), index: Some(0), ..Target::default() };
    SignRequest { digest_hex: Some(DIGEST.into()), signers, ..SignRequest::to(target) }
}

fn failure(error: shardvault_client::Error) -> (Option<u16>, Option<ErrorCode>, String) {
    (error.status(), error.code(), error.to_string())
}

#[test]
fn a_failed_signer_is_left_out_of_the_retry() {
    let net = start(3);
    let key = create(&net, 2, 3);
    net.script.set(1, OnSign::Fail);
    let signed = net.client.sign(&key, &digest_request(None), None).unwrap();
    assert_eq!(signed.signers, vec![2, 3], "{signed:?}");
    assert_eq!(signed.failed_attempts.len(), 1, "{signed:?}");
    assert_eq!(signed.failed_attempts[0].signers, vec![1, 2]);
    assert!(signed.failed_attempts[0].error.contains("fake failure"), "{signed:?}");
    // With the signers named, there is no retry: the failure is the answer.
    let (status, code, message) = failure(net.client.sign(&key, &digest_request(Some(vec![1, 3])), None).unwrap_err());
    assert_eq!((status, code), (Some(502), Some(ErrorCode::NodeFailure)), "{message}");
}

/// Key generation escrows the seeds; `key show` says how it ended.
#[test]
fn a_new_key_has_its_seeds_escrowed_unless_it_is_n_of_n() {
    let net = start(3);
    let key = create(&net, 2, 3);
    assert_eq!(net.client.key(&key).unwrap().seed_escrow, "complete");
    let all = create(&net, 3, 3);
    assert_eq!(net.client.key(&all).unwrap().seed_escrow, "not_applicable");
    let escrows = net.script.jobs.lock().unwrap().iter().filter(|(_, job)| matches!(job, JobKind::EscrowSeeds)).count();
    assert_eq!(escrows, 3, "one escrow job per node of the 2-of-3 key, none for the 3-of-3");
}

#[test]
fn a_banned_party_is_never_chosen_and_naming_it_is_a_conflict() {
    let net = start(3);
    let key = create(&net, 2, 3);
    // Node 2 proves node 1 misbehaved and bans it.
    net.script.set(2, OnSign::Ban(1));
    let signed = net.client.sign(&key, &digest_request(None), None).unwrap();
    assert_eq!(signed.signers, vec![2, 3], "{signed:?}");
    let details = net.client.key(&key).unwrap();
    assert_eq!(details.banned.iter().map(|b| b.party).collect::<Vec<_>>(), vec![1], "{details:?}");
    let (status, code, message) = failure(net.client.sign(&key, &digest_request(Some(vec![1, 2])), None).unwrap_err());
    assert_eq!((status, code), (Some(409), Some(ErrorCode::PartyBanned)), "{message}");
    assert!(message.contains("refresh"), "{message}");
    // Without signers named, the banned party is left out from the start.
    let before = net.script.sign_jobs();
    assert_eq!(net.client.sign(&key, &digest_request(None), None).unwrap().signers, vec![2, 3]);
    assert_eq!(net.script.sign_jobs() - before, 2, "one attempt, two signers");
}

#[test]
fn an_idempotency_key_replays_its_answer_and_refuses_another_request() {
    let net = start(3);
    let request = CreateKey { scheme: "ecdsa-secp256k1".into(), threshold: 2, parties: 3, nodes: None };
    // The call makes a pending request; its repeat answers the same one.
    let first = net.client.post("/v1/keys", &request, Some("once")).unwrap();
    assert_eq!((first.status, first.replayed, &first.body["status"]), (202, false, &json!("pending")), "{first:?}");
    let jobs = net.script.jobs();
    let again = net.client.post("/v1/keys", &request, Some("once")).unwrap();
    assert_eq!((again.status, again.replayed, &again.body), (202, true, &first.body));
    assert_eq!(net.script.jobs(), jobs, "a pending request ran");
    // Approved (by the client, which made it), it runs once; a repeat of
    // the call then answers with the key made, and runs nothing.
    let typed = net.client.create_key(&request, Some("once")).unwrap();
    let jobs = net.script.jobs();
    let repeated = net.client.create_key(&request, Some("once")).unwrap();
    assert_eq!(repeated.key_id, typed.key_id);
    assert_eq!(net.script.jobs(), jobs, "a replay ran the key generation again");
    // The same key with another body is a conflict, and runs nothing.
    let other = CreateKey { parties: 2, ..request };
    let (status, code, message) = failure(net.client.create_key(&other, Some("once")).unwrap_err());
    assert_eq!((status, code), (Some(409), Some(ErrorCode::IdempotencyConflict)), "{message}");
    assert_eq!(net.script.jobs(), jobs);
    assert_eq!(net.client.keys().unwrap().keys.len(), 1);
    let record = net.client.request(first.body["request_id"].as_str().unwrap()).unwrap();
    assert_eq!((record.status.as_str(), &record.response["key_id"]), ("succeeded", &json!(typed.key_id)));
    assert_eq!(record.governed.unwrap().approvals.len(), 1, "one approval, by the owner");
}

/// What the server refuses before running anything.
#[test]
fn malformed_bodies_are_refused_before_anything_runs() {
    let net = start(3);
    let key = create(&net, 2, 3);
    let jobs = net.script.jobs();
    let refused = |path: &str, body: &str| {
        let answer = net.client.post_raw(path, body.as_bytes(), None).unwrap();
        assert_eq!(answer.status, 400, "{path} {body}: {answer:?}");
        answer.body
    };
    let signatures = format!("/v1/keys/{key}/signatures");
    // A misspelled field is an error, not silently ignored.
    let answer =
        refused(&signatures, &format!(r#"{{"chain":"ethereum","index":0,"digest_hex":"{DIGEST}","signer":[1,2]}}"#));
    assert_eq!(answer["code"], "invalid_request");
    assert!(answer["message"].as_str().unwrap().contains("unknown field `signer`"), "{answer}");
    // Integers are integers.
    refused("/v1/keys", r#"{"scheme":"ecdsa-secp256k1","threshold":2.0,"parties":3}"#);
    refused("/v1/keys", r#"{"scheme":"ecdsa-secp256k1","threshold":13.0,"parties":16}"#);
    refused(&signatures, r#"{"chain":"ethereum","index":0.5,"digest_hex":"00"}"#);
    // An array of the fields in order is not the object.
    refused("/v1/keys", r#"["ecdsa-secp256k1", 2, 3]"#);
    // Calls that take no body refuse one.
    for garbage in ["[]", r#"{"epoch":1}"#, r#""x""#, "7", "null"] {
        for call in ["refresh", "refresh/finish"] {
            let answer = refused(&format!("/v1/keys/{key}/{call}"), garbage);
            assert_eq!(answer["code"], "invalid_request", "{call} {garbage}: {answer}");
        }
    }
    assert_eq!(net.script.jobs(), jobs, "a refused request reached the nodes");
    // More parties than the cluster has nodes: a 4xx that says so.
    let request = CreateKey { scheme: "ecdsa-secp256k1".into(), threshold: 2, parties: 4, nodes: None };
    let (status, code, message) = failure(net.client.create_key(&request, None).unwrap_err());
    assert_eq!((status, code), (Some(400), Some(ErrorCode::TooManyParties)), "{message}");
    assert!(message.contains("the cluster has 3"), "{message}");
    let request = CreateKey { nodes: Some(vec![1, 9]), parties: 2, ..request };
    let (status, _, message) = failure(net.client.create_key(&request, None).unwrap_err());
    assert_eq!(status, Some(400), "{message}");
    assert!(message.contains("node 9 is not in the cluster"), "{message}");
    assert_eq!(net.script.jobs(), jobs);
}

#[test]
fn the_openapi_document_is_generated_from_the_types() {
    let net = start(1);
    let document: Value = net.client.openapi().unwrap();
    assert_eq!(document, shardvault_coordinator::openapi_document(), "the served document is the generated one");
    assert_eq!(document["openapi"], "3.1.0");
    let schemas = &document["components"]["schemas"];
    // Request bodies are closed; numbers are integers.
    for body in ["CreateKey", "AddressRequest", "SignRequest", "TransactionRequest", "Empty"] {
        assert_eq!(schemas[body]["additionalProperties"], json!(false), "{body}: {}", schemas[body]);
    }
    assert_eq!(schemas["CreateKey"]["properties"]["threshold"]["type"], "integer");
    // Every error code is documented.
    let codes: Vec<&str> =
        schemas["ErrorCode"]["enum"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
    assert_eq!(codes, ErrorCode::ALL.iter().map(|c| c.as_str()).collect::<Vec<_>>());
    // The guard's refusals are documented on every POST.
    let sign = &document["paths"]["/v1/keys/{key_id}/signatures"]["post"];
    for status in ["202", "400", "403", "404", "409", "413", "415", "421", "502", "503"] {
        assert!(sign["responses"][status].is_object(), "{status}: {sign}");
    }
    assert_eq!(
        sign["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/SignRequest"
    );
    let refresh = &document["paths"]["/v1/keys/{key_id}/refresh"]["post"];
    assert_ne!(refresh["requestBody"]["required"], json!(true), "refresh takes no body: {refresh}");
}

#[test]
fn a_party_id_out_of_range_is_refused() {
    let net = start(3);
    let key = create(&net, 2, 3);
    let (status, code, message) = failure(net.client.sign(&key, &digest_request(Some(vec![0, 1])), None).unwrap_err());
    assert_eq!((status, code), (Some(400), Some(ErrorCode::InvalidRequest)), "{message}");
}

/// Every endpoint but health, the OpenAPI document and the login refuses a
/// call without credentials or with a wrong token (401), and a viewer's
/// creating calls and approvals (403) — walked from the OpenAPI document, so
/// a new endpoint is covered as it is added.
#[test]
fn every_non_public_endpoint_refuses_missing_wrong_and_out_of_role_credentials() {
    let net = start(3);
    let viewer = Identity::generate("viewer").unwrap();
    let add = shardvault_api::AddMember {
        name: "vera".into(),
        role: "viewer".into(),
        public_key: viewer.member_key().unwrap().to_openssh().unwrap(),
    };
    let pending: shardvault_api::Pending = net.client.post("/v1/members", &add, None).unwrap().into_typed().unwrap();
    let record = net.client.approve(&pending.request_id, pending.request.as_bytes()).unwrap();
    assert_eq!(record.status, "succeeded", "{record:?}");
    let base = net.client.base().to_string();
    let anonymous = Client::new(&base);
    let wrong = Client::new(&base).with_token("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
    let vera = Client::new(&base).login(viewer).unwrap();
    let document = net.client.openapi().unwrap();
    let public = [("get", "/v1/health"), ("post", "/v1/sessions")];
    let mut checked = 0;
    for (template, methods) in document["paths"].as_object().unwrap() {
        let path = template
            .replace("{key_id}", &shardvault_types::KeyId::random().to_string())
            .replace("{id}", &"ab".repeat(16));
        for method in methods.as_object().unwrap().keys() {
            if public.contains(&(method.as_str(), template.as_str())) {
                continue;
            }
            let call = |client: &Client| match method.as_str() {
                "get" => client.get(&path).unwrap(),
                _ => client.post_raw(&path, b"{}", None).unwrap(),
            };
            for (who, client) in [("no credentials", &anonymous), ("a wrong token", &wrong)] {
                let answer = call(client);
                assert_eq!(
                    (answer.status, &answer.body["code"]),
                    (401, &json!("unauthenticated")),
                    "{method} {template} with {who}"
                );
            }
            let answer = call(&vera);
            match method.as_str() {
                "get" => assert_ne!(answer.status, 401, "GET {template} refused a viewer's valid token"),
                _ => assert_eq!(
                    (answer.status, &answer.body["code"]),
                    (403, &json!("forbidden")),
                    "a viewer's {method} {template}"
                ),
            }
            checked += 1;
        }
    }
    assert!(checked >= 15, "only {checked} endpoints");
    // The public ones answer anyone.
    assert!(anonymous.health().is_ok());
    assert!(anonymous.openapi().is_ok());
}
