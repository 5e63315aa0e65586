//! The node process's network shell: an outbound WebSocket to the
//! coordinator, the Noise hop inside it, pings both ways, reconnection with
//! backoff, and the [`Node`] state machine on its own thread (protocol steps
//! are CPU work).
//!
//! Bounds: the worker's inbox holds at most [`INBOX_MESSAGES`] messages and
//! [`INBOX_FRAME_BYTES`] of frames; when it is full the node drops its
//! connection (the coordinator fails its jobs) and reconnects, rather than
//! buffering without limit. The outbox (worker → network) is bounded too; the
//! worker waits for room (back-pressure), the network task always drains it.
//! A worker that panics ends [`run`] with an error, so the process exits
//! non-zero and a supervisor restarts it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use shardvault_wire::{hop, FromNode, NoisePublicKey, NoiseSecretKey, ToNode, MAX_FRAME};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::Node;

/// Messages queued for the worker, at most.
pub const INBOX_MESSAGES: usize = 256;
/// Frame bytes queued for the worker, at most.
pub const INBOX_FRAME_BYTES: usize = 64 << 20;
/// Messages queued from the worker to the network, at most.
pub const OUTBOX_MESSAGES: usize = 256;

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
    /// How often to ping the coordinator over the hop.
    pub ping_interval: Duration,
    /// A coordinator silent (not even a pong) for this long is given up on:
    /// the node reconnects.
    pub silence_timeout: Duration,
}

/// Why the node service stopped other than by shutdown.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// The thread that runs jobs died; the process should exit non-zero.
    #[error("the node's worker thread stopped ({0}); exiting so that the supervisor restarts the node")]
    WorkerStopped(String),
}

enum Ended {
    Shutdown,
    WorkerGone,
    Disconnected(String),
}

/// The worker's inbox, with its frame-byte count.
struct Inbox {
    sender: mpsc::Sender<ToNode>,
    queued: Arc<AtomicUsize>,
}

fn frame_bytes(message: &ToNode) -> usize {
    match message {
        ToNode::Frame(frame) => frame.ciphertext_len(),
        _ => 0,
    }
}

/// Runs `node` until `shutdown` turns true, staying connected to the
/// coordinator. An error means the worker died (a bug): exit non-zero.
pub async fn run(mut node: Node, connection: Connection, shutdown: watch::Receiver<bool>) -> Result<(), ServiceError> {
    serve(move |message| node.handle(message), connection, shutdown).await
}

async fn serve<H>(
    mut handle: H,
    connection: Connection,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), ServiceError>
where
    H: FnMut(ToNode) -> Vec<FromNode> + Send + 'static,
{
    let (sender, mut inbox) = mpsc::channel::<ToNode>(INBOX_MESSAGES);
    let (to_network, mut outbox) = mpsc::channel::<FromNode>(OUTBOX_MESSAGES);
    let queued = Arc::new(AtomicUsize::new(0));
    let to_worker = Inbox { sender, queued: queued.clone() };
    let worker = std::thread::Builder::new()
        .name("node-worker".into())
        .spawn(move || {
            while let Some(message) = inbox.blocking_recv() {
                queued.fetch_sub(frame_bytes(&message), Ordering::Relaxed);
                for reply in handle(message) {
                    if to_network.blocking_send(reply).is_err() {
                        return;
                    }
                }
            }
        })
        .map_err(|error| ServiceError::WorkerStopped(format!("cannot start it: {error}")))?;
    let mut backoff = Duration::from_millis(100);
    let mut worker_gone = false;
    loop {
        if *shutdown.borrow() {
            break;
        }
        match connected(&connection, &to_worker, &mut outbox, &mut shutdown).await {
            Ended::Shutdown => break,
            Ended::WorkerGone => {
                worker_gone = true;
                break;
            }
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
    // Unblocks a worker waiting for room in the outbox.
    drop(outbox);
    let joined = tokio::task::spawn_blocking(move || worker.join()).await;
    match joined {
        Ok(Ok(())) if !worker_gone => Ok(()),
        Ok(Ok(())) => Err(ServiceError::WorkerStopped("it ended".into())),
        Ok(Err(panic)) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".into());
            tracing::error!(panic = %what, "the node's worker thread panicked");
            Err(ServiceError::WorkerStopped(format!("it panicked: {what}")))
        }
        Err(error) => Err(ServiceError::WorkerStopped(error.to_string())),
    }
}

type Socket = WebSocketStream<Box<dyn Stream>>;

/// Seals and sends one message within `limit`.
async fn send(socket: &mut Socket, hop: &mut hop::Hop, message: &FromNode, limit: Duration) -> Result<(), String> {
    let sealed = message.to_bytes().and_then(|bytes| hop.seal(&bytes)).map_err(|e| e.to_string())?;
    match tokio::time::timeout(limit, socket.send(Message::Binary(sealed.into()))).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err("the coordinator does not take messages".into()),
    }
}

