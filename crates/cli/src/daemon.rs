//! `shardvault coordinator` and `shardvault node`: long-running processes
//! with graceful shutdown on SIGINT/SIGTERM.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use shardvault_governance::Genesis;
use shardvault_mpc::Secret32;
use shardvault_node::{KekSource, Node, Store};
use shardvault_vault::files::{check_private, check_private_if_exists, create_private_file, read_private};
use shardvault_vault::KdfParams;
use shardvault_wire::{Cluster, NodeId, NoiseSecretKey};
use tokio::sync::watch;
use zeroize::{Zeroize, Zeroizing};

/// The environment variable a node's passphrase may come from. It is removed
/// from the process environment as soon as it is read.
pub const PASSPHRASE_ENV: &str = "SHARDVAULT_PASSPHRASE";
/// The new passphrase for `rotate-kek`, removed from the environment likewise.
pub const NEW_PASSPHRASE_ENV: &str = "SHARDVAULT_NEW_PASSPHRASE";

/// Reads a hex Noise secret key file, refusing it if group or others can access it.
pub fn read_secret(path: &Path) -> Result<NoiseSecretKey> {
    let bytes = read_private(path)?;
    let text = std::str::from_utf8(&bytes).with_context(|| format!("{} must hold 64 hex digits", path.display()))?;
    let mut key = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut key)
        .with_context(|| format!("{} must hold 64 hex digits", path.display()))?;
    let secret = NoiseSecretKey::from_bytes(key);
    key.zeroize();
    Ok(secret)
}

/// The largest genesis file read (a genesis is owners' keys and a policy).
const MAX_GENESIS: u64 = 1024 * 1024;

/// Reads and checks an organisation's genesis file.
pub fn read_genesis(path: &Path) -> Result<Genesis> {
    use std::io::Read;
    let reading = || format!("reading genesis file {}", path.display());
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|file| file.take(MAX_GENESIS + 1).read_to_end(&mut bytes))
        .with_context(reading)?;
    if bytes.len() as u64 > MAX_GENESIS {
        bail!("genesis file {} is larger than {MAX_GENESIS} bytes, more than any genesis", path.display());
    }
    Genesis::from_bytes(&bytes).with_context(|| {
        format!(
            "{} is not an organisation genesis (canonical JSON exactly as written when the organisation was \
             created; do not reformat it): give the file every node and the coordinator share",
            path.display()
        )
    })
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
    /// The organisation's genesis file (owners and first policy), the same
    /// file every node pins (docs/GOVERNANCE.md).
    #[arg(long, env = "SHARDVAULT_GENESIS")]
    pub genesis: PathBuf,
    /// Address to listen on (port 0 picks one; the URL is written to DIR/api.url).
    #[arg(long, env = "SHARDVAULT_LISTEN", default_value = "127.0.0.1:8780")]
    pub listen: String,
    /// Seconds a job (key generation, derivation, refresh) may take before it is aborted.
    #[arg(long, env = "SHARDVAULT_JOB_TIMEOUT", default_value_t = 60)]
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
    /// Seconds one signing attempt may take before it is aborted and retried
    /// with other signers (keep it well under the client's timeout).
    #[arg(long, env = "SHARDVAULT_SIGN_TIMEOUT", default_value_t = 15)]
    pub sign_timeout: u64,
    /// Seconds between checks for keys whose refresh the policy schedules
    /// (`refresh_every_secs`; docs/POLICY.md "Scheduled refresh").
    #[arg(long, env = "SHARDVAULT_REFRESH_CHECK_SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub refresh_check_secs: u64,
    #[command(flatten)]
    pub liveness: LivenessArgs,
}

/// Hop liveness: both ends ping; a silent peer is given up on.
#[derive(Debug, Args)]
pub struct LivenessArgs {
    /// Milliseconds between pings over the node↔coordinator hop.
    #[arg(long, env = "SHARDVAULT_PING_INTERVAL_MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub ping_interval_ms: u64,
    /// Milliseconds of silence (not even a pong) after which the other end is
    /// taken for gone: the coordinator drops a node, a node reconnects.
    #[arg(long, env = "SHARDVAULT_SILENCE_TIMEOUT_MS", default_value_t = 5000, value_parser = clap::value_parser!(u64).range(1..))]
    pub silence_timeout_ms: u64,
}

