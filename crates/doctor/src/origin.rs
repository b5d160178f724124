//! Who answered: pushwarden itself or the proxy in front of it, and which proxy.
//!
//! pushwarden marks every answer of its own with `x-pushwarden` (a proxy passes unknown
//! response headers on and would not invent this one). An answer without it comes from
//! something else; the proxy is named from its `Server`/`Via` headers or from the error page
//! it writes.

use http::{HeaderMap, StatusCode};

use crate::verdict::Proxy;

/// The response header pushwarden puts on its own answers.
pub const MARKER_HEADER: &str = "x-pushwarden";

/// An HTTP answer, as far as the checks look at it.
#[derive(Clone, Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// The start of the body (bounded; see [`crate::net::BODY_LIMIT`]).
    pub body: Vec<u8>,
}

/// Who wrote an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    Pushwarden,
    /// Not pushwarden: the proxy (named when recognised) or a server behind it.
    Other(Option<Proxy>),
}

impl Answer {
    pub fn origin(&self) -> Origin {
        if self.headers.contains_key(MARKER_HEADER) {
            Origin::Pushwarden
        } else {
            Origin::Other(recognise(&self.headers, &self.body))
        }
    }

    /// The body as text, trimmed and cut short, for details.
    pub fn body_text(&self) -> String {
        let text = String::from_utf8_lossy(&self.body);
        let text = text.trim();
        let mut short: String = text.chars().take(120).collect();
        if short.len() < text.len() {
            short.push('…');
        }
        short
    }

    /// `404 from nginx`, `400 from pushwarden ("Connection ID required")`, `502 from the
    /// proxy or a server behind it`.
    pub fn describe(&self) -> String {
        let status = self.status.as_u16();
        match self.origin() {
            Origin::Pushwarden => {
                let body = self.body_text();
                if body.is_empty() {
                    format!("{status} from pushwarden")
                } else {
                    format!("{status} from pushwarden ({body})")
                }
            }
            Origin::Other(Some(proxy)) => format!("{status} from {}, not pushwarden", proxy.name()),
            Origin::Other(None) => {
                format!("{status} from the proxy or a server behind it, not pushwarden")
            }
        }
    }
}

/// Names the proxy from its headers or its error page, if it says who it is.
pub fn recognise(headers: &HeaderMap, body: &[u8]) -> Option<Proxy> {
    let header = |name: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::to_ascii_lowercase)
            .collect::<Vec<_>>()
            .join(" ")
    };
    let server = header("server");
    let via = header("via");
    for (needle, proxy) in [
        ("nginx", Proxy::Nginx),
        ("openresty", Proxy::Nginx),
        ("caddy", Proxy::Caddy),
        ("apache", Proxy::Apache),
        ("haproxy", Proxy::Haproxy),
        ("traefik", Proxy::Traefik),
    ] {
        if server.contains(needle) || via.contains(needle) {
            return Some(proxy);
        }
    }
    let body = String::from_utf8_lossy(&body[..body.len().min(4096)]).to_ascii_lowercase();
    if body.contains("<center>nginx") || body.contains("<center>openresty") {
        return Some(Proxy::Nginx);
    }
    if body.contains("<address>apache") || body.contains("apache/2") {
        return Some(Proxy::Apache);
    }
    // HAProxy's built-in error pages: a bare <h1> and one sentence, no Server header.
    if body.contains("<html><body><h1>")
        && (body.contains("no server is available to handle this request")
            || body.contains("the server didn't respond in time")
            || body.contains("your browser sent an invalid request"))
    {
        return Some(Proxy::Haproxy);
    }
    // Traefik writes Go's plain-text answers and no Server header.
    if matches!(
        body.trim(),
        "404 page not found" | "bad gateway" | "gateway timeout" | "service unavailable"
    ) && server.is_empty()
    {
        return Some(Proxy::Traefik);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn answer(status: u16, headers: &[(&'static str, &'static str)], body: &str) -> Answer {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.insert(*k, HeaderValue::from_static(v));
        }
        Answer {
            status: StatusCode::from_u16(status).unwrap(),
            headers: map,
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn the_marker_means_pushwarden_even_behind_a_named_proxy() {
        let a = answer(
            400,
            &[("server", "nginx/1.24.0"), ("x-pushwarden", "1")],
            "Connection ID required",
        );
        assert_eq!(a.origin(), Origin::Pushwarden);
        assert_eq!(a.describe(), "400 from pushwarden (Connection ID required)");
    }

    #[test]
    fn proxies_are_named_from_headers_or_pages() {
        let page = "<html>\r\n<head><title>404 Not Found</title></head>\r\n<body>\r\n<center><h1>404 Not Found</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";
        assert_eq!(
            answer(404, &[], page).origin(),
            Origin::Other(Some(Proxy::Nginx))
        );
        assert_eq!(
            answer(502, &[("server", "Caddy")], "").origin(),
            Origin::Other(Some(Proxy::Caddy))
        );
        assert_eq!(
            answer(200, &[("via", "1.1 Caddy")], "").origin(),
            Origin::Other(Some(Proxy::Caddy))
        );
        assert_eq!(
            answer(
                404,
                &[],
                "<address>Apache/2.4.62 (Debian) Server at h Port 80</address>"
            )
            .origin(),
            Origin::Other(Some(Proxy::Apache))
        );
        assert_eq!(
            answer(503, &[], "<html><body><h1>503 Service Unavailable</h1>\nNo server is available to handle this request.\n</body></html>\n").origin(),
            Origin::Other(Some(Proxy::Haproxy))
        );
        assert_eq!(
            answer(404, &[], "404 page not found\n").origin(),
            Origin::Other(Some(Proxy::Traefik))
        );
        assert_eq!(answer(404, &[], "{}").origin(), Origin::Other(None));
        assert_eq!(
            answer(504, &[("server", "nginx")], "").describe(),
            "504 from nginx, not pushwarden"
        );
    }
}
