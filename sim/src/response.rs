//! The response every listener sends, RPC and control alike: a full body and the
//! `X-Server-Time` header CometBFT's server adds.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode};

pub(crate) type Body = Full<Bytes>;

pub(crate) fn respond(
    status: StatusCode,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> Response<Body> {
    let mut b = Response::builder().status(status);
    if let Some(ct) = content_type {
        b = b.header("Content-Type", ct);
    }
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    b.header("X-Server-Time", secs.to_string())
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}
