//! Files that hold secrets or sealed data: created `0600` in directories
//! created `0700`, and refused (as ssh refuses a readable private key) when
//! an existing one is accessible by group or others.
//!
//! The mode is set when the file is created (`OpenOptions::mode`,
//! `DirBuilder::mode`), so there is no window in which the default umask
//! applies. The owner is not checked (std has no portable way to ask for the
//! current uid without `unsafe`); a file owned by another user that is `0600`
//! is unreadable to this process anyway and fails with an I/O error.

use std::fs::{DirBuilder, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// A file or directory that is too open, or could not be inspected or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FileError {
    /// Group or others have some access.
    #[error("{} is accessible by group or others (mode {mode:03o}); it holds secrets — run `{fix}` and start again", path.display())]
    TooOpen {
        /// The file or directory.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
        /// The command that fixes it.
        fix: String,
    },
    /// An I/O error on this path.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> FileError + '_ {
    move |source| FileError::Io { path: path.to_path_buf(), source }
}

/// Refuses `path` (file or directory) if group or others have any access.
pub fn check_private(path: &Path) -> Result<(), FileError> {
    let metadata = std::fs::metadata(path).map_err(io(path))?;
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        let target = if metadata.is_dir() { "700" } else { "600" };
        return Err(FileError::TooOpen {
            path: path.to_path_buf(),
            mode,
            fix: format!("chmod {target} {}", path.display()),
        });
    }
    Ok(())
}

/// [`check_private`] if `path` exists; nothing otherwise.
pub fn check_private_if_exists(path: &Path) -> Result<(), FileError> {
    match std::fs::metadata(path) {
        Ok(_) => check_private(path),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(io(path)(error)),
    }
}

/// Creates `dir` (and missing parents) with mode `0700`, or checks an existing one.
pub fn create_private_dir(dir: &Path) -> Result<(), FileError> {
    DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(io(dir))?;
    check_private(dir)
}

/// Creates an empty file with mode `0600` if it does not exist, then checks it.
pub fn create_private_file(path: &Path) -> Result<(), FileError> {
    OpenOptions::new().write(true).create(true).truncate(false).mode(0o600).open(path).map_err(io(path))?;
    check_private(path)
}

/// Writes `bytes` to `path` atomically (a `0600` temporary file, synced,
/// then renamed over `path`).
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), FileError> {
    let tmp = path.with_extension("tmp");
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(io(&tmp)(error)),
    }
    let mut file = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp).map_err(io(&tmp))?;
    file.write_all(bytes).map_err(io(&tmp))?;
    file.sync_all().map_err(io(&tmp))?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// Reads a secret file after refusing it if group or others can access it.
pub fn read_private(path: &Path) -> Result<zeroize::Zeroizing<Vec<u8>>, FileError> {
    check_private(path)?;
    std::fs::read(path).map(zeroize::Zeroizing::new).map_err(io(path))
}
