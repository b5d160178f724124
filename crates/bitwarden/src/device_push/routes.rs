//! The push API's handlers: who is calling (the local vault server by `/send`'s credentials, or
//! a relayed installation by its token), the installation's id prefixes and limits, then the
//! gateway.

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use pushwarden_auth::{token_from_request, AuthError};

use pushwarden_model::{
    DeviceRegistration, DeviceTarget, InstallationDirectory, PushGateway, Recipient,
};

use super::models::{parse_object, parse_registration, parse_send, parse_update, required_string};
use super::ApiError;
use crate::hubs::auth_rejection;
use crate::notification::normalize_id;
use crate::relay::{Caller, InstallationTokens, RateLimits};
use crate::send::SendAuthorizer;

/// State of the push API routes.
pub struct PushApiState {
    pub gateway: Arc<dyn PushGateway>,
    /// The local vault server's credentials (those of `/send`).
    pub authorizer: Arc<SendAuthorizer>,
    /// Installation tokens, when this service is a relay.
    pub relay: Option<RelayAccess>,
}

/// What the push API needs to serve relayed installations.
pub struct RelayAccess {
    pub tokens: Arc<InstallationTokens>,
    pub directory: Arc<dyn InstallationDirectory>,
    pub limits: Arc<RateLimits>,
}

/// Largest request body the push API accepts.
pub const MAX_PUSH_API_BODY: usize = 64 * 1024;

/// Who is calling: an installation (by its token) or the local vault server (by `/send`'s
/// credentials). An installation's request also takes from its rate budget.
async fn caller(
    state: &PushApiState,
    headers: &HeaderMap,
    endpoint: &'static str,
) -> Result<Caller, Response> {
    if let (Some(relay), Some(token)) = (&state.relay, token_from_request(headers, None)) {
        match relay.tokens.verify(&token).await {
            Ok(installation) => {
                return installation_caller(relay, installation, endpoint).await;
            }
            // An installation token that has run out says so rather than failing as a
            // local credential.
            Err(e @ (AuthError::Expired | AuthError::NotYetValid)) => {
                return Err(auth_rejection("push", &e).into_response());
            }
            Err(_) => {}
        }
    }
    state
        .authorizer
        .authorize(headers)
        .await
        .map(|()| Caller::Local)
        .map_err(|e| auth_rejection("push", &e).into_response())
}

async fn installation_caller(
    relay: &RelayAccess,
    installation: String,
    endpoint: &'static str,
) -> Result<Caller, Response> {
    match relay.directory.is_enabled(installation.clone()).await {
        Ok(true) => {}
        Ok(false) => {
            tracing::info!(%installation, "request from a disabled or deleted installation");
            return Err(auth_rejection(
                "push",
                &AuthError::Forbidden("the installation is disabled".into()),
            )
            .into_response());
        }
        Err(e) => return Err(ApiError::from(e).into_response()),
    }
    metrics::counter!("pushwarden_relay_requests_total", "installation" => installation.clone(), "endpoint" => endpoint)
        .increment(1);
    if let Err(wait) = relay.limits.request(&installation) {
        metrics::counter!("pushwarden_relay_rate_limited_total", "kind" => "requests", "installation" => installation.clone())
            .increment(1);
        return Err(crate::relay::too_many("requests per minute", wait));
    }
    Ok(Caller::Installation(installation))
}

fn rejected(endpoint: &'static str, error: impl Into<ApiError>) -> Response {
    let error = error.into();
    let reason = match error {
        ApiError::BadRequest(_) => "bad_request",
        ApiError::Unavailable(_) => "unavailable",
        ApiError::LimitExceeded(_) => "limit",
    };
    metrics::counter!("pushwarden_push_api_errors_total", "endpoint" => endpoint, "reason" => reason)
        .increment(1);
    tracing::warn!(endpoint, %error, "push API request failed");
    error.into_response()
}

/// An installation's registration, with its ids prefixed and its installation checked.
fn relayed_registration(
    caller: &Caller,
    mut device: DeviceRegistration,
) -> Result<DeviceRegistration, ApiError> {
    let Some(installation) = caller.installation() else {
        return Ok(device);
    };
    match &device.installation_id {
        Some(id) if id != installation => {
            return Err(ApiError::BadRequest(
                "installationId does not match the caller's installation".into(),
            ))
        }
        _ => device.installation_id = Some(installation.to_owned()),
    }
    device.device_id = caller.prefix(&device.device_id);
    device.user_id = caller.prefix(&device.user_id);
    device.identifier = device.identifier.as_deref().map(|i| caller.prefix(i));
    device.organization_ids = device
        .organization_ids
        .iter()
        .map(|o| caller.prefix(o))
        .collect();
    device.owner = Some(installation.to_owned());
    Ok(device)
}

