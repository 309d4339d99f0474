//! Who a request is charged to.
//!
//! Forwarding headers are believed only from a trusted proxy: anyone else could name any
//! address and dodge their own limits. IPv6 clients are keyed by their /64, since one
//! subscriber usually holds a whole /64 and would otherwise mint limitless fresh keys.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use http::HeaderMap;
use ipnet::IpNet;

use crate::config::ClientIpHeader;

/// What per-client limits are kept under.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum ClientKey {
    /// An IPv4 address, or an IPv6 /64 (host bits zeroed).
    Ip(IpAddr),
    /// A configured API key, charged to its own quota wherever it comes from.
    ApiKey(Arc<str>),
}

impl ClientKey {
    /// The key for an address: IPv4-mapped IPv6 is read as IPv4, IPv6 is cut to its /64.
    pub(crate) fn ip(addr: IpAddr) -> ClientKey {
        ClientKey::Ip(match addr.to_canonical() {
            IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
            v4 => v4,
        })
    }
}

/// What `client_of` needs from the config, swapped as one on reload.
#[derive(Debug, Default)]
pub(super) struct ClientRules {
    pub trusted_proxies: Vec<IpNet>,
    pub ip_header: ClientIpHeader,
    pub api_key_header: Option<http::HeaderName>,
    pub api_keys: HashSet<Arc<str>>,
}

impl ClientRules {
    fn trusted(&self, ip: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|net| net.contains(&ip))
    }

    pub(super) fn is_trusted(&self, peer: IpAddr) -> bool {
        self.trusted(peer.to_canonical())
    }

    pub(super) fn client_of(&self, peer: IpAddr, headers: &HeaderMap) -> ClientKey {
        if let Some(name) = &self.api_key_header {
            let known = headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|k| self.api_keys.get(k.trim()));
            if let Some(key) = known {
                return ClientKey::ApiKey(key.clone());
            }
        }
        let peer = peer.to_canonical();
        if self.trusted_proxies.is_empty() || !self.trusted(peer) {
            return ClientKey::ip(peer);
        }
        ClientKey::ip(self.forwarded_client(headers).unwrap_or(peer))
    }

    /// The client address from the one configured header: X-Forwarded-For's first
    /// untrusted hop from the right (every header line, in order; the leftmost hop when
    /// all are trusted proxies), or X-Real-IP's single address.
    fn forwarded_client(&self, headers: &HeaderMap) -> Option<IpAddr> {
        if self.ip_header == ClientIpHeader::XRealIp {
            return headers
                .get("x-real-ip")
                .and_then(|v| v.to_str().ok())
                .and_then(parse_hop);
        }
        let mut leftmost_trusted = None;
        for line in headers.get_all("x-forwarded-for").iter().rev() {
            let Ok(line) = line.to_str() else { continue };
            for hop in line.rsplit(',').filter_map(parse_hop) {
                if !self.trusted(hop) {
                    return Some(hop);
                }
                leftmost_trusted = Some(hop);
            }
        }
        leftmost_trusted
    }
}

