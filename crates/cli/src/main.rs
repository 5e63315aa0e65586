//! `shardvault`: the command-line front door. Thin: parses arguments and
//! delegates to the crates.
#![forbid(unsafe_code)]

mod lifecycle;
mod report;

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::{Args, Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};

/// A self-hosted MPC wallet: keys exist only as shares on several nodes,
/// which jointly generate keys, derive addresses and sign.
#[derive(Debug, Parser)]
#[command(name = "shardvault", version, propagate_version = true)]
struct Cli {
    /// Print machine-readable JSON on stdout (errors as {"code", "message"} on stderr).
    #[arg(long, global = true)]
    json: bool,
    /// Log filter (tracing syntax), e.g. `info` or `shardvault_mpc=debug`.
    #[arg(long, global = true, env = "SHARDVAULT_LOG", default_value = "warn")]
    log: String,
    /// Log line format on stderr.
    #[arg(long, global = true, env = "SHARDVAULT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the whole key lifecycle (DKG, derivation, signing, refresh) with
    /// every party in this process, and print the shardvault.demo.v1 report.
    Simulate(LifecycleArgs),
    /// The end-to-end demo. In this release it runs the lifecycle in-process,
    /// like `simulate` (the report says `"transport": "in-process"`); the
    /// networked devnet version replaces it when the node and coordinator land.
    Demo(LifecycleArgs),
}

#[derive(Debug, Args)]
struct LifecycleArgs {
    /// The message every key signs.
    #[arg(long, env = "SHARDVAULT_MESSAGE", default_value = "hello from shardvault")]
    message: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli);
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            if cli.json {
                let body = serde_json::json!({ "code": "error", "message": format!("{error:#}") });
                eprintln!("{body}");
            } else {
                eprintln!("error: {error:#}");
            }
            ExitCode::FAILURE
        }
    }
}

fn init_logging(cli: &Cli) {
    let filter =
        tracing_subscriber::EnvFilter::try_new(&cli.log).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match cli.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn run(cli: &Cli) -> Result<()> {
    match &cli.command {
        Command::Simulate(args) | Command::Demo(args) => {
            let progress = progress_bar(cli.json, lifecycle::KEYS.len() as u64 * lifecycle::STEPS_PER_KEY);
            let report = lifecycle::run(&lifecycle::KEYS, &args.message, &progress)?;
            progress.finish_and_clear();
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print_summary(&report);
            }
            Ok(())
        }
    }
}

/// A progress bar on a terminal; hidden with `--json` or when stderr is not a terminal.
fn progress_bar(json: bool, steps: u64) -> ProgressBar {
    if json || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(steps);
    if let Ok(style) = ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} {msg}") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

fn print_summary(report: &report::Report) {
    println!("shardvault lifecycle ({}, all parties {})", report.schema, report.transport);
    for key in &report.keys {
        println!(
            "\n{} {}-of-{}  key {}\n  public key {}",
            key.scheme, key.threshold, key.parties, key.key_id, key.public_key
        );
        for d in &key.derivations {
            println!("  {:<9} {:<26} {}", d.chain, d.path, d.address);
        }
        for s in &key.signatures {
            let signers: Vec<String> = s.signers.iter().map(u8::to_string).collect();
            println!(
                "  signed by {{{}}} at epoch {} on {} ({}): {}…",
                signers.join(","),
                s.epoch,
                s.path,
                s.message_encoding,
                &s.signature[..16]
            );
        }
        println!("  refreshed: epoch {} -> {}", key.refresh.epoch_before, key.refresh.epoch_after);
    }
    println!("\nUse --json for the full report.");
}
