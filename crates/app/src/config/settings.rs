//! Every setting, declared once: its TOML key, environment variable, kind, default and doc line.
//!
//! The environment provider, `pushwarden config example` (and so `pushwarden.example.toml`),
//! the README's settings table and `pushwarden config check` all read [`SETTINGS`]. The
//! `PUSHWARDEN_*` names and TOML keys are a contract other tools rely on: add, never rename.
//! A test checks that this table and the [`super::Config`] structs name the same keys and that
//! every default written here is the one the structs start from.

/// What a setting's value is, which decides how an environment variable is read and how a
/// value is written back as TOML.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Free text.
    Text,
    /// A URL, checked by `pushwarden config check` (the service checks it when it uses it).
    Url,
    /// A file or directory path.
    Path,
    /// `host:port`, an IP socket address.
    Addr,
    /// A humantime duration: `15s`, `500ms`, `2m`, `24h`.
    Duration,
    /// `true`/`false`; the environment also takes `1`/`0`, `yes`/`no`, `on`/`off`.
    Bool,
    /// A whole number no larger than this.
    Count(u64),
}

/// How `pushwarden config check` shows a setting's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mask {
    /// As it is.
    None,
    /// Never shown: only that it is set.
    Secret,
    /// A URL whose password is hidden (`postgres://user:pass@host/db`).
    UrlPassword,
}

/// One setting.
#[derive(Clone, Copy, Debug)]
pub struct Setting {
    /// Dotted TOML path: `listen`, `hub.keep_alive_interval`.
    pub key: &'static str,
    /// The environment variable, if the setting has one.
    pub env: Option<&'static str>,
    pub kind: Kind,
    /// The default, written as in the environment (`15s`, `true`, `32768`); `None` when the
    /// setting is unset by default.
    pub default: Option<&'static str>,
    /// What happens when an unset setting has a computed or outside default (README text).
    pub unset: Option<&'static str>,
    /// A value shown, commented out, in the example file for a setting without a default.
    pub example: Option<&'static str>,
    pub mask: Mask,
    /// One line, in the README's words.
    pub doc: &'static str,
}

impl Setting {
    const fn new(key: &'static str, env: &'static str, kind: Kind, doc: &'static str) -> Self {
        Setting {
            key,
            env: Some(env),
            kind,
            default: None,
            unset: None,
            example: None,
            mask: Mask::None,
            doc,
        }
    }

    /// A setting only the TOML file can set.
    const fn file_only(key: &'static str, kind: Kind, doc: &'static str) -> Self {
        Setting {
            env: None,
            ..Setting::new(key, "", kind, doc)
        }
    }

    const fn default(mut self, value: &'static str) -> Self {
        self.default = Some(value);
        self
    }

    const fn unset(mut self, text: &'static str) -> Self {
        self.unset = Some(text);
        self
    }

    const fn example(mut self, value: &'static str) -> Self {
        self.example = Some(value);
        self
    }

    const fn secret(mut self) -> Self {
        self.mask = Mask::Secret;
        self
    }

    const fn mask(mut self, mask: Mask) -> Self {
        self.mask = mask;
        self
    }

    /// The TOML table this setting is in (`""` for the top level) and its name there.
    pub fn section_and_name(&self) -> (&'static str, &'static str) {
        match self.key.split_once('.') {
            Some((section, name)) => (section, name),
            None => ("", self.key),
        }
    }
}

