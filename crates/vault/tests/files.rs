//! Files holding secrets are created private and refused when they are not,
//! with the chmod that fixes them.

use std::os::unix::fs::PermissionsExt;

use shardvault_vault::files::{
    check_private, check_private_if_exists, create_private_dir, create_private_file, read_private, write_private,
    FileError,
};

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn chmod(path: &std::path::Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn new_files_and_directories_are_private_whatever_the_umask() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("a/b");
    create_private_dir(&dir).unwrap();
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&root.path().join("a")), 0o700);
    let key = dir.join("kek.key");
    write_private(&key, b"secret").unwrap();
    assert_eq!(mode(&key), 0o600);
    assert_eq!(&read_private(&key).unwrap()[..], b"secret");
    // Rewriting keeps it private (a stale temporary file is replaced, not reused).
    std::fs::write(key.with_extension("tmp"), b"stale").unwrap();
    chmod(&key.with_extension("tmp"), 0o644);
    write_private(&key, b"other").unwrap();
    assert_eq!(mode(&key), 0o600);
    let db = dir.join("node.db");
    create_private_file(&db).unwrap();
    assert_eq!(mode(&db), 0o600);
}

#[test]
fn group_or_world_access_is_refused_naming_the_fix() {
    let root = tempfile::tempdir().unwrap();
    let key = root.path().join("kek.key");
    std::fs::write(&key, b"secret").unwrap();
    for loose in [0o644, 0o640, 0o604, 0o660] {
        chmod(&key, loose);
        let error = read_private(&key).unwrap_err();
        assert!(matches!(error, FileError::TooOpen { mode, .. } if mode == loose), "{error}");
        let text = error.to_string();
        assert!(text.contains(&format!("chmod 600 {}", key.display())), "{text}");
    }
    chmod(&key, 0o400);
    check_private(&key).unwrap();
    let dir = root.path().join("data");
    std::fs::create_dir(&dir).unwrap();
    chmod(&dir, 0o755);
    let error = check_private(&dir).unwrap_err();
    assert!(error.to_string().contains(&format!("chmod 700 {}", dir.display())), "{error}");
    assert!(create_private_dir(&dir).is_err(), "an existing open directory is not accepted");
    check_private_if_exists(&root.path().join("missing")).unwrap();
}
