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
    /// Seconds a job may take before it is aborted.
    #[arg(long, default_value_t = 60)]
    pub job_timeout: u64,
    /// PEM certificate chain (server certificate first): serve the API over
    /// HTTPS and the relay as wss://. Needs --tls-key.
    #[arg(long, env = "SHARDVAULT_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "SHARDVAULT_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Another host name clients reach this coordinator by (the Host header;
    /// e.g. its DNS name behind a proxy); repeatable. The listen address,
    /// localhost and the loopback addresses are always allowed, others refused.
    #[arg(long = "allowed-host", env = "SHARDVAULT_ALLOWED_HOSTS", value_delimiter = ',')]
    pub allowed_hosts: Vec<String>,
    /// Serve plain HTTP on a non-loopback address. Anyone on that network can
    /// read and change every answer (addresses, signatures): use TLS, or a TLS
    /// proxy on the same host with --listen 127.0.0.1:PORT, instead.
    #[arg(long)]
    pub insecure_plaintext: bool,
}

pub fn coordinator(args: &CoordinatorArgs) -> Result<()> {
    let secret = read_secret(&args.dir.join("noise.key"))?;
    let cluster = read_cluster(&args.cluster)?;
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            let chain = std::fs::read(cert).with_context(|| format!("reading {}", cert.display()))?;
            let key_pem =
                zeroize::Zeroizing::new(std::fs::read(key).with_context(|| format!("reading {}", key.display()))?);
            Some(shardvault_coordinator::tls::server_config(&chain, &key_pem)?)
        }
        _ => None,
    };
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let listener =
            tokio::net::TcpListener::bind(&args.listen).await.with_context(|| format!("binding {}", args.listen))?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let url = format!("{scheme}://{}", listener.local_addr()?);
        let config = shardvault_coordinator::Config {
            cluster,
            secret,
            database: args.dir.join("coordinator.db"),
            job_timeout: Duration::from_secs(args.job_timeout),
            tls,
            insecure_plaintext: args.insecure_plaintext,
            allowed_hosts: args.allowed_hosts.clone(),
        };
        // Refuse plain HTTP off loopback before announcing the URL.
        if config.tls.is_none() && !listener.local_addr()?.ip().is_loopback() && !config.insecure_plaintext {
            bail!(
                "refusing to serve plain HTTP on {}: give --tls-cert and --tls-key (or see --insecure-plaintext)",
                args.listen
            );
        }
        write_atomically(&args.dir.join("api.url"), url.as_bytes())?;
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
    /// The coordinator's relay, e.g. wss://coordinator.example:8780/v1/relay
    /// (with --tls-ca), or ws://127.0.0.1:8780/v1/relay on loopback.
    #[arg(long, env = "SHARDVAULT_COORDINATOR")]
    pub coordinator: String,
    /// PEM file of the CA certificate(s) the coordinator's TLS certificate
    /// must chain to; the only trust anchors used (no system store).
    #[arg(long, env = "SHARDVAULT_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// Allow a ws:// (plain) relay on a non-loopback address. The Noise hop
    /// still authenticates the coordinator, but who talks when is visible.
    #[arg(long)]
    pub insecure_plaintext: bool,
    /// A 32-byte key-encryption key file (raw or hex). Without it, a
    /// passphrase (stretched with Argon2id) comes from --passphrase-file or
    /// the environment variable SHARDVAULT_PASSPHRASE.
    #[arg(long, env = "SHARDVAULT_KEY_FILE", conflicts_with = "passphrase_file")]
    pub key_file: Option<PathBuf>,
    /// A file holding the passphrase (first line).
    #[arg(long, env = "SHARDVAULT_PASSPHRASE_FILE")]
    pub passphrase_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct NodeIdentityArgs {
    /// The node's directory (with `noise.key`).
    #[arg(long, env = "SHARDVAULT_NODE_DIR")]
    pub dir: PathBuf,
}

/// Prints what the cluster file pins for this node.
pub fn node_identity(args: &NodeIdentityArgs, json: bool) -> Result<()> {
    let secret = read_secret(&args.dir.join("noise.key"))?;
    let noise = shardvault_wire::NoisePublicKey::from_secret(&secret)?;
    let identity = shardvault_wire::NodeIdentity::derive(&secret).public();
    if json {
        println!("{}", serde_json::json!({ "noise_key": String::from(noise), "identity_key": String::from(identity) }));
    } else {
        println!("noise_key: {}\nidentity_key: {}", String::from(noise), String::from(identity));
    }
    Ok(())
}

pub fn node(args: &NodeArgs) -> Result<()> {
    let tls = node_tls(args)?;
    let secret = read_secret(&args.dir.join("noise.key"))?;
    let cluster = read_cluster(&args.cluster)?;
    let id = NodeId(args.id);
    cluster.key_of(id).with_context(|| format!("node {id} is not in {}", args.cluster.display()))?;
    let identity = shardvault_wire::NodeIdentity::derive(&secret).public();
    match cluster.identities.get(&id) {
        Some(pinned) if *pinned != identity => bail!(
            "the cluster file pins another identity key for node {id} ({}) than this node's noise.key gives ({}); \
             is --dir the right node's directory?",
            String::from(*pinned),
            String::from(identity)
        ),
        Some(_) => {}
        None => tracing::warn!(
            node = %id,
            "the cluster file pins no identity keys: refreshes cannot be certified and addresses cannot be \
             attested; add them (`shardvault node-identity --dir DIR` prints this node's)"
        ),
    }
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
        tls,
        secret: secret.clone(),
        coordinator: cluster.coordinator,
    };
    let node = Node::new(id, secret, cluster, store);
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async { shardvault_node::service::run(node, connection, shutdown_signal()).await });
    Ok(())
}

/// The TLS configuration for a node's `wss://` relay, or none for a `ws://`
/// one (loopback only, unless --insecure-plaintext).
fn node_tls(args: &NodeArgs) -> Result<Option<std::sync::Arc<rustls::ClientConfig>>> {
    let url = &args.coordinator;
    match &args.tls_ca {
        Some(ca) if url.starts_with("wss://") => {
            let pem = std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?;
            let config = shardvault_node::service::tls_client_config(&pem).map_err(anyhow::Error::msg);
            Ok(Some(config.with_context(|| ca.display().to_string())?))
        }
        Some(_) => bail!("--tls-ca is given but the coordinator URL {url} is not wss://"),
        None if url.starts_with("wss://") => {
            bail!("a wss:// coordinator needs --tls-ca FILE: the CA certificate its TLS certificate chains to")
        }
        None => {
            let uri: ureq::http::Uri = url.parse().with_context(|| format!("the coordinator URL {url:?}"))?;
            if uri.scheme_str() != Some("ws") {
                bail!("the coordinator URL must start with wss:// or ws://");
            }
            if !crate::client::is_loopback(uri.host().unwrap_or_default()) {
                if !args.insecure_plaintext {
                    bail!("refusing a plain ws:// relay at {url}, which is not on loopback: use wss:// with --tls-ca");
                }
                tracing::warn!(%url, "PLAIN ws:// RELAY TO A NON-LOOPBACK ADDRESS");
            }
            Ok(None)
        }
    }
}

pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
