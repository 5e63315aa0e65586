//! `shardvault shamir split` / `combine`: Shamir secret sharing in HashiCorp
//! Vault's share format (shardvault-shamir; docs/FORMATS.md, "Shamir shares
//! (Vault format)"), shares as standard padded base64, one per line or file.

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use clap::{Args, Subcommand};
use zeroize::Zeroizing;

/// The largest secret `split` reads.
pub const MAX_SECRET: usize = 64 * 1024;

/// The most share text `combine` reads: 255 shares of the largest secret,
/// in base64, with room for line ends.
const MAX_SHARE_TEXT: usize = 255 * (MAX_SECRET / 3 + 2) * 4;

/// Split and combine secrets (HashiCorp Vault's Shamir share format).
#[derive(Debug, Subcommand)]
pub enum ShamirCommand {
    /// Split a secret into PARTS shares, any THRESHOLD of which recover it.
    ///
    /// The secret is raw bytes (1 byte to 64 KiB) from stdin or --in. Fewer
    /// than THRESHOLD shares reveal nothing about it. Shares go to stdout,
    /// one standard base64 share per line, or with --out-dir one file per
    /// share.
    Split(SplitArgs),
    /// Recover a secret from its shares; its raw bytes go to stdout.
    ///
    /// Shares are standard base64, one per line (blank lines ignored), from
    /// stdin or from --in files. Every share given is used. Vault's format
    /// has no checksum: shares of different splits, a changed share, or
    /// fewer than the threshold give wrong bytes, not an error, so check the
    /// result (a backup identity decrypts its backup, a key matches its
    /// public key).
    Combine(CombineArgs),
}

#[derive(Debug, Args)]
pub struct SplitArgs {
    /// How many shares to make (2..=255).
    #[arg(long)]
    pub parts: u8,
    /// How many shares recover the secret (2..=PARTS).
    #[arg(long)]
    pub threshold: u8,
    /// Read the secret from this file instead of stdin.
    #[arg(long = "in")]
    pub input: Option<PathBuf>,
    /// Write share N to DIR/share-N.b64 (mode 0600; the directory is made if
    /// missing, an existing share file is never overwritten) and print the
    /// files' paths instead of the shares.
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CombineArgs {
    /// A file of shares (one per line, or a single share); repeat for
    /// several files. Without it the shares are read from stdin.
    #[arg(long = "in")]
    pub inputs: Vec<PathBuf>,
}

pub fn run(command: &ShamirCommand, json: bool) -> Result<()> {
    match command {
        ShamirCommand::Split(args) => split(args, json),
        ShamirCommand::Combine(args) => combine(args, json),
    }
}

fn split(args: &SplitArgs, json: bool) -> Result<()> {
    let secret = match &args.input {
        Some(path) => read_limited(std::fs::File::open(path), path, MAX_SECRET, "secret")?,
        None => read_limited(Ok(std::io::stdin()), Path::new("stdin"), MAX_SECRET, "secret")?,
    };
    if secret.is_empty() {
        bail!("the secret is empty: give it on stdin or with --in FILE (raw bytes)");
    }
    let shares = shardvault_shamir::split(&secret, args.parts, args.threshold)?;
    let shares: Vec<Zeroizing<String>> = shares.iter().map(|share| Zeroizing::new(STANDARD.encode(share))).collect();
    match &args.out_dir {
        Some(dir) => {
            let files = write_share_files(dir, &shares)?;
            let files: Vec<String> = files.iter().map(|file| file.display().to_string()).collect();
            match json {
                true => println!(
                    "{}",
                    serde_json::json!({ "files": files, "parts": args.parts, "threshold": args.threshold })
                ),
                false => println!("{}", files.join("\n")),
            }
            Ok(())
        }
        None if json => {
            // Written by hand so that no copy of a share escapes zeroizing
            // (base64 needs no JSON escaping).
            let mut body = Zeroizing::new(String::from("{\"shares\":["));
            for (index, share) in shares.iter().enumerate() {
                body.push_str(if index == 0 { "\"" } else { ",\"" });
                body.push_str(share);
                body.push('"');
            }
            body.push_str(&format!("],\"parts\":{},\"threshold\":{}}}\n", args.parts, args.threshold));
            write_stdout(body.as_bytes())
        }
        None => {
            let mut text = Zeroizing::new(String::new());
            for share in &shares {
                text.push_str(share);
                text.push('\n');
            }
            write_stdout(text.as_bytes())
        }
    }
}

/// DIR/share-1.b64 … DIR/share-N.b64, each with one share and a newline,
/// mode 0600. Checks that none exists before writing any.
fn write_share_files(dir: &Path, shares: &[Zeroizing<String>]) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let files: Vec<PathBuf> = (1..=shares.len()).map(|n| dir.join(format!("share-{n}.b64"))).collect();
    if let Some(existing) = files.iter().find(|file| file.exists()) {
        bail!("{} exists; share files are never overwritten — choose another --out-dir", existing.display());
    }
    for (file, share) in files.iter().zip(shares) {
        let mut out = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(file)
            .with_context(|| format!("creating {}", file.display()))?;
        out.write_all(share.as_bytes())
            .and_then(|()| out.write_all(b"\n"))
            .and_then(|()| out.sync_all())
            .with_context(|| format!("writing {}", file.display()))?;
    }
    Ok(files)
}

