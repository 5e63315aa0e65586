//! `shardvault backup`: export the keys' shares, each sealed by its own node
//! to its party's `ssh-ed25519` recipient (docs/FORMATS.md, "Backups"),
//! fetch an approved export's package, and list which keys need a backup.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use shardvault_api::{BackupPackage, BackupRequest, BACKUP_FORMAT, BACKUP_VERSION};
use shardvault_client::Outcome;
use shardvault_governance::MemberKey;

use crate::ApiArgs;

/// Backups of key shares.
#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Export every key (or those named): a governed request that every
    /// member who may approve must approve. Each node seals its own share to
    /// its party's recipient with age; the coordinator only assembles them.
    Export(ExportArgs),
    /// Write the package of an export request that ran (after `export`
    /// without --wait, once the approvals are in).
    Fetch {
        #[command(flatten)]
        api: ApiArgs,
        /// The export request's id.
        request_id: String,
        /// Where to write the package (created 0600; never overwritten).
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        check: CheckArgs,
    },
    /// Every key, its epoch and its last backup; keys whose active epoch has
    /// no backup (never backed up, or refreshed since) are flagged.
    List {
        #[command(flatten)]
        api: ApiArgs,
    },
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    api: ApiArgs,
    /// A key to export (repeat for several; none: every key).
    #[arg(long = "key")]
    keys: Vec<String>,
    /// One recipient per party, in party order (party 1 first): an OpenSSH
    /// `ssh-ed25519 AAAA… comment` line, or a file holding one (`id_ed25519.pub`).
    #[arg(long = "recipient", required = true)]
    recipients: Vec<String>,
    /// Where to write the package (created 0600; never overwritten).
    #[arg(long)]
    out: PathBuf,
    /// Wait until every member approved and the export ran.
    #[arg(long)]
    wait: bool,
    /// How long --wait waits, in seconds.
    #[arg(long, env = "SHARDVAULT_WAIT_TIMEOUT", default_value_t = 3600)]
    wait_timeout: u64,
    #[command(flatten)]
    check: CheckArgs,
}

/// How a package is checked before it is written.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The pinned cluster file (a devnet writes DIR/cluster.json): the
    /// package is written only if every party's files are signed by its node.
    #[arg(long, env = "SHARDVAULT_CLUSTER")]
    cluster: Option<PathBuf>,
    /// Write the package without checking the nodes' signatures (with a
    /// warning; it overrides SHARDVAULT_CLUSTER). A backup nobody checked may
    /// not recover anything.
    #[arg(long)]
    unverified: bool,
}

pub fn run(json: bool, command: &BackupCommand) -> Result<()> {
    match command {
        BackupCommand::Export(args) => export(json, args),
        BackupCommand::Fetch { api, request_id, out, check } => {
            refuse_existing(out)?;
            let client = crate::client(api)?;
            let record = client.request(request_id).with_context(|| format!("fetching request {request_id}"))?;
            let (keys, recipients) = requested(&record, request_id)?;
            match shardvault_client::finished::<BackupPackage>(record)? {
                Outcome::Done(package) => {
                    let expected =
                        Expected { request_id: Some(request_id), keys: &keys, recipients: Some(&recipients) };
                    write(json, out, &package, check, &expected)
                }
                Outcome::Pending(record) => bail!(
                    "request {} is still pending: every member who may approve must approve it \
                     (`shardvault request show {}` says who has not)",
                    record.request_id,
                    record.request_id
                ),
            }
        }
        BackupCommand::List { api } => list(json, &crate::client(api)?.backups()?),
    }
}

