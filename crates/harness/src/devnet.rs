//! `shardvault devnet` as processes, and the CLI run against it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How to start a [`Devnet`].
#[derive(Debug, Clone)]
pub struct DevnetOptions {
    /// Number of node processes.
    pub nodes: u16,
    /// Serve the API and the relay over TLS only (`https://`, `wss://`) with
    /// a devnet CA that the nodes and [`Devnet::cli`] pin.
    pub tls: bool,
    /// Environment variables for the devnet's processes (their settings,
    /// e.g. `SHARDVAULT_REFRESH_CHECK_SECS`).
    pub env: Vec<(String, String)>,
}

impl Default for DevnetOptions {
    fn default() -> Self {
        DevnetOptions { nodes: 3, tls: false, env: Vec::new() }
    }
}

/// A `shardvault devnet` process (a coordinator and its nodes on loopback,
/// state in `dir`); stopped (SIGTERM) when dropped. Starting one again on
/// the same directory keeps every key.
pub struct Devnet {
    process: Child,
    exe: PathBuf,
    /// The API's base URL (`http://127.0.0.1:PORT`, or `https://` with TLS).
    pub api: String,
    /// The devnet's directory.
    pub dir: PathBuf,
    /// With TLS: the devnet CA's certificate (what `--tls-ca` names).
    pub ca: Option<PathBuf>,
    info: Value,
}

impl std::fmt::Debug for Devnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Devnet").field("api", &self.api).field("dir", &self.dir).finish_non_exhaustive()
    }
}

impl Devnet {
    /// Runs `exe devnet` (three nodes, plain HTTP on loopback) in `dir` and
    /// returns once it is up (every node connected). `exe` is the
    /// `shardvault` binary (`env!("CARGO_BIN_EXE_shardvault")` in the CLI's
    /// tests).
    pub fn start(exe: &str, dir: &Path) -> Devnet {
        Self::start_with(exe, dir, DevnetOptions::default())
    }

    /// As [`Devnet::start`], with `options`.
    pub fn start_with(exe: &str, dir: &Path, options: DevnetOptions) -> Devnet {
        let mut command = Command::new(exe);
        command.args(["--json", "devnet"]).envs(options.env.iter().map(|(k, v)| (k, v)));
        if options.tls {
            command.arg("--tls");
        }
        let mut process = command
            .args(["--nodes", &options.nodes.to_string(), "--dir"])
            .arg(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {exe} devnet: {e}"));
        let mut text = String::new();
        if let Some(stdout) = process.stdout.take() {
            let mut lines = BufReader::new(stdout).lines();
            while let Some(Ok(line)) = lines.next() {
                text.push_str(&line);
                if line == "}" {
                    break;
                }
            }
        }
        let info: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("devnet did not start: {e}: {text:?}"));
        let api = info["api"].as_str().unwrap_or_else(|| panic!("no api in {info}")).to_string();
        let ca = match options.tls {
            true => Some(PathBuf::from(info["tls_ca"].as_str().expect("devnet.json names the CA"))),
            false => None,
        };
        Devnet { process, exe: PathBuf::from(exe), api, dir: dir.to_path_buf(), ca, info }
    }

    /// The pinned cluster file.
    pub fn cluster_file(&self) -> PathBuf {
        self.dir.join("cluster.json")
    }

    /// The organisation's genesis file (pinned by every node).
    pub fn genesis_file(&self) -> PathBuf {
        self.dir.join("genesis.json")
    }

    /// The owner identity the devnet made (an OpenSSH private key file).
    pub fn owner_identity(&self) -> PathBuf {
        self.dir.join("owner")
    }

    /// A client of this devnet's API (plain devnets), logged in as the owner.
    pub fn client(&self) -> shardvault_client::Client {
        assert!(self.ca.is_none(), "client() speaks plain HTTP");
        let owner = shardvault_governance::Identity::read(&self.owner_identity(), None)
            .unwrap_or_else(|e| panic!("the devnet's owner identity: {e}"));
        shardvault_client::Client::new(&self.api).login(owner).unwrap_or_else(|e| panic!("logging in: {e}"))
    }

    /// The relay's URL (`ws://…/v1/relay`, or `wss://` with TLS).
    pub fn relay(&self) -> String {
        format!("{}/v1/relay", self.api.replacen("https://", "wss://", 1).replacen("http://", "ws://", 1))
    }

