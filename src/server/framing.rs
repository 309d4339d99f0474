//! Request smuggling: a head carrying both Content-Length and Transfer-Encoding is
//! refused. hyper reads such a request as chunked and drops the Content-Length before
//! the service sees it, so the raw inbound bytes are followed here, just far enough to
//! see each head's framing headers.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// For each request head read on a connection, in order: whether it carried both
/// Content-Length and Transfer-Encoding. hyper drops the conflicting Content-Length
/// before the service sees the request, so the raw bytes are checked on the way in.
#[derive(Default)]
pub(super) struct Framing {
    verdicts: VecDeque<bool>,
    /// A 101 went out: what follows is the upgraded protocol, not HTTP/1.
    upgraded: bool,
}

impl Framing {
    pub(super) fn next(&mut self) -> bool {
        self.verdicts.pop_front().unwrap_or(false)
    }

    /// Only an upgrade that happened ends the scan: a request merely carrying an
    /// `Upgrade` header is served as plain HTTP, and so is what follows it.
    pub(super) fn upgraded(&mut self) {
        self.upgraded = true;
    }
}

/// Where the scanner is in the inbound byte stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scan {
    Head,
    Fixed(u64),
    ChunkSize,
    ChunkData(u64),
    ChunkDataEnd,
    Trailer,
    /// Not HTTP/1 framing any more (upgraded), or not something hyper will serve.
    Off,
}

/// Follows request framing (heads, Content-Length and chunked bodies) just far enough
/// to see each head's framing headers. Bounded: a line over `max_line` stops it.
pub(super) struct HeadScan<T> {
    inner: T,
    framing: Arc<Mutex<Framing>>,
    state: Scan,
    line: Vec<u8>,
    max_line: usize,
    lines_in_head: usize,
    content_length: Option<Option<u64>>,
    transfer_encoding: Option<bool>,
}

impl<T> HeadScan<T> {
    pub(super) fn new(inner: T, framing: Arc<Mutex<Framing>>, max_line: usize) -> HeadScan<T> {
        HeadScan {
            inner,
            framing,
            state: Scan::Head,
            line: Vec::new(),
            max_line,
            lines_in_head: 0,
            content_length: None,
            transfer_encoding: None,
        }
    }

    fn scan(&mut self, mut bytes: &[u8]) {
        if self.state != Scan::Off && self.framing.lock().is_ok_and(|f| f.upgraded) {
            self.state = Scan::Off;
        }
        while !bytes.is_empty() {
            match self.state {
                Scan::Off => return,
                Scan::Fixed(n) | Scan::ChunkData(n) => {
                    let take = n.min(bytes.len() as u64);
                    bytes = &bytes[take as usize..];
                    self.state = match (self.state, n - take) {
                        (Scan::Fixed(_), 0) => Scan::Head,
                        (Scan::Fixed(_), left) => Scan::Fixed(left),
                        (_, 0) => Scan::ChunkDataEnd,
                        (_, left) => Scan::ChunkData(left),
                    };
                }
                Scan::Head | Scan::ChunkSize | Scan::ChunkDataEnd | Scan::Trailer => {
                    let Some(end) = bytes.iter().position(|b| *b == b'\n') else {
                        self.line.extend_from_slice(bytes);
                        if self.line.len() > self.max_line {
                            self.state = Scan::Off;
                        }
                        return;
                    };
                    self.line.extend_from_slice(&bytes[..end]);
                    bytes = &bytes[end + 1..];
                    if self.line.len() > self.max_line {
                        self.state = Scan::Off;
                        return;
                    }
                    let mut line = std::mem::take(&mut self.line);
                    if line.last() == Some(&b'\r') {
                        line.pop();
                    }
                    self.on_line(&line);
                }
            }
        }
    }

