//! `shardvault`: the command-line front door. Thin: parses arguments and
//! delegates to the crates.
#![forbid(unsafe_code)]

mod audit;
mod authenticity;
mod backup;
mod bench;
mod client;
mod daemon;
mod demo;
mod demo_governance;
mod devnet;
mod governance;
mod identity;
mod lifecycle;
mod recover;
mod report;
mod review;
mod shamir;

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};

/// A self-hosted MPC wallet: keys exist only as shares on several nodes,
/// which jointly generate keys, derive addresses and sign.
#[derive(Debug, Parser)]
#[command(name = "shardvault", version, propagate_version = true)]
struct Cli {
    /// Print machine-readable JSON on stdout (errors as {"code", "message"} on stderr).
    #[arg(long, global = true, env = "SHARDVAULT_JSON")]
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
    /// Start a private devnet (coordinator + 3 node processes) in a temporary
    /// directory, run the whole key lifecycle through its API, and print the
    /// shardvault.demo.v1 report.
    Demo(LifecycleArgs),
    /// Run the same lifecycle with every party in this process (no network):
    /// the quickest look at the protocols, and the reference for `demo`.
    Simulate(LifecycleArgs),
    /// Run a coordinator (REST API, node relay).
    Coordinator(daemon::CoordinatorArgs),
    /// Run a participant node.
    Node(daemon::NodeArgs),
    /// Print a node's public keys (Noise static key and identity key) for
    /// its entry in the cluster file.
    NodeIdentity(daemon::NodeIdentityArgs),
    /// Replace a lost node: the new machine (its keys from `node-identity`)
    /// becomes that node, and the other nodes rebuild its share of every key
    /// (same keys, same addresses). A request every member approves; once
    /// approved, start the new node and the coordinator does the rest.
    NodeReplace(NodeReplaceArgs),
    /// Re-seal a stopped node's store under a new passphrase or key file.
    RotateKek(daemon::RotateKekArgs),
    /// A member's personal key (OpenSSH ed25519), for approvals.
    Identity(identity::IdentityCommand),
    /// Start a coordinator and N nodes as processes on loopback; runs until interrupted.
    Devnet(DevnetArgs),
    /// Keys: create, list.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Derive an address (MPCVault path m/9'/0'/coin'/0'/0'/index'), shown
    /// only once the key's nodes attested it under the pinned cluster file.
    Address(AddressCommand),
    /// Sign a message (in the chain's message format), or (raw signing, off on nodes by default) a named digest or raw bytes.
    Sign(Box<SignArgs>),
    /// Refresh every share of a key (key and addresses unchanged).
    Refresh(RefreshArgs),
    /// Members of the organisation: add, list, remove (governed requests).
    #[command(subcommand)]
    Member(governance::MemberCommand),
    /// The organisation's policy: show, set (docs/POLICY.md).
    #[command(subcommand)]
    Policy(governance::PolicyCommand),
    /// Requests: list, show, approve, reject, payload — each decoded here
    /// from its canonical bytes, never from the coordinator's summary.
    #[command(subcommand)]
    Request(governance::RequestCommand),
    /// The coordinator's audit log: verify its hash chain and signatures.
    #[command(subcommand)]
    Audit(governance::AuditCommand),
    /// Key-share backups: export (every member approves; each node seals
    /// its own share with age), fetch, list.
    #[command(subcommand)]
    Backup(backup::BackupCommand),
    /// Break-glass, offline: rebuild a key from a backup package and its
    /// recipients' OpenSSH keys, print a child private key in the chain's
    /// import format, recheck the backup's addresses, sign a transaction
    /// (docs/RECOVERY.md). Never touches the network.
    Recover(Box<recover::RecoverArgs>),
    /// Measure signing latency and throughput on a fresh devnet against the
    /// in-process floor (release builds give meaningful numbers).
    Bench(BenchArgs),
    /// Split a secret into Shamir shares and combine them again (HashiCorp
    /// Vault's share format).
    ///
    /// Shares made by Vault's `shamir` package, or by any implementation of
    /// its format, combine here, and these combine there. A share is the
    /// standard base64 of its bytes: one y byte per secret byte, then its x
    /// byte (docs/FORMATS.md). The format has no checksum, so `combine`
    /// cannot tell a wrong share set from a right one: check what it returns.
    #[command(subcommand)]
    Shamir(shamir::ShamirCommand),
}

