//! Bitwarden's push relay, the cloud side self-hosted servers push through (spec §5): an
//! installation (id + key) gets a token from `/connect/token` and calls the push API with it.
//!
//! This module holds what the relay means: installation tokens, who is calling, how an
//! installation's ids are kept apart from every other's (`Prefix`), and per-installation limits.
//! Installations themselves are stored by the push layer, behind
//! [`InstallationDirectory`].

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use bytes::Bytes;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use http::{header, HeaderValue, StatusCode};
use pushwarden_auth::{AuthError, Minter, TokenVerifier, VerifierConfig};

use pushwarden_model::{InstallationDirectory, SecretVerdict};

use crate::device_push::ApiError;

/// The only scope an installation token carries: the push API.
pub const PUSH_SCOPE: &str = "api.push";
const ISSUER: &str = "pushwarden-relay";
const CLIENT_PREFIX: &str = "installation.";

/// Mints and verifies installation access tokens (HS256 with the relay's own secret).
pub struct InstallationTokens {
    minter: Minter,
    verifier: TokenVerifier,
    lifetime: Duration,
}

impl InstallationTokens {
    pub fn new(secret: Vec<u8>, lifetime: Duration) -> Result<Self, AuthError> {
        let verifier = TokenVerifier::new(VerifierConfig {
            hs256_secret: Some(secret.clone()),
            issuer: Some(ISSUER.to_owned()),
            ..VerifierConfig::default()
        })?;
        Ok(Self {
            minter: Minter::Hs256(secret),
            verifier,
            lifetime,
        })
    }

    /// A token naming the installation as IdentityServer does (`client_id`, `client_sub`).
    pub fn mint(&self, installation_id: &str) -> Result<String, AuthError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        self.minter.mint(&serde_json::json!({
            "iss": ISSUER,
            "sub": installation_id,
            "client_id": format!("{CLIENT_PREFIX}{installation_id}"),
            "client_sub": installation_id,
            "scope": [PUSH_SCOPE],
            "iat": now,
            "nbf": now,
            "exp": now + self.lifetime.as_secs(),
        }))
    }

    /// The installation id an installation token names.
    pub async fn verify(&self, token: &str) -> Result<String, AuthError> {
        let claims = self.verifier.verify(token).await?;
        claims.require_scope(PUSH_SCOPE)?;
        let id = claims
            .get_str("client_id")
            .and_then(|c| c.strip_prefix(CLIENT_PREFIX))
            .ok_or(AuthError::MissingClaim("client_id"))?;
        if claims.get_str("client_sub") != Some(id) {
            return Err(AuthError::Forbidden(
                "client_sub does not match client_id".into(),
            ));
        }
        Ok(id.to_owned())
    }

    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }
}

/// Who calls the push API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// The vault server beside pushwarden (`/send` credentials): ids are used as given.
    Local,
    /// A relayed installation: its ids are kept apart by [`Caller::prefix`].
    Installation(String),
}

impl Caller {
    /// Bitwarden's `Prefix(x)`: `{installationId}_{x}` for an installation, so that no
    /// installation can name another's devices, users or organizations.
    pub fn prefix(&self, id: &str) -> String {
        match self {
            Caller::Local => id.to_owned(),
            Caller::Installation(installation) => format!("{installation}_{id}"),
        }
    }

    pub fn installation(&self) -> Option<&str> {
        match self {
            Caller::Local => None,
            Caller::Installation(id) => Some(id),
        }
    }
}

/// Per-installation limits, per minute.
#[derive(Clone, Copy, Debug)]
pub struct RelayLimits {
    pub requests_per_minute: u32,
    pub pushes_per_minute: u32,
    pub max_registrations: u64,
}

impl Default for RelayLimits {
    fn default() -> Self {
        Self {
            requests_per_minute: 600,
            pushes_per_minute: 1200,
            max_registrations: 100_000,
        }
    }
}

