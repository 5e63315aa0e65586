//! The coordinator: REST API for clients, relay for nodes, job bookkeeping.
//!
//! It never holds a share (this crate does not depend on the sealing or node
//! crates) and cannot read what nodes say to each other: nodes reach it over
//! a Noise hop authenticated against the cluster file, and the pairwise
//! frames it relays are end-to-end encrypted between nodes.
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic))]

mod api;
mod db;
mod jobs;
mod openapi;
mod relay;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use shardvault_wire::{Cluster, NoiseSecretKey};
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use api::ApiError;

/// What a coordinator needs.
#[derive(Debug)]
pub struct Config {
    /// The pinned cluster.
    pub cluster: Cluster,
    /// The coordinator's Noise static key (its public half is in the cluster file).
    pub secret: NoiseSecretKey,
    /// SQLite metadata file.
    pub database: PathBuf,
    /// How long a job may take before it is aborted.
    pub job_timeout: Duration,
    /// How long one signing attempt may take before it is aborted (and
    /// retried with other signers): short, so a stuck signer costs little.
    pub sign_timeout: Duration,
    /// How often the relay pings each node over its hop.
    pub ping_interval: Duration,
    /// A node that sent nothing (not even a pong) for this long is
    /// disconnected, its jobs fail, and it is not chosen until it reconnects.
    pub silence_timeout: Duration,
}

/// Serves the API and the relay on `listener` until `shutdown` fires.
pub async fn serve(
    listener: TcpListener,
    config: Config,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), std::io::Error> {
    let db = db::Db::open(&config.database).map_err(std::io::Error::other)?;
    let state = Arc::new(jobs::State::new(config, db, shutdown.clone()));
    let app = api::router(state.clone()).merge(relay::router(state));
    let address: SocketAddr = listener.local_addr()?;
    tracing::info!(%address, "coordinator listening");
    // Protocol rounds are small messages relayed node → coordinator → node:
    // without TCP_NODELAY, Nagle's algorithm and delayed ACKs add ~40 ms each.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::warn!(%error, "cannot set TCP_NODELAY");
        }
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            while !*shutdown.borrow_and_update() {
                if shutdown.changed().await.is_err() {
                    break;
                }
            }
        })
        .await
}