#[derive(Debug, Args)]
struct NodeReplaceArgs {
    #[command(flatten)]
    api: ApiArgs,
    /// The lost node's id (it keeps its id and its party in every key).
    #[arg(long)]
    node: u16,
    /// The new machine's Noise static public key (`node-identity --dir DIR`).
    #[arg(long)]
    noise_key: String,
    /// The new machine's identity public key (`node-identity --dir DIR`).
    #[arg(long)]
    identity_key: String,
    /// Wait for the approvals and the replacement.
    #[arg(long)]
    wait: bool,
    /// How long --wait waits, in seconds.
    #[arg(long, env = "SHARDVAULT_WAIT_TIMEOUT", default_value_t = 600)]
    wait_timeout: u64,
}

#[derive(Debug, Args)]
struct RefreshArgs {
    #[command(flatten)]
    key: KeyArgs,
    /// Finish the key's last refresh instead of starting one: activate an
    /// epoch every node confirmed (after a node was away), or record an
    /// unconfirmed attempt as abandoned.
    #[arg(long)]
    finish: bool,
}

#[derive(Debug, Args)]
struct BenchArgs {
    /// Signatures per scheme and concurrency level.
    #[arg(long, env = "SHARDVAULT_BENCH_SIGNATURES", default_value_t = 200)]
    signatures: usize,
}

#[derive(Debug, Args)]
struct DevnetArgs {
    /// Directory for keys, databases, logs and devnet.json.
    #[arg(long, env = "SHARDVAULT_DEVNET_DIR")]
    dir: std::path::PathBuf,
    /// Number of nodes.
    #[arg(long, env = "SHARDVAULT_DEVNET_NODES", default_value_t = 3)]
    nodes: u16,
    /// Serve the API and the relay over TLS with a devnet CA made on first
    /// start (DIR/tls/ca.pem; clients pass it as --tls-ca).
    #[arg(long, env = "SHARDVAULT_DEVNET_TLS")]
    tls: bool,
    /// The organisation's owner, `ssh-ed25519 AAAA… comment`; without it the
    /// devnet makes an owner identity, DIR/owner. Used on first start only
    /// (DIR/genesis.json keeps the organisation).
    #[arg(long, env = "SHARDVAULT_DEVNET_OWNER")]
    owner: Option<String>,
}

