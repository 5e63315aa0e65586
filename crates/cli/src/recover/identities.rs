//! The recipients' OpenSSH ed25519 private keys (`--identity`), decrypted
//! once here when passphrase-protected, then handed to age as unencrypted
//! identities held in zeroizing memory.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use base64::Engine;
use ssh_key::{Algorithm, LineEnding, PrivateKey, PublicKey};
use zeroize::Zeroizing;

/// The environment variable holding the identities' passphrase itself.
pub const PASSPHRASE_ENV: &str = "SHARDVAULT_BACKUP_PASSPHRASE";

/// The most bcrypt rounds a key file may ask for (ssh-keygen writes 16).
const MAX_KDF_ROUNDS: u32 = 1 << 12;

/// Where a protected identity's passphrase comes from: the file, else the
/// environment, else a prompt on the terminal.
#[derive(Debug)]
pub struct Passphrases<'a> {
    /// `--identity-passphrase-file`.
    pub file: Option<&'a Path>,
}

impl Passphrases<'_> {
    fn for_identity(&self, identity: &Path) -> Result<Zeroizing<String>> {
        if let Some(file) = self.file {
            let text = Zeroizing::new(
                std::fs::read_to_string(file)
                    .with_context(|| format!("reading the passphrase from {}", file.display()))?,
            );
            let line = Zeroizing::new(text.lines().next().unwrap_or_default().to_string());
            if line.is_empty() {
                bail!("{} holds no passphrase on its first line", file.display());
            }
            return Ok(line);
        }
        if let Some(value) = std::env::var_os(PASSPHRASE_ENV) {
            let value = Zeroizing::new(
                value.into_string().map_err(|_| anyhow::anyhow!("{PASSPHRASE_ENV} is not valid UTF-8"))?,
            );
            if !value.is_empty() {
                return Ok(value);
            }
        }
        if std::io::stdin().is_terminal() || std::io::stderr().is_terminal() {
            let prompt = format!("passphrase for the identity {}: ", identity.display());
            return Ok(Zeroizing::new(rpassword::prompt_password(prompt).context("reading the passphrase")?));
        }
        bail!(
            "the identity {} is passphrase-protected: give its passphrase with --identity-passphrase-file FILE, \
             the environment variable {PASSPHRASE_ENV}, or run on a terminal to be asked",
            identity.display()
        )
    }
}

/// One recipient's private key.
pub struct BackupIdentity {
    /// The file it was read from.
    pub file: PathBuf,
    public: PublicKey,
    age: age::ssh::Identity,
}

impl std::fmt::Debug for BackupIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackupIdentity").field("file", &self.file).field("secret", &"<redacted>").finish()
    }
}

impl BackupIdentity {
    /// Reads an OpenSSH ed25519 private key, decrypting it if protected.
    pub fn read(file: &Path, passphrases: &Passphrases<'_>) -> Result<Self> {
        let text = Zeroizing::new(
            std::fs::read_to_string(file).with_context(|| format!("reading the identity {}", file.display()))?,
        );
        Self::from_text(&text, file, passphrases)
    }

    /// Rebuilds an OpenSSH private key split with `shardvault shamir split`
    /// (HashiCorp Vault's share format) from `file`: base64 shares, one per
    /// line, at least the split's threshold of them.
    pub fn from_shares(file: &Path, passphrases: &Passphrases<'_>) -> Result<Self> {
        let text = Zeroizing::new(
            std::fs::read_to_string(file).with_context(|| format!("reading the identity shares {}", file.display()))?,
        );
        let mut shares = Vec::new();
        for (number, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let share = base64::engine::general_purpose::STANDARD
                .decode(line.trim())
                .map_err(|_| anyhow::anyhow!("{} line {}: not a base64 Shamir share", file.display(), number + 1))?;
            shares.push(Zeroizing::new(share));
        }
        let pieces: Vec<&[u8]> = shares.iter().map(|s| s.as_slice()).collect();
        let secret = shardvault_shamir::combine(&pieces)
            .with_context(|| format!("{}: the shares do not combine", file.display()))?;
        // Vault's format has no checksum: too few or wrong shares give other
        // bytes, which do not read as a key.
        let text = std::str::from_utf8(&secret).map_err(|_| {
            anyhow::anyhow!(
                "{}: the {} shares combine to no OpenSSH key: too few of them, or shares of another secret",
                file.display(),
                pieces.len()
            )
        })?;
        Self::from_text(text, file, passphrases).with_context(|| {
            format!(
                "{}: the {} shares combine to no usable key (too few, or of another secret?)",
                file.display(),
                pieces.len()
            )
        })
    }