/// The keys and recipients the export request `request_id` names, decoded
/// here from its canonical bytes (which must hash to the record's hash and
/// name that id): what the fetched package must answer.
fn requested(record: &shardvault_api::RequestRecord, request_id: &str) -> Result<(Vec<String>, Vec<String>)> {
    let governed = record
        .governed
        .as_ref()
        .with_context(|| format!("request {request_id} carries no governed request: it is not an export"))?;
    let hash = hex::encode(Sha256::digest(governed.request.as_bytes()));
    if !hash.eq_ignore_ascii_case(&governed.request_hash) {
        bail!("request {request_id}'s bytes do not hash to its request_hash: the coordinator changed them");
    }
    let request = shardvault_governance::Request::from_bytes(governed.request.as_bytes())
        .with_context(|| format!("request {request_id} does not decode"))?;
    if request.id.to_string() != request_id {
        bail!("the coordinator answered request {} for request {request_id}", request.id);
    }
    let shardvault_governance::Operation::ExportBackup { keys, recipients } = request.operation else {
        bail!("request {request_id} is a {} request, not a backup export", request.operation.kind());
    };
    let recipients = recipients.iter().map(MemberKey::to_openssh).collect::<Result<Vec<_>, _>>()?;
    Ok((keys.iter().map(ToString::to_string).collect(), recipients))
}

fn export(json: bool, args: &ExportArgs) -> Result<()> {
    refuse_existing(&args.out)?;
    let recipients = args.recipients.iter().map(|r| recipient(r)).collect::<Result<Vec<_>>>()?;
    let asked = recipients
        .iter()
        .map(|line| Ok(line.parse::<MemberKey>()?.to_openssh()?))
        .collect::<Result<Vec<_>>>()
        .context("a recipient")?;
    let body = BackupRequest { keys: args.keys.clone(), recipients };
    let client = crate::client(&args.api)?;
    let write = |package: &BackupPackage, request_id: Option<&str>| {
        let expected = Expected { request_id, keys: &args.keys, recipients: Some(&asked) };
        write(json, &args.out, package, &args.check, &expected)
    };
    match client.export_backup(&body, Some(&crate::idempotency(&args.api)))? {
        Outcome::Done(package) => write(&package, None),
        Outcome::Pending(record) if args.wait => {
            let answer =
                crate::governance::wait_for(&client, &record.request_id, Duration::from_secs(args.wait_timeout))?;
            let package: BackupPackage =
                serde_json::from_value(answer).context("the export's answer is not a backup package")?;
            write(&package, Some(&record.request_id))
        }
        Outcome::Pending(record) => {
            let next = format!(
                "every member who may approve must approve it (`shardvault request approve {0}`); then \
                 `shardvault backup fetch {0} --out {1}` writes the package",
                record.request_id,
                args.out.display()
            );
            crate::print_answer(
                json,
                &json!({ "request_id": record.request_id, "status": record.status, "next": next }),
            )
        }
    }
}

/// A recipient given as the key line itself or as a file holding it.
fn recipient(given: &str) -> Result<String> {
    if given.trim_start().starts_with("ssh-") {
        return Ok(given.trim().to_string());
    }
    let text = std::fs::read_to_string(given)
        .with_context(|| format!("recipient {given:?} is neither an `ssh-ed25519 AAAA…` line nor a readable file"))?;
    let line = text.lines().find(|l| !l.trim().is_empty()).unwrap_or_default();
    Ok(line.trim().to_string())
}

fn refuse_existing(out: &Path) -> Result<()> {
    if out.exists() {
        bail!("{} exists; choose another --out (a backup is never written over)", out.display());
    }
    Ok(())
}

/// What the package must answer: the request, the keys asked for (none:
/// every key), the recipients given.
struct Expected<'a> {
    request_id: Option<&'a str>,
    keys: &'a [String],
    recipients: Option<&'a [String]>,
}

