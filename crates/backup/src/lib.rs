//! Key-share backups (docs/FORMATS.md, "Backups").
//!
//! A node [`seal`]s its own share of a key, as a [`BackupPlaintext`], to its
//! party's `ssh-ed25519` recipient with the age format: the result is an
//! ordinary age file that `age -d -i ~/.ssh/id_ed25519` decrypts. The
//! recovery tool [`open`]s t of them with the matching OpenSSH private keys.
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic))]
#![warn(missing_docs)]

use std::io::{Read, Write};

use serde::{Deserialize, Serialize};
use shardvault_mpc::ShareBackup;
use zeroize::Zeroizing;

/// The `format` field of every decrypted share.
pub const PLAINTEXT_FORMAT: &str = "shardvault-share-backup";

/// The plaintext version this release writes and reads.
pub const PLAINTEXT_VERSION: u16 = 1;

/// The largest age file accepted (a share is about 1 KiB).
pub const MAX_SEALED: usize = 64 * 1024;

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A recipient is not an OpenSSH `ssh-ed25519` public key.
    #[error("recipient {0:?} is not an OpenSSH ssh-ed25519 public key (`ssh-ed25519 AAAA… comment`)")]
    Recipient(String),
    /// Encryption failed.
    #[error("cannot encrypt the share: {0}")]
    Encrypt(String),
    /// None of the identities is a recipient of the share.
    #[error("none of the identities given is a recipient of this share")]
    NoIdentity,
    /// The share is not an age file, or it fails to decrypt (damaged or tampered with).
    #[error("cannot decrypt the share: {0}")]
    Decrypt(String),
    /// The decrypted bytes are not a share backup this release reads.
    #[error("the decrypted share is not a shardvault share backup: {0}")]
    Plaintext(String),
}

/// What one encrypted share holds.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupPlaintext {
    /// Always [`PLAINTEXT_FORMAT`].
    pub format: String,
    /// Always [`PLAINTEXT_VERSION`].
    pub version: u16,
    /// The organisation id (hex).
    pub organisation: String,
    /// The export request it was made for.
    pub request_id: String,
    /// Unix seconds when the node sealed it.
    pub exported_at: u64,
    /// The share.
    pub share: ShareBackup,
}

impl BackupPlaintext {
    /// A plaintext of this release's format.
    pub fn new(organisation: String, request_id: String, exported_at: u64, share: ShareBackup) -> Self {
        Self {
            format: PLAINTEXT_FORMAT.into(),
            version: PLAINTEXT_VERSION,
            organisation,
            request_id,
            exported_at,
            share,
        }
    }
}

/// Parses an `ssh-ed25519` recipient; other key types are refused (the age
/// CLI reads age files made for ssh-ed25519 and X25519 recipients only).
pub fn recipient(text: &str) -> Result<age::ssh::Recipient, Error> {
    if !text.trim_start().starts_with("ssh-ed25519 ") {
        return Err(Error::Recipient(text.into()));
    }
    text.trim().parse::<age::ssh::Recipient>().map_err(|_| Error::Recipient(text.into()))
}

/// Encrypts `plaintext` to every one of `recipients` (any of them decrypts
/// it). The JSON is built and encrypted in zeroized buffers.
pub fn seal(plaintext: &BackupPlaintext, recipients: &[String]) -> Result<Vec<u8>, Error> {
    seal_json(plaintext, recipients)
}

fn seal_json<T: Serialize>(plaintext: &T, recipients: &[String]) -> Result<Vec<u8>, Error> {
    let parsed = recipients.iter().map(|r| recipient(r)).collect::<Result<Vec<_>, _>>()?;
    let json = Zeroizing::new(serde_json::to_vec(plaintext).map_err(|e| Error::Encrypt(e.to_string()))?);
    let encryptor = age::Encryptor::with_recipients(parsed.iter().map(|r| r as &dyn age::Recipient))
        .map_err(|e| Error::Encrypt(e.to_string()))?;
    let mut sealed = Vec::with_capacity(json.len() + 512);
    let mut writer = encryptor.wrap_output(&mut sealed).map_err(|e| Error::Encrypt(e.to_string()))?;
    writer.write_all(&json).map_err(|e| Error::Encrypt(e.to_string()))?;
    writer.finish().map_err(|e| Error::Encrypt(e.to_string()))?;
    Ok(sealed)
}

/// Decrypts an age file with any of `identities` and checks what it holds:
/// this release's format, and a share consistent in itself
/// ([`ShareBackup::check`]).
pub fn open(sealed: &[u8], identities: &[&dyn age::Identity]) -> Result<BackupPlaintext, Error> {
    let json = decrypt(sealed, identities)?;
    let plaintext: BackupPlaintext = serde_json::from_slice(&json).map_err(|e| Error::Plaintext(e.to_string()))?;
    if plaintext.format != PLAINTEXT_FORMAT || plaintext.version != PLAINTEXT_VERSION {
        return Err(Error::Plaintext(format!(
            "format {:?} version {}; this release reads {PLAINTEXT_FORMAT} version {PLAINTEXT_VERSION}",
            plaintext.format, plaintext.version
        )));
    }
    plaintext.share.check().map_err(|e| Error::Plaintext(e.to_string()))?;
    Ok(plaintext)
}

/// The decrypted bytes of an age file, in a zeroized buffer.
fn decrypt(sealed: &[u8], identities: &[&dyn age::Identity]) -> Result<Zeroizing<Vec<u8>>, Error> {
    if sealed.len() > MAX_SEALED {
        return Err(Error::Decrypt(format!("{} bytes is more than a share ({MAX_SEALED} at most)", sealed.len())));
    }
    let decryptor = age::Decryptor::new(sealed).map_err(|e| Error::Decrypt(e.to_string()))?;
    let reader = decryptor.decrypt(identities.iter().copied()).map_err(|e| match e {
        age::DecryptError::NoMatchingKeys => Error::NoIdentity,
        other => Error::Decrypt(other.to_string()),
    })?;
    let mut json = Zeroizing::new(Vec::new());
    reader.take(MAX_SEALED as u64).read_to_end(&mut json).map_err(|e| Error::Decrypt(e.to_string()))?;
    Ok(json)
}

mod seed;
pub use seed::{combine_seed, open_seed_share, seal_seed_shares, SeedSharePlaintext, SEED_SHARE_FORMAT};
