//! What a check concludes: a verdict, what was seen, and which problem the fix lines address.

use serde::Serialize;

/// How a check went.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    Warn,
    Fail,
}

impl Verdict {
    /// `PASS`, `WARN` or `FAIL`, as the text report starts its lines.
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Warn => "WARN",
            Verdict::Fail => "FAIL",
        }
    }
}

/// A reverse proxy doctor knows the configuration lines of.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Proxy {
    Nginx,
    Caddy,
    Apache,
    Haproxy,
    Traefik,
}

impl Proxy {
    pub const ALL: [Proxy; 5] = [
        Proxy::Nginx,
        Proxy::Caddy,
        Proxy::Apache,
        Proxy::Haproxy,
        Proxy::Traefik,
    ];

    /// The lowercase name used on the command line and in JSON.
    pub fn id(self) -> &'static str {
        match self {
            Proxy::Nginx => "nginx",
            Proxy::Caddy => "caddy",
            Proxy::Apache => "apache",
            Proxy::Haproxy => "haproxy",
            Proxy::Traefik => "traefik",
        }
    }

    /// The name as people write it.
    pub fn name(self) -> &'static str {
        match self {
            Proxy::Nginx => "nginx",
            Proxy::Caddy => "Caddy",
            Proxy::Apache => "Apache",
            Proxy::Haproxy => "HAProxy",
            Proxy::Traefik => "Traefik",
        }
    }
}

impl std::str::FromStr for Proxy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Proxy::ALL
            .into_iter()
            .find(|p| p.id().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("unknown proxy `{s}` (nginx, caddy, apache, haproxy, traefik)"))
    }
}

/// What went wrong, as far as the fix is concerned: each has its lines per proxy
/// ([`crate::fixes`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Problem {
    /// `Upgrade`/`Connection` did not reach pushwarden.
    UpgradeHeaders,
    /// `/notifications/anonymous-hub` is not forwarded to pushwarden.
    RouteAnonymousHub,
    /// `/notifications/hub` (or `/notifications/` at all) is not forwarded to pushwarden.
    RouteHub,
    /// The proxy holds back (buffers or compresses) the event stream.
    Buffering,
    /// The proxy cuts a request that waits longer than its read timeout.
    ReadTimeout,
    /// The certificate chain does not validate.
    TlsChain,
    /// The certificate does not cover the host name.
    TlsName,
    /// The certificate expires soon or has expired.
    TlsExpiry,
    /// Plain http on port 80 does not redirect to https.
    HttpsRedirect,
    /// The URL is plain http.
    Https,
    /// An endpoint that needs credentials answered without them.
    Exposure,
    /// The server's clock disagrees with this one.
    Clock,
    /// The proxy (or pushwarden) cannot be reached at all.
    Unreachable,
}

/// One check's outcome.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Check {
    /// Stable id for scripts, e.g. `websocket.anonymous_hub`.
    pub id: &'static str,
    pub verdict: Verdict,
    /// What was seen, for people.
    pub detail: String,
    /// What the fix lines address; `None` when there is nothing to change in a proxy.
    pub problem: Option<Problem>,
}

impl Check {
    pub fn pass(id: &'static str, detail: impl Into<String>) -> Self {
        Check {
            id,
            verdict: Verdict::Pass,
            detail: detail.into(),
            problem: None,
        }
    }

    pub fn warn(id: &'static str, detail: impl Into<String>, problem: Option<Problem>) -> Self {
        Check {
            id,
            verdict: Verdict::Warn,
            detail: detail.into(),
            problem,
        }
    }

    pub fn fail(id: &'static str, detail: impl Into<String>, problem: Option<Problem>) -> Self {
        Check {
            id,
            verdict: Verdict::Fail,
            detail: detail.into(),
            problem,
        }
    }
}

/// Every check of one run, in report order, and the proxy recognised on the way.
#[derive(Clone, Debug)]
pub struct Report {
    /// The URL as given.
    pub url: String,
    /// The proxy named by `--proxy`, else the one recognised in the answers.
    pub proxy: Option<Proxy>,
    pub checks: Vec<Check>,
}

impl Report {
    pub fn count(&self, verdict: Verdict) -> usize {
        self.checks.iter().filter(|c| c.verdict == verdict).count()
    }

    /// The process exit code: 1 if any check failed, else 0.
    pub fn exit_code(&self) -> i32 {
        i32::from(self.count(Verdict::Fail) > 0)
    }

    /// The check with this id, if it ran.
    pub fn check(&self, id: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.id == id)
    }
}
