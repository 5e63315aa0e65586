//! `shardvault demo`: a private devnet (coordinator + 3 node processes) in a
//! temporary directory, the whole key lifecycle through its REST API, and the
//! same `shardvault.demo.v1` report as `simulate`, every signature made by
//! the networked processes.

use std::collections::BTreeSet;

use anyhow::{Context, Result};
use indicatif::ProgressBar;
use serde_json::{json, Value};
use shardvault_chains::Chain;
use shardvault_mpc::{Scheme, SessionId};

use crate::client::{verify_address, AddressRequest, Api};
use crate::devnet::Devnet;
use crate::lifecycle::{chain_message, paths, KEYS, STEPS_PER_KEY};
use crate::report::{DerivationReport, KeyReport, RefreshReport, Report, SignatureReport, TransactionReport, SCHEMA};

/// Steps shown by the progress bar.
pub fn steps() -> u64 {
    KEYS.len() as u64 * (STEPS_PER_KEY + 1) + 1
}

pub fn run(message: &str, progress: &ProgressBar) -> Result<Report> {
    let dir = std::env::temp_dir().join(format!("shardvault-demo-{}", &SessionId::random().to_string()[..12]));
    progress.set_message("starting a devnet: coordinator and 3 nodes");
    let result = (|| {
        let devnet = Devnet::start(&dir, 3)?;
        progress.inc(1);
        let api = Api::new(&devnet.api);
        // Every address is checked against the devnet's pinned identities, as `shardvault address` does.
        let cluster = crate::daemon::read_cluster(&devnet.dir.join("cluster.json"))?;
        let mut keys = Vec::new();
        for (scheme, t, n) in KEYS {
            keys.push(key_lifecycle(&api, &cluster, scheme, t, n, message.as_bytes(), progress)?);
        }
        Ok(Report { schema: SCHEMA.into(), transport: "devnet".into(), keys })
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn idem() -> String {
    SessionId::random().to_string()
}

fn text(value: &Value, field: &str) -> Result<String> {
    value[field].as_str().map(str::to_string).with_context(|| format!("response without {field}: {value}"))
}

fn key_lifecycle(
    api: &Api,
    cluster: &shardvault_wire::Cluster,
    scheme: Scheme,
    t: u8,
    n: u8,
    message: &[u8],
    progress: &ProgressBar,
) -> Result<KeyReport> {
    let label = format!("{scheme} {t}-of-{n}");
    progress.set_message(format!("{label}: distributed key generation on the nodes"));
    let key =
        api.post("/v1/keys", &json!({ "scheme": scheme.as_str(), "threshold": t, "parties": n }), Some(&idem()))?;
    let key_id = text(&key, "key_id")?;
    progress.inc(1);

    progress.set_message(format!("{label}: hardened derivation"));
    let chains: Vec<Chain> =
        Chain::ALL.into_iter().filter(|c| c.accepts(shardvault_chains::KeyType::from(scheme))).collect();
    let mut derivations = Vec::new();
    for chain in &chains {
        for path in paths(*chain)? {
            let body = json!({ "chain": chain.name(), "path": path.to_string() });
            let a = api.post(&format!("/v1/keys/{key_id}/addresses"), &body, Some(&idem()))?;
            let request = AddressRequest::new(&key_id, chain.name(), None, Some(&path.to_string()), None)?;
            let verified = verify_address(&a, &request, cluster)
                .with_context(|| format!("the {chain} address at {path} is not attested by the nodes"))?;
            derivations.push(DerivationReport {
                path: verified.statement.path.to_string(),
                chain: chain.to_string(),
                public_key: hex::encode(&verified.statement.public_key),
                address: verified.statement.address,
            });
        }
    }
    progress.inc(1);

    let first: Vec<u8> = (1..=t).collect();
    let last: Vec<u8> = ((n - t + 1)..=n).collect();
    let sign = |chain: Chain, path: String, signers: &[u8]| -> Result<SignatureReport> {
        let message = chain_message(chain, message);
        let body =
            json!({ "chain": chain.name(), "path": path, "message_hex": hex::encode(message), "signers": signers });
        let s = api.post(&format!("/v1/keys/{key_id}/signatures"), &body, Some(&idem()))?;
        Ok(SignatureReport {
            path: text(&s, "path")?,
            chain: chain.to_string(),
            public_key: text(&s, "public_key")?,
            message: text(&s, "message")?,
            message_encoding: text(&s, "message_encoding")?,
            digest: s["digest"].as_str().map(str::to_string),
            signature: text(&s, "signature")?,
            recovery_id: s["recovery_id"].as_u64().and_then(|r| u8::try_from(r).ok()),
            signers: s["signers"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| p.as_u64().and_then(|p| u8::try_from(p).ok()))
                .collect(),
            epoch: s["epoch"].as_u64().and_then(|e| u32::try_from(e).ok()).unwrap_or(0),
        })
    };
    progress.set_message(format!("{label}: signing on the nodes"));
    // Chains with a message format for this key type (BIP340: BIP-322 is Bitcoin's).
    let key_type = shardvault_chains::KeyType::from(scheme);
    let signing: Vec<Chain> = chains.iter().copied().filter(|c| c.message_format(key_type).is_some()).collect();
    let mut signatures = Vec::new();
    for chain in &signing {
        let [hardened, normal] = paths(*chain)?;
        signatures.push(sign(*chain, hardened.to_string(), &first)?);
        signatures.push(sign(*chain, normal.to_string(), &last)?);
    }
    progress.inc(1);

    progress.set_message(format!("{label}: refresh"));
    let refreshed = api.post(&format!("/v1/keys/{key_id}/refresh"), &json!({}), Some(&idem()))?;
    let epoch = |field: &str| refreshed[field].as_u64().and_then(|e| u32::try_from(e).ok()).unwrap_or(0);
    let refresh = RefreshReport { epoch_before: epoch("epoch_before"), epoch_after: epoch("epoch_after") };
    progress.inc(1);

    progress.set_message(format!("{label}: signing after refresh"));
    for chain in &signing {
        let [hardened, _] = paths(*chain)?;
        signatures.push(sign(*chain, hardened.to_string(), &last)?);
    }
    progress.inc(1);

    progress.set_message(format!("{label}: signing a transaction per chain"));
    let mut transactions = Vec::new();
    for chain in &chains {
        let [hardened, _] = paths(*chain)?;
        let from = derivations.iter().find(|d| d.chain == chain.name() && d.path == hardened.to_string());
        let from = from.context("the hardened path was derived above")?;
        transactions.push(sign_transaction(api, &key_id, *chain, scheme, &hardened.to_string(), from, &last)?);
    }
    progress.inc(1);
    let distinct: BTreeSet<&Vec<u8>> = signatures.iter().map(|s| &s.signers).collect();
    tracing::info!(%key_id, signer_sets = distinct.len(), "key lifecycle done");
    Ok(KeyReport {
        key_id,
        scheme: scheme.to_string(),
        threshold: t,
        parties: n,
        public_key: text(&key, "public_key")?,
        derivations,
        signatures,
        refresh,
        transactions,
    })
}

/// Signs the chain's sample transfer from `from`'s address through the
/// cluster, and reports it in one shape whatever the chain.
fn sign_transaction(
    api: &Api,
    key_id: &str,
    chain: Chain,
    scheme: Scheme,
    path: &str,
    from: &DerivationReport,
    signers: &[u8],
) -> Result<TransactionReport> {
    let public_key = hex::decode(&from.public_key)?;
    let sample = shardvault_chains::sample::transfer(chain, scheme.into(), &public_key)?;
    let mut body = json!({ "chain": chain.name(), "path": path, "network": sample.network, "signers": signers });
    match chain {
        Chain::Bitcoin | Chain::Litecoin => {
            body["psbt"] = json!(base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &sample.unsigned))
        }
        _ => body["tx_hex"] = json!(hex::encode(&sample.unsigned)),
    }
    let s = api.post(&format!("/v1/keys/{key_id}/transactions"), &body, Some(&idem()))?;
    let field = |name: &str| s[name].as_str().map(|v| v.trim_start_matches("0x").to_string());
    let signing_input = match chain {
        Chain::Bitcoin | Chain::Litecoin => None,
        Chain::Ethereum => field("digest"),
        _ => field("signing_input"),
    };
    Ok(TransactionReport {
        chain: chain.to_string(),
        network: sample.network.to_string(),
        path: path.to_string(),
        address: from.address.clone(),
        unsigned: hex::encode(&sample.unsigned),
        summary: s["summary"].clone(),
        signing_input,
        signature: field("signature"),
        transaction: text(&s, "transaction")?,
        id: text(&s, "id")?,
    })
}