    /// Node `id`'s process id.
    pub fn node_pid(&self, id: u64) -> u32 {
        let nodes = self.info["nodes"].as_array().unwrap_or_else(|| panic!("no nodes in {}", self.info));
        let node = nodes.iter().find(|n| n["id"] == id).unwrap_or_else(|| panic!("no node {id}"));
        node["pid"].as_u64().and_then(|pid| u32::try_from(pid).ok()).unwrap_or_else(|| panic!("pid of {node}"))
    }

    /// Kills node `id` (SIGKILL: no clean shutdown).
    pub fn kill_node(&self, id: u64) {
        let status = Command::new("kill").args(["-KILL", &self.node_pid(id).to_string()]).status();
        assert!(status.as_ref().is_ok_and(|s| s.success()), "kill node {id}: {status:?}");
    }

    /// The command that runs node `id` as the devnet does, connecting to
    /// `relay` (normally [`Devnet::relay`]); not started, stderr discarded.
    pub fn node_command(&self, id: u64, relay: &str) -> Command {
        let node_dir = self.dir.join(format!("node-{id}"));
        let mut command = Command::new(&self.exe);
        command.args(["node", "--id", &id.to_string(), "--coordinator", relay]);
        if let Some(ca) = &self.ca {
            command.arg("--tls-ca").arg(ca);
        }
        command
            .arg("--dir")
            .arg(&node_dir)
            .arg("--cluster")
            .arg(self.cluster_file())
            .arg("--genesis")
            .arg(self.genesis_file())
            .arg("--key-file")
            .arg(node_dir.join("kek.key"))
            .stderr(Stdio::null());
        command
    }

    /// Starts node `id` again (after [`Devnet::kill_node`]), as the devnet did.
    pub fn restart_node(&self, id: u64) -> Child {
        self.node_command(id, &self.relay()).spawn().unwrap_or_else(|e| panic!("restarting node {id}: {e}"))
    }

    /// Waits (up to 30 s) until exactly `count` nodes are connected (plain devnets).
    pub fn wait_connected(&self, count: u64) {
        assert!(self.ca.is_none(), "wait_connected polls over plain HTTP");
        let start = Instant::now();
        loop {
            let health = ureq::get(format!("{}/v1/health", self.api))
                .call()
                .ok()
                .and_then(|mut r| r.body_mut().read_json::<Value>().ok());
            if health.is_some_and(|h| h["connected"].as_u64() == Some(count)) {
                return;
            }
            assert!(start.elapsed() < Duration::from_secs(30), "nodes did not reconnect");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs a client command against this devnet (`--json`, its API, its CA,
    /// its pinned cluster file): Ok(JSON) or Err(stderr).
    pub fn cli(&self, args: &[&str]) -> Result<Value, String> {
        let mut connection = vec!["--api", self.api.as_str()];
        if let Some(ca) = &self.ca {
            connection.extend(["--tls-ca", ca.to_str().unwrap_or_else(|| panic!("CA path {ca:?}"))]);
        }
        self.cli_with(args, &connection)
    }

    /// Runs a client command with `connection` flags instead of this
    /// devnet's API and CA (the cluster file, the genesis and the owner
    /// identity stay as defaults, which `--identity` overrides): Ok(JSON) or Err(stderr).
    pub fn cli_with(&self, args: &[&str], connection: &[&str]) -> Result<Value, String> {
        // `address` verifies attestations against the devnet's pinned cluster file.
        let output = Command::new(&self.exe)
            .env("SHARDVAULT_CLUSTER", self.cluster_file())
            .env("SHARDVAULT_GENESIS", self.genesis_file())
            .env("SHARDVAULT_IDENTITY", self.owner_identity())
            .arg("--json")
            .args(args)
            .args(connection)
            .output()
            .unwrap_or_else(|e| panic!("running the CLI: {e}"));
        if output.status.success() {
            Ok(serde_json::from_slice(&output.stdout)
                .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&output.stdout))))
        } else {
            Err(String::from_utf8_lossy(&output.stderr).to_string())
        }
    }
}

impl Drop for Devnet {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.process.id().to_string()]).status();
        let _ = self.process.wait();
    }
}
