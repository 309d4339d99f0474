//! Who a request is charged to.
//!
//! Forwarding headers are believed only from a trusted proxy: anyone else could name any
//! address and dodge their own limits. IPv6 clients are keyed by their /64, since one
//! subscriber usually holds a whole /64 and would otherwise mint limitless fresh keys.
//!
//! A loopback or private peer that connects directly is a `Local` client, exempt from
//! the per-client limits under `rate_limit.local_clients = "unlimited"`. A request
//! carrying a forwarding header never is: it came through a proxy, and behind a proxy on
//! this host or network that is not in `trusted_proxies` every public client has the
//! proxy's local address. Such a request is limited by that address and reported.

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
    /// A loopback or private peer that sent no forwarding header, under
    /// `local_clients = "unlimited"`: no per-client rate or concurrency limit; lanes,
    /// fairness and the cache see it as any other client. Keyed as `Ip` is.
    Local(IpAddr),
}

impl ClientKey {
    /// The key for an address: IPv4-mapped IPv6 is read as IPv4, IPv6 is cut to its /64.
    pub(crate) fn ip(addr: IpAddr) -> ClientKey {
        ClientKey::Ip(match addr.to_canonical() {
            IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
            v4 => v4,
        })
    }

    fn local(addr: IpAddr) -> ClientKey {
        match ClientKey::ip(addr) {
            ClientKey::Ip(ip) => ClientKey::Local(ip),
            other => other,
        }
    }
}

/// Headers a proxy adds. A direct client (a REST server's RPC client, cosmjs, curl)
/// sends none of them.
const FORWARDING_HEADERS: [&str; 6] = [
    "forwarded",
    "x-forwarded-for",
    "x-real-ip",
    "x-forwarded-host",
    "x-forwarded-proto",
    "via",
];

/// Loopback, RFC 1918 and IPv6 unique-local addresses: this host or its private network.
pub(super) fn is_local(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_private(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.is_unique_local(),
    }
}

/// Who a request is charged to, and what the operator should hear about it.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Identified {
    pub key: ClientKey,
    /// The forwarding header a local peer outside `trusted_proxies` sent: a proxy that
    /// should be trusted, or its clients all count as this one address.
    pub untrusted_forwarding: Option<&'static str>,
}

/// What `client_of` needs from the config, swapped as one on reload.
#[derive(Debug, Default)]
pub(super) struct ClientRules {
    pub trusted_proxies: Vec<IpNet>,
    pub ip_header: ClientIpHeader,
    pub api_key_header: Option<http::HeaderName>,
    pub api_keys: HashSet<Arc<str>>,
    /// `rate_limit.local_clients = "unlimited"`.
    pub local_unlimited: bool,
}

impl ClientRules {
    fn trusted(&self, ip: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|net| net.contains(&ip))
    }

    pub(super) fn is_trusted(&self, peer: IpAddr) -> bool {
        self.trusted(peer.to_canonical())
    }

    #[cfg(test)]
    fn client_of(&self, peer: IpAddr, headers: &HeaderMap) -> ClientKey {
        self.identify(peer, headers).key
    }

    pub(super) fn identify(&self, peer: IpAddr, headers: &HeaderMap) -> Identified {
        let peer = peer.to_canonical();
        let trusted = self.trusted(peer);
        // Only a local peer's headers are looked at: elsewhere a forwarding header is
        // a client's own business.
        let forwarding = is_local(peer)
            .then(|| {
                FORWARDING_HEADERS
                    .into_iter()
                    .find(|h| headers.contains_key(*h))
            })
            .flatten();
        let untrusted_forwarding = forwarding.filter(|_| !trusted);
        let key = if let Some(key) = self.api_key(headers) {
            key
        } else if trusted {
            ClientKey::ip(self.forwarded_client(headers).unwrap_or(peer))
        } else if self.local_unlimited && forwarding.is_none() && is_local(peer) {
            ClientKey::local(peer)
        } else {
            ClientKey::ip(peer)
        };
        Identified {
            key,
            untrusted_forwarding,
        }
    }

    fn api_key(&self, headers: &HeaderMap) -> Option<ClientKey> {
        let name = self.api_key_header.as_ref()?;
        let key = headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|k| self.api_keys.get(k.trim()))?;
        Some(ClientKey::ApiKey(key.clone()))
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
    fn direct_local_peers_are_local_clients_when_unlimited() {
        let r = ClientRules {
            local_unlimited: true,
            ..rules(&["10.9.0.0/16"])
        };
        let none = HeaderMap::new();
        for local in ["127.0.0.1", "10.1.2.3", "172.16.0.9", "192.168.1.1", "::1"] {
            let seen = r.identify(ip(local), &none);
            // Keyed as an address is: ::1 by its /64.
            assert_eq!(seen.key, ClientKey::local(ip(local)), "{local}");
            assert!(matches!(seen.key, ClientKey::Local(_)));
            assert_eq!(seen.untrusted_forwarding, None);
        }
        assert_eq!(
            r.client_of(ip("fd00::1:2:3:4"), &none),
            ClientKey::Local(ip("fd00::"))
        );
        assert_eq!(
            r.client_of(ip("::ffff:192.168.1.1"), &none),
            ClientKey::Local(ip("192.168.1.1"))
        );
        for public in ["203.0.113.9", "100.64.0.1", "2001:db8::1", "172.32.0.1"] {
            assert_eq!(r.client_of(ip(public), &none), ClientKey::ip(ip(public)));
        }
        // A trusted proxy's own address is never exempt, headers or not.
        assert_eq!(
            r.client_of(ip("10.9.0.1"), &none),
            ClientKey::Ip(ip("10.9.0.1"))
        );
        // Limited: a local peer is an address like any other.
        assert_eq!(
            rules(&[]).client_of(ip("127.0.0.1"), &none),
            ClientKey::Ip(ip("127.0.0.1"))
        );
    }

    #[test]
    fn a_local_peer_that_forwards_is_limited_and_reported_unless_trusted() {
        let r = ClientRules {
            local_unlimited: true,
            ..rules(&["10.9.0.0/16"])
        };
        for (name, value) in [
            ("x-forwarded-for", "198.51.100.7"),
            ("x-real-ip", "198.51.100.7"),
            ("forwarded", "for=198.51.100.7"),
            ("via", "1.1 nginx"),
        ] {
            // An untrusted nginx on this host: its clients all arrive from 127.0.0.1.
            let seen = r.identify(ip("127.0.0.1"), &headers(&[(name, value)]));
            assert_eq!(seen.key, ClientKey::Ip(ip("127.0.0.1")), "{name}");
            assert_eq!(seen.untrusted_forwarding, Some(name));
        }
        let xff = headers(&[("x-forwarded-for", "198.51.100.7")]);
        // The same from a trusted proxy is the normal path: nothing to report.
        let seen = r.identify(ip("10.9.0.1"), &xff);
        assert_eq!(seen.key, ClientKey::Ip(ip("198.51.100.7")));
        assert_eq!(seen.untrusted_forwarding, None);
        // A public client's own forwarding headers are its business.
        let seen = r.identify(ip("203.0.113.9"), &xff);
        assert_eq!(seen.key, ClientKey::Ip(ip("203.0.113.9")));
        assert_eq!(seen.untrusted_forwarding, None);
        // Reported whatever local_clients says.
        let seen = rules(&[]).identify(ip("192.168.0.2"), &xff);
        assert_eq!(seen.untrusted_forwarding, Some("x-forwarded-for"));
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
