//! The SSRF guard: which addresses a user-supplied push endpoint (Web Push, UnifiedPush) may
//! reach, checked on literal IPs at registration and on every resolved address at connect time.
//!
//! Refused: every range of the IANA IPv4 and IPv6 Special-Purpose Address Registries, multicast,
//! IPv6 site-local, and every IPv6 address outside global unicast `2000::/3`. Ranges that embed
//! an IPv4 address (IPv4-mapped, IPv4-compatible, IPv4-translated, NAT64, 6to4, Teredo) are
//! refused whole, whatever IPv4 address they carry: a push service has no reason to publish one,
//! and the hosts that translate them could be ours.
//!
//! [`GuardedResolver`] applies the guard to what a name resolves to: as the HTTP client's
//! resolver (direct connections) and, when a proxy is configured, as a check before the request
//! is handed to the proxy (which resolves the name again itself).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

/// An IPv4 range: network, prefix length, what it is.
struct V4Range(u32, u8, &'static str);
/// An IPv6 range.
struct V6Range(u128, u8, &'static str);

const fn v4(a: u8, b: u8, c: u8, d: u8) -> u32 {
    u32::from_be_bytes([a, b, c, d])
}

const fn v6(segments: [u16; 8]) -> u128 {
    let mut n = 0u128;
    let mut i = 0;
    while i < 8 {
        n = (n << 16) | segments[i] as u128;
        i += 1;
    }
    n
}

/// IANA IPv4 Special-Purpose Address Registry (every entry, globally reachable or not), plus
/// multicast.
const V4_REFUSED: &[V4Range] = &[
    V4Range(v4(0, 0, 0, 0), 8, "\"this network\" (0.0.0.0/8)"),
    V4Range(v4(10, 0, 0, 0), 8, "private (10.0.0.0/8)"),
    V4Range(
        v4(100, 64, 0, 0),
        10,
        "shared address space (100.64.0.0/10)",
    ),
    V4Range(v4(127, 0, 0, 0), 8, "loopback (127.0.0.0/8)"),
    V4Range(v4(169, 254, 0, 0), 16, "link-local (169.254.0.0/16)"),
    V4Range(v4(172, 16, 0, 0), 12, "private (172.16.0.0/12)"),
    V4Range(
        v4(192, 0, 0, 0),
        24,
        "IETF protocol assignments (192.0.0.0/24)",
    ),
    V4Range(v4(192, 0, 2, 0), 24, "documentation (192.0.2.0/24)"),
    V4Range(v4(192, 31, 196, 0), 24, "AS112-v4 (192.31.196.0/24)"),
    V4Range(v4(192, 52, 193, 0), 24, "AMT (192.52.193.0/24)"),
    V4Range(
        v4(192, 88, 99, 0),
        24,
        "6to4 relay anycast (192.88.99.0/24)",
    ),
    V4Range(v4(192, 168, 0, 0), 16, "private (192.168.0.0/16)"),
    V4Range(
        v4(192, 175, 48, 0),
        24,
        "AS112 direct delegation (192.175.48.0/24)",
    ),
    V4Range(v4(198, 18, 0, 0), 15, "benchmarking (198.18.0.0/15)"),
    V4Range(v4(198, 51, 100, 0), 24, "documentation (198.51.100.0/24)"),
    V4Range(v4(203, 0, 113, 0), 24, "documentation (203.0.113.0/24)"),
    V4Range(v4(224, 0, 0, 0), 4, "multicast (224.0.0.0/4)"),
    V4Range(v4(240, 0, 0, 0), 4, "reserved (240.0.0.0/4)"),
    V4Range(v4(255, 255, 255, 255), 32, "limited broadcast"),
];

/// IANA IPv6 Special-Purpose Address Registry (every entry), plus multicast and site-local.
/// Everything outside `2000::/3` is refused as well (see [`v6_refusal`]); the entries there are
/// listed anyway so that a refusal names the range.
const V6_REFUSED: &[V6Range] = &[
    V6Range(0, 128, "unspecified (::)"),
    V6Range(1, 128, "loopback (::1)"),
    V6Range(0, 96, "IPv4-compatible (::/96)"),
    V6Range(
        v6([0, 0, 0, 0, 0, 0xffff, 0, 0]),
        96,
        "IPv4-mapped (::ffff:0:0/96)",
    ),
    V6Range(
        v6([0, 0, 0, 0, 0xffff, 0, 0, 0]),
        96,
        "IPv4-translated (::ffff:0:0:0/96)",
    ),
    V6Range(
        v6([0x64, 0xff9b, 0, 0, 0, 0, 0, 0]),
        96,
        "NAT64 (64:ff9b::/96)",
    ),
    V6Range(
        v6([0x64, 0xff9b, 1, 0, 0, 0, 0, 0]),
        48,
        "local-use NAT64 (64:ff9b:1::/48)",
    ),
    V6Range(
        v6([0x100, 0, 0, 0, 0, 0, 0, 0]),
        64,
        "discard-only (100::/64)",
    ),
    V6Range(
        v6([0x100, 0, 0, 1, 0, 0, 0, 0]),
        64,
        "dummy prefix (100:0:0:1::/64)",
    ),
    V6Range(v6([0x2001, 0, 0, 0, 0, 0, 0, 0]), 32, "Teredo (2001::/32)"),
    V6Range(
        v6([0x2001, 0, 0, 0, 0, 0, 0, 0]),
        23,
        "IETF protocol assignments (2001::/23)",
    ),
    V6Range(
        v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0]),
        32,
        "documentation (2001:db8::/32)",
    ),
    V6Range(v6([0x2002, 0, 0, 0, 0, 0, 0, 0]), 16, "6to4 (2002::/16)"),
    V6Range(
        v6([0x2620, 0x4f, 0x8000, 0, 0, 0, 0, 0]),
        48,
        "AS112 direct delegation (2620:4f:8000::/48)",
    ),
    V6Range(
        v6([0x3fff, 0, 0, 0, 0, 0, 0, 0]),
        20,
        "documentation (3fff::/20)",
    ),
    V6Range(
        v6([0x5f00, 0, 0, 0, 0, 0, 0, 0]),
        16,
        "segment routing SIDs (5f00::/16)",
    ),
    V6Range(
        v6([0xfc00, 0, 0, 0, 0, 0, 0, 0]),
        7,
        "unique local (fc00::/7)",
    ),
    V6Range(
        v6([0xfe80, 0, 0, 0, 0, 0, 0, 0]),
        10,
        "link-local (fe80::/10)",
    ),
    V6Range(
        v6([0xfec0, 0, 0, 0, 0, 0, 0, 0]),
        10,
        "site-local (fec0::/10)",
    ),
    V6Range(v6([0xff00, 0, 0, 0, 0, 0, 0, 0]), 8, "multicast (ff00::/8)"),
];

