//! Apple Push Notification service: the HTTP/2 provider API with token (ES256 JWT) auth.
//!
//! One [`ApnsClient`] holds one HTTP/2 connection pool per environment and a single cached
//! provider token. Apple treats a connection per request as abuse and rejects tokens minted too
//! often, so both the connection and the JWT are long-lived and shared by every send.
//!
//! [`ApnsClient::send`] never panics and never returns an error: every way a send can end is an
//! [`Outcome`] that tells the delivery queue whether to forget the device, retry later, or give
//! up and alert an operator.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use url::Url;

use crate::clock::Clock;

/// Apple's production gateway.
pub const PRODUCTION_URL: &str = "https://api.push.apple.com";
/// Apple's development (sandbox) gateway; tokens from debug builds only work here.
pub const SANDBOX_URL: &str = "https://api.sandbox.push.apple.com";

/// Largest body APNs accepts for non-VoIP pushes; checking locally saves a round trip.
pub const MAX_PAYLOAD_BYTES: usize = 4096;

/// Tokens are re-minted after this age: well inside Apple's 60-minute validity, and well past
/// its 20-minute minimum between refreshes.
const TOKEN_REFRESH_AFTER: Duration = Duration::from_secs(50 * 60);
/// Apple answers TooManyProviderTokenUpdates if a token is replaced sooner than this.
const TOKEN_MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(20 * 60);

/// Which APNs gateway a device token belongs to. A token from a debug build is only valid on
/// the sandbox and vice versa, so the environment travels with the device registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Environment {
    Production,
    Sandbox,
}

/// APNs credentials and where to send.
#[derive(Clone)]
pub struct ApnsConfig {
    /// The `.p8` signing key from the Apple developer account (PKCS#8 PEM, P-256).
    pub key_pem: Vec<u8>,
    /// The 10-character Key ID; goes into the JWT `kid`.
    pub key_id: String,
    /// The 10-character Team ID; goes into the JWT `iss`.
    pub team_id: String,
    /// The app's bundle ID, sent as `apns-topic`.
    pub topic: String,
    /// Base URL used for both environments instead of Apple's hosts. `http://` means HTTP/2
    /// with prior knowledge (h2c), which is how tests reach an in-process fake.
    pub endpoint: Option<Url>,
    /// Extra PEM root certificate(s) to trust, e.g. a test CA or a TLS-intercepting proxy.
    pub extra_ca_pem: Option<Vec<u8>>,
}

impl std::fmt::Debug for ApnsConfig {
    // The signing key must never end up in logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApnsConfig")
            .field("key_pem", &"<redacted>")
            .field("key_id", &self.key_id)
            .field("team_id", &self.team_id)
            .field("topic", &self.topic)
            .field("endpoint", &self.endpoint)
            .field("extra_ca_pem", &self.extra_ca_pem.as_ref().map(|_| "<pem>"))
            .finish()
    }
}

/// Errors building an [`ApnsClient`]; sending reports through [`Outcome`] instead.
#[derive(Debug, thiserror::Error)]
pub enum ApnsError {
    #[error("APNs signing key is not a usable P-256 PKCS#8 PEM: {0}")]
    Key(String),
    #[error("APNs configuration is incomplete: {0}")]
    Config(&'static str),
    #[error("APNs endpoint URL must be http or https: {0}")]
    Endpoint(String),
    #[error("APNs extra CA certificate is not valid PEM: {0}")]
    Ca(String),
    #[error("building the HTTP/2 client failed: {0}")]
    Http(String),
}

/// Per-request APNs headers. The defaults are what a Bitwarden sync push needs: a silent
/// background push, which Apple requires to be sent at priority 5.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendOptions {
    /// `apns-push-type`.
    pub push_type: String,
    /// `apns-priority` (10 immediate, 5 power-aware, 1 lowest).
    pub priority: u8,
    /// `apns-expiration` in UNIX seconds; `None` leaves it to APNs, `Some(0)` means "try once".
    pub expiration: Option<u64>,
    /// `apns-collapse-id`, at most 64 bytes.
    pub collapse_id: Option<String>,
    /// `apns-id`, a canonical lowercase UUID; APNs makes one up when absent.
    pub apns_id: Option<String>,
}

