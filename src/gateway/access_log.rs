//! What the access log says of one request: one line, written when the answer is ready.

use std::net::SocketAddr;
use std::time::Duration;

use http::StatusCode;

use crate::cache::CacheStatus;
use crate::logging::Access;

#[derive(Default)]
pub(crate) struct AccessLog {
    methods: String,
    pub(super) cache: Option<CacheStatus>,
    pub(super) node_latency: Option<Duration>,
    rejection: Option<&'static str>,
}

impl AccessLog {
    /// Method names are logged as sent but bounded, so a hostile one cannot flood the log.
    pub(super) fn method(&mut self, name: &str) {
        if self.methods.len() < 256 {
            if !self.methods.is_empty() {
                self.methods.push(',');
            }
            let name: String = name.chars().take(64).filter(|c| !c.is_control()).collect();
            self.methods.push_str(&name);
        }
    }

    pub(super) fn rejected(&mut self, reason: &'static str) {
        self.rejection.get_or_insert(reason);
    }

    pub(super) fn emit(
        &self,
        id: u64,
        peer: SocketAddr,
        status: StatusCode,
        elapsed: Duration,
        enabled: bool,
    ) {
        // Failures are logged where they happen (`refuse`); this line is the access log.
        if !enabled {
            return;
        }
        crate::logging::access(&Access {
            id,
            method: &self.methods,
            client: peer,
            cache: self.cache.map_or("-", CacheStatus::as_str),
            node_ms: self.node_latency.map(|d| d.as_secs_f64() * 1e3),
            status: status.as_u16(),
            ms: elapsed.as_secs_f64() * 1e3,
            rejected: self.rejection.unwrap_or("-"),
        });
    }
}