fn v4_refusal(ip: Ipv4Addr) -> Option<&'static str> {
    let n = u32::from(ip);
    V4_REFUSED
        .iter()
        .find(|V4Range(net, len, _)| {
            let mask = u32::MAX.checked_shl(32 - u32::from(*len)).unwrap_or(0);
            n & mask == *net
        })
        .map(|r| r.2)
}

fn v6_refusal(ip: Ipv6Addr) -> Option<&'static str> {
    let n = u128::from(ip);
    let listed = V6_REFUSED
        .iter()
        .find(|V6Range(net, len, _)| {
            let mask = u128::MAX.checked_shl(128 - u32::from(*len)).unwrap_or(0);
            n & mask == *net
        })
        .map(|r| r.2);
    // Only 2000::/3 is global unicast; anything else is reserved, local or special.
    listed.or((n >> 125 != 1).then_some("not global unicast (outside 2000::/3)"))
}

/// Why `ip` may not be reached from a user-supplied endpoint, or `None` if it may.
pub fn refusal(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_refusal(v4),
        IpAddr::V6(v6) => v6_refusal(v6),
    }
}

/// Whether `ip` is in a special-purpose range (loopback, private, link-local, documentation,
/// reserved, multicast, or an IPv6 form embedding IPv4) and so not to be reached.
pub fn is_special_purpose(ip: IpAddr) -> bool {
    refusal(ip).is_some()
}

/// A name whose addresses the guard refuses.
#[derive(Debug, thiserror::Error)]
#[error("{host} resolves to a special-purpose address: {address} is {range}")]
pub struct Refused {
    pub host: String,
    pub address: IpAddr,
    pub range: &'static str,
}

/// Resolves endpoint host names, through the system resolver or a fixed table (tests), and
/// applies the guard to the answers unless private endpoints are allowed.
#[derive(Clone, Default)]
pub struct GuardedResolver {
    overrides: Arc<HashMap<String, Vec<IpAddr>>>,
    allow_private: bool,
}

impl GuardedResolver {
    /// `overrides` answers for these names without DNS (the guard still applies to them).
    pub fn new(overrides: HashMap<String, Vec<IpAddr>>, allow_private: bool) -> Self {
        Self {
            overrides: Arc::new(
                overrides
                    .into_iter()
                    .map(|(name, ips)| (normalise(&name), ips))
                    .collect(),
            ),
            allow_private,
        }
    }

