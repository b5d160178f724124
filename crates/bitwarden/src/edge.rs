//! The HTTP edge: every failure the HTTP API answers, and the one place each becomes a response.
//!
//! Handlers return `Result<_, ApiError>`; [`ApiError`]'s `IntoResponse` writes the status, the
//! JSON body and the headers that go with it (`WWW-Authenticate`, `Retry-After`,
//! `Cache-Control`). The hubs, whose transport answers refusals with its own [`Rejection`], get
//! theirs from the same mapping ([`ApiError::into_rejection`]).

use std::fmt;
use std::time::Duration;

use axum::response::{IntoResponse, Response};
use axum::Json;
use http::{header, HeaderValue, StatusCode};
use pushwarden_auth::AuthError;
use pushwarden_model::GatewayError;
use pushwarden_transport::Rejection;

/// What a caller over a per-installation limit (its registrations) is told to wait: that limit
/// is a count, not a rate, so waiting seconds would not help.
pub const LIMIT_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// Why an HTTP API request failed, and so what it is answered.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ApiError {
    /// The request is wrong; the caller must change it. `400 {"error": …}`.
    #[error("{0}")]
    BadRequest(String),
    /// No acceptable credentials. `401 {"error": …}` with `WWW-Authenticate: Bearer`.
    #[error("{0}")]
    Unauthorized(String),
    /// Valid credentials that may not do this. `403 {"error": …}`.
    #[error("{0}")]
    Forbidden(String),
    /// A limit is reached. `429 {"error": "rate limit exceeded: {what}"}` with `Retry-After`
    /// in whole seconds, rounded up, at least one.
    #[error("rate limit exceeded: {what}")]
    TooManyRequests { what: String, retry_after: Duration },
    /// The body is larger than the endpoint takes. `413 {"error": …}`.
    #[error("the request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    /// The store, a dependency or the token keys are unavailable; the caller may retry.
    /// `503 {"error": …}`.
    #[error("{0}")]
    Unavailable(String),
    /// The token endpoint's refusal, in OAuth 2.0's form
    /// (<https://www.rfc-editor.org/rfc/rfc6749#section-5.2>):
    /// `{"error": code, "error_description": …}` with `Cache-Control: no-store`, and
    /// `WWW-Authenticate: Basic realm="pushwarden"` when it is a 401.
    #[error("{error}: {description}")]
    OAuth {
        error: OAuthError,
        description: &'static str,
    },
}

/// An OAuth 2.0 token endpoint error code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OAuthError {
    InvalidRequest,
    /// Unknown client or bad credentials. A client that authenticated with HTTP Basic
    /// (`basic`) must be answered 401 with a challenge
    /// (<https://www.rfc-editor.org/rfc/rfc6749#section-5.2>); any other is answered 400.
    InvalidClient {
        basic: bool,
    },
    UnsupportedGrantType,
    InvalidScope,
    ServerError,
}

impl OAuthError {
    /// The `error` code on the wire.
    pub fn code(self) -> &'static str {
        match self {
            OAuthError::InvalidRequest => "invalid_request",
            OAuthError::InvalidClient { .. } => "invalid_client",
            OAuthError::UnsupportedGrantType => "unsupported_grant_type",
            OAuthError::InvalidScope => "invalid_scope",
            OAuthError::ServerError => "server_error",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            OAuthError::InvalidClient { basic: true } => StatusCode::UNAUTHORIZED,
            OAuthError::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

impl fmt::Display for OAuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl ApiError {
    /// A failed authentication at `endpoint` (`hub`, `send`, `push`), counted in
    /// `pushwarden_auth_failures_total` by endpoint and reason: 403 for a policy refusal, 503
    /// when the server cannot verify tokens (keys or configuration), 401 otherwise.
    pub fn auth(endpoint: &'static str, error: &AuthError) -> Self {
        metrics::counter!("pushwarden_auth_failures_total", "endpoint" => endpoint, "reason" => error.reason())
            .increment(1);
        if error.is_server_side() {
            tracing::warn!(endpoint, %error, "cannot verify tokens");
        } else {
            tracing::debug!(endpoint, %error, "authentication failed");
        }
        let message = error.to_string();
        match error {
            AuthError::Forbidden(_) => ApiError::Forbidden(message),
            e if e.is_server_side() => ApiError::Unavailable(message),
            _ => ApiError::Unauthorized(message),
        }
    }

    /// A request over a rate limit, told to come back after `wait`.
    pub fn rate_limited(what: impl Into<String>, wait: Duration) -> Self {
        ApiError::TooManyRequests {
            what: what.into(),
            retry_after: wait,
        }
    }

    pub fn oauth(error: OAuthError, description: &'static str) -> Self {
        ApiError::OAuth { error, description }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::OAuth { error, .. } => error.status(),
        }
    }

    /// A fixed label for metrics (`pushwarden_push_api_errors_total`'s `reason`).
    pub fn reason(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::TooManyRequests { .. } => "limit",
            ApiError::PayloadTooLarge { .. } => "too_large",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::OAuth { .. } => "oauth",
        }
    }