#[derive(Debug, Args)]
struct ApiArgs {
    /// The coordinator's API: https://… (with --tls-ca), or http:// on loopback.
    #[arg(long, env = "SHARDVAULT_API", default_value = "http://127.0.0.1:8780")]
    api: String,
    /// PEM file of the CA certificate(s) the coordinator's TLS certificate
    /// must chain to; the only trust anchors used (no system store).
    #[arg(long, env = "SHARDVAULT_TLS_CA")]
    tls_ca: Option<std::path::PathBuf>,
    /// Allow plain http:// to a non-loopback address (answers can then be
    /// read and changed on the network).
    #[arg(long)]
    insecure_plaintext: bool,
    /// Makes a retried command safe: the same key returns the first answer.
    #[arg(long)]
    idempotency_key: Option<String>,
    /// Who acts: your OpenSSH ed25519 private key (`shardvault identity new`
    /// or `ssh-keygen -t ed25519`). The CLI logs in with it and approves
    /// what it creates, after decoding it itself.
    #[arg(long, env = "SHARDVAULT_IDENTITY")]
    identity: Option<std::path::PathBuf>,
    /// A file holding the identity's passphrase (first line), if it has one.
    #[arg(long, env = "SHARDVAULT_IDENTITY_PASSPHRASE_FILE")]
    identity_passphrase_file: Option<std::path::PathBuf>,
    /// A session token (from an earlier login) instead of logging in.
    #[arg(long, env = "SHARDVAULT_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

#[derive(Debug, Subcommand)]
enum KeyCommand {
    /// Create a key by distributed key generation on the nodes.
    Create {
        #[command(flatten)]
        api: ApiArgs,
        /// ecdsa-secp256k1, eddsa-ed25519 or schnorr-secp256k1.
        #[arg(long)]
        scheme: String,
        /// Signers needed (t).
        #[arg(long)]
        threshold: u8,
        /// Share holders (n).
        #[arg(long)]
        parties: u8,
    },
    /// List keys.
    List {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Escrow every party's chain seed among the key's other nodes, so that
    /// a lost node can be replaced (`node-replace`). Done at key generation;
    /// run it once for keys made before.
    Escrow(KeyArgs),
    /// Show one key: epoch, nodes, banned parties, last refresh.
    Show(KeyArgs),
}

#[derive(Debug, Args)]
struct KeyArgs {
    #[command(flatten)]
    api: ApiArgs,
    /// The key id.
    #[arg(long)]
    key: String,
}

#[derive(Debug, Args)]
struct AddressArgs {
    #[command(flatten)]
    key: KeyArgs,
    /// bitcoin, litecoin, ethereum (or bsc, polygon, arbitrum, optimism, base, avalanche),
    /// solana, aptos, tron, cosmos or sui.
    #[arg(long)]
    chain: String,
    /// Address index.
    #[arg(long, conflicts_with = "path")]
    index: Option<u32>,
    /// An explicit path instead, e.g. "m/9'/0'/60'/0'/0/1".
    #[arg(long)]
    path: Option<String>,
    /// Cosmos SDK chains: the address's bech32 prefix (default cosmos), e.g. osmo, juno.
    #[arg(long)]
    bech32_prefix: Option<String>,
}

#[derive(Debug, Args)]
struct AddressCommand {
    #[command(flatten)]
    target: AddressArgs,
    /// The pinned cluster file (a devnet writes DIR/cluster.json): the address
    /// is shown only if at least max(2, t) of the nodes whose identity keys it
    /// pins signed it.
    #[arg(long, env = "SHARDVAULT_CLUSTER")]
    cluster: Option<std::path::PathBuf>,
    /// Print the address even if it is not attested (with a warning). Never
    /// pay to an address you have not verified.
    #[arg(long)]
    unverified: bool,
}

#[derive(Debug, Args)]
struct SignArgs {
    #[command(flatten)]
    address: AddressArgs,
    /// The message, hex, signed in the chain's message format (EIP-191, Bitcoin
    /// signed message, BIP-322, Solana off-chain message, AIP-62, ADR-036, …).
    #[arg(long, conflicts_with_all = ["digest_hex", "raw_hex", "psbt"])]
    message_hex: Option<String>,
    /// The message format, when not the chain's default: eip191, eip712,
    /// bitcoin-signed-message, bip322, litecoin-signed-message, tip191,
    /// solana-offchain, aip62, sui-personal-message, adr036.
    #[arg(long, requires = "message_hex")]
    format: Option<String>,
    /// Aptos: the AIP-62 nonce (the full message is built from the message);
    /// without it, --message-hex is the full message `APTOS\n…nonce: …`.
    #[arg(long, requires = "message_hex")]
    nonce: Option<String>,
    /// A Bitcoin or Litecoin PSBT file (binary or base64) whose inputs pay to this key;
    /// prints the finalised transaction, its txid and the signed PSBT.
    #[arg(long, conflicts_with = "digest_hex")]
    psbt: Option<std::path::PathBuf>,
    /// An EVM transaction's signing preimage, hex (EIP-1559 `02…` or legacy
    /// EIP-155); prints the raw signed transaction and its hash.
    /// Or, for Solana, Aptos, Sui, Tron and Cosmos, the unsigned transaction
    /// as the chain's SDK gives it (message, RawTransaction, TransactionData,
    /// raw_data, SignDoc); prints the signed transaction and its id.
    #[arg(long, conflicts_with_all = ["digest_hex", "raw_hex", "psbt", "message_hex"])]
    tx_hex: Option<String>,
    /// The unsigned transaction, base64 (as the Solana and Sui SDKs print it).
    #[arg(long, conflicts_with_all = ["digest_hex", "raw_hex", "psbt", "message_hex", "tx_hex"])]
    tx_base64: Option<String>,
    /// EVM chain that fixes the chain id: ethereum, bsc, polygon, arbitrum, optimism, base, avalanche.
    #[arg(long)]
    evm_chain: Option<String>,
    /// Network: bitcoin (default), testnet, signet, regtest for Bitcoin;
    /// mainnet (default), testnet, regtest for Litecoin;
    /// mainnet (default), sepolia, … for EVM chains; mainnet (default),
    /// testnet, … elsewhere; for Cosmos the chain id (default cosmoshub-4).
    #[arg(long)]
    network: Option<String>,
    /// Raw signing: a 32-byte digest, hex (ECDSA, BIP340). Nodes refuse it
    /// unless started with --allow-raw-signing: it can be any transaction.
    #[arg(long, conflicts_with = "raw_hex")]
    digest_hex: Option<String>,
    /// Raw signing: bytes an Ed25519 key signs as given, hex. Nodes refuse it
    /// unless started with --allow-raw-signing: it can be any transaction.
    #[arg(long)]
    raw_hex: Option<String>,
    /// An EIP-712 typed-data JSON file, as eth_signTypedData_v4 takes it (EVM chains).
    #[arg(long, conflicts_with_all = ["message_hex", "digest_hex", "raw_hex", "psbt", "tx_hex"])]
    typed_data: Option<std::path::PathBuf>,
    /// Party ids to sign with (default: any t healthy ones), e.g. 1,3.
    #[arg(long, value_delimiter = ',')]
    signers: Option<Vec<u8>>,
    /// When the request needs others' approvals: wait until it ran and print
    /// its answer, instead of printing the pending request.
    #[arg(long)]
    wait: bool,
    /// How long --wait waits, in seconds.
    #[arg(long, env = "SHARDVAULT_WAIT_TIMEOUT", default_value_t = 3600)]
    wait_timeout: u64,
}

impl SignArgs {
    fn wait(&self) -> Option<Duration> {
        self.wait.then(|| Duration::from_secs(self.wait_timeout))
    }
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
        Command::Simulate(args) => {
            let progress = progress_bar(cli.json, lifecycle::KEYS.len() as u64 * lifecycle::STEPS_PER_KEY);
            let report = lifecycle::run(&lifecycle::KEYS, &args.message, &progress)?;
            progress.finish_and_clear();
            print_report(cli.json, &report)
        }
        Command::Demo(args) => {
            let progress = progress_bar(cli.json, demo::steps());
            let report = demo::run(&args.message, &progress)?;
            progress.finish_and_clear();
            print_report(cli.json, &report)
        }
        Command::Bench(args) => {
            let progress = progress_bar(cli.json, bench::steps());
            let report = bench::run(args.signatures, &progress)?;
            progress.finish_and_clear();
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                for r in &report.results {
                    println!(
                        "{:<16} 2-of-3 concurrency {:>2}: p50 {:>7.2} ms  p99 {:>7.2} ms  {:>7.1}/s  (in-process floor {:.2} ms, ratio {:.2})",
                        r.scheme, r.concurrency, r.p50_ms, r.p99_ms, r.per_second, r.floor_p50_ms, r.ratio_p50
                    );
                }
                println!("node 1 memory (KiB), before and after each row: {:?}", report.node_rss_kib);
            }
            Ok(())
        }
        Command::Coordinator(args) => daemon::coordinator(args),
        Command::Node(args) => daemon::node(args),
        Command::NodeIdentity(args) => daemon::node_identity(args, cli.json),
        Command::RotateKek(args) => daemon::rotate_kek(args),
        Command::Identity(command) => identity::run(command, cli.json),
        Command::Shamir(command) => shamir::run(command, cli.json),
        Command::Devnet(args) => {
            let mut devnet = devnet::Devnet::launch(&args.dir, args.nodes, args.tls, args.owner.as_deref())?;
            let file = std::fs::read_to_string(args.dir.join("devnet.json"))?;
            if cli.json {
                println!("{}", file.trim());
            } else {
                println!(
                    "devnet running: API {} ({} nodes); state in {}; Ctrl-C stops it",
                    devnet.api,
                    args.nodes,
                    args.dir.display()
                );
            }
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(async {
                let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = terminate.recv() => {}
                }
                Ok::<(), std::io::Error>(())
            })?;
            devnet.stop();
            Ok(())
        }
        Command::Key(KeyCommand::Create { api, scheme, threshold, parties }) => {
            let body = shardvault_api::CreateKey {
                scheme: scheme.clone(),
                threshold: *threshold,
                parties: *parties,
                nodes: None,
            };
            let progress = progress_bar(cli.json, 1);
            progress.set_message("distributed key generation on the nodes");
            let client = client(api)?;
            let answer = client.create_key(&body, Some(&idempotency(api)));
            progress.finish_and_clear();
            governance::governed(cli.json, &client, answer, None)
        }
        Command::Key(KeyCommand::List { api }) => show(cli.json, &client(api)?.keys()?),
        Command::Key(KeyCommand::Escrow(args)) => {
            show(cli.json, &client(&args.api)?.escrow_seeds(&args.key, Some(&idempotency(&args.api)))?)
        }
        Command::NodeReplace(args) => {
            let client = client(&args.api)?;
            let request = shardvault_api::ReplaceNode {
                noise_key: args.noise_key.clone(),
                identity_key: args.identity_key.clone(),
            };
            let answer = client.replace_node(args.node, &request, Some(&idempotency(&args.api)));
            let wait = args.wait.then(|| Duration::from_secs(args.wait_timeout));
            governance::governed(cli.json, &client, answer, wait)
        }
        Command::Key(KeyCommand::Show(args)) => show(cli.json, &client(&args.api)?.key(&args.key)?),
        Command::Address(args) => address(cli.json, args),
        Command::Recover(args) => recover::run(args, cli.json),
        Command::Member(command) => governance::member(cli.json, command),
        Command::Policy(command) => governance::policy(cli.json, command),
        Command::Request(command) => governance::request(cli.json, command),
        Command::Audit(command) => governance::audit(cli.json, command),
        Command::Backup(command) => backup::run(cli.json, command),
        Command::Sign(args) if args.tx_hex.is_some() || args.tx_base64.is_some() => {
            let body = shardvault_api::TransactionRequest {
                tx_hex: args.tx_hex.clone(),
                tx_base64: args.tx_base64.clone(),
                evm_chain: args.evm_chain.clone(),
                network: args.network.clone(),
                signers: args.signers.clone(),
                ..shardvault_api::TransactionRequest::to(target(&args.address))
            };
            let api = &args.address.key.api;
            let client = client(api)?;
            let answer = client.transaction(&args.address.key.key, &body, Some(&idempotency(api)));
            governance::governed(cli.json, &client, answer, args.wait())
        }
        Command::Sign(args) if args.psbt.is_some() => {
            let file = args.psbt.as_deref().unwrap_or(std::path::Path::new(""));
            let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
            let psbt = if bytes.starts_with(b"psbt\xff") {
                base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &bytes)
            } else {
                String::from_utf8(bytes).context("the PSBT file is neither binary nor base64")?.trim().to_string()
            };
            let body = shardvault_api::TransactionRequest {
                psbt: Some(psbt),
                network: args.network.clone(),
                signers: args.signers.clone(),
                ..shardvault_api::TransactionRequest::to(target(&args.address))
            };
            let api = &args.address.key.api;
            let client = client(api)?;
            let answer = client.transaction(&args.address.key.key, &body, Some(&idempotency(api)));
            governance::governed(cli.json, &client, answer, args.wait())
        }
        Command::Sign(args) => {
            let typed_data = match &args.typed_data {
                Some(file) => {
                    let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
                    Some(serde_json::from_str(&text).context("the typed-data file is not JSON")?)
                }
                None => None,
            };
            let body = shardvault_api::SignRequest {
                message_hex: args.message_hex.clone(),
                format: args.format.clone(),
                nonce: args.nonce.clone(),
                digest_hex: args.digest_hex.clone(),
                raw_hex: args.raw_hex.clone(),
                typed_data,
                signers: args.signers.clone(),
                ..shardvault_api::SignRequest::to(target(&args.address))
            };
            let api = &args.address.key.api;
            let client = client(api)?;
            let answer = client.sign(&args.address.key.key, &body, Some(&idempotency(api)));
            governance::governed(cli.json, &client, answer, args.wait())
        }
        Command::Refresh(args) => {
            let (api, key) = (&args.key.api, &args.key.key);
            let client = client(api)?;
            match args.finish {
                true => show(cli.json, &client.finish_refresh(key, Some(&idempotency(api)))?),
                false => governance::governed(cli.json, &client, client.refresh(key, Some(&idempotency(api))), None),
            }
        }
    }
}