    /// Every address `host` resolves to, unfiltered.
    pub async fn lookup(&self, host: &str) -> std::io::Result<Vec<IpAddr>> {
        if let Some(ips) = self.overrides.get(&normalise(host)) {
            return Ok(ips.clone());
        }
        Ok(tokio::net::lookup_host((host, 0))
            .await?
            .map(|a| a.ip())
            .collect())
    }

    /// For a direct connection: the addresses of `host` the guard allows; an error if none is.
    /// A name with both public and special-purpose addresses is reached on the public ones.
    pub async fn resolve_allowed(
        &self,
        host: &str,
    ) -> Result<Vec<IpAddr>, Box<dyn std::error::Error + Send + Sync>> {
        let all = self.lookup(host).await?;
        if self.allow_private {
            return Ok(all);
        }
        let mut first_refused = None;
        let allowed: Vec<IpAddr> = all
            .into_iter()
            .filter(|ip| match refusal(*ip) {
                Some(range) => {
                    first_refused.get_or_insert((*ip, range));
                    false
                }
                None => true,
            })
            .collect();
        match (allowed.is_empty(), first_refused) {
            (true, Some((address, range))) => Err(Box::new(Refused {
                host: host.to_owned(),
                address,
                range,
            })),
            (true, None) => Err(format!("{host} has no address").into()),
            (false, _) => Ok(allowed),
        }
    }

    /// For a request sent through a proxy, which resolves `host` itself: refuses if *any*
    /// address of `host` is special-purpose, since the proxy may pick that one.
    ///
    /// The gap that remains: the proxy resolves the name again, and a name whose owner answers
    /// with a public address to us and a private one a moment later to the proxy (DNS
    /// rebinding, short TTLs) still gets through. Only the proxy can close it (e.g. by refusing
    /// private destinations itself); a direct connection has no such gap because the address
    /// checked is the address connected to.
    pub async fn check_all(&self, host: &str) -> Result<(), CheckError> {
        if self.allow_private {
            return Ok(());
        }
        let all = self.lookup(host).await.map_err(CheckError::Lookup)?;
        if all.is_empty() {
            return Err(CheckError::Lookup(std::io::Error::other(format!(
                "{host} has no address"
            ))));
        }
        for address in all {
            if let Some(range) = refusal(address) {
                return Err(CheckError::Refused(Refused {
                    host: host.to_owned(),
                    address,
                    range,
                }));
            }
        }
        Ok(())
    }
}

/// Why [`GuardedResolver::check_all`] did not pass a name.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("resolving failed: {0}")]
    Lookup(std::io::Error),
    #[error(transparent)]
    Refused(Refused),
}

