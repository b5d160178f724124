//! The configuration lines that fix each problem, per proxy. pushwarden is assumed at
//! `127.0.0.1:5000` (its default listen address); `/notifications/` is forwarded unchanged,
//! since pushwarden answers there as well as at its root.

use serde::Serialize;

use crate::verdict::{Problem, Proxy};

/// Lines for one proxy (or, with `proxy: None`, for whatever is in front).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Fix {
    /// `nginx`, `caddy`, `apache`, `haproxy`, `traefik`; `any` when it is not about a proxy.
    pub proxy: &'static str,
    pub lines: Vec<&'static str>,
}

/// The fixes for `problem`: for `proxy` alone when it is known, else for all five. Problems
/// that no proxy line fixes (the clock) have one `any` entry.
pub fn for_problem(problem: Problem, proxy: Option<Proxy>) -> Vec<Fix> {
    if let Some(lines) = independent_of_proxy(problem) {
        return vec![Fix {
            proxy: "any",
            lines,
        }];
    }
    let proxies: Vec<Proxy> = match proxy {
        Some(p) => vec![p],
        None => Proxy::ALL.to_vec(),
    };
    proxies
        .into_iter()
        .map(|p| Fix {
            proxy: p.id(),
            lines: lines(problem, p),
        })
        .filter(|fix| !fix.lines.is_empty())
        .collect()
}

fn independent_of_proxy(problem: Problem) -> Option<Vec<&'static str>> {
    match problem {
        Problem::Clock => Some(vec![
            "# keep the server's clock synchronised (tokens are checked with 30 s of leeway):",
            "timedatectl set-ntp true        # or run chrony / ntpd",
        ]),
        Problem::Unreachable => Some(vec![
            "# check that the proxy is running, listening on this host and port, and that a firewall lets it through;",
            "# and that pushwarden runs where the proxy forwards to (curl http://127.0.0.1:5000/alive on that host)",
        ]),
        _ => None,
    }
}

