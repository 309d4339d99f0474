//! Every way a call can fail, mapped in one exhaustive match to the HTTP status and the
//! JSON-RPC error a client sees. Errors keep CometBFT's shapes (POST errors travel with
//! HTTP 200, URI errors with 500) except where the gateway's own refusal has a status
//! clients and load balancers act on (413, 429, 503, 400 for an oversized batch).
//!
//! `data` tells the caller what to do; internals (addresses, OS errors) stay in the log.

use std::time::Duration;

use http::StatusCode;

use crate::config::{ByteSize, Lane};
use crate::jsonrpc::Form;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Rejection {
    #[error("parse error: {0}")]
    Parse(String),
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("batch of {got} exceeds {max}")]
    BatchTooLarge { got: usize, max: usize },
    #[error("body over {max}")]
    BodyTooLarge { max: ByteSize },
    #[error("body read timed out")]
    BodyTimeout,
    #[error("method not found")]
    MethodNotFound,
    #[error("method {0} denied")]
    MethodDenied(String),
    #[error("invalid params: {0}")]
    InvalidParams(String),
    /// A parameter over one of the gateway's caps; the text names the cap's config key.
    #[error("param cap: {0}")]
    ParamCap(String),
    #[error("rate limited")]
    RateLimited { retry_after: Duration },
    #[error("too many concurrent requests from one client")]
    /// `key` names the cap's config key: the request or the websocket connection cap.
    ClientBusy { max: usize, key: &'static str },
    #[error("{lane:?} lane full")]
    Overloaded { lane: Lane, retry_after: Duration },
    #[error("upstream timeout after {0:?}")]
    UpstreamTimeout(Duration),
    #[error("upstream unavailable: {0}")]
    UpstreamUnavailable(String),
    #[error("upstream answer invalid: {0}")]
    UpstreamInvalid(String),
    #[error("upstream answer over {max}")]
    ResponseTooLarge { max: ByteSize },
    #[error("circuit open")]
    CircuitOpen { retry_after: Duration },
}

/// Who a failure is down to: client faults are not logged as server faults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Blame {
    Client,
    Upstream,
    Gateway,
}

/// The parts of the answer a rejection becomes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WireError {
    pub status: StatusCode,
    pub code: i32,
    pub message: &'static str,
    pub data: String,
    pub retry_after: Option<Duration>,
}