/// The TOML tables, in the order the example file shows them, each with a line about it.
pub const SECTIONS: &[(&str, &str)] = &[
    ("", "The service itself."),
    ("log", "Log lines on standard error."),
    (
        "jwt",
        "One or more ways to verify access tokens; with none, `serve` runs in development mode \
         (its own HS256 secret and /send key in data_dir). A token is checked with the key its \
         header names.",
    ),
    ("send", "POST /send."),
    ("hub", "The SignalR hubs."),
    ("transport", "The SignalR transports."),
    (
        "push",
        "Delivery to registered phones and browsers (the registry and queue live in database_url).",
    ),
    ("apns", "APNs token auth; all four credentials or none."),
    ("fcm", "FCM HTTP v1."),
    ("webpush", "Web Push and UnifiedPush."),
    (
        "relay",
        "The relay role: self-hosted Bitwarden/Vaultwarden servers pushing through this one \
         (`pushwarden installation create`).",
    ),
    (
        "upstream",
        "The self-hosted role: mobile pushes without local APNs/FCM credentials go to an \
         upstream relay, as this installation.",
    ),
    (
        "tls",
        "HTTPS without a reverse proxy (Vaultwarden accepts only https relay URIs).",
    ),
    (
        "limits",
        "What one peer may make the service hold: connections, time and requests. A peer is its \
         IP address, or the address a trusted proxy forwards for it; 0 turns a rate limit off.",
    ),
];

use Kind::{Addr, Bool, Count, Duration, Path, Text, Url};

const USIZE: Kind = Count(usize::MAX as u64);
const U32: Kind = Count(u32::MAX as u64);
const U64: Kind = Count(u64::MAX);

