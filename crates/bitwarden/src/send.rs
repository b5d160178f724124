//! `POST /send`: a vault server hands over a notification (Bitwarden's `SendController`),
//! and the informational `GET /alive` and `GET /now`.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use http::StatusCode;
use pushwarden_auth::{token_from_request, AuthError, TokenVerifier};
use subtle::ConstantTimeEq;

use crate::hubs::auth_rejection;
use crate::notification::Notification;
use crate::service::Notifications;

/// Who may post to `/send`: a bearer token with scope `internal` (what Bitwarden's API sends),
/// or the configured static key.
pub struct SendAuthorizer {
    verifier: Option<TokenVerifier>,
    api_key: Option<String>,
}

impl SendAuthorizer {
    pub fn new(verifier: Option<TokenVerifier>, api_key: Option<String>) -> Self {
        Self {
            verifier,
            api_key: api_key.filter(|k| !k.is_empty()),
        }
    }

    pub async fn authorize(&self, headers: &HeaderMap) -> Result<(), AuthError> {
        let token = token_from_request(headers, None).ok_or(AuthError::Missing)?;
        if let Some(key) = &self.api_key {
            if bool::from(key.as_bytes().ct_eq(token.as_bytes())) {
                return Ok(());
            }
        }
        match &self.verifier {
            Some(verifier) => verifier.verify(&token).await?.require_internal(),
            None => Err(AuthError::BadSignature),
        }
    }
}

pub struct SendState {
    pub notifications: Arc<Notifications>,
    pub authorizer: SendAuthorizer,
}

/// Largest `/send` body accepted.
pub const MAX_SEND_BODY: usize = 256 * 1024;

fn error(status: StatusCode, message: String) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

pub async fn send(
    State(state): State<Arc<SendState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let started = Instant::now();
    if let Err(e) = state.authorizer.authorize(&headers).await {
        return auth_rejection("send", &e).into_response();
    }
    let response = match Notification::parse(&body) {
        Err(e) => {
            metrics::counter!("pushwarden_send_rejected_total", "reason" => e.reason())
                .increment(1);
            tracing::warn!(error = %e, "rejected /send");
            error(StatusCode::BAD_REQUEST, e.to_string())
        }
        Ok(notification) => match state.notifications.publish(&notification) {
            Ok(delivery) => {
                tracing::debug!(
                    push_type = notification.push_type.name(),
                    connections = delivery.connections,
                    "notification sent"
                );
                Json(serde_json::json!({ "delivered": delivery.connections })).into_response()
            }
            Err(e) => {
                metrics::counter!("pushwarden_send_rejected_total", "reason" => e.reason())
                    .increment(1);
                tracing::warn!(error = %e, "rejected /send");
                error(StatusCode::BAD_REQUEST, e.to_string())
            }
        },
    };
    metrics::histogram!("pushwarden_send_duration_seconds").record(started.elapsed().as_secs_f64());
    response
}

/// `GET /alive` and `GET /now`: the current UTC time, as Bitwarden's `InfoController` answers.
pub async fn now() -> Response {
    // .NET writes a UTC DateTime with seven fractional digits.
    Json(
        chrono::Utc::now()
            .format("%Y-%m-%dT%H:%M:%S%.7fZ")
            .to_string(),
    )
    .into_response()
}
