//! Configuration: a TOML file (`--config`), then `PUSHWARDEN_*` environment variables, which
//! win. Layered by figment; every setting is declared once, in [`settings::SETTINGS`].
//!
//! - `settings`: the declarations (TOML key, variable, kind, default, doc line);
//! - `sources`: the file and environment providers and the checks that name each bad value;
//! - `render`: the example file, the README table and `config check`'s output, from the table.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub mod render;
pub mod settings;
pub mod sources;

pub use sources::{Environment, Invalid, Layers};

/// Everything the service and the CLI read from configuration. Each key's variable, default and
/// meaning are declared in [`settings::SETTINGS`].
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub installation_id: Option<String>,
    pub jwt: JwtConfig,
    pub send: SendConfig,
    pub hub: HubConfig,
    pub transport: TransportConfig,
    pub database_url: Option<String>,
    pub push: PushConfig,
    pub apns: ApnsConfig,
    pub fcm: FcmConfig,
    pub webpush: WebPushConfig,
    pub relay: RelayConfig,
    pub upstream: UpstreamConfig,
    pub tls: TlsConfig,
    pub limits: LimitsConfig,
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    pub metrics_token: Option<String>,
    pub admin_token: Option<String>,
    pub log: LogConfig,
}

/// What the service logs and how: levels in tracing's filter syntax, text or JSON lines.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `info`, `debug`, `info,pushwarden_push=debug`…; unset: `RUST_LOG`, else `info`.
    pub level: Option<String>,
    pub format: LogFormat,
}

/// `text` for people (colours only on a terminal), `json` for log collectors.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct JwtConfig {
    pub hs256_secret: Option<String>,
    pub rsa_public_key: Option<PathBuf>,
    pub authority: Option<String>,
    pub issuer: Option<String>,
    /// `bitwarden` or `authenticated` (parsed as a `HubPolicy` when the hubs are built).
    pub policy: String,
    #[serde(with = "humantime_serde")]
    pub leeway: Duration,
}