/// The coordinator's static key stays a plaintext hex file (it has no KEK):
/// it only authenticates the coordinator to the nodes on the hop, and the
/// nodes already treat the coordinator as untrusted. It and the metadata
/// database are refused unless private (`0600`, directory `0700`), as ssh
/// refuses a readable private key.
pub fn coordinator(args: &CoordinatorArgs) -> Result<()> {
    check_private(&args.dir)?;
    let secret = read_secret(&args.dir.join("noise.key"))?;
    let database = args.dir.join("coordinator.db");
    // Created 0600 before SQLite opens it: SQLite gives -wal/-shm the same mode.
    create_private_file(&database)?;
    for suffix in ["-wal", "-shm"] {
        check_private_if_exists(&args.dir.join(format!("coordinator.db{suffix}")))?;
    }
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
            genesis: read_genesis(&args.genesis)?,
            database,
            job_timeout: Duration::from_secs(args.job_timeout),
            tls,
            insecure_plaintext: args.insecure_plaintext,
            allowed_hosts: args.allowed_hosts.clone(),
            sign_timeout: Duration::from_secs(args.sign_timeout),
            ping_interval: Duration::from_millis(args.liveness.ping_interval_ms),
            silence_timeout: Duration::from_millis(args.liveness.silence_timeout_ms),
            refresh_check: Duration::from_secs(args.refresh_check_secs),
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
    /// The organisation's genesis file (canonical JSON: name, owners, first
    /// policy). The node creates keys, derives, signs and refreshes only for
    /// requests its members approved under this genesis and the governance
    /// log replayed from it; every node and the coordinator get the same file.
    #[arg(long, env = "SHARDVAULT_GENESIS")]
    pub genesis: PathBuf,
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
    /// A 32-byte key-encryption key file (raw or hex), mode 0600. Without it,
    /// a passphrase (stretched with Argon2id) comes from --passphrase-file or
    /// the environment variable SHARDVAULT_PASSPHRASE (removed from the
    /// environment once read; prefer the file).
    #[arg(long, env = "SHARDVAULT_KEY_FILE", conflicts_with = "passphrase_file")]
    pub key_file: Option<PathBuf>,
    /// A file holding the passphrase (first line), mode 0600.
    #[arg(long, env = "SHARDVAULT_PASSPHRASE_FILE")]
    pub passphrase_file: Option<PathBuf>,
    /// Also sign raw 32-byte digests and raw Ed25519 bytes. Off by default:
    /// those can be transactions of any chain and skip every check the node
    /// makes on transactions and messages.
    #[arg(long, env = "SHARDVAULT_ALLOW_RAW_SIGNING")]
    pub allow_raw_signing: bool,
    #[command(flatten)]
    pub liveness: LivenessArgs,
}

#[derive(Debug, Args)]
pub struct NodeIdentityArgs {
    /// The node's directory (with `noise.key`).
    #[arg(long, env = "SHARDVAULT_NODE_DIR")]
    pub dir: PathBuf,
    /// Make a new node's directory first (mode 0700, created if missing,
    /// holding nothing yet) with a fresh random `noise.key` (0600): a new
    /// machine, or one replacing a lost node. Never writes over a key.
    #[arg(long)]
    pub new: bool,
}

/// Prints what the cluster file pins for this node, from its `noise.key`
/// before the node's first start (the node then seals the key into its
/// store, deletes the file, and logs its identity key at every start).
pub fn node_identity(args: &NodeIdentityArgs, json: bool) -> Result<()> {
    let path = args.dir.join("noise.key");
    if args.new {
        new_node_dir(&args.dir)?;
    }
    if !path.exists() && args.dir.join("node.db").exists() {
        bail!(
            "{} is gone: the node sealed it into its store at its first start; its identity key is in the \
             node's log (\"node identity\") at every start",
            path.display()
        );
    }
    let secret = read_secret(&path)?;
    let noise = shardvault_wire::NoisePublicKey::from_secret(&secret)?;
    let identity = shardvault_wire::NodeIdentity::derive(&secret).public();
    if json {
        println!("{}", serde_json::json!({ "noise_key": String::from(noise), "identity_key": String::from(identity) }));
    } else {
        println!("noise_key: {}\nidentity_key: {}", String::from(noise), String::from(identity));
    }
    Ok(())
}

