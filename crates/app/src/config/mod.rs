//! Configuration: a TOML file (`--config`), then environment variables, which win.
//!
//! The `PUSHWARDEN_*` names below are a contract other tools rely on; add, never rename.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

/// Everything the service and the CLI read from configuration.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `PUSHWARDEN_LISTEN`
    pub listen: SocketAddr,
    /// `PUSHWARDEN_DATA_DIR`: where development secrets (and later the device registry) live.
    pub data_dir: PathBuf,
    /// `PUSHWARDEN_INSTALLATION_ID`: joins `/hub` connections to `Installation_{id}` groups.
    pub installation_id: Option<String>,
    pub jwt: JwtConfig,
    pub send: SendConfig,
    pub hub: HubConfig,
    pub transport: TransportConfig,
    /// `PUSHWARDEN_DATABASE_URL`: `sqlite://PATH` or `postgres://…`; the device registry and the
    /// push queue. Default: `pushwarden.db` in the data directory.
    pub database_url: Option<String>,
    pub push: PushConfig,
    pub apns: ApnsConfig,
    pub fcm: FcmConfig,
    pub webpush: WebPushConfig,
    pub relay: RelayConfig,
    pub upstream: UpstreamConfig,
    pub tls: TlsConfig,
    /// `PUSHWARDEN_SHUTDOWN_TIMEOUT`: how long a graceful shutdown waits for clients.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JwtConfig {
    /// `PUSHWARDEN_JWT_HS256_SECRET`
    pub hs256_secret: Option<String>,
    /// `PUSHWARDEN_JWT_RSA_PUBLIC_KEY`: path of a PEM public key (Vaultwarden's `rsa_key.pub.pem`).
    pub rsa_public_key: Option<PathBuf>,
    /// `PUSHWARDEN_JWT_AUTHORITY`: OpenID authority (Bitwarden's identity server).
    pub authority: Option<String>,
    /// `PUSHWARDEN_JWT_ISSUER`
    pub issuer: Option<String>,
    /// `PUSHWARDEN_JWT_POLICY`: `bitwarden` (amr + scope, as Bitwarden's hub) or `authenticated`.
    pub policy: Option<String>,
    /// `PUSHWARDEN_JWT_LEEWAY`
    #[serde(with = "humantime_serde::option")]
    pub leeway: Option<Duration>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SendConfig {
    /// `PUSHWARDEN_SEND_API_KEY`: static bearer key for `POST /send`.
    pub api_key: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HubConfig {
    /// `PUSHWARDEN_KEEP_ALIVE_INTERVAL`
    #[serde(with = "humantime_serde")]
    pub keep_alive_interval: Duration,
    /// `PUSHWARDEN_CLIENT_TIMEOUT`
    #[serde(with = "humantime_serde")]
    pub client_timeout: Duration,
    /// `PUSHWARDEN_HANDSHAKE_TIMEOUT`
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// `PUSHWARDEN_HEARTBEAT_INTERVAL`: Bitwarden's `Heartbeat` invocation on `/hub`.
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// `PUSHWARDEN_MAX_MESSAGE_SIZE`
    pub max_message_size: usize,
    /// `PUSHWARDEN_STATEFUL_RECONNECT`
    pub stateful_reconnect: bool,
    /// `PUSHWARDEN_MAX_QUEUED_BYTES`: per-connection outgoing queue limit.
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

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TransportConfig {
    pub websockets: bool,
    pub server_sent_events: bool,
    pub long_polling: bool,
    /// `PUSHWARDEN_DISCONNECT_TIMEOUT`
    #[serde(with = "humantime_serde")]
    pub disconnect_timeout: Duration,
    /// `PUSHWARDEN_LONG_POLL_TIMEOUT`
    #[serde(with = "humantime_serde")]
    pub long_poll_timeout: Duration,
    /// `PUSHWARDEN_SEND_TIMEOUT`
    #[serde(with = "humantime_serde")]
    pub send_timeout: Duration,
    /// `PUSHWARDEN_WEBSOCKET_READ_BUFFER`
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
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PushConfig {
    /// `PUSHWARDEN_PUSH_FROM_SEND`: `/send` also pushes to registered devices. Default: on when
    /// a provider is configured.
    pub from_send: Option<bool>,
    /// `PUSHWARDEN_PUSH_ALLOW_PRIVATE_ENDPOINTS`: accept Web Push endpoints on private,
    /// loopback and link-local addresses (tests, a LAN UnifiedPush distributor).
    pub allow_private_endpoints: bool,
    /// `PUSHWARDEN_PUSH_MAX_AGE`: a push not delivered by then is dropped (counted, logged).
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
    /// `PUSHWARDEN_PUSH_CONCURRENCY`: pushes in flight per provider.
    pub concurrency: usize,
    /// `PUSHWARDEN_PUSH_RETRY_BASE`: first retry delay, doubled per attempt.
    #[serde(with = "humantime_serde")]
    pub retry_base: Duration,
    /// `PUSHWARDEN_PUSH_RETRY_MAX`: longest delay between attempts.
    #[serde(with = "humantime_serde")]
    pub retry_max: Duration,
}

impl Default for PushConfig {
    fn default() -> Self {
        let d = pushwarden_push::DeliveryOptions::default();
        Self {
            from_send: None,
            allow_private_endpoints: false,
            max_age: d.max_age,
            concurrency: d.concurrency,
            retry_base: d.backoff.base,
            retry_max: d.backoff.max,
        }
    }
}

/// APNs token authentication.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApnsConfig {
    /// `PUSHWARDEN_APNS_KEY_FILE`: the `.p8` signing key.
    pub key_file: Option<PathBuf>,
    /// `PUSHWARDEN_APNS_KEY_ID`
    pub key_id: Option<String>,
    /// `PUSHWARDEN_APNS_TEAM_ID`
    pub team_id: Option<String>,
    /// `PUSHWARDEN_APNS_TOPIC`: the app's bundle id.
    pub topic: Option<String>,
    /// `PUSHWARDEN_APNS_ENDPOINT`: base URL instead of Apple's (`http://` = h2c, for tests).
    pub endpoint: Option<String>,
    /// `PUSHWARDEN_APNS_CA_FILE`: extra trusted CA (PEM) for an `https://` endpoint.
    pub ca_file: Option<PathBuf>,
}

/// FCM HTTP v1.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FcmConfig {
    /// `PUSHWARDEN_FCM_SERVICE_ACCOUNT`: the service-account JSON file.
    pub service_account: Option<PathBuf>,
    /// `PUSHWARDEN_FCM_ENDPOINT`: base URL instead of `https://fcm.googleapis.com`.
    pub endpoint: Option<String>,
}

/// Web Push and UnifiedPush.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebPushConfig {
    /// `PUSHWARDEN_VAPID_PRIVATE_KEY`: PEM file from `pushwarden vapid generate`.
    pub vapid_private_key: Option<PathBuf>,
    /// `PUSHWARDEN_VAPID_SUBJECT`: `mailto:` or `https:` contact for push services.
    pub vapid_subject: Option<String>,
    /// `PUSHWARDEN_WEBPUSH_TTL`: how long a push service keeps a message for an offline device.
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
}