    fn on_line(&mut self, line: &[u8]) {
        match self.state {
            Scan::Head => {
                if line.is_empty() {
                    if self.lines_in_head > 0 {
                        self.end_of_head();
                    }
                    return;
                }
                self.lines_in_head += 1;
                if self.lines_in_head == 1 {
                    return; // the request line
                }
                let Some(colon) = line.iter().position(|b| *b == b':') else {
                    return;
                };
                let name = line[..colon].trim_ascii();
                let value = line[colon + 1..].trim_ascii();
                if name.eq_ignore_ascii_case(b"content-length") {
                    let n = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok());
                    self.content_length = Some(match self.content_length {
                        Some(prev) if prev != n => None,
                        _ => n,
                    });
                } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
                    let last = value.rsplit(|b| *b == b',').next().unwrap_or(b"");
                    self.transfer_encoding =
                        Some(last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
                }
            }
            Scan::ChunkSize => {
                let size = line
                    .split(|b| *b == b';')
                    .next()
                    .unwrap_or(b"")
                    .trim_ascii();
                self.state = match std::str::from_utf8(size)
                    .ok()
                    .and_then(|s| u64::from_str_radix(s, 16).ok())
                {
                    Some(0) => Scan::Trailer,
                    Some(n) => Scan::ChunkData(n),
                    None => Scan::Off,
                };
            }
            Scan::ChunkDataEnd => {
                self.state = if line.is_empty() {
                    Scan::ChunkSize
                } else {
                    Scan::Off
                };
            }
            Scan::Trailer => {
                if line.is_empty() {
                    self.state = Scan::Head;
                }
            }
            Scan::Fixed(_) | Scan::ChunkData(_) | Scan::Off => {}
        }
    }

    fn end_of_head(&mut self) {
        let cl = self.content_length.take();
        let te = self.transfer_encoding.take();
        self.lines_in_head = 0;
        let conflict = cl.is_some() && te.is_some();
        if let Ok(mut f) = self.framing.lock() {
            if f.verdicts.len() >= 1024 {
                self.state = Scan::Off;
                return;
            }
            f.verdicts.push_back(conflict);
        }
        self.state = match (conflict, te, cl) {
            (true, _, _) => Scan::Off,
            (false, Some(true), _) => Scan::ChunkSize,
            (false, Some(false), _) => Scan::Off,
            (false, None, Some(Some(0))) | (false, None, None) => Scan::Head,
            (false, None, Some(Some(n))) => Scan::Fixed(n),
            (false, None, Some(None)) => Scan::Off,
        };
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for HeadScan<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.inner).poll_read(cx, buf))?;
        let this = &mut *self;
        this.scan(&buf.filled()[before..]);
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for HeadScan<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdicts(chunks: &[&[u8]]) -> (Vec<bool>, Scan) {
        let framing = Arc::new(Mutex::new(Framing::default()));
        let mut scan = HeadScan::new((), framing.clone(), 8192);
        for c in chunks {
            scan.scan(c);
        }
        let v = framing.lock().unwrap().verdicts.iter().copied().collect();
        (v, scan.state)
    }

    #[test]
    fn a_head_with_both_framings_is_flagged_in_either_order() {
        for head in [
            &b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\ncontent-length: 4\r\n\r\n",
            b"POST / HTTP/1.1\nTransfer-Encoding: gzip, chunked\nContent-Length: 4\n\n",
        ] {
            assert_eq!(verdicts(&[head]).0, vec![true], "{}", String::from_utf8_lossy(head));
        }
    }

    #[test]
    fn pipelined_requests_are_followed_through_their_bodies() {
        let stream: &[u8] = b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n\r\n\r\nxPOST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nab\n\r\n0\r\nTrailer: 1\r\n\r\nGET /status HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        // Byte by byte and all at once give the same verdicts.
        let whole = verdicts(&[stream]);
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(verdicts(&bytes), whole);
        assert_eq!(whole.0, vec![false, false, true]);
        assert_eq!(whole.1, Scan::Off);
    }

    #[test]
    fn only_an_upgrade_that_happened_or_an_endless_line_stops_the_scan() {
        // An Upgrade header hyper does not act on: the next request is still checked.
        let (v, state) = verdicts(&[
            b"POST / HTTP/1.1\r\nUpgrade: foo\r\nContent-Length: 2\r\n\r\n{}",
            b"POST / HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n",
        ]);
        assert_eq!((v, state), (vec![false, true], Scan::Off));

        let framing = Arc::new(Mutex::new(Framing::default()));
        let mut scan = HeadScan::new((), framing.clone(), 8192);
        scan.scan(b"GET /websocket HTTP/1.1\r\nUpgrade: websocket\r\n\r\n");
        assert_eq!(scan.state, Scan::Head);
        framing.lock().unwrap().upgraded();
        scan.scan(b"\x81\x05hello");
        assert_eq!(scan.state, Scan::Off);

        let long = vec![b'a'; 10_000];
        assert_eq!(verdicts(&[&long]).1, Scan::Off);
    }
}
