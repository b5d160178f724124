//! The push API's handlers: who is calling (the local vault server by `/send`'s credentials, or
//! a relayed installation by its token), the installation's id prefixes and limits, then the
//! gateway.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::Json;
use bytes::Bytes;
use pushwarden_auth::{token_from_request, AuthError};
use serde_json::{json, Value};

use pushwarden_model::{
    DeviceRegistration, DeviceTarget, InstallationDirectory, PushGateway, Recipient,
};

use super::models::{parse_object, parse_registration, parse_send, parse_update, required_string};
use crate::edge::ApiError;
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

impl PushApiState {
    /// Who is calling `endpoint`: an installation (by its token) or the local vault server (by
    /// `/send`'s credentials). An installation's request also takes from its rate budget.
    async fn caller(
        &self,
        headers: &HeaderMap,
        endpoint: &'static str,
    ) -> Result<Caller, ApiError> {
        if let (Some(relay), Some(token)) = (&self.relay, token_from_request(headers, None)) {
            match relay.tokens.verify(&token).await {
                Ok(installation) => return relay.installation_caller(installation, endpoint).await,
                // An installation token that has run out says so rather than failing as a
                // local credential.
                Err(e @ (AuthError::Expired | AuthError::NotYetValid)) => {
                    return Err(ApiError::auth("push", &e));
                }
                Err(_) => {}
            }
        }
        self.authorizer
            .authorize(headers)
            .await
            .map(|()| Caller::Local)
            .map_err(|e| ApiError::auth("push", &e))
    }
}

impl RelayAccess {
    /// An enabled installation, counted, within its requests per minute.
    async fn installation_caller(
        &self,
        installation: String,
        endpoint: &'static str,
    ) -> Result<Caller, ApiError> {
        if !self.directory.is_enabled(installation.clone()).await? {
            tracing::info!(%installation, "request from a disabled or deleted installation");
            return Err(ApiError::auth(
                "push",
                &AuthError::Forbidden("the installation is disabled".into()),
            ));
        }
        metrics::counter!("pushwarden_relay_requests_total", "installation" => installation.clone(), "endpoint" => endpoint)
            .increment(1);
        if let Err(wait) = self.limits.request(&installation) {
            metrics::counter!("pushwarden_relay_rate_limited_total", "kind" => "requests", "installation" => installation.clone())
                .increment(1);
            return Err(ApiError::rate_limited("requests per minute", wait));
        }
        Ok(Caller::Installation(installation))
    }
}

/// Counts and logs a request the push API refused or the gateway failed, by endpoint and
/// reason (`pushwarden_push_api_errors_total`), and answers it.
fn failed<E: Into<ApiError>>(endpoint: &'static str) -> impl FnOnce(E) -> ApiError {
    move |error| {
        let error = error.into();
        metrics::counter!("pushwarden_push_api_errors_total", "endpoint" => endpoint, "reason" => error.reason())
            .increment(1);
        tracing::warn!(endpoint, %error, "push API request failed");
        error
    }
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
) -> Result<Json<Value>, ApiError> {
    let caller = state.caller(&headers, "register").await?;
    let device = parse_registration(&body)
        .and_then(|d| relayed_registration(&caller, d))
        .map_err(failed("register"))?;
    let device_id = device.device_id.clone();
    let max_owned = state
        .relay
        .as_ref()
        .filter(|_| caller != Caller::Local)
        .map(|r| r.limits.limits.max_registrations);
    let platform = state
        .gateway
        .register(device, max_owned)
        .await
        .map_err(failed("register"))?;
    Ok(Json(json!({ "deviceId": device_id, "platform": platform })))
}

/// `POST /push/delete` with `{id}`.
pub async fn delete(
    State(state): State<Arc<PushApiState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let caller = state.caller(&headers, "delete").await?;
    let id = parse_object(&body)
        .and_then(|m| required_string(&m, "id"))
        .map_err(failed("delete"))?;
    delete_device(&state, &caller, &id).await
}

/// `POST|DELETE /push/delete/{id}`: Vaultwarden's form of delete.
pub async fn delete_by_path(
    State(state): State<Arc<PushApiState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let caller = state.caller(&headers, "delete").await?;
    if id.trim().is_empty() {
        return Err(failed("delete")(ApiError::BadRequest(
            "the device id is empty".into(),
        )));
    }
    delete_device(&state, &caller, &normalize_id(&id)).await
}

async fn delete_device(
    state: &PushApiState,
    caller: &Caller,
    id: &str,
) -> Result<Json<Value>, ApiError> {
    let existed = state
        .gateway
        .delete(caller.prefix(id))
        .await
        .map_err(failed("delete"))?;
    Ok(Json(json!({ "deleted": existed })))
}

/// `PUT /push/add-organization`.
pub async fn add_organization(
    State(state): State<Arc<PushApiState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    update_organization(&state, &headers, &body, true).await
}

/// `PUT /push/delete-organization`.
pub async fn delete_organization(
    State(state): State<Arc<PushApiState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    update_organization(&state, &headers, &body, false).await
}

async fn update_organization(
    state: &PushApiState,
    headers: &HeaderMap,
    body: &[u8],
    add: bool,
) -> Result<Json<Value>, ApiError> {
    let endpoint = if add {
        "add-organization"
    } else {
        "delete-organization"
    };
    let caller = state.caller(headers, endpoint).await?;
    let (devices, org) = parse_update(body).map_err(failed(endpoint))?;
    let devices = devices.iter().map(|d| caller.prefix(d)).collect();
    let org = caller.prefix(&org);
    let changed = if add {
        state.gateway.add_organization(devices, org).await
    } else {
        state.gateway.delete_organization(devices, org).await
    }
    .map_err(failed(endpoint))?;
    Ok(Json(json!({ "updated": changed })))
}

/// `POST /push/send`.
pub async fn send(
    State(state): State<Arc<PushApiState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let caller = state.caller(&headers, "send").await?;
    let (target, message) = parse_send(&body)
        .and_then(|(t, m)| Ok((relayed_target(&caller, t)?, m)))
        .map_err(failed("send"))?;
    if let (Some(relay), Some(installation)) = (&state.relay, caller.installation()) {
        if let Err(wait) = relay.limits.push(installation) {
            metrics::counter!("pushwarden_relay_rate_limited_total", "kind" => "pushes", "installation" => installation.to_owned())
                .increment(1);
            return Err(ApiError::rate_limited("pushes per minute", wait));
        }
    }
    let queued = state
        .gateway
        .send(target, message)
        .await
        .map_err(failed("send"))?;
    if let Some(installation) = caller.installation() {
        metrics::counter!("pushwarden_relay_pushes_total", "installation" => installation.to_owned())
            .increment(queued);
    }
    Ok(Json(json!({ "queued": queued })))
}
