//! Every way a request can fail, mapped in one exhaustive match to everything its answer
//! carries: the HTTP status, the JSON-RPC error, Retry-After, and whether the connection
//! closes. Nothing patches a refusal's response afterwards; a new way to fail is a new
//! variant here. Errors keep CometBFT's shapes (POST errors travel with HTTP 200, URI
//! errors with 500, an unknown path is Go's plain-text 404) except where the gateway's
//! own refusal has a status clients and load balancers act on (413, 414, 429, 503, 400
//! for an oversized batch, 502 when a websocket's node side cannot be opened).
//!
//! `data` tells the caller what to do; internals (addresses, OS errors) stay in the log.

use std::time::Duration;

use http::StatusCode;

use crate::config::{ByteSize, Lane};
use crate::jsonrpc::Form;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Rejection {
    /// A path the node does not serve (or a route switched off here).
    #[error("no such route")]
    NoRoute,
    /// `/websocket` without a websocket handshake.
    #[error("not a websocket handshake")]
    NotWebSocket,
    #[error("URI of {len} bytes over {max}")]
    UriTooLong { len: usize, max: ByteSize },
    /// Both Content-Length and Transfer-Encoding: a request-smuggling attempt.
    #[error("conflicting request framing")]
    ConflictingFraming,
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
    /// The call costs more than the client's whole burst: no wait would ever admit it, so
    /// it carries no Retry-After. `key` names the burst's config key.
    #[error("cost {cost} over burst {burst}")]
    CostOverBurst {
        cost: u32,
        burst: u32,
        key: &'static str,
    },
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
    /// Limits are shared through Redis, Redis does not answer, and `shared.on_error` is
    /// "deny".
    #[error("shared limits unavailable")]
    SharedUnavailable,
}

/// Who a failure is down to: client faults are not logged as server faults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Blame {
    Client,
    Upstream,
    Gateway,
}

/// Where a refusal is answered; the node's status rules differ between them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// A JSON-RPC body, POSTed or sent as a websocket message.
    JsonRpc,
    /// `/<method>?args`.
    Uri,
    /// The HTTP request that asks to become a websocket.
    Handshake,
}

impl From<Form> for Transport {
    fn from(form: Form) -> Transport {
        match form {
            Form::JsonRpc => Transport::JsonRpc,
            Form::Uri => Transport::Uri,
        }
    }
}

/// Everything the answer to a refusal carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct WireError {
    pub status: StatusCode,
    pub code: i32,
    pub message: &'static str,
    pub data: String,
    pub retry_after: Option<Duration>,
    /// The connection cannot be trusted for another request (its body was left unread,
    /// or its framing was forged).
    pub close: bool,
    /// Go's mux answers these itself, in plain text rather than JSON-RPC.
    pub plain_text: Option<&'static str>,
}