fn normalise(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let resolver = self.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let ips = resolver.resolve_allowed(&host).await?;
            let addrs: reqwest::dns::Addrs =
                Box::new(ips.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}

/// The [`Refused`] somewhere in an error's chain of sources, if the guard caused it.
pub fn refused_in<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a Refused> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(refused) = e.downcast_ref::<Refused>() {
            return Some(refused);
        }
        current = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ranges that must be refused, spelled independently of the tables above.
    const REFUSED_RANGES: &[&str] = &[
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.31.196.0/24",
        "192.52.193.0/24",
        "192.88.99.0/24",
        "192.168.0.0/16",
        "192.175.48.0/24",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",
        "240.0.0.0/4",
        "255.255.255.255/32",
        "::/128",
        "::1/128",
        "::/96",
        "::ffff:0:0/96",
        "::ffff:0:0:0/96",
        "64:ff9b::/96",
        "64:ff9b:1::/48",
        "100::/64",
        "2001::/23",
        "2001::/32",
        "2001:db8::/32",
        "2002::/16",
        "2620:4f:8000::/48",
        "3fff::/20",
        "5f00::/16",
        "fc00::/7",
        "fe80::/10",
        "fec0::/10",
        "ff00::/8",
        // Not global unicast: the complement of 2000::/3.
        "::/3",
        "4000::/2",
        "8000::/1",
    ];

    fn cidr(s: &str) -> (IpAddr, IpAddr) {
        let (net, len) = s.split_once('/').expect("cidr");
        let len: u32 = len.parse().expect("prefix");
        match net.parse::<IpAddr>().expect("network") {
            IpAddr::V4(n) => {
                let host = u32::MAX.checked_shr(len).unwrap_or(0);
                let first = u32::from(n) & !host;
                (IpAddr::V4(first.into()), IpAddr::V4((first | host).into()))
            }
            IpAddr::V6(n) => {
                let host = u128::MAX.checked_shr(len).unwrap_or(0);
                let first = u128::from(n) & !host;
                (IpAddr::V6(first.into()), IpAddr::V6((first | host).into()))
            }
        }
    }

    fn in_listed(ip: IpAddr) -> bool {
        REFUSED_RANGES.iter().any(|r| {
            let (first, last) = cidr(r);
            match (ip, first, last) {
                (IpAddr::V4(ip), IpAddr::V4(a), IpAddr::V4(b)) => a <= ip && ip <= b,
                (IpAddr::V6(ip), IpAddr::V6(a), IpAddr::V6(b)) => a <= ip && ip <= b,
                _ => false,
            }
        })
    }

    fn step(ip: IpAddr, up: bool) -> Option<IpAddr> {
        match ip {
            IpAddr::V4(a) => {
                let n = u32::from(a);
                let n = if up {
                    n.checked_add(1)
                } else {
                    n.checked_sub(1)
                }?;
                Some(IpAddr::V4(n.into()))
            }
            IpAddr::V6(a) => {
                let n = u128::from(a);
                let n = if up {
                    n.checked_add(1)
                } else {
                    n.checked_sub(1)
                }?;
                Some(IpAddr::V6(n.into()))
            }
        }
    }

    /// Every range: its first and last address are refused; the address just outside it on
    /// either side is allowed unless another listed range holds it.
    #[test]
    fn every_range_boundary() {
        for range in REFUSED_RANGES {
            let (first, last) = cidr(range);
            assert!(is_special_purpose(first), "{range}: first {first} allowed");
            assert!(is_special_purpose(last), "{range}: last {last} allowed");
            for outside in [step(first, false), step(last, true)].into_iter().flatten() {
                assert_eq!(
                    is_special_purpose(outside),
                    in_listed(outside),
                    "{range}: neighbour {outside}"
                );
            }
        }
    }

    /// Issue 13, row 8: each was accepted at registration and connected to.
    #[test]
    fn row_8_addresses_are_refused() {
        for (ip, range) in [
            ("::7f00:1", "IPv4-compatible"),
            ("64:ff9b::7f00:1", "NAT64"),
            ("2002:7f00:1::1", "6to4"),
            ("::ffff:0:7f00:1", "IPv4-translated"),
            ("fec0::1", "site-local"),
            ("100::1", "discard-only"),
            ("198.18.0.1", "benchmarking"),
            ("192.0.0.1", "IETF protocol assignments"),
            ("240.0.0.1", "reserved"),
            ("192.0.2.1", "documentation"),
            // And the embedded-IPv4 forms of an address we must never reach.
            ("::ffff:127.0.0.1", "IPv4-mapped"),
            ("::ffff:169.254.169.254", "IPv4-mapped"),
            ("64:ff9b:1::a9fe:a9fe", "local-use NAT64"),
            // Teredo: server 65.54.227.120, obfuscated client 127.0.0.1 (ffff ffff ^ 7f00 0001).
            ("2001:0:4136:e378:8000:63bf:80ff:fffe", "Teredo"),
        ] {
            let ip: IpAddr = ip.parse().expect(ip);
            let why = refusal(ip).unwrap_or_else(|| panic!("{ip} allowed"));
            assert!(why.contains(range), "{ip}: {why}");
        }
    }

    #[test]
    fn public_addresses_are_allowed() {
        for ip in [
            "1.1.1.1",
            "8.8.8.8",
            "9.255.255.255",
            "11.0.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.0.1.0",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
            "2001:4860:4860::8888",
            "2606:4700:4700::1111",
            "2a00:1450:4001::1",
            "2001:200::1",
            "2000::1",
            "3ffe:ffff::1",
        ] {
            let ip: IpAddr = ip.parse().expect(ip);
            assert_eq!(refusal(ip), None, "{ip}");
        }
    }

    #[tokio::test]
    async fn resolver_filters_and_check_all_refuses_any() {
        let public: IpAddr = "203.0.114.1".parse().expect("ip");
        let loopback: IpAddr = "127.0.0.1".parse().expect("ip");
        let resolver = GuardedResolver::new(
            HashMap::from([
                ("mixed.example".to_owned(), vec![loopback, public]),
                ("inside.example".to_owned(), vec![loopback]),
            ]),
            false,
        );
        // Direct: the public address of a mixed name is kept, a private-only name refused.
        assert_eq!(
            resolver
                .resolve_allowed("Mixed.Example.")
                .await
                .expect("mixed"),
            vec![public]
        );
        let err = resolver
            .resolve_allowed("inside.example")
            .await
            .expect_err("inside");
        assert!(refused_in(err.as_ref()).is_some(), "{err}");
        // Through a proxy: any special-purpose address refuses the name.
        assert!(matches!(
            resolver.check_all("mixed.example").await,
            Err(CheckError::Refused(_))
        ));
        // Allowed private endpoints pass everything.
        let open = GuardedResolver::new(
            HashMap::from([("inside.example".to_owned(), vec![loopback])]),
            true,
        );
        assert!(open.check_all("inside.example").await.is_ok());
    }
}
