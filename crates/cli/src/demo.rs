//! `shardvault demo`: a private devnet (coordinator + 3 node processes) in a
//! temporary directory, the whole key lifecycle through its REST API, and the
//! same `shardvault.demo.v1` report as `simulate`, every signature made by
//! the networked processes.

use std::collections::BTreeSet;

use anyhow::{Context, Result};
use indicatif::ProgressBar;
use shardvault_api::{
    AddressRequest as AddressBody, CreateKey, SignRequest, SignedTransaction, Target, TransactionRequest,
};
use shardvault_chains::Chain;
use shardvault_mpc::{Scheme, SessionId};

use crate::client::{verify_address, AddressRequest, Api};
use crate::devnet::Devnet;
use crate::lifecycle::{chain_message, paths, KEYS, STEPS_PER_KEY};
use crate::report::{DerivationReport, KeyReport, RefreshReport, Report, SignatureReport, TransactionReport, SCHEMA};

/// Steps shown by the progress bar.
pub fn steps() -> u64 {
    KEYS.len() as u64 * (STEPS_PER_KEY + 1) + 2
}

pub fn run(message: &str, progress: &ProgressBar) -> Result<Report> {
    let dir = std::env::temp_dir().join(format!("shardvault-demo-{}", &SessionId::random().to_string()[..12]));
    progress.set_message("starting a devnet: coordinator and 3 nodes");
    let result = (|| {
        let devnet = Devnet::start(&dir, 3)?;
        progress.inc(1);
        let api = devnet.owner_client()?;
        // Every address is checked against the devnet's pinned identities, as `shardvault address` does.
        let cluster = crate::daemon::read_cluster(&devnet.dir.join("cluster.json"))?;
        let mut keys = Vec::new();
        for (scheme, t, n) in KEYS {
            keys.push(key_lifecycle(&api, &cluster, scheme, t, n, message.as_bytes(), progress)?);
        }
        progress.set_message("governance: members, a policy, approvals, and a transfer the nodes refuse");
        let governance = crate::demo_governance::run(&devnet, &api)?;
        progress.inc(1);
        Ok(Report { schema: SCHEMA.into(), transport: "devnet".into(), keys, governance: Some(governance) })
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn idem() -> String {
    SessionId::random().to_string()
}

fn at(chain: Chain, path: &str) -> Target {
    Target { chain: chain.name().into(), path: Some(path.into()), ..Target::default() }
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
    let create = CreateKey { scheme: scheme.as_str().into(), threshold: t, parties: n, nodes: None };
    let key = api.create_key(&create, Some(&idem()))?;
    let key_id = key.key_id.clone();
    progress.inc(1);

    progress.set_message(format!("{label}: hardened derivation"));
    let chains: Vec<Chain> =
        Chain::ALL.into_iter().filter(|c| c.accepts(shardvault_chains::KeyType::from(scheme))).collect();
    let mut derivations = Vec::new();
    for chain in &chains {
        for path in paths(*chain)? {
            let a = api.address(&key_id, &AddressBody::from(at(*chain, &path.to_string())), Some(&idem()))?;
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
        let body = SignRequest {
            message_hex: Some(hex::encode(message)),
            signers: Some(signers.to_vec()),
            ..SignRequest::to(at(chain, &path))
        };
        let s = api.sign(&key_id, &body, Some(&idem()))?;
        Ok(SignatureReport {
            path: s.path,
            chain: chain.to_string(),
            public_key: s.public_key,
            message: s.message,
            message_encoding: s.message_encoding,
            digest: s.digest,
            signature: s.signature,
            recovery_id: s.recovery_id,
            signers: s.signers,
            epoch: s.epoch,
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
    let refreshed = api.refresh(&key_id, Some(&idem()))?;
    let refresh = RefreshReport { epoch_before: refreshed.epoch_before, epoch_after: refreshed.epoch_after };
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
        public_key: key.public_key,
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
    let mut body = TransactionRequest {
        network: Some(sample.network.to_string()),
        signers: Some(signers.to_vec()),
        ..TransactionRequest::to(at(chain, path))
    };
    match chain {
        Chain::Bitcoin | Chain::Litecoin => {
            body.psbt = Some(base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &sample.unsigned))
        }
        _ => body.tx_hex = Some(hex::encode(&sample.unsigned)),
    }
    let s = api.transaction(key_id, &body, Some(&idem()))?;
    let (signing_input, signature) = match &s {
        SignedTransaction::Utxo(_) => (None, None),
        SignedTransaction::Evm(t) => (Some(t.digest.clone()), Some(t.signature.clone())),
        SignedTransaction::Other(t) => (Some(t.signing_input.clone()), Some(t.signature.clone())),
    };
    let unprefixed = |v: Option<String>| v.map(|v| v.trim_start_matches("0x").to_string());
    Ok(TransactionReport {
        chain: chain.to_string(),
        network: sample.network.to_string(),
        path: path.to_string(),
        address: from.address.clone(),
        unsigned: hex::encode(&sample.unsigned),
        summary: s.summary().clone(),
        signing_input: unprefixed(signing_input),
        signature: unprefixed(signature),
        transaction: s.transaction().to_string(),
        id: s.id().to_string(),
    })
}
