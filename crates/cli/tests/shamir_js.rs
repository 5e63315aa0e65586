//! Interoperability with an independent implementation of HashiCorp Vault's
//! Shamir share format: Privy's `shamir-secret-sharing` (npm, pinned in
//! tools/shamir-js). Shares it makes combine in `shardvault shamir combine`,
//! and shares `shardvault shamir split` makes combine there.
//!
//! Needs node and `npm ci --prefix tools/shamir-js`; run as
//! `SHARDVAULT_SHAMIR_JS=$PWD/tools/shamir-js cargo test --test shamir_js -- --ignored`
//! (.ci/run does).

use std::io::Write;
use std::process::{Command, Stdio};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

const EXE: &str = env!("CARGO_BIN_EXE_shardvault");

/// (threshold, parts): the smallest, a middling one, t = n, and n = 255.
const SPLITS: [(u8, u8); 6] = [(2, 2), (2, 3), (3, 5), (7, 7), (2, 255), (255, 255)];
const SECRET_SIZES: [usize; 3] = [1, 32, 1000];

fn interop_script() -> String {
    let dir = std::env::var("SHARDVAULT_SHAMIR_JS").unwrap_or_else(|_| {
        panic!(
            "SHARDVAULT_SHAMIR_JS must name tools/shamir-js after `npm ci --prefix tools/shamir-js` \
             (e.g. SHARDVAULT_SHAMIR_JS=$PWD/tools/shamir-js)"
        )
    });
    let script = format!("{dir}/interop.mjs");
    assert!(
        std::path::Path::new(&format!("{dir}/node_modules/shamir-secret-sharing")).is_dir(),
        "{dir} has no node_modules/shamir-secret-sharing: run `npm ci --prefix {dir}` first"
    );
    script
}

/// Runs `program args`, feeding `stdin`; its stdout, or a panic with its stderr.
fn run(program: &str, args: &[&str], stdin: &[u8]) -> Vec<u8> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {program}: {e}"));
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    output.stdout
}

fn js_split(script: &str, secret: &[u8], t: u8, n: u8) -> Vec<String> {
    let stdin = format!("{}\n", STANDARD.encode(secret));
    let out = run("node", &[script, "split", &n.to_string(), &t.to_string()], stdin.as_bytes());
    String::from_utf8(out).unwrap().lines().map(str::to_string).collect()
}

fn js_combine(script: &str, shares: &[String]) -> Vec<u8> {
    let out = run("node", &[script, "combine"], shares.join("\n").as_bytes());
    STANDARD.decode(String::from_utf8(out).unwrap().trim()).unwrap()
}

fn our_split(secret: &[u8], t: u8, n: u8) -> Vec<String> {
    let out = run(EXE, &["shamir", "split", "--parts", &n.to_string(), "--threshold", &t.to_string()], secret);
    String::from_utf8(out).unwrap().lines().map(str::to_string).collect()
}

fn our_combine(shares: &[String]) -> Vec<u8> {
    run(EXE, &["shamir", "combine"], format!("{}\n", shares.join("\n")).as_bytes())
}

/// A secret of `len` bytes that differs per call site.
fn secret(len: usize, salt: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(salt) ^ (i >> 8) as u8).collect()
}

/// The last t shares, and t shares taken from the end backwards with a stride:
/// two different subsets of exactly the threshold.
fn subsets(shares: &[String], t: u8) -> [Vec<String>; 2] {
    let t = usize::from(t);
    let last = shares[shares.len() - t..].to_vec();
    let step = (shares.len() / t).max(1);
    let spread: Vec<String> = shares.iter().rev().step_by(step).take(t).cloned().collect();
    assert_eq!(spread.len(), t);
    [last, spread]
}

#[test]
#[ignore = "needs node and tools/shamir-js installed: SHARDVAULT_SHAMIR_JS=$PWD/tools/shamir-js"]
fn shares_made_by_shamir_secret_sharing_combine_here() {
    let script = interop_script();
    for (t, n) in SPLITS {
        for len in SECRET_SIZES {
            let secret = secret(len, t ^ n);
            let shares = js_split(&script, &secret, t, n);
            assert_eq!(shares.len(), usize::from(n));
            for subset in subsets(&shares, t) {
                assert_eq!(our_combine(&subset), secret, "{t}-of-{n}, {len} bytes, shares from JS");
            }
            assert_eq!(our_combine(&shares), secret, "{t}-of-{n}, {len} bytes, all shares from JS");
        }
    }
}

#[test]
#[ignore = "needs node and tools/shamir-js installed: SHARDVAULT_SHAMIR_JS=$PWD/tools/shamir-js"]
fn shares_made_here_combine_in_shamir_secret_sharing() {
    let script = interop_script();
    for (t, n) in SPLITS {
        for len in SECRET_SIZES {
            let secret = secret(len, t.wrapping_add(n));
            let shares = our_split(&secret, t, n);
            assert_eq!(shares.len(), usize::from(n));
            for subset in subsets(&shares, t) {
                assert_eq!(js_combine(&script, &subset), secret, "{t}-of-{n}, {len} bytes, combined in JS");
            }
            assert_eq!(js_combine(&script, &shares), secret, "{t}-of-{n}, {len} bytes, all combined in JS");
        }
    }
}

#[test]
#[ignore = "needs node and tools/shamir-js installed: SHARDVAULT_SHAMIR_JS=$PWD/tools/shamir-js"]
fn one_share_fewer_gives_neither_the_secret() {
    // Neither implementation can detect it (Vault's format has no checksum),
    // and both then agree on the same wrong bytes: the same interpolation.
    let script = interop_script();
    let secret = secret(32, 9);
    let shares = our_split(&secret, 4, 6);
    let fewer = shares[..3].to_vec();
    let (ours, theirs) = (our_combine(&fewer), js_combine(&script, &fewer));
    assert_ne!(ours, secret);
    assert_eq!(ours, theirs);
}