impl Default for WebPushConfig {
    fn default() -> Self {
        Self {
            vapid_private_key: None,
            vapid_subject: None,
            ttl: Duration::from_secs(24 * 3600),
        }
    }
}

/// The relay role: self-hosted installations pushing through this service.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RelayConfig {
    /// `PUSHWARDEN_RELAY_TOKEN_SECRET`: signs installation tokens (shared by every node of a
    /// relay). Default: a secret kept in the data directory.
    pub token_secret: Option<String>,
    /// `PUSHWARDEN_RELAY_TOKEN_LIFETIME`
    #[serde(with = "humantime_serde")]
    pub token_lifetime: Duration,
    /// `PUSHWARDEN_RELAY_REQUESTS_PER_MINUTE`: per installation.
    pub requests_per_minute: u32,
    /// `PUSHWARDEN_RELAY_PUSHES_PER_MINUTE`: `/push/send` calls per installation.
    pub pushes_per_minute: u32,
    /// `PUSHWARDEN_RELAY_MAX_REGISTRATIONS`: devices per installation.
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
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpstreamConfig {
    /// `PUSHWARDEN_UPSTREAM_RELAY_URI` (default `https://push.bitwarden.com`)
    pub relay_uri: Option<String>,
    /// `PUSHWARDEN_UPSTREAM_IDENTITY_URI` (default `https://identity.bitwarden.com`)
    pub identity_uri: Option<String>,
    /// `PUSHWARDEN_UPSTREAM_INSTALLATION_ID`
    pub installation_id: Option<String>,
    /// `PUSHWARDEN_UPSTREAM_INSTALLATION_KEY`
    pub installation_key: Option<String>,
    /// `PUSHWARDEN_UPSTREAM_CA_FILE`: extra trusted CA for the relay's certificate.
    pub ca_file: Option<PathBuf>,
}

