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

fn new(args: &NewArgs, json: bool) -> Result<()> {
    if args.out.exists() {
        bail!("{} exists; a key file is never overwritten — choose another --out", args.out.display());
    }
    let passphrase = match &args.passphrase_file {
        None => None,
        Some(path) => {
            let text = Zeroizing::new(
                std::fs::read_to_string(path)
                    .with_context(|| format!("reading the passphrase from {}", path.display()))?,
            );
            let line = Zeroizing::new(text.lines().next().unwrap_or_default().to_string());
            if line.is_empty() {
                bail!("{} holds no passphrase on its first line", path.display());
            }
            Some(line)
        }
    };
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
