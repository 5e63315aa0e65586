//! Period limits across signer sets (docs/SECURITY.md, "Period limits across
//! signer sets"). A node counts only the transactions it signs, so a
//! coordinator that rotates the t-of-n signer sets has each transaction
//! counted by t nodes: with limit L per window, at most n·L/t is signed.
//! For 2-of-3 and L = 0.02 ETH: three 0.01 ETH transfers pass (each node
//! then holds exactly L), and a fourth is refused by every pair.

use std::collections::BTreeMap;

use serde_json::json;
use shardvault_chains::{Chain, KeyType, Unsigned};
use shardvault_governance::Policy;
use shardvault_harness::{Nodes, Organisation};
use shardvault_mpc::{Epoch, KeyId, PartyId, Scheme, SessionId, Threshold};
use shardvault_wire::{Job, JobKind, NodeId, Outcome, SignPayload};

const PATH: &str = "m/9'/0'/60'/0'/0'/0'";
/// What the EVM sample transfer moves.
const TRANSFER_WEI: u128 = 10_000_000_000_000_000;

fn policy() -> Policy {
    let limit = (2 * TRANSFER_WEI).to_string();
    serde_json::from_value(json!({
        "version": 1,
        "rules": [
            { "name": "setup", "when": { "operations": ["create_key", "derive_address"] },
              "action": { "require": [{ "count": 1, "roles": ["owner"] }] } },
            { "name": "daily limit", "when": {
                "chains": ["ethereum"], "signing": ["transaction"], "assets": ["native"],
                "period": { "window": "24h", "max": limit } },
              "action": { "require": [{ "count": 1, "roles": ["owner"] }] } }
        ]
    }))
    .unwrap()
}

fn job(key_id: KeyId, nodes: &[u16], kind: JobKind) -> Job {
    let participants: BTreeMap<PartyId, NodeId> =
        nodes.iter().map(|n| (PartyId::new(u8::try_from(*n).unwrap()).unwrap(), NodeId(*n))).collect();
    Job { session: SessionId::random(), key_id, participants, kind, governance: None }
}

#[test]
fn rotating_signer_sets_signs_at_most_n_l_over_t_in_a_window() {
    let mut c = Nodes::with_organisation(3, Organisation::new("limits", policy()));
    let key_id = KeyId::random();
    let create = JobKind::CreateKey { scheme: Scheme::EcdsaSecp256k1, threshold: Threshold::new(2, 3).unwrap() };
    assert!(c.run(c.approve(job(key_id, &[1, 2, 3], create))).values().all(Result::is_ok));
    let derived = c.run(c.approve(job(key_id, &[1, 2, 3], JobKind::DeriveHardened { path: PATH.parse().unwrap() })));
    let Some(Ok(Outcome::Derived { public_key, .. })) = derived.values().next() else { panic!("{derived:?}") };
    let sample = shardvault_chains::sample::transfer(Chain::Ethereum, KeyType::EcdsaSecp256k1, public_key).unwrap();
    // The sample is an EIP-1559 transfer on chain id 1.
    let payload = SignPayload::transaction(Unsigned::Evm { chain_id: 1, preimage: &sample.unsigned }, 0).unwrap();
    let sign = |nodes: &[u16]| {
        let kind = JobKind::Sign { epoch: Epoch(0), path: PATH.parse().unwrap(), payload: payload.clone() };
        job(key_id, nodes, kind)
    };
    // Each set signs one transfer: every node takes part in two.
    let mut signed = 0u128;
    for set in [[1, 2], [1, 3], [2, 3]] {
        let results = c.run(c.approve(sign(&set)));
        assert!(results.values().all(|r| matches!(r, Ok(Outcome::Signed { .. }))), "{set:?}: {results:?}");
        signed += TRANSFER_WEI;
    }
    // Every node is at the limit now: whichever pair is asked, both refuse.
    for set in [[1, 2], [1, 3], [2, 3]] {
        let results = c.run(c.approve(sign(&set)));
        for (node, result) in &results {
            let reason = result.as_ref().err().unwrap_or_else(|| panic!("node {node} signed over its limit"));
            assert!(reason.contains("governance") && reason.contains("no policy rule matches"), "{reason}");
        }
    }
    // n·L/t = 3 · 0.02 / 2 ETH: the bound, reached and not exceeded.
    assert_eq!(signed, 3 * (2 * TRANSFER_WEI) / 2);
}
