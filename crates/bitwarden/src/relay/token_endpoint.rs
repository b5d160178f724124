//! `POST /connect/token`: the OAuth 2.0 client-credentials grant for `installation.{id}`, as
//! Bitwarden's identity server answers self-hosted installations
//! (`src/Identity/IdentityServer/ClientProviders/InstallationClientProvider.cs`).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::Json;
use base64::Engine;
use http::header;

use pushwarden_model::{InstallationDirectory, SecretVerdict};

use super::tokens::CLIENT_PREFIX;
use super::{InstallationTokens, RateLimits, PUSH_SCOPE};
use crate::edge::{ApiError, OAuthError};

/// State of the token endpoint.
pub struct TokenEndpointState {
    pub tokens: Arc<InstallationTokens>,
    pub directory: Arc<dyn InstallationDirectory>,
    pub limits: Arc<RateLimits>,
}

/// Largest `/connect/token` form accepted.
pub const MAX_TOKEN_BODY: usize = 16 * 1024;

/// Client credentials from HTTP Basic, both parts form-urlencoded
/// (<https://www.rfc-editor.org/rfc/rfc6749#section-2.3.1>).
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

/// What a `/connect/token` request asks for, read from its headers and form body alone.
pub(crate) struct TokenRequest {
    /// The installation named by `client_id` (`installation.{id}`), normalized.
    pub(crate) installation: String,
    pub(crate) secret: String,
    /// `scope`, if given.
    pub(crate) scope: Option<String>,
    /// The error for bad credentials: a client that used HTTP Basic is answered 401.
    pub(crate) bad_client: OAuthError,
}

