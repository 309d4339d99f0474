//! The closed loop for throughput scenarios, on one thread and raw HTTP/1.1 keep-alive
//! connections, as `wrk -t1` sends it.
//!
//! Why not the pooled hyper client: against the cache-hit ceiling (a bare hyper server
//! answering from memory) it topped out at 35 to 39k requests a second on this machine,
//! where `wrk -t1 -c50` drove the same server to 54 to 62k. Every target faster than the
//! harness then measured as the harness's own limit, so a slower proxy looked level with
//! a faster one (cometgate "1.25× nginx" where wrk saw 0.8×). This client writes each
//! request's bytes once and reads the answer by its `Content-Length`, with no pool, no
//! header map and no task per request.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::client::Call;
use crate::live::Live;
use crate::mix::{is_heavy, Picker};
use crate::mix::{Form, Mix};
use crate::record::{Outcome, Recorder};

/// An answer's head longer than this is not one these targets send.
const MAX_HEAD: usize = 16 << 10;

/// What the connections send, and for how long.
#[derive(Clone, Copy)]
pub struct LeanLoad {
    pub mix: Mix,
    pub form: Form,
    pub seed: u64,
    pub duration: Duration,
}

/// Runs `connections` closed-loop connections against `base` for the load's duration on
/// a thread of their own.
pub async fn closed_lean(
    load: LeanLoad,
    base: &str,
    connections: usize,
    live: Arc<Live>,
) -> Result<Recorder, String> {
    let addr: SocketAddr = base
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .map_err(|e| format!("{base}: {e}"))?;
    tokio::task::spawn_blocking(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        rt.block_on(async move {
            let deadline = Instant::now() + load.duration;
            let tasks: Vec<_> = (0..connections)
                .map(|i| {
                    let picker = Picker::new(load.mix, load.form, load.seed.wrapping_add(i as u64));
                    tokio::spawn(connection(addr, picker, deadline, live.clone()))
                })
                .collect();
            let mut total = Recorder::new();
            for t in tasks {
                total.merge(&t.await.map_err(|e| e.to_string())?);
            }
            Ok(total)
        })
    })
    .await
    .map_err(|e| e.to_string())?
}

/// One keep-alive connection, reconnecting after a failure.
async fn connection(
    addr: SocketAddr,
    mut picker: Picker,
    deadline: Instant,
    live: Arc<Live>,
) -> Recorder {
    let mut rec = Recorder::new();
    let mut stream: Option<TcpStream> = None;
    let mut buf = Vec::with_capacity(64 << 10);
    // A mix that repeats one call (the hits) is rendered once, as wrk's script is: the
    // client's own work shares the cores with what it measures.
    let mut rendered: Option<(Call, Vec<u8>)> = None;
    while Instant::now() < deadline {
        let call = picker.next(live.head.load(Ordering::Relaxed));
        if rendered.as_ref().is_none_or(|(last, _)| *last != call) {
            rendered = Some((call.clone(), render(&call, addr)));
        }
        let request = &rendered.as_ref().expect("rendered above").1;
        let t0 = Instant::now();
        let outcome = match exchange(&mut stream, addr, request, &mut buf).await {
            Ok(status) => Outcome::Status(status),
            Err(class) => {
                stream = None;
                Outcome::Failed(class)
            }
        };
        rec.record_call(t0.elapsed(), &outcome, is_heavy(&call));
        live.note(&outcome);
        if !matches!(outcome, Outcome::Status(_)) {
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
    rec
}

/// Sends `request` on `stream` (connecting first when there is none) and reads the whole
/// answer into `buf`; returns its status. The stream is dropped when the answer says
/// it was the connection's last.
pub(crate) async fn exchange(
    stream: &mut Option<TcpStream>,
    addr: SocketAddr,
    request: &[u8],
    buf: &mut Vec<u8>,
) -> Result<u16, &'static str> {
    if stream.is_none() {
        let s = TcpStream::connect(addr).await.map_err(|_| "connect")?;
        s.set_nodelay(true).map_err(|_| "connect")?;
        *stream = Some(s);
    }
    let s = stream.as_mut().expect("connected above");
    s.write_all(request).await.map_err(|_| "write")?;
    buf.clear();
    let Head {
        status,
        len: head,
        body,
        close,
    } = loop {
        if let Some(parsed) = parse_head(buf)? {
            break parsed;
        }
        if buf.len() > MAX_HEAD {
            return Err("head too long");
        }
        read_more(s, buf).await?;
    };
    while buf.len() < head + body {
        read_more(s, buf).await?;
    }
    if buf.len() > head + body {
        return Err("answer longer than its Content-Length");
    }
    // nginx ends a keep-alive connection after `keepalive_requests` (1000) answers,
    // saying so on the last; a plain client opens the next one without an error.
    if close {
        *stream = None;
    }
    Ok(status)
}

async fn read_more(s: &mut TcpStream, buf: &mut Vec<u8>) -> Result<(), &'static str> {
    buf.reserve(16 << 10);
    match s.read_buf(buf).await {
        Ok(0) => Err("closed"),
        Ok(_) => Ok(()),
        Err(_) => Err("read"),
    }
}

/// An answer's head, once it is all in the buffer.
#[derive(Debug, PartialEq, Eq)]
struct Head {
    status: u16,
    /// Bytes of the head, its blank line included.
    len: usize,
    /// Bytes of the body (`Content-Length`).
    body: usize,
    /// `Connection: close`: this was the connection's last answer.
    close: bool,
}

fn parse_head(buf: &[u8]) -> Result<Option<Head>, &'static str> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut answer = httparse::Response::new(&mut headers);
    let head = match answer.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err("bad answer"),
    };
    let value = |name: &str| {
        answer
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .and_then(|h| std::str::from_utf8(h.value).ok())
            .map(str::trim)
    };
    let body = value("content-length")
        .and_then(|v| v.parse().ok())
        .ok_or("no Content-Length")?;
    let close = value("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
    Ok(Some(Head {
        status: answer.code.unwrap_or(0),
        len: head,
        body,
        close,
    }))
}

/// The request's bytes as a plain HTTP/1.1 client sends them.
pub(crate) fn render(call: &Call, addr: SocketAddr) -> Vec<u8> {
    match call {
        Call::Post(body) => {
            let mut r = format!(
                "POST / HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .into_bytes();
            r.extend_from_slice(body);
            r
        }
        Call::Get(path) => format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").into_bytes(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_is_read_once_complete_with_its_body_length() {
        let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-a: b\r\n\r\nhello";
        assert_eq!(parse_head(&answer[..20]), Ok(None));
        let head = Head {
            status: 200,
            len: answer.len() - 5,
            body: 5,
            close: false,
        };
        assert_eq!(parse_head(answer), Ok(Some(head)));
        let last = b"HTTP/1.1 429 Too Many\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        let head = parse_head(last).unwrap().unwrap();
        assert_eq!((head.status, head.body, head.close), (429, 0, true));
        let chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n";
        assert_eq!(parse_head(chunked), Err("no Content-Length"));
        assert_eq!(parse_head(b"NOT HTTP\r\n\r\n"), Err("bad answer"));
    }

    #[test]
    fn requests_render_as_a_plain_client_sends_them() {
        let addr: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let post = render(&Call::Post(bytes::Bytes::from_static(b"{}")), addr);
        assert_eq!(
            post,
            b"POST / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
        );
        let get = render(&Call::Get("/block?height=5".into()), addr);
        assert_eq!(
            get,
            b"GET /block?height=5 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n"
        );
    }
}
