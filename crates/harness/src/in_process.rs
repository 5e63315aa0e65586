//! A coordinator and its nodes as tasks of one tokio runtime, talking over
//! loopback exactly as processes do (REST API, WebSocket relay, Noise hop).

use std::time::{Duration, Instant};

use serde_json::Value;
use shardvault_node::{service, Node};
use shardvault_wire::NodeId;
use tokio::sync::watch;

use crate::nodes::open_store;
use crate::Nodes;

/// A coordinator served on `127.0.0.1:0` and every node of a [`Nodes`]
/// set connected to its relay, all in this process; stopped when dropped.
/// Drive it over HTTP at [`InProcess::api`].
pub struct InProcess {
    /// The API's base URL, `http://127.0.0.1:PORT`.
    pub api: String,
    /// The nodes' stores, keys and cluster file (the state machines
    /// themselves run inside the node services).
    pub nodes: Nodes,
    runtime: tokio::runtime::Runtime,
    stop: watch::Sender<bool>,
    node_stops: std::collections::BTreeMap<NodeId, watch::Sender<bool>>,
}

impl std::fmt::Debug for InProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InProcess").field("api", &self.api).finish_non_exhaustive()
    }
}

impl InProcess {
    /// `count` nodes and a coordinator (plain HTTP on loopback, 5 s job and
    /// signing timeouts, 1 s pings); returns once every node is connected.
    pub fn start(count: u16) -> InProcess {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("tokio runtime: {e}"));
        let mut nodes = Nodes::with_count(count);
        let (secret, coordinator) = shardvault_wire::generate_keypair().unwrap_or_else(|e| panic!("{e}"));
        nodes.cluster.coordinator = coordinator;
        let config = shardvault_coordinator::Config {
            cluster: nodes.cluster.clone(),
            secret,
            genesis: nodes.organisation.genesis.clone(),
            database: nodes.dir().join("coordinator.db"),
            job_timeout: Duration::from_secs(5),
            sign_timeout: Duration::from_secs(5),
            ping_interval: Duration::from_secs(1),
            silence_timeout: Duration::from_secs(5),
            refresh_check: Duration::from_secs(60),
            tls: None,
            insecure_plaintext: false,
            allowed_hosts: Vec::new(),
        };
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap_or_else(|e| panic!("binding 127.0.0.1:0: {e}"));
        let address = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let (stop, stopped) = watch::channel(false);
        runtime.spawn(shardvault_coordinator::serve(listener, config, stopped));
        let mut node_stops = std::collections::BTreeMap::new();
        for (id, path) in &nodes.paths {
            let genesis = nodes.organisation.genesis.clone();
            let node = Node::new(*id, nodes.secrets[id].clone(), nodes.cluster.clone(), open_store(path, *id), genesis);
            let connection = service::Connection {
                url: format!("ws://{address}/v1/relay"),
                tls: None,
                secret: nodes.secrets[id].clone(),
                coordinator,
                ping_interval: Duration::from_secs(1),
                silence_timeout: Duration::from_secs(5),
            };
            let (node_stop, node_stopped) = watch::channel(false);
            runtime.spawn(service::run(node, connection, node_stopped));
            node_stops.insert(*id, node_stop);
        }
        // The state machines run inside the services; the harness keeps only the stores' paths.
        nodes.nodes.clear();
        let cluster = InProcess { api: format!("http://{address}"), nodes, runtime, stop, node_stops };
        cluster.wait_connected(u64::from(count));
        cluster
    }

    /// Stops node `id`'s service (as a clean shutdown).
    /// A client of the API logged in as the organisation's owner.
    pub fn client(&self) -> shardvault_client::Client {
        shardvault_client::Client::new(&self.api)
            .login(self.nodes.organisation.owner.clone())
            .unwrap_or_else(|e| panic!("logging in: {e}"))
    }

    pub fn stop_node(&mut self, id: u16) {
        if let Some(stop) = self.node_stops.remove(&NodeId(id)) {
            let _ = stop.send(true);
        }
    }

    /// Waits (up to 30 s) until exactly `count` nodes are connected.
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
            assert!(start.elapsed() < Duration::from_secs(30), "nodes did not connect");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The runtime the services run on, for tests that add tasks (a proxy, a raw socket).
    pub fn runtime(&self) -> &tokio::runtime::Runtime {
        &self.runtime
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        for stop in self.node_stops.values() {
            let _ = stop.send(true);
        }
        let _ = self.stop.send(true);
    }
}
