//! The node process's network shell: an outbound WebSocket to the
//! coordinator, the Noise hop inside it, reconnection with backoff, and the
//! [`Node`] state machine on its own thread (protocol steps are CPU work).

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use shardvault_wire::{hop, FromNode, NoisePublicKey, NoiseSecretKey, ToNode};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message;

use crate::Node;

/// Where and how to reach the coordinator.
#[derive(Debug, Clone)]
pub struct Connection {
    /// `ws://host:port/v1/relay`.
    pub url: String,
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
    // TCP_NODELAY: protocol rounds are small messages; Nagle would delay each one.
    let (mut socket, _) = match tokio_tungstenite::connect_async_with_config(connection.url.as_str(), None, true).await
    {
        Ok(connected) => connected,
        Err(error) => return Ended::Disconnected(error.to_string()),
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