impl TokenRequest {
    /// The grant type and client credentials (HTTP Basic first, else the form's), refused
    /// with the OAuth error they call for.
    pub(crate) fn parse(headers: &HeaderMap, body: &[u8]) -> Result<Self, ApiError> {
        let form: Vec<(String, String)> = form_urlencoded::parse(body)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let param = |name: &str| {
            form.iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let basic = basic_credentials(headers);
        // A client that authenticated with HTTP Basic is answered 401 on bad credentials.
        let bad_client = OAuthError::InvalidClient {
            basic: basic.is_some(),
        };
        match param("grant_type") {
            None => {
                return Err(ApiError::oauth(
                    OAuthError::InvalidRequest,
                    "grant_type is required",
                ))
            }
            Some("client_credentials") => {}
            Some(_) => {
                return Err(ApiError::oauth(
                    OAuthError::UnsupportedGrantType,
                    "only client_credentials is supported",
                ))
            }
        }
        let (client_id, secret) = match (basic, param("client_id"), param("client_secret")) {
            (Some(creds), _, _) => creds,
            (None, Some(id), Some(secret)) => (id.to_owned(), secret.to_owned()),
            _ => {
                return Err(ApiError::oauth(
                    bad_client,
                    "client_id and client_secret are required",
                ))
            }
        };
        let Some(installation) = client_id.strip_prefix(CLIENT_PREFIX) else {
            return Err(ApiError::oauth(bad_client, "unknown client"));
        };
        Ok(Self {
            installation: crate::notification::normalize_id(installation),
            secret,
            scope: param("scope").map(str::to_owned),
            bad_client,
        })
    }

    /// Scopes asked for must all be granted; none asked means the client's default.
    pub(crate) fn check_scope(&self) -> Result<(), ApiError> {
        let scope = self.scope.as_deref().unwrap_or(PUSH_SCOPE);
        if scope.split_whitespace().any(|s| s != PUSH_SCOPE) {
            return Err(ApiError::oauth(
                OAuthError::InvalidScope,
                "installations may only ask for api.push",
            ));
        }
        Ok(())
    }
}

/// `POST /connect/token`: the client-credentials grant for `installation.{id}`.
pub async fn token(
    State(state): State<Arc<TokenEndpointState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<impl IntoResponse, ApiError> {
    // Credentials may be in the body, so it is read before they are checked; it is small and
    // its time is bounded where the service is served.
    let body = crate::edge::read_body(body, MAX_TOKEN_BODY).await?;
    let request = TokenRequest::parse(&headers, &body)?;
    let installation = request.installation.clone();
    let bad_client = request.bad_client;
    // Only real, enabled installations get a rate budget, so that made-up client ids cannot
    // grow the limiter's table; the others are refused like a wrong secret.
    if state
        .directory
        .key_generation(installation.clone())
        .await?
        .is_none()
    {
        metrics::counter!("pushwarden_relay_token_refused_total", "reason" => "unknown_or_disabled")
            .increment(1);
        tracing::info!(installation = %installation, "token refused: unknown or disabled installation");
        return Err(ApiError::oauth(bad_client, "invalid client credentials"));
    }
    request.check_scope()?;
    let verdict = state
        .directory
        .check_secret(installation.clone(), request.secret)
        .await?;
    let key_generation = match verdict {
        SecretVerdict::Valid { key_generation } => key_generation,
        refused => {
            let reason = match refused {
                SecretVerdict::Unknown => "unknown",
                SecretVerdict::Disabled => "disabled",
                _ => "wrong_secret",
            };
            metrics::counter!("pushwarden_relay_token_refused_total", "reason" => reason)
                .increment(1);
            tracing::info!(installation = %installation, reason, "installation token refused");
            return Err(ApiError::oauth(bad_client, "invalid client credentials"));
        }
    };
    // Charged only once the secret is right: failures are budgeted per source address (by the
    // service's edge), so an outsider with a wrong secret cannot spend a real installation's
    // budget and lock it out.
    if let Err(wait) = state.limits.request(&format!("token:{installation}")) {
        metrics::counter!("pushwarden_relay_rate_limited_total", "kind" => "token").increment(1);
        return Err(ApiError::rate_limited("token requests", wait));
    }
    let access_token = state
        .tokens
        .mint(&installation, key_generation)
        .map_err(|e| {
            tracing::error!(error = %e, "minting an installation token failed");
            ApiError::oauth(OAuthError::ServerError, "could not issue a token")
        })?;
    metrics::counter!("pushwarden_relay_tokens_issued_total").increment(1);
    Ok((
        [(header::CACHE_CONTROL, "no-store")],
        Json(serde_json::json!({
            "access_token": access_token,
            "expires_in": state.tokens.lifetime().as_secs(),
            "token_type": "Bearer",
            "scope": PUSH_SCOPE,
        })),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::to_bytes;
    use axum::response::Response;
    use http::{HeaderValue, StatusCode};
    use pushwarden_model::{BoxFuture, GatewayError};
    use serde_json::Value;
    use std::time::Duration;

    use crate::relay::RelayLimits;

    const ID: &str = "00000000-0000-0000-0000-0000000000aa";

    /// One enabled installation `ID` with key `key`; `down` makes every look-up fail.
    struct Directory {
        down: bool,
    }

    impl InstallationDirectory for Directory {
        fn check_secret(
            &self,
            id: String,
            secret: String,
        ) -> BoxFuture<'_, Result<SecretVerdict, GatewayError>> {
            let verdict = match (id == ID, secret == "key") {
                (false, _) => SecretVerdict::Unknown,
                (true, false) => SecretVerdict::WrongSecret,
                (true, true) => SecretVerdict::Valid { key_generation: 2 },
            };
            let down = self.down;
            Box::pin(async move {
                if down {
                    return Err(GatewayError::Unavailable("store is down".into()));
                }
                Ok(verdict)
            })
        }

        fn key_generation(&self, id: String) -> BoxFuture<'_, Result<Option<i64>, GatewayError>> {
            let down = self.down;
            Box::pin(async move {
                if down {
                    return Err(GatewayError::Unavailable("store is down".into()));
                }
                Ok((id == ID).then_some(2))
            })
        }
    }

    fn state(down: bool) -> State<Arc<TokenEndpointState>> {
        State(Arc::new(TokenEndpointState {
            tokens: Arc::new(
                InstallationTokens::new(b"relay-secret".to_vec(), Duration::from_secs(60))
                    .expect("tokens"),
            ),
            directory: Arc::new(Directory { down }),
            limits: Arc::new(RateLimits::new(RelayLimits {
                requests_per_minute: 2,
                ..RelayLimits::default()
            })),
        }))
    }

    async fn ask(
        state: State<Arc<TokenEndpointState>>,
        basic: Option<&str>,
        form: &str,
    ) -> (StatusCode, Value, HeaderMap) {
        let mut headers = HeaderMap::new();
        if let Some(credentials) = basic {
            let value = base64::engine::general_purpose::STANDARD.encode(credentials);
            headers.insert(
                header::AUTHORIZATION,
                HeaderValue::from_str(&format!("Basic {value}")).expect("header"),
            );
        }
        let response: Response = token(state, headers, Body::from(form.to_owned()))
            .await
            .into_response();
        let (parts, body) = response.into_parts();
        let body = to_bytes(body, usize::MAX).await.expect("body");
        (
            parts.status,
            serde_json::from_slice(&body).expect("JSON"),
            parts.headers,
        )
    }

    #[tokio::test]
    async fn a_token_is_not_cached_and_names_the_key_generation() {
        let form =
            format!("grant_type=client_credentials&client_id=installation.{ID}&client_secret=key");
        let endpoint = state(false);
        let tokens = endpoint.0.tokens.clone();
        let (status, body, headers) = ask(endpoint, None, &form).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["scope"], PUSH_SCOPE);
        assert_eq!(body["expires_in"], 60);
        let minted = body["access_token"].as_str().expect("access_token");
        assert_eq!(
            tokens.verify(minted).await.expect("verify"),
            (ID.to_owned(), 2)
        );
        assert_eq!(headers[header::CACHE_CONTROL], "no-store");
    }

    #[tokio::test]
    async fn refusals_are_oauth_errors() {
        let state = state(false);
        let basic = format!("installation.{ID}:wrong");
        let cases: [(Option<&str>, String, u16, &str); 5] = [
            (None, "scope=api.push".into(), 400, "invalid_request"),
            (
                None,
                "grant_type=password".into(),
                400,
                "unsupported_grant_type",
            ),
            (
                None,
                "grant_type=client_credentials&client_id=x".into(),
                400,
                "invalid_client",
            ),
            (
                None,
                format!(
                    "grant_type=client_credentials&client_id=installation.{ID}&client_secret=wrong"
                ),
                400,
                "invalid_client",
            ),
            (
                Some(&basic),
                "grant_type=client_credentials".into(),
                401,
                "invalid_client",
            ),
        ];
        for (basic, form, status, error) in cases {
            let (got, body, headers) = ask(state.clone(), basic, &form).await;
            assert_eq!(
                (got.as_u16(), body["error"].as_str()),
                (status, Some(error)),
                "{form}"
            );
            assert!(body["error_description"].is_string(), "{body}");
            assert_eq!(headers[header::CACHE_CONTROL], "no-store", "{form}");
            assert_eq!(
                headers
                    .get(header::WWW_AUTHENTICATE)
                    .map(|v| v.to_str().ok()),
                basic.map(|_| Some("Basic realm=\"pushwarden\"")),
                "{form}"
            );
        }
    }

    #[tokio::test]
    async fn wrong_secrets_do_not_spend_the_installations_budget() {
        let state = state(false);
        let wrong = format!(
            "grant_type=client_credentials&client_id=installation.{ID}&client_secret=wrong"
        );
        for _ in 0..5 {
            assert_eq!(
                ask(state.clone(), None, &wrong).await.0,
                StatusCode::BAD_REQUEST
            );
        }
        let right =
            format!("grant_type=client_credentials&client_id=installation.{ID}&client_secret=key");
        for _ in 0..2 {
            let (status, body, _) = ask(state.clone(), None, &right).await;
            assert_eq!(status, StatusCode::OK, "{body}");
        }
        let (status, body, headers) = ask(state, None, &right).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(body["error"], "rate limit exceeded: token requests");
        assert!(headers.contains_key(header::RETRY_AFTER));
    }

    #[tokio::test]
    async fn a_store_outage_is_503_not_an_oauth_error() {
        let form =
            format!("grant_type=client_credentials&client_id=installation.{ID}&client_secret=key");
        let (status, body, headers) = ask(state(true), None, &form).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body, serde_json::json!({"error": "store is down"}));
        assert!(!headers.contains_key(header::CACHE_CONTROL));
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
