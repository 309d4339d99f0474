//! The access log never holds a request: a stderr nobody reads (a stalled journald or
//! container log pipe) costs log lines, counted, not answers.

use std::process::Stdio;

use cometgate_sim::SimNodeConfig;
use futures_util::stream::{self, StreamExt};

use crate::cli::{cometgate, free_port, listening, temp_config, Running};
use crate::support::*;

const REQUESTS: usize = 80_000;

#[tokio::test]
async fn a_stalled_log_pipe_drops_lines_instead_of_holding_requests() {
    let node = frozen_node(SimNodeConfig::default()).await;
    let (port, ops) = (free_port(), free_port());
    let file = temp_config(&format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\n[upstream]\nurl = \"{}\"\n\
         [metrics]\nlisten = \"127.0.0.1:{ops}\"\n[log]\naccess_log = true\n\
         [rate_limit]\nenabled = false\n",
        node.url()
    ));
    // A pipe nobody reads: it fills after 64 KiB, and a writer that waits on it waits
    // for ever.
    let mut child = cometgate()
        .arg("--config")
        .arg(&file.0)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts");
    let _unread = child.stderr.take();
    let child = Running(Some(child));
    listening(port).await;
    let http = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    let url = format!("http://127.0.0.1:{port}/block?height=2");
    // Far more access lines than the pipe and the writer's queue hold together (1024
    // batches of about 50 of these lines).
    let answered = stream::iter(0..REQUESTS)
        .map(|_| send(&http, http::Method::GET, &url, bytes::Bytes::new(), &[]))
        .buffer_unordered(32)
        .filter(|reply| std::future::ready(reply.status == http::StatusCode::OK))
        .count()
        .await;
    assert_eq!(
        answered, REQUESTS,
        "every request answered (each within the deadline)"
    );
    let metrics = send(
        &http,
        http::Method::GET,
        &format!("http://127.0.0.1:{ops}/metrics"),
        bytes::Bytes::new(),
        &[],
    )
    .await;
    let text = String::from_utf8_lossy(&metrics.body);
    let dropped = metric_value(&text, "cometgate_log_lines_dropped_total", &[]).unwrap_or(0.0);
    assert!(
        dropped > 0.0,
        "the lines that did not fit were counted: {dropped}"
    );
    drop(child);
}

/// The access line as an operator's log pipeline reads it, in both formats: written by
/// the binary's own writer, not by a test subscriber.
#[tokio::test]
async fn the_access_line_carries_each_field_in_text_and_in_json() {
    let node = frozen_node(SimNodeConfig::default()).await;
    for format in ["text", "json"] {
        let port = free_port();
        let log = temp_config("");
        let file = temp_config(&format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n[upstream]\nurl = \"{}\"\n\
             [metrics]\nlisten = \"off\"\n[log]\nformat = \"{format}\"\naccess_log = true\n",
            node.url()
        ));
        let child = cometgate()
            .arg("--config")
            .arg(&file.0)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log.0).unwrap())
            .spawn()
            .expect("starts");
        let _child = Running(Some(child));
        listening(port).await;
        let http =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http();
        let url = format!("http://127.0.0.1:{port}/block?height=2");
        let reply = send(&http, http::Method::GET, &url, bytes::Bytes::new(), &[]).await;
        assert_eq!(reply.status, http::StatusCode::OK);
        let line = || {
            std::fs::read_to_string(&log.0)
                .unwrap_or_default()
                .lines()
                .find(|l| l.contains("cometgate::access"))
                .map(str::to_owned)
        };
        eventually("the access line is written", || {
            std::future::ready(line().is_some())
        })
        .await;
        let line = line().unwrap();
        match format {
            "text" => {
                for field in [
                    "method=block ",
                    "client=127.0.0.1:",
                    "cache=miss ",
                    "node_ms=",
                    "status=200 ",
                    "rejected=-",
                ] {
                    assert!(line.contains(field), "{field} in {line}");
                }
            }
            _ => {
                let v: serde_json::Value = serde_json::from_str(&line).expect(&line);
                assert_eq!(v["method"], "block", "{line}");
                assert_eq!(v["cache"], "miss", "{line}");
                assert_eq!(v["status"], 200, "{line}");
                assert!(v["node_ms"].as_f64().is_some() && v["ms"].as_f64().is_some());
                assert!(v["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')));
            }
        }
    }
}
