//! `/v1/relay`: nodes connect here (outbound from their side), prove their
//! static key over a Noise hop, then exchange encrypted messages. Garbage is
//! dropped and logged; a hop that fails to authenticate is closed.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State as Extract;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use futures_util::{SinkExt, StreamExt};
use shardvault_wire::{hop, FromNode, MAX_FRAME};
use tokio::sync::mpsc;

use crate::jobs::State;

pub(crate) fn router(state: Arc<State>) -> Router {
    Router::new().route("/v1/relay", get(upgrade)).with_state(state)
}

async fn upgrade(ws: WebSocketUpgrade, Extract(state): Extract<Arc<State>>) -> Response {
    ws.max_message_size(MAX_FRAME).max_frame_size(MAX_FRAME).on_upgrade(move |socket| connection(socket, state))
}

async fn connection(mut socket: WebSocket, state: Arc<State>) {
    let first = match tokio::time::timeout(Duration::from_secs(10), socket.recv()).await {
        Ok(Some(Ok(Message::Binary(bytes)))) => bytes,
        _ => {
            tracing::warn!("relay connection without a handshake closed");
            return;
        }
    };
    let (mut hop, node, reply) = match hop::respond(&state.config.secret, &state.config.cluster, &first) {
        Ok(established) => established,
        Err(error) => {
            tracing::warn!(%error, "relay handshake refused");
            return;
        }
    };
    if socket.send(Message::Binary(reply.into())).await.is_err() {
        return;
    }
    let (sender, mut outbox) = mpsc::unbounded_channel();
    let connection = state.connect(node, sender);
    let (mut sink, mut stream) = socket.split();
    let mut shutdown = state.shutdown.clone();
    loop {
        tokio::select! {
            incoming = stream.next() => match incoming {
                Some(Ok(Message::Binary(bytes))) => match hop.open(&bytes) {
                    Ok(plaintext) => match FromNode::from_bytes(&plaintext) {
                        Ok(message) => state.on_node_message(node, message),
                        Err(error) => tracing::warn!(%node, %error, "undecodable message dropped"),
                    },
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
                let sealed = match hop.seal(&message.to_bytes()) {
                    Ok(sealed) => sealed,
                    Err(error) => {
                        tracing::warn!(%node, %error, "cannot encrypt for node; closing");
                        break;
                    }
                };
                if sink.send(Message::Binary(sealed.into())).await.is_err() {
                    break;
                }
            }
            _ = shutdown.changed() => break,
        }
    }
    let _ = sink.close().await;
    state.disconnect(node, connection);
}