impl Default for SendOptions {
    fn default() -> Self {
        Self {
            push_type: "background".to_owned(),
            priority: 5,
            expiration: None,
            collapse_id: None,
            apns_id: None,
        }
    }
}

/// How a send ended, phrased as what the caller should do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// APNs accepted the notification (which is not a promise the device gets it).
    Delivered { apns_id: Option<String> },
    /// The device token will never work again for this topic/environment: stop using it.
    /// `timestamp_ms` (410 only) is when APNs learnt that; a registration newer than it wins.
    Gone {
        reason: String,
        timestamp_ms: Option<u64>,
    },
    /// A transient failure (429, 5xx, network, or a token refresh that must wait). `after` is a
    /// server- or policy-given delay; `None` means use the caller's own backoff. `throttled`
    /// when APNs answered 429 TooManyRequests: it asks us to slow down.
    Retry {
        after: Option<Duration>,
        reason: String,
        throttled: bool,
    },
    /// Retrying the same request will not help. `config_error` marks failures that no single
    /// device causes (credentials, topic, key), which need an operator rather than a token
    /// clean-up. `status` is 0 when the request was refused locally and never sent.
    Permanent {
        status: u16,
        reason: String,
        config_error: bool,
    },
}

/// The iOS background-sync body, matching Bitwarden's Azure Notification Hubs `payload`
/// template `{"data":{"type":#(type),"payload":"$(payload)"},"aps":{"content-available":1}}`:
/// `#(...)` renders a number and `$(...)` a string, so `type` is a JSON number and `payload`
/// is the payload object serialised into a string, which the iOS app decodes a second time.
pub fn bitwarden_payload(push_type: u8, payload_json: &str) -> serde_json::Value {
    serde_json::json!({
        "data": {
            "type": push_type,
            "payload": payload_json,
        },
        "aps": {
            "content-available": 1,
        },
    })
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    iat: u64,
}

struct CachedToken {
    jwt: String,
    minted: Instant,
}

/// Mints and caches the provider JWT. Apple wants one token shared by all requests, refreshed
/// at most every 20 minutes and at least every 60.
struct TokenSigner {
    key: EncodingKey,
    key_id: String,
    team_id: String,
    cached: Mutex<Option<CachedToken>>,
}

/// Why no token is available for a request.
enum TokenError {
    /// Signing failed: the key is unusable.
    Sign(String),
    /// APNs called the token expired but replacing it now would break the 20-minute rule.
    TooSoon(Duration),
}

impl TokenSigner {
    fn new(config: &ApnsConfig) -> Result<Self, ApnsError> {
        let key =
            EncodingKey::from_ec_pem(&config.key_pem).map_err(|e| ApnsError::Key(e.to_string()))?;
        let signer = Self {
            key,
            key_id: config.key_id.clone(),
            team_id: config.team_id.clone(),
            cached: Mutex::new(None),
        };
        // Sign once up front so a wrong key fails at start-up, not on the first push.
        signer.current(Instant::now()).map_err(|e| match e {
            TokenError::Sign(msg) => ApnsError::Key(msg),
            TokenError::TooSoon(_) => ApnsError::Key("token refresh refused".to_owned()),
        })?;
        Ok(signer)
    }

