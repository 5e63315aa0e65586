//! A member's own key pair, in an OpenSSH private key file: what `shardvault
//! identity new` writes and what `ssh-keygen -t ed25519` makes.

use std::fmt;
#[cfg(feature = "files")]
use std::path::Path;

#[cfg(feature = "files")]
use shardvault_vault::files;
#[cfg(feature = "files")]
use ssh_key::LineEnding;
use ssh_key::{Algorithm, HashAlg, PrivateKey};

use crate::member_key::check_comment;
use crate::{Approval, Error, MemberKey, NAMESPACE};

/// The largest key file read (an ed25519 OpenSSH key is under 500 bytes).
#[cfg(feature = "files")]
const MAX_FILE: usize = 16 * 1024;

/// The most bcrypt-pbkdf rounds accepted from a key file (ssh-keygen writes
/// 16 unless told otherwise with `-a`): a crafted file cannot make opening
/// it take minutes.
const MAX_KDF_ROUNDS: u32 = 1024;

/// An ed25519 private key that approves requests. `Debug` shows only its
/// fingerprint; the key is zeroized when dropped (by `ssh-key`).
pub struct Identity(PrivateKey);

impl Identity {
    /// A new random key from the operating system's RNG.
    pub fn generate(comment: &str) -> Result<Self, Error> {
        check_comment(comment).map_err(Error::Identity)?;
        let mut key = PrivateKey::random(&mut rand_core::OsRng, Algorithm::Ed25519)
            .map_err(|e| Error::Identity(format!("cannot make a key: {e}")))?;
        key.set_comment(comment);
        Ok(Self(key))
    }

    /// Parses an OpenSSH private key (`-----BEGIN OPENSSH PRIVATE KEY-----`),
    /// decrypting it with `passphrase` when it is protected.
    pub fn from_openssh(text: &str, passphrase: Option<&[u8]>) -> Result<Self, Error> {
        let key = PrivateKey::from_openssh(text.trim())
            .map_err(|e| Error::Identity(format!("not an OpenSSH private key: {e}")))?;
        if let ssh_key::Kdf::Bcrypt { rounds, .. } = key.kdf() {
            if *rounds > MAX_KDF_ROUNDS {
                return Err(Error::Identity(format!(
                    "the key file asks for {rounds} bcrypt rounds; more than {MAX_KDF_ROUNDS} are refused"
                )));
            }
        }
        let key = match (key.is_encrypted(), passphrase) {
            (false, None) => key,
            (false, Some(_)) => {
                return Err(Error::Identity("a passphrase was given but the key is not passphrase-protected".into()))
            }
            (true, None) => {
                return Err(Error::Identity("the key is passphrase-protected and no passphrase was given".into()))
            }
            (true, Some(passphrase)) => key.decrypt(passphrase).map_err(|e| {
                Error::Identity(format!("wrong passphrase for the key (or a cipher this tool lacks: {e})"))
            })?,
        };
        if key.algorithm() != Algorithm::Ed25519 {
            return Err(Error::Identity(format!(
                "{} keys are not accepted; use an ssh-ed25519 key (ssh-keygen -t ed25519)",
                key.algorithm()
            )));
        }
        Ok(Self(key))
    }

    /// Reads a key file (feature `files`), refusing one that group or others can read (as
    /// ssh does).
    #[cfg(feature = "files")]
    pub fn read(path: &Path, passphrase: Option<&[u8]>) -> Result<Self, Error> {
        let bytes = files::read_private(path).map_err(|e| Error::Identity(e.to_string()))?;
        if bytes.len() > MAX_FILE {
            return Err(Error::Identity(format!("{} is larger than any OpenSSH ed25519 key file", path.display())));
        }
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| Error::Identity(format!("{} is not an OpenSSH private key file", path.display())))?;
        Self::from_openssh(text, passphrase)
    }

    /// Writes the key (feature `files`) as an OpenSSH private key file (mode 0600), encrypted
    /// under `passphrase` when one is given (bcrypt-pbkdf and AES-256-CTR,
    /// as `ssh-keygen` does).
    #[cfg(feature = "files")]
    pub fn write(&self, path: &Path, passphrase: Option<&[u8]>) -> Result<(), Error> {
        let encrypted;
        let key = match passphrase {
            None => &self.0,
            Some(b"") => {
                return Err(Error::Identity("an empty passphrase protects nothing; give none or a real one".into()))
            }
            Some(passphrase) => {
                encrypted = self
                    .0
                    .encrypt(&mut rand_core::OsRng, passphrase)
                    .map_err(|e| Error::Identity(format!("cannot encrypt the key: {e}")))?;
                &encrypted
            }
        };
        let text =
            key.to_openssh(LineEnding::LF).map_err(|e| Error::Identity(format!("cannot encode the key: {e}")))?;
        files::write_private(path, text.as_bytes()).map_err(|e| Error::Identity(e.to_string()))
    }

    /// The public half, as members and policies name it.
    pub fn member_key(&self) -> Result<MemberKey, Error> {
        MemberKey::from_public(self.0.public_key().clone())
    }

    /// Approves `message`: an SSHSIG under [`NAMESPACE`] with SHA-512, as
    /// `ssh-keygen -Y sign -n shardvault-request` makes.
    pub fn approve(&self, message: &[u8]) -> Result<Approval, Error> {
        self.sign_in(NAMESPACE, message)
    }

    /// Signs `message` under another namespace: [`crate::REJECT_NAMESPACE`]
    /// for a rejection, [`crate::LOGIN_NAMESPACE`] to log in. A signature
    /// under one namespace never verifies under another.
    pub fn sign_in(&self, namespace: &str, message: &[u8]) -> Result<Approval, Error> {
        let signature = self
            .0
            .sign(namespace, HashAlg::Sha512, message)
            .map_err(|e| Error::Identity(format!("cannot sign: {e}")))?;
        Ok(Approval::new(signature))
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identity({}, <redacted>)", self.0.fingerprint(HashAlg::Sha256))
    }
}
