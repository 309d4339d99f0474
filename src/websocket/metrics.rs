//! The fan-out's families: clients and subscriptions on both sides, what was delivered
//! or dropped, and how long delivery took.

use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Default)]
pub(crate) struct WsMetrics {
    pub(crate) clients: Gauge,
    pub(crate) client_subscriptions: Gauge,
    pub(crate) node_subscriptions: Gauge,
    pub(crate) node_connections: Gauge,
    pub(crate) delivered: Counter,
    pub(crate) dropped: Counter,
    pub(crate) slow_cancellations: Counter,
    pub(crate) missed_blocks: Counter,
    pub(crate) dial_failures: Counter,
    delivery: Option<Histogram>,
}

impl WsMetrics {
    pub(crate) fn register(registry: &mut Registry) -> WsMetrics {
        // 100 µs to ~6.5 s: loopback delivery takes tens of microseconds, a client
        // behind a slow link seconds.
        let delivery = Histogram::new(exponential_buckets(0.0001, 2.0, 17));
        let m = WsMetrics {
            delivery: Some(delivery),
            ..WsMetrics::default()
        };
        let gauges = [
            ("ws_clients", "Fan-out client websockets open", &m.clients),
            (
                "ws_client_subscriptions",
                "Subscriptions clients hold (or are waiting for) on the gateway",
                &m.client_subscriptions,
            ),
            (
                "ws_node_subscriptions",
                "Subscriptions the gateway holds at the node, one per distinct query",
                &m.node_subscriptions,
            ),
            (
                "ws_node_connections",
                "Websockets the gateway holds open to the node for its subscriptions",
                &m.node_connections,
            ),
        ];
        for (name, help, gauge) in gauges {
            registry.register(name, help, gauge.clone());
        }
        let counters = [
            (
                "ws_events_delivered",
                "Events queued to a fan-out client",
                &m.delivered,
            ),
            (
                "ws_events_dropped",
                "Events a fan-out client did not get: its subscription was cancelled or its connection was closing",
                &m.dropped,
            ),
            (
                "ws_slow_consumer_cancellations",
                "Client subscriptions cancelled because the client was not reading its events fast enough",
                &m.slow_cancellations,
            ),
            (
                "ws_node_dial_failures",
                "Dials of the fan-out's node websockets that failed (each is retried, backing off to 5 s)",
                &m.dial_failures,
            ),
            (
                "ws_missed_blocks",
                "NewBlock heights the node never sent the gateway, found as gaps after a node subscription was restored",
                &m.missed_blocks,
            ),
        ];
        for (name, help, counter) in counters {
            registry.register(name, help, counter.clone());
        }
        if let Some(h) = &m.delivery {
            registry.register(
                "ws_delivery_seconds",
                "From reading an event's node frame to writing it to one client",
                h.clone(),
            );
        }
        m
    }

    pub(crate) fn delivered_in(&self, elapsed: Duration) {
        if let Some(h) = &self.delivery {
            h.observe(elapsed.as_secs_f64());
        }
    }
}
