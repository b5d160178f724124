//! Firebase Cloud Messaging, HTTP v1 API, authenticated with a service account.
//!
//! The flow (Google's "Authorize send requests" and "Send a message" guides for FCM HTTP v1,
//! firebase.google.com/docs/cloud-messaging):
//! 1. A service-account JSON file gives `client_email`, an RSA `private_key` and `token_uri`.
//! 2. We sign an RS256 JWT and trade it at `token_uri` for an OAuth access token (JWT bearer
//!    grant). The token lives about an hour; we cache it and refresh it a little before it ends.
//! 3. Each device gets one `POST {base}/v1/projects/{project_id}/messages:send` with
//!    `Authorization: Bearer <token>`; v1 has no multicast.
//!
//! The Bitwarden Android app reads a data-only message whose flat keys are `type` (decimal
//! string), `payload` (a JSON string) and optionally `contextId` ([`bitwarden_data`]).
//!
//! Connections: messages go over HTTP/2 with prior knowledge (ALPN `h2` for https://, h2c for
//! http://), so every send shares one long-lived connection as concurrent streams instead of
//! each holding a TCP connection of its own; HTTP/2 pings keep it alive while idle. The token
//! endpoint may be any OAuth server, HTTP/1.1-only ones included, so it gets a separate client
//! that negotiates as usual; it is asked about once an hour.
//!
//! Both the token endpoint (from the service-account file) and the FCM base URL can point
//! elsewhere, so tests run against an in-process fake: there is no FCM emulator.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use url::Url;

use crate::clock::Clock;