async fn handshake(connection: &Connection) -> Result<(Socket, hop::Hop), String> {
    // TCP_NODELAY: protocol rounds are small messages; Nagle would delay each one.
    let mut socket = match tokio::time::timeout(Duration::from_secs(10), open(connection)).await {
        Ok(socket) => socket?,
        Err(_) => return Err("connecting timed out".into()),
    };
    let (initiator, hello) = hop::initiate(&connection.secret, &connection.coordinator).map_err(|e| e.to_string())?;
    socket.send(Message::Binary(hello.into())).await.map_err(|e| e.to_string())?;
    let reply = match tokio::time::timeout(Duration::from_secs(10), socket.next()).await {
        Ok(Some(Ok(Message::Binary(reply)))) => reply,
        _ => return Err("no handshake reply".into()),
    };
    let (hop, proof) = initiator.finish(&reply).map_err(|e| e.to_string())?;
    // The first transport message proves to the coordinator that this hop is live.
    socket.send(Message::Binary(proof.into())).await.map_err(|e| e.to_string())?;
    Ok((socket, hop))
}

async fn connected(
    connection: &Connection,
    to_worker: &Inbox,
    outbox: &mut mpsc::Receiver<FromNode>,
    shutdown: &mut watch::Receiver<bool>,
) -> Ended {
    if to_worker.sender.is_closed() {
        return Ended::WorkerGone;
    }
    let (mut socket, mut hop) = match handshake(connection).await {
        Ok(established) => established,
        Err(why) => return Ended::Disconnected(why),
    };
    tracing::info!(url = %connection.url, "connected to the coordinator");
    let silence = connection.silence_timeout;
    let mut ping = tokio::time::interval(connection.ping_interval.max(Duration::from_millis(1)));
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_heard = Instant::now();
    let mut pings = 0u64;
    loop {
        tokio::select! {
            incoming = socket.next() => match incoming {
                Some(Ok(Message::Binary(bytes))) => {
                    let message = match hop.open(&bytes).and_then(|plain| ToNode::from_bytes(&plain)) {
                        Ok(message) => message,
                        Err(error) => return Ended::Disconnected(format!("bad message from the coordinator: {error}")),
                    };
                    last_heard = Instant::now();
                    match message {
                        ToNode::Ping(n) => {
                            if let Err(why) = send(&mut socket, &mut hop, &FromNode::Pong(n), silence).await {
                                return Ended::Disconnected(why);
                            }
                        }
                        ToNode::Pong(_) => {}
                        message => {
                            let bytes = frame_bytes(&message);
                            if to_worker.queued.load(Ordering::Relaxed).saturating_add(bytes) > INBOX_FRAME_BYTES {
                                return Ended::Disconnected("the worker's queue holds too many frame bytes".into());
                            }
                            to_worker.queued.fetch_add(bytes, Ordering::Relaxed);
                            match to_worker.sender.try_send(message) {
                                Ok(()) => {}
                                Err(mpsc::error::TrySendError::Full(_)) => {
                                    to_worker.queued.fetch_sub(bytes, Ordering::Relaxed);
                                    return Ended::Disconnected("the worker's queue is full".into());
                                }
                                Err(mpsc::error::TrySendError::Closed(_)) => return Ended::WorkerGone,
                            }
                        }
                    }
                }
                Some(Ok(Message::Close(_))) | None => return Ended::Disconnected("closed".into()),
                Some(Err(error)) => return Ended::Disconnected(error.to_string()),
                Some(Ok(_)) => {}
            },
            outgoing = outbox.recv() => {
                let Some(message) = outgoing else { return Ended::WorkerGone };
                if let Err(why) = send(&mut socket, &mut hop, &message, silence).await {
                    return Ended::Disconnected(why);
                }
            }
            _ = ping.tick() => {
                if last_heard.elapsed() > silence {
                    return Ended::Disconnected(format!("the coordinator was silent for {:?}", last_heard.elapsed()));
                }
                pings += 1;
                if let Err(why) = send(&mut socket, &mut hop, &FromNode::Ping(pings), silence).await {
                    return Ended::Disconnected(why);
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
    let (socket, _) = tokio_tungstenite::client_async_with_config(request, stream, Some(websocket_limits()))
        .await
        .map_err(|e| e.to_string())?;
    Ok(socket)
}

/// The coordinator's messages are bounded as the relay bounds the nodes':
/// none larger than a hop message may be ([`MAX_FRAME`]), so the WebSocket
/// reader never buffers more (its default would be 64 MiB).
fn websocket_limits() -> WebSocketConfig {
    WebSocketConfig::default().max_message_size(Some(MAX_FRAME)).max_frame_size(Some(MAX_FRAME))
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use shardvault_mpc::SessionId;
    use shardvault_wire::{generate_keypair, Cluster, NodeId};

    use super::*;

    /// A coordinator that completes the hop, sends one `Abort`, and stays connected.
    async fn coordinator(cluster: Cluster, secret: NoiseSecretKey) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}/v1/relay", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
            let Some(Ok(Message::Binary(first))) = ws.next().await else { panic!("no handshake") };
            let response = hop::respond(&secret, &cluster, &first).unwrap();
            ws.send(Message::Binary(response.reply.into())).await.unwrap();
            let Some(Ok(Message::Binary(proof))) = ws.next().await else { panic!("no proof") };
            let mut hop = response.responder.unwrap().confirm(&proof).unwrap();
            let abort = hop.seal(&ToNode::Abort(SessionId::random()).to_bytes().unwrap()).unwrap();
            ws.send(Message::Binary(abort.into())).await.unwrap();
            while let Some(Ok(_)) = ws.next().await {}
        });
        url
    }

    #[tokio::test]
    async fn the_socket_refuses_a_message_larger_than_a_hop_message() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}/v1/relay", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
            ws.send(Message::Binary(vec![0u8; MAX_FRAME + 1].into())).await.unwrap();
            ws.send(Message::Binary(vec![0u8; MAX_FRAME].into())).await.unwrap();
            while let Some(Ok(_)) = ws.next().await {}
        });
        let (secret, coordinator) = generate_keypair().unwrap();
        let connection = Connection {
            url,
            tls: None,
            secret,
            coordinator,
            ping_interval: Duration::from_secs(1),
            silence_timeout: Duration::from_secs(30),
        };
        let mut socket = open(&connection).await.unwrap();
        let first = socket.next().await.unwrap();
        assert!(
            matches!(
                first,
                Err(tokio_tungstenite::tungstenite::Error::Capacity(
                    tokio_tungstenite::tungstenite::error::CapacityError::MessageTooLong { .. }
                ))
            ),
            "{first:?}"
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_panic_in_the_worker_ends_the_service_with_an_error() {
        let (coordinator_secret, coordinator_key) = generate_keypair().unwrap();
        let (secret, public) = generate_keypair().unwrap();
        let cluster = Cluster {
            coordinator: coordinator_key,
            nodes: BTreeMap::from([(NodeId(1), public)]),
            identities: BTreeMap::new(),
        };
        let url = coordinator(cluster, coordinator_secret).await;
        let connection = Connection {
            tls: None,
            url,
            secret,
            coordinator: coordinator_key,
            ping_interval: Duration::from_secs(1),
            silence_timeout: Duration::from_secs(30),
        };
        let (_stop, shutdown) = watch::channel(false);
        // Stands in for a bug in a protocol step (no remote input can trigger a panic in `Node`).
        let handle = |message: ToNode| -> Vec<FromNode> {
            if matches!(message, ToNode::Abort(_)) {
                panic!("a bug in a protocol step");
            }
            Vec::new()
        };
        let result = serve(handle, connection, shutdown).await;
        assert!(
            matches!(&result, Err(ServiceError::WorkerStopped(why)) if why.contains("a bug in a protocol step")),
            "{result:?}"
        );
    }
}
