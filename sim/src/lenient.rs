//! Go's HTTP server accepts request targets such as `/tx_search?query="tx.height>1"`, which
//! hyper's parser refuses. This rewriter percent-encodes those bytes in request lines as they
//! arrive, tracking request bodies so it never touches them.

/// Bytes Go lets through in a request target and httparse does not.
fn needs_escape(b: u8) -> bool {
    matches!(
        b,
        b'"' | b'<' | b'>' | b'{' | b'}' | b'|' | b'\\' | b'^' | b'`'
    )
}

#[derive(Debug)]
enum State {
    RequestLine {
        spaces: usize,
    },
    Headers {
        line: Vec<u8>,
        content_length: usize,
        opaque: bool,
    },
    Body {
        remaining: usize,
    },
    /// Chunked bodies and upgraded connections: no more rewriting on this connection.
    Passthrough,
}

pub(crate) struct Rewriter {
    state: State,
}

impl Default for Rewriter {
    fn default() -> Self {
        Rewriter {
            state: State::RequestLine { spaces: 0 },
        }
    }
}

impl Rewriter {
    pub(crate) fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) {
        let mut i = 0;
        while i < input.len() {
            match &mut self.state {
                State::Passthrough => {
                    out.extend_from_slice(&input[i..]);
                    return;
                }
                State::Body { remaining } => {
                    let take = (*remaining).min(input.len() - i);
                    out.extend_from_slice(&input[i..i + take]);
                    i += take;
                    *remaining -= take;
                    if *remaining == 0 {
                        self.state = State::RequestLine { spaces: 0 };
                    }
                }
                State::RequestLine { spaces } => {
                    let b = input[i];
                    i += 1;
                    if b == b'\n' {
                        out.push(b);
                        self.state = State::Headers {
                            line: Vec::new(),
                            content_length: 0,
                            opaque: false,
                        };
                    } else if *spaces == 1 && needs_escape(b) {
                        out.extend_from_slice(format!("%{b:02X}").as_bytes());
                    } else {
                        *spaces += usize::from(b == b' ');
                        out.push(b);
                    }
                }
                State::Headers {
                    line,
                    content_length,
                    opaque,
                } => {
                    let b = input[i];
                    i += 1;
                    out.push(b);
                    if b != b'\n' {
                        line.push(b);
                        continue;
                    }
                    let text = String::from_utf8_lossy(line).trim().to_ascii_lowercase();
                    line.clear();
                    if text.is_empty() {
                        self.state = if *opaque {
                            State::Passthrough
                        } else if *content_length > 0 {
                            State::Body {
                                remaining: *content_length,
                            }
                        } else {
                            State::RequestLine { spaces: 0 }
                        };
                    } else if let Some(v) = text.strip_prefix("content-length:") {
                        *content_length = v.trim().parse().unwrap_or(0);
                    } else if text.starts_with("transfer-encoding:") || text.starts_with("upgrade:")
                    {
                        *opaque = true;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(chunks: &[&[u8]]) -> Vec<u8> {
        let mut r = Rewriter::default();
        let mut out = Vec::new();
        for c in chunks {
            r.feed(c, &mut out);
        }
        out
    }

    #[test]
    fn escapes_targets_not_bodies() {
        let req = b"GET /tx_search?query=\"a>1\" HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(
            run(&[req]),
            b"GET /tx_search?query=%22a%3E1%22 HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()
        );
        let post = b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n\"<>\"x";
        let next = b"GET /a?b=\"c\" HTTP/1.1\r\n\r\n";
        let out = run(&[&post[..20], &post[20..], next]);
        assert!(out.ends_with(b"\"<>\"xGET /a?b=%22c%22 HTTP/1.1\r\n\r\n"));
    }

    #[test]
    fn upgraded_connections_pass_through() {
        let up = b"GET /websocket HTTP/1.1\r\nUpgrade: websocket\r\n\r\n";
        let frame = b"\x81\x05 \"x\" ";
        let out = run(&[up, frame]);
        assert!(out.ends_with(frame));
    }
}
