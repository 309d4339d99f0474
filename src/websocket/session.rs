//! One fan-out client's loop. The client's calls are decided by the `Handler` as in a
//! relay; its subscriptions are held here and served by the hub, whose events and
//! answers arrive through the client's outbox. Frames of our own (answers, events) are
//! written straight to the socket; the websocket library reads, and writes only the
//! control frames (pings, pongs, close).

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::stream::FuturesUnordered;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use super::hub::{self, Hub, Subscriber};
use super::outbox::{Outbox, Outgoing};
use super::query::Query;
use super::{frame, Handler, Settings, SubscriptionCall, Verdict, CALLS_IN_FLIGHT};

type Call = futures_util::future::BoxFuture<'static, Option<Bytes>>;

/// The client's subscriptions, by the query as the hub keys it. Dropping it leaves them
/// all, so a connection that ends any way at all frees its place in every topic.
struct Subscriptions {
    hub: Arc<Hub>,
    outbox: Arc<Outbox>,
    held: HashMap<Arc<str>, Arc<Subscriber>>,
    max: usize,
    max_query_bytes: usize,
}

impl Drop for Subscriptions {
    fn drop(&mut self) {
        self.outbox.close();
        for sub in self.held.values() {
            self.hub.leave(sub);
        }
    }
}

impl Subscriptions {
    /// The answer to send now, if any: a subscription the hub takes is answered
    /// through the outbox, before its first event.
    fn call(&mut self, id: &[u8], call: SubscriptionCall) -> Option<Bytes> {
        match call {
            SubscriptionCall::Subscribe(query) => self.subscribe(id, &query).err(),
            SubscriptionCall::Unsubscribe(query) => Some(self.unsubscribe(id, &query)),
            SubscriptionCall::UnsubscribeAll => Some(self.unsubscribe_all(id)),
        }
    }

    /// The node's checks, in the node's order and words; only the cap is the
    /// gateway's own, named as every cap of the gateway is.
    fn subscribe(&mut self, id: &[u8], query: &str) -> Result<(), Bytes> {
        let refuse = |why: String| hub::refused(id, &why);
        if self.held.len() >= self.max {
            let why = format!(
                "this connection already holds {} subscriptions, this gateway's cap \
                 (websocket.max_subscriptions_per_connection); unsubscribe first",
                self.max
            );
            return Err(hub::error(id, -32602, "Invalid params", &why));
        }
        if query.len() > self.max_query_bytes {
            return Err(refuse("maximum query length exceeded".into()));
        }
        let parsed =
            Query::parse(query).map_err(|e| refuse(format!("failed to parse query: {e}")))?;
        let key: Arc<str> = parsed.canonical().into();
        if self.held.contains_key(&key) {
            return Err(refuse("already subscribed".into()));
        }
        let req = hub::Request {
            key: key.clone(),
            new_block: parsed.is_new_block(),
            client_id: id,
            query,
            outbox: &self.outbox,
        };
        let sub = self.hub.subscribe(req).map_err(refuse)?;
        self.held.insert(key, sub);
        Ok(())
    }

    fn unsubscribe(&mut self, id: &[u8], query: &str) -> Bytes {
        let parsed = match Query::parse(query) {
            Ok(parsed) => parsed,
            Err(e) => return hub::refused(id, &format!("failed to parse query: {e}")),
        };
        match self.held.remove(parsed.canonical()) {
            Some(sub) => {
                self.hub.leave(&sub);
                hub::answer(id, "{}")
            }
            None => hub::refused(id, "subscription not found"),
        }
    }

    fn unsubscribe_all(&mut self, id: &[u8]) -> Bytes {
        if self.held.is_empty() {
            return hub::refused(id, "subscription not found");
        }
        for (_, sub) in self.held.drain() {
            self.hub.leave(&sub);
        }
        hub::answer(id, "{}")
    }

    /// The hub ended `sub` on its own; the client may since hold a newer one.
    fn ended(&mut self, key: &str, sub: u64) {
        if self.held.get(key).is_some_and(|s| s.id == sub) {
            self.held.remove(key);
        }
    }
}

#[derive(PartialEq, Eq)]
enum Step {
    Go,
    Stop,
}

struct Session<C, H> {
    ws: WebSocketStream<C>,
    handler: H,
    subs: Subscriptions,
    last_heard: Instant,
    settings: Settings,
}

