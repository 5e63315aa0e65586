//! Approvals and keys against OpenSSH's own `ssh-keygen`, which nobody here
//! wrote: its signatures must verify here, ours must verify there, and
//! neither may count for other bytes, another namespace or another key.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use shardvault_governance::{Approval, Identity, MemberKey, NAMESPACE};

const REQUEST: &[u8] = b"shardvault request v1: send 1 BTC to bc1q... (test bytes)";

fn ssh_keygen(args: &[&str], stdin: Option<&[u8]>) -> Output {
    use std::io::Write;
    let mut child = Command::new("ssh-keygen")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("ssh-keygen (Debian package openssh-client; .ci/run installs it) must be on PATH");
    let mut input = child.stdin.take().expect("stdin");
    input.write_all(stdin.unwrap_or_default()).expect("write stdin");
    drop(input);
    child.wait_with_output().expect("ssh-keygen runs")
}

/// A key made by `ssh-keygen -t ed25519` (passphrase "" for none).
fn openssh_key(dir: &Path, name: &str, passphrase: &str) -> PathBuf {
    let path = dir.join(name);
    let out = ssh_keygen(
        &["-q", "-t", "ed25519", "-N", passphrase, "-C", &format!("{name}@example"), "-f", path.to_str().unwrap()],
        None,
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    path
}

fn member_key(path: &Path) -> MemberKey {
    std::fs::read_to_string(path.with_extension("pub")).unwrap().parse().unwrap()
}

/// `ssh-keygen -Y sign -n NAMESPACE -f KEY` over `message`: the armored signature.
fn openssh_sign(key: &Path, namespace: &str, message: &[u8]) -> String {
    let out = ssh_keygen(&["-Y", "sign", "-n", namespace, "-f", key.to_str().unwrap()], Some(message));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// `ssh-keygen -Y verify` with `member` as the only allowed signer.
fn openssh_verifies(dir: &Path, member: &MemberKey, armored: &str, message: &[u8]) -> bool {
    let signers = dir.join("allowed_signers");
    std::fs::write(&signers, format!("member {}\n", member.to_openssh().unwrap())).unwrap();
    let signature = dir.join("approval.sig");
    std::fs::write(&signature, armored).unwrap();
    let out = ssh_keygen(
        &[
            "-Y",
            "verify",
            "-f",
            signers.to_str().unwrap(),
            "-I",
            "member",
            "-n",
            NAMESPACE,
            "-s",
            signature.to_str().unwrap(),
        ],
        Some(message),
    );
    out.status.success()
}

#[test]
fn an_approval_made_by_ssh_keygen_verifies_and_counts_for_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let key = openssh_key(dir.path(), "alice", "");
    let alice = member_key(&key);
    let approval: Approval = openssh_sign(&key, NAMESPACE, REQUEST).parse().unwrap();

    alice.verify(REQUEST, &approval).unwrap();
    assert_eq!(approval.claimed_signer().unwrap(), alice);

    // Other bytes, another member, another namespace: refused.
    assert!(alice.verify(b"another request", &approval).is_err());
    let bob = member_key(&openssh_key(dir.path(), "bob", ""));
    let error = bob.verify(REQUEST, &approval).unwrap_err().to_string();
    assert!(error.contains("another key"), "{error}");
    let git: Approval = openssh_sign(&key, "git", REQUEST).parse().unwrap();
    let error = alice.verify(REQUEST, &git).unwrap_err().to_string();
    assert!(error.contains("namespace \"git\""), "{error}");
}

#[test]
fn an_approval_made_here_is_verified_by_ssh_keygen() {
    let dir = tempfile::tempdir().unwrap();
    let key = openssh_key(dir.path(), "carol", "");
    let carol = Identity::read(&key, None).unwrap();
    let armored = carol.approve(REQUEST).unwrap().to_armored().unwrap();
    assert!(armored.starts_with("-----BEGIN SSH SIGNATURE-----"), "{armored}");

    let member = carol.member_key().unwrap();
    assert_eq!(member, member_key(&key));
    assert!(openssh_verifies(dir.path(), &member, &armored, REQUEST));
    assert!(!openssh_verifies(dir.path(), &member, &armored, b"another request"));
}

#[test]
fn passphrase_protected_keys_work_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    // ssh-keygen's protected key, read here.
    let key = openssh_key(dir.path(), "dave", "correct horse");
    let error = Identity::read(&key, None).unwrap_err().to_string();
    assert!(error.contains("passphrase-protected"), "{error}");
    let error = Identity::read(&key, Some(b"wrong")).unwrap_err().to_string();
    assert!(error.contains("wrong passphrase"), "{error}");
    let dave = Identity::read(&key, Some(b"correct horse")).unwrap();
    assert_eq!(dave.member_key().unwrap(), member_key(&key));

    // A protected key written here, opened by ssh-keygen.
    let erin = Identity::generate("erin@example").unwrap();
    let path = dir.path().join("erin");
    erin.write(&path, Some(b"battery staple")).unwrap();
    let out = ssh_keygen(&["-y", "-P", "battery staple", "-f", path.to_str().unwrap()], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let theirs: MemberKey = String::from_utf8(out.stdout).unwrap().parse().unwrap();
    assert_eq!(theirs, erin.member_key().unwrap());
    let out = ssh_keygen(&["-y", "-P", "wrong", "-f", path.to_str().unwrap()], None);
    assert!(!out.status.success());
}

#[test]
fn other_key_types_and_open_key_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ecdsa = dir.path().join("ecdsa");
    let out = ssh_keygen(&["-q", "-t", "ecdsa", "-N", "", "-f", ecdsa.to_str().unwrap()], None);
    assert!(out.status.success());
    let line = std::fs::read_to_string(ecdsa.with_extension("pub")).unwrap();
    let error = line.parse::<MemberKey>().unwrap_err().to_string();
    assert!(error.contains("use an ssh-ed25519 key"), "{error}");
    assert!(Identity::read(&ecdsa, None).is_err());

    let key = openssh_key(dir.path(), "frank", "");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let error = Identity::read(&key, None).unwrap_err().to_string();
    assert!(error.contains("accessible by group or others"), "{error}");

    assert!("ssh-ed25519 AAAAnot-base64".parse::<MemberKey>().is_err());

    // A comment cannot carry a second key line, and an identity's passphrase
    // must match what the file is.
    let alice = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    let smuggled =
        format!("{} alice\n{}", alice.split_whitespace().take(2).collect::<Vec<_>>().join(" "), alice.trim());
    let error = smuggled.parse::<MemberKey>().unwrap_err().to_string();
    assert!(error.contains("control character"), "{error}");
    assert!(Identity::generate("two\nlines").is_err());
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let error = Identity::read(&key, Some(b"unneeded")).unwrap_err().to_string();
    assert!(error.contains("not passphrase-protected"), "{error}");
    let error = Identity::generate("x").unwrap().write(&dir.path().join("empty"), Some(b"")).unwrap_err().to_string();
    assert!(error.contains("empty passphrase"), "{error}");
    assert!("-----BEGIN SSH SIGNATURE-----\ngarbage\n-----END SSH SIGNATURE-----".parse::<Approval>().is_err());
}