impl Default for JwtConfig {
    fn default() -> Self {
        Self {
            hs256_secret: None,
            rsa_public_key: None,
            authority: None,
            issuer: None,
            policy: "bitwarden".into(),
            leeway: pushwarden_auth::DEFAULT_LEEWAY,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SendConfig {
    pub api_key: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct HubConfig {
    #[serde(with = "humantime_serde")]
    pub keep_alive_interval: Duration,
    #[serde(with = "humantime_serde")]
    pub client_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    pub max_message_size: usize,
    pub stateful_reconnect: bool,
    pub max_queued_bytes: usize,
}

impl Default for HubConfig {
    fn default() -> Self {
        let hub = pushwarden_hub::HubOptions::default();
        Self {
            keep_alive_interval: hub.keep_alive_interval,
            client_timeout: hub.client_timeout,
            handshake_timeout: hub.handshake_timeout,
            heartbeat_interval: Duration::from_secs(120),
            max_message_size: hub.max_message_size,
            stateful_reconnect: hub.stateful_reconnect,
            max_queued_bytes: pushwarden_transport::OutboxLimits::default().max_queued_bytes,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct TransportConfig {
    pub websockets: bool,
    pub server_sent_events: bool,
    pub long_polling: bool,
    #[serde(with = "humantime_serde")]
    pub disconnect_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub long_poll_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub send_timeout: Duration,
    pub websocket_read_buffer: usize,
}

impl Default for TransportConfig {
    fn default() -> Self {
        let t = pushwarden_transport::TransportOptions::default();
        Self {
            websockets: t.websockets,
            server_sent_events: t.server_sent_events,
            long_polling: t.long_polling,
            disconnect_timeout: t.disconnect_timeout,
            long_poll_timeout: t.long_poll_timeout,
            send_timeout: t.send_timeout,
            websocket_read_buffer: t.websocket_read_buffer,
        }
    }
}

/// Delivery to registered devices.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct PushConfig {
    pub from_send: Option<bool>,
    pub allow_private_endpoints: bool,
    pub proxy: Option<String>,
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
    pub concurrency: usize,
    #[serde(with = "humantime_serde")]
    pub retry_base: Duration,
    #[serde(with = "humantime_serde")]
    pub retry_max: Duration,
}

impl Default for PushConfig {
    fn default() -> Self {
        let d = pushwarden_push::DeliveryOptions::default();
        Self {
            from_send: None,
            allow_private_endpoints: false,
            proxy: None,
            max_age: d.max_age,
            concurrency: d.concurrency,
            retry_base: d.backoff.base,
            retry_max: d.backoff.max,
        }
    }
}

/// APNs token authentication.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApnsConfig {
    pub key_file: Option<PathBuf>,
    pub key_id: Option<String>,
    pub team_id: Option<String>,
    pub topic: Option<String>,
    pub endpoint: Option<String>,
    pub ca_file: Option<PathBuf>,
}

/// FCM HTTP v1.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct FcmConfig {
    pub service_account: Option<PathBuf>,
    pub endpoint: Option<String>,
}

/// Web Push and UnifiedPush.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebPushConfig {
    pub vapid_private_key: Option<PathBuf>,
    pub vapid_subject: Option<String>,
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    pub origin_concurrency: usize,
}

impl Default for WebPushConfig {
    fn default() -> Self {
        let limits = pushwarden_push::providers::WebPushLimits::default();
        Self {
            vapid_private_key: None,
            vapid_subject: None,
            ttl: Duration::from_secs(24 * 3600),
            connect_timeout: limits.connect_timeout,
            timeout: limits.timeout,
            origin_concurrency: limits.origin_concurrency,
        }
    }
}

/// The relay role: self-hosted installations pushing through this service.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RelayConfig {
    pub token_secret: Option<String>,
    #[serde(with = "humantime_serde")]
    pub token_lifetime: Duration,
    pub requests_per_minute: u32,
    pub pushes_per_minute: u32,
    pub max_registrations: u64,
}

impl Default for RelayConfig {
    fn default() -> Self {
        let limits = pushwarden_bitwarden::relay::RelayLimits::default();
        Self {
            token_secret: None,
            token_lifetime: Duration::from_secs(24 * 3600),
            requests_per_minute: limits.requests_per_minute,
            pushes_per_minute: limits.pushes_per_minute,
            max_registrations: limits.max_registrations,
        }
    }
}

/// The self-hosted role: an upstream relay for mobile pushes this service has no
/// credentials for. On when an installation id and key are set.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpstreamConfig {
    pub relay_uri: Option<String>,
    pub identity_uri: Option<String>,
    pub installation_id: Option<String>,
    pub installation_key: Option<String>,
    pub ca_file: Option<PathBuf>,
}

/// Serving HTTPS directly (Vaultwarden accepts only `https` relay URIs).
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

/// What one peer may make the service hold: connections, time, rate. A peer is its IP address,
/// or the address a trusted proxy forwards for it.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Open connections in all; 0 sizes it from the open-file limit.
    pub max_connections: usize,
    /// Open connections from one address; 0 is a quarter of `max_connections`.
    pub max_connections_per_ip: usize,
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub body_read_timeout: Duration,
    /// Comma-separated addresses or CIDR blocks whose `X-Forwarded-For`/`Forwarded` is believed.
    pub trusted_proxies: String,
    pub negotiates_per_minute: u32,
    pub connects_per_minute: u32,
    pub anonymous_connects_per_minute: u32,
    pub token_failures_per_minute: u32,
    pub max_pending_negotiations: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_connections: 0,
            max_connections_per_ip: 0,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(10),
            trusted_proxies: "127.0.0.0/8,::1,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,fc00::/7"
                .into(),
            negotiates_per_minute: 120,
            connects_per_minute: 600,
            anonymous_connects_per_minute: 60,
            token_failures_per_minute: 10,
            max_pending_negotiations: 10_000,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 5000)),
            data_dir: PathBuf::from("pushwarden-data"),
            installation_id: None,
            jwt: JwtConfig::default(),
            send: SendConfig::default(),
            hub: HubConfig::default(),
            transport: TransportConfig::default(),
            database_url: None,
            push: PushConfig::default(),
            apns: ApnsConfig::default(),
            fcm: FcmConfig::default(),
            webpush: WebPushConfig::default(),
            relay: RelayConfig::default(),
            upstream: UpstreamConfig::default(),
            tls: TlsConfig::default(),
            limits: LimitsConfig::default(),
            shutdown_timeout: Duration::from_secs(10),
            metrics_token: None,
            admin_token: None,
            log: LogConfig::default(),
        }
    }
}

