//! The coordinator: REST API for clients, relay for nodes, job bookkeeping.
//!
//! It never holds a share (this crate does not depend on the sealing or node
//! crates) and cannot read what nodes say to each other: nodes reach it over
//! a Noise hop authenticated against the cluster file, and the pairwise
//! frames it relays are end-to-end encrypted between nodes.
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic))]

mod api;
mod auth;
mod db;
mod governance;
mod guard;
mod jobs;
mod relay;
mod schedule;
pub mod tls;

#[cfg(test)]
mod testing;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use shardvault_wire::{Cluster, NoiseSecretKey};
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use api::{document as openapi_document, ApiError};

/// What a coordinator needs.
#[derive(Debug)]
pub struct Config {
    /// The pinned cluster.
    pub cluster: Cluster,
    /// The coordinator's Noise static key (its public half is in the cluster file).
    pub secret: NoiseSecretKey,
    /// SQLite metadata file.
    pub database: PathBuf,
    /// The organisation's genesis (the same file every node pins).
    pub genesis: shardvault_governance::Genesis,
    /// How long a job may take before it is aborted.
    pub job_timeout: Duration,
    /// TLS for the API and the relay (`https://`, `wss://`). Without it the
    /// coordinator serves plain HTTP, on a loopback address only unless
    /// `insecure_plaintext` is set.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Serve plain HTTP on a non-loopback address (say, behind a TLS proxy on
    /// a private network). Everything on the API path is then readable and
    /// forgeable by the network.
    pub insecure_plaintext: bool,
    /// Host names clients may use (`Host` header) besides the bind address,
    /// `localhost` and the loopback addresses; any other is refused, which
    /// stops DNS rebinding.
    pub allowed_hosts: Vec<String>,
    /// How long one signing attempt may take before it is aborted (and
    /// retried with other signers): short, so a stuck signer costs little.
    pub sign_timeout: Duration,
    /// How often the relay pings each node over its hop.
    pub ping_interval: Duration,
    /// A node that sent nothing (not even a pong) for this long is
    /// disconnected, its jobs fail, and it is not chosen until it reconnects.
    pub silence_timeout: Duration,
    /// How often keys are checked for a refresh the policy schedules
    /// (docs/POLICY.md "Scheduled refresh").
    pub refresh_check: Duration,
}

/// Serves the API and the relay on `listener` until `shutdown` fires: over
/// TLS when `config.tls` is set, else plain HTTP, which is refused on a
/// non-loopback address unless `config.insecure_plaintext` says otherwise.
pub async fn serve(
    listener: TcpListener,
    config: Config,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), std::io::Error> {
    let address: SocketAddr = listener.local_addr()?;
    if config.tls.is_none() && !address.ip().is_loopback() {
        if !config.insecure_plaintext {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "refusing to serve plain HTTP on {address}, which is not a loopback address: give a TLS \
                     certificate and key, or bind 127.0.0.1 behind a TLS proxy"
                ),
            ));
        }
        tracing::warn!(
            %address,
            "SERVING PLAIN HTTP ON A NON-LOOPBACK ADDRESS: anyone on the network can read and change API \
             answers (addresses, signatures) and drive the API; use TLS"
        );
    }
    let hosts = guard::Hosts::new(address.ip(), &config.allowed_hosts);
    let tls = config.tls.clone();
    let db = db::Db::open(&config.database).map_err(std::io::Error::other)?;
    let refresh_check = config.refresh_check;
    let state = Arc::new(jobs::State::new(config, db, shutdown.clone()).map_err(std::io::Error::other)?);
    tokio::spawn(schedule::run(state.clone(), refresh_check, shutdown.clone()));
    let app = guard::layer(api::router(state.clone()).merge(relay::router(state)), hosts);
    let stopped = async move {
        while !*shutdown.borrow_and_update() {
            if shutdown.changed().await.is_err() {
                break;
            }
        }
    };
    match tls {
        Some(tls) => {
            tracing::info!(%address, "coordinator listening (TLS)");
            let listener = tls::TlsListener::new(listener, tls)?;
            axum::serve(listener, app).with_graceful_shutdown(stopped).await
        }
        None => {
            tracing::info!(%address, "coordinator listening (plain HTTP)");
            // Protocol rounds are small messages relayed node → coordinator → node:
            // without TCP_NODELAY, Nagle's algorithm and delayed ACKs add ~40 ms each.
            let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
                if let Err(error) = tcp.set_nodelay(true) {
                    tracing::warn!(%error, "cannot set TCP_NODELAY");
                }
            });
            axum::serve(listener, app).with_graceful_shutdown(stopped).await
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::testing::{certificates, exchange, start};

    fn client(ca_pem: &str) -> tokio_rustls::TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(ca_pem.as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        tokio_rustls::TlsConnector::from(Arc::new(config))
    }

    #[tokio::test]
    async fn the_api_is_served_over_tls_only() {
        let (ca, cert, key) = certificates();
        let c = start(Some(crate::tls::server_config(cert.as_bytes(), key.as_bytes()).unwrap())).await;
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let tcp = tokio::net::TcpStream::connect(c.address).await.unwrap();
        let tls = client(&ca).connect(name.clone(), tcp).await.unwrap();
        let (status, _, body) = exchange(tls, "GET", "/v1/health", &[("Host", "localhost")], "").await;
        assert_eq!(status, 200, "{body}");
        // A client that pins another CA refuses the certificate.
        let (other_ca, _, _) = certificates();
        let tcp = tokio::net::TcpStream::connect(c.address).await.unwrap();
        assert!(client(&other_ca).connect(name, tcp).await.is_err());
        // Plain HTTP to the TLS port gets no answer.
        let tcp = tokio::net::TcpStream::connect(c.address).await.unwrap();
        let (status, _, _) = exchange(tcp, "GET", "/v1/health", &[("Host", "localhost")], "").await;
        assert_eq!(status, 0);
    }

    #[tokio::test]
    async fn plain_http_is_refused_off_loopback() {
        let (secret, coordinator) = shardvault_wire::generate_keypair().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let config = crate::Config {
            genesis: crate::testing::genesis(),
            cluster: shardvault_wire::Cluster {
                coordinator,
                nodes: Default::default(),
                identities: Default::default(),
            },
            secret,
            database: dir.path().join("coordinator.db"),
            job_timeout: std::time::Duration::from_secs(5),
            sign_timeout: std::time::Duration::from_secs(5),
            ping_interval: std::time::Duration::from_secs(1),
            silence_timeout: std::time::Duration::from_secs(5),
            refresh_check: std::time::Duration::from_secs(60),
            tls: None,
            insecure_plaintext: false,
            allowed_hosts: Vec::new(),
        };
        let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
        let (_stop, stopped) = tokio::sync::watch::channel(false);
        let error = crate::serve(listener, config, stopped).await.unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput, "{error}");
        assert!(!dir.path().join("coordinator.db").exists(), "it opened its database before refusing");
    }

    #[test]
    fn a_key_that_is_not_the_certificates_is_refused() {
        let (_, cert, _) = certificates();
        let (_, _, other_key) = certificates();
        assert!(crate::tls::server_config(cert.as_bytes(), other_key.as_bytes()).is_err());
        assert!(crate::tls::server_config(b"", other_key.as_bytes()).is_err());
    }
}