/// CometBFT's status for an error it answers itself: 200 on POST, 500 on a URI route.
fn node_status(transport: Transport) -> StatusCode {
    match transport {
        Transport::JsonRpc => StatusCode::OK,
        Transport::Uri => StatusCode::INTERNAL_SERVER_ERROR,
        Transport::Handshake => StatusCode::BAD_GATEWAY,
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
    pub(crate) fn blame(&self) -> Blame {
        use Rejection::*;
        match self {
            NoRoute
            | NotWebSocket
            | UriTooLong { .. }
            | ConflictingFraming
            | Parse(_)
            | InvalidRequest(_)
            | BatchTooLarge { .. }
            | BodyTooLarge { .. }
            | BodyTimeout
            | MethodNotFound
            | MethodDenied(_)
            | InvalidParams(_)
            | ParamCap(_)
            | RateLimited { .. }
            | CostOverBurst { .. }
            | ClientBusy { .. } => Blame::Client,
            UpstreamTimeout(_)
            | UpstreamUnavailable(_)
            | UpstreamInvalid(_)
            | ResponseTooLarge { .. }
            | CircuitOpen { .. } => Blame::Upstream,
            Overloaded { .. } | SharedUnavailable => Blame::Gateway,
        }
    }

    /// A short, bounded label for metrics and logs.
    pub fn reason(&self) -> &'static str {
        use Rejection::*;
        match self {
            NoRoute => "route",
            Parse(_) | InvalidRequest(_) | NotWebSocket | ConflictingFraming => "invalid",
            BatchTooLarge { .. } | BodyTooLarge { .. } | UriTooLong { .. } => "size",
            BodyTimeout => "timeout",
            MethodNotFound => "method",
            MethodDenied(_) => "denied",
            InvalidParams(_) | ParamCap(_) => "param",
            RateLimited { .. } | CostOverBurst { .. } | ClientBusy { .. } => "rate",
            Overloaded { .. } => "lane",
            UpstreamTimeout(_) => "upstream_timeout",
            UpstreamUnavailable(_) | CircuitOpen { .. } => "upstream_down",
            UpstreamInvalid(_) => "upstream_invalid",
            ResponseTooLarge { .. } => "response_size",
            SharedUnavailable => "shared_down",
        }
    }

    /// Everything a refusal's answer carries. Each part is one exhaustive match below,
    /// so a new variant cannot be added without deciding all of them.
    pub(crate) fn to_wire(&self, transport: impl Into<Transport>) -> WireError {
        let code = self.code();
        WireError {
            status: self.status(transport.into()),
            code,
            message: message(code),
            data: self.data(),
            retry_after: self.retry_after(),
            close: matches!(
                self,
                Rejection::ConflictingFraming
                    | Rejection::BodyTooLarge { .. }
                    | Rejection::BodyTimeout
            ),
            plain_text: match self {
                Rejection::NoRoute => Some("404 page not found\n"),
                Rejection::NotWebSocket => Some("Bad Request\n"),
                _ => None,
            },
        }
    }

    fn status(&self, transport: Transport) -> StatusCode {
        use Rejection::*;
        match self {
            NoRoute => StatusCode::NOT_FOUND,
            NotWebSocket | ConflictingFraming | BatchTooLarge { .. } => StatusCode::BAD_REQUEST,
            UriTooLong { .. } => StatusCode::URI_TOO_LONG,
            Parse(_) => StatusCode::INTERNAL_SERVER_ERROR,
            BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            // Over URI only websocket-only routes get here (an unknown path is Go's plain
            // 404 before any parsing), and the node answers those with 404.
            MethodNotFound => match transport {
                Transport::JsonRpc => StatusCode::OK,
                Transport::Uri | Transport::Handshake => StatusCode::NOT_FOUND,
            },
            RateLimited { .. } | CostOverBurst { .. } | ClientBusy { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            Overloaded { .. } | CircuitOpen { .. } | SharedUnavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            InvalidRequest(_)
            | MethodDenied(_)
            | InvalidParams(_)
            | ParamCap(_)
            | UpstreamTimeout(_)
            | UpstreamUnavailable(_)
            | UpstreamInvalid(_)
            | ResponseTooLarge { .. } => node_status(transport),
        }
    }

    fn code(&self) -> i32 {
        use Rejection::*;
        match self {
            Parse(_) => -32700,
            NotWebSocket
            | UriTooLong { .. }
            | ConflictingFraming
            | InvalidRequest(_)
            | BatchTooLarge { .. }
            | BodyTooLarge { .. }
            | BodyTimeout => -32600,
            NoRoute | MethodNotFound | MethodDenied(_) => -32601,
            InvalidParams(_) | ParamCap(_) => -32602,
            RateLimited { .. }
            | CostOverBurst { .. }
            | ClientBusy { .. }
            | Overloaded { .. }
            | SharedUnavailable => -32000,
            UpstreamTimeout(_)
            | UpstreamUnavailable(_)
            | UpstreamInvalid(_)
            | ResponseTooLarge { .. }
            | CircuitOpen { .. } => -32603,
        }
    }

    fn data(&self) -> String {
        use Rejection::*;
        match self {
            NoRoute | NotWebSocket | MethodNotFound => String::new(),
            UriTooLong { len, max } => {
                format!("URI of {len} bytes is over server.max_uri_bytes ({max})")
            }
            ConflictingFraming => "request has both Content-Length and Transfer-Encoding".into(),
            Parse(why) | InvalidRequest(why) | InvalidParams(why) | ParamCap(why) => why.clone(),
            BatchTooLarge { got, max } => {
                format!("maximum JSON-RPC batch size exceeded, got: {got}, max: {max}")
            }
            BodyTooLarge { max } => format!(
                "error reading request body: http: request body too large (server.max_body_bytes = {max})"
            ),
            BodyTimeout => {
                "error reading request body: timed out (server.body_read_timeout)".into()
            }
            MethodDenied(m) => format!("method {m} is disabled by this gateway's policy"),
            RateLimited { retry_after } => {
                format!("rate limit exceeded: retry after {}", secs(*retry_after))
            }
            CostOverBurst { cost, burst, key } => format!(
                "this call costs {cost} rate-limit units, more than this client's whole burst \
                 ({key} = {burst}), so it can never fit, however long the client waits; the \
                 operator can raise {key}, lower the method's cost or deny the method"
            ),
            ClientBusy { max, key } => {
                format!("too many concurrent requests from this client ({key} = {max})")
            }
            Overloaded { lane, retry_after } => format!(
                "the {} lane is full: retry after {}",
                lane.as_str(),
                secs(*retry_after)
            ),
            UpstreamTimeout(after) => format!("upstream timeout after {}", secs(*after)),
            UpstreamUnavailable(why) => format!("upstream unavailable: {why}"),
            UpstreamInvalid(why) => format!("upstream sent an invalid answer: {why}"),
            ResponseTooLarge { max } => {
                format!("upstream answer exceeds upstream.max_response_bytes ({max})")
            }
            CircuitOpen { retry_after } => format!(
                "upstream unavailable: node is failing, next probe in {}",
                secs(*retry_after)
            ),
            SharedUnavailable => "this gateway shares rate limits with its replicas through \
                 Redis, which does not answer, and shared.on_error = \"deny\": retry after 1s"
                .into(),
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            Rejection::RateLimited { retry_after }
            | Rejection::Overloaded { retry_after, .. }
            | Rejection::CircuitOpen { retry_after } => Some(*retry_after),
            Rejection::ClientBusy { .. } | Rejection::SharedUnavailable => {
                Some(Duration::from_secs(1))
            }
            // No wait ever admits it: a Retry-After would only bring the client back.
            Rejection::CostOverBurst { .. } => None,
            _ => None,
        }
    }
}

/// JSON-RPC's (and CometBFT's) message for each code.
fn message(code: i32) -> &'static str {
    match code {
        -32700 => "Parse error. Invalid JSON",
        -32600 => "Invalid Request",
        -32601 => "Method not found",
        -32602 => "Invalid params",
        -32603 => "Internal error",
        _ => "Server error",
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
            (Rejection::SharedUnavailable, Form::Uri, 503, -32000),
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
    fn a_cost_over_the_burst_is_429_with_no_retry_after() {
        let r = Rejection::CostOverBurst {
            cost: 20,
            burst: 4,
            key: "rate_limit.burst",
        };
        for form in [Form::JsonRpc, Form::Uri] {
            let w = r.to_wire(form);
            assert_eq!((w.status.as_u16(), w.code), (429, -32000));
            assert_eq!(w.retry_after, None, "it would never come true");
            assert!(w.data.contains("can never fit"), "{}", w.data);
            assert!(w.data.contains("rate_limit.burst = 4"), "{}", w.data);
        }
        assert_eq!(r.reason(), "rate");
        assert_eq!(r.blame(), Blame::Client);
    }

    #[test]
    fn the_wire_form_carries_what_used_to_be_patched_on_afterwards() {
        let w = Rejection::UriTooLong {
            len: 9000,
            max: ByteSize::kib(8),
        }
        .to_wire(Form::Uri);
        assert_eq!(w.status, StatusCode::URI_TOO_LONG);
        let w = Rejection::ConflictingFraming.to_wire(Form::JsonRpc);
        assert_eq!((w.status, w.close), (StatusCode::BAD_REQUEST, true));
        let w = Rejection::NoRoute.to_wire(Form::Uri);
        assert_eq!(w.status, StatusCode::NOT_FOUND);
        assert_eq!(w.plain_text, Some("404 page not found\n"));
        // A websocket whose node side cannot be opened: the gateway's 502, not the
        // node's 500.
        let w = Rejection::UpstreamUnavailable("x".into()).to_wire(Transport::Handshake);
        assert_eq!(w.status, StatusCode::BAD_GATEWAY);
        let w = Rejection::UpstreamTimeout(Duration::from_secs(2)).to_wire(Transport::Handshake);
        assert_eq!(w.status, StatusCode::BAD_GATEWAY);
        // Only what leaves the connection in doubt closes it.
        assert!(!Rejection::MethodNotFound.to_wire(Form::JsonRpc).close);
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