/// A new node's directory: created `0700` (an existing one must be empty
/// and private), with a fresh `noise.key`.
fn new_node_dir(dir: &Path) -> Result<()> {
    shardvault_vault::files::create_private_dir(dir)?;
    if std::fs::read_dir(dir)?.next().is_some() {
        bail!(
            "{} is not empty: --new makes a node directory from nothing (a key is never written over)",
            dir.display()
        );
    }
    new_secret_file(&dir.join("noise.key"))?;
    Ok(())
}

/// Writes a fresh random Noise static secret to `path` (hex, `0600`) and
/// returns its public key.
pub fn new_secret_file(path: &Path) -> Result<shardvault_wire::NoisePublicKey> {
    let (secret, public) = shardvault_wire::generate_keypair()?;
    let hex = Zeroizing::new(hex::encode(secret.expose_secret()));
    shardvault_vault::files::write_private(path, hex.as_bytes())?;
    Ok(public)
}

/// Where a KEK comes from, read and held zeroized until the store is open.
enum KekInput {
    KeyFile(Zeroizing<Vec<u8>>),
    Passphrase(Zeroizing<String>),
}

impl KekInput {
    /// Reads the key file or passphrase file (refused unless private), or
    /// else the passphrase from `env` (given by [`take_env`]).
    fn read(
        key_file: Option<&Path>,
        passphrase_file: Option<&Path>,
        env: Option<Zeroizing<String>>,
        env_name: &str,
    ) -> Result<Self> {
        if let Some(path) = key_file {
            return Ok(KekInput::KeyFile(read_private(path)?));
        }
        let passphrase = match (passphrase_file, env) {
            (Some(path), _) => {
                let bytes = read_private(path)?;
                let text = std::str::from_utf8(&bytes)
                    .with_context(|| format!("the passphrase in {} is not UTF-8", path.display()))?;
                Zeroizing::new(text.lines().next().unwrap_or_default().to_string())
            }
            (None, Some(passphrase)) => passphrase,
            (None, None) => bail!("give a key file, a passphrase file or {env_name}"),
        };
        if passphrase.is_empty() {
            bail!("the passphrase is empty");
        }
        Ok(KekInput::Passphrase(passphrase))
    }

    /// For new stores and rotation: the default (strong) Argon2id parameters.
    fn source(&self) -> KekSource<'_> {
        match self {
            KekInput::KeyFile(contents) => KekSource::KeyFile(contents),
            KekInput::Passphrase(passphrase) => KekSource::Passphrase(passphrase.as_bytes(), KdfParams::RECOMMENDED),
        }
    }
}

/// Reads a passphrase from the environment and removes it from the process
/// environment at once (so child processes and later reads of the
/// environment do not see it), zeroizing the copy that was read. Called
/// before any thread is started (std::env::remove_var is safe in edition
/// 2021 but must not race other threads' environment access). The initial
/// environment block of the process (`/proc/PID/environ`, readable by the same
/// user) is not rewritten by this; a passphrase file avoids that exposure.
/// A value that is not UTF-8 is an error (it is removed and zeroized all the
/// same), never an empty passphrase.
fn take_env(name: &str) -> Result<Option<Zeroizing<String>>> {
    let Some(value) = std::env::var_os(name) else { return Ok(None) };
    std::env::remove_var(name);
    match String::from_utf8(value.into_encoded_bytes()) {
        Ok(text) => Ok(Some(Zeroizing::new(text))),
        Err(error) => {
            drop(Zeroizing::new(error.into_bytes()));
            bail!("{name} is not valid UTF-8")
        }
    }
}

/// The node's Noise identity, kept sealed in its store under the KEK (AAD
/// kind `noise-identity`). A plaintext `DIR/noise.key` (what releases before
/// this one used) is imported on first start — after checking it is `0600` —
/// sealed into the store, overwritten and deleted. If the store already holds
/// the sealed identity, a leftover `noise.key` is refused.
fn sealed_identity(store: &Store, dir: &Path) -> Result<NoiseSecretKey> {
    let plaintext = dir.join("noise.key");
    let exists = plaintext.try_exists().with_context(|| format!("checking {}", plaintext.display()))?;
    match store.identity()? {
        Some(sealed) => {
            if exists {
                bail!(
                    "{} is a plaintext copy of this node's identity key, which the store already holds sealed; \
                     delete it (`shred -u {}`) and start again",
                    plaintext.display(),
                    plaintext.display()
                );
            }
            let mut bytes = *sealed.expose_secret();
            let secret = NoiseSecretKey::from_bytes(bytes);
            bytes.zeroize();
            Ok(secret)
        }
        None if exists => {
            let secret = read_secret(&plaintext)?;
            store.set_identity(&Secret32::new(*secret.expose_secret()))?;
            erase_file(&plaintext)?;
            tracing::warn!(
                file = %plaintext.display(),
                "imported the plaintext node identity key into the sealed store and deleted the file; \
                 copies in backups or on the disk's free space are not erased"
            );
            Ok(secret)
        }
        None => bail!(
            "this node has no identity key: put its Noise secret key (64 hex digits, the key pinned for it in the \
             cluster file) in {} with mode 0600; the node seals it into its store on start and deletes the file",
            plaintext.display()
        ),
    }
}