impl Config {
    /// Reads the file (if any), then the process environment.
    pub fn load(file: Option<&Path>) -> Result<Self, Invalid> {
        Self::load_with(file, |name| std::env::var(name).ok())
    }

    /// Reads the file (if any), then the variables `env` gives (tests pass a map).
    pub fn load_with(
        file: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, Invalid> {
        Layers::new(file, Environment::read(env)).resolve()
    }

    /// Values that are each well-formed but wrong, or wrong together.
    pub fn problems(&self) -> Vec<String> {
        if self.hub.client_timeout <= self.hub.keep_alive_interval {
            tracing::warn!("client_timeout should be longer than keep_alive_interval (clients ping at that rate)");
        }
        let mut problems = Vec::new();
        let named = |key: &str| match settings::by_key(key).and_then(|s| s.env) {
            Some(env) => format!("{key} ({env})"),
            None => key.to_owned(),
        };
        if self.relay.requests_per_minute == 0 || self.relay.pushes_per_minute == 0 {
            problems.push(format!(
                "{} and {} must be at least 1 per minute",
                named("relay.requests_per_minute"),
                named("relay.pushes_per_minute")
            ));
        }
        if self.tls.cert_file.is_some() != self.tls.key_file.is_some() {
            problems
                .push("TLS needs both PUSHWARDEN_TLS_CERT_FILE and PUSHWARDEN_TLS_KEY_FILE".into());
        }
        if self.upstream.installation_id.is_some() != self.upstream.installation_key.is_some() {
            problems.push("an upstream relay needs both PUSHWARDEN_UPSTREAM_INSTALLATION_ID and PUSHWARDEN_UPSTREAM_INSTALLATION_KEY".into());
        }
        if self.push.concurrency == 0 {
            problems.push(format!("{} must be at least 1", named("push.concurrency")));
        }
        if self.webpush.origin_concurrency == 0 {
            problems.push(format!(
                "{} must be at least 1",
                named("webpush.origin_concurrency")
            ));
        }
        if let Some(proxy) = &self.push.proxy {
            match url::Url::parse(proxy) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
                _ => problems.push(format!(
                    "{} must be an http:// or https:// proxy URL, not {proxy:?}",
                    named("push.proxy")
                )),
            }
        }
        if self.hub.max_message_size < 64 {
            problems.push(format!(
                "{} must be at least 64 bytes, not {}",
                named("hub.max_message_size"),
                self.hub.max_message_size
            ));
        }
        for (key, d) in [
            ("hub.keep_alive_interval", self.hub.keep_alive_interval),
            ("hub.client_timeout", self.hub.client_timeout),
            ("hub.handshake_timeout", self.hub.handshake_timeout),
            ("hub.heartbeat_interval", self.hub.heartbeat_interval),
            (
                "transport.disconnect_timeout",
                self.transport.disconnect_timeout,
            ),
            (
                "transport.long_poll_timeout",
                self.transport.long_poll_timeout,
            ),
            ("transport.send_timeout", self.transport.send_timeout),
            ("push.max_age", self.push.max_age),
            ("push.retry_base", self.push.retry_base),
            ("push.retry_max", self.push.retry_max),
            ("webpush.connect_timeout", self.webpush.connect_timeout),
            ("webpush.timeout", self.webpush.timeout),
            ("relay.token_lifetime", self.relay.token_lifetime),
            (
                "limits.header_read_timeout",
                self.limits.header_read_timeout,
            ),
            ("limits.body_read_timeout", self.limits.body_read_timeout),
        ] {
            if d.is_zero() {
                problems.push(format!("{} must be greater than zero", named(key)));
            }
        }
        if let Err(e) = crate::edge::TrustedProxies::parse(&self.limits.trusted_proxies) {
            problems.push(format!("{}: {e}", named("limits.trusted_proxies")));
        }
        for (key, token) in [
            ("metrics_token", &self.metrics_token),
            ("admin_token", &self.admin_token),
        ] {
            if token.as_ref().is_some_and(|t| t.len() < 16) {
                problems.push(format!("{} must be at least 16 characters", named(key)));
            }
        }
        if let Some(level) = &self.log.level {
            if let Err(e) = crate::logging::filter(level) {
                problems.push(format!("{}: {e}", named("log.level")));
            }
        }
        problems
    }

