//! `shardvault member|policy|request|audit`: the organisation's members and
//! policy, and the requests they approve — each shown as this CLI decodes it
//! from the request's canonical bytes and a local replay of the governance
//! log (see `review`), never as the coordinator describes it.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use shardvault_api::{AddMember, RemoveMember, RequestRecord, SetPolicy};
use shardvault_client::{finished, Error as ClientError, Outcome, RequestFilter};
use shardvault_governance::{MemberKey, MemberName, Policy, Role, REJECT_NAMESPACE};

use crate::client::Api;
use crate::review::{self, Checked, Governance};
use crate::{audit, ApiArgs};

/// The API, and the organisation it must serve.
#[derive(Debug, Args)]
pub struct OrgArgs {
    #[command(flatten)]
    pub api: ApiArgs,
    /// The organisation's genesis file (a devnet writes DIR/genesis.json):
    /// the coordinator's governance log must start from it. Without it the
    /// organisation is the coordinator's word, and the output says so.
    #[arg(long, env = "SHARDVAULT_GENESIS")]
    pub genesis: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum MemberCommand {
    /// Ask to add a member (a governed request, approved with --identity):
    /// prints the members after the change, or the request if it waits for
    /// more approvals.
    Add {
        #[command(flatten)]
        org: OrgArgs,
        /// Their name: 1-64 of a-z A-Z 0-9 . _ -
        #[arg(long)]
        name: String,
        /// owner, admin, member, api or viewer (docs/GOVERNANCE.md).
        #[arg(long)]
        role: String,
        /// Their OpenSSH public key line, `ssh-ed25519 AAAA… comment`.
        #[arg(long)]
        public_key: String,
    },
    /// The members, replayed here from the governance log.
    List {
        #[command(flatten)]
        org: OrgArgs,
    },
    /// Ask to remove a member (a governed request, as `add`).
    Remove {
        #[command(flatten)]
        org: OrgArgs,
        /// The member's name.
        #[arg(long)]
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// The policy in force, replayed here from the governance log.
    Show {
        #[command(flatten)]
        org: OrgArgs,
    },
    /// Ask to replace the policy with FILE (JSON, docs/POLICY.md), checked
    /// here against the members first (a governed request, as `member add`).
    Set {
        #[command(flatten)]
        org: OrgArgs,
        /// The policy file.
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum RequestCommand {
    /// The history, newest first, each request decoded here.
    List(ListArgs),
    /// One request as decoded here: what it does, which rule applies, whose
    /// approvals count, and (once it ran) its answer.
    Show {
        #[command(flatten)]
        org: OrgArgs,
        /// The request id.
        id: String,
    },
    /// Show a request, ask, then approve it with --identity (or submit
    /// `ssh-keygen -Y sign` output with --sshsig).
    Approve(SignoffArgs),
    /// Show a request, ask, then reject it (one rejection ends it).
    Reject(SignoffArgs),
    /// Write to stdout exactly the bytes an approval signs, for `ssh-keygen
    /// -Y sign -n shardvault-request` (checked first; nothing else is written).
    Payload {
        #[command(flatten)]
        org: OrgArgs,
        /// The request id.
        id: String,
    },
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub org: OrgArgs,
    /// Only requests for this key.
    #[arg(long)]
    pub key: Option<String>,
    /// Only this status: pending, running, succeeded, failed, rejected, expired.
    #[arg(long)]
    pub status: Option<String>,
    /// Only requests made at or after this unix time.
    #[arg(long)]
    pub since: Option<u64>,
    /// At most this many (default 100, at most 1000).
    #[arg(long)]
    pub limit: Option<u32>,
    /// CSV (a header row, RFC 4180 quoting) instead of a table; wins over --json.
    #[arg(long)]
    pub csv: bool,
}

#[derive(Debug, Args)]
pub struct SignoffArgs {
    #[command(flatten)]
    pub org: OrgArgs,
    /// The request id.
    pub id: String,
    /// Do not ask (after showing the request).
    #[arg(long)]
    pub yes: bool,
    /// Submit this armored signature instead of signing with --identity:
    /// `ssh-keygen -Y sign -n shardvault-request -f KEY` over `request
    /// payload` output (`-n shardvault-reject` to reject).
    #[arg(long)]
    pub sshsig: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the audit log: its hash chain, and every approval and rejection
    /// against the request's bytes and the replayed members. Exits non-zero
    /// on any failure.
    Verify {
        #[command(flatten)]
        org: OrgArgs,
    },
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Connects, and replays the governance log over the (pinned) genesis.
fn connect(org: &OrgArgs) -> Result<(Api, Governance)> {
    let pinned = org.genesis.as_deref().map(|file| review::read_pinned(file).map(|g| (g, file))).transpose()?;
    let api = crate::client(&org.api)?;
    let log = api.governance().context("fetching the governance log (GET /v1/governance)")?;
    let governance = review::replay(&log, pinned.as_ref().map(|(g, f)| (g, *f)))?;
    if governance.pinned.is_none() {
        eprintln!(
            "warning: the organisation is not pinned (give --genesis FILE or SHARDVAULT_GENESIS): members and \
             policy are the coordinator's word"
        );
    }
    Ok((api, governance))
}

pub fn member(json: bool, command: &MemberCommand) -> Result<()> {
    match command {
        MemberCommand::Add { org, name, role, public_key } => {
            // Refuse a bad member before asking anything.
            name.parse::<MemberName>().context("--name")?;
            role.parse::<Role>().context("--role")?;
            public_key.parse::<MemberKey>().context("--public-key")?;
            let (api, _) = connect(org)?;
            let body = AddMember { name: name.clone(), role: role.clone(), public_key: public_key.clone() };
            let outcome = api.add_member(&body, Some(&crate::idempotency(&org.api)));
            members_outcome(json, &api, outcome)
        }
        MemberCommand::Remove { org, name } => {
            name.parse::<MemberName>().context("--name")?;
            let (api, governance) = connect(org)?;
            if !governance.state.members().iter().any(|m| m.name.as_str() == name) {
                bail!("there is no member {name}: `shardvault member list` shows who there is");
            }
            let outcome = api.remove_member(&RemoveMember { name: name.clone() }, Some(&crate::idempotency(&org.api)));
            members_outcome(json, &api, outcome)
        }
        MemberCommand::List { org } => {
            let (api, governance) = connect(org)?;
            let mut answer = json!({
                "organisation": governance.organisation(),
                "members": governance.members(),
                "log_head": hex::encode(governance.state.head()),
            });
            if let Ok(theirs) = api.members() {
                if theirs.log_head != answer["log_head"] {
                    answer["warning"] = json!(format!(
                        "the coordinator's member list is at log head {}, the replay at {}",
                        theirs.log_head, answer["log_head"]
                    ));
                }
            }
            print_members(json, &answer)
        }
    }
}

fn members_outcome(
    json: bool,
    api: &Api,
    outcome: Result<Outcome<shardvault_api::MemberList>, ClientError>,
) -> Result<()> {
    match outcome {
        Ok(Outcome::Done(list)) => print_members(json, &serde_json::to_value(list)?),
        Ok(Outcome::Pending(record)) => print_pending(json, &record),
        Err(error) => unfinished(json, api, error, None),
    }
}

fn print_members(json: bool, answer: &Value) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(answer)?);
        return Ok(());
    }
    for m in answer["members"].as_array().into_iter().flatten() {
        let field = |name: &str| m[name].as_str().unwrap_or_default().to_string();
        println!("{:<20} {:<7} {}  {}", field("name"), field("role"), field("fingerprint"), field("public_key"));
    }
    if let Some(warning) = answer["warning"].as_str() {
        eprintln!("warning: {warning}");
    }
    Ok(())
}

pub fn policy(json: bool, command: &PolicyCommand) -> Result<()> {
    match command {
        PolicyCommand::Show { org } => {
            let (_, governance) = connect(org)?;
            let answer = json!({
                "organisation": governance.organisation(),
                "policy": governance.state.policy(),
                "log_head": hex::encode(governance.state.head()),
            });
            match json {
                true => println!("{}", serde_json::to_string_pretty(&answer)?),
                // The policy's own field order (docs/POLICY.md), not sorted keys.
                false => println!("{}", serde_json::to_string_pretty(governance.state.policy())?),
            }
            Ok(())
        }
        PolicyCommand::Set { org, file } => {
            let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
            let policy: Policy = serde_json::from_str(&text)
                .with_context(|| format!("{} is not a policy (docs/POLICY.md)", file.display()))?;
            let (api, governance) = connect(org)?;
            policy
                .validate(governance.state.members())
                .with_context(|| format!("{} cannot be put in force with the current members", file.display()))?;
            let body = SetPolicy { policy: serde_json::to_value(&policy)? };
            match api.set_policy(&body, Some(&crate::idempotency(&org.api))) {
                Ok(Outcome::Done(answer)) => crate::show(json, &answer),
                Ok(Outcome::Pending(record)) => print_pending(json, &record),
                Err(error) => unfinished(json, &api, error, None),
            }
        }
    }
}

pub fn request(json: bool, command: &RequestCommand) -> Result<()> {
    match command {
        RequestCommand::List(args) => list(json, args),
        RequestCommand::Show { org, id } => {
            let (api, governance) = connect(org)?;
            let checked = fetch(&api, id)?;
            let review = review::review(&checked, &governance, now());
            print_review(json, &review, false)
        }
        RequestCommand::Payload { org, id } => {
            let api = crate::client(&org.api)?;
            let checked = fetch(&api, id)?;
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(checked.bytes())?;
            stdout.flush()?;
            Ok(())
        }
        RequestCommand::Approve(args) => signoff(json, args, Verdict::Approve),
        RequestCommand::Reject(args) => signoff(json, args, Verdict::Reject),
    }
}

/// The record of request `id`, checked (decodes, matches its hash).
fn fetch(api: &Api, id: &str) -> Result<Checked> {
    let record = api.request(id).with_context(|| format!("fetching request {id}"))?;
    review::check(&record, id)
}

fn list(json: bool, args: &ListArgs) -> Result<()> {
    let (api, governance) = connect(&args.org)?;
    let filter =
        RequestFilter { status: args.status.clone(), key: args.key.clone(), since: args.since, limit: args.limit };
    let list = api.requests(&filter).context("fetching the history (GET /v1/requests)")?;
    let rows: Vec<review::Row> = list.requests.iter().map(|record| review::row(record, &governance)).collect();
    if args.csv {
        print!("{}", review::csv(&rows));
    } else if json {
        println!("{}", serde_json::to_string_pretty(&json!({ "requests": rows }))?);
    } else {
        print!("{}", review::table(&rows));
    }
    Ok(())
}

fn print_review(json: bool, review: &Value, to_stderr: bool) -> Result<()> {
    let text = match json && !to_stderr {
        true => serde_json::to_string_pretty(review)?,
        false => {
            let mut text = String::new();
            review::outline(review, 0, &mut text);
            text.trim_end().to_string()
        }
    };
    match to_stderr {
        true => eprintln!("{text}"),
        false => println!("{text}"),
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Approve,
    Reject,
}

fn signoff(json: bool, args: &SignoffArgs, verdict: Verdict) -> Result<()> {
    let (api, governance) = connect(&args.org)?;
    let checked = fetch(&api, &args.id)?;
    // The review goes to stderr: stdout keeps the result (one JSON document with --json).
    print_review(json, &review::review(&checked, &governance, now()), true)?;
    if args.sshsig.is_none() && api.identity().is_none() {
        bail!(
            "signing needs your key: give --identity FILE (SHARDVAULT_IDENTITY), or sign `shardvault request \
             payload {}` with ssh-keygen and pass the signature with --sshsig FILE",
            args.id
        );
    }
    match verdict {
        Verdict::Approve => review::approvable(&checked, &governance, now())?,
        Verdict::Reject if checked.record.status != "pending" => {
            bail!("request {} is {}, not pending: there is nothing to reject", args.id, checked.record.status)
        }
        Verdict::Reject => {}
    }
    let question = match verdict {
        Verdict::Approve => "Approve?",
        Verdict::Reject => "Reject?",
    };
    if !confirm(question, args.yes)? {
        bail!("not {}: you did not answer y", if verdict == Verdict::Approve { "approved" } else { "rejected" });
    }
    let id = &args.id;
    let record = match (&args.sshsig, verdict) {
        (Some(file), _) => {
            let armored = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
            let namespace = (verdict == Verdict::Reject).then_some(REJECT_NAMESPACE);
            let hint = match verdict {
                Verdict::Approve => "ssh-keygen -Y sign -n shardvault-request",
                Verdict::Reject => "ssh-keygen -Y sign -n shardvault-reject",
            };
            review::check_external(&checked, &governance, &armored, namespace).with_context(|| {
                format!(
                    "{}: make it with `{hint} -f KEY` over `shardvault request payload {id}` output",
                    file.display()
                )
            })?;
            match verdict {
                Verdict::Approve => api.submit_approval(id, armored.trim())?,
                Verdict::Reject => api.submit_rejection(id, armored.trim())?,
            }
        }
        (None, Verdict::Approve) => api.approve(id, checked.bytes())?,
        (None, Verdict::Reject) => api.reject(id, checked.bytes())?,
    };
    signed_off(json, record)
}

/// Asks `question` on the terminal unless `yes`; without a terminal, refuses.
fn confirm(question: &str, yes: bool) -> Result<bool> {
    if yes {
        return Ok(true);
    }
    if !std::io::stdin().is_terminal() {
        bail!("no terminal to ask on: review the request with `shardvault request show`, then pass --yes");
    }
    eprint!("{question} [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}

/// After an approval or rejection: the call's answer once it ran, else the record.
fn signed_off(json: bool, record: RequestRecord) -> Result<()> {
    match record.status.as_str() {
        "succeeded" | "failed" => match finished::<Value>(record)? {
            Outcome::Done(answer) => crate::print_answer(json, &answer),
            Outcome::Pending(record) => print_pending(json, &record),
        },
        "pending" => print_pending(json, &record),
        _ => crate::print_answer(json, &record_summary(&record)),
    }
}

fn record_summary(record: &RequestRecord) -> Value {
    let governed = record.governed.as_ref();
    json!({
        "request_id": record.request_id,
        "status": record.status,
        "request_hash": governed.map(|g| g.request_hash.clone()),
        "approvals": governed.map(|g| g.approvals.iter().map(|a| a.member.clone()).collect::<Vec<_>>()),
        "rejections": governed.map(|g| g.rejections.iter().map(|a| a.member.clone()).collect::<Vec<_>>()),
    })
}

/// A request waiting for approvals: its id, status and hash, and what to do.
fn print_pending(json: bool, record: &RequestRecord) -> Result<()> {
    let mut value = record_summary(record);
    value["next"] = json!(format!(
        "it needs more approvals: `shardvault request show {0}` says whose; they run `shardvault request approve {0}`",
        record.request_id
    ));
    crate::print_answer(json, &value)
}

/// A creating call's (key create, address, sign, refresh) result: the
/// answer; or, when the request waits for others' approvals, the request
/// (exit 0) — or with `wait`, the answer once it ran.
pub fn governed<T: serde::Serialize>(
    json: bool,
    api: &Api,
    result: Result<T, ClientError>,
    wait: Option<Duration>,
) -> Result<()> {
    match result {
        Ok(answer) => crate::show(json, &answer),
        Err(error) => unfinished(json, api, error, wait),
    }
}

/// A client error: a request left pending is printed (or waited for); any
/// other error is returned.
pub fn unfinished(json: bool, api: &Api, error: ClientError, wait: Option<Duration>) -> Result<()> {
    let ClientError::NotDone { request_id, status, .. } = &error else { return Err(error.into()) };
    if status != "pending" {
        return Err(error.into());
    }
    match wait {
        None => {
            let record = api.request(request_id).with_context(|| format!("fetching request {request_id}"))?;
            print_pending(json, &record)
        }
        Some(timeout) => {
            let answer = wait_for(api, request_id, timeout)?;
            crate::print_answer(json, &answer)
        }
    }
}

/// Polls request `id` (every second) until it leaves pending: its call's
/// answer, or the failure, rejection or expiry as an error.
pub fn wait_for(api: &Api, id: &str, timeout: Duration) -> Result<Value> {
    let start = Instant::now();
    eprintln!("waiting for request {id} to be approved (up to {} s)…", timeout.as_secs());
    loop {
        let record = api.request(id).with_context(|| format!("fetching request {id}"))?;
        if !matches!(record.status.as_str(), "pending" | "running") {
            return match finished::<Value>(record) {
                Ok(Outcome::Done(answer)) => Ok(answer),
                Ok(Outcome::Pending(record)) => Err(anyhow!("request {} is still pending", record.request_id)),
                Err(error) => Err(anyhow::Error::from(error).context(format!("request {id} did not run"))),
            };
        }
        if start.elapsed() >= timeout {
            bail!(
                "request {id} is still {} after {} s: `shardvault request show {id}` says whose approvals it needs; \
                 wait longer with --wait-timeout",
                record.status,
                timeout.as_secs()
            );
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

pub fn audit(json: bool, command: &AuditCommand) -> Result<()> {
    let AuditCommand::Verify { org } = command;
    let (api, governance) = connect(org)?;
    let log = api.audit().context("fetching the audit log (GET /v1/audit)")?;
    let mut bytes = |id: &str| -> Result<String, String> {
        let record = api.request(id).map_err(|e| format!("fetching request {id}: {e}"))?;
        audit::checked_bytes(&record, id)
    };
    let report = audit::verify(&log.entries, &mut bytes, &governance.ever);
    let mut value = report.to_json();
    value["organisation"] = governance.organisation();
    if json {
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        println!(
            "{} entries, head {}; {} signatures verified",
            report.entries,
            report.head.as_deref().unwrap_or("(empty)"),
            report.signatures_verified
        );
        for failure in &report.failures {
            println!("FAILED entry {} (seq {}): {}", failure.position, failure.seq, failure.problem);
        }
    }
    if !report.failures.is_empty() {
        bail!(
            "the audit log fails {} check(s): it was edited, truncated in the middle or reordered, or holds \
             signatures that do not verify; keep this output and investigate the coordinator",
            report.failures.len()
        );
    }
    Ok(())
}