fn combine(args: &CombineArgs, json: bool) -> Result<()> {
    let mut shares: Vec<Zeroizing<Vec<u8>>> = Vec::new();
    if args.inputs.is_empty() {
        let text = read_limited(Ok(std::io::stdin()), Path::new("stdin"), MAX_SHARE_TEXT, "share text")?;
        shares.extend(decode_lines(&text, "stdin")?);
    }
    for path in &args.inputs {
        let text = read_limited(std::fs::File::open(path), path, MAX_SHARE_TEXT, "share text")?;
        shares.extend(decode_lines(&text, &path.display().to_string())?);
    }
    let views: Vec<&[u8]> = shares.iter().map(|share| share.as_slice()).collect();
    let secret = shardvault_shamir::combine(&views).with_context(|| format!("combining {} share(s)", views.len()))?;
    match json {
        true => {
            // By hand, like split's: base64 needs no escaping, and nothing unzeroized holds it.
            let mut body = Zeroizing::new(String::from("{\"secret_base64\":\""));
            body.push_str(&Zeroizing::new(STANDARD.encode(&secret)));
            body.push_str("\"}\n");
            write_stdout(body.as_bytes())
        }
        false => write_stdout(&secret),
    }
}

/// Each non-blank line of `text` as a base64 share.
fn decode_lines(text: &[u8], source: &str) -> Result<Vec<Zeroizing<Vec<u8>>>> {
    let text =
        std::str::from_utf8(text).with_context(|| format!("the shares in {source} are not text (base64 lines)"))?;
    text.lines()
        .enumerate()
        .map(|(index, line)| (index + 1, line.trim()))
        .filter(|(_, line)| !line.is_empty())
        .map(|(number, line)| {
            STANDARD
                .decode(line)
                .map(Zeroizing::new)
                .with_context(|| format!("line {number} of {source} is not a base64 share (standard alphabet, padded)"))
        })
        .collect()
}

/// All of `reader`, refusing more than `limit` bytes.
fn read_limited<R: Read>(
    reader: std::io::Result<R>,
    path: &Path,
    limit: usize,
    what: &str,
) -> Result<Zeroizing<Vec<u8>>> {
    let reader = reader.with_context(|| format!("opening {}", path.display()))?;
    // Allocated up front so that growing leaves no copy behind (share text
    // beyond 1 MiB may still be moved once or twice; it is base64 of shares).
    let mut bytes = Zeroizing::new(Vec::with_capacity(limit.min(1 << 20) + 1));
    reader
        .take(limit as u64 + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading the {what} from {}", path.display()))?;
    if bytes.len() > limit {
        bail!("the {what} in {} is longer than {} KiB, the most this reads", path.display(), limit / 1024);
    }
    Ok(bytes)
}

fn write_stdout(bytes: &[u8]) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(bytes).and_then(|()| stdout.flush()).context("writing to stdout")
}
