//! `shardvault coordinator` and `shardvault node`: long-running processes
//! with graceful shutdown on SIGINT/SIGTERM.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use shardvault_node::{KekSource, Node, Store};
use shardvault_vault::KdfParams;
use shardvault_wire::{Cluster, NodeId, NoiseSecretKey};
use tokio::sync::watch;

/// Reads a hex Noise secret key file.
pub fn read_secret(path: &Path) -> Result<NoiseSecretKey> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut key = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut key)
        .with_context(|| format!("{} must hold 64 hex digits", path.display()))?;
    Ok(NoiseSecretKey::from_bytes(key))
}

pub fn read_cluster(path: &Path) -> Result<Cluster> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading cluster file {}", path.display()))?;
    Ok(Cluster::from_json(&text)?)
}

/// A watch that turns true on SIGINT or SIGTERM.
fn shutdown_signal() -> watch::Receiver<bool> {
    let (stop, stopped) = watch::channel(false);
    tokio::spawn(async move {
        let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async { match terminate.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => {}
        }
        tracing::info!("shutting down");
        let _ = stop.send(true);
    });
    stopped
}

#[derive(Debug, Args)]
pub struct CoordinatorArgs {
    /// Directory with `noise.key`; the metadata database is created here.
    #[arg(long, env = "SHARDVAULT_COORDINATOR_DIR")]
    pub dir: PathBuf,
    /// The cluster file (node ids and static keys).
    #[arg(long, env = "SHARDVAULT_CLUSTER")]
    pub cluster: PathBuf,
    /// Address to listen on (port 0 picks one; the URL is written to DIR/api.url).
    #[arg(long, env = "SHARDVAULT_LISTEN", default_value = "127.0.0.1:8780")]
    pub listen: String,
    /// Seconds a job (key generation, derivation, refresh) may take before it is aborted.
    #[arg(long, default_value_t = 60)]
    pub job_timeout: u64,
    /// Seconds one signing attempt may take before it is aborted and retried
    /// with other signers (keep it well under the client's timeout).
    #[arg(long, default_value_t = 15)]
    pub sign_timeout: u64,
    #[command(flatten)]
    pub liveness: LivenessArgs,
}

/// Hop liveness: both ends ping; a silent peer is given up on.
#[derive(Debug, Args)]
pub struct LivenessArgs {
    /// Milliseconds between pings over the node↔coordinator hop.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub ping_interval_ms: u64,
    /// Milliseconds of silence (not even a pong) after which the other end is
    /// taken for gone: the coordinator drops a node, a node reconnects.
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u64).range(1..))]
    pub silence_timeout_ms: u64,
}

pub fn coordinator(args: &CoordinatorArgs) -> Result<()> {
    let secret = read_secret(&args.dir.join("noise.key"))?;
    let cluster = read_cluster(&args.cluster)?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let listener =
            tokio::net::TcpListener::bind(&args.listen).await.with_context(|| format!("binding {}", args.listen))?;
        let url = format!("http://{}", listener.local_addr()?);
        write_atomically(&args.dir.join("api.url"), url.as_bytes())?;
        let config = shardvault_coordinator::Config {
            cluster,
            secret,
            database: args.dir.join("coordinator.db"),
            job_timeout: Duration::from_secs(args.job_timeout),
            sign_timeout: Duration::from_secs(args.sign_timeout),
            ping_interval: Duration::from_millis(args.liveness.ping_interval_ms),
            silence_timeout: Duration::from_millis(args.liveness.silence_timeout_ms),
        };
        shardvault_coordinator::serve(listener, config, shutdown_signal()).await?;
        Ok(())
    })
}

#[derive(Debug, Args)]
pub struct NodeArgs {
    /// This node's id in the cluster file.
    #[arg(long, env = "SHARDVAULT_NODE_ID")]
    pub id: u16,
    /// Directory with `noise.key`; the sealed share database is created here.
    #[arg(long, env = "SHARDVAULT_NODE_DIR")]
    pub dir: PathBuf,
    /// The cluster file.
    #[arg(long, env = "SHARDVAULT_CLUSTER")]
    pub cluster: PathBuf,
    /// The coordinator's relay, e.g. ws://127.0.0.1:8780/v1/relay.
    #[arg(long, env = "SHARDVAULT_COORDINATOR")]
    pub coordinator: String,
    /// A 32-byte key-encryption key file (raw or hex). Without it, a
    /// passphrase (stretched with Argon2id) comes from --passphrase-file or
    /// the environment variable SHARDVAULT_PASSPHRASE.
    #[arg(long, env = "SHARDVAULT_KEY_FILE", conflicts_with = "passphrase_file")]
    pub key_file: Option<PathBuf>,
    /// A file holding the passphrase (first line).
    #[arg(long, env = "SHARDVAULT_PASSPHRASE_FILE")]
    pub passphrase_file: Option<PathBuf>,
    #[command(flatten)]
    pub liveness: LivenessArgs,
}

pub fn node(args: &NodeArgs) -> Result<()> {
    let secret = read_secret(&args.dir.join("noise.key"))?;
    let cluster = read_cluster(&args.cluster)?;
    let id = NodeId(args.id);
    cluster.key_of(id).with_context(|| format!("node {id} is not in {}", args.cluster.display()))?;
    let store_path = args.dir.join("node.db");
    let node_name = format!("node-{id}");
    let store = match &args.key_file {
        Some(path) => {
            let contents =
                zeroize::Zeroizing::new(std::fs::read(path).with_context(|| format!("reading {}", path.display()))?);
            Store::open(&store_path, &node_name, KekSource::KeyFile(&contents))?
        }
        None => {
            let passphrase = match &args.passphrase_file {
                Some(path) => {
                    let text = zeroize::Zeroizing::new(
                        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
                    );
                    zeroize::Zeroizing::new(text.lines().next().unwrap_or_default().to_string())
                }
                None => match std::env::var("SHARDVAULT_PASSPHRASE") {
                    Ok(passphrase) => zeroize::Zeroizing::new(passphrase),
                    Err(_) => bail!("give --key-file, --passphrase-file or SHARDVAULT_PASSPHRASE"),
                },
            };
            if passphrase.is_empty() {
                bail!("the passphrase is empty");
            }
            Store::open(&store_path, &node_name, KekSource::Passphrase(passphrase.as_bytes(), KdfParams::RECOMMENDED))?
        }
    };
    // Fail fast on shares that do not open, but keep serving the other keys.
    for key_id in store.keys()? {
        if let Err(error) = store.active_share(key_id) {
            tracing::error!(%key_id, %error, "this key cannot sign on this node");
        }
    }
    let connection = shardvault_node::service::Connection {
        url: args.coordinator.clone(),
        secret: secret.clone(),
        coordinator: cluster.coordinator,
        ping_interval: Duration::from_millis(args.liveness.ping_interval_ms),
        silence_timeout: Duration::from_millis(args.liveness.silence_timeout_ms),
    };
    let node = Node::new(id, secret, cluster, store);
    let runtime = tokio::runtime::Runtime::new()?;
    // A dead worker is an error: the process exits non-zero, so `Restart=on-failure` restarts it.
    runtime.block_on(async { shardvault_node::service::run(node, connection, shutdown_signal()).await })?;
    Ok(())
}

pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
