//! Hostile input end to end (issue #8): a sample of the property tests' inputs sent
//! through a running gateway. Every answer is JSON-RPC (a result or a well-formed error),
//! the gateway never drops a connection without answering, and it stays up.

use http::Method;
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config as RunnerConfig, TestRunner};
use serde_json::Value;

use crate::faults::{assert_rpc_error, assert_rpc_shaped};
use crate::support::*;

fn check_answer(what: &str, r: &Reply) {
    if r.body.is_empty() {
        // Only notifications go unanswered, as on the node.
        assert_eq!(r.status, 200, "{what}");
        return;
    }
    let v: Value = serde_json::from_slice(&r.body).unwrap_or_else(|e| {
        panic!(
            "{what}: not JSON ({e}): {}",
            String::from_utf8_lossy(&r.body)
        )
    });
    match &v {
        Value::Array(entries) => {
            assert!(!entries.is_empty(), "{what}");
            entries.iter().for_each(assert_rpc_shaped);
        }
        _ => assert_rpc_shaped(&v),
    }
}

#[tokio::test]
async fn hand_picked_hostile_bodies_get_json_rpc_answers() {
    let h = spawn_gateway().await;
    let deep = format!(
        r#"{{"id":1,"method":"block","params":{}{}}}"#,
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    let huge_batch = format!(
        "[{}]",
        vec![r#"{"jsonrpc":"2.0","id":1,"method":"health"}"#; 5000].join(",")
    );
    let bodies: Vec<Vec<u8>> = vec![
        b"\xff\xfe\x00garbage".to_vec(),
        b"{".to_vec(),
        b"[]".to_vec(),
        b"[1,2,3]".to_vec(),
        b"null".to_vec(),
        b"\"status\"".to_vec(),
        deep.into_bytes(),
        huge_batch.into_bytes(),
        br#"{"id":1,"id":2,"method":"status"}"#.to_vec(),
        br#"{"id":{},"method":"status"}"#.to_vec(),
        br#"{"id":123456789012345678901234567890e99999,"method":"status"}"#.to_vec(),
        br#"{"id":1,"method":"STATUS"}"#.to_vec(),
        br#"{"id":1,"method":"Block","params":{"height":"1"}}"#.to_vec(),
        br#"{"id":1,"method":"block","params":{"height":99999999999999999999999}}"#.to_vec(),
        br#"{"id":1,"method":"block","params":{"height":[1]}}"#.to_vec(),
        br#"{"id":1,"method":"block","params":"5"}"#.to_vec(),
        br#"{"id":1,"method":"tx","params":{"hash":"not base64!"}}"#.to_vec(),
        br#"{"id":1,"method":"tx_search","params":{"query":"\ud800"}}"#.to_vec(),
        br#"{"id":"\u0000\"]}","method":"health"}"#.to_vec(),
        br#"{"id":1,"method":"unsafe_whatever"}"#.to_vec(),
        br#"[{"id":1,"method":"health"},{"method":"health"},{"id":2}]"#.to_vec(),
        br#"{"method":"health"}"#.to_vec(),
    ];
    for body in bodies {
        let what = String::from_utf8_lossy(&body[..body.len().min(60)]).into_owned();
        let r = h
            .request(Method::POST, "/", &String::from_utf8_lossy(&body), &[])
            .await;
        check_answer(&what, &r);
    }
    // Invalid UTF-8 must go as bytes, not through a String.
    let raw = crate::slow_clients::raw_exchange(
        h.addr,
        &crate::slow_clients::post_request("\u{0}")
            .into_iter()
            .map(|b| if b == 0 { 0xff } else { b })
            .collect::<Vec<_>>(),
    )
    .await;
    assert!(raw.starts_with("HTTP/1.1 500"), "{raw}");
    let body = raw.split("\r\n\r\n").nth(1).unwrap_or("");
    assert_rpc_error(&serde_json::from_str(body).expect("JSON"));

    for path in [
        "/block?height=%E2%82%AC",
        "/tx?hash=%E2%82%AC",
        "/block?height=%225%22&height=6",
        "/tx_search?query=%22a%5C%22b%22&query=x&per_page=-5",
        "/abci_query?path=%22%22%22&data=0xZZ",
        "/block?height=%",
        "/blockchain?minHeight=9223372036854775807&maxHeight=-9223372036854775808",
    ] {
        let r = h.get(path).await;
        check_answer(path, &r);
    }
    assert!(h
        .post(r#"{"jsonrpc":"2.0","id":1,"method":"health"}"#)
        .await
        .json()["result"]
        .is_object());
}

#[tokio::test]
async fn a_sample_of_generated_hostile_inputs_through_a_running_gateway() {
    let h = spawn_gateway().await;
    let mut runner = TestRunner::new(RunnerConfig::default());
    let bodies = crate::props::body();
    let uris = (crate::props::method(), crate::props::query());
    for i in 0..600 {
        if i % 3 == 0 {
            let (m, q) = uris.new_tree(&mut runner).expect("tree").current();
            // A request target hyper accepts: what a real client could send.
            let target = format!("/{m}?{q}");
            let Ok(uri) = format!("{}{target}", h.url()).parse::<http::Uri>() else {
                continue;
            };
            let r = h
                .get(uri.path_and_query().map_or("/", |p| p.as_str()))
                .await;
            let html = r
                .headers
                .get("content-type")
                .is_some_and(|v| v.as_bytes().starts_with(b"text/html"));
            if r.status == 404 || html {
                continue; // not a route name, or `/` (an empty name): the route list
            }
            check_answer(&target, &r);
        } else {
            let body = bodies.new_tree(&mut runner).expect("tree").current();
            if body.iter().all(u8::is_ascii_whitespace) {
                continue; // an empty POST lists the routes, as on the node
            }
            let r = crate::slow_clients::raw_exchange(
                h.addr,
                &[
                    format!(
                        "POST / HTTP/1.1\r\nHost: gw\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    )
                    .into_bytes(),
                    body.clone(),
                ]
                .concat(),
            )
            .await;
            let (head, payload) = r.split_once("\r\n\r\n").unwrap_or_else(|| {
                panic!(
                    "no answer to {}",
                    String::from_utf8_lossy(&body[..body.len().min(80)])
                )
            });
            assert!(head.starts_with("HTTP/1.1 "), "{head}");
            let reply = Reply {
                status: http::StatusCode::from_bytes(&head.as_bytes()[9..12]).unwrap(),
                headers: Default::default(),
                body: bytes::Bytes::from(payload.to_owned()),
            };
            check_answer(
                &String::from_utf8_lossy(&body[..body.len().min(80)]),
                &reply,
            );
        }
    }
    assert!(h
        .post(r#"{"jsonrpc":"2.0","id":1,"method":"health"}"#)
        .await
        .json()["result"]
        .is_object());
}