/// An installation's push target, prefixed like its registrations. Unlike Bitwarden's current
/// relay, the sending device's identifier is prefixed too, so excluding it still works.
fn relayed_target(caller: &Caller, mut target: DeviceTarget) -> Result<DeviceTarget, ApiError> {
    let Some(installation) = caller.installation() else {
        return Ok(target);
    };
    target.target.recipient = match target.target.recipient {
        Recipient::Installation(id) if id == installation => Recipient::Installation(id),
        Recipient::Installation(_) => {
            return Err(ApiError::BadRequest(
                "installationId does not match the caller's installation".into(),
            ))
        }
        Recipient::User(u) => Recipient::User(caller.prefix(&u)),
        Recipient::Organization(o) => Recipient::Organization(caller.prefix(&o)),
    };
    target.exclude_identifier = target.exclude_identifier.map(|i| caller.prefix(&i));
    Ok(target)
}

/// `POST /push/register`.
pub async fn register(
    State(state): State<Arc<PushApiState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let caller = match caller(&state, &headers, "register").await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let device = match parse_registration(&body).and_then(|d| relayed_registration(&caller, d)) {
        Ok(d) => d,
        Err(e) => return rejected("register", e),
    };
    let device_id = device.device_id.clone();
    let max_owned = state
        .relay
        .as_ref()
        .filter(|_| caller != Caller::Local)
        .map(|r| r.limits.limits.max_registrations);
    match state.gateway.register(device, max_owned).await {
        Ok(platform) => {
            Json(serde_json::json!({ "deviceId": device_id, "platform": platform })).into_response()
        }
        Err(e) => rejected("register", e),
    }
}

/// `POST /push/delete` with `{id}`.
pub async fn delete(
    State(state): State<Arc<PushApiState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let caller = match caller(&state, &headers, "delete").await {
        Ok(c) => c,
        Err(r) => return r,
    };
    match parse_object(&body).and_then(|m| required_string(&m, "id")) {
        Ok(id) => delete_device(&state, &caller, &id).await,
        Err(e) => rejected("delete", e),
    }
}

/// `POST|DELETE /push/delete/{id}`: Vaultwarden's form of delete.
pub async fn delete_by_path(
    State(state): State<Arc<PushApiState>>,
    axum::extract::Path(id): axum::extract::Path<String>,
    headers: HeaderMap,
) -> Response {
    let caller = match caller(&state, &headers, "delete").await {
        Ok(c) => c,
        Err(r) => return r,
    };
    if id.trim().is_empty() {
        return rejected(
            "delete",
            ApiError::BadRequest("the device id is empty".into()),
        );
    }
    delete_device(&state, &caller, &normalize_id(&id)).await
}

async fn delete_device(state: &PushApiState, caller: &Caller, id: &str) -> Response {
    match state.gateway.delete(caller.prefix(id)).await {
        Ok(existed) => Json(serde_json::json!({ "deleted": existed })).into_response(),
        Err(e) => rejected("delete", e),
    }
}

/// `PUT /push/add-organization`.
pub async fn add_organization(
    State(state): State<Arc<PushApiState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    update_organization(state, headers, body, true).await
}

/// `PUT /push/delete-organization`.
pub async fn delete_organization(
    State(state): State<Arc<PushApiState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    update_organization(state, headers, body, false).await
}

async fn update_organization(
    state: Arc<PushApiState>,
    headers: HeaderMap,
    body: Bytes,
    add: bool,
) -> Response {
    let endpoint = if add {
        "add-organization"
    } else {
        "delete-organization"
    };
    let caller = match caller(&state, &headers, endpoint).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let (devices, org) = match parse_update(&body) {
        Ok((devices, org)) => (
            devices.iter().map(|d| caller.prefix(d)).collect(),
            caller.prefix(&org),
        ),
        Err(e) => return rejected(endpoint, e),
    };
    let result = if add {
        state.gateway.add_organization(devices, org).await
    } else {
        state.gateway.delete_organization(devices, org).await
    };
    match result {
        Ok(changed) => Json(serde_json::json!({ "updated": changed })).into_response(),
        Err(e) => rejected(endpoint, e),
    }
}

/// `POST /push/send`.
pub async fn send(
    State(state): State<Arc<PushApiState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let caller = match caller(&state, &headers, "send").await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let (target, message) =
        match parse_send(&body).and_then(|(t, m)| Ok((relayed_target(&caller, t)?, m))) {
            Ok(s) => s,
            Err(e) => return rejected("send", e),
        };
    if let (Some(relay), Some(installation)) = (&state.relay, caller.installation()) {
        if let Err(wait) = relay.limits.push(installation) {
            metrics::counter!("pushwarden_relay_rate_limited_total", "kind" => "pushes", "installation" => installation.to_owned())
                .increment(1);
            return crate::relay::too_many("pushes per minute", wait);
        }
    }
    match state.gateway.send(target, message).await {
        Ok(queued) => {
            if let Some(installation) = caller.installation() {
                metrics::counter!("pushwarden_relay_pushes_total", "installation" => installation.to_owned())
                    .increment(queued);
            }
            Json(serde_json::json!({ "queued": queued })).into_response()
        }
        Err(e) => rejected("send", e),
    }
}