    /// The hubs' form of this answer: the transport's [`Rejection`] writes the same status and
    /// `{"error": …}` body, and adds `WWW-Authenticate: Bearer` to a 401 as
    /// [`IntoResponse`] does here. It carries no other header, so only what
    /// [`ApiError::auth`] answers goes this way.
    pub fn into_rejection(self) -> Rejection {
        Rejection::new(self.status(), self.to_string())
    }
}

/// Reads a request body of at most `limit` bytes. Handlers call it only once the caller is
/// authenticated, so an anonymous peer never makes the service hold a body; how long the body
/// may take is bounded where the service is served (the body is cut when its time is up).
pub async fn read_body(body: axum::body::Body, limit: usize) -> Result<bytes::Bytes, ApiError> {
    use http_body_util::BodyExt;
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            Err(ApiError::PayloadTooLarge { limit })
        }
        Err(e) => Err(ApiError::BadRequest(format!(
            "the request body could not be read: {e}"
        ))),
    }
}

/// `Retry-After` in whole seconds: rounded up, at least one.
fn retry_after_secs(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = match &self {
            ApiError::OAuth { error, description } => {
                serde_json::json!({ "error": error.code(), "error_description": description })
            }
            other => serde_json::json!({ "error": other.to_string() }),
        };
        let mut response = (status, Json(body)).into_response();
        let headers = response.headers_mut();
        match &self {
            ApiError::Unauthorized(_) => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            ApiError::TooManyRequests { retry_after, .. } => {
                headers.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(retry_after_secs(*retry_after)),
                );
            }
            ApiError::OAuth { .. } => {
                headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                if status == StatusCode::UNAUTHORIZED {
                    headers.insert(
                        header::WWW_AUTHENTICATE,
                        HeaderValue::from_static("Basic realm=\"pushwarden\""),
                    );
                }
            }
            ApiError::BadRequest(_)
            | ApiError::Forbidden(_)
            | ApiError::PayloadTooLarge { .. }
            | ApiError::Unavailable(_) => {}
        }
        response
    }
}