    fn mint(&self) -> Result<String, TokenError> {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.key_id.clone());
        let iat = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let claims = Claims {
            iss: &self.team_id,
            iat,
        };
        jsonwebtoken::encode(&header, &claims, &self.key)
            .map_err(|e| TokenError::Sign(e.to_string()))
    }

    /// The token to use now, minting a new one once the cached one is 50 minutes old.
    fn current(&self, now: Instant) -> Result<String, TokenError> {
        let mut cached = self.cached.lock();
        if let Some(tok) = cached.as_ref() {
            if now.saturating_duration_since(tok.minted) < TOKEN_REFRESH_AFTER {
                return Ok(tok.jwt.clone());
            }
        }
        // Minting under the lock keeps concurrent senders from each minting their own token.
        let jwt = self.mint()?;
        *cached = Some(CachedToken {
            jwt: jwt.clone(),
            minted: now,
        });
        Ok(jwt)
    }

    /// APNs rejected `rejected` as expired. Returns a token worth retrying with: one another
    /// task already minted, or a fresh one if the 20-minute rule allows; otherwise how long
    /// to wait.
    fn replace_expired(&self, rejected: &str, now: Instant) -> Result<String, TokenError> {
        let mut cached = self.cached.lock();
        if let Some(tok) = cached.as_ref() {
            if tok.jwt != rejected {
                return Ok(tok.jwt.clone());
            }
            let age = now.saturating_duration_since(tok.minted);
            if age < TOKEN_MIN_REFRESH_INTERVAL {
                // A token this young being "expired" points at clock skew; refreshing would
                // only add TooManyProviderTokenUpdates on top.
                return Err(TokenError::TooSoon(TOKEN_MIN_REFRESH_INTERVAL - age));
            }
        }
        let jwt = self.mint()?;
        *cached = Some(CachedToken {
            jwt: jwt.clone(),
            minted: now,
        });
        Ok(jwt)
    }
}

/// Sends notifications to APNs. Cheap to share behind an `Arc`; all sends multiplex over the
/// same HTTP/2 connection per environment.
pub struct ApnsClient {
    topic: String,
    /// Extra trusted roots, kept to rebuild the clients for a proxy.
    certs: Vec<reqwest::Certificate>,
    production: Gateway,
    sandbox: Gateway,
    signer: TokenSigner,
    clock: Arc<dyn Clock>,
}

struct Gateway {
    client: reqwest::Client,
    /// Base URL without a trailing slash; `/3/device/<token>` is appended.
    base: String,
}

impl std::fmt::Debug for ApnsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApnsClient")
            .field("topic", &self.topic)
            .field("production", &self.production.base)
            .field("sandbox", &self.sandbox.base)
            .finish_non_exhaustive()
    }
}

impl ApnsClient {
    pub fn new(config: ApnsConfig) -> Result<Self, ApnsError> {
        if config.key_id.is_empty() {
            return Err(ApnsError::Config("key_id is empty"));
        }
        if config.team_id.is_empty() {
            return Err(ApnsError::Config("team_id is empty"));
        }
        if config.topic.is_empty() {
            return Err(ApnsError::Config("topic is empty"));
        }
        let signer = TokenSigner::new(&config)?;

        let certs = match &config.extra_ca_pem {
            Some(pem) => reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| ApnsError::Ca(e.to_string()))?,
            None => Vec::new(),
        };
        let (prod_base, sandbox_base) = match &config.endpoint {
            Some(url) => {
                if !matches!(url.scheme(), "http" | "https") {
                    return Err(ApnsError::Endpoint(url.to_string()));
                }
                let base = url.as_str().trim_end_matches('/').to_owned();
                (base.clone(), base)
            }
            None => (PRODUCTION_URL.to_owned(), SANDBOX_URL.to_owned()),
        };