    /// The registry database URL, defaulting to a SQLite file in the data directory.
    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| pushwarden_push::store::default_url(&self.data_dir))
    }

    /// No way to verify tokens is configured: the service runs in development mode.
    pub fn is_development(&self) -> bool {
        self.jwt.hs256_secret.is_none()
            && self.jwt.rsa_public_key.is_none()
            && self.jwt.authority.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeSet, HashMap};

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        let map: HashMap<&str, &str> = vars.iter().copied().collect();
        move |name| map.get(name).map(|v| v.to_string())
    }

    fn write_file(name: &str, text: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("pushwarden-config-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("pushwarden.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    fn error(file: Option<&Path>, vars: &[(&str, &str)]) -> String {
        Config::load_with(file, env(vars)).unwrap_err().to_string()
    }

    #[test]
    fn environment_overrides_file() {
        let file = write_file(
            "overrides",
            r#"
            listen = "0.0.0.0:6000"
            [hub]
            keep_alive_interval = "5s"
            [jwt]
            hs256_secret = "file"
            "#,
        );
        let c = Config::load_with(
            Some(&file),
            env(&[
                ("PUSHWARDEN_LISTEN", "127.0.0.1:7000"),
                ("PUSHWARDEN_CLIENT_TIMEOUT", "2s"),
                ("PUSHWARDEN_JWT_HS256_SECRET", "env"),
                ("PUSHWARDEN_STATEFUL_RECONNECT", "false"),
            ]),
        )
        .unwrap();
        assert_eq!(c.listen.port(), 7000);
        assert_eq!(c.hub.keep_alive_interval, Duration::from_secs(5));
        assert_eq!(c.hub.client_timeout, Duration::from_secs(2));
        assert_eq!(c.jwt.hs256_secret.as_deref(), Some("env"));
        assert!(!c.hub.stateful_reconnect);
        assert!(!c.is_development());
    }

    #[test]
    fn nothing_configured_is_the_defaults() {
        assert_eq!(
            Config::load_with(None, env(&[])).unwrap(),
            Config::default()
        );
        // Blank variables are unset, as they always were.
        let c = Config::load_with(None, env(&[("PUSHWARDEN_LISTEN", "  ")])).unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.jwt.leeway, pushwarden_auth::DEFAULT_LEEWAY);
    }

    #[test]
    fn environment_values_are_read_as_written() {
        let c = Config::load_with(
            None,
            env(&[
                // figment's own Env provider would turn these into a number and an unquoted
                // string; secrets and ids must stay exactly as written.
                ("PUSHWARDEN_JWT_HS256_SECRET", "0123"),
                ("PUSHWARDEN_SEND_API_KEY", "\"quoted\""),
                ("PUSHWARDEN_INSTALLATION_ID", "[not-an-array"),
                ("PUSHWARDEN_JWT_ISSUER", "https://vault.example.com|login"),
                ("PUSHWARDEN_PUSH_CONCURRENCY", " 8 "),
                ("PUSHWARDEN_PUSH_ALLOW_PRIVATE_ENDPOINTS", "yes"),
                ("PUSHWARDEN_PUSH_FROM_SEND", "0"),
                ("PUSHWARDEN_STATEFUL_RECONNECT", "Off"),
                ("PUSHWARDEN_JWT_LEEWAY", "1m 30s"),
            ]),
        )
        .unwrap();
        assert_eq!(c.jwt.hs256_secret.as_deref(), Some("0123"));
        assert_eq!(c.send.api_key.as_deref(), Some("\"quoted\""));
        assert_eq!(c.installation_id.as_deref(), Some("[not-an-array"));
        assert_eq!(
            c.jwt.issuer.as_deref(),
            Some("https://vault.example.com|login")
        );
        assert_eq!(c.push.concurrency, 8);
        assert!(c.push.allow_private_endpoints);
        assert_eq!(c.push.from_send, Some(false));
        assert!(!c.hub.stateful_reconnect);
        assert_eq!(c.jwt.leeway, Duration::from_secs(90));
    }

    #[test]
    fn the_example_file_is_the_generated_one() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../pushwarden.example.toml");
        let on_disk = std::fs::read_to_string(path).unwrap();
        assert!(
            on_disk == render::example(),
            "pushwarden.example.toml is not what `pushwarden config example` writes; \
             regenerate it: cargo run --bin pushwarden -- config example > pushwarden.example.toml"
        );
        // Every default the table states is the one the structs start from.
        let c = Config::load_with(Some(Path::new(path)), env(&[])).unwrap();
        assert_eq!(c, Config::default());
    }

    #[test]
    fn the_readme_table_is_the_generated_one() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md");
        let readme = std::fs::read_to_string(path).unwrap();
        let expected = render::readme_table();
        assert!(
            render::readme_section(&readme) == Some(expected.trim_end()),
            "README.md's settings table is not what `pushwarden config readme-table` prints; \
             replace the lines from `{}` to `{}` with the output of \
             cargo run --bin pushwarden -- config readme-table\n\nexpected:\n{expected}",
            render::README_START,
            render::README_END,
        );
    }

    #[test]
    fn the_table_declares_exactly_the_config_keys() {
        fn leaves(prefix: &str, value: &figment::value::Value, out: &mut BTreeSet<String>) {
            match value {
                figment::value::Value::Dict(_, dict) => {
                    for (k, v) in dict {
                        let path = if prefix.is_empty() {
                            k.clone()
                        } else {
                            format!("{prefix}.{k}")
                        };
                        leaves(&path, v, out);
                    }
                }
                _ => {
                    out.insert(prefix.to_owned());
                }
            }
        }
        let mut fields = BTreeSet::new();
        leaves(
            "",
            &figment::value::Value::serialize(Config::default()).unwrap(),
            &mut fields,
        );
        let declared: BTreeSet<String> = settings::SETTINGS
            .iter()
            .map(|s| s.key.to_owned())
            .collect();
        assert_eq!(fields, declared);
        assert_eq!(
            declared.len(),
            settings::SETTINGS.len(),
            "a key declared twice"
        );
        let envs: Vec<&str> = settings::SETTINGS.iter().filter_map(|s| s.env).collect();
        let unique: BTreeSet<&str> = envs.iter().copied().collect();
        assert_eq!(envs.len(), unique.len(), "a variable declared twice");
        assert!(envs.iter().all(|e| e.starts_with("PUSHWARDEN_")));
        for s in settings::SETTINGS {
            assert!(
                s.default.is_some() || s.example.is_some(),
                "{} needs a default or an example",
                s.key
            );
            let (section, _) = s.section_and_name();
            assert!(
                settings::SECTIONS.iter().any(|(name, _)| *name == section),
                "{}",
                s.key
            );
        }
    }

    #[test]
    fn every_declared_variable_sets_its_key() {
        let defaults = figment::value::Value::serialize(Config::default()).unwrap();
        for s in settings::SETTINGS {
            let Some(name) = s.env else { continue };
            // A value of the setting's kind that no default has.
            let value = match s.kind {
                settings::Kind::Text | settings::Kind::Url => "https://example.test/7",
                settings::Kind::Path => "/var/lib/pushwarden-test-7",
                settings::Kind::Addr => "127.0.0.1:7777",
                settings::Kind::Duration => "7s",
                settings::Kind::Bool if s.default == Some("true") => "false",
                settings::Kind::Bool => "true",
                settings::Kind::Count(_) => "77",
            };
            let c = match Config::load_with(None, env(&[(name, value)])) {
                Ok(c) => c,
                // One of a pair is refused on its own, naming the variable it was read from.
                Err(e) => {
                    assert!(e.to_string().contains(name), "{name}: {e}");
                    continue;
                }
            };
            let set = figment::value::Value::serialize(&c).unwrap();
            assert_ne!(
                set.find_ref(s.key),
                defaults.find_ref(s.key),
                "{name} did not change {}",
                s.key
            );
            let mut back = set.clone();
            let mut rest = defaults.clone();
            for v in [&mut back, &mut rest] {
                if let figment::value::Value::Dict(_, root) = v {
                    match s.key.split_once('.') {
                        Some((section, key)) => {
                            if let Some(figment::value::Value::Dict(_, t)) = root.get_mut(section) {
                                t.remove(key);
                            }
                        }
                        None => {
                            root.remove(s.key);
                        }
                    }
                }
            }
            assert_eq!(back, rest, "{name} changed more than {}", s.key);
        }
    }

    #[test]
    fn relay_upstream_and_tls_settings() {
        let c = Config::load_with(
            None,
            env(&[
                ("PUSHWARDEN_RELAY_TOKEN_SECRET", "s"),
                ("PUSHWARDEN_RELAY_REQUESTS_PER_MINUTE", "7"),
                ("PUSHWARDEN_RELAY_PUSHES_PER_MINUTE", "8"),
                ("PUSHWARDEN_RELAY_MAX_REGISTRATIONS", "9"),
                ("PUSHWARDEN_RELAY_TOKEN_LIFETIME", "1h"),
                ("PUSHWARDEN_UPSTREAM_INSTALLATION_ID", "i"),
                ("PUSHWARDEN_UPSTREAM_INSTALLATION_KEY", "k"),
                ("PUSHWARDEN_UPSTREAM_RELAY_URI", "https://api.bitwarden.eu"),
                (
                    "PUSHWARDEN_UPSTREAM_IDENTITY_URI",
                    "https://identity.bitwarden.eu",
                ),
                ("PUSHWARDEN_TLS_CERT_FILE", "/c.pem"),
                ("PUSHWARDEN_TLS_KEY_FILE", "/k.pem"),
            ]),
        )
        .unwrap();
        assert_eq!(c.relay.token_secret.as_deref(), Some("s"));
        assert_eq!(
            (c.relay.requests_per_minute, c.relay.pushes_per_minute),
            (7, 8)
        );
        assert_eq!(c.relay.max_registrations, 9);
        assert_eq!(c.relay.token_lifetime, Duration::from_secs(3600));
        assert_eq!(
            c.upstream.relay_uri.as_deref(),
            Some("https://api.bitwarden.eu")
        );
        assert_eq!(c.tls.key_file.as_deref(), Some(Path::new("/k.pem")));
        // Half a pair is an error, not a silent default.
        for (name, value) in [
            ("PUSHWARDEN_TLS_CERT_FILE", "/c.pem"),
            ("PUSHWARDEN_UPSTREAM_INSTALLATION_ID", "i"),
            ("PUSHWARDEN_RELAY_PUSHES_PER_MINUTE", "0"),
        ] {
            assert!(
                Config::load_with(None, env(&[(name, value)])).is_err(),
                "{name}"
            );
        }
    }

    #[test]
    fn push_settings_from_the_environment() {
        let c = Config::load_with(
            None,
            env(&[
                ("PUSHWARDEN_DATABASE_URL", "postgres://db/pw"),
                ("PUSHWARDEN_APNS_KEY_FILE", "/k.p8"),
                ("PUSHWARDEN_APNS_KEY_ID", "KID"),
                ("PUSHWARDEN_APNS_TEAM_ID", "TEAM"),
                ("PUSHWARDEN_APNS_TOPIC", "com.8bit.bitwarden"),
                ("PUSHWARDEN_APNS_ENDPOINT", "http://127.0.0.1:1"),
                ("PUSHWARDEN_APNS_CA_FILE", "/ca.pem"),
                ("PUSHWARDEN_FCM_SERVICE_ACCOUNT", "/sa.json"),
                ("PUSHWARDEN_FCM_ENDPOINT", "http://127.0.0.1:2"),
                ("PUSHWARDEN_VAPID_PRIVATE_KEY", "/vapid.pem"),
                ("PUSHWARDEN_VAPID_SUBJECT", "mailto:a@b"),
                ("PUSHWARDEN_PUSH_ALLOW_PRIVATE_ENDPOINTS", "true"),
                ("PUSHWARDEN_PUSH_FROM_SEND", "false"),
                ("PUSHWARDEN_PUSH_MAX_AGE", "1h"),
                ("PUSHWARDEN_PUSH_CONCURRENCY", "8"),
            ]),
        )
        .unwrap();
        assert_eq!(c.database_url(), "postgres://db/pw");
        assert_eq!(c.apns.key_file.as_deref(), Some(Path::new("/k.p8")));
        assert_eq!(c.apns.topic.as_deref(), Some("com.8bit.bitwarden"));
        assert_eq!(c.apns.ca_file.as_deref(), Some(Path::new("/ca.pem")));
        assert_eq!(c.fcm.endpoint.as_deref(), Some("http://127.0.0.1:2"));
        assert_eq!(c.webpush.vapid_subject.as_deref(), Some("mailto:a@b"));
        assert!(c.push.allow_private_endpoints);
        assert_eq!(c.push.from_send, Some(false));
        assert_eq!(c.push.max_age, Duration::from_secs(3600));
        assert_eq!(c.push.concurrency, 8);
        let d = Config::default();
        assert!(d.database_url().starts_with("sqlite://"));
        assert!(d.database_url().ends_with("pushwarden.db"));
    }

    #[test]
    fn bad_values_are_errors_naming_the_variable_and_value() {
        let e = error(None, &[("PUSHWARDEN_LISTEN", "nope")]);
        assert!(e.contains("PUSHWARDEN_LISTEN=nope"), "{e}");
        let e = error(None, &[("PUSHWARDEN_CLIENT_TIMEOUT", "0s")]);
        assert!(e.contains("PUSHWARDEN_CLIENT_TIMEOUT"), "{e}");
        let e = error(None, &[("PUSHWARDEN_STATEFUL_RECONNECT", "maybe")]);
        assert!(
            e.contains("PUSHWARDEN_STATEFUL_RECONNECT=maybe: expected true or false"),
            "{e}"
        );
        let e = error(
            None,
            &[("PUSHWARDEN_RELAY_REQUESTS_PER_MINUTE", "5000000000")],
        );
        assert!(
            e.contains("PUSHWARDEN_RELAY_REQUESTS_PER_MINUTE=5000000000: must be at most"),
            "{e}"
        );
        let e = error(None, &[("PUSHWARDEN_PUSH_CONCURRENCY", "-1")]);
        assert!(e.contains("PUSHWARDEN_PUSH_CONCURRENCY=-1"), "{e}");
        let e = error(None, &[("PUSHWARDEN_WEBPUSH_TTL", "soon")]);
        assert!(e.contains("PUSHWARDEN_WEBPUSH_TTL=soon"), "{e}");
        let e = error(
            None,
            &[("PUSHWARDEN_PUSH_PROXY", "socks5://127.0.0.1:1080")],
        );
        assert!(
            e.contains("push.proxy (PUSHWARDEN_PUSH_PROXY) must be an http:// or https://"),
            "{e}"
        );
        let e = error(None, &[("PUSHWARDEN_WEBPUSH_ORIGIN_CONCURRENCY", "0")]);
        assert!(
            e.contains("PUSHWARDEN_WEBPUSH_ORIGIN_CONCURRENCY) must be at least 1"),
            "{e}"
        );
        let e = error(None, &[("PUSHWARDEN_WEBPUSH_TIMEOUT", "0s")]);
        assert!(
            e.contains("PUSHWARDEN_WEBPUSH_TIMEOUT) must be greater than zero"),
            "{e}"
        );
        let e = error(None, &[("PUSHWARDEN_ADMIN_TOKEN", "short")]);
        assert!(
            e.contains("admin_token (PUSHWARDEN_ADMIN_TOKEN) must be at least 16 characters")
                && !e.contains("short"),
            "{e}"
        );
        // A secret is never shown, even when it is the bad value.
        let file = write_file("secret", "[jwt]\nhs256_secret = 12345\n");
        let e = error(Some(&file), &[]);
        assert!(
            e.contains("jwt.hs256_secret = \"********\"") && !e.contains("12345"),
            "{e}"
        );
    }

    #[test]
    fn every_bad_value_is_named_with_where_it_came_from() {
        let file = write_file(
            "bad",
            r#"
            unknown = 1
            listen = "nope"
            [hub]
            client_timeout = 30
            typo = true
            [transport]
            websockets = "yes"
            "#,
        );
        let e = error(Some(&file), &[("PUSHWARDEN_MAX_MESSAGE_SIZE", "big")]);
        let shown = file.display().to_string();
        for expected in [
            "6 problems".to_owned(),
            format!("`unknown` in {shown}: unknown key"),
            format!("`hub.typo` in {shown}: unknown key"),
            format!("listen = \"nope\" in {shown}: invalid socket address"),
            format!("hub.client_timeout = 30 in {shown}: expected a duration such as \"15s\""),
            format!("transport.websockets = \"yes\" in {shown}: expected true or false"),
            "PUSHWARDEN_MAX_MESSAGE_SIZE=big: expected a whole number".to_owned(),
        ] {
            assert!(e.contains(&expected), "{expected:?} missing from:\n{e}");
        }
        assert!(toml::from_str::<Config>("unknown = 1").is_err());
        let missing = error(Some(Path::new("/nonexistent/pushwarden.toml")), &[]);
        assert!(
            missing.contains("/nonexistent/pushwarden.toml"),
            "{missing}"
        );
    }

    #[test]
    fn check_masks_secrets_and_names_sources() {
        let file = write_file("check", "[hub]\nclient_timeout = \"45s\"\n");
        let out = crate::commands::config::check(
            Some(&file),
            Environment::read(env(&[
                ("PUSHWARDEN_JWT_HS256_SECRET", "hs-secret-value"),
                ("PUSHWARDEN_SEND_API_KEY", "send-key-value"),
                ("PUSHWARDEN_RELAY_TOKEN_SECRET", "relay-secret-value"),
                ("PUSHWARDEN_UPSTREAM_INSTALLATION_ID", "i"),
                ("PUSHWARDEN_UPSTREAM_INSTALLATION_KEY", "upstream-key-value"),
                ("PUSHWARDEN_DATABASE_URL", "postgres://pw:db-password@db/pw"),
                ("PUSHWARDEN_LISTEN", "0.0.0.0:6000"),
            ])),
        )
        .unwrap();
        for secret in [
            "hs-secret-value",
            "send-key-value",
            "relay-secret-value",
            "upstream-key-value",
            "db-password",
        ] {
            assert!(!out.contains(secret), "{secret} shown:\n{out}");
        }
        assert!(
            out.contains("hs256_secret = \"********\"  # PUSHWARDEN_JWT_HS256_SECRET"),
            "{out}"
        );
        assert!(
            out.contains("database_url = \"postgres://pw:********@db/pw\""),
            "{out}"
        );
        assert!(
            out.contains("listen = \"0.0.0.0:6000\"  # PUSHWARDEN_LISTEN"),
            "{out}"
        );
        assert!(
            out.contains(&format!("client_timeout = \"45s\"  # {}", file.display())),
            "{out}"
        );
        assert!(out.contains("keep_alive_interval = \"15s\"\n"), "{out}");
        assert!(out.contains("# issuer is not set"), "{out}");
        // The output is itself a configuration file giving the same values (secrets aside).
        assert!(toml::from_str::<Config>(&out).is_ok(), "{out}");

        let e = crate::commands::config::check(
            None,
            Environment::read(env(&[
                ("PUSHWARDEN_JWT_POLICY", "strict"),
                ("PUSHWARDEN_FCM_ENDPOINT", "not a url"),
            ])),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("PUSHWARDEN_JWT_POLICY=strict"), "{e}");
        assert!(
            e.contains("PUSHWARDEN_FCM_ENDPOINT=not a url: not a URL"),
            "{e}"
        );
    }
}