impl From<GatewayError> for ApiError {
    fn from(e: GatewayError) -> Self {
        match e {
            GatewayError::BadRequest(m) => ApiError::BadRequest(m),
            GatewayError::Unavailable(m) => ApiError::Unavailable(m),
            GatewayError::LimitExceeded(m) => ApiError::rate_limited(m, LIMIT_RETRY_AFTER),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::to_bytes;
    use serde_json::{json, Value};

    /// Status, JSON body and the headers the edge may set.
    async fn answer(response: Response) -> (u16, Value, Vec<(&'static str, String)>) {
        let status = response.status().as_u16();
        let mut headers = Vec::new();
        for (name, key) in [
            ("www-authenticate", header::WWW_AUTHENTICATE),
            ("retry-after", header::RETRY_AFTER),
            ("cache-control", header::CACHE_CONTROL),
        ] {
            if let Some(v) = response.headers().get(key) {
                headers.push((name, v.to_str().expect("ASCII header").to_owned()));
            }
        }
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "application/json",
            "every answer is JSON"
        );
        let body = to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        (
            status,
            serde_json::from_slice(&body).expect("JSON body"),
            headers,
        )
    }

    async fn of(error: ApiError) -> (u16, Value, Vec<(&'static str, String)>) {
        answer(error.into_response()).await
    }

    #[tokio::test]
    async fn bad_request_is_400() {
        assert_eq!(
            of(ApiError::BadRequest("`id` is required".into())).await,
            (400, json!({"error": "`id` is required"}), vec![])
        );
    }

    #[tokio::test]
    async fn unauthorized_is_401_with_a_bearer_challenge() {
        assert_eq!(
            of(ApiError::Unauthorized("token expired".into())).await,
            (
                401,
                json!({"error": "token expired"}),
                vec![("www-authenticate", "Bearer".into())]
            )
        );
    }

    #[tokio::test]
    async fn forbidden_is_403_without_a_challenge() {
        assert_eq!(
            of(ApiError::Forbidden("forbidden: nope".into())).await,
            (403, json!({"error": "forbidden: nope"}), vec![])
        );
    }

    #[tokio::test]
    async fn unavailable_is_503() {
        assert_eq!(
            of(ApiError::Unavailable("database is down".into())).await,
            (503, json!({"error": "database is down"}), vec![])
        );
    }

    #[tokio::test]
    async fn too_many_requests_is_429_with_retry_after_rounded_up() {
        for (wait, secs) in [
            (Duration::from_millis(1500), "2"),
            (Duration::from_secs(7), "7"),
            (Duration::ZERO, "1"),
            (Duration::from_nanos(1), "1"),
        ] {
            assert_eq!(
                of(ApiError::rate_limited("pushes per minute", wait)).await,
                (
                    429,
                    json!({"error": "rate limit exceeded: pushes per minute"}),
                    vec![("retry-after", secs.into())]
                ),
                "{wait:?}"
            );
        }
    }

    #[tokio::test]
    async fn oauth_errors_are_rfc6749_json_not_cached() {
        assert_eq!(
            of(ApiError::oauth(
                OAuthError::UnsupportedGrantType,
                "only client_credentials is supported"
            ))
            .await,
            (
                400,
                json!({"error": "unsupported_grant_type",
                       "error_description": "only client_credentials is supported"}),
                vec![("cache-control", "no-store".into())]
            )
        );
        for (error, code) in [
            (OAuthError::InvalidRequest, "invalid_request"),
            (OAuthError::InvalidScope, "invalid_scope"),
            (OAuthError::InvalidClient { basic: false }, "invalid_client"),
        ] {
            let (status, body, headers) = of(ApiError::oauth(error, "d")).await;
            assert_eq!(status, 400, "{code}");
            assert_eq!(body, json!({"error": code, "error_description": "d"}));
            assert_eq!(headers, vec![("cache-control", "no-store".into())]);
        }
        assert_eq!(
            of(ApiError::oauth(
                OAuthError::ServerError,
                "could not issue a token"
            ))
            .await,
            (
                500,
                json!({"error": "server_error", "error_description": "could not issue a token"}),
                vec![("cache-control", "no-store".into())]
            )
        );
    }

    #[tokio::test]
    async fn oauth_invalid_client_over_basic_is_401_with_a_basic_challenge() {
        assert_eq!(
            of(ApiError::oauth(
                OAuthError::InvalidClient { basic: true },
                "invalid client credentials"
            ))
            .await,
            (
                401,
                json!({"error": "invalid_client", "error_description": "invalid client credentials"}),
                vec![
                    ("www-authenticate", "Basic realm=\"pushwarden\"".into()),
                    ("cache-control", "no-store".into())
                ]
            )
        );
    }

    #[test]
    fn auth_errors_map_by_kind() {
        assert_eq!(
            ApiError::auth("push", &AuthError::Expired),
            ApiError::Unauthorized("token expired".into())
        );
        assert_eq!(
            ApiError::auth("push", &AuthError::Missing),
            ApiError::Unauthorized("no token supplied".into())
        );
        assert_eq!(
            ApiError::auth(
                "push",
                &AuthError::Forbidden("the installation is disabled".into())
            ),
            ApiError::Forbidden("forbidden: the installation is disabled".into())
        );
        assert_eq!(
            ApiError::auth("send", &AuthError::KeysUnavailable("timeout".into())),
            ApiError::Unavailable("signing keys unavailable: timeout".into())
        );
        assert_eq!(
            ApiError::auth("send", &AuthError::Config("no keys".into())).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }

    #[tokio::test]
    async fn the_hubs_rejection_answers_as_the_edge_does() {
        for error in [
            AuthError::Expired,
            AuthError::BadSignature,
            AuthError::Forbidden("policy".into()),
            AuthError::KeysUnavailable("down".into()),
        ] {
            let edge = of(ApiError::auth("hub", &error)).await;
            let hub = answer(
                ApiError::auth("hub", &error)
                    .into_rejection()
                    .into_response(),
            )
            .await;
            assert_eq!(edge, hub, "{error}");
        }
    }

    #[test]
    fn gateway_errors_keep_their_meaning() {
        assert_eq!(
            ApiError::from(GatewayError::BadRequest("b".into())),
            ApiError::BadRequest("b".into())
        );
        assert_eq!(
            ApiError::from(GatewayError::Unavailable("u".into())),
            ApiError::Unavailable("u".into())
        );
        let limit = ApiError::from(GatewayError::LimitExceeded("registrations".into()));
        assert_eq!(
            limit,
            ApiError::TooManyRequests {
                what: "registrations".into(),
                retry_after: LIMIT_RETRY_AFTER
            }
        );
        assert_eq!(limit.reason(), "limit");
    }

    #[tokio::test]
    async fn a_registration_limit_asks_for_an_hour() {
        let (status, body, headers) = of(GatewayError::LimitExceeded(
            "installation has 5 registrations (the limit)".into(),
        )
        .into())
        .await;
        assert_eq!(status, 429);
        assert_eq!(
            body,
            json!({"error": "rate limit exceeded: installation has 5 registrations (the limit)"})
        );
        assert_eq!(headers, vec![("retry-after", "3600".into())]);
    }
}
