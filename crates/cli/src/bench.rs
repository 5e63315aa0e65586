//! `shardvault bench`: signing latency and throughput through a fresh devnet
//! (coordinator + 3 node processes on this machine), next to the in-process
//! floor (the same protocol with every party in this process) measured in the
//! same run.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use indicatif::ProgressBar;
use serde::Serialize;
use shardvault_mpc::{
    derive_hardened, dkg, local, sign, DerivationPath, KeyId, OsRng, PartyId, Scheme, SessionId, SignRequest, Threshold,
};

use crate::client::Api;
use crate::devnet::Devnet;
use shardvault_api::{CreateKey, Target};

#[derive(Serialize)]
pub struct BenchReport {
    pub schema: &'static str,
    pub results: Vec<BenchRow>,
    /// What governance adds to one signature, measured in this run.
    pub governance: GovernanceCost,
    /// Resident memory of node 1 (KiB): before any signing, then after each row.
    pub node_rss_kib: Vec<u64>,
}

#[derive(Serialize)]
pub struct BenchRow {
    pub scheme: String,
    pub threshold: u8,
    pub parties: u8,
    pub concurrency: usize,
    pub signatures: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub per_second: f64,
    pub floor_p50_ms: f64,
    pub ratio_p50: f64,
    /// `p50_ms` less the governance work of one signature
    /// ([`GovernanceCost::per_signature_ms`]): the same signature without
    /// approvals or policy checks.
    pub ungoverned_p50_ms: f64,
    /// `p50_ms / ungoverned_p50_ms` (the target is at most 1.1).
    pub governance_ratio_p50: f64,
}

/// The governance work in one signature, each part measured (p50) in this
/// run: the creator signs its approval; the coordinator and each of the t
/// signing nodes decode the request, replay the governance log, verify the
/// approvals and evaluate the policy on the decoded transaction; and the
/// approval is one more API round trip.
#[derive(Serialize)]
pub struct GovernanceCost {
    pub approve_ms: f64,
    pub check_ms: f64,
    pub round_trip_ms: f64,
    /// `approve_ms + (t + 1) · check_ms + round_trip_ms`, t = 2.
    pub per_signature_ms: f64,
}

const SCHEMES: [(Scheme, &str); 2] = [(Scheme::EcdsaSecp256k1, "ethereum"), (Scheme::EddsaEd25519, "solana")];
const CONCURRENCY: [usize; 2] = [1, 16];

pub fn steps() -> u64 {
    (SCHEMES.len() * (CONCURRENCY.len() + 2)) as u64 + 1
}