pub(super) async fn run<C, H>(
    ws: WebSocketStream<C>,
    hub: Arc<Hub>,
    handler: H,
    settings: Settings,
    mut closing: watch::Receiver<bool>,
) where
    C: AsyncRead + AsyncWrite + Unpin,
    H: Handler,
{
    let outbox = Outbox::new(
        settings.client_buffer_messages,
        settings.client_buffer_bytes,
    );
    let metrics = hub.metrics().clone();
    metrics.clients.inc();
    let mut s = Session {
        ws,
        handler,
        subs: Subscriptions {
            hub,
            outbox: outbox.clone(),
            held: HashMap::new(),
            max: settings.max_subscriptions,
            max_query_bytes: settings.max_query_bytes,
        },
        last_heard: Instant::now(),
        settings,
    };
    let mut calls = FuturesUnordered::<Call>::new();
    let interval = s.settings.ping_interval;
    let mut ping = tokio::time::interval_at(Instant::now() + interval, interval);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut batch = Vec::new();
    loop {
        // A busy session (a client that keeps sending, a query with many events) may
        // never reach the shutdown branch below; this read takes no waiter.
        if *closing.borrow() {
            s.close(CloseCode::Away, "cometgate is shutting down").await;
            break;
        }
        // In this order, and no further once one is ready: at each block ten thousand
        // sessions wake for their outbox, and each branch polled on the way (a read
        // attempt on the socket, a waiter on the shutdown signal shared by all of them)
        // costs every one of them. A client that is heard needs no ping.
        let step = tokio::select! {
            biased;
            _ = outbox.ready() => {
                outbox.take(&mut batch);
                s.write_out(&mut batch, &metrics).await
            }
            Some(answer) = calls.next(), if !calls.is_empty() => match answer {
                Some(answer) => s.write([&answer[..]]).await,
                None => Step::Go,
            },
            frame = s.ws.next(), if calls.len() < CALLS_IN_FLIGHT => {
                match s.on_client(frame).await {
                    Ok(Some(call)) => {
                        calls.push(call);
                        Step::Go
                    }
                    Ok(None) => Step::Go,
                    Err(()) => Step::Stop,
                }
            }
            _ = ping.tick() => s.on_ping().await,
            _ = super::closing_time(&mut closing) => {
                s.close(CloseCode::Away, "cometgate is shutting down").await
            }
        };
        if step == Step::Stop {
            break;
        }
    }
    metrics.clients.dec();
}

impl<C, H> Session<C, H>
where
    C: AsyncRead + AsyncWrite + Unpin,
    H: Handler,
{
    /// Our own frame, after whatever the library has buffered (a pong) is out.
    async fn write<'p>(&mut self, parts: impl IntoIterator<Item = &'p [u8]>) -> Step {
        if self.ws.flush().await.is_err() {
            return Step::Stop;
        }
        match frame::write_text(self.ws.get_mut(), parts).await {
            Ok(()) => Step::Go,
            Err(_) => Step::Stop,
        }
    }

    async fn write_out(&mut self, batch: &mut Vec<Outgoing>, metrics: &super::WsMetrics) -> Step {
        let mut items = std::mem::take(batch);
        for item in items.drain(..) {
            let step = match item {
                Outgoing::Frame(frame) => self.write([&frame[..]]).await,
                Outgoing::Ended { key, sub, frame } => {
                    self.subs.ended(&key, sub);
                    self.write([&frame[..]]).await
                }
                Outgoing::Event {
                    own,
                    pieces,
                    read_at,
                } => {
                    let step = self.write(own.slices(&pieces)).await;
                    metrics.delivered_in(read_at.elapsed());
                    step
                }
            };
            if step == Step::Stop {
                return Step::Stop;
            }
        }
        // The emptied vector goes back, so the next batch reuses its room.
        *batch = items;
        Step::Go
    }

    async fn on_ping(&mut self) -> Step {
        if self.last_heard.elapsed() >= self.settings.ping_interval * 2 {
            tracing::debug!("websocket client silent for two ping intervals: closing");
            return self.close(CloseCode::Away, "no answer to pings").await;
        }
        match self.ws.send(Message::Ping(Bytes::new())).await {
            Ok(()) => Step::Go,
            Err(_) => Step::Stop,
        }
    }

    async fn close(&mut self, code: CloseCode, reason: &'static str) -> Step {
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        let _ = self.ws.send(Message::Close(Some(frame))).await;
        Step::Stop
    }

    /// A client frame; `Ok(Some(call))` is a call to serve beside the subscriptions.
    async fn on_client(
        &mut self,
        frame: Option<Result<Message, WsError>>,
    ) -> Result<Option<Call>, ()> {
        let data = match frame {
            Some(Ok(msg @ (Message::Text(_) | Message::Binary(_)))) => msg.into_data(),
            // The library answers a close itself; pings too.
            Some(Ok(Message::Close(_))) | None => return Err(()),
            Some(Ok(_)) => {
                self.last_heard = Instant::now();
                return Ok(None);
            }
            Some(Err(e)) => {
                super::pump::tell_why(&mut self.ws, &e, self.settings.max_message_bytes).await;
                return Err(());
            }
        };
        self.last_heard = Instant::now();
        let answer = match self.handler.on_message(data) {
            Verdict::Serve(call) => return Ok(Some(call)),
            Verdict::Ignore | Verdict::Forward => None,
            Verdict::Answer(answer) => Some(answer),
            Verdict::Subscription { id, call } => self.subs.call(&id, call),
        };
        // Through the outbox, behind the hub's answers and events already queued: a
        // client is answered in the order it asked, as by the node.
        if let Some(answer) = answer {
            self.subs.outbox.force(Outgoing::Frame(answer));
        }
        Ok(None)
    }
}