/// CometBFT's status for an error it answers itself: 200 on POST, 500 on a URI route.
fn node_status(form: Form) -> StatusCode {
    match form {
        Form::JsonRpc => StatusCode::OK,
        Form::Uri => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A duration as config spells it ("10s", "1s250ms"), rounded to milliseconds so an
/// operator can grep the message for the key's value.
fn secs(d: Duration) -> String {
    crate::config::format_duration(Duration::from_millis(
        d.as_millis().min(u128::from(u64::MAX)) as u64,
    ))
}

impl Rejection {
    pub fn blame(&self) -> Blame {
        use Rejection::*;
        match self {
            Parse(_)
            | InvalidRequest(_)
            | BatchTooLarge { .. }
            | BodyTooLarge { .. }
            | BodyTimeout
            | MethodNotFound
            | MethodDenied(_)
            | InvalidParams(_)
            | ParamCap(_)
            | RateLimited { .. }
            | ClientBusy { .. } => Blame::Client,
            UpstreamTimeout(_)
            | UpstreamUnavailable(_)
            | UpstreamInvalid(_)
            | ResponseTooLarge { .. }
            | CircuitOpen { .. } => Blame::Upstream,
            Overloaded { .. } => Blame::Gateway,
        }
    }

    /// A short, bounded label for metrics and logs.
    pub fn reason(&self) -> &'static str {
        use Rejection::*;
        match self {
            Parse(_) | InvalidRequest(_) => "invalid",
            BatchTooLarge { .. } | BodyTooLarge { .. } => "size",
            BodyTimeout => "timeout",
            MethodNotFound => "method",
            MethodDenied(_) => "denied",
            InvalidParams(_) | ParamCap(_) => "param",
            RateLimited { .. } | ClientBusy { .. } => "rate",
            Overloaded { .. } => "lane",
            UpstreamTimeout(_) => "upstream_timeout",
            UpstreamUnavailable(_) | CircuitOpen { .. } => "upstream_down",
            UpstreamInvalid(_) => "upstream_invalid",
            ResponseTooLarge { .. } => "response_size",
        }
    }

    pub fn to_wire(&self, form: Form) -> WireError {
        use Rejection::*;
        let (status, code, message, data, retry_after) = match self {
            Parse(why) => (StatusCode::INTERNAL_SERVER_ERROR, -32700, "Parse error. Invalid JSON", why.clone(), None),
            InvalidRequest(why) => (node_status(form), -32600, "Invalid Request", why.clone(), None),
            BatchTooLarge { got, max } => (
                StatusCode::BAD_REQUEST,
                -32600,
                "Invalid Request",
                format!("maximum JSON-RPC batch size exceeded, got: {got}, max: {max}"),
                None,
            ),
            BodyTooLarge { max } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                -32600,
                "Invalid Request",
                format!("error reading request body: http: request body too large (server.max_body_bytes = {max})"),
                None,
            ),
            BodyTimeout => (
                StatusCode::REQUEST_TIMEOUT,
                -32600,
                "Invalid Request",
                "error reading request body: timed out (server.body_read_timeout)".to_owned(),
                None,
            ),
            // Over URI only websocket-only routes get here (an unknown path is Go's plain
            // 404 before any parsing), and the node answers those with 404.
            MethodNotFound => (
                match form {
                    Form::JsonRpc => StatusCode::OK,
                    Form::Uri => StatusCode::NOT_FOUND,
                },
                -32601,
                "Method not found",
                String::new(),
                None,
            ),
            MethodDenied(m) => (
                node_status(form),
                -32601,
                "Method not found",
                format!("method {m} is disabled by this gateway's policy"),
                None,
            ),
            InvalidParams(why) => (node_status(form), -32602, "Invalid params", why.clone(), None),
            ParamCap(why) => (node_status(form), -32602, "Invalid params", why.clone(), None),
            RateLimited { retry_after } => (
                StatusCode::TOO_MANY_REQUESTS,
                -32000,
                "Server error",
                format!("rate limit exceeded: retry after {}", secs(*retry_after)),
                Some(*retry_after),
            ),
            ClientBusy { max, key } => (
                StatusCode::TOO_MANY_REQUESTS,
                -32000,
                "Server error",
                format!("too many concurrent requests from this client ({key} = {max})"),
                Some(Duration::from_secs(1)),
            ),
            Overloaded { lane, retry_after } => (
                StatusCode::SERVICE_UNAVAILABLE,
                -32000,
                "Server error",
                format!("the {} lane is full: retry after {}", lane.as_str(), secs(*retry_after)),
                Some(*retry_after),
            ),
            UpstreamTimeout(after) => (
                node_status(form),
                -32603,
                "Internal error",
                format!("upstream timeout after {}", secs(*after)),
                None,
            ),
            UpstreamUnavailable(why) => {
                (node_status(form), -32603, "Internal error", format!("upstream unavailable: {why}"), None)
            }
            UpstreamInvalid(why) => {
                (node_status(form), -32603, "Internal error", format!("upstream sent an invalid answer: {why}"), None)
            }
            ResponseTooLarge { max } => (
                node_status(form),
                -32603,
                "Internal error",
                format!("upstream answer exceeds upstream.max_response_bytes ({max})"),
                None,
            ),
            CircuitOpen { retry_after } => (
                StatusCode::SERVICE_UNAVAILABLE,
                -32603,
                "Internal error",
                format!("upstream unavailable: node is failing, next probe in {}", secs(*retry_after)),
                Some(*retry_after),
            ),
        };
        WireError {
            status,
            code,
            message,
            data,
            retry_after,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_rejection_maps_to_its_status_and_code() {
        let d = Duration::from_millis(1500);
        let table: Vec<(Rejection, Form, u16, i32)> = vec![
            (Rejection::Parse("x".into()), Form::JsonRpc, 500, -32700),
            (
                Rejection::InvalidRequest("x".into()),
                Form::JsonRpc,
                200,
                -32600,
            ),
            (
                Rejection::BatchTooLarge { got: 11, max: 10 },
                Form::JsonRpc,
                400,
                -32600,
            ),
            (
                Rejection::BodyTooLarge {
                    max: ByteSize::bytes(1_000_000),
                },
                Form::JsonRpc,
                413,
                -32600,
            ),
            (Rejection::BodyTimeout, Form::JsonRpc, 408, -32600),
            (Rejection::MethodNotFound, Form::JsonRpc, 200, -32601),
            (Rejection::MethodNotFound, Form::Uri, 404, -32601),
            (
                Rejection::MethodDenied("dial_seeds".into()),
                Form::Uri,
                500,
                -32601,
            ),
            (
                Rejection::InvalidParams("x".into()),
                Form::JsonRpc,
                200,
                -32602,
            ),
            (Rejection::ParamCap("x".into()), Form::Uri, 500, -32602),
            (
                Rejection::RateLimited { retry_after: d },
                Form::JsonRpc,
                429,
                -32000,
            ),
            (
                Rejection::ClientBusy {
                    max: 4,
                    key: "rate_limit.max_concurrent_per_client",
                },
                Form::Uri,
                429,
                -32000,
            ),
            (
                Rejection::Overloaded {
                    lane: Lane::Heavy,
                    retry_after: d,
                },
                Form::JsonRpc,
                503,
                -32000,
            ),
            (
                Rejection::UpstreamTimeout(Duration::from_secs(10)),
                Form::JsonRpc,
                200,
                -32603,
            ),
            (
                Rejection::UpstreamUnavailable("refused".into()),
                Form::Uri,
                500,
                -32603,
            ),
            (
                Rejection::UpstreamInvalid("x".into()),
                Form::JsonRpc,
                200,
                -32603,
            ),
            (
                Rejection::ResponseTooLarge {
                    max: ByteSize::mib(32),
                },
                Form::JsonRpc,
                200,
                -32603,
            ),
            (
                Rejection::CircuitOpen { retry_after: d },
                Form::JsonRpc,
                503,
                -32603,
            ),
        ];
        for (rejection, form, status, code) in table {
            let w = rejection.to_wire(form);
            assert_eq!(
                (w.status.as_u16(), w.code),
                (status, code),
                "{rejection:?} {form:?}"
            );
        }
    }

    #[test]
    fn messages_name_what_an_operator_can_change() {
        let w = Rejection::UpstreamTimeout(Duration::from_secs(10)).to_wire(Form::JsonRpc);
        assert_eq!(w.data, "upstream timeout after 10s");
        let w = Rejection::ResponseTooLarge {
            max: ByteSize::mib(32),
        }
        .to_wire(Form::JsonRpc);
        assert!(w.data.contains("upstream.max_response_bytes"), "{}", w.data);
        let w = Rejection::RateLimited {
            retry_after: Duration::from_millis(250),
        }
        .to_wire(Form::JsonRpc);
        assert_eq!(w.retry_after, Some(Duration::from_millis(250)));
        assert!(w.data.ends_with("250ms"));
    }

    #[test]
    fn only_upstream_and_gateway_faults_are_server_faults() {
        assert_eq!(Rejection::MethodNotFound.blame(), Blame::Client);
        assert_eq!(
            Rejection::UpstreamTimeout(Duration::ZERO).blame(),
            Blame::Upstream
        );
        assert_eq!(
            Rejection::Overloaded {
                lane: Lane::Light,
                retry_after: Duration::ZERO
            }
            .blame(),
            Blame::Gateway
        );
    }
}
