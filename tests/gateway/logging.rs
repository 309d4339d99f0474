//! The access log never holds a request: a stderr nobody reads (a stalled journald or
//! container log pipe) costs log lines, counted, not answers.

use std::process::Stdio;

use cometgate_sim::SimNodeConfig;
use futures_util::stream::{self, StreamExt};

use crate::cli::{cometgate, free_port, listening, temp_config, Running};
use crate::support::*;

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
    // Far more access lines than the pipe and the writer's queue hold together.
    let answered = stream::iter(0..25_000)
        .map(|_| send(&http, http::Method::GET, &url, bytes::Bytes::new(), &[]))
        .buffer_unordered(32)
        .filter(|reply| std::future::ready(reply.status == http::StatusCode::OK))
        .count()
        .await;
    assert_eq!(
        answered, 25_000,
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