fn client(api: &ApiArgs) -> Result<client::Api> {
    let client = client::Api::connect(&api.api, api.tls_ca.as_deref(), api.insecure_plaintext)?;
    let client = match &api.token {
        Some(token) => client.with_token(token),
        None => client,
    };
    match &api.identity {
        Some(path) => {
            let identity = identity::read(path, api.identity_passphrase_file.as_deref())?;
            Ok(client.login(identity).with_context(|| format!("logging in as {}", path.display()))?)
        }
        None => Ok(client),
    }
}

/// `shardvault address`: asks the API, then shows the address only if the
/// nodes' attestations verify against the pinned cluster file.
fn address(json: bool, args: &AddressCommand) -> Result<()> {
    let t = &args.target;
    // Refuse a bad request before asking anything.
    let request =
        client::AddressRequest::new(&t.key.key, &t.chain, t.index, t.path.as_deref(), t.bech32_prefix.as_deref())?;
    let cluster = args.cluster.as_deref().map(|file| daemon::read_cluster(file).map(|c| (file, c))).transpose()?;
    if cluster.is_none() && !args.unverified {
        anyhow::bail!(
            "refusing to show an address without checking its attestations: give the pinned cluster file with \
             --cluster FILE or SHARDVAULT_CLUSTER (a devnet writes DIR/cluster.json), or --unverified to print it \
             unchecked"
        );
    }
    let path = format!("/v1/keys/{}/addresses", t.key.key);
    let body = shardvault_api::AddressRequest::from(target(t));
    let api = client(&t.key.api)?;
    let asked = shardvault_client::Expected::Address { key_id: &t.key.key, request: &body };
    let raw = match api.resolve(api.post(&path, &body, Some(&idempotency(&t.key.api)))?, asked) {
        Ok(raw) => raw,
        // Waiting for others' approvals: the request is shown, no address yet.
        Err(error) => return governance::unfinished(json, &api, error, None),
    };
    // Shown as the API sent it (with the verification added).
    let mut answer = raw.body.clone();
    let attested = match raw.into_typed::<shardvault_api::AttestedAddress>() {
        Ok(attested) => Ok(attested),
        Err(shardvault_client::Error::Decode { .. }) if answer.get("attestation_version").is_none() => {
            Err(anyhow::anyhow!("the coordinator returned no address attestations (is it older than this CLI?)"))
        }
        Err(error @ shardvault_client::Error::Decode { .. }) => Err(error.into()),
        Err(error) => return Err(error.into()),
    };
    let verified = match (&cluster, attested) {
        (None, _) => Err(anyhow::anyhow!("no cluster file given")),
        (Some(_), Err(error)) => Err(error),
        (Some((file, cluster)), Ok(attested)) => {
            client::verify_address(&attested, &request, cluster).map(|v| v.to_json(file))
        }
    };
    let verification = match verified {
        Ok(verification) => verification,
        Err(error) if args.unverified => {
            eprintln!(
                "WARNING: THIS ADDRESS IS NOT VERIFIED ({error:#}). The coordinator or the network may have \
                 replaced it; do not send funds to it."
            );
            serde_json::json!({ "verified": false, "error": format!("{error:#}") })
        }
        Err(error) => {
            return Err(
                error.context("refusing to show the address: it is not attested by enough nodes of the pinned cluster")
            )
        }
    };
    answer["verification"] = verification;
    print_answer(json, &answer)
}