/// Checks the package as `recover` will read it (shape, checksums), that it
/// answers what was `expected`, and (unless --unverified) every party's node
/// signature against the pinned cluster file; then writes it 0600.
fn write(json: bool, out: &Path, package: &BackupPackage, check: &CheckArgs, expected: &Expected<'_>) -> Result<()> {
    if package.format != BACKUP_FORMAT || package.version != BACKUP_VERSION {
        bail!(
            "the coordinator answered a {} version {} package, not {BACKUP_FORMAT} version {BACKUP_VERSION}",
            package.format,
            package.version
        );
    }
    if let Some(id) = expected.request_id.filter(|id| *id != package.request_id) {
        bail!("the coordinator answered the package of request {}, not of {id}; not writing it", package.request_id);
    }
    if package.exported_key_shares.is_empty() {
        bail!("the coordinator answered a package without keys; not writing it");
    }
    if let Some(key) =
        expected.keys.iter().find(|k| !package.exported_key_shares.iter().any(|e| e.key_id.eq_ignore_ascii_case(k)))
    {
        bail!("the package holds no entry for key {key}, which the export names; not writing it");
    }
    for entry in &package.exported_key_shares {
        crate::recover::check_entry(entry).context("not writing the package")?;
        if expected.recipients.is_some_and(|asked| entry.encryption_pubkeys != asked) {
            bail!(
                "the package's entry for key {} is sealed to {:?}, not to the recipients given; not writing it",
                entry.key_id,
                entry.encryption_pubkeys
            );
        }
    }
    authenticate(package, check)?;
    let text = serde_json::to_vec_pretty(package)?;
    refuse_existing(out)?;
    shardvault_vault::files::write_private(out, &text).with_context(|| format!("writing {}", out.display()))?;
    let keys: Vec<Value> = package
        .exported_key_shares
        .iter()
        .map(|e| json!({ "key_id": e.key_id, "scheme": e.scheme, "epoch": e.epoch, "threshold": e.threshold, "parties": e.party_ids.len() }))
        .collect();
    crate::print_answer(
        json,
        &json!({ "request_id": package.request_id, "out": out.display().to_string(), "keys": keys,
                 "next": "keep each recipient's private key apart; `age -d -i KEY` opens that party's share, `shardvault recover` rebuilds keys offline" }),
    )
}

/// Refuses a package in which any party's files are not signed by its node
/// (checked against the pinned cluster file), unless --unverified.
fn authenticate(package: &BackupPackage, check: &CheckArgs) -> Result<()> {
    let Some(file) = check.cluster.as_ref().filter(|_| !check.unverified) else {
        if !check.unverified {
            bail!(
                "refusing to write a backup without checking it: give the pinned cluster file with --cluster FILE \
                 or SHARDVAULT_CLUSTER (every node signs the files it sealed), or --unverified"
            );
        }
        eprintln!("WARNING: --unverified: the nodes' signatures on this backup were not checked");
        return Ok(());
    };
    let cluster = crate::daemon::read_cluster(file)?;
    for entry in &package.exported_key_shares {
        let authenticity = crate::authenticity::check(package, entry, &cluster)?;
        if !authenticity.complete(entry) {
            bail!(
                "the package's entry for key {} is not what its nodes sealed ({}); not writing it. Export again; \
                 if it repeats, the coordinator or that node is not to be trusted",
                entry.key_id,
                authenticity.describe_rejected()
            );
        }
        for (address, why) in &authenticity.unattested {
            eprintln!("warning: key {}: the listed address {address} is not attested: {why}", entry.key_id);
        }
    }
    Ok(())
}

fn list(json: bool, list: &shardvault_api::BackupList) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(list)?);
        return Ok(());
    }
    for key in &list.keys {
        let last = match &key.last_backup {
            Some(b) => format!("last backup: epoch {} at {} (request {})", b.epoch, b.at, b.request_id),
            None => "never backed up".to_string(),
        };
        let flag = if key.current { "" } else { "  ← NEEDS A BACKUP (its active epoch has none)" };
        println!("{}  {}  epoch {}  {last}{flag}", key.key_id, key.scheme, key.epoch);
    }
    let stale = list.keys.iter().filter(|k| !k.current).count();
    if stale > 0 {
        eprintln!("{stale} key(s) have no backup of their active epoch: run `shardvault backup export`");
    }
    Ok(())
}