    fn from_text(text: &str, file: &Path, passphrases: &Passphrases<'_>) -> Result<Self> {
        let key = PrivateKey::from_openssh(text.trim()).with_context(|| {
            format!("{} is not an OpenSSH private key (ssh-keygen -t ed25519 writes one)", file.display())
        })?;
        if let ssh_key::Kdf::Bcrypt { rounds, .. } = key.kdf() {
            if *rounds > MAX_KDF_ROUNDS {
                bail!("{} asks for {rounds} bcrypt rounds; more than {MAX_KDF_ROUNDS} are refused", file.display());
            }
        }
        let key = match key.is_encrypted() {
            false => key,
            true => {
                let passphrase = passphrases.for_identity(file)?;
                key.decrypt(passphrase.as_bytes())
                    .map_err(|_| anyhow::anyhow!("wrong passphrase for the identity {}", file.display()))?
            }
        };
        if key.algorithm() != Algorithm::Ed25519 {
            bail!("{} is an {} key; backups are encrypted to ssh-ed25519 keys only", file.display(), key.algorithm());
        }
        let public = key.public_key().clone();
        let unencrypted = key.to_openssh(LineEnding::LF).context("re-encoding the identity")?;
        let age = age::ssh::Identity::from_buffer(unencrypted.as_bytes(), Some(file.display().to_string()))
            .with_context(|| format!("age cannot read the identity {}", file.display()))?;
        if !matches!(age, age::ssh::Identity::Unencrypted(_)) {
            bail!("age does not accept the identity {} as an ssh-ed25519 key", file.display());
        }
        Ok(Self { file: file.to_path_buf(), public, age })
    }

    /// The identity as age takes it.
    pub fn age(&self) -> &dyn age::Identity {
        &self.age
    }

    /// Whether `recipient` (`ssh-ed25519 AAAA… comment`) is this identity's public key.
    pub fn is_recipient(&self, recipient: &str) -> bool {
        PublicKey::from_openssh(recipient.trim()).is_ok_and(|r| r.key_data() == self.public.key_data())
    }

    /// The file and its public key, for messages.
    pub fn describe(&self) -> String {
        let public = self.public.to_openssh().unwrap_or_default();
        let public = public.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
        format!("{} ({public})", self.file.display())
    }
}

/// Reads every `--identity`; the same key given twice is refused.
pub fn read_all(files: &[PathBuf], shared: &[PathBuf], passphrases: &Passphrases<'_>) -> Result<Vec<BackupIdentity>> {
    let mut identities: Vec<BackupIdentity> = Vec::new();
    type Reader = fn(&Path, &Passphrases<'_>) -> Result<BackupIdentity>;
    let read = files.iter().map(|file| (file, BackupIdentity::read as Reader));
    let combined = shared.iter().map(|file| (file, BackupIdentity::from_shares as Reader));
    for (file, reader) in read.chain(combined) {
        let identity = reader(file, passphrases)?;
        if let Some(twin) = identities.iter().find(|i| i.public.key_data() == identity.public.key_data()) {
            bail!("{} and {} are the same key", twin.file.display(), file.display());
        }
        identities.push(identity);
    }
    Ok(identities)
}
