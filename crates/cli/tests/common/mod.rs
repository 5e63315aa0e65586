//! A devnet for the CLI's end-to-end tests.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const EXE: &str = env!("CARGO_BIN_EXE_shardvault");

/// A `shardvault devnet` process; stopped (SIGTERM) when dropped.
pub struct Devnet {
    process: Child,
    pub api: String,
    pub dir: PathBuf,
    info: Value,
}

impl Devnet {
    pub fn start(dir: &Path) -> Devnet {
        let mut process = Command::new(EXE)
            .args(["--json", "devnet", "--nodes", "3", "--dir"])
            .arg(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut text = String::new();
        let mut lines = BufReader::new(process.stdout.take().unwrap()).lines();
        while let Some(Ok(line)) = lines.next() {
            text.push_str(&line);
            if line == "}" {
                break;
            }
        }
        let info: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("devnet did not start: {e}: {text:?}"));
        Devnet { process, api: info["api"].as_str().unwrap().to_string(), dir: dir.to_path_buf(), info }
    }

    pub fn node_pid(&self, id: u64) -> u32 {
        let nodes = self.info["nodes"].as_array().unwrap();
        nodes.iter().find(|n| n["id"] == id).unwrap()["pid"].as_u64().unwrap() as u32
    }

    pub fn kill_node(&self, id: u64) {
        assert!(Command::new("kill").args(["-KILL", &self.node_pid(id).to_string()]).status().unwrap().success());
    }

    /// Starts node `id` again, as the devnet did.
    pub fn restart_node(&self, id: u64) -> Child {
        let node_dir = self.dir.join(format!("node-{id}"));
        let relay = format!("{}/v1/relay", self.api.replacen("http://", "ws://", 1));
        Command::new(EXE)
            .args(["node", "--id", &id.to_string(), "--coordinator", &relay])
            .arg("--dir")
            .arg(&node_dir)
            .arg("--cluster")
            .arg(self.dir.join("cluster.json"))
            .arg("--key-file")
            .arg(node_dir.join("kek.key"))
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }

    pub fn wait_connected(&self, count: u64) {
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

    /// Runs a client command against this devnet: Ok(JSON) or Err(stderr).
    pub fn cli(&self, args: &[&str]) -> Result<Value, String> {
        // `address` verifies attestations against the devnet's pinned cluster file.
        let output = Command::new(EXE)
            .arg("--json")
            .args(args)
            .args(["--api", &self.api])
            .env("SHARDVAULT_CLUSTER", self.dir.join("cluster.json"))
            .output()
            .unwrap();
        if output.status.success() {
            Ok(serde_json::from_slice(&output.stdout).unwrap())
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