/// Production FCM host; the path carries the project.
const DEFAULT_BASE: &str = "https://fcm.googleapis.com";
/// The narrowest scope that allows sending (`cloud-platform` would work too but grants more).
pub const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";
const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// Google rejects assertions whose lifetime exceeds one hour.
const ASSERTION_LIFETIME_SECS: u64 = 3600;
/// Refresh this long before the access token's announced expiry, so that a token never
/// expires between being read from the cache and reaching FCM.
const REFRESH_MARGIN: Duration = Duration::from_secs(300);
/// Upper bound on any single request, so a stuck connection turns into a retry.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Errors that happen while setting the client up (bad configuration), not while sending.
#[derive(Debug, thiserror::Error)]
pub enum FcmError {
    #[error("service account JSON is invalid: {0}")]
    Json(#[from] serde_json::Error),
    #[error("service account field `{0}` is missing or empty")]
    MissingField(&'static str),
    #[error("service account token_uri is not a valid URL: {0}")]
    TokenUri(#[from] url::ParseError),
    #[error("FCM endpoint is not usable as a base URL: {0}")]
    Endpoint(url::ParseError),
    #[error("service account private_key is not a usable RSA PEM key: {0}")]
    PrivateKey(#[from] jsonwebtoken::errors::Error),
    #[error("cannot build HTTP client: {0}")]
    Http(#[from] reqwest::Error),
}

/// The parts of a Google service-account key file that the JWT grant needs.
#[derive(Clone, Deserialize)]
pub struct ServiceAccount {
    pub project_id: String,
    pub client_email: String,
    /// RSA private key in PEM (PKCS#8 in files Google issues).
    pub private_key: String,
    /// Honoured as given rather than hard-coded, so tests and proxies can redirect it.
    pub token_uri: String,
}

// Hand-written so that logging a ServiceAccount never prints the private key.
impl std::fmt::Debug for ServiceAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccount")
            .field("project_id", &self.project_id)
            .field("client_email", &self.client_email)
            .field("private_key", &"<redacted>")
            .field("token_uri", &self.token_uri)
            .finish()
    }
}

impl ServiceAccount {
    /// Parses the content of a service-account JSON file. Unknown fields are ignored; the
    /// four fields used here must be present and non-empty.
    pub fn from_json(content: &str) -> Result<Self, FcmError> {
        let account: ServiceAccount = serde_json::from_str(content)?;
        for (name, value) in [
            ("project_id", &account.project_id),
            ("client_email", &account.client_email),
            ("private_key", &account.private_key),
            ("token_uri", &account.token_uri),
        ] {
            if value.trim().is_empty() {
                return Err(FcmError::MissingField(name));
            }
        }
        Url::parse(&account.token_uri)?;
        Ok(account)
    }
}

/// What happened to one message, phrased as what the caller should do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// FCM accepted the message; `name` is `projects/*/messages/{id}`.
    Delivered { name: String },
    /// The device token is dead (404 UNREGISTERED, or 400 INVALID_ARGUMENT naming the
    /// registration token): delete it and stop sending to it.
    Gone,
    /// Transient (429 QUOTA_EXCEEDED, 500 INTERNAL, 503 UNAVAILABLE, network errors): try again
    /// later, no earlier than `after` when FCM said so. `throttled` when Google answered 429
    /// (QUOTA_EXCEEDED, RESOURCE_EXHAUSTED, or a throttled token endpoint): it asks us to
    /// slow down, not just to try again.
    Retry {
        after: Option<Duration>,
        reason: String,
        throttled: bool,
    },
    /// Retrying will not help: configuration problems (401 THIRD_PARTY_AUTH_ERROR, 403
    /// SENDER_ID_MISMATCH or PERMISSION_DENIED, a rejected service account) or a malformed
    /// message. `status` is `None` when no HTTP answer was involved.
    Permanent {
        status: Option<StatusCode>,
        reason: String,
    },
}

/// Builds the data map the Bitwarden Android app reads: `type` as a decimal string, `payload`
/// as the JSON text itself (FCM data values must be strings), and `contextId` when known so the
/// originating device can ignore its own echo.
pub fn bitwarden_data(
    push_type: u8,
    payload_json: &str,
    context_id: Option<&str>,
) -> Map<String, Value> {
    let mut data = Map::new();
    data.insert("type".into(), Value::String(push_type.to_string()));
    data.insert("payload".into(), Value::String(payload_json.to_owned()));
    if let Some(context_id) = context_id {
        data.insert("contextId".into(), Value::String(context_id.to_owned()));
    }
    data
}

#[derive(Serialize)]
struct AssertionClaims<'a> {
    iss: &'a str,
    scope: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    expires_in: u64,
}

#[derive(Clone)]
struct CachedToken {
    value: String,
    refresh_at: Instant,
}

/// Sends FCM HTTP v1 messages for one Firebase project.
pub struct FcmClient {
    /// HTTP/2 only, for `messages:send`.
    messages: reqwest::Client,
    /// Whatever the token endpoint speaks, for the OAuth grant.
    oauth: reqwest::Client,
    account: ServiceAccount,
    key: EncodingKey,
    send_url: Url,
    token_uri: Url,
    /// Fast path: read without awaiting.
    cached: parking_lot::Mutex<Option<CachedToken>>,
    /// Held across the token request so that concurrent senders wait for one refresh instead
    /// of each hitting the token endpoint.
    refresh_gate: tokio::sync::Mutex<()>,
    /// Where the cache reads the time.
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for FcmClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FcmClient")
            .field("account", &self.account)
            .field("send_url", &self.send_url.as_str())
            .finish_non_exhaustive()
    }
}

/// A failure while obtaining an access token, already classified for the caller.
type TokenResult = Result<String, Outcome>;

/// The client for `messages:send`.
fn build_messages_client(proxy: Option<&Url>) -> Result<reqwest::Client, reqwest::Error> {
    crate::outbound::client_builder(proxy)?
        // FCM serves HTTP/2. Prior knowledge means ALPN "h2" alone for https:// and h2c for
        // http://, and tells the pool up front that one connection will carry every request
        // as a stream, so a burst waits for that one instead of dialling one per request
        // (over plain http, reqwest would otherwise speak HTTP/1.1, a connection per request
        // in flight).
        .http2_prior_knowledge()
        // Pings keep the idle connection alive through NATs and notice a dead one before a
        // send has to.
        .http2_keep_alive_interval(Duration::from_secs(60))
        .http2_keep_alive_timeout(Duration::from_secs(20))
        .http2_keep_alive_while_idle(true)
        // Quiet hours should not cost a new TLS handshake.
        .pool_idle_timeout(Duration::from_secs(30 * 60))
        // A redirect from FCM would be unexpected; following it would hand the bearer to
        // wherever it points.
        .redirect(reqwest::redirect::Policy::none())
        .timeout(REQUEST_TIMEOUT)
        .connect_timeout(CONNECT_TIMEOUT)
        .build()
}

