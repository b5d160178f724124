//! Who the client is: the TCP peer, or, when the peer is a trusted proxy, the nearest address
//! its `Forwarded` (RFC 7239) or `X-Forwarded-For` header names that is not itself trusted.

use std::net::{IpAddr, Ipv6Addr};

use http::HeaderMap;
use ipnet::IpNet;

/// Forwarding entries looked at, from the right; more are ignored (a bounded walk).
const MAX_HOPS: usize = 16;

/// The addresses whose forwarding headers are believed.
#[derive(Clone, Debug, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Comma-separated addresses or CIDR blocks (`127.0.0.0/8, ::1, 10.0.0.0/8`); `none` (or
    /// nothing) trusts no one.
    pub fn parse(list: &str) -> Result<Self, String> {
        let mut nets = Vec::new();
        if list.trim().eq_ignore_ascii_case("none") {
            return Ok(Self(nets));
        }
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let net = match item.parse::<IpNet>() {
                Ok(net) => net,
                Err(_) => match item.parse::<IpAddr>() {
                    Ok(ip) => IpNet::from(ip),
                    Err(_) => {
                        return Err(format!(
                            "{item:?} is neither an IP address nor a CIDR block"
                        ))
                    }
                },
            };
            nets.push(net.trunc());
        }
        Ok(Self(nets))
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client's address for a request that arrived from `peer`.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let mut client = canonical(peer);
        if self.0.is_empty() || !self.contains(client) {
            return client;
        }
        for hop in forwarded_chain(headers) {
            match hop {
                // An entry a proxy could not fill ("unknown", an obfuscated name): the walk
                // ends at the last address known.
                None => break,
                Some(ip) => {
                    client = canonical(ip);
                    if !self.contains(client) {
                        break;
                    }
                }
            }
        }
        client
    }
}

