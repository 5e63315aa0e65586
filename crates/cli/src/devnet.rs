//! `shardvault devnet`: a coordinator and N nodes as separate processes on
//! loopback, with embedded storage under one directory. Key material is made
//! on first start; restarting on the same directory keeps every key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;
use shardvault_mpc::Secret32;
use shardvault_node::{KekSource, Store};
use shardvault_vault::files::{create_private_dir, write_private};
use shardvault_wire::{generate_keypair, Cluster, NodeId};
use zeroize::Zeroizing;

use crate::daemon::write_atomically;

/// A running devnet; dropping it stops every process.
pub struct Devnet {
    pub api: String,
    pub dir: PathBuf,
    children: Vec<(String, Child)>,
}

#[derive(Serialize)]
pub struct DevnetFile {
    pub api: String,
    pub nodes: Vec<NodeProcess>,
    pub coordinator_pid: u32,
}

#[derive(Serialize)]
pub struct NodeProcess {
    pub id: u16,
    pub pid: u32,
}

fn new_secret_file(path: &Path) -> Result<shardvault_wire::NoisePublicKey> {
    let (secret, public) = generate_keypair()?;
    write_private(path, hex::encode(secret.expose_secret()).as_bytes())?;
    Ok(public)
}

/// Creates the directory layout and keys if they do not exist yet. Every
/// directory holding secrets is created `0700` and every secret file `0600`.
/// A node's identity key is sealed into its store (never a plaintext file);
/// the coordinator's is a `0600` file (it has no KEK).
fn prepare(dir: &Path, nodes: u16) -> Result<Cluster> {
    let cluster_path = dir.join("cluster.json");
    if cluster_path.exists() {
        let cluster = crate::daemon::read_cluster(&cluster_path)?;
        if cluster.nodes.len() != usize::from(nodes) {
            bail!(
                "{} was created with {} nodes; use --nodes {} or another --dir",
                dir.display(),
                cluster.nodes.len(),
                cluster.nodes.len()
            );
        }
        if cluster.identities.is_empty() {
            // A devnet made before node identities existed: pin them now.
            let mut cluster = cluster;
            cluster.identities = node_identities(dir, nodes)?;
            write_atomically(&cluster_path, serde_json::to_string_pretty(&cluster)?.as_bytes())?;
            return Ok(cluster);
        }
        return Ok(cluster);
    }
    create_private_dir(&dir.join("coordinator"))?;
    let coordinator = new_secret_file(&dir.join("coordinator/noise.key"))?;
    let mut keys = BTreeMap::new();
    let mut identities = BTreeMap::new();
    for id in 1..=nodes {
        let node_dir = dir.join(format!("node-{id}"));
        create_private_dir(&node_dir)?;
        // The devnet's embedded default: a random key file per node. Production
        // nodes use a passphrase (SHARDVAULT_PASSPHRASE) or an operator-held key file.
        let (kek, _) = generate_keypair()?;
        let kek = Zeroizing::new(hex::encode(kek.expose_secret()));
        write_private(&node_dir.join("kek.key"), kek.as_bytes())?;
        let store = Store::open(&node_dir.join("node.db"), &format!("node-{id}"), KekSource::KeyFile(kek.as_bytes()))?;
        let (identity, public) = generate_keypair()?;
        store.set_identity(&Secret32::new(*identity.expose_secret()))?;
        keys.insert(NodeId(id), public);
        identities.insert(NodeId(id), shardvault_wire::NodeIdentity::derive(&identity).public());
    }
    let cluster = Cluster { coordinator, nodes: keys, identities };
    write_atomically(&cluster_path, serde_json::to_string_pretty(&cluster)?.as_bytes())?;
    Ok(cluster)
}

/// Every node's identity key, from the Noise secret sealed in its store
/// (the devnet holds each node's KEK file).
fn node_identities(dir: &Path, nodes: u16) -> Result<BTreeMap<NodeId, shardvault_wire::IdentityPublicKey>> {
    (1..=nodes)
        .map(|id| {
            let node_dir = dir.join(format!("node-{id}"));
            let kek = Zeroizing::new(std::fs::read(node_dir.join("kek.key"))?);
            let store = Store::open(&node_dir.join("node.db"), &format!("node-{id}"), KekSource::KeyFile(&kek))?;
            let secret = store.identity()?.ok_or_else(|| anyhow::anyhow!("node {id}'s store holds no identity key"))?;
            let secret = shardvault_wire::NoiseSecretKey::from_bytes(*secret.expose_secret());
            Ok((NodeId(id), shardvault_wire::NodeIdentity::derive(&secret).public()))
        })
        .collect()
}