/// The client for the OAuth token endpoint, which may be any server (HTTP/1.1-only ones
/// included), so it negotiates the protocol as usual.
fn build_oauth_client(proxy: Option<&Url>) -> Result<reqwest::Client, reqwest::Error> {
    crate::outbound::client_builder(proxy)?
        .timeout(REQUEST_TIMEOUT)
        .connect_timeout(CONNECT_TIMEOUT)
        .build()
}

impl FcmClient {
    /// Validates the key and URLs up front so a misconfiguration shows at startup rather than
    /// on the first push. `endpoint_override` replaces `https://fcm.googleapis.com`.
    pub fn new(account: ServiceAccount, endpoint_override: Option<Url>) -> Result<Self, FcmError> {
        let key = EncodingKey::from_rsa_pem(account.private_key.as_bytes())?;
        let token_uri = Url::parse(&account.token_uri)?;
        let base = match endpoint_override {
            Some(url) => url,
            None => Url::parse(DEFAULT_BASE).map_err(FcmError::Endpoint)?,
        };
        let send_url = send_url(&base, &account.project_id).map_err(FcmError::Endpoint)?;
        Ok(Self {
            messages: build_messages_client(None)?,
            oauth: build_oauth_client(None)?,
            account,
            key,
            send_url,
            token_uri,
            cached: parking_lot::Mutex::new(None),
            refresh_gate: tokio::sync::Mutex::new(()),
            clock: crate::clock::system(),
        })
    }

    /// Connects (to FCM and to the token endpoint) through `proxy` instead of directly.
    /// Without it no proxy is used, whatever the environment says.
    pub fn with_proxy(mut self, proxy: &Url) -> Result<Self, FcmError> {
        self.messages = build_messages_client(Some(proxy))?;
        self.oauth = build_oauth_client(Some(proxy))?;
        Ok(self)
    }

    /// Reads the time for the access-token cache from `clock`.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The project this client sends for.
    pub fn project_id(&self) -> &str {
        &self.account.project_id
    }

    /// Sends one data message to one registration token.
    ///
    /// Non-string values in `data` are sent as their JSON text, because FCM only accepts
    /// string → string maps and would otherwise reject the whole message.
    pub async fn send(&self, token: &str, data: &Map<String, Value>) -> Outcome {
        let body = message_body(token, data);
        let access = match self.access_token().await {
            Ok(access) => access,
            Err(outcome) => return outcome,
        };
        match self.post_message(&access, &body).await {
            // Our bearer was rejected (revoked or expired early): drop it and try once more
            // with a fresh one. A second rejection is reported as it is.
            Attempt::BearerRejected(_) => {
                self.invalidate(&access);
                let access = match self.access_token().await {
                    Ok(access) => access,
                    Err(outcome) => return outcome,
                };
                match self.post_message(&access, &body).await {
                    Attempt::Done(outcome) | Attempt::BearerRejected(outcome) => outcome,
                }
            }
            Attempt::Done(outcome) => outcome,
        }
    }

    async fn post_message(&self, access: &str, body: &Value) -> Attempt {
        let response = match self
            .messages
            .post(self.send_url.clone())
            .bearer_auth(access)
            .json(body)
            .send()
            .await
        {
            Ok(response) => response,
            Err(err) => {
                return Attempt::Done(Outcome::Retry {
                    after: None,
                    reason: format!("FCM request failed: {err}"),
                    throttled: false,
                });
            }
        };
        let status = response.status();
        let retry_after = retry_after_header(response.headers());
        let text = match crate::outbound::text(response).await {
            Ok(text) => text,
            Err(err) => {
                return Attempt::Done(Outcome::Retry {
                    after: retry_after,
                    reason: format!("reading FCM response failed: {err}"),
                    throttled: status == StatusCode::TOO_MANY_REQUESTS,
                });
            }
        };
        classify(status, retry_after, &text)
    }

