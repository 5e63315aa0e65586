//! `/v1/relay`: nodes connect here (outbound from their side), prove their
//! static key over a Noise hop, then exchange encrypted messages. Garbage is
//! dropped and logged; a hop that fails to authenticate is closed. A hop is
//! registered only once the node proved it is fresh (the handshake reply's
//! challenge, echoed), and each side pings the other: a node silent for
//! `silence_timeout` is disconnected.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State as Extract;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use futures_util::{SinkExt, StreamExt};
use shardvault_wire::{hop, FromNode, NodeId, ToNode, MAX_FRAME};

use crate::jobs::{Outbox, State};

pub(crate) fn router(state: Arc<State>) -> Router {
    Router::new().route("/v1/relay", get(upgrade)).with_state(state)
}

async fn upgrade(ws: WebSocketUpgrade, Extract(state): Extract<Arc<State>>) -> Response {
    ws.max_message_size(MAX_FRAME).max_frame_size(MAX_FRAME).on_upgrade(move |socket| connection(socket, state))
}

/// How long a connection has to show its handshake, and then to prove the
/// handshake is fresh.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

async fn binary(socket: &mut WebSocket) -> Option<axum::body::Bytes> {
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, socket.recv()).await {
        Ok(Some(Ok(Message::Binary(bytes)))) => Some(bytes),
        _ => None,
    }
}

async fn connection(mut socket: WebSocket, state: Arc<State>) {
    let Some(first) = binary(&mut socket).await else {
        tracing::warn!("relay connection without a handshake closed");
        return;
    };
    let cluster = match state.cluster() {
        Ok(cluster) => cluster,
        Err(error) => {
            tracing::error!(%error, "the replaced nodes' keys do not read; relay connection closed");
            return;
        }
    };
    let response = match hop::respond(&state.config.secret, &cluster, &first) {
        Ok(response) => response,
        Err(error) => {
            tracing::warn!(%error, "relay handshake refused");
            return;
        }
    };
    let node = response.node;
    // Sent also to a node that is refused: it names our version, so the node can say what is wrong.
    if socket.send(Message::Binary(response.reply.into())).await.is_err() {
        return;
    }
    let responder = match response.responder {
        Ok(responder) => responder,
        Err(error) => {
            // Not yet proven live: a recorded first message replays as well.
            tracing::warn!(%node, %error, "node refused (or a replay of its handshake)");
            let _ = tokio::time::timeout(Duration::from_secs(1), socket.close()).await;
            return;
        }
    };
    // The IK first message may be a replay: only a node that proves it holds
    // the handshake's keys is registered, so a live connection is never
    // replaced by a recorded one.
    let hop = match binary(&mut socket).await.map(|proof| responder.confirm(&proof)) {
        Some(Ok(hop)) => hop,
        Some(Err(error)) => {
            tracing::warn!(%node, %error, "hop not confirmed (a replayed handshake?); closing");
            return;
        }
        None => {
            tracing::warn!(%node, "hop not confirmed in time (a replayed handshake?); closing");
            return;
        }
    };
    let (connection, outbox) = state.connect(node);
    serve(socket, hop, node, outbox, &state).await;
    state.disconnect(node, connection);
}

/// Seals and sends one message; false if the connection is gone or stuck.
async fn send(
    sink: &mut futures_util::stream::SplitSink<WebSocket, Message>,
    hop: &mut hop::Hop,
    message: &ToNode,
    limit: Duration,
) -> bool {
    let sealed = match message.to_bytes().and_then(|bytes| hop.seal(&bytes)) {
        Ok(sealed) => sealed,
        Err(error) => {
            tracing::warn!(%error, "cannot encrypt for node; closing");
            return false;
        }
    };
    matches!(tokio::time::timeout(limit, sink.send(Message::Binary(sealed.into()))).await, Ok(Ok(())))
}

/// Relays for one confirmed node until it goes away, falls silent, or shutdown.
async fn serve(socket: WebSocket, mut hop: hop::Hop, node: NodeId, mut outbox: Outbox, state: &State) {
    let silence = state.config.silence_timeout;
    let (mut sink, mut stream) = socket.split();
    let mut shutdown = state.shutdown.clone();
    let mut ping = tokio::time::interval(state.config.ping_interval.max(Duration::from_millis(1)));
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_heard = Instant::now();
    let mut pings = 0u64;
    loop {
        tokio::select! {
            incoming = stream.next() => match incoming {
                Some(Ok(Message::Binary(bytes))) => match hop.open(&bytes) {
                    Ok(plaintext) => {
                        last_heard = Instant::now();
                        match FromNode::from_bytes(&plaintext) {
                            Ok(FromNode::Ping(n)) => {
                                if !send(&mut sink, &mut hop, &ToNode::Pong(n), silence).await {
                                    break;
                                }
                            }
                            Ok(message) => state.on_node_message(node, message),
                            Err(error) => tracing::warn!(%node, %error, "undecodable message dropped"),
                        }
                    }
                    Err(error) => {
                        tracing::warn!(%node, %error, "hop message does not authenticate; closing");
                        break;
                    }
                },
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => tracing::warn!(%node, "non-binary message dropped"),
            },
            outgoing = outbox.recv() => {
                let Some(message) = outgoing else { break };
                if !send(&mut sink, &mut hop, &message, silence).await {
                    break;
                }
            }
            _ = ping.tick() => {
                if last_heard.elapsed() > silence {
                    tracing::warn!(%node, silent_for = ?last_heard.elapsed(), "node stopped answering pings; disconnecting it");
                    break;
                }
                pings += 1;
                if !send(&mut sink, &mut hop, &ToNode::Ping(pings), silence).await {
                    break;
                }
            }
            _ = shutdown.changed() => break,
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), sink.close()).await;
}