fn lines(problem: Problem, proxy: Proxy) -> Vec<&'static str> {
    use Problem as P;
    use Proxy::*;
    match (problem, proxy) {
        (P::UpgradeHeaders, Nginx) => vec![
            "# in the http block:",
            "map $http_upgrade $connection_upgrade { default upgrade; '' close; }",
            "# in location /notifications/:",
            "proxy_http_version 1.1;",
            "proxy_set_header Upgrade $http_upgrade;",
            "proxy_set_header Connection $connection_upgrade;",
        ],
        (P::UpgradeHeaders, Caddy) => vec![
            "# reverse_proxy passes WebSocket upgrades by itself: remove any header_up that sets or deletes Upgrade/Connection",
            "reverse_proxy /notifications/* 127.0.0.1:5000",
        ],
        (P::UpgradeHeaders, Apache) => vec![
            "# Apache 2.4.47 or later (a2enmod proxy proxy_http):",
            "ProxyPass /notifications/ http://127.0.0.1:5000/notifications/ upgrade=websocket",
            "# older Apache (a2enmod proxy_wstunnel rewrite):",
            "RewriteEngine On",
            "RewriteCond %{HTTP:Upgrade} =websocket [NC]",
            "RewriteRule ^/notifications/(.*) ws://127.0.0.1:5000/notifications/$1 [P,L]",
        ],
        (P::UpgradeHeaders, Haproxy) => vec![
            "# mode http forwards upgrades by itself: remove any http-request del-header Upgrade/Connection and option httpclose",
            "mode http",
            "timeout tunnel 1h",
        ],
        (P::UpgradeHeaders, Traefik) => vec![
            "# Traefik forwards upgrades by itself: remove any headers middleware that drops Upgrade/Connection",
            "traefik.http.routers.pushwarden.rule=Host(`vault.example.com`) && PathPrefix(`/notifications/`)",
        ],
        (P::RouteAnonymousHub | P::RouteHub, Nginx) => vec![
            "# one location for all of /notifications/ (both hubs, negotiate, /notifications/send):",
            "location /notifications/ {",
            "    proxy_pass http://127.0.0.1:5000;   # no trailing slash: the path is kept",
            "    proxy_http_version 1.1;",
            "    proxy_set_header Upgrade $http_upgrade;",
            "    proxy_set_header Connection $connection_upgrade;",
            "}",
        ],
        (P::RouteAnonymousHub | P::RouteHub, Caddy) => {
            vec!["reverse_proxy /notifications/* 127.0.0.1:5000   # before the vault's reverse_proxy"]
        }
        (P::RouteAnonymousHub | P::RouteHub, Apache) => vec![
            "ProxyPass /notifications/ http://127.0.0.1:5000/notifications/ upgrade=websocket",
            "ProxyPassReverse /notifications/ http://127.0.0.1:5000/notifications/",
            "# before the vault's ProxyPass / (Apache uses the first match)",
        ],
        (P::RouteAnonymousHub | P::RouteHub, Haproxy) => vec![
            "# frontend:",
            "acl pushwarden path_beg /notifications/",
            "use_backend pushwarden if pushwarden",
            "# backend pushwarden:",
            "server pushwarden 127.0.0.1:5000",
        ],
        (P::RouteAnonymousHub | P::RouteHub, Traefik) => vec![
            "traefik.http.routers.pushwarden.rule=Host(`vault.example.com`) && PathPrefix(`/notifications/`)",
            "traefik.http.services.pushwarden.loadbalancer.server.port=5000",
        ],
        (P::Buffering, Nginx) => vec![
            "# in location /notifications/:",
            "proxy_buffering off;",
            "gzip off;",
            "# and no proxy_ignore_headers X-Accel-Buffering; (pushwarden asks for no buffering with it)",
        ],
        (P::Buffering, Caddy) => vec![
            "reverse_proxy /notifications/* 127.0.0.1:5000 {",
            "    flush_interval -1",
            "}",
            "# and no encode (gzip/zstd) for /notifications/*",
        ],
        (P::Buffering, Apache) => vec![
            "ProxyPass /notifications/ http://127.0.0.1:5000/notifications/ upgrade=websocket flushpackets=on",
            "SetEnvIf Request_URI ^/notifications/ no-gzip=1",
        ],
        (P::Buffering, Haproxy) => vec![
            "# no compression of the event stream: leave text/event-stream out of",
            "compression type text/html text/plain text/css application/javascript",
        ],
        (P::Buffering, Traefik) => vec![
            "# no compress middleware on the pushwarden router, or exclude the event stream:",
            "traefik.http.middlewares.compress.compress.excludedcontenttypes=text/event-stream",
        ],
        (P::ReadTimeout, Nginx) => vec![
            "# in location /notifications/ (pushwarden holds a long poll up to PUSHWARDEN_LONG_POLL_TIMEOUT, 90 s):",
            "proxy_read_timeout 1h;",
            "proxy_send_timeout 1h;",
        ],
        (P::ReadTimeout, Caddy) => vec![
            "reverse_proxy /notifications/* 127.0.0.1:5000 {",
            "    transport http {",
            "        read_timeout 1h",
            "        response_header_timeout 2m",
            "    }",
            "}",
        ],
        (P::ReadTimeout, Apache) => vec![
            "ProxyTimeout 3600",
            "# or per route: ProxyPass /notifications/ http://127.0.0.1:5000/notifications/ upgrade=websocket timeout=3600",
        ],
        (P::ReadTimeout, Haproxy) => vec![
            "# defaults or backend pushwarden:",
            "timeout server 2m",
            "timeout tunnel 1h",
        ],
        (P::ReadTimeout, Traefik) => vec![
            "# static configuration, on the entry point and for the backend:",
            "entryPoints.websecure.transport.respondingTimeouts.readTimeout=0s",
            "entryPoints.websecure.transport.respondingTimeouts.writeTimeout=0s",
            "serversTransport.forwardingTimeouts.responseHeaderTimeout=0s",
        ],
        (P::TlsChain, Nginx) => vec![
            "ssl_certificate /etc/letsencrypt/live/vault.example.com/fullchain.pem;   # the full chain, not cert.pem",
        ],
        (P::TlsChain, Caddy) => vec![
            "# Caddy obtains and chains certificates itself; with your own: tls /path/fullchain.pem /path/privkey.pem",
        ],
        (P::TlsChain, Apache) => vec![
            "SSLCertificateFile /etc/letsencrypt/live/vault.example.com/fullchain.pem",
        ],
        (P::TlsChain, Haproxy) => vec![
            "# the .pem given to bind must hold the certificate, its intermediates and the key:",
            "bind :443 ssl crt /etc/haproxy/certs/vault.example.com.pem",
        ],
        (P::TlsChain, Traefik) => vec![
            "tls.certificates: certFile must hold the full chain (certificate then intermediates)",
        ],
        (P::TlsName, Nginx) => vec![
            "server_name vault.example.com;   # and a certificate issued for this name",
        ],
        (P::TlsName, Caddy) => vec!["vault.example.com {   # the site address is the certificate's name"],
        (P::TlsName, Apache) => vec![
            "ServerName vault.example.com",
            "# with a certificate issued for this name (SSLCertificateFile)",
        ],
        (P::TlsName, Haproxy) => vec![
            "bind :443 ssl crt /etc/haproxy/certs/   # a certificate issued for this name in that directory",
        ],
        (P::TlsName, Traefik) => vec![
            "traefik.http.routers.pushwarden.tls.domains[0].main=vault.example.com",
        ],
        (P::TlsExpiry, Nginx | Apache | Haproxy) => vec![
            "certbot renew   # and reload the proxy after renewal (a deploy hook)",
        ],
        (P::TlsExpiry, Caddy | Traefik) => vec![
            "# renewal is automatic: check the proxy's log for ACME errors (port 80/443 reachable, DNS)",
        ],
        (P::HttpsRedirect, Nginx) => vec![
            "server { listen 80; server_name vault.example.com; return 301 https://$host$request_uri; }",
        ],
        (P::HttpsRedirect, Caddy) => vec![
            "vault.example.com {   # a site address with a host name gets https and the redirect",
        ],
        (P::HttpsRedirect, Apache) => vec![
            "<VirtualHost *:80>",
            "    ServerName vault.example.com",
            "    Redirect permanent / https://vault.example.com/",
            "</VirtualHost>",
        ],
        (P::HttpsRedirect, Haproxy) => vec![
            "http-request redirect scheme https code 301 unless { ssl_fc }",
        ],
        (P::HttpsRedirect, Traefik) => vec![
            "entryPoints.web.http.redirections.entryPoint.to=websecure",
            "entryPoints.web.http.redirections.entryPoint.scheme=https",
        ],
        (P::Https, Nginx) => vec![
            "listen 443 ssl;",
            "ssl_certificate /etc/letsencrypt/live/vault.example.com/fullchain.pem;",
            "ssl_certificate_key /etc/letsencrypt/live/vault.example.com/privkey.pem;",
        ],
        (P::Https, Caddy) => vec![
            "vault.example.com {   # a site address with a host name gets a certificate and https",
        ],
        (P::Https, Apache) => vec![
            "<VirtualHost *:443>",
            "    SSLEngine on",
            "    SSLCertificateFile /etc/letsencrypt/live/vault.example.com/fullchain.pem",
            "    SSLCertificateKeyFile /etc/letsencrypt/live/vault.example.com/privkey.pem",
        ],
        (P::Https, Haproxy) => vec!["bind :443 ssl crt /etc/haproxy/certs/vault.example.com.pem"],
        (P::Https, Traefik) => vec![
            "traefik.http.routers.pushwarden.entrypoints=websecure",
            "traefik.http.routers.pushwarden.tls.certresolver=letsencrypt",
        ],
        (P::Exposure, Nginx) => vec![
            "# pushwarden refuses these without credentials; do not add credentials in the proxy:",
            "# remove proxy_set_header Authorization ... from location /notifications/",
        ],
        (P::Exposure, Caddy) => vec!["# remove header_up Authorization from the pushwarden reverse_proxy"],
        (P::Exposure, Apache) => vec!["# remove RequestHeader set Authorization from the pushwarden location"],
        (P::Exposure, Haproxy) => vec!["# remove http-request set-header Authorization from backend pushwarden"],
        (P::Exposure, Traefik) => vec![
            "# remove customrequestheaders.Authorization from the pushwarden router's middlewares",
        ],
        (P::Clock | P::Unreachable, _) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_proxy_has_lines_for_every_proxy_problem() {
        for problem in [
            Problem::UpgradeHeaders,
            Problem::RouteAnonymousHub,
            Problem::RouteHub,
            Problem::Buffering,
            Problem::ReadTimeout,
            Problem::TlsChain,
            Problem::TlsName,
            Problem::TlsExpiry,
            Problem::HttpsRedirect,
            Problem::Https,
            Problem::Exposure,
        ] {
            let fixes = for_problem(problem, None);
            assert_eq!(fixes.len(), 5, "{problem:?}");
            let one = for_problem(problem, Some(Proxy::Haproxy));
            assert_eq!(one.len(), 1);
            assert_eq!(one[0].proxy, "haproxy");
        }
        assert_eq!(
            for_problem(Problem::Clock, Some(Proxy::Nginx))[0].proxy,
            "any"
        );
    }

    #[test]
    fn the_lines_a_user_is_told_to_add() {
        let nginx = |p| for_problem(p, Some(Proxy::Nginx))[0].lines.join("\n");
        assert!(nginx(Problem::UpgradeHeaders).contains("proxy_set_header Upgrade $http_upgrade;"));
        assert!(nginx(Problem::Buffering).contains("proxy_buffering off;"));
        assert!(nginx(Problem::ReadTimeout).contains("proxy_read_timeout"));
        assert!(nginx(Problem::RouteAnonymousHub).contains("location /notifications/"));
        let haproxy = for_problem(Problem::ReadTimeout, Some(Proxy::Haproxy));
        assert!(haproxy[0].lines.join("\n").contains("timeout server"));
        let apache = for_problem(Problem::ReadTimeout, Some(Proxy::Apache));
        assert!(apache[0].lines.join("\n").contains("ProxyTimeout"));
    }
}