impl Devnet {
    /// Starts (or restarts) the devnet in `dir` and waits until every node is connected.
    pub fn start(dir: &Path, nodes: u16) -> Result<Devnet> {
        if !(2..=16).contains(&nodes) {
            bail!("a devnet has 2 to 16 nodes");
        }
        std::fs::create_dir_all(dir)?;
        let dir = dir.canonicalize()?;
        let cluster = prepare(&dir, nodes)?;
        let exe = std::env::current_exe()?;
        let log = |name: &str| -> Result<Stdio> { Ok(std::fs::File::create(dir.join(format!("{name}.log")))?.into()) };
        let url_file = dir.join("coordinator/api.url");
        let _ = std::fs::remove_file(&url_file);
        let mut devnet = Devnet { api: String::new(), dir: dir.clone(), children: Vec::new() };
        let coordinator = Command::new(&exe)
            .args(["--log", "info", "coordinator", "--listen", "127.0.0.1:0"])
            .arg("--dir")
            .arg(dir.join("coordinator"))
            .arg("--cluster")
            .arg(dir.join("cluster.json"))
            .stdout(Stdio::null())
            .stderr(log("coordinator")?)
            .spawn()
            .context("starting the coordinator")?;
        devnet.children.push(("coordinator".into(), coordinator));
        devnet.api = wait_for_file(&url_file, Duration::from_secs(20))?;
        let relay = format!("{}/v1/relay", devnet.api.replacen("http://", "ws://", 1));
        for id in cluster.nodes.keys() {
            let node_dir = dir.join(format!("node-{id}"));
            let child = Command::new(&exe)
                .args(["--log", "info", "node", "--id", &id.to_string(), "--coordinator", &relay])
                .arg("--dir")
                .arg(&node_dir)
                .arg("--cluster")
                .arg(dir.join("cluster.json"))
                .arg("--key-file")
                .arg(node_dir.join("kek.key"))
                .stdout(Stdio::null())
                .stderr(log(&format!("node-{id}"))?)
                .spawn()
                .with_context(|| format!("starting node {id}"))?;
            devnet.children.push((format!("node-{id}"), child));
        }
        devnet.write_file()?;
        devnet.wait_connected(usize::from(nodes), Duration::from_secs(30))?;
        Ok(devnet)
    }

    fn write_file(&self) -> Result<()> {
        let mut nodes = Vec::new();
        let mut coordinator_pid = 0;
        for (name, child) in &self.children {
            match name.strip_prefix("node-") {
                Some(id) => nodes.push(NodeProcess { id: id.parse()?, pid: child.id() }),
                None => coordinator_pid = child.id(),
            }
        }
        let file = DevnetFile { api: self.api.clone(), nodes, coordinator_pid };
        write_atomically(&self.dir.join("devnet.json"), serde_json::to_string_pretty(&file)?.as_bytes())
    }

    /// Waits until `count` nodes are connected to the coordinator.
    pub fn wait_connected(&self, count: usize, limit: Duration) -> Result<()> {
        let api = crate::client::Api::new(&self.api);
        let start = Instant::now();
        loop {
            if let Ok(health) = api.get("/v1/health") {
                if health["connected"].as_u64().unwrap_or(0) as usize >= count {
                    return Ok(());
                }
            }
            if start.elapsed() > limit {
                bail!("nodes did not connect within {limit:?}; see the logs in {}", self.dir.display());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops every process: SIGTERM (graceful shutdown), then SIGKILL after 5 s.
    pub fn stop(&mut self) {
        for (_, child) in &mut self.children {
            if let Ok(None) = child.try_wait() {
                let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        for (_, child) in &mut self.children {
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        self.children.clear();
    }
}

impl Drop for Devnet {
    fn drop(&mut self) {
        self.stop();
    }
}

fn wait_for_file(path: &Path, limit: Duration) -> Result<String> {
    let start = Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            return Ok(text.trim().to_string());
        }
        if start.elapsed() > limit {
            bail!("the coordinator did not start (no {})", path.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
