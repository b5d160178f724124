//! The service's edge: what a peer can make the service hold, bounded before any handler runs.
//!
//! - `accept`: the accept loop: connection caps, TLS handshake and header-read timeouts, a
//!   deadline on every request body, and who the client is;
//! - `caps`: open connections in all and per address, answered 503 past either;
//! - `peer`: trusted proxies, and the client address their forwarding headers name;
//! - `rate`: per-address rate limits on negotiate, hub connects and failed token requests;
//! - `deadline`: the request body wrapper that ends a body whose time is up.
//!
//! A peer is an IP address, IPv6 by its /64 (one host usually holds a whole /64, so counting
//! single IPv6 addresses would give it 2^64 budgets).

mod accept;
mod caps;
mod deadline;
mod peer;
mod rate;

pub use accept::{open_file_limit, serve, EdgeOptions, Secure, TcpPeer};
pub use caps::ConnectionCaps;
pub use peer::{peer_key, TrustedProxies};
pub use rate::{limit as rate_limit, PeerRateLimits, PeerRates};

/// The client's address, as the accept loop put it in the request's extensions (a trusted
/// proxy's forwarding headers already resolved); `None` for a request that did not come
/// through it.
pub fn client_ip(extensions: &http::Extensions) -> Option<std::net::IpAddr> {
    extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip())
}

/// Request headers from `(name, value)` pairs, for the edge's and the admin page's unit tests.
#[cfg(test)]
pub(crate) fn header_map(pairs: &[(&str, &str)]) -> http::HeaderMap {
    let mut map = http::HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            http::HeaderName::from_bytes(name.as_bytes()).expect("header name"),
            http::HeaderValue::from_str(value).expect("header value"),
        );
    }
    map
}

/// Counter of connections refused at accept (label `reason`: `total` or `per_ip`).
pub const REFUSED_METRIC: &str = "pushwarden_connections_refused_total";
/// Counter of requests refused by a per-address rate limit (label `kind`).
pub const RATE_LIMITED_METRIC: &str = "pushwarden_peer_rate_limited_total";