        Ok(Self {
            topic: config.topic,
            production: Gateway {
                client: build_http2_client(&certs, None)?,
                base: prod_base,
            },
            sandbox: Gateway {
                client: build_http2_client(&certs, None)?,
                base: sandbox_base,
            },
            certs,
            signer,
            clock: crate::clock::system(),
        })
    }

    /// Connects through `proxy` (HTTP CONNECT) instead of directly. Without it no proxy is used,
    /// whatever the environment says.
    pub fn with_proxy(mut self, proxy: &Url) -> Result<Self, ApnsError> {
        self.production.client = build_http2_client(&self.certs, Some(proxy))?;
        self.sandbox.client = build_http2_client(&self.certs, Some(proxy))?;
        Ok(self)
    }

    /// Reads the time for the token cache from `clock`; the token minted to check the key at
    /// construction is forgotten, so the first send mints one at `clock`'s time.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        *self.signer.cached.lock() = None;
        self
    }

    /// Sends `body` to one device. Checks what APNs would reject locally first, so obviously
    /// bad requests never count against the connection.
    pub async fn send(
        &self,
        device_token: &str,
        env: Environment,
        body: &serde_json::Value,
        options: SendOptions,
    ) -> Outcome {
        if let Some(outcome) = check_request(device_token, &options) {
            return outcome;
        }
        let body = match serde_json::to_vec(body) {
            Ok(b) => b,
            Err(e) => return permanent_local(format!("payload not serialisable: {e}"), false),
        };
        if body.len() > MAX_PAYLOAD_BYTES {
            return Outcome::Permanent {
                status: 413,
                reason: "PayloadTooLarge".to_owned(),
                config_error: false,
            };
        }

        let jwt = match self.signer.current(self.clock.now()) {
            Ok(jwt) => jwt,
            Err(e) => return token_error_outcome(e),
        };
        let gateway = match env {
            Environment::Production => &self.production,
            Environment::Sandbox => &self.sandbox,
        };
        // Hex was checked above, so the token needs no escaping in the path.
        let url = format!("{}/3/device/{}", gateway.base, device_token);

        let first = self.post(gateway, &url, &jwt, &options, &body).await;
        match first {
            Response::Reply(reply)
                if reply.status == 403 && reply.reason == "ExpiredProviderToken" =>
            {
                // Apple's guidance: mint a new token (respecting the 20-minute rule) and
                // retry once.
                match self.signer.replace_expired(&jwt, self.clock.now()) {
                    Ok(fresh) => {
                        tracing::info!(
                            "APNs reported ExpiredProviderToken; retrying once with a new token"
                        );
                        classify(self.post(gateway, &url, &fresh, &options, &body).await)
                    }
                    Err(e) => token_error_outcome(e),
                }
            }
            other => classify(other),
        }
    }

    async fn post(
        &self,
        gateway: &Gateway,
        url: &str,
        jwt: &str,
        options: &SendOptions,
        body: &[u8],
    ) -> Response {
        let mut req = gateway
            .client
            .post(url)
            .header(reqwest::header::AUTHORIZATION, format!("bearer {jwt}"))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("apns-topic", &self.topic)
            .header("apns-push-type", &options.push_type)
            .header("apns-priority", options.priority.to_string());
        if let Some(exp) = options.expiration {
            req = req.header("apns-expiration", exp.to_string());
        }
        if let Some(collapse) = &options.collapse_id {
            req = req.header("apns-collapse-id", collapse);
        }
        if let Some(id) = &options.apns_id {
            req = req.header("apns-id", id);
        }

        let resp = match req.body(body.to_vec()).send().await {
            Ok(r) => r,
            Err(e) => return Response::Network(e.to_string()),
        };
        let status = resp.status().as_u16();
        let apns_id = header_str(&resp, "apns-id");
        let retry_after = header_str(&resp, "retry-after")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        // An unreadable or non-JSON error body still has a usable status.
        let bytes = crate::outbound::bytes(resp).await.unwrap_or_default();
        let parsed: ErrorBody = serde_json::from_slice(&bytes).unwrap_or_default();
        Response::Reply(Reply {
            status,
            apns_id,
            retry_after,
            reason: parsed.reason.unwrap_or_default(),
            timestamp_ms: parsed.timestamp,
        })
    }
}

fn build_http2_client(
    certs: &[reqwest::Certificate],
    proxy: Option<&Url>,
) -> Result<reqwest::Client, ApnsError> {
    crate::outbound::client_builder(proxy)
        .map_err(|e| ApnsError::Http(e.to_string()))?
        // APNs is HTTP/2 only. Prior knowledge means h2c for http:// and ALPN "h2" alone for
        // https://, and lets the pool share one connection among requests started together.
        .http2_prior_knowledge()
        // Apple asks providers to keep connections open; pings keep idle ones alive through
        // NATs and notice dead ones.
        .http2_keep_alive_interval(Duration::from_secs(60))
        .http2_keep_alive_timeout(Duration::from_secs(20))
        .http2_keep_alive_while_idle(true)
        .pool_idle_timeout(Duration::from_secs(30 * 60))
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(30))
        // A redirect from APNs would be unexpected; following it would leak the bearer token.
        .redirect(reqwest::redirect::Policy::none())
        .tls_certs_merge(certs.iter().cloned())
        .build()
        .map_err(|e| ApnsError::Http(e.to_string()))
}