/// IPv4-mapped IPv6 (`::ffff:a.b.c.d`, what a dual-stack socket reports) as plain IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The key a per-address budget is kept under: IPv4 as is, IPv6 by its /64.
pub fn peer_key(ip: IpAddr) -> IpAddr {
    match canonical(ip) {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

/// The forwarding entries, nearest proxy first (right to left), at most [`MAX_HOPS`].
fn forwarded_chain(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let forwarded: Vec<&str> = headers
        .get_all(http::header::FORWARDED)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let mut hops = Vec::new();
    if !forwarded.is_empty() {
        for element in forwarded.iter().rev().flat_map(|v| v.rsplit(',')) {
            if hops.len() == MAX_HOPS {
                break;
            }
            let value = element.split(';').find_map(|pair| {
                let (name, value) = pair.trim().split_once('=')?;
                name.trim().eq_ignore_ascii_case("for").then_some(value)
            });
            if let Some(value) = value {
                hops.push(parse_node(value.trim().trim_matches('"')));
            }
        }
        return hops;
    }
    for value in headers
        .get_all("x-forwarded-for")
        .iter()
        .rev()
        .filter_map(|v| v.to_str().ok())
    {
        for item in value.rsplit(',') {
            if hops.len() == MAX_HOPS {
                return hops;
            }
            hops.push(parse_node(item.trim()));
        }
    }
    hops
}

/// Whether the nearest proxy says the client came over HTTPS (`X-Forwarded-Proto`, else the
/// last `proto` of `Forwarded`). Only meaningful from a trusted proxy.
pub(super) fn forwarded_https(headers: &HeaderMap) -> bool {
    let nearest = |name: http::header::HeaderName| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .last()
            .map(|s| s.trim().to_owned())
    };
    if let Some(proto) = nearest(http::HeaderName::from_static("x-forwarded-proto")) {
        return proto.eq_ignore_ascii_case("https");
    }
    nearest(http::header::FORWARDED)
        .and_then(|element| {
            element.split(';').find_map(|pair| {
                let (name, value) = pair.trim().split_once('=')?;
                name.trim()
                    .eq_ignore_ascii_case("proto")
                    .then(|| value.trim().trim_matches('"').eq_ignore_ascii_case("https"))
            })
        })
        .unwrap_or(false)
}

/// `1.2.3.4`, `1.2.3.4:80`, `[2001:db8::1]`, `[2001:db8::1]:80` or a bare IPv6 address.
fn parse_node(node: &str) -> Option<IpAddr> {
    if let Some(rest) = node.strip_prefix('[') {
        return rest.split_once(']')?.0.parse().ok();
    }
    if let Ok(ip) = node.parse() {
        return Some(ip);
    }
    let (host, port) = node.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edge::header_map as headers;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn untrusted_peers_are_their_own_address_whatever_they_claim() {
        let trusted = TrustedProxies::parse("10.0.0.0/8").unwrap();
        let h = headers(&[("x-forwarded-for", "1.1.1.1")]);
        assert_eq!(trusted.client(ip("203.0.113.9"), &h), ip("203.0.113.9"));
        let none = TrustedProxies::parse("none").unwrap();
        assert_eq!(none.client(ip("127.0.0.1"), &h), ip("127.0.0.1"));
    }

    #[test]
    fn the_nearest_untrusted_hop_is_the_client() {
        let trusted = TrustedProxies::parse("127.0.0.1, 10.0.0.0/8").unwrap();
        // The client forged the first entry; the proxies appended the rest.
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 198.51.100.7, 10.1.2.3")]);
        assert_eq!(trusted.client(ip("127.0.0.1"), &h), ip("198.51.100.7"));
        let h = headers(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-for", "198.51.100.7:4711"),
        ]);
        assert_eq!(trusted.client(ip("127.0.0.1"), &h), ip("198.51.100.7"));
        // Every hop trusted: the furthest one.
        let h = headers(&[("x-forwarded-for", "10.0.0.5")]);
        assert_eq!(trusted.client(ip("127.0.0.1"), &h), ip("10.0.0.5"));
        // No header: the proxy itself.
        assert_eq!(
            trusted.client(ip("127.0.0.1"), &HeaderMap::new()),
            ip("127.0.0.1")
        );
    }

    #[test]
    fn forwarded_wins_over_x_forwarded_for() {
        let trusted = TrustedProxies::parse("::1").unwrap();
        let h = headers(&[
            (
                "forwarded",
                "for=6.6.6.6, for=\"[2001:db8::7]:4711\";proto=https",
            ),
            ("x-forwarded-for", "198.51.100.7"),
        ]);
        assert_eq!(trusted.client(ip("::1"), &h), ip("2001:db8::7"));
        let h = headers(&[("forwarded", "for=6.6.6.6, for=unknown")]);
        assert_eq!(trusted.client(ip("::1"), &h), ip("::1"));
    }

    #[test]
    fn the_nearest_proxy_names_the_scheme() {
        assert!(forwarded_https(&headers(&[("x-forwarded-proto", "https")])));
        assert!(!forwarded_https(&headers(&[(
            "x-forwarded-proto",
            "https, http"
        )])));
        assert!(forwarded_https(&headers(&[(
            "forwarded",
            "for=6.6.6.6;proto=http, for=1.2.3.4;proto=https"
        )])));
        assert!(!forwarded_https(&HeaderMap::new()));
    }

    #[test]
    fn mapped_addresses_and_v6_prefixes() {
        let trusted = TrustedProxies::parse("127.0.0.0/8").unwrap();
        assert!(trusted.contains(ip("::ffff:127.0.0.1")));
        assert_eq!(peer_key(ip("2001:db8:1:2:3:4:5:6")), ip("2001:db8:1:2::"));
        assert_eq!(peer_key(ip("::ffff:192.0.2.1")), ip("192.0.2.1"));
        assert!(TrustedProxies::parse("10.0.0.0/8, nonsense").is_err());
    }
}