/// Every setting, grouped by TOML table in [`SECTIONS`] order.
pub const SETTINGS: &[Setting] = &[
    Setting::new("listen", "PUSHWARDEN_LISTEN", Addr, "address to serve on")
        .default("127.0.0.1:5000"),
    Setting::new(
        "data_dir",
        "PUSHWARDEN_DATA_DIR",
        Path,
        "development secrets, the relay token secret, the default SQLite database",
    )
    .default("pushwarden-data"),
    Setting::new(
        "installation_id",
        "PUSHWARDEN_INSTALLATION_ID",
        Text,
        "joins `/hub` connections to `Installation_{id}` groups (Bitwarden's notification center)",
    )
    .example("00000000-0000-0000-0000-000000000000"),
    Setting::new(
        "database_url",
        "PUSHWARDEN_DATABASE_URL",
        Text,
        "device registry, delivery queue, installations: `sqlite://PATH` or \
         `postgres://user:pass@host/db`; migrations run at start",
    )
    .unset("`sqlite://{data_dir}/pushwarden.db`")
    .example("postgres://pushwarden@db/pushwarden")
    .mask(Mask::UrlPassword),
    Setting::new(
        "shutdown_timeout",
        "PUSHWARDEN_SHUTDOWN_TIMEOUT",
        Duration,
        "how long a graceful shutdown waits for clients",
    )
    .default("10s"),
    Setting::new(
        "metrics_token",
        "PUSHWARDEN_METRICS_TOKEN",
        Text,
        "bearer token for `/metrics` and `/health`'s details (Prometheus `authorization`)",
    )
    .unset("served only to loopback peers")
    .example("a-long-random-string")
    .secret(),
    Setting::new(
        "admin_token",
        "PUSHWARDEN_ADMIN_TOKEN",
        Text,
        "turns on the admin page at `/admin`; the token logs in to it (at least 16 characters)",
    )
    .unset("no admin page (`/admin` answers 404)")
    .example("another-long-random-string")
    .secret(),
    // [log]
    Setting::new(
        "log.level",
        "PUSHWARDEN_LOG",
        Text,
        "log levels in tracing's filter syntax: `debug`, `info,pushwarden_push=debug`",
    )
    .unset("`RUST_LOG`, else `info`")
    .example("info"),
    Setting::new(
        "log.format",
        "PUSHWARDEN_LOG_FORMAT",
        Text,
        "`text` (colours only on a terminal) or `json` (one object per line)",
    )
    .default("text"),
    // [jwt]
    Setting::new(
        "jwt.hs256_secret",
        "PUSHWARDEN_JWT_HS256_SECRET",
        Text,
        "verify HS256 tokens with this secret",
    )
    .example("change-me")
    .secret(),
    Setting::new(
        "jwt.rsa_public_key",
        "PUSHWARDEN_JWT_RSA_PUBLIC_KEY",
        Path,
        "PEM public key file (Vaultwarden signs RS256 with its `rsa_key`)",
    )
    .example("/data/rsa_key.pub.pem"),
    Setting::new(
        "jwt.authority",
        "PUSHWARDEN_JWT_AUTHORITY",
        Url,
        "OpenID authority (Bitwarden's identity server, e.g. `http://identity:5000`): discovery \
         + JWKS, cached, re-fetched on an unknown `kid`",
    )
    .example("http://identity:5000"),
    Setting::new(
        "jwt.issuer",
        "PUSHWARDEN_JWT_ISSUER",
        Text,
        "required `iss` (Vaultwarden: `https://vault.example.com|login`)",
    )
    .unset("discovery's, else none")
    .example("https://vault.example.com|login"),
    Setting::new(
        "jwt.policy",
        "PUSHWARDEN_JWT_POLICY",
        Text,
        "`bitwarden`: `/hub` needs `amr` Application/external and scope `api`, as Bitwarden's \
         hub; `authenticated`: any valid token with a `sub`",
    )
    .default("bitwarden"),
    Setting::new(
        "jwt.leeway",
        "PUSHWARDEN_JWT_LEEWAY",
        Duration,
        "clock skew allowed on `exp`/`nbf`",
    )
    .default("30s"),
    // [send]
    Setting::new(
        "send.api_key",
        "PUSHWARDEN_SEND_API_KEY",
        Text,
        "static bearer key accepted by `/send`, besides tokens with scope `internal`",
    )
    .example("change-me")
    .secret(),
    // [hub]
    Setting::new(
        "hub.keep_alive_interval",
        "PUSHWARDEN_KEEP_ALIVE_INTERVAL",
        Duration,
        "Ping after this long without sending",
    )
    .default("15s"),
    Setting::new(
        "hub.client_timeout",
        "PUSHWARDEN_CLIENT_TIMEOUT",
        Duration,
        "close a client silent this long",
    )
    .default("30s"),
    Setting::new(
        "hub.handshake_timeout",
        "PUSHWARDEN_HANDSHAKE_TIMEOUT",
        Duration,
        "close a connection that has not completed the SignalR handshake by then",
    )
    .default("15s"),
    Setting::new(
        "hub.heartbeat_interval",
        "PUSHWARDEN_HEARTBEAT_INTERVAL",
        Duration,
        "Bitwarden's `Heartbeat` on `/hub`",
    )
    .default("120s"),
    Setting::new(
        "hub.max_message_size",
        "PUSHWARDEN_MAX_MESSAGE_SIZE",
        USIZE,
        "largest incoming hub message, in bytes (at least 64)",
    )
    .default("32768"),
    Setting::new(
        "hub.max_queued_bytes",
        "PUSHWARDEN_MAX_QUEUED_BYTES",
        USIZE,
        "per-connection outgoing queue, in bytes",
    )
    .default("524288"),
    Setting::new(
        "hub.stateful_reconnect",
        "PUSHWARDEN_STATEFUL_RECONNECT",
        Bool,
        "offer stateful reconnect",
    )
    .default("true"),
    // [transport]
    Setting::file_only(
        "transport.websockets",
        Bool,
        "offer the WebSockets transport",
    )
    .default("true"),
    Setting::file_only(
        "transport.server_sent_events",
        Bool,
        "offer the Server-Sent Events transport",
    )
    .default("true"),
    Setting::file_only(
        "transport.long_polling",
        Bool,
        "offer the long-polling transport",
    )
    .default("true"),
    Setting::new(
        "transport.disconnect_timeout",
        "PUSHWARDEN_DISCONNECT_TIMEOUT",
        Duration,
        "keep a negotiated connection without transport (long-poll gap, dropped stateful \
         WebSocket)",
    )
    .default("15s"),
    Setting::new(
        "transport.long_poll_timeout",
        "PUSHWARDEN_LONG_POLL_TIMEOUT",
        Duration,
        "answer a long poll with nothing after this long",
    )
    .default("90s"),
    Setting::new(
        "transport.send_timeout",
        "PUSHWARDEN_SEND_TIMEOUT",
        Duration,
        "a write stalled this long closes the connection",
    )
    .default("10s"),
    Setting::new(
        "transport.websocket_read_buffer",
        "PUSHWARDEN_WEBSOCKET_READ_BUFFER",
        USIZE,
        "bytes per WebSocket read; allocated for every connection, so small (clients send little)",
    )
    .default("256"),
    // [push]
    Setting::new(
        "push.from_send",
        "PUSHWARDEN_PUSH_FROM_SEND",
        Bool,
        "`/send` also pushes to registered devices",
    )
    .unset("on when a provider or upstream is configured")
    .example("true"),
    Setting::new(
        "push.allow_private_endpoints",
        "PUSHWARDEN_PUSH_ALLOW_PRIVATE_ENDPOINTS",
        Bool,
        "accept Web Push endpoints on private, loopback, link-local addresses and plain `http` \
         (tests, a LAN ntfy)",
    )
    .default("false"),
    Setting::new(
        "push.proxy",
        "PUSHWARDEN_PUSH_PROXY",
        Url,
        "send every push (APNs, FCM, Web Push, the upstream relay) through this HTTP proxy; \
         unset, none is used and `HTTPS_PROXY`/`HTTP_PROXY`/`ALL_PROXY` are ignored. Web Push \
         endpoint names are still resolved here and refused if private",
    )
    .unset("none")
    .example("http://proxy.internal:3128"),
    Setting::new(
        "push.max_age",
        "PUSHWARDEN_PUSH_MAX_AGE",
        Duration,
        "undelivered after this: dropped, counted, logged",
    )
    .default("24h"),
    Setting::new(
        "push.concurrency",
        "PUSHWARDEN_PUSH_CONCURRENCY",
        USIZE,
        "pushes in flight per provider",
    )
    .default("64"),
    Setting::new(
        "push.retry_base",
        "PUSHWARDEN_PUSH_RETRY_BASE",
        Duration,
        "first retry delay; doubles per attempt, with jitter, never sooner than `Retry-After`",
    )
    .default("1s"),
    Setting::new(
        "push.retry_max",
        "PUSHWARDEN_PUSH_RETRY_MAX",
        Duration,
        "longest delay between attempts",
    )
    .default("10m"),
    // [apns]
    Setting::new(
        "apns.key_file",
        "PUSHWARDEN_APNS_KEY_FILE",
        Path,
        "APNs token auth: the `.p8` signing key",
    )
    .example("/etc/pushwarden/AuthKey_ABC123DEFG.p8"),
    Setting::new(
        "apns.key_id",
        "PUSHWARDEN_APNS_KEY_ID",
        Text,
        "the key's id",
    )
    .example("ABC123DEFG"),
    Setting::new(
        "apns.team_id",
        "PUSHWARDEN_APNS_TEAM_ID",
        Text,
        "your Apple team id",
    )
    .example("DEF123GHIJ"),
    Setting::new(
        "apns.topic",
        "PUSHWARDEN_APNS_TOPIC",
        Text,
        "the app's bundle id",
    )
    .example("com.8bit.bitwarden"),
    Setting::new(
        "apns.endpoint",
        "PUSHWARDEN_APNS_ENDPOINT",
        Url,
        "base URL override; `http://` means HTTP/2 cleartext (tests)",
    )
    .unset("Apple's")
    .example("https://api.push.apple.com"),
    Setting::new(
        "apns.ca_file",
        "PUSHWARDEN_APNS_CA_FILE",
        Path,
        "extra trusted CA (PEM) for an `https://` override",
    )
    .example("/etc/pushwarden/extra-ca.pem"),
    // [fcm]
    Setting::new(
        "fcm.service_account",
        "PUSHWARDEN_FCM_SERVICE_ACCOUNT",
        Path,
        "Firebase service-account JSON (its `token_uri` is used)",
    )
    .example("/etc/pushwarden/firebase-service-account.json"),
    Setting::new(
        "fcm.endpoint",
        "PUSHWARDEN_FCM_ENDPOINT",
        Url,
        "base URL override",
    )
    .unset("`https://fcm.googleapis.com`")
    .example("https://fcm.googleapis.com"),
    // [webpush]
    Setting::new(
        "webpush.vapid_private_key",
        "PUSHWARDEN_VAPID_PRIVATE_KEY",
        Path,
        "PEM from `pushwarden vapid generate`; turns on Web Push and UnifiedPush",
    )
    .example("/etc/pushwarden/vapid.pem"),
    Setting::new(
        "webpush.vapid_subject",
        "PUSHWARDEN_VAPID_SUBJECT",
        Text,
        "`mailto:` or `https:` contact, required with a VAPID key",
    )
    .example("mailto:admin@example.com"),
    Setting::new(
        "webpush.ttl",
        "PUSHWARDEN_WEBPUSH_TTL",
        Duration,
        "how long a push service keeps a message for an offline browser",
    )
    .default("24h"),
    Setting::new(
        "webpush.connect_timeout",
        "PUSHWARDEN_WEBPUSH_CONNECT_TIMEOUT",
        Duration,
        "connecting to a Web Push or UnifiedPush endpoint (user-supplied) gives up after this",
    )
    .default("5s"),
    Setting::new(
        "webpush.timeout",
        "PUSHWARDEN_WEBPUSH_TIMEOUT",
        Duration,
        "a whole Web Push request (connect, send, answer) gives up after this; retried later",
    )
    .default("15s"),
    Setting::new(
        "webpush.origin_concurrency",
        "PUSHWARDEN_WEBPUSH_ORIGIN_CONCURRENCY",
        USIZE,
        "Web Push requests in flight to one origin (scheme, host, port) once it has answered in \
         time (a new or failing origin gets one at a time); a slow or silent push service is \
         backed off and delays only its own subscriptions",
    )
    .default("16"),
    // [relay]
    Setting::new(
        "relay.token_secret",
        "PUSHWARDEN_RELAY_TOKEN_SECRET",
        Text,
        "signs installation tokens; set the same on every node of a relay",
    )
    .unset("kept in the data directory")
    .example("change-me")
    .secret(),
    Setting::new(
        "relay.token_lifetime",
        "PUSHWARDEN_RELAY_TOKEN_LIFETIME",
        Duration,
        "how long an installation token is valid",
    )
    .default("24h"),
    Setting::new(
        "relay.requests_per_minute",
        "PUSHWARDEN_RELAY_REQUESTS_PER_MINUTE",
        U32,
        "per installation (429 + `Retry-After` beyond)",
    )
    .default("600"),
    Setting::new(
        "relay.pushes_per_minute",
        "PUSHWARDEN_RELAY_PUSHES_PER_MINUTE",
        U32,
        "`/push/send` calls per installation",
    )
    .default("1200"),
    Setting::new(
        "relay.max_registrations",
        "PUSHWARDEN_RELAY_MAX_REGISTRATIONS",
        U64,
        "devices per installation",
    )
    .default("100000"),
    // [upstream]
    Setting::new(
        "upstream.installation_id",
        "PUSHWARDEN_UPSTREAM_INSTALLATION_ID",
        Text,
        "forward mobile pushes you have no APNs/FCM credentials for to an upstream relay, as \
         this installation",
    )
    .example("00000000-0000-0000-0000-000000000000"),
    Setting::new(
        "upstream.installation_key",
        "PUSHWARDEN_UPSTREAM_INSTALLATION_KEY",
        Text,
        "the installation's key (from bitwarden.com/host or `pushwarden installation create`)",
    )
    .example("change-me")
    .secret(),
    Setting::new(
        "upstream.relay_uri",
        "PUSHWARDEN_UPSTREAM_RELAY_URI",
        Url,
        "the upstream relay (EU: `https://api.bitwarden.eu`)",
    )
    .unset("`https://push.bitwarden.com`")
    .example("https://push.bitwarden.com"),
    Setting::new(
        "upstream.identity_uri",
        "PUSHWARDEN_UPSTREAM_IDENTITY_URI",
        Url,
        "its identity server (EU: `https://identity.bitwarden.eu`)",
    )
    .unset("`https://identity.bitwarden.com`")
    .example("https://identity.bitwarden.com"),
    Setting::new(
        "upstream.ca_file",
        "PUSHWARDEN_UPSTREAM_CA_FILE",
        Path,
        "extra trusted CA for the upstream's certificate",
    )
    .example("/etc/pushwarden/relay-ca.pem"),
    // [tls]
    Setting::new(
        "tls.cert_file",
        "PUSHWARDEN_TLS_CERT_FILE",
        Path,
        "serve HTTPS directly: PEM certificate chain (rustls, HTTP/1.1)",
    )
    .example("/etc/pushwarden/fullchain.pem"),
    Setting::new(
        "tls.key_file",
        "PUSHWARDEN_TLS_KEY_FILE",
        Path,
        "its PEM private key",
    )
    .example("/etc/pushwarden/privkey.pem"),
    // [limits]
    Setting::new(
        "limits.max_connections",
        "PUSHWARDEN_MAX_CONNECTIONS",
        USIZE,
        "open connections in all (0: the open-file limit less a reserve); past it, 503 and close",
    )
    .default("0"),
    Setting::new(
        "limits.max_connections_per_ip",
        "PUSHWARDEN_MAX_CONNECTIONS_PER_IP",
        USIZE,
        "open connections from one address (0: a quarter of the total); trusted proxies exempt",
    )
    .default("0"),
    Setting::new(
        "limits.header_read_timeout",
        "PUSHWARDEN_HEADER_READ_TIMEOUT",
        Duration,
        "time to send a request's headers, the TLS handshake, and between keep-alive requests",
    )
    .default("10s"),
    Setting::new(
        "limits.body_read_timeout",
        "PUSHWARDEN_BODY_READ_TIMEOUT",
        Duration,
        "time to send a whole request body",
    )
    .default("10s"),
    Setting::new(
        "limits.trusted_proxies",
        "PUSHWARDEN_TRUSTED_PROXIES",
        Text,
        "whose X-Forwarded-For/Forwarded is believed (loopback and private networks: a proxy on this host or in a container network); `none`",
    )
    .default("127.0.0.0/8,::1,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,fc00::/7"),
    Setting::new(
        "limits.negotiates_per_minute",
        "PUSHWARDEN_NEGOTIATES_PER_MINUTE",
        U32,
        "negotiate requests per peer per minute, both hubs",
    )
    .default("120"),
    Setting::new(
        "limits.connects_per_minute",
        "PUSHWARDEN_CONNECTS_PER_MINUTE",
        U32,
        "WebSocket connects to `/hub` per peer per minute",
    )
    .default("600"),
    Setting::new(
        "limits.anonymous_connects_per_minute",
        "PUSHWARDEN_ANONYMOUS_CONNECTS_PER_MINUTE",
        U32,
        "WebSocket connects to `/anonymous-hub` per peer per minute",
    )
    .default("60"),
    Setting::new(
        "limits.token_failures_per_minute",
        "PUSHWARDEN_TOKEN_FAILURES_PER_MINUTE",
        U32,
        "failed `/connect/token` attempts per peer per minute, then 429 for that peer only",
    )
    .default("10"),
    Setting::new(
        "limits.max_pending_negotiations",
        "PUSHWARDEN_MAX_PENDING_NEGOTIATIONS",
        USIZE,
        "negotiated connections not yet claimed by a transport, per hub; past it negotiate gets 503",
    )
    .default("10000"),
];

/// The setting with this TOML key.
pub fn by_key(key: &str) -> Option<&'static Setting> {
    SETTINGS.iter().find(|s| s.key == key)
}

/// The setting read from this environment variable.
pub fn by_env(name: &str) -> Option<&'static Setting> {
    SETTINGS.iter().find(|s| s.env == Some(name))
}