fn header_str(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

#[derive(Default, Deserialize)]
struct ErrorBody {
    reason: Option<String>,
    timestamp: Option<u64>,
}

struct Reply {
    status: u16,
    apns_id: Option<String>,
    retry_after: Option<Duration>,
    reason: String,
    timestamp_ms: Option<u64>,
}

enum Response {
    Reply(Reply),
    Network(String),
}

fn permanent_local(reason: String, config_error: bool) -> Outcome {
    Outcome::Permanent {
        status: 0,
        reason,
        config_error,
    }
}

fn token_error_outcome(e: TokenError) -> Outcome {
    match e {
        TokenError::Sign(msg) => {
            tracing::error!(error = %msg, "APNs provider token could not be signed");
            permanent_local(format!("signing provider token failed: {msg}"), true)
        }
        TokenError::TooSoon(wait) => {
            tracing::warn!(
                "APNs rejected a provider token younger than 20 minutes; check the clock"
            );
            Outcome::Retry {
                after: Some(wait),
                reason: "ExpiredProviderToken".to_owned(),
                throttled: false,
            }
        }
    }
}

/// Refuses locally what APNs is certain to refuse, so the caller gets the same answer sooner.
fn check_request(device_token: &str, options: &SendOptions) -> Option<Outcome> {
    if !is_hex_token(device_token) {
        // Never deliverable, same as APNs's BadDeviceToken.
        return Some(Outcome::Gone {
            reason: "BadDeviceToken".to_owned(),
            timestamp_ms: None,
        });
    }
    if options.push_type.is_empty() || !options.push_type.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        return Some(permanent_local("BadPushType".to_owned(), false));
    }
    if !matches!(options.priority, 1 | 5 | 10) {
        return Some(permanent_local("BadPriority".to_owned(), false));
    }
    if let Some(c) = &options.collapse_id {
        // 64 bytes is Apple's limit; header values must also be visible ASCII or tabs/spaces.
        if c.len() > 64 || reqwest::header::HeaderValue::from_str(c).is_err() {
            return Some(permanent_local("BadCollapseId".to_owned(), false));
        }
    }
    if let Some(id) = &options.apns_id {
        if !is_canonical_uuid(id) {
            return Some(permanent_local("BadMessageId".to_owned(), false));
        }
    }
    None
}