/// One hop as proxies write it: `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`, `[2001:db8::1]:80`.
/// Anything else ("unknown", obfuscated identifiers, garbage) is no address.
fn parse_hop(raw: &str) -> Option<IpAddr> {
    let raw = raw.trim().trim_matches('"');
    let ip = raw
        .parse::<IpAddr>()
        .ok()
        .or_else(|| raw.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .or_else(|| raw.strip_prefix('[')?.strip_suffix(']')?.parse().ok())?;
    Some(ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn rules(trusted: &[&str]) -> ClientRules {
        ClientRules {
            trusted_proxies: trusted.iter().map(|n| n.parse().unwrap()).collect(),
            ..Default::default()
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarding_headers_are_ignored_from_untrusted_peers() {
        let r = rules(&["10.0.0.0/8"]);
        let spoof = headers(&[("x-forwarded-for", "1.1.1.1"), ("x-real-ip", "2.2.2.2")]);
        assert_eq!(
            r.client_of(ip("203.0.113.9"), &spoof),
            ClientKey::Ip(ip("203.0.113.9"))
        );
        assert_eq!(
            rules(&[]).client_of(ip("10.0.0.1"), &spoof),
            ClientKey::Ip(ip("10.0.0.1"))
        );
    }

    #[test]
    fn xff_is_walked_right_to_left_past_trusted_hops() {
        let r = rules(&["10.0.0.0/8", "192.168.1.1/32"]);
        let h = headers(&[
            ("x-forwarded-for", "6.6.6.6, 7.7.7.7, 10.1.1.1"),
            ("x-forwarded-for", "192.168.1.1"),
        ]);
        // 6.6.6.6 is whatever the client claimed; 7.7.7.7 is who our proxies saw.
        assert_eq!(
            r.client_of(ip("10.0.0.2"), &h),
            ClientKey::Ip(ip("7.7.7.7"))
        );
    }

    #[test]
    fn only_the_configured_header_is_believed() {
        // nginx with only `proxy_set_header X-Real-IP` passes the client's own
        // X-Forwarded-For through: reading it too would let the client pick its key.
        let h = headers(&[("x-forwarded-for", "1.2.3.4"), ("x-real-ip", "8.8.8.8")]);
        let xff = rules(&["10.0.0.0/8"]);
        assert_eq!(
            xff.client_of(ip("10.0.0.2"), &h),
            ClientKey::Ip(ip("1.2.3.4"))
        );
        let real = ClientRules {
            ip_header: ClientIpHeader::XRealIp,
            ..rules(&["10.0.0.0/8"])
        };
        assert_eq!(
            real.client_of(ip("10.0.0.2"), &h),
            ClientKey::Ip(ip("8.8.8.8"))
        );
        // X-Real-IP alone is not read under the default, nor XFF under x-real-ip.
        let only_real = headers(&[("x-real-ip", "8.8.8.8")]);
        assert_eq!(
            xff.client_of(ip("10.0.0.2"), &only_real),
            ClientKey::Ip(ip("10.0.0.2"))
        );
        let only_xff = headers(&[("x-forwarded-for", "1.2.3.4")]);
        assert_eq!(
            real.client_of(ip("10.0.0.2"), &only_xff),
            ClientKey::Ip(ip("10.0.0.2"))
        );
        // All hops trusted: the leftmost one.
        let h = headers(&[("x-forwarded-for", "10.0.0.7, 10.0.0.5")]);
        assert_eq!(
            xff.client_of(ip("10.0.0.2"), &h),
            ClientKey::Ip(ip("10.0.0.7"))
        );
        let h = headers(&[("x-real-ip", "nonsense")]);
        assert_eq!(
            real.client_of(ip("10.0.0.2"), &h),
            ClientKey::Ip(ip("10.0.0.2"))
        );
    }

    #[test]
    fn garbage_hops_are_skipped() {
        let r = rules(&["10.0.0.0/8"]);
        let h = headers(&[(
            "x-forwarded-for",
            "9.9.9.9, unknown,,  , \"[::1\", 999.1.1.1, _hidden, 10.0.0.3:80",
        )]);
        assert_eq!(
            r.client_of(ip("10.0.0.2"), &h),
            ClientKey::Ip(ip("9.9.9.9"))
        );
        let mut bin = HeaderMap::new();
        bin.insert(
            "x-forwarded-for",
            HeaderValue::from_bytes(b"\xff\xfe").unwrap(),
        );
        assert_eq!(
            r.client_of(ip("10.0.0.2"), &bin),
            ClientKey::Ip(ip("10.0.0.2"))
        );
    }

    #[test]
    fn ipv6_hops_and_prefixes() {
        let r = rules(&["2001:db8:ffff::/48", "10.0.0.0/8"]);
        let h = headers(&[(
            "x-forwarded-for",
            "[2001:db8:1:2:aaaa::1]:443, 2001:db8:ffff::1",
        )]);
        assert_eq!(
            r.client_of(ip("2001:db8:ffff::2"), &h),
            ClientKey::Ip(ip("2001:db8:1:2::"))
        );
        // One /64 is one client; the next /64 is another.
        assert_eq!(
            ClientKey::ip(ip("2001:db8:1:2::1")),
            ClientKey::ip(ip("2001:db8:1:2:ffff::9"))
        );
        assert_ne!(
            ClientKey::ip(ip("2001:db8:1:2::1")),
            ClientKey::ip(ip("2001:db8:1:3::1"))
        );
        // A v4-mapped peer is the v4 address, trusted as such.
        let h = headers(&[("x-forwarded-for", "5.5.5.5")]);
        assert_eq!(
            r.client_of(ip("::ffff:10.0.0.1"), &h),
            ClientKey::Ip(ip("5.5.5.5"))
        );
    }

    #[test]
    fn known_api_keys_select_their_quota() {
        let mut r = rules(&[]);
        r.api_key_header = Some(http::HeaderName::from_static("x-api-key"));
        r.api_keys.insert(Arc::from("k1"));
        let h = headers(&[("x-api-key", "k1")]);
        assert_eq!(
            r.client_of(ip("1.2.3.4"), &h),
            ClientKey::ApiKey(Arc::from("k1"))
        );
        let h = headers(&[("x-api-key", "nope")]);
        assert_eq!(r.client_of(ip("1.2.3.4"), &h), ClientKey::Ip(ip("1.2.3.4")));
    }
}
