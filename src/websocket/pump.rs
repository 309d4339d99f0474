//! One relay's loop. Each event (a ping tick, shutdown, a served call's answer, a client
//! frame, a node frame) is one small step on `Relay` that says whether to go on.

use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, SplitSink};
use futures_util::{Sink, SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use super::{closing_time, Handler, Settings, Verdict, CALLS_IN_FLIGHT};

#[derive(PartialEq, Eq)]
enum Step {
    Go,
    Stop,
}

/// The writing halves and the state one relay keeps between events.
struct Relay<C, N, H> {
    client: SplitSink<WebSocketStream<C>, Message>,
    node: SplitSink<WebSocketStream<N>, Message>,
    handler: H,
    last_heard: Instant,
    ping_interval: Duration,
    max_message_bytes: usize,
}

pub(super) async fn run<C, N, H>(
    client: WebSocketStream<C>,
    node: WebSocketStream<N>,
    handler: H,
    settings: &Settings,
    mut closing: watch::Receiver<bool>,
) where
    C: AsyncRead + AsyncWrite + Unpin,
    N: AsyncRead + AsyncWrite + Unpin,
    H: Handler,
{
    let (client_tx, mut client_rx) = client.split();
    let (node_tx, mut node_rx) = node.split();
    let mut relay = Relay {
        client: client_tx,
        node: node_tx,
        handler,
        last_heard: Instant::now(),
        ping_interval: settings.ping_interval,
        max_message_bytes: settings.max_message_bytes,
    };
    // A slow call (a heavy search queued behind its lane) must not hold up the node's
    // events, which the node stops sending to a client that falls behind.
    let mut calls = FuturesUnordered::new();
    // The node pings us and sees our pongs; a client that vanished without a close
    // (a dropped NAT mapping) is only found by pinging it.
    let interval = settings.ping_interval;
    let mut ping = tokio::time::interval_at(Instant::now() + interval, interval);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let step = tokio::select! {
            _ = ping.tick() => relay.on_ping().await,
            _ = closing_time(&mut closing) => relay.on_shutdown().await,
            Some(answer) = calls.next(), if !calls.is_empty() => relay.on_answer(answer).await,
            frame = client_rx.next(), if calls.len() < CALLS_IN_FLIGHT => {
                match relay.on_client(frame).await {
                    Ok(Some(call)) => {
                        calls.push(call);
                        Step::Go
                    }
                    Ok(None) => Step::Go,
                    Err(()) => Step::Stop,
                }
            }
            frame = node_rx.next() => relay.on_node(frame).await,
        };
        if step == Step::Stop {
            break;
        }
    }
}

type Call = futures_util::future::BoxFuture<'static, Option<Bytes>>;

impl<C, N, H> Relay<C, N, H>
where
    C: AsyncRead + AsyncWrite + Unpin,
    N: AsyncRead + AsyncWrite + Unpin,
    H: Handler,
{
    async fn on_ping(&mut self) -> Step {
        if self.last_heard.elapsed() >= self.ping_interval * 2 {
            tracing::debug!("websocket client silent for two ping intervals: closing");
            return self.close_both(CloseCode::Away, "no answer to pings").await;
        }
        self.send_client(Message::Ping(Bytes::new())).await
    }

    async fn on_shutdown(&mut self) -> Step {
        self.close_both(CloseCode::Away, "cometgate is shutting down")
            .await
    }

    async fn on_answer(&mut self, answer: Option<Bytes>) -> Step {
        match answer {
            Some(answer) => self.send_client(text(&answer)).await,
            None => Step::Go,
        }
    }

    /// A client frame; `Ok(Some(call))` is a call to serve beside the relay.
    async fn on_client(
        &mut self,
        frame: Option<Result<Message, WsError>>,
    ) -> Result<Option<Call>, ()> {
        if matches!(frame, Some(Ok(_))) {
            self.last_heard = Instant::now();
        }
        let msg = match frame {
            Some(Ok(Message::Close(frame))) => {
                let _ = self.node.send(Message::Close(frame)).await;
                return Err(());
            }
            Some(Ok(msg @ (Message::Text(_) | Message::Binary(_)))) => msg,
            // Pings are answered by the websocket layer itself.
            Some(Ok(_)) => return Ok(None),
            Some(Err(e)) => {
                self.client_failed(e).await;
                return Err(());
            }
            None => {
                let _ = self.node.send(Message::Close(None)).await;
                return Err(());
            }
        };
        let sent = match self.handler.on_message(msg.clone().into_data()) {
            Verdict::Serve(call) => return Ok(Some(call)),
            Verdict::Ignore => return Ok(None),
            Verdict::Forward | Verdict::Subscription { .. } => self.node.send(msg).await.is_ok(),
            Verdict::Answer(answer) => self.client.send(text(&answer)).await.is_ok(),
        };
        if sent {
            Ok(None)
        } else {
            Err(())
        }
    }

    async fn client_failed(&mut self, e: WsError) {
        tell_why(&mut self.client, &e, self.max_message_bytes).await;
        let _ = self.node.send(Message::Close(None)).await;
    }

    async fn on_node(&mut self, frame: Option<Result<Message, WsError>>) -> Step {
        match frame {
            Some(Ok(Message::Close(frame))) => {
                let _ = self.client.send(Message::Close(frame)).await;
                Step::Stop
            }
            Some(Ok(msg @ (Message::Text(_) | Message::Binary(_)))) => self.send_client(msg).await,
            Some(Ok(_)) => Step::Go,
            // The node went away without a close: 1012 tells the client to connect
            // again, which reaches a node that answers.
            Some(Err(_)) | None => {
                let frame = CloseFrame {
                    code: CloseCode::Restart,
                    reason: "lost the node's websocket; connect again".into(),
                };
                let _ = self.client.send(Message::Close(Some(frame))).await;
                Step::Stop
            }
        }
    }

    /// A write to the client; if it fails, the node side is closed too.
    async fn send_client(&mut self, msg: Message) -> Step {
        if self.client.send(msg).await.is_ok() {
            return Step::Go;
        }
        let _ = self.node.send(Message::Close(None)).await;
        Step::Stop
    }

    async fn close_both(&mut self, code: CloseCode, reason: &'static str) -> Step {
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        let _ = self.client.send(Message::Close(Some(frame))).await;
        let _ = self.node.send(Message::Close(None)).await;
        Step::Stop
    }
}

/// A client whose message was over the cap is told which cap, rather than just hung up on.
pub(super) async fn tell_why<S>(client: &mut S, e: &WsError, max_message_bytes: usize)
where
    S: Sink<Message> + Unpin,
{
    tracing::debug!(error = %e, "client websocket error");
    if matches!(e, WsError::Capacity(_)) {
        let reason =
            format!("message over websocket.max_message_bytes ({max_message_bytes} bytes)");
        let frame = CloseFrame {
            code: CloseCode::Size,
            reason: reason.into(),
        };
        let _ = client.send(Message::Close(Some(frame))).await;
    }
}

fn text(answer: &Bytes) -> Message {
    Message::text(String::from_utf8_lossy(answer).into_owned())
}