/// Token buckets per installation (this node's share; several nodes each allow the limit).
pub struct RateLimits {
    pub limits: RelayLimits,
    requests: DefaultKeyedRateLimiter<String>,
    pushes: DefaultKeyedRateLimiter<String>,
}

fn per_minute(n: u32) -> Quota {
    Quota::per_minute(NonZeroU32::new(n.max(1)).unwrap_or(NonZeroU32::MIN))
}

impl RateLimits {
    pub fn new(limits: RelayLimits) -> Self {
        Self {
            limits,
            requests: RateLimiter::dashmap(per_minute(limits.requests_per_minute)),
            pushes: RateLimiter::dashmap(per_minute(limits.pushes_per_minute)),
        }
    }

    /// Takes one request from `key`'s budget, or says how long to wait.
    pub fn request(&self, key: &str) -> Result<(), Duration> {
        check(&self.requests, key)
    }

    /// Takes one push from the installation's budget, or says how long to wait.
    pub fn push(&self, key: &str) -> Result<(), Duration> {
        check(&self.pushes, key)
    }
}

fn check(limiter: &DefaultKeyedRateLimiter<String>, key: &str) -> Result<(), Duration> {
    limiter
        .check_key(&key.to_owned())
        .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
}

/// `429` with `Retry-After` (whole seconds, at least one).
pub fn too_many(what: &str, wait: Duration) -> Response {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let mut response = (
        StatusCode::TOO_MANY_REQUESTS,
        Json(serde_json::json!({ "error": format!("rate limit exceeded: {what}") })),
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&secs.max(1).to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, v);
    }
    response
}

/// State of the token endpoint.
pub struct TokenEndpointState {
    pub tokens: Arc<InstallationTokens>,
    pub directory: Arc<dyn InstallationDirectory>,
    pub limits: Arc<RateLimits>,
}

/// An OAuth 2.0 error response (RFC 6749 §5.2).
fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    let mut response = (
        status,
        Json(serde_json::json!({"error": error, "error_description": description})),
    )
        .into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"pushwarden\""),
        );
    }
    response
}

/// Client credentials from HTTP Basic (RFC 6749 §2.3.1: both parts form-urlencoded).
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    let unescape = |s: &str| {
        form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
    };
    Some((unescape(id)?, unescape(secret)?))
}

