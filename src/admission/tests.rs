//! The pipeline as the gateway drives it, end to end through `Admission`.

use std::collections::BTreeMap;

use http::{HeaderMap, HeaderValue};
use serde_json::json;

use super::*;
use crate::config::{ApiKeyQuota, LaneConfig, MethodOverride};
use crate::methods::lookup;

fn config() -> Config {
    let mut c = Config::default();
    c.rate_limit.requests_per_second = 10;
    c.rate_limit.burst = 20;
    c.rate_limit.max_concurrent_per_client = 2;
    c.rate_limit.trusted_proxies = vec!["10.0.0.0/8".parse().unwrap()];
    c.rate_limit.api_key_header = Some(http::HeaderName::from_static("x-api-key"));
    c.rate_limit.api_keys = vec![ApiKeyQuota {
        key: "team".into(),
        requests_per_second: 100,
        burst: 500,
        max_concurrent_per_client: None,
        max_websocket_connections: None,
    }];
    c
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn the_request_path_in_order() {
    let a = Admission::new(&config());
    let mut h = HeaderMap::new();
    h.insert("x-forwarded-for", HeaderValue::from_static("198.51.100.7"));
    let client = a.client_of(ip("10.1.2.3"), &h);
    assert_eq!(client, ClientKey::Ip(ip("198.51.100.7")));
    let policy = a.policy(lookup("tx_search").unwrap());
    let mut call = Canonical {
        spec: policy.spec,
        params: json!({"query": "tx.height = 5", "per_page": "100"})
            .as_object()
            .unwrap()
            .clone(),
    };
    a.check_params(&policy, &mut call).unwrap();
    // Cost 10 against a burst of 20: two searches, then the bucket is dry.
    a.check_rate(&client, policy.cost).unwrap();
    a.check_rate(&client, policy.cost).unwrap();
    let Err(Rejection::RateLimited { retry_after }) = a.check_rate(&client, policy.cost) else {
        panic!()
    };
    assert!(retry_after > Duration::ZERO);
    // Another client, and the API key's own quota, are untouched.
    a.check_rate(&ClientKey::Ip(ip("198.51.100.8")), 20)
        .unwrap();
    let mut k = HeaderMap::new();
    k.insert("x-api-key", HeaderValue::from_static("team"));
    let team = a.client_of(ip("198.51.100.7"), &k);
    assert_eq!(team, ClientKey::ApiKey(Arc::from("team")));
    a.check_rate(&team, 400).unwrap();
}

#[test]
fn denied_routes_and_their_override() {
    let a = Admission::new(&config());
    assert!(!a.policy(lookup("dial_peers").unwrap()).allowed);
    let mut c = config();
    c.methods = BTreeMap::from([(
        "dial_peers".to_owned(),
        MethodOverride {
            allow: Some(true),
            ..Default::default()
        },
    )]);
    a.reconfigure(&c);
    assert!(a.policy(lookup("dial_peers").unwrap()).allowed);
    assert!(!a.policy(lookup("dial_seeds").unwrap()).allowed);
}

#[test]
fn an_api_key_may_have_its_own_concurrency_cap() {
    let mut c = config();
    c.rate_limit.api_keys[0].max_concurrent_per_client = Some(64);
    let a = Admission::new(&c);
    let lcd = ClientKey::ApiKey(Arc::from("team"));
    let held: Vec<_> = (0..64).map(|_| a.client_slot(&lcd).unwrap()).collect();
    assert_eq!(
        a.client_slot(&lcd).unwrap_err(),
        Rejection::ClientBusy {
            max: 64,
            key: "rate_limit.api_keys.max_concurrent_per_client"
        }
    );
    // Everyone else keeps the shared cap.
    let other = ClientKey::Ip(ip("192.0.2.1"));
    let _both = (
        a.client_slot(&other).unwrap(),
        a.client_slot(&other).unwrap(),
    );
    assert!(a.client_slot(&other).is_err());
    drop(held);
}

#[test]
fn client_slots_cap_concurrency_and_follow_reloads() {
    let a = Admission::new(&config());
    let c = ClientKey::Ip(ip("192.0.2.1"));
    let p1 = a.client_slot(&c).unwrap();
    let _p2 = a.client_slot(&c).unwrap();
    assert_eq!(
        a.client_slot(&c).unwrap_err(),
        Rejection::ClientBusy {
            max: 2,
            key: "rate_limit.max_concurrent_per_client"
        }
    );
    drop(a.client_slot(&ClientKey::Ip(ip("192.0.2.2"))).unwrap());
    assert_eq!(
        a.snapshot().busy_clients,
        1,
        "the other client's permit was dropped at once"
    );
    drop(p1);
    let p3 = a.client_slot(&c).unwrap();
    let mut lower = config();
    lower.rate_limit.max_concurrent_per_client = 1;
    a.reconfigure(&lower);
    assert!(a.client_slot(&c).is_err(), "two held, cap now one");
    drop(p3);
    assert!(a.client_slot(&c).is_err(), "one held, cap one");
    lower.rate_limit.enabled = false;
    a.reconfigure(&lower);
    drop(a.client_slot(&c).unwrap());
    a.check_rate(&c, 1_000_000).unwrap();
}

#[test]
fn local_clients_skip_the_per_client_limits_and_forwarding_ones_are_counted() {
    let mut c = config();
    c.rate_limit.trusted_proxies.clear();
    let a = Admission::new(&c);
    let lcd = a.client_of(ip("127.0.0.1"), &HeaderMap::new());
    assert_eq!(lcd, ClientKey::Local(ip("127.0.0.1")));
    // A burst of 20 and two at once, for everyone else.
    let held: Vec<_> = (0..64).map(|_| a.client_slot(&lcd).unwrap()).collect();
    for _ in 0..100 {
        a.check_rate(&lcd, 10).unwrap();
    }
    drop(held);
    assert_eq!(a.snapshot().untrusted_forwarding, 0);

    let mut proxied = HeaderMap::new();
    proxied.insert("x-forwarded-for", HeaderValue::from_static("198.51.100.7"));
    for _ in 0..3 {
        let client = a.client_of(ip("127.0.0.1"), &proxied);
        assert_eq!(client, ClientKey::Ip(ip("127.0.0.1")));
    }
    assert_eq!(a.snapshot().untrusted_forwarding, 3);
    let client = ClientKey::Ip(ip("127.0.0.1"));
    a.check_rate(&client, 20).unwrap();
    assert!(matches!(
        a.check_rate(&client, 1),
        Err(Rejection::RateLimited { .. })
    ));

    c.rate_limit.local_clients = crate::config::LocalClients::Limited;
    a.reconfigure(&c);
    assert_eq!(a.client_of(ip("127.0.0.1"), &HeaderMap::new()), client);
}

#[tokio::test(start_paused = true)]
async fn lane_slots_through_admission() {
    let mut c = config();
    c.upstream.max_concurrency = 3;
    c.lanes.heavy = LaneConfig {
        max_concurrency: 2,
        min_concurrency: 1,
        adaptive: false,
        fair: true,
        max_queue: 4,
        queue_timeout: Duration::from_secs(5),
        max_per_client: 0,
    };
    let a = Arc::new(Admission::new(&c));
    let h1 = a
        .lane_slot(Lane::Heavy, &ANYONE, "tx_search")
        .await
        .unwrap();
    let _h2 = a
        .lane_slot(Lane::Heavy, &ANYONE, "tx_search")
        .await
        .unwrap();
    let _l = a
        .lane_slot(Lane::Light, &ANYONE, "tx_search")
        .await
        .unwrap();
    let waiter = tokio::spawn({
        let a = a.clone();
        async move {
            a.lane_slot(Lane::Heavy, &ANYONE, "tx_search")
                .await
                .map(|p| p.lane())
        }
    });
    tokio::task::yield_now().await;
    let s = a.snapshot();
    assert_eq!(
        (
            s.heavy.in_flight,
            s.heavy.queued,
            s.light.in_flight,
            s.total_capacity
        ),
        (2, 1, 1, 3)
    );
    drop(h1);
    assert_eq!(waiter.await.unwrap(), Ok(Lane::Heavy));
}

#[tokio::test(start_paused = true)]
async fn gc_runs_until_the_admission_is_dropped() {
    let mut c = config();
    c.rate_limit.gc_interval = Duration::from_secs(60);
    let a = Arc::new(Admission::new(&c));
    let task = a.spawn_gc().expect("inside a runtime");
    tokio::time::sleep(Duration::from_secs(61)).await;
    assert!(!task.is_finished());
    drop(a);
    tokio::time::sleep(Duration::from_secs(61)).await;
    task.await.unwrap();
}

#[test]
fn websocket_connections_are_counted_in_the_snapshot() {
    let a = Admission::new(&config());
    let conn = a.ws_connection(&ClientKey::Ip(ip("192.0.2.1"))).unwrap();
    assert_eq!(a.snapshot().ws_connections, 1);
    drop(conn);
    assert_eq!(a.snapshot().ws_connections, 0);
    a.gc();
}

#[test]
fn gc_outside_a_runtime_spawns_nothing() {
    let a = Arc::new(Admission::new(&config()));
    assert!(a.spawn_gc().is_none());
}

static ANYONE: ClientKey = ClientKey::Ip(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
