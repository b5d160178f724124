//! `POST /send`: a vault server hands over a notification
//! (`src/Notifications/Controllers/SendController.cs` in bitwarden/server), and the
//! informational `GET /alive` and `GET /now`.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use pushwarden_auth::{token_from_request, AuthError, TokenVerifier};
use serde_json::{json, Value};
use subtle::ConstantTimeEq;

use pushwarden_model::PushGateway;

use crate::edge::ApiError;
use crate::notification::{EnvelopeError, Notification};
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
    pub authorizer: Arc<SendAuthorizer>,
    /// When set, `/send` also pushes to registered devices (minus the sending one).
    pub devices: Option<Arc<dyn PushGateway>>,
}

/// Largest `/send` body accepted.
pub const MAX_SEND_BODY: usize = 256 * 1024;

pub async fn send(
    State(state): State<Arc<SendState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let started = Instant::now();
    state
        .authorizer
        .authorize(&headers)
        .await
        .map_err(|e| ApiError::auth("send", &e))?;
    let body = crate::edge::read_body(body, MAX_SEND_BODY).await?;
    let result = deliver(&state, &body).await;
    metrics::histogram!("pushwarden_send_duration_seconds").record(started.elapsed().as_secs_f64());
    result.map(Json)
}

/// Publishes an authorized `/send` to the hubs and, when device push is on, to devices.
async fn deliver(state: &SendState, body: &[u8]) -> Result<Value, ApiError> {
    let notification = Notification::parse(body).map_err(rejected)?;
    let delivery = state
        .notifications
        .publish(&notification)
        .map_err(rejected)?;
    tracing::debug!(
        push_type = notification.push_type.name(),
        connections = delivery.connections,
        "notification sent"
    );
    // `queued` (device pushes stored for delivery) only when device push is on.
    Ok(match push_to_devices(state, &notification).await? {
        Some(queued) => json!({ "delivered": delivery.connections, "queued": queued }),
        None => json!({ "delivered": delivery.connections }),
    })
}

/// A `/send` the envelope or its routing refused, counted by reason.
fn rejected(error: EnvelopeError) -> ApiError {
    metrics::counter!("pushwarden_send_rejected_total", "reason" => error.reason()).increment(1);
    tracing::warn!(%error, "rejected /send");
    ApiError::BadRequest(error.to_string())
}

/// Queues the notification for the target's registered devices, if device push is on. A
/// store failure answers 503, so the vault server retries rather than the push being lost
/// (the SignalR part may then arrive twice, which only triggers a second sync).
async fn push_to_devices(
    state: &SendState,
    notification: &Notification,
) -> Result<Option<u64>, ApiError> {
    let Some(gateway) = &state.devices else {
        return Ok(None);
    };
    let target = match notification.device_target() {
        Ok(t) => t,
        Err(e) => {
            // Only AuthRequestResponse can route to SignalR without a device target (it
            // needs `userId` for phones); the hub delivery stands.
            tracing::debug!(error = %e, "notification has no device target");
            return Ok(Some(0));
        }
    };
    match gateway.send(target, notification.push_message()).await {
        Ok(queued) => Ok(Some(queued)),
        Err(e) => {
            tracing::error!(error = %e, "/send: queueing device pushes failed");
            metrics::counter!("pushwarden_send_rejected_total", "reason" => "push_store")
                .increment(1);
            Err(ApiError::from(e))
        }
    }
}

/// `GET /alive` and `GET /now`: the current UTC time, as Bitwarden's `InfoController` answers.
pub async fn now() -> Response {
    Json(dotnet_utc(chrono::Utc::now())).into_response()
}

/// A UTC time as .NET writes a `DateTime`: seven fractional digits (100 ns ticks). chrono's
/// `%.7f` does not exist (its fixed widths are 3, 6 and 9), so the ticks are written by hand.
fn dotnet_utc(now: chrono::DateTime<chrono::Utc>) -> String {
    format!(
        "{}.{:07}Z",
        now.format("%Y-%m-%dT%H:%M:%S"),
        now.timestamp_subsec_nanos() % 1_000_000_000 / 100
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_written_as_dotnet_does() {
        let t = chrono::DateTime::from_timestamp(1_764_300_000, 123_456_789).expect("time");
        assert_eq!(dotnet_utc(t), "2025-11-28T03:20:00.1234567Z");
        let t = chrono::DateTime::from_timestamp(1_764_300_000, 0).expect("time");
        assert_eq!(dotnet_utc(t), "2025-11-28T03:20:00.0000000Z");
    }
}