fn idempotency(api: &ApiArgs) -> String {
    api.idempotency_key.clone().unwrap_or_else(|| shardvault_mpc::SessionId::random().to_string())
}

fn target(args: &AddressArgs) -> shardvault_api::Target {
    shardvault_api::Target {
        chain: args.chain.clone(),
        index: args.index,
        path: args.path.clone(),
        bech32_prefix: args.bech32_prefix.clone(),
    }
}

/// An answer of the API, as [`print_answer`] shows it.
fn show<T: serde::Serialize>(json: bool, answer: &T) -> Result<()> {
    print_answer(json, &serde_json::to_value(answer)?)
}

fn print_report(json: bool, report: &report::Report) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else {
        print_summary(report);
    }
    Ok(())
}

/// `--json`: the API's answer as is. Otherwise one `field: value` per line.
fn print_answer(json: bool, answer: &serde_json::Value) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(answer)?);
        return Ok(());
    }
    match answer.as_object() {
        Some(fields) => {
            for (name, value) in fields {
                match value {
                    serde_json::Value::String(s) => println!("{name}: {s}"),
                    other => println!("{name}: {other}"),
                }
            }
        }
        None => println!("{answer}"),
    }
    Ok(())
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
    println!("shardvault lifecycle ({}, transport: {})", report.schema, report.transport);
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
        for t in &key.transactions {
            let field = |name: &str| t.summary[name].as_str().unwrap_or("?").to_string();
            let kind = t.summary.get("kind").map_or_else(|| "psbt".to_string(), |_| field("kind"));
            println!("  signed {:<9} transaction ({kind}) from {}: id {}", t.chain, t.address, t.id);
        }
    }
    println!("\nUse --json for the full report.");
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    /// The flags that say what one command does — which key, chain, path,
    /// message or transaction, which signers, which idempotency key, whether
    /// to show an unattested address — read no environment variable: one
    /// left exported must not change what a later command signs or shows.
    const PER_REQUEST: &[&str] = &[
        "scheme",
        "threshold",
        "parties",
        "key",
        "chain",
        "index",
        "path",
        "bech32_prefix",
        "unverified",
        "unchecked_seeds",
        "message_hex",
        "format",
        "nonce",
        "psbt",
        "tx_hex",
        "tx_base64",
        "evm_chain",
        "network",
        "digest_hex",
        "raw_hex",
        "typed_data",
        "signers",
        "finish",
        "idempotency_key",
        // Which node is replaced, by which machine (and making that
        // machine's key: one exported variable must not make every later
        // `node-identity` try to make a new directory).
        "node",
        "noise_key",
        "identity_key",
        "new",
        // Turning off a protection is a decision for one invocation: one
        // exported variable must not make the client, the coordinator and a
        // node all speak plaintext (found by review).
        "insecure_plaintext",
        "out",
        "comment",
        // Governance: who is added or removed, which request is shown,
        // approved or rejected (and whether without asking), which history.
        "name",
        "role",
        "public_key",
        "yes",
        "sshsig",
        "status",
        "since",
        "limit",
        "csv",
        "wait",
        // Backups: which keys, sealed to whom.
        "keys",
        "recipients",
        // Recovery: which backup, whose keys open it, what to check or sign.
        "backup",
        "backup_identity",
        "identity_shares",
        "verify_addresses",
        "sign_file",
        // Shamir: which secret or shares, how many, where the shares go.
        "parts",
        "input",
        "inputs",
        "out_dir",
    ];

    /// README: "every configuration flag also reads an environment variable".
    #[test]
    fn every_configuration_flag_has_an_environment_variable_and_no_per_request_flag_does() {
        fn walk(command: &clap::Command, path: &str, missing: &mut Vec<String>, extra: &mut Vec<String>) {
            for arg in command.get_arguments() {
                let id = arg.get_id().as_str();
                if arg.get_long().is_none() || matches!(id, "help" | "version") {
                    continue;
                }
                let per_request = PER_REQUEST.contains(&id);
                match (arg.get_env().is_some(), per_request) {
                    (false, false) => missing.push(format!("{path} --{}", arg.get_long().unwrap_or(id))),
                    (true, true) => extra.push(format!("{path} --{}", arg.get_long().unwrap_or(id))),
                    _ => {}
                }
            }
            for sub in command.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), missing, extra);
            }
        }
        let (mut missing, mut extra) = (Vec::new(), Vec::new());
        let mut command = Cli::command();
        command.build();
        walk(&command, "shardvault", &mut missing, &mut extra);
        assert!(missing.is_empty(), "configuration flags without an environment variable: {missing:?}");
        assert!(extra.is_empty(), "per-request flags that read an environment variable: {extra:?}");
    }
}