    /// Returns a cached access token, or fetches one (at most one fetch at a time).
    async fn access_token(&self) -> TokenResult {
        if let Some(value) = self.fresh_cached() {
            return Ok(value);
        }
        let _gate = self.refresh_gate.lock().await;
        // Another task may have refreshed while we waited for the gate.
        if let Some(value) = self.fresh_cached() {
            return Ok(value);
        }
        let fetched = self.fetch_token().await?;
        let value = fetched.value.clone();
        *self.cached.lock() = Some(fetched);
        Ok(value)
    }

    fn fresh_cached(&self) -> Option<String> {
        let cached = self.cached.lock();
        cached
            .as_ref()
            .filter(|token| self.clock.now() < token.refresh_at)
            .map(|token| token.value.clone())
    }

    /// Forgets `used` if it is still the cached token; a newer token fetched meanwhile by
    /// another task is kept.
    fn invalidate(&self, used: &str) {
        let mut cached = self.cached.lock();
        if cached.as_ref().is_some_and(|token| token.value == used) {
            *cached = None;
        }
    }

    async fn fetch_token(&self) -> Result<CachedToken, Outcome> {
        let assertion = self.assertion().map_err(|err| Outcome::Permanent {
            status: None,
            reason: format!("signing the OAuth assertion failed: {err}"),
        })?;
        // Built by hand because reqwest's `form` feature is not enabled in this workspace.
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", GRANT_TYPE)
            .append_pair("assertion", &assertion)
            .finish();
        let started = self.clock.now();
        let response = self
            .oauth
            .post(self.token_uri.clone())
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(form)
            .send()
            .await
            .map_err(|err| Outcome::Retry {
                after: None,
                reason: format!("OAuth token request failed: {err}"),
                throttled: false,
            })?;
        let status = response.status();
        let retry_after = retry_after_header(response.headers());
        let text = crate::outbound::text(response)
            .await
            .map_err(|err| Outcome::Retry {
                after: retry_after,
                reason: format!("reading OAuth token response failed: {err}"),
                throttled: status == StatusCode::TOO_MANY_REQUESTS,
            })?;
        if !status.is_success() {
            let reason = format!("OAuth token endpoint answered {status}: {}", snippet(&text));
            // 5xx and 429 are the token service's trouble; anything else (invalid_grant,
            // disabled key, wrong client) is ours and will not fix itself.
            return Err(
                if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
                    Outcome::Retry {
                        after: retry_after,
                        reason,
                        // Every send needs a token, so a throttled token endpoint throttles
                        // FCM as a whole.
                        throttled: status == StatusCode::TOO_MANY_REQUESTS,
                    }
                } else {
                    Outcome::Permanent {
                        status: Some(status),
                        reason,
                    }
                },
            );
        }
        let token: TokenResponse = serde_json::from_str(&text).map_err(|err| Outcome::Retry {
            after: None,
            reason: format!("OAuth token response is not understood: {err}"),
            throttled: false,
        })?;
        if token.access_token.is_empty() {
            return Err(Outcome::Retry {
                after: None,
                reason: "OAuth token response has an empty access_token".into(),
                throttled: false,
            });
        }
        let lifetime = Duration::from_secs(token.expires_in);
        // The usual margin is 5 minutes; for unusually short-lived tokens keep at least half
        // the lifetime so the cache still does something. Counted from when the request
        // started, so time spent waiting for the answer is not overlooked.
        let margin = REFRESH_MARGIN.min(lifetime / 2);
        Ok(CachedToken {
            value: token.access_token,
            refresh_at: started + (lifetime - margin),
        })
    }

    fn assertion(&self) -> Result<String, jsonwebtoken::errors::Error> {
        // A clock before 1970 is not worth failing over; Google will reject the token anyway.
        let iat = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let claims = AssertionClaims {
            iss: &self.account.client_email,
            scope: SCOPE,
            aud: &self.account.token_uri,
            iat,
            exp: iat + ASSERTION_LIFETIME_SECS,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &self.key)
    }
}

enum Attempt {
    Done(Outcome),
    /// FCM said our own bearer token is no good (401 other than THIRD_PARTY_AUTH_ERROR).
    BearerRejected(Outcome),
}

fn send_url(base: &Url, project_id: &str) -> Result<Url, url::ParseError> {
    let mut url = base.clone();
    {
        // Segment-wise so that a project id can never inject path or query syntax.
        let Ok(mut segments) = url.path_segments_mut() else {
            return Err(url::ParseError::RelativeUrlWithCannotBeABaseBase);
        };
        segments
            .pop_if_empty()
            .extend(["v1", "projects", project_id, "messages:send"]);
    }
    Ok(url)
}

