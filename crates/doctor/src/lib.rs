//! `pushwarden doctor <public-url>`: checks a deployment from the outside, as the official
//! clients reach it (through the reverse proxy), and says for each failure which proxy lines fix it.
//!
//! Layout:
//!
//! - `target`: the hub and endpoint URLs derived from the public URL;
//! - `net`: the HTTP client, TLS (system roots plus `--ca-file`), WebSockets, bounded reads;
//! - `origin`: who answered, pushwarden (its `x-pushwarden` header) or the proxy, and which;
//! - `checks`: one module per concern, run side by side;
//! - `verdict`: pass/warn/fail, the problem a failure is, the report;
//! - `fixes`: the lines per proxy for each problem;
//! - `render`: the report as text and as JSON.

mod checks;
pub mod fixes;
mod net;
pub mod origin;
pub mod render;
mod target;
pub mod verdict;

use std::path::PathBuf;
use std::time::Duration;

pub use verdict::{Check, Problem, Proxy, Report, Verdict};

/// What to check and how.
#[derive(Clone, Debug)]
pub struct Options {
    /// The vault's public base URL (`https://vault.example.com`, `/notifications` optional).
    pub url: String,
    /// A user access token, to complete the `/notifications/hub` handshake too.
    pub token: Option<String>,
    /// How long the idle checks hold their connections (zero skips them).
    pub idle: Duration,
    /// Deadline of each step.
    pub timeout: Duration,
    /// Extra trusted roots (PEM).
    pub ca_file: Option<PathBuf>,
    /// Show this proxy's fix lines, whatever was recognised.
    pub proxy: Option<Proxy>,
}

impl Options {
    /// Defaults for `url`: no token, 75 s idle, 10 s per step.
    pub fn new(url: impl Into<String>) -> Self {
        Options {
            url: url.into(),
            token: None,
            idle: Duration::from_secs(75),
            timeout: Duration::from_secs(10),
            ca_file: None,
            proxy: None,
        }
    }
}

/// Runs every check. `Err` is a usage problem (the URL or `--ca-file`), found before any
/// request is made.
pub async fn run(options: &Options) -> Result<Report, String> {
    let target = target::Target::parse(&options.url)?;
    let net = net::Net::new(target, options.timeout, options.ca_file.as_deref())?;
    let settings = checks::Settings {
        token: options.token.clone(),
        idle: options.idle,
    };
    let checks = checks::run(&net, &settings).await;
    Ok(Report {
        url: options.url.clone(),
        proxy: options.proxy.or_else(|| net.proxy_seen()),
        checks,
    })
}