fn is_hex_token(token: &str) -> bool {
    !token.is_empty()
        && token.len().is_multiple_of(2)
        && token.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Apple wants `apns-id` as lowercase 8-4-4-4-12 hex.
fn is_canonical_uuid(id: &str) -> bool {
    let groups: Vec<&str> = id.split('-').collect();
    let lens = [8, 4, 4, 4, 12];
    groups.len() == lens.len()
        && groups.iter().zip(lens).all(|(g, len)| {
            g.len() == len
                && g.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
}

/// Maps an APNs answer onto an [`Outcome`] following Apple's response table.
fn classify(resp: Response) -> Outcome {
    let reply = match resp {
        Response::Reply(r) => r,
        Response::Network(e) => {
            return Outcome::Retry {
                after: None,
                reason: format!("network: {e}"),
                throttled: false,
            }
        }
    };
    let reason = if reply.reason.is_empty() {
        format!("HTTP {}", reply.status)
    } else {
        reply.reason
    };
    match reply.status {
        200 => Outcome::Delivered {
            apns_id: reply.apns_id,
        },
        410 => Outcome::Gone {
            reason,
            timestamp_ms: reply.timestamp_ms,
        },
        400 if reason == "BadDeviceToken" || reason == "DeviceTokenNotForTopic" => Outcome::Gone {
            reason,
            timestamp_ms: None,
        },
        429 if reason == "TooManyProviderTokenUpdates" => {
            // Our token cache refreshed too often; the request itself is fine once the
            // current token is accepted.
            tracing::error!("APNs says the provider token is refreshed too often");
            // About our token cache, not our sending rate: slowing down would not help.
            Outcome::Retry {
                after: reply.retry_after,
                reason,
                throttled: false,
            }
        }
        429 | 500 | 502 | 503 | 504 => Outcome::Retry {
            after: reply.retry_after,
            throttled: reply.status == 429,
            reason,
        },
        403 => {
            tracing::error!(reason = %reason, "APNs rejected the provider credentials");
            Outcome::Permanent {
                status: 403,
                reason,
                config_error: true,
            }
        }
        status => {
            // The remaining 400 reasons describe the topic or the request we built rather than
            // the device, as do 404/405 (wrong endpoint). 413 is the payload.
            let config_error = matches!(status, 400 | 404 | 405) && !reason.starts_with("Payload");
            tracing::warn!(status, reason = %reason, "APNs refused the notification");
            Outcome::Permanent {
                status,
                reason,
                config_error,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> TokenSigner {
        use p256::pkcs8::{EncodePrivateKey, LineEnding};
        let secret = p256::SecretKey::random(&mut p256::elliptic_curve::rand_core::OsRng);
        let pem = match secret.to_pkcs8_pem(LineEnding::LF) {
            Ok(p) => p,
            Err(e) => panic!("pem: {e}"),
        };
        let cfg = ApnsConfig {
            key_pem: pem.as_bytes().to_vec(),
            key_id: "KEYID12345".into(),
            team_id: "TEAMID1234".into(),
            topic: "com.example".into(),
            endpoint: None,
            extra_ca_pem: None,
        };
        match TokenSigner::new(&cfg) {
            Ok(s) => s,
            Err(e) => panic!("signer: {e}"),
        }
    }

    fn ok(r: Result<String, TokenError>) -> String {
        match r {
            Ok(s) => s,
            Err(TokenError::Sign(e)) => panic!("sign: {e}"),
            Err(TokenError::TooSoon(d)) => panic!("too soon: {d:?}"),
        }
    }

    #[test]
    fn token_is_cached_then_refreshed_after_fifty_minutes() {
        let s = signer();
        let t0 = Instant::now();
        let first = ok(s.current(t0));
        assert_eq!(first, ok(s.current(t0 + Duration::from_secs(49 * 60))));
        // Different iat only shows after a second has passed, so compare the mint time.
        let _ = ok(s.current(t0 + Duration::from_secs(51 * 60)));
        let minted = s.cached.lock().as_ref().map(|c| c.minted);
        assert_eq!(minted, Some(t0 + Duration::from_secs(51 * 60)));
    }

    #[test]
    fn expired_token_is_replaced_only_after_twenty_minutes() {
        let s = signer();
        let t0 = Instant::now();
        let first = ok(s.current(t0));
        assert!(matches!(
            s.replace_expired(&first, t0 + Duration::from_secs(60)),
            Err(TokenError::TooSoon(_))
        ));
        let _ = ok(s.replace_expired(&first, t0 + Duration::from_secs(21 * 60)));
        let minted = s.cached.lock().as_ref().map(|c| c.minted);
        assert_eq!(minted, Some(t0 + Duration::from_secs(21 * 60)));
    }

    #[test]
    fn payload_matches_the_ios_template() {
        let v = bitwarden_payload(11, r#"{"UserId":"u"}"#);
        assert_eq!(v["data"]["type"], 11);
        assert_eq!(v["data"]["payload"], r#"{"UserId":"u"}"#);
        assert_eq!(v["aps"]["content-available"], 1);
    }

    #[test]
    fn uuid_and_token_checks() {
        assert!(is_canonical_uuid("123e4567-e89b-12d3-a456-426614174000"));
        assert!(!is_canonical_uuid("123E4567-E89B-12D3-A456-426614174000"));
        assert!(!is_hex_token("abc"));
        assert!(!is_hex_token("zz"));
        assert!(is_hex_token("ab12"));
    }
}
