//! The node process's network shell: an outbound WebSocket to the
//! coordinator, the Noise hop inside it, reconnection with backoff, and the
//! [`Node`] state machine on its own thread (protocol steps are CPU work).

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use shardvault_wire::{hop, FromNode, NoisePublicKey, NoiseSecretKey, ToNode};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::Node;

/// Where and how to reach the coordinator.
#[derive(Debug, Clone)]
pub struct Connection {
    /// `wss://host:port/v1/relay` (or `ws://` on loopback).
    pub url: String,
    /// For `wss://`: the TLS client configuration, trusting only the pinned
    /// CA the coordinator's certificate must chain to.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// This node's Noise static key.
    pub secret: NoiseSecretKey,
    /// The coordinator's pinned static key.
    pub coordinator: NoisePublicKey,
}

enum Ended {
    Shutdown,
    Disconnected(String),
}

/// Runs `node` until `shutdown` turns true, staying connected to the coordinator.
pub async fn run(mut node: Node, connection: Connection, mut shutdown: watch::Receiver<bool>) {
    let (to_worker, inbox) = std::sync::mpsc::channel::<ToNode>();
    let (to_network, mut outbox) = mpsc::unbounded_channel::<FromNode>();
    let worker = std::thread::spawn(move || {
        while let Ok(message) = inbox.recv() {
            for reply in node.handle(message) {
                if to_network.send(reply).is_err() {
                    return;
                }
            }
        }
    });
    let mut backoff = Duration::from_millis(100);
    loop {
        if *shutdown.borrow() {
            break;
        }
        match connected(&connection, &to_worker, &mut outbox, &mut shutdown).await {
            Ended::Shutdown => break,
            Ended::Disconnected(why) => {
                tracing::warn!(url = %connection.url, %why, retry_in = ?backoff, "not connected to the coordinator");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.changed() => break,
                }
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
    drop(to_worker);
    let _ = worker.join();
}

async fn connected(
    connection: &Connection,
    to_worker: &std::sync::mpsc::Sender<ToNode>,
    outbox: &mut mpsc::UnboundedReceiver<FromNode>,
    shutdown: &mut watch::Receiver<bool>,
) -> Ended {
    let mut socket = match tokio::time::timeout(Duration::from_secs(10), open(connection)).await {
        Ok(Ok(socket)) => socket,
        Ok(Err(why)) => return Ended::Disconnected(why),
        Err(_) => return Ended::Disconnected("connecting timed out".into()),
    };
    let (initiator, hello) = match hop::initiate(&connection.secret, &connection.coordinator) {
        Ok(started) => started,
        Err(error) => return Ended::Disconnected(error.to_string()),
    };
    if let Err(error) = socket.send(Message::Binary(hello.into())).await {
        return Ended::Disconnected(error.to_string());
    }
    let reply = match tokio::time::timeout(Duration::from_secs(10), socket.next()).await {
        Ok(Some(Ok(Message::Binary(reply)))) => reply,
        _ => return Ended::Disconnected("no handshake reply".into()),
    };
    let mut hop = match initiator.finish(&reply) {
        Ok(hop) => hop,
        Err(error) => return Ended::Disconnected(error.to_string()),
    };
    tracing::info!(url = %connection.url, "connected to the coordinator");
    loop {
        tokio::select! {
            incoming = socket.next() => match incoming {
                Some(Ok(Message::Binary(bytes))) => {
                    let message = hop.open(&bytes).and_then(|plain| ToNode::from_bytes(&plain));
                    match message {
                        Ok(message) => {
                            if to_worker.send(message).is_err() {
                                return Ended::Shutdown;
                            }
                        }
                        Err(error) => return Ended::Disconnected(format!("bad message from the coordinator: {error}")),
                    }
                }
                Some(Ok(Message::Close(_))) | None => return Ended::Disconnected("closed".into()),
                Some(Err(error)) => return Ended::Disconnected(error.to_string()),
                Some(Ok(_)) => {}
            },
            outgoing = outbox.recv() => {
                let Some(message) = outgoing else { return Ended::Shutdown };
                let sealed = match hop.seal(&message.to_bytes()) {
                    Ok(sealed) => sealed,
                    Err(error) => return Ended::Disconnected(error.to_string()),
                };
                if let Err(error) = socket.send(Message::Binary(sealed.into())).await {
                    return Ended::Disconnected(error.to_string());
                }
            }
            _ = shutdown.changed() => {
                let _ = socket.close(None).await;
                return Ended::Shutdown;
            }
        }
    }
}

/// The byte stream under the WebSocket: TCP, or TLS over TCP.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// Opens the WebSocket to the relay: `wss://` with the server certificate
/// verified against the pinned CA (never a system store), or `ws://`.
async fn open(connection: &Connection) -> Result<WebSocketStream<Box<dyn Stream>>, String> {
    let request = connection.url.as_str().into_client_request().map_err(|e| e.to_string())?;
    let tls = match (request.uri().scheme_str(), &connection.tls) {
        (Some("wss"), Some(tls)) => Some(tls.clone()),
        (Some("wss"), None) => return Err("a wss:// coordinator needs a pinned CA certificate".into()),
        (Some("ws"), None) => None,
        (Some("ws"), Some(_)) => return Err("a CA certificate is pinned but the coordinator URL is ws://".into()),
        _ => return Err("the coordinator URL must start with wss:// or ws://".into()),
    };
    let host = request.uri().host().ok_or("the coordinator URL has no host")?;
    let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
    let port = request.uri().port_u16().unwrap_or(if tls.is_some() { 443 } else { 80 });
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await.map_err(|e| e.to_string())?;
    // TCP_NODELAY: protocol rounds are small messages; Nagle would delay each one.
    tcp.set_nodelay(true).map_err(|e| e.to_string())?;
    let stream: Box<dyn Stream> = match tls {
        Some(tls) => {
            let name = rustls::pki_types::ServerName::try_from(host).map_err(|e| e.to_string())?;
            let tls = tokio_rustls::TlsConnector::from(tls).connect(name, tcp).await;
            Box::new(tls.map_err(|e| format!("TLS: {e}"))?)
        }
        None => Box::new(tcp),
    };
    let (socket, _) =
        tokio_tungstenite::client_async_with_config(request, stream, None).await.map_err(|e| e.to_string())?;
    Ok(socket)
}

/// A TLS client configuration that trusts only the CA certificates in
/// `ca_pem` (the coordinator's own CA, or the public CA that signed it).
pub fn tls_client_config(ca_pem: &[u8]) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(ca_pem) {
        let cert: rustls::pki_types::CertificateDer<'static> = cert.map_err(|e| format!("CA file: {e}"))?;
        roots.add(cert).map_err(|e| format!("CA file: {e}"))?;
    }
    if roots.is_empty() {
        return Err("the CA file holds no PEM certificate".into());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}
