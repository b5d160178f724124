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
        ] {
            if d.is_zero() {
                bail!("{name} must be greater than zero");
            }
        }
        Ok(())
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
