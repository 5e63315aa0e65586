//! `shardvault shamir split` / `combine`, run as a user runs them.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output, Stdio};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

const EXE: &str = env!("CARGO_BIN_EXE_shardvault");

fn shardvault(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(EXE)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A refused command may exit before reading its input: ignore the broken pipe.
    let _ = child.stdin.take().unwrap().write_all(stdin);
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "shardvault {args:?} panicked: {stderr}");
    output
}

fn ok(args: &[&str], stdin: &[u8]) -> Vec<u8> {
    let output = shardvault(args, stdin);
    assert!(output.status.success(), "shardvault {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    output.stdout
}

/// The command fails, and what it says on stderr contains `expected`.
fn refused(args: &[&str], stdin: &[u8], expected: &str) {
    let output = shardvault(args, stdin);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "shardvault {args:?} should have failed");
    assert!(stderr.contains(expected), "shardvault {args:?}: expected {expected:?} in: {stderr}");
}

/// A secret with every byte value, newlines and zeros among them.
fn secret(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 256) as u8).collect()
}

fn lines(stdout: &[u8]) -> Vec<String> {
    String::from_utf8(stdout.to_vec()).unwrap().lines().map(str::to_string).collect()
}

fn combine(shares: &[&String]) -> Output {
    let text: String = shares.iter().map(|share| format!("{share}\n")).collect();
    shardvault(&["shamir", "combine"], text.as_bytes())
}

#[test]
fn any_threshold_of_the_shares_combine_to_the_secret() {
    let secret = secret(1000);
    let shares = lines(&ok(&["shamir", "split", "--parts", "5", "--threshold", "3"], &secret));
    assert_eq!(shares.len(), 5);
    for share in &shares {
        assert_eq!(STANDARD.decode(share).unwrap().len(), secret.len() + 1, "y bytes then one x byte");
    }
    let pick = |indices: &[usize]| indices.iter().map(|&i| &shares[i]).collect::<Vec<_>>();
    for subset in [&[0, 1, 2][..], &[4, 2, 0], &[1, 3, 4], &[0, 1, 2, 3, 4]] {
        let output = combine(&pick(subset));
        assert!(output.status.success(), "{subset:?}: {}", String::from_utf8_lossy(&output.stderr));
        assert_eq!(output.stdout, secret, "shares {subset:?}");
    }
    // Two of a 3-of-5 split combine to something, but not to the secret:
    // the format cannot tell, which is why --help says to check the result.
    let output = combine(&pick(&[3, 1]));
    assert!(output.status.success());
    assert_ne!(output.stdout, secret);
}

#[test]
fn blank_lines_and_crlf_are_ignored() {
    let shares = lines(&ok(&["shamir", "split", "--parts", "3", "--threshold", "2"], b"k"));
    let text = format!("\n{}\r\n\n  {}  \n\n", shares[0], shares[2]);
    assert_eq!(ok(&["shamir", "combine"], text.as_bytes()), b"k");
}

#[test]
fn json_output() {
    let secret = secret(32);
    let split: serde_json::Value =
        serde_json::from_slice(&ok(&["--json", "shamir", "split", "--parts", "4", "--threshold", "2"], &secret))
            .unwrap();
    assert_eq!((split["parts"].as_u64(), split["threshold"].as_u64()), (Some(4), Some(2)));
    let shares: Vec<String> = split["shares"].as_array().unwrap().iter().map(|s| s.as_str().unwrap().into()).collect();
    assert_eq!(shares.len(), 4);
    let text = format!("{}\n{}\n", shares[3], shares[1]);
    let combined: serde_json::Value =
        serde_json::from_slice(&ok(&["--json", "shamir", "combine"], text.as_bytes())).unwrap();
    assert_eq!(STANDARD.decode(combined["secret_base64"].as_str().unwrap()).unwrap(), secret);
}

#[test]
fn share_files_are_private_and_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("secret");
    std::fs::write(&secret_file, secret(64)).unwrap();
    let out = dir.path().join("shares");
    let (secret_arg, out_arg) = (secret_file.to_str().unwrap(), out.to_str().unwrap());
    let split = ["shamir", "split", "--parts", "5", "--threshold", "3", "--in", secret_arg, "--out-dir", out_arg];
    let printed = lines(&ok(&split, b""));
    let files: Vec<_> = (1..=5).map(|n| out.join(format!("share-{n}.b64"))).collect();
    assert_eq!(printed, files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>());
    for file in &files {
        assert_eq!(std::fs::metadata(file).unwrap().permissions().mode() & 0o777, 0o600, "{}", file.display());
    }
    let before = std::fs::read(&files[0]).unwrap();
    refused(&split, b"", "exists; share files are never overwritten");
    assert_eq!(std::fs::read(&files[0]).unwrap(), before);

    let (a, b, c) = (files[0].to_str().unwrap(), files[2].to_str().unwrap(), files[4].to_str().unwrap());
    assert_eq!(ok(&["shamir", "combine", "--in", a, "--in", b, "--in", c], b""), secret(64));
    // One file holding several shares' lines works as well.
    let both = dir.path().join("both");
    std::fs::write(&both, [std::fs::read(&files[1]).unwrap(), std::fs::read(&files[3]).unwrap()].concat()).unwrap();
    assert_eq!(ok(&["shamir", "combine", "--in", both.to_str().unwrap(), "--in", a], b""), secret(64));
}

#[test]
fn bad_splits_are_refused_with_a_reason() {
    let split = |parts: &str, threshold: &str, stdin: &[u8], expected: &str| {
        refused(&["shamir", "split", "--parts", parts, "--threshold", threshold], stdin, expected)
    };
    split("3", "4", b"s", "cannot split into 3 parts with threshold 4");
    split("3", "1", b"s", "need 2 <= threshold <= parts <= 255");
    split("256", "2", b"s", "256");
    split("3", "2", b"", "the secret is empty");
    split("3", "2", &vec![1u8; 64 * 1024 + 1], "longer than 64 KiB");
    refused(&["shamir", "split", "--parts", "3", "--threshold", "2", "--in", "/nonexistent/secret"], b"", "opening");
}

#[test]
fn bad_share_sets_are_refused_with_a_reason() {
    let shares = lines(&ok(&["shamir", "split", "--parts", "3", "--threshold", "2"], b"secret"));
    let other = lines(&ok(&["shamir", "split", "--parts", "3", "--threshold", "2"], b"longer secret"));
    refused(&["shamir", "combine"], format!("{}\n", shares[0]).as_bytes(), "at least 2 shares, 1 given");
    refused(&["shamir", "combine"], b"\n\n", "at least 2 shares, 0 given");
    refused(
        &["shamir", "combine"],
        format!("{}\n{}\n", shares[0], other[1]).as_bytes(),
        "share 2 is 14 bytes long but share 1 is 7",
    );
    refused(
        &["shamir", "combine"],
        format!("{}\nnot base64!\n", shares[0]).as_bytes(),
        "line 2 of stdin is not a base64 share",
    );
    refused(&["shamir", "combine"], format!("{0}\n{0}\n", shares[1]).as_bytes(), "same x coordinate");
    refused(&["shamir", "combine"], b"QQ==\nQg==\n", "at least 2 bytes");
    refused(&["shamir", "combine"], b"\xff\xfe\n", "not text");
    refused(&["--json", "shamir", "combine"], b"QUI=\n", "\"code\":\"error\"");
}
