//! `shardvault identity new`: a personal key for a member who has none — an
//! OpenSSH ed25519 private key file, the same as `ssh-keygen -t ed25519`
//! writes, so the member can also use OpenSSH's tools with it.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use shardvault_governance::Identity;
use zeroize::Zeroizing;

/// Members' personal keys.
#[derive(Debug, Args)]
pub struct IdentityCommand {
    #[command(subcommand)]
    pub action: IdentityAction,
}

#[derive(Debug, Subcommand)]
pub enum IdentityAction {
    /// Write a new ed25519 key pair as an OpenSSH private key file (mode
    /// 0600) and print its public key line and fingerprint.
    New(NewArgs),
}

#[derive(Debug, Args)]
pub struct NewArgs {
    /// The private key file to write; an existing file is never overwritten.
    #[arg(long)]
    pub out: PathBuf,
    /// The key's comment (a name or e-mail address), as in `ssh-keygen -C`.
    #[arg(long, default_value = "")]
    pub comment: String,
    /// Protect the key with the passphrase in this file (its first line),
    /// as `ssh-keygen -N` does; without it the key is written unprotected.
    #[arg(long, env = "SHARDVAULT_IDENTITY_PASSPHRASE_FILE")]
    pub passphrase_file: Option<PathBuf>,
}

pub fn run(command: &IdentityCommand, json: bool) -> Result<()> {
    match &command.action {
        IdentityAction::New(args) => new(args, json),
    }
}

/// The passphrase on the first line of `path`, if a file is given.
fn passphrase(path: Option<&std::path::Path>) -> Result<Option<Zeroizing<String>>> {
    let Some(path) = path else { return Ok(None) };
    let text = Zeroizing::new(
        std::fs::read_to_string(path).with_context(|| format!("reading the passphrase from {}", path.display()))?,
    );
    let line = Zeroizing::new(text.lines().next().unwrap_or_default().to_string());
    if line.is_empty() {
        bail!("{} holds no passphrase on its first line", path.display());
    }
    Ok(Some(line))
}

/// Reads a member's identity (`--identity`), with the passphrase in
/// `passphrase_file` if the key has one.
pub fn read(path: &std::path::Path, passphrase_file: Option<&std::path::Path>) -> Result<Identity> {
    let passphrase = passphrase(passphrase_file)?;
    Identity::read(path, passphrase.as_ref().map(|p| p.as_bytes()))
        .with_context(|| format!("reading the identity {}", path.display()))
}

fn new(args: &NewArgs, json: bool) -> Result<()> {
    if args.out.exists() {
        bail!("{} exists; a key file is never overwritten — choose another --out", args.out.display());
    }
    let passphrase = passphrase(args.passphrase_file.as_deref())?;
    let identity = Identity::generate(&args.comment)?;
    identity.write(&args.out, passphrase.as_ref().map(|p| p.as_bytes()))?;
    let member = identity.member_key()?;
    let (public_key, fingerprint) = (member.to_openssh()?, member.fingerprint());
    if json {
        let file = args.out.display().to_string();
        let protected = passphrase.is_some();
        println!(
            "{}",
            serde_json::json!({ "public_key": public_key, "fingerprint": fingerprint, "file": file, "passphrase_protected": protected })
        );
    } else {
        println!("public_key: {public_key}\nfingerprint: {fingerprint}\nfile: {}", args.out.display());
    }
    Ok(())
}