/// Serving HTTPS directly (Vaultwarden accepts only `https` relay URIs).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// `PUSHWARDEN_TLS_CERT_FILE`: PEM certificate chain.
    pub cert_file: Option<PathBuf>,
    /// `PUSHWARDEN_TLS_KEY_FILE`: PEM private key.
    pub key_file: Option<PathBuf>,
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
            shutdown_timeout: Duration::from_secs(10),
        }
    }
}

impl Config {
    /// Reads the file (if any), then applies the environment.
    pub fn load(file: Option<&Path>) -> Result<Self> {
        let mut config = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading config file {}", path.display()))?;
                toml::from_str(&text)
                    .with_context(|| format!("parsing config file {}", path.display()))?
            }
            None => Config::default(),
        };
        config.apply_env(|name| std::env::var(name).ok())?;
        Ok(config)
    }

    /// Applies `PUSHWARDEN_*` variables, read through `get` (tests pass a map).
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<()> {
        let var = |name: &str| get(name).filter(|v| !v.trim().is_empty());
        if let Some(v) = var("PUSHWARDEN_LISTEN") {
            self.listen = v
                .parse()
                .with_context(|| format!("PUSHWARDEN_LISTEN={v}"))?;
        }
        if let Some(v) = var("PUSHWARDEN_DATA_DIR") {
            self.data_dir = v.into();
        }
        if let Some(v) = var("PUSHWARDEN_INSTALLATION_ID") {
            self.installation_id = Some(v);
        }
        if let Some(v) = var("PUSHWARDEN_JWT_HS256_SECRET") {
            self.jwt.hs256_secret = Some(v);
        }
        if let Some(v) = var("PUSHWARDEN_JWT_RSA_PUBLIC_KEY") {
            self.jwt.rsa_public_key = Some(v.into());
        }
        if let Some(v) = var("PUSHWARDEN_JWT_AUTHORITY") {
            self.jwt.authority = Some(v);
        }
        if let Some(v) = var("PUSHWARDEN_JWT_ISSUER") {
            self.jwt.issuer = Some(v);
        }
        if let Some(v) = var("PUSHWARDEN_JWT_POLICY") {
            self.jwt.policy = Some(v);
        }
        if let Some(v) = var("PUSHWARDEN_SEND_API_KEY") {
            self.send.api_key = Some(v);
        }
        let string = |name: &str, slot: &mut Option<String>| {
            if let Some(v) = var(name) {
                *slot = Some(v);
            }
        };
        let path = |name: &str, slot: &mut Option<PathBuf>| {
            if let Some(v) = var(name) {
                *slot = Some(v.into());
            }
        };
        string("PUSHWARDEN_DATABASE_URL", &mut self.database_url);
        path("PUSHWARDEN_APNS_KEY_FILE", &mut self.apns.key_file);
        string("PUSHWARDEN_APNS_KEY_ID", &mut self.apns.key_id);
        string("PUSHWARDEN_APNS_TEAM_ID", &mut self.apns.team_id);
        string("PUSHWARDEN_APNS_TOPIC", &mut self.apns.topic);
        string("PUSHWARDEN_APNS_ENDPOINT", &mut self.apns.endpoint);
        path("PUSHWARDEN_APNS_CA_FILE", &mut self.apns.ca_file);
        path(
            "PUSHWARDEN_FCM_SERVICE_ACCOUNT",
            &mut self.fcm.service_account,
        );
        string("PUSHWARDEN_FCM_ENDPOINT", &mut self.fcm.endpoint);
        path(
            "PUSHWARDEN_VAPID_PRIVATE_KEY",
            &mut self.webpush.vapid_private_key,
        );
        string("PUSHWARDEN_VAPID_SUBJECT", &mut self.webpush.vapid_subject);
        string(
            "PUSHWARDEN_RELAY_TOKEN_SECRET",
            &mut self.relay.token_secret,
        );
        string(
            "PUSHWARDEN_UPSTREAM_RELAY_URI",
            &mut self.upstream.relay_uri,
        );
        string(
            "PUSHWARDEN_UPSTREAM_IDENTITY_URI",
            &mut self.upstream.identity_uri,
        );
        string(
            "PUSHWARDEN_UPSTREAM_INSTALLATION_ID",
            &mut self.upstream.installation_id,
        );
        string(
            "PUSHWARDEN_UPSTREAM_INSTALLATION_KEY",
            &mut self.upstream.installation_key,
        );
        path("PUSHWARDEN_UPSTREAM_CA_FILE", &mut self.upstream.ca_file);
        path("PUSHWARDEN_TLS_CERT_FILE", &mut self.tls.cert_file);
        path("PUSHWARDEN_TLS_KEY_FILE", &mut self.tls.key_file);
        let flag = |name: &str, slot: &mut bool| -> Result<()> {
            if let Some(v) = var(name) {
                *slot = parse_bool(&v).with_context(|| format!("{name}={v}"))?;
            }
            Ok(())
        };
        flag(
            "PUSHWARDEN_PUSH_ALLOW_PRIVATE_ENDPOINTS",
            &mut self.push.allow_private_endpoints,
        )?;
        if let Some(v) = var("PUSHWARDEN_PUSH_FROM_SEND") {
            self.push.from_send =
                Some(parse_bool(&v).with_context(|| format!("PUSHWARDEN_PUSH_FROM_SEND={v}"))?);
        }
        let duration = |name: &str, slot: &mut Duration| -> Result<()> {
            if let Some(v) = var(name) {
                *slot = humantime::parse_duration(&v).with_context(|| format!("{name}={v}"))?;
            }
            Ok(())
        };
        let mut leeway = self.jwt.leeway.unwrap_or(Duration::from_secs(30));
        duration("PUSHWARDEN_JWT_LEEWAY", &mut leeway)?;
        self.jwt.leeway = Some(leeway);
        duration(
            "PUSHWARDEN_KEEP_ALIVE_INTERVAL",
            &mut self.hub.keep_alive_interval,
        )?;
        duration("PUSHWARDEN_CLIENT_TIMEOUT", &mut self.hub.client_timeout)?;
        duration(
            "PUSHWARDEN_HANDSHAKE_TIMEOUT",
            &mut self.hub.handshake_timeout,
        )?;
        duration(
            "PUSHWARDEN_HEARTBEAT_INTERVAL",
            &mut self.hub.heartbeat_interval,
        )?;
        duration(
            "PUSHWARDEN_DISCONNECT_TIMEOUT",
            &mut self.transport.disconnect_timeout,
        )?;
        duration(
            "PUSHWARDEN_LONG_POLL_TIMEOUT",
            &mut self.transport.long_poll_timeout,
        )?;
        duration("PUSHWARDEN_SEND_TIMEOUT", &mut self.transport.send_timeout)?;
        duration("PUSHWARDEN_SHUTDOWN_TIMEOUT", &mut self.shutdown_timeout)?;
        duration("PUSHWARDEN_PUSH_MAX_AGE", &mut self.push.max_age)?;
        duration("PUSHWARDEN_PUSH_RETRY_BASE", &mut self.push.retry_base)?;
        duration("PUSHWARDEN_PUSH_RETRY_MAX", &mut self.push.retry_max)?;
        duration("PUSHWARDEN_WEBPUSH_TTL", &mut self.webpush.ttl)?;
        duration(
            "PUSHWARDEN_RELAY_TOKEN_LIFETIME",
            &mut self.relay.token_lifetime,
        )?;
        let count = |name: &str, slot: &mut u64| -> Result<()> {
            if let Some(v) = var(name) {
                *slot = v.trim().parse().with_context(|| format!("{name}={v}"))?;
            }
            Ok(())
        };
        let mut requests = u64::from(self.relay.requests_per_minute);
        count("PUSHWARDEN_RELAY_REQUESTS_PER_MINUTE", &mut requests)?;
        self.relay.requests_per_minute =
            u32::try_from(requests).context("PUSHWARDEN_RELAY_REQUESTS_PER_MINUTE is too large")?;
        let mut pushes = u64::from(self.relay.pushes_per_minute);
        count("PUSHWARDEN_RELAY_PUSHES_PER_MINUTE", &mut pushes)?;
        self.relay.pushes_per_minute =
            u32::try_from(pushes).context("PUSHWARDEN_RELAY_PUSHES_PER_MINUTE is too large")?;
        count(
            "PUSHWARDEN_RELAY_MAX_REGISTRATIONS",
            &mut self.relay.max_registrations,
        )?;
        let number = |name: &str, slot: &mut usize| -> Result<()> {
            if let Some(v) = var(name) {
                *slot = v.trim().parse().with_context(|| format!("{name}={v}"))?;
            }
            Ok(())
        };
        number(
            "PUSHWARDEN_MAX_MESSAGE_SIZE",
            &mut self.hub.max_message_size,
        )?;
        number(
            "PUSHWARDEN_MAX_QUEUED_BYTES",
            &mut self.hub.max_queued_bytes,
        )?;
        number("PUSHWARDEN_PUSH_CONCURRENCY", &mut self.push.concurrency)?;
        number(
            "PUSHWARDEN_WEBSOCKET_READ_BUFFER",
            &mut self.transport.websocket_read_buffer,
        )?;
        if let Some(v) = var("PUSHWARDEN_STATEFUL_RECONNECT") {
            self.hub.stateful_reconnect =
                parse_bool(&v).with_context(|| format!("PUSHWARDEN_STATEFUL_RECONNECT={v}"))?;
        }
        self.validate()
    }

    fn validate(&self) -> Result<()> {
        if self.hub.client_timeout <= self.hub.keep_alive_interval {
            tracing::warn!("client_timeout should be longer than keep_alive_interval (clients ping at that rate)");
        }
        if self.relay.requests_per_minute == 0 || self.relay.pushes_per_minute == 0 {
            bail!("relay rate limits must be at least 1 per minute");
        }
        if self.tls.cert_file.is_some() != self.tls.key_file.is_some() {
            bail!("TLS needs both PUSHWARDEN_TLS_CERT_FILE and PUSHWARDEN_TLS_KEY_FILE");
        }
        if self.upstream.installation_id.is_some() != self.upstream.installation_key.is_some() {
            bail!("an upstream relay needs both PUSHWARDEN_UPSTREAM_INSTALLATION_ID and PUSHWARDEN_UPSTREAM_INSTALLATION_KEY");
        }
        if self.push.concurrency == 0 {
            bail!("push.concurrency must be at least 1");
        }
        if self.hub.max_message_size < 64 {
            bail!("max_message_size must be at least 64 bytes");
        }
        for (name, d) in [
            ("keep_alive_interval", self.hub.keep_alive_interval),
            ("client_timeout", self.hub.client_timeout),
            ("handshake_timeout", self.hub.handshake_timeout),
            ("heartbeat_interval", self.hub.heartbeat_interval),
            ("disconnect_timeout", self.transport.disconnect_timeout),
            ("long_poll_timeout", self.transport.long_poll_timeout),
            ("send_timeout", self.transport.send_timeout),
            ("push.max_age", self.push.max_age),
            ("push.retry_base", self.push.retry_base),
            ("push.retry_max", self.push.retry_max),
            ("relay.token_lifetime", self.relay.token_lifetime),
        ] {
            if d.is_zero() {
                bail!("{name} must be greater than zero");
            }
        }
        Ok(())
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

fn parse_bool(v: &str) -> Result<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => bail!("expected true or false"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn environment_overrides_file() {
        let mut c: Config = toml::from_str(
            r#"
            listen = "0.0.0.0:6000"
            [hub]
            keep_alive_interval = "5s"
            [jwt]
            hs256_secret = "file"
            "#,
        )
        .unwrap();
        let env: HashMap<&str, &str> = HashMap::from([
            ("PUSHWARDEN_LISTEN", "127.0.0.1:7000"),
            ("PUSHWARDEN_CLIENT_TIMEOUT", "2s"),
            ("PUSHWARDEN_JWT_HS256_SECRET", "env"),
            ("PUSHWARDEN_STATEFUL_RECONNECT", "false"),
        ]);
        c.apply_env(|k| env.get(k).map(|v| v.to_string())).unwrap();
        assert_eq!(c.listen.port(), 7000);
        assert_eq!(c.hub.keep_alive_interval, Duration::from_secs(5));
        assert_eq!(c.hub.client_timeout, Duration::from_secs(2));
        assert_eq!(c.jwt.hs256_secret.as_deref(), Some("env"));
        assert!(!c.hub.stateful_reconnect);
        assert!(!c.is_development());
    }

    #[test]
    fn the_example_file_is_valid() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../pushwarden.example.toml");
        let c = Config::load(Some(Path::new(path))).unwrap();
        assert_eq!(c.jwt.authority.as_deref(), Some("http://identity:5000"));
        assert_eq!(c.transport.websocket_read_buffer, 256);
        assert_eq!(c.push.max_age, Duration::from_secs(24 * 3600));
        assert_eq!(c.push.retry_max, Duration::from_secs(600));
        assert_eq!(c.webpush.ttl, Duration::from_secs(24 * 3600));
        assert_eq!(c.relay.pushes_per_minute, 1200);
        assert!(c.upstream.installation_id.is_none() && c.tls.cert_file.is_none());
    }

    #[test]
    fn relay_upstream_and_tls_settings() {
        let mut c = Config::default();
        let env: HashMap<&str, &str> = HashMap::from([
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
        ]);
        c.apply_env(|k| env.get(k).map(|v| v.to_string())).unwrap();
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
            let mut c = Config::default();
            assert!(
                c.apply_env(|k| (k == name).then(|| value.into())).is_err(),
                "{name}"
            );
        }
    }

    #[test]
    fn push_settings_from_the_environment() {
        let mut c = Config::default();
        let env: HashMap<&str, &str> = HashMap::from([
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
        ]);
        c.apply_env(|k| env.get(k).map(|v| v.to_string())).unwrap();
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
    fn bad_values_are_errors() {
        let mut c = Config::default();
        assert!(c
            .apply_env(|k| (k == "PUSHWARDEN_LISTEN").then(|| "nope".into()))
            .is_err());
        let mut c = Config::default();
        assert!(c
            .apply_env(|k| (k == "PUSHWARDEN_CLIENT_TIMEOUT").then(|| "0s".into()))
            .is_err());
        assert!(toml::from_str::<Config>("unknown = 1").is_err());
    }
}
