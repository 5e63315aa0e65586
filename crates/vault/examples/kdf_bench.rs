//! Measures Argon2id KEK derivation for candidate parameters, to choose
//! `KdfParams::RECOMMENDED` (docs/BENCHMARKS.md, "Passphrase KDF").
//!
//! `cargo run -p shardvault-vault --example kdf_bench [runs]` (the dev profile
//! builds dependencies, argon2 included, at opt-level 3, so `--release` gives
//! the same numbers without a release build of the workspace).

use std::time::Instant;

use shardvault_vault::{KdfParams, Kek};

/// Nanoseconds this thread has spent on a CPU (Linux `/proc/thread-self/schedstat`),
/// so a loaded shared machine still gives the KDF's own cost beside the wall time.
fn cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat").ok()?.split_whitespace().next()?.parse().ok()
}

fn main() {
    let runs: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(3);
    let candidates = [
        KdfParams::LEGACY_V1,
        KdfParams { memory_kib: 131_072, iterations: 3, parallelism: 1 },
        KdfParams { memory_kib: 262_144, iterations: 2, parallelism: 1 },
        KdfParams::RECOMMENDED,
        KdfParams { memory_kib: 262_144, iterations: 4, parallelism: 1 },
        KdfParams { memory_kib: 524_288, iterations: 3, parallelism: 1 },
    ];
    println!("memory_mib iterations lanes  median_ms  min_ms  max_ms  median_cpu_ms  (runs: {runs})");
    for params in candidates {
        let mut cpu = Vec::new();
        let mut times: Vec<f64> = (0..runs)
            .map(|_| {
                let (start, cpu_start) = (Instant::now(), cpu_ns());
                let kek = Kek::from_passphrase(b"correct horse battery staple", &[7; 16], params);
                let elapsed = start.elapsed().as_secs_f64() * 1000.0;
                if let (Some(a), Some(b)) = (cpu_start, cpu_ns()) {
                    cpu.push(b.saturating_sub(a) as f64 / 1e6);
                }
                assert!(kek.is_ok(), "{params:?} rejected");
                elapsed
            })
            .collect();
        times.sort_by(f64::total_cmp);
        cpu.sort_by(f64::total_cmp);
        let cpu_median = cpu.get(cpu.len() / 2).copied().unwrap_or(f64::NAN);
        let recommended = if params == KdfParams::RECOMMENDED { "  <- RECOMMENDED" } else { "" };
        println!(
            "{:>10} {:>10} {:>5} {:>10.0} {:>7.0} {:>7.0} {:>14.0}{recommended}",
            params.memory_kib / 1024,
            params.iterations,
            params.parallelism,
            times[times.len() / 2],
            times[0],
            times[times.len() - 1],
            cpu_median,
        );
    }
}