/// `POST /connect/token`: the client-credentials grant for `installation.{id}`.
pub async fn token(
    State(state): State<Arc<TokenEndpointState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form: Vec<(String, String)> = form_urlencoded::parse(&body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let param = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let basic = basic_credentials(&headers);
    // A client that authenticated with HTTP Basic is answered 401 on bad credentials.
    let bad_client_status = if basic.is_some() {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::BAD_REQUEST
    };
    match param("grant_type") {
        None => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "grant_type is required",
            )
        }
        Some("client_credentials") => {}
        Some(_) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "only client_credentials is supported",
            )
        }
    }
    let (client_id, secret) = match (basic, param("client_id"), param("client_secret")) {
        (Some(creds), _, _) => creds,
        (None, Some(id), Some(secret)) => (id.to_owned(), secret.to_owned()),
        _ => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_client",
                "client_id and client_secret are required",
            )
        }
    };
    let Some(installation) = client_id.strip_prefix(CLIENT_PREFIX) else {
        return oauth_error(bad_client_status, "invalid_client", "unknown client");
    };
    let installation = crate::notification::normalize_id(installation);
    // Only real, enabled installations get a rate budget, so that made-up client ids cannot
    // grow the limiter's table; the others are refused like a wrong secret.
    match state.directory.is_enabled(installation.clone()).await {
        Ok(true) => {}
        Ok(false) => {
            metrics::counter!("pushwarden_relay_token_refused_total", "reason" => "unknown_or_disabled")
                .increment(1);
            tracing::info!(installation = %installation, "token refused: unknown or disabled installation");
            return oauth_error(
                bad_client_status,
                "invalid_client",
                "invalid client credentials",
            );
        }
        Err(e) => return ApiError::from(e).into_response(),
    }
    if let Err(wait) = state.limits.request(&format!("token:{installation}")) {
        metrics::counter!("pushwarden_relay_rate_limited_total", "kind" => "token").increment(1);
        return too_many("token requests", wait);
    }
    // Scopes asked for must all be granted; none asked means the client's default.
    let scope = param("scope").unwrap_or(PUSH_SCOPE);
    if scope.split_whitespace().any(|s| s != PUSH_SCOPE) {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            "installations may only ask for api.push",
        );
    }
    let verdict = match state
        .directory
        .check_secret(installation.clone(), secret)
        .await
    {
        Ok(v) => v,
        Err(e) => return ApiError::from(e).into_response(),
    };
    if verdict != SecretVerdict::Valid {
        let reason = match verdict {
            SecretVerdict::Unknown => "unknown",
            SecretVerdict::Disabled => "disabled",
            _ => "wrong_secret",
        };
        metrics::counter!("pushwarden_relay_token_refused_total", "reason" => reason).increment(1);
        tracing::info!(installation = %installation, reason, "installation token refused");
        return oauth_error(
            bad_client_status,
            "invalid_client",
            "invalid client credentials",
        );
    }
    let access_token = match state.tokens.mint(&installation) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "minting an installation token failed");
            return oauth_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "could not issue a token",
            );
        }
    };
    metrics::counter!("pushwarden_relay_tokens_issued_total").increment(1);
    let mut response = Json(serde_json::json!({
        "access_token": access_token,
        "expires_in": state.tokens.lifetime().as_secs(),
        "token_type": "Bearer",
        "scope": PUSH_SCOPE,
    }))
    .into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tokens_name_their_installation() {
        let tokens = InstallationTokens::new(b"relay-secret".to_vec(), Duration::from_secs(60))
            .expect("tokens");
        let t = tokens.mint("inst-1").expect("mint");
        assert_eq!(tokens.verify(&t).await.expect("verify"), "inst-1");
        let other =
            InstallationTokens::new(b"other".to_vec(), Duration::from_secs(60)).expect("tokens");
        assert!(other.verify(&t).await.is_err());
        // A token with another scope (say, a user's) is not an installation token.
        let user = Minter::Hs256(b"relay-secret".to_vec())
            .mint(
                &serde_json::json!({"iss": ISSUER, "sub": "u", "scope": ["api"],
                "client_id": "installation.x", "client_sub": "x", "exp": 4_000_000_000u64}),
            )
            .expect("mint");
        assert!(tokens.verify(&user).await.is_err());
    }

    #[test]
    fn prefixes_and_limits() {
        assert_eq!(Caller::Local.prefix("d"), "d");
        assert_eq!(Caller::Installation("i".into()).prefix("d"), "i_d");
        let limits = RateLimits::new(RelayLimits {
            requests_per_minute: 2,
            pushes_per_minute: 1,
            max_registrations: 1,
        });
        assert!(limits.request("a").is_ok());
        assert!(limits.request("a").is_ok());
        let wait = limits.request("a").expect_err("third request");
        assert!(
            wait > Duration::from_secs(1) && wait <= Duration::from_secs(30),
            "{wait:?}"
        );
        assert!(limits.request("b").is_ok(), "limits are per installation");
        assert!(limits.push("a").is_ok());
        assert!(limits.push("a").is_err());
    }

    #[test]
    fn basic_credentials_are_form_decoded() {
        let mut headers = HeaderMap::new();
        let value = base64::engine::general_purpose::STANDARD.encode("installation.abc:k%2By");
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Basic {value}")).expect("header"),
        );
        assert_eq!(
            basic_credentials(&headers),
            Some(("installation.abc".into(), "k+y".into()))
        );
    }
}