fn message_body(token: &str, data: &Map<String, Value>) -> Value {
    let data: Map<String, Value> = data
        .iter()
        .map(|(key, value)| {
            let text = match value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (key.clone(), Value::String(text))
        })
        .collect();
    json!({
        "message": {
            "token": token,
            "data": data,
            // High priority so a dozing phone wakes up for logouts and passwordless logins.
            "android": { "priority": "high" },
        }
    })
}

/// Delta-seconds only. FCM sends seconds; an HTTP-date is treated as absent, which falls back
/// to the caller's own backoff.
fn retry_after_header(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// `google.rpc.RetryInfo.retryDelay` is a Duration in JSON form, e.g. `"30s"` or `"1.5s"`.
fn parse_proto_duration(text: &str) -> Option<Duration> {
    let secs: f64 = text.strip_suffix('s')?.parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs))
}

#[derive(Deserialize, Default)]
struct ErrorEnvelope {
    #[serde(default)]
    error: RpcStatus,
}

#[derive(Deserialize, Default)]
struct RpcStatus {
    #[serde(default)]
    message: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    details: Vec<Value>,
}

#[derive(Deserialize)]
struct MessageName {
    name: String,
}

/// What an error body says, reduced to the fields the decision needs.
struct ErrorInfo {
    /// `FcmError.errorCode` from `details[]`, if any.
    error_code: Option<String>,
    /// Canonical code, e.g. `NOT_FOUND`, `UNAUTHENTICATED`.
    status: String,
    message: String,
    /// `RetryInfo.retryDelay`, used when the Retry-After header is absent.
    retry_delay: Option<Duration>,
    /// A `BadRequest` field violation names the registration token.
    token_field_violation: bool,
}

fn parse_error(text: &str) -> ErrorInfo {
    // An unparseable body (e.g. an HTML page from a proxy) still gets classified by status.
    let status = serde_json::from_str::<ErrorEnvelope>(text)
        .unwrap_or_default()
        .error;
    let mut info = ErrorInfo {
        error_code: None,
        status: status.status,
        message: status.message,
        retry_delay: None,
        token_field_violation: false,
    };
    for detail in &status.details {
        let kind = detail.get("@type").and_then(Value::as_str).unwrap_or("");
        if let Some(code) = detail.get("errorCode").and_then(Value::as_str) {
            // Prefer the FcmError entry; any other detail carrying errorCode is a fallback.
            if kind.ends_with("google.firebase.fcm.v1.FcmError") || info.error_code.is_none() {
                info.error_code = Some(code.to_owned());
            }
        }
        if kind.ends_with("google.rpc.RetryInfo") {
            info.retry_delay = detail
                .get("retryDelay")
                .and_then(Value::as_str)
                .and_then(parse_proto_duration);
        }
        if kind.ends_with("google.rpc.BadRequest") {
            let names_token = detail
                .get("fieldViolations")
                .and_then(Value::as_array)
                .is_some_and(|violations| {
                    violations
                        .iter()
                        .any(|v| v.get("field").and_then(Value::as_str) == Some("message.token"))
                });
            info.token_field_violation |= names_token;
        }
    }
    info
}

