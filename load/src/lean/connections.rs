//! What an idle keep-alive connection costs: cometgate and nginx each hold 0, 100, 1,000
//! and 10,000 of them (each has served one cache hit and then stays open), and for each
//! count the front's resident memory and its hit throughput beside them (wrk -t1 -c50
//! for 5 s). KiB per idle connection is the memory over the count's, against none.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde_json::json;
use tokio::net::TcpStream;

use super::mib;
use crate::configs::{Front, Limits};
use crate::lean_client::{exchange, render};
use crate::mix::{Form, Mix, Picker};
use crate::procs::rss_bytes;
use crate::stack::{self, Bins, Target};
use crate::wrk::{cross_check, ensure_wrk};

/// Connections opened at once while filling.
const OPENING: usize = 256;

struct Row {
    target: String,
    idle: usize,
    held: usize,
    rss: u64,
    hits_per_s: f64,
}

pub(super) async fn run(
    bins: &Bins,
    quick: bool,
    dir: &Path,
) -> Result<(String, serde_json::Value), String> {
    let counts: &[usize] = if quick {
        &[0, 100, 1_000]
    } else {
        &[0, 100, 1_000, 10_000]
    };
    let wrk = ensure_wrk().ok_or("wrk could not be installed")?;
    let mut bins = bins.clone();
    bins.nginx = crate::stack::ensure_nginx();
    let mut rows = Vec::new();
    for &n in counts {
        for target in [Target::Cometgate, Target::Nginx] {
            if target == Target::Nginx && bins.nginx.is_none() {
                continue;
            }
            let sub = dir.join(format!("{}-{n}", target.name()));
            rows.push(point(&bins, &wrk, target, n, &sub).await?);
            let _ = std::fs::remove_dir_all(&sub);
        }
    }
    Ok((
        table(&rows),
        json!(rows.iter().map(row_json).collect::<Vec<_>>()),
    ))
}

async fn point(
    bins: &Bins,
    wrk: &Path,
    target: Target,
    n: usize,
    dir: &Path,
) -> Result<Row, String> {
    let front = Front {
        idle: Some(n),
        ..Front::limits(Limits::UNBINDING)
    };
    let node = cometgate_sim::SimNodeConfig {
        block_interval: Duration::from_secs(1),
        ..Default::default()
    };
    let stack = stack::start(bins, target, &node, front, dir).await?;
    let call = Picker::new(Mix::CacheHit, Form::Get, 0).next(1);
    let addr: SocketAddr = stack
        .url
        .trim_start_matches("http://")
        .parse()
        .map_err(|e| format!("{}: {e}", stack.url))?;
    let request = render(&call, addr);
    let mut idle = Vec::with_capacity(n);
    while idle.len() < n {
        let batch = OPENING.min(n - idle.len());
        idle.extend(open_idle(batch, addr, &request).await?);
    }
    // Let both sides settle (the first answers' buffers given back) before reading RSS.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss: u64 = stack
        .front_pids()
        .iter()
        .filter_map(|p| rss_bytes(*p))
        .sum();
    let hits = cross_check(wrk, &stack.url, &call, Duration::from_secs(5), dir).await?;
    let held = idle.iter().filter(|s| still_open(s)).count();
    eprintln!(
        "connections/{}: {n} idle, {held} still open, RSS {} MiB, {:.0} hits/s",
        target.name(),
        mib(rss),
        hits.rps
    );
    Ok(Row {
        target: target.name(),
        idle: n,
        held,
        rss,
        hits_per_s: hits.rps,
    })
}

/// Opens `count` connections at once, each served one hit and kept.
async fn open_idle(
    count: usize,
    addr: SocketAddr,
    request: &[u8],
) -> Result<Vec<TcpStream>, String> {
    let tasks: Vec<_> = (0..count)
        .map(|_| {
            let request = request.to_vec();
            tokio::spawn(async move {
                let (mut stream, mut buf) = (None, Vec::with_capacity(4096));
                exchange(&mut stream, addr, &request, &mut buf).await?;
                stream.ok_or("closed after its first answer")
            })
        })
        .collect();
    let mut out = Vec::with_capacity(count);
    for t in tasks {
        out.push(t.await.map_err(|e| e.to_string())??);
    }
    Ok(out)
}

/// Open, as far as a read that would block can tell (a closed one reads 0 at once).
fn still_open(s: &TcpStream) -> bool {
    let mut probe = [0u8; 1];
    matches!(s.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

fn row_json(r: &Row) -> serde_json::Value {
    json!({"target": r.target, "idle": r.idle, "held": r.held,
           "rss_bytes": r.rss, "hits_per_s": r.hits_per_s})
}

fn table(rows: &[Row]) -> String {
    let mut s = String::from(
        "\n## Idle keep-alive connections\n\nEach front holds this many idle keep-alive connections (each served one cache hit, then left open), then serves hits beside them (`wrk -t1 -c50`, 5 s). KiB per idle connection: RSS over the front's own RSS with none, divided by the count.\n\n| front | idle | still open | RSS MiB | KiB per idle connection | hits/s |\n|---|--:|--:|--:|--:|--:|\n",
    );
    for r in rows {
        let base = rows
            .iter()
            .find(|b| b.target == r.target && b.idle == 0)
            .map_or(r.rss, |b| b.rss);
        let per = match r.idle {
            0 => "-".to_string(),
            n => format!(
                "{:.1}",
                r.rss.saturating_sub(base) as f64 / 1024.0 / n as f64
            ),
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {per} | {:.0} |",
            r.target,
            r.idle,
            r.held,
            mib(r.rss),
            r.hits_per_s
        );
    }
    s
}