pub fn run(signatures: usize, progress: &ProgressBar) -> Result<BenchReport> {
    let dir = std::env::temp_dir().join(format!("shardvault-bench-{}", &SessionId::random().to_string()[..12]));
    let result = (|| {
        let devnet = Devnet::start(&dir, 3)?;
        let node_pid = devnet_node_pid(&dir, 1)?;
        let api = devnet.owner_client()?;
        let mut rss = vec![rss_kib(node_pid)];
        let mut results = Vec::new();
        progress.set_message("governance: approval, checks and round trip");
        let governance = governance_cost(&api, &devnet.genesis, 200)?;
        progress.inc(1);
        for (scheme, chain) in SCHEMES {
            progress.set_message(format!("{scheme}: in-process floor"));
            let floor = floor_p50(scheme, 50)?;
            progress.inc(1);
            progress.set_message(format!("{scheme}: key generation and derivation on the devnet"));
            let create = CreateKey { scheme: scheme.as_str().into(), threshold: 2, parties: 3, nodes: None };
            let key_id = api.create_key(&create, None)?.key_id;
            let target = Target { chain: chain.into(), index: Some(0), ..Target::default() };
            api.address(&key_id, &target.into(), None)?;
            progress.inc(1);
            for concurrency in CONCURRENCY {
                progress.set_message(format!("{scheme}: {signatures} signatures at concurrency {concurrency}"));
                let (latencies, elapsed) = load(&api, &key_id, chain, signatures, concurrency)?;
                let p50 = percentile(&latencies, 0.50);
                results.push(BenchRow {
                    scheme: scheme.to_string(),
                    threshold: 2,
                    parties: 3,
                    concurrency,
                    signatures,
                    p50_ms: round(p50),
                    p99_ms: round(percentile(&latencies, 0.99)),
                    per_second: round(signatures as f64 / elapsed.as_secs_f64()),
                    floor_p50_ms: round(floor),
                    ratio_p50: round(p50 / floor),
                    ungoverned_p50_ms: round(p50 - governance.per_signature_ms),
                    governance_ratio_p50: round(p50 / (p50 - governance.per_signature_ms)),
                });
                rss.push(rss_kib(node_pid));
                progress.inc(1);
            }
        }
        Ok(BenchReport { schema: "shardvault.bench.v1", results, governance, node_rss_kib: rss })
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// p50 of `samples` runs of `work`, in ms.
fn p50_of(samples: usize, mut work: impl FnMut() -> Result<()>) -> Result<f64> {
    let mut times = Vec::with_capacity(samples);
    for _ in 0..samples {
        let begin = Instant::now();
        work()?;
        times.push(begin.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    Ok(percentile(&times, 0.5))
}

/// Measures [`GovernanceCost`] on a signing request like the bench's, under
/// the devnet's organisation (its genesis and current log).
fn governance_cost(api: &Api, genesis_file: &std::path::Path, samples: usize) -> Result<GovernanceCost> {
    use shardvault_governance::{facts_of, Genesis, LogEntry, Operation, Payload, Request, State};
    let genesis = Genesis::from_bytes(&std::fs::read(genesis_file)?)?;
    let log: shardvault_api::GovernanceLog = api.get("/v1/governance")?.into_typed()?;
    let log: Vec<LogEntry> =
        log.entries.into_iter().map(|e| LogEntry { request: e.request, approvals: e.approvals }).collect();
    let identity = api.identity().context("the bench acts as the devnet's owner")?;
    let payload =
        Payload::Message { format: shardvault_chains::MessageFormat::Eip191, message: b"benchmark message".to_vec() };
    let operation = Operation::Sign { key_id: KeyId::random(), path: "m/9'/0'/60'/0'/0'/0'".parse()?, payload };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
    let request = Request::new(genesis.id()?, &identity.member_key()?, operation, now, 3600)?;
    let bytes = request.to_bytes()?;
    let approval = identity.approve(&bytes)?.to_armored()?;
    let approve_ms = p50_of(samples, || Ok(identity.approve(&bytes).map(|_| ())?))?;
    let approvals = vec![approval];
    let check_ms = p50_of(samples, || {
        let decoded = Request::from_bytes(&bytes)?;
        let state = State::replay(&genesis, &log)?;
        let facts = facts_of(&decoded.operation)?;
        state.authorize(&bytes, &decoded, &approvals, &facts, &shardvault_governance::NothingSpent, now)?;
        Ok(())
    })?;
    let round_trip_ms = p50_of(samples, || Ok(api.get("/v1/members").map(|_| ())?))?;
    let per_signature_ms = approve_ms + 3.0 * check_ms + round_trip_ms;
    Ok(GovernanceCost {
        approve_ms: round(approve_ms),
        check_ms: round(check_ms),
        round_trip_ms: round(round_trip_ms),
        per_signature_ms: round(per_signature_ms),
    })
}

fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn percentile(sorted_ms: &[f64], q: f64) -> f64 {
    let index = ((sorted_ms.len() as f64 - 1.0) * q).round() as usize;
    sorted_ms.get(index).copied().unwrap_or(f64::NAN)
}

/// `signatures` sign requests from `concurrency` client threads; sorted latencies (ms) and wall time.
fn load(api: &Api, key_id: &str, chain: &str, signatures: usize, concurrency: usize) -> Result<(Vec<f64>, Duration)> {
    let next = AtomicUsize::new(0);
    let start = Instant::now();
    let mut latencies: Vec<f64> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..concurrency)
            .map(|_| {
                scope.spawn(|| -> Result<Vec<f64>> {
                    let mut mine = Vec::new();
                    while next.fetch_add(1, Ordering::Relaxed) < signatures {
                        let target = Target { chain: chain.into(), index: Some(0), ..Target::default() };
                        let body = shardvault_api::SignRequest {
                            message_hex: Some(hex::encode(b"benchmark message")),
                            ..shardvault_api::SignRequest::to(target)
                        };
                        let begin = Instant::now();
                        api.sign(key_id, &body, None)?;
                        mine.push(begin.elapsed().as_secs_f64() * 1000.0);
                    }
                    Ok(mine)
                })
            })
            .collect();
        let mut all = Vec::new();
        for worker in workers {
            all.extend(worker.join().map_err(|_| anyhow::anyhow!("client thread panicked"))??);
        }
        Ok::<_, anyhow::Error>(all)
    })?;
    let elapsed = start.elapsed();
    latencies.sort_by(f64::total_cmp);
    Ok((latencies, elapsed))
}

/// p50 of one 2-of-3 signature at a derived path with every party in this
/// process: the protocol's own cost, without network or storage.
fn floor_p50(scheme: Scheme, samples: usize) -> Result<f64> {
    let threshold = Threshold::new(2, 3)?;
    let (key_id, session) = (KeyId::random(), SessionId::random());
    let shares = local::run(
        threshold
            .party_ids()
            .map(|me| dkg(scheme, key_id, threshold, me, session, &mut OsRng))
            .collect::<Result<_, _>>()?,
    )?;
    let path: DerivationPath = "m/9'/0'/60'/0'/0'/0'".parse()?;
    let session = SessionId::random();
    let tweaks =
        local::run(shares.values().map(|s| derive_hardened(s, &path, session, &mut OsRng)).collect::<Result<_, _>>()?)?;
    let signers: BTreeSet<PartyId> = threshold.party_ids().take(2).collect();
    let message = [7u8; 32];
    let mut times = Vec::with_capacity(samples);
    for _ in 0..samples {
        let begin = Instant::now();
        let session = SessionId::random();
        let started = signers
            .iter()
            .map(|p| {
                sign(
                    &SignRequest {
                        share: &shares[p],
                        hardened: tweaks.get(p),
                        path: &path,
                        signers: &signers,
                        message: &message,
                    },
                    session,
                    &mut OsRng,
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        local::run(started)?;
        times.push(begin.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    Ok(percentile(&times, 0.5))
}

fn devnet_node_pid(dir: &std::path::Path, id: u64) -> Result<u32> {
    let info: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("devnet.json"))?)?;
    let nodes: BTreeMap<u64, u64> = info["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| Some((n["id"].as_u64()?, n["pid"].as_u64()?)))
        .collect();
    Ok(u32::try_from(*nodes.get(&id).context("node not in devnet.json")?)?)
}

/// Resident set size of a process, from /proc (0 where unavailable).
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("VmRSS:").and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            })
        })
        .unwrap_or(0)
}
