//! A new machine for a devnet's node (node replacement tests): its own
//! directory, Noise key, KEK and cluster file, started as a node process.

use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use shardvault_testkit as tk;

use super::{Devnet, EXE};

/// `value[field]` as a string.
pub fn text(value: &Value, field: &str) -> String {
    value[field].as_str().unwrap_or_else(|| panic!("no {field} in {value}")).to_string()
}

fn write_private(path: &Path, bytes: &[u8]) {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new().create_new(true).write(true).mode(0o600).open(path).unwrap();
    file.write_all(bytes).unwrap();
}

/// A new machine for node `id` of `net`, in `dir`.
pub struct Machine {
    pub id: u16,
    pub dir: PathBuf,
    /// Its cluster file: the devnet's, naming its new keys for node `id`.
    pub cluster: PathBuf,
    /// Its keys, as `node-identity --json` prints them.
    pub keys: Value,
}

impl Machine {
    /// Makes the directory and its `noise.key` as the README does
    /// (`node-identity --new`), a `kek.key` (0600) beside it, and the cluster file.
    pub fn new(net: &Devnet, id: u16, dir: &Path) -> Machine {
        let identity = Command::new(EXE).args(["--json", "node-identity", "--new", "--dir"]).arg(dir).output().unwrap();
        assert!(identity.status.success(), "{}", String::from_utf8_lossy(&identity.stderr));
        let keys: Value = serde_json::from_slice(&identity.stdout).unwrap();
        let (kek, _) = shardvault_wire::generate_keypair().unwrap();
        write_private(&dir.join("kek.key"), hex::encode(kek.expose_secret()).as_bytes());
        let mut cluster: Value = serde_json::from_slice(&std::fs::read(net.cluster_file()).unwrap()).unwrap();
        cluster["nodes"][id.to_string()] = keys["noise_key"].clone();
        cluster["identities"][id.to_string()] = keys["identity_key"].clone();
        let cluster_file = dir.join("cluster.json");
        std::fs::write(&cluster_file, serde_json::to_vec_pretty(&cluster).unwrap()).unwrap();
        Machine { id, dir: dir.to_path_buf(), cluster: cluster_file, keys }
    }

    /// Starts it as node `id`, with `env` (e.g. a crash point).
    pub fn start(&self, net: &Devnet, env: &[(&str, &str)]) -> Child {
        Command::new(EXE)
            .args(["node", "--id", &self.id.to_string(), "--coordinator", &net.relay(), "--dir"])
            .arg(&self.dir)
            .arg("--cluster")
            .arg(&self.cluster)
            .arg("--genesis")
            .arg(net.genesis_file())
            .arg("--key-file")
            .arg(self.dir.join("kek.key"))
            .envs(env.iter().copied())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }

    /// `shardvault node-replace` for this machine, approved by the devnet's owner.
    pub fn replace(&self, net: &Devnet) -> Result<Value, String> {
        net.cli(&[
            "node-replace",
            "--node",
            &self.id.to_string(),
            "--noise-key",
            &text(&self.keys, "noise_key"),
            "--identity-key",
            &text(&self.keys, "identity_key"),
            "--wait",
        ])
    }
}

/// Waits (up to 30 s) for `child` to exit; its status.
pub fn exited(child: &mut Child) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "process {} did not exit", child.id());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Stops `child` (SIGTERM) and reaps it.
pub fn stop(child: &mut Child) {
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let _ = child.wait();
}

/// Signs the hex `message` at index 0 of `chain` with parties `signers`.
pub fn sign(net: &Devnet, key_id: &str, chain: &str, signers: &str, message: &str) -> Value {
    net.cli(&[
        "sign",
        "--key",
        key_id,
        "--chain",
        chain,
        "--index",
        "0",
        "--message-hex",
        message,
        "--signers",
        signers,
    ])
    .unwrap_or_else(|e| panic!("signing with {signers}: {e}"))
}

/// Checks an Ethereum message signature recovers (libsecp256k1) to `address`.
pub fn check_ethereum(signed: &Value, address: &str) {
    let h = |field: &str| hex::decode(text(signed, field)).unwrap();
    let recovered = tk::recover_ecdsa(&h("digest"), &h("signature"), signed["recovery_id"].as_u64().unwrap() as u8);
    assert_eq!(tk::eip55_address(&recovered.unwrap()).unwrap(), address, "{signed}");
}

/// A 2-of-3 key of `scheme` and its address at index 0 of `chain`.
pub fn create(net: &Devnet, scheme: &str, chain: &str) -> (String, String) {
    let key = net.cli(&["key", "create", "--scheme", scheme, "--threshold", "2", "--parties", "3"]).unwrap();
    let key_id = text(&key, "key_id");
    let address = text(&net.cli(&["address", "--key", &key_id, "--chain", chain, "--index", "0"]).unwrap(), "address");
    (key_id, address)
}
