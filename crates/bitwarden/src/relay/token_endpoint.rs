//! `POST /connect/token`: the OAuth 2.0 client-credentials grant for `installation.{id}`, as
//! Bitwarden's identity server answers self-hosted installations
//! (`src/Identity/IdentityServer/ClientProviders/InstallationClientProvider.cs`).

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::Json;
use base64::Engine;
use bytes::Bytes;
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

/// `POST /connect/token`: the client-credentials grant for `installation.{id}`.
pub async fn token(
    State(state): State<Arc<TokenEndpointState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
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
    let installation = crate::notification::normalize_id(installation);
    // Only real, enabled installations get a rate budget, so that made-up client ids cannot
    // grow the limiter's table; the others are refused like a wrong secret.
    if !state.directory.is_enabled(installation.clone()).await? {
        metrics::counter!("pushwarden_relay_token_refused_total", "reason" => "unknown_or_disabled")
            .increment(1);
        tracing::info!(installation = %installation, "token refused: unknown or disabled installation");
        return Err(ApiError::oauth(bad_client, "invalid client credentials"));
    }
    if let Err(wait) = state.limits.request(&format!("token:{installation}")) {
        metrics::counter!("pushwarden_relay_rate_limited_total", "kind" => "token").increment(1);
        return Err(ApiError::rate_limited("token requests", wait));
    }
    // Scopes asked for must all be granted; none asked means the client's default.
    let scope = param("scope").unwrap_or(PUSH_SCOPE);
    if scope.split_whitespace().any(|s| s != PUSH_SCOPE) {
        return Err(ApiError::oauth(
            OAuthError::InvalidScope,
            "installations may only ask for api.push",
        ));
    }
    let verdict = state
        .directory
        .check_secret(installation.clone(), secret)
        .await?;
    if verdict != SecretVerdict::Valid {
        let reason = match verdict {
            SecretVerdict::Unknown => "unknown",
            SecretVerdict::Disabled => "disabled",
            _ => "wrong_secret",
        };
        metrics::counter!("pushwarden_relay_token_refused_total", "reason" => reason).increment(1);
        tracing::info!(installation = %installation, reason, "installation token refused");
        return Err(ApiError::oauth(bad_client, "invalid client credentials"));
    }
    let access_token = state.tokens.mint(&installation).map_err(|e| {
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
    use http::HeaderValue;

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
