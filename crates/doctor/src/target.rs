//! The deployment's addresses, derived from the public URL the user gives.

use url::Url;

/// Where the checks go: the vault's base URL and the notification endpoints under it.
#[derive(Clone, Debug)]
pub struct Target {
    /// The vault's base URL, without `/notifications` and without a trailing slash.
    base: Url,
}

impl Target {
    /// Accepts `https://vault.example.com`, a path prefix (`https://host/vault`) and a URL that
    /// already ends in `/notifications` (or `/notifications/hub`, or `/anonymous-hub`).
    pub fn parse(input: &str) -> Result<Self, String> {
        let mut url = Url::parse(input.trim()).map_err(|e| format!("`{input}`: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!(
                "`{input}`: the URL must start with https:// (or http:// for a setup without TLS yet)"
            ));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(format!("`{input}`: no host"));
        }
        url.set_query(None);
        url.set_fragment(None);
        let mut path = url.path().trim_end_matches('/').to_owned();
        for suffix in ["/hub", "/anonymous-hub"] {
            if path.ends_with(&format!("/notifications{suffix}")) {
                path.truncate(path.len() - suffix.len());
            }
        }
        if let Some(stripped) = path.strip_suffix("/notifications") {
            path = stripped.to_owned();
        }
        url.set_path(&path);
        Ok(Target { base: url })
    }

    pub fn is_https(&self) -> bool {
        self.base.scheme() == "https"
    }

    pub fn host(&self) -> &str {
        self.base.host_str().unwrap_or_default()
    }

    /// The host as rustls wants it for SNI and name checks (no IPv6 brackets).
    pub fn server_name(&self) -> String {
        match self.base.host() {
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            _ => self.host().to_owned(),
        }
    }

    pub fn port(&self) -> u16 {
        self.base.port_or_known_default().unwrap_or(443)
    }

    /// `<base><path>`, `path` starting with `/`.
    pub fn url(&self, path: &str) -> Url {
        let mut url = self.base.clone();
        let joined = format!("{}{path}", self.base.path().trim_end_matches('/'));
        url.set_path(&joined);
        url
    }

    /// `<base>/notifications/<hub>` with `query` (already encoded) appended.
    pub fn hub(&self, hub: &str, query: &str) -> Url {
        let mut url = self.url(&format!("/notifications/{hub}"));
        if !query.is_empty() {
            url.set_query(Some(query));
        }
        url
    }

    /// The same URL with `ws`/`wss` for a WebSocket.
    pub fn websocket(url: &Url) -> Url {
        let mut ws = url.clone();
        let scheme = if url.scheme() == "https" { "wss" } else { "ws" };
        // Switching between special schemes always succeeds.
        let _ = ws.set_scheme(scheme);
        ws
    }

    /// `http://host/` on port 80, where a redirect to https is expected.
    pub fn plain_http_root(&self) -> Url {
        let mut url = self.base.clone();
        let _ = url.set_scheme("http");
        let _ = url.set_port(None);
        url.set_path("/");
        url
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_url_and_notifications_url_give_the_same_hubs() {
        for input in [
            "https://vault.example.com",
            "https://vault.example.com/",
            "https://vault.example.com/notifications",
            "https://vault.example.com/notifications/",
            "https://vault.example.com/notifications/hub",
            "https://vault.example.com/notifications/anonymous-hub?x=1",
        ] {
            let target = Target::parse(input).unwrap();
            assert_eq!(
                target.hub("anonymous-hub", "Token=t").as_str(),
                "https://vault.example.com/notifications/anonymous-hub?Token=t",
                "{input}"
            );
        }
    }

    #[test]
    fn path_prefix_and_ports_are_kept() {
        let target = Target::parse("http://127.0.0.1:8080/vault/notifications").unwrap();
        assert_eq!(
            target.hub("hub", "").as_str(),
            "http://127.0.0.1:8080/vault/notifications/hub"
        );
        assert_eq!(
            target.url("/push/send").as_str(),
            "http://127.0.0.1:8080/vault/push/send"
        );
        assert!(!target.is_https());
        assert_eq!(target.port(), 8080);
        let https = Target::parse("https://h:8443").unwrap();
        assert_eq!(https.plain_http_root().as_str(), "http://h/");
        assert_eq!(
            Target::websocket(&https.hub("hub", "")).as_str(),
            "wss://h:8443/notifications/hub"
        );
    }

    #[test]
    fn bad_urls_are_refused() {
        assert!(Target::parse("vault.example.com").is_err());
        assert!(Target::parse("ftp://vault.example.com").is_err());
        assert!(Target::parse("https://").is_err());
    }
}