/// Overwrites a file with zeros, syncs, and removes it. On journaling or
/// copy-on-write file systems and SSDs the old blocks may survive; this is
/// best effort.
fn erase_file(path: &Path) -> Result<()> {
    use std::io::Write;
    let length = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?.len();
    let mut file =
        std::fs::OpenOptions::new().write(true).open(path).with_context(|| format!("erasing {}", path.display()))?;
    let length = usize::try_from(length).with_context(|| format!("{} is too large to erase", path.display()))?;
    file.write_all(&vec![0u8; length])?;
    file.sync_all()?;
    drop(file);
    std::fs::remove_file(path).with_context(|| format!("removing {}", path.display()))
}

pub fn node(args: &NodeArgs) -> Result<()> {
    let env_passphrase = take_env(PASSPHRASE_ENV)?;
    let tls = node_tls(args)?;
    let cluster = read_cluster(&args.cluster)?;
    let genesis = read_genesis(&args.genesis)?;
    let organisation = genesis.id().context("the genesis does not encode")?;
    tracing::info!(%organisation, name = %genesis.name, "governed by this organisation's genesis");
    let id = NodeId(args.id);
    cluster.key_of(id).with_context(|| format!("node {id} is not in {}", args.cluster.display()))?;
    // Like ssh with ~/.ssh: the data directory must be the operator's alone.
    check_private(&args.dir)?;
    let store_path = args.dir.join("node.db");
    let node_name = format!("node-{id}");
    let kek =
        KekInput::read(args.key_file.as_deref(), args.passphrase_file.as_deref(), env_passphrase, PASSPHRASE_ENV)?;
    let store = Store::open(&store_path, &node_name, kek.source())?;
    drop(kek);
    let secret = sealed_identity(&store, &args.dir)?;
    let identity = shardvault_wire::NodeIdentity::derive(&secret).public();
    tracing::info!(node = %id, identity_key = %String::from(identity), "node identity");
    match cluster.identities.get(&id) {
        Some(pinned) if *pinned != identity => bail!(
            "the cluster file pins another identity key for node {id} ({}) than this node's sealed Noise key gives ({}); \
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
        ping_interval: Duration::from_millis(args.liveness.ping_interval_ms),
        silence_timeout: Duration::from_millis(args.liveness.silence_timeout_ms),
    };
    let raw_signing = match args.allow_raw_signing {
        true => {
            tracing::warn!("raw signing is on: this node signs any digest or Ed25519 bytes it is asked to");
            shardvault_node::RawSigning::Allowed
        }
        false => shardvault_node::RawSigning::Denied,
    };
    let node = Node::new(id, secret, cluster, store, genesis).with_raw_signing(raw_signing);
    let runtime = tokio::runtime::Runtime::new()?;
    // A dead worker is an error: the process exits non-zero, so `Restart=on-failure` restarts it.
    runtime.block_on(async { shardvault_node::service::run(node, connection, shutdown_signal()).await })?;
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

#[derive(Debug, Args)]
pub struct RotateKekArgs {
    /// The node's id in the cluster file.
    #[arg(long, env = "SHARDVAULT_NODE_ID")]
    pub id: u16,
    /// The node's directory (with node.db). Stop the node first.
    #[arg(long, env = "SHARDVAULT_NODE_DIR")]
    pub dir: PathBuf,
    /// The current key file. Without it, the current passphrase comes from
    /// --passphrase-file or SHARDVAULT_PASSPHRASE.
    #[arg(long, env = "SHARDVAULT_KEY_FILE", conflicts_with = "passphrase_file")]
    pub key_file: Option<PathBuf>,
    /// A file holding the current passphrase (first line).
    #[arg(long, env = "SHARDVAULT_PASSPHRASE_FILE")]
    pub passphrase_file: Option<PathBuf>,
    /// The new key file (32 bytes, raw or hex, mode 0600). Without it, the
    /// new passphrase comes from --new-passphrase-file or SHARDVAULT_NEW_PASSPHRASE.
    #[arg(long, env = "SHARDVAULT_NEW_KEY_FILE", conflicts_with = "new_passphrase_file")]
    pub new_key_file: Option<PathBuf>,
    /// A file holding the new passphrase (first line).
    #[arg(long, env = "SHARDVAULT_NEW_PASSPHRASE_FILE")]
    pub new_passphrase_file: Option<PathBuf>,
}

/// `shardvault rotate-kek`: re-seals every sealed value of a stopped node's
/// store under a new passphrase or key file (new salt, current default
/// Argon2id parameters, new verifier) in one transaction, then overwrites the
/// old blobs. Also the way to move an old store to stronger KDF parameters
/// (rotate to the same passphrase).
pub fn rotate_kek(args: &RotateKekArgs) -> Result<()> {
    // Both are taken out of the environment before either error is reported.
    let (old_env, new_env) = (take_env(PASSPHRASE_ENV), take_env(NEW_PASSPHRASE_ENV));
    let (old_env, new_env) = (old_env?, new_env?);
    let old = KekInput::read(args.key_file.as_deref(), args.passphrase_file.as_deref(), old_env, PASSPHRASE_ENV)?;
    let new =
        KekInput::read(args.new_key_file.as_deref(), args.new_passphrase_file.as_deref(), new_env, NEW_PASSPHRASE_ENV)?;
    check_private(&args.dir)?;
    let path = args.dir.join("node.db");
    if !path.try_exists()? {
        bail!("no store at {}", path.display());
    }
    let mut store = Store::open(&path, &format!("node-{}", NodeId(args.id)), old.source())?;
    store.rotate_kek(new.source())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_node_reads_only_a_genesis_file_exactly_as_written() {
        use shardvault_governance::{Genesis, Identity, Owner};
        let dir = tempfile::tempdir().unwrap();
        let owner = Identity::generate("alice@laptop").unwrap();
        let owners = vec![Owner { name: "alice".parse().unwrap(), public_key: owner.member_key().unwrap() }];
        let genesis = Genesis::new("acme", owners, 1_767_225_600).unwrap();
        let path = dir.path().join("genesis.json");
        std::fs::write(&path, genesis.to_bytes().unwrap()).unwrap();
        assert_eq!(super::read_genesis(&path).unwrap(), genesis);
        // Pretty-printed, it is another organisation's bytes: refused, naming the file.
        let value: serde_json::Value = serde_json::from_slice(&genesis.to_bytes().unwrap()).unwrap();
        std::fs::write(&path, serde_json::to_vec_pretty(&value).unwrap()).unwrap();
        let error = format!("{:#}", super::read_genesis(&path).unwrap_err());
        assert!(error.contains("is not an organisation genesis") && error.contains("canonical"), "{error}");
        std::fs::write(&path, vec![b' '; 2 << 20]).unwrap();
        let error = format!("{:#}", super::read_genesis(&path).unwrap_err());
        assert!(error.contains("larger than"), "{error}");
        let error = format!("{:#}", super::read_genesis(&dir.path().join("missing.json")).unwrap_err());
        assert!(error.contains("reading genesis file"), "{error}");
    }

    #[cfg(unix)]
    #[test]
    fn a_passphrase_that_is_not_utf8_is_an_error_not_an_empty_passphrase() {
        use std::os::unix::ffi::OsStrExt;
        let name = "SHARDVAULT_TEST_TAKE_ENV_NOT_UTF8";
        std::env::set_var(name, std::ffi::OsStr::from_bytes(b"pass\xffword"));
        let error = super::take_env(name).unwrap_err();
        assert_eq!(error.to_string(), format!("{name} is not valid UTF-8"));
        assert!(std::env::var_os(name).is_none(), "removed from the environment all the same");
        std::env::set_var(name, "a passphrase");
        assert_eq!(super::take_env(name).unwrap().as_deref().map(String::as_str), Some("a passphrase"));
        assert!(super::take_env(name).unwrap().is_none());
    }
}
