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

use crate::daemon::{new_secret_file, write_atomically};

/// A running devnet; dropping it stops every process.
pub struct Devnet {
    pub api: String,
    pub dir: PathBuf,
    /// With TLS: the devnet CA that clients pin (`--tls-ca`).
    pub tls_ca: Option<PathBuf>,
    children: Vec<(String, Child)>,
    /// The genesis file.
    pub genesis: PathBuf,
    /// The organisation id.
    pub organisation: String,
    owner_identity: Option<PathBuf>,
}

#[derive(Serialize)]
pub struct DevnetFile {
    pub api: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_ca: Option<PathBuf>,
    pub nodes: Vec<NodeProcess>,
    pub coordinator_pid: u32,
    /// The genesis file every node and the coordinator pin.
    pub genesis: PathBuf,
    /// The organisation id (SHA-256 of the genesis).
    pub organisation: String,
    /// The owner's private key, when the devnet made it (no `--owner`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner_identity: Option<PathBuf>,
}

#[derive(Serialize)]
pub struct NodeProcess {
    pub id: u16,
    pub pid: u32,
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

/// A devnet CA and a certificate it signed for `localhost` and 127.0.0.1,
/// made once in `dir/tls`: (CA, certificate chain, private key) files.
/// The devnet's organisation: `dir/genesis.json` if it exists (a restart
/// keeps it), else a new one owned by `owner` or by a new identity written
/// to `dir/owner`. Returns the genesis file, the organisation id and the
/// owner identity's file (if the devnet made one).
fn organisation(dir: &Path, owner: Option<&str>) -> Result<(PathBuf, String, Option<PathBuf>)> {
    let file = dir.join("genesis.json");
    let identity_file = dir.join("owner");
    if !file.exists() {
        let key: shardvault_governance::MemberKey = match owner {
            Some(line) => line.parse().context("--owner")?,
            None => {
                let identity = shardvault_governance::Identity::generate("devnet owner")?;
                identity.write(&identity_file, None)?;
                identity.member_key()?
            }
        };
        let owner = shardvault_governance::Owner { name: "owner".parse()?, public_key: key };
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
        let genesis = shardvault_governance::Genesis::new("devnet", vec![owner], now)?;
        write_atomically(&file, &genesis.to_bytes()?)?;
    }
    let genesis = crate::daemon::read_genesis(&file)?;
    let identity = identity_file.exists().then_some(identity_file);
    Ok((file, genesis.id()?.to_string(), identity))
}

fn prepare_tls(dir: &Path) -> Result<(PathBuf, PathBuf, PathBuf)> {
    let tls = dir.join("tls");
    let (ca, cert, key) = (tls.join("ca.pem"), tls.join("cert.pem"), tls.join("key.pem"));
    if ca.exists() && cert.exists() && key.exists() {
        return Ok((ca, cert, key));
    }
    create_private_dir(&tls)?;
    let mut ca_params = rcgen::CertificateParams::new(Vec::new())?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "shardvault devnet CA");
    ca_params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
    let ca_key = rcgen::KeyPair::generate()?;
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])?;
    params.distinguished_name.push(rcgen::DnType::CommonName, "shardvault devnet coordinator");
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let server_key = rcgen::KeyPair::generate()?;
    let server_cert = params.signed_by(&server_key, &issuer)?;
    // The CA's key is not kept: the devnet never signs another certificate.
    write_private(&key, server_key.serialize_pem().as_bytes())?;
    write_atomically(&cert, server_cert.pem().as_bytes())?;
    write_atomically(&ca, ca_cert.pem().as_bytes())?;
    Ok((ca, cert, key))
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
    /// Starts (or restarts) the devnet in `dir` and waits until every node is
    /// connected; its owner is the identity it made (`dir/owner`).
    pub fn start(dir: &Path, nodes: u16) -> Result<Devnet> {
        Self::launch(dir, nodes, false, None)
    }

    /// A client of the devnet's API logged in as the owner identity it made.
    pub fn owner_client(&self) -> Result<crate::client::Api> {
        let file = self.owner_identity().context("this devnet was started with --owner: log in with that key")?;
        let identity = shardvault_governance::Identity::read(file, None)?;
        Ok(crate::client::Api::connect(&self.api, self.tls_ca.as_deref(), false)?.login(identity)?)
    }

    /// The devnet's owner identity (made on first start, without `--owner`).
    pub fn owner_identity(&self) -> Option<&Path> {
        self.owner_identity.as_deref()
    }

    /// As [`Devnet::start`]; with `tls`, the API and the relay are served over
    /// TLS with a certificate from a devnet CA (`dir/tls/ca.pem`).
    /// The organisation is made on first start: with `owner` as its owner,
    /// or else with a new identity written to `dir/owner` (OpenSSH, 0600).
    pub fn launch(dir: &Path, nodes: u16, tls: bool, owner: Option<&str>) -> Result<Devnet> {
        if !(2..=16).contains(&nodes) {
            bail!("a devnet has 2 to 16 nodes");
        }
        std::fs::create_dir_all(dir)?;
        let dir = dir.canonicalize()?;
        let cluster = prepare(&dir, nodes)?;
        let (genesis, organisation, owner_identity) = organisation(&dir, owner)?;
        let exe = std::env::current_exe()?;
        let log = |name: &str| -> Result<Stdio> { Ok(std::fs::File::create(dir.join(format!("{name}.log")))?.into()) };
        let url_file = dir.join("coordinator/api.url");
        let _ = std::fs::remove_file(&url_file);
        let tls = if tls { Some(prepare_tls(&dir)?) } else { None };
        let tls_ca = tls.as_ref().map(|(ca, _, _)| ca.clone());
        let mut devnet = Devnet {
            api: String::new(),
            dir: dir.clone(),
            tls_ca: tls_ca.clone(),
            children: Vec::new(),
            genesis: genesis.clone(),
            organisation,
            owner_identity,
        };
        let mut coordinator = Command::new(&exe);
        coordinator.args(["--log", "info", "coordinator", "--listen", "127.0.0.1:0"]);
        if let Some((_, cert, key)) = &tls {
            coordinator.arg("--tls-cert").arg(cert).arg("--tls-key").arg(key);
        }
        let coordinator = coordinator
            .arg("--dir")
            .arg(dir.join("coordinator"))
            .arg("--cluster")
            .arg(dir.join("cluster.json"))
            .arg("--genesis")
            .arg(&genesis)
            .stdout(Stdio::null())
            .stderr(log("coordinator")?)
            .spawn()
            .context("starting the coordinator")?;
        devnet.children.push(("coordinator".into(), coordinator));
        devnet.api = wait_for_file(&url_file, Duration::from_secs(20))?;
        let relay =
            format!("{}/v1/relay", devnet.api.replacen("https://", "wss://", 1).replacen("http://", "ws://", 1));
        for id in cluster.nodes.keys() {
            let node_dir = dir.join(format!("node-{id}"));
            let mut node = Command::new(&exe);
            node.args(["--log", "info", "node", "--id", &id.to_string(), "--coordinator", &relay]);
            if let Some(ca) = &tls_ca {
                node.arg("--tls-ca").arg(ca);
            }
            let child = node
                .arg("--dir")
                .arg(&node_dir)
                .arg("--cluster")
                .arg(dir.join("cluster.json"))
                .arg("--genesis")
                .arg(&genesis)
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
        let file = DevnetFile {
            api: self.api.clone(),
            tls_ca: self.tls_ca.clone(),
            nodes,
            coordinator_pid,
            genesis: self.genesis.clone(),
            organisation: self.organisation.clone(),
            owner_identity: self.owner_identity.clone(),
        };
        write_atomically(&self.dir.join("devnet.json"), serde_json::to_string_pretty(&file)?.as_bytes())
    }

    /// Waits until `count` nodes are connected to the coordinator.
    pub fn wait_connected(&self, count: usize, limit: Duration) -> Result<()> {
        let api = crate::client::Api::connect(&self.api, self.tls_ca.as_deref(), false)?;
        let start = Instant::now();
        loop {
            if let Ok(health) = api.health() {
                if usize::try_from(health.connected).is_ok_and(|connected| connected >= count) {
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