fn classify(status: StatusCode, retry_after: Option<Duration>, text: &str) -> Attempt {
    if status.is_success() {
        return Attempt::Done(match serde_json::from_str::<MessageName>(text) {
            Ok(message) => Outcome::Delivered { name: message.name },
            // FCM accepted it; an odd body does not make the delivery less real.
            Err(_) => {
                tracing::warn!(body = snippet(text), "FCM success without a message name");
                Outcome::Delivered {
                    name: String::new(),
                }
            }
        });
    }

    let info = parse_error(text);
    let code = info.error_code.as_deref().unwrap_or(info.status.as_str());
    let reason = describe(status, &info);
    let after = retry_after.or(info.retry_delay);
    // QUOTA_EXCEEDED comes as a 429; the code counts on its own too, so that a throttle is
    // recognised whatever status carries it.
    let throttled = status == StatusCode::TOO_MANY_REQUESTS
        || matches!(code, "QUOTA_EXCEEDED" | "RESOURCE_EXHAUSTED");

    let outcome = match code {
        "UNREGISTERED" => Outcome::Gone,
        "INVALID_ARGUMENT" if is_about_token(&info) => Outcome::Gone,
        "QUOTA_EXCEEDED" | "RESOURCE_EXHAUSTED" | "UNAVAILABLE" | "INTERNAL" => Outcome::Retry {
            after,
            reason,
            throttled,
        },
        // The APNs / web push credentials in Firebase are the problem, not our bearer.
        "THIRD_PARTY_AUTH_ERROR" | "SENDER_ID_MISMATCH" | "PERMISSION_DENIED" => {
            Outcome::Permanent {
                status: Some(status),
                reason,
            }
        }
        _ if status == StatusCode::UNAUTHORIZED => {
            return Attempt::BearerRejected(Outcome::Permanent {
                status: Some(status),
                reason,
            });
        }
        _ if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() => {
            Outcome::Retry {
                after,
                reason,
                throttled,
            }
        }
        // Includes a bare 404 without UNREGISTERED, which points at a wrong project or URL
        // (configuration), not at the device token.
        _ => Outcome::Permanent {
            status: Some(status),
            reason,
        },
    };
    Attempt::Done(outcome)
}

/// INVALID_ARGUMENT covers many mistakes; only the registration-token one means the token
/// should be deleted (firebase.google.com/docs/cloud-messaging/error-codes lists an invalid
/// registration among INVALID_ARGUMENT's causes, beside a message too big, a bad TTL…). FCM
/// says so in the message text
/// ("The registration token is not a valid FCM registration token") and sometimes in a
/// BadRequest field violation on `message.token`.
fn is_about_token(info: &ErrorInfo) -> bool {
    info.token_field_violation
        || info
            .message
            .to_ascii_lowercase()
            .contains("registration token")
}

fn describe(status: StatusCode, info: &ErrorInfo) -> String {
    let code = info.error_code.as_deref().unwrap_or(info.status.as_str());
    if code.is_empty() {
        format!("FCM answered {status}: {}", info.message)
    } else {
        format!("FCM answered {status} {code}: {}", info.message)
    }
}

/// Keeps log lines short when a server answers with a large body.
fn snippet(text: &str) -> &str {
    let mut end = text.len().min(300);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_url_keeps_base_path_and_escapes_project() {
        let base = Url::parse("http://127.0.0.1:1/prefix/").ok();
        let url = base.and_then(|b| send_url(&b, "my-project").ok());
        assert_eq!(
            url.map(String::from).as_deref(),
            Some("http://127.0.0.1:1/prefix/v1/projects/my-project/messages:send")
        );
    }

    #[test]
    fn proto_duration() {
        assert_eq!(parse_proto_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(
            parse_proto_duration("1.5s"),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(parse_proto_duration("soon"), None);
    }

    fn throttled(status: u16, body: &str) -> Option<bool> {
        let status = StatusCode::from_u16(status).ok()?;
        match classify(status, None, body) {
            Attempt::Done(Outcome::Retry { throttled, .. }) => Some(throttled),
            _ => None,
        }
    }

    #[test]
    fn only_a_429_or_a_quota_code_is_throttling() {
        let quota = r#"{"error":{"status":"RESOURCE_EXHAUSTED","message":"Quota exceeded",
            "details":[{"@type":"type.googleapis.com/google.firebase.fcm.v1.FcmError",
            "errorCode":"QUOTA_EXCEEDED"}]}}"#;
        assert_eq!(throttled(429, quota), Some(true));
        // A proxy's page instead of Google's envelope: the status alone decides.
        assert_eq!(throttled(429, "<html>slow down</html>"), Some(true));
        assert_eq!(
            throttled(503, r#"{"error":{"status":"UNAVAILABLE","message":"x"}}"#),
            Some(false)
        );
        assert_eq!(throttled(500, ""), Some(false));
    }

    #[test]
    fn non_string_data_values_become_strings() {
        let mut data = Map::new();
        data.insert("n".into(), json!(3));
        let body = message_body("t", &data);
        assert_eq!(body["message"]["data"]["n"], json!("3"));
    }
}
