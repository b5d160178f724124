//! The push API a vault server calls to register devices and push to them, in the shape of
//! Bitwarden's relay (`PushController`, spec §5.2): `/push/register`, `/push/delete`,
//! `/push/add-organization`, `/push/delete-organization` and `/push/send`.
//!
//! This layer parses and validates Bitwarden's request models (camelCase or PascalCase) and says
//! what they mean; storing and delivering is a [`PushGateway`]'s job (the push layer).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use http::StatusCode;
use serde_json::{Map, Value};

use crate::client_type::ClientType;
use pushwarden_auth::{token_from_request, AuthError};

use crate::hubs::auth_rejection;
use crate::notification::{normalize_id, Notification, Recipient, Target};
use crate::payload::field;
use crate::push_type::PushType;
use crate::relay::{Caller, InstallationDirectory, InstallationTokens, RateLimits};
use crate::send::SendAuthorizer;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where a registered device's pushes go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PushChannel {
    /// `pushToken`: an APNs or FCM token; the platform follows the device type.
    Token(String),
    /// `webPush`: a Web Push or UnifiedPush subscription.
    WebPush {
        endpoint: String,
        p256dh: String,
        auth: String,
    },
}

/// `PushRegistrationRequestModel`, plus `webPush` and `apnsEnvironment`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceRegistration {
    pub device_id: String,
    pub user_id: String,
    pub identifier: Option<String>,
    /// Bitwarden's `DeviceType`.
    pub device_type: u8,
    pub channel: PushChannel,
    pub organization_ids: Vec<String>,
    pub installation_id: Option<String>,
    /// `"production"` or `"sandbox"` for an iOS token; production when absent.
    pub apns_environment: Option<String>,
    /// The relayed installation registering the device; `None` for the local vault server.
    pub owner: Option<String>,
}

/// What one push carries to a device: the type and the payload as the apps read them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushMessage {
    pub push_type: PushType,
    /// The payload object as JSON text (the apps parse it a second time).
    pub payload: String,
    /// The sending device's identifier, which the apps compare with their own.
    pub context_id: Option<String>,
}

/// Which registered devices a push goes to: Bitwarden's tag expression
/// `target && !deviceIdentifier:{exclude} && clientType:{ct}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceTarget {
    pub target: Target,
    pub exclude_identifier: Option<String>,
}

impl DeviceTarget {
    /// The devices a `/send` notification reaches: its target, minus the sending device.
    pub fn for_notification(notification: &Notification) -> Result<Self, ApiError> {
        let target = notification
            .target()
            .map_err(|e| ApiError::BadRequest(e.to_string()))?;
        Ok(Self {
            target,
            exclude_identifier: notification.context_id.as_deref().map(normalize_id),
        })
    }
}

impl PushMessage {
    pub fn for_notification(notification: &Notification) -> Self {
        Self {
            push_type: notification.push_type,
            payload: Value::Object(notification.payload.clone()).to_string(),
            context_id: notification.context_id.clone(),
        }
    }
}

/// Why a push API call failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ApiError {
    /// The request is wrong; the caller must change it.
    #[error("{0}")]
    BadRequest(String),
    /// The store or a dependency is down; the caller may retry.
    #[error("{0}")]
    Unavailable(String),
    /// A per-installation limit (registrations) is reached.
    #[error("{0}")]
    LimitExceeded(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::LimitExceeded(what) => {
                return crate::relay::too_many(&what, std::time::Duration::from_secs(3600))
            }
        };
        (
            status,
            Json(serde_json::json!({ "error": self.to_string() })),
        )
            .into_response()
    }
}

/// Stores registrations and delivers pushes (implemented by the push layer).
pub trait PushGateway: Send + Sync + 'static {
    /// Creates or replaces a registration; answers the platform name it was filed under. An
    /// owner may hold at most `max_owned` registrations.
    fn register(
        &self,
        device: DeviceRegistration,
        max_owned: Option<u64>,
    ) -> BoxFuture<'_, Result<String, ApiError>>;
    /// Removes a registration; answers whether one existed.
    fn delete(&self, device_id: String) -> BoxFuture<'_, Result<bool, ApiError>>;
    /// Tags devices with an organization; answers how many registrations changed.
    fn add_organization(
        &self,
        device_ids: Vec<String>,
        organization_id: String,
    ) -> BoxFuture<'_, Result<u64, ApiError>>;
    /// Removes an organization tag; answers how many registrations changed.
    fn delete_organization(
        &self,
        device_ids: Vec<String>,
        organization_id: String,
    ) -> BoxFuture<'_, Result<u64, ApiError>>;
    /// Stores one push for every matching device before answering how many it was queued for.
    fn send(
        &self,
        target: DeviceTarget,
        message: PushMessage,
    ) -> BoxFuture<'_, Result<u64, ApiError>>;
}

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

fn parse_object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::BadRequest(
            "the body must be a JSON object".into(),
        )),
        Err(e) => Err(ApiError::BadRequest(format!(
            "the body is not valid JSON: {e}"
        ))),
    }
}

/// A string (or GUID) field; blank counts as absent, as Bitwarden's `Prefix` treats it.
fn optional_string(map: &Map<String, Value>, name: &str) -> Result<Option<String>, ApiError> {
    match field(map, name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(normalize_id(s))),
        Some(_) => Err(ApiError::BadRequest(format!("`{name}` must be a string"))),
    }
}

fn required_string(map: &Map<String, Value>, name: &str) -> Result<String, ApiError> {
    optional_string(map, name)?.ok_or_else(|| ApiError::BadRequest(format!("`{name}` is required")))
}

fn optional_u8(map: &Map<String, Value>, name: &str) -> Result<Option<u8>, ApiError> {
    match field(map, name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .and_then(|v| u8::try_from(v).ok())
            .map(Some)
            .ok_or_else(|| ApiError::BadRequest(format!("`{name}` is out of range: {n}"))),
        Some(_) => Err(ApiError::BadRequest(format!("`{name}` must be a number"))),
    }
}

impl DeviceRegistration {
    /// Parses `PushRegistrationRequestModel` (plus `webPush` and `apnsEnvironment`).
    pub fn parse(body: &[u8]) -> Result<Self, ApiError> {
        let map = parse_object(body)?;
        let device_type = optional_u8(&map, "type")?
            .ok_or_else(|| ApiError::BadRequest("`type` (the DeviceType) is required".into()))?;
        let token = match field(&map, "pushToken") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.trim().is_empty() => None,
            Some(Value::String(s)) => Some(s.trim().to_owned()),
            Some(_) => return Err(ApiError::BadRequest("`pushToken` must be a string".into())),
        };
        let web_push = match field(&map, "webPush") {
            None | Some(Value::Null) => None,
            Some(Value::Object(sub)) => {
                let part = |name: &str| match field(sub, name) {
                    Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.trim().to_owned()),
                    _ => Err(ApiError::BadRequest(format!(
                        "`webPush.{name}` is required and must be a string"
                    ))),
                };
                Some(PushChannel::WebPush {
                    endpoint: part("endpoint")?,
                    p256dh: part("p256dh")?,
                    auth: part("auth")?,
                })
            }
            Some(_) => {
                return Err(ApiError::BadRequest(
                    "`webPush` must be an object {endpoint, p256dh, auth}".into(),
                ))
            }
        };
        let channel = match (token, web_push) {
            (Some(t), None) => PushChannel::Token(t),
            (None, Some(w)) => w,
            (Some(_), Some(_)) => {
                return Err(ApiError::BadRequest(
                    "give either `pushToken` or `webPush`, not both".into(),
                ))
            }
            (None, None) => {
                return Err(ApiError::BadRequest(
                    "`pushToken` (APNs/FCM) or `webPush` {endpoint, p256dh, auth} is required"
                        .into(),
                ))
            }
        };
        let organization_ids = match field(&map, "organizationIds") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(|v| match v {
                    Value::String(s) if s.trim().is_empty() => None,
                    Value::String(s) => Some(Ok(normalize_id(s))),
                    _ => Some(Err(ApiError::BadRequest(
                        "`organizationIds` must be an array of strings".into(),
                    ))),
                })
                .collect::<Result<_, _>>()?,
            Some(_) => {
                return Err(ApiError::BadRequest(
                    "`organizationIds` must be an array of strings".into(),
                ))
            }
        };
        Ok(Self {
            device_id: required_string(&map, "deviceId")?,
            user_id: required_string(&map, "userId")?,
            identifier: optional_string(&map, "identifier")?,
            device_type,
            channel,
            organization_ids,
            installation_id: optional_string(&map, "installationId")?
                .filter(|id| id != "00000000-0000-0000-0000-000000000000"),
            apns_environment: optional_string(&map, "apnsEnvironment")?,
            owner: None,
        })
    }
}

/// `PushUpdateRequestModel`: `{devices: [{id}], organizationId}`.
fn parse_update(body: &[u8]) -> Result<(Vec<String>, String), ApiError> {
    let map = parse_object(body)?;
    let organization_id = required_string(&map, "organizationId")?;
    let devices = match field(&map, "devices") {
        Some(Value::Array(items)) => items
            .iter()
            .map(|d| match d {
                Value::Object(d) => required_string(d, "id"),
                _ => Err(ApiError::BadRequest(
                    "`devices` must be an array of {id}".into(),
                )),
            })
            .collect::<Result<Vec<_>, _>>()?,
        _ => {
            return Err(ApiError::BadRequest(
                "`devices` is required: an array of {id}".into(),
            ))
        }
    };
    Ok((devices, organization_id))
}

/// `PushSendRequestModel`: the target (installation, else user, else organization), the
/// sending device to skip, an optional client type, and the notification itself.
pub fn parse_send(body: &[u8]) -> Result<(DeviceTarget, PushMessage), ApiError> {
    let map = parse_object(body)?;
    let type_number = optional_u8(&map, "type")?
        .ok_or_else(|| ApiError::BadRequest("`type` is required".into()))?;
    let push_type = PushType::from_u8(type_number)
        .ok_or_else(|| ApiError::BadRequest(format!("unknown push type {type_number}")))?;
    let payload = match field(&map, "payload") {
        Some(Value::Object(p)) => Value::Object(p.clone()).to_string(),
        _ => {
            return Err(ApiError::BadRequest(
                "`payload` must be a JSON object".into(),
            ))
        }
    };
    let recipient = if let Some(id) = optional_string(&map, "installationId")? {
        Recipient::Installation(id)
    } else if let Some(id) = optional_string(&map, "userId")? {
        Recipient::User(id)
    } else if let Some(id) = optional_string(&map, "organizationId")? {
        Recipient::Organization(id)
    } else {
        return Err(ApiError::BadRequest(
            "one of `userId`, `organizationId` or `installationId` is required".into(),
        ));
    };
    let client_type = match optional_u8(&map, "clientType")? {
        None => None,
        Some(v) => match ClientType::from_u8(v) {
            Some(ClientType::All) => None,
            Some(ct) => Some(ct),
            None => return Err(ApiError::BadRequest(format!("unknown client type {v}"))),
        },
    };
    let identifier = optional_string(&map, "identifier")?;
    Ok((
        DeviceTarget {
            target: Target {
                recipient,
                client_type,
            },
            exclude_identifier: identifier.clone(),
        },
        PushMessage {
            push_type,
            payload,
            context_id: identifier,
        },
    ))
}

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
        Err(e) => return Err(e.into_response()),
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

fn rejected(endpoint: &'static str, error: ApiError) -> Response {
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
    let device =
        match DeviceRegistration::parse(&body).and_then(|d| relayed_registration(&caller, d)) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const U: &str = "d2ea5b72-1111-4a4a-9f9f-000000000001";

    #[test]
    fn registration_models() {
        let r = DeviceRegistration::parse(
            json!({"DeviceId": "dev-1", "PushToken": "tok", "UserId": U.to_uppercase(),
                   "Identifier": "ident", "Type": 0, "OrganizationIds": ["o1", ""],
                   "InstallationId": "00000000-0000-0000-0000-000000000000"})
            .to_string()
            .as_bytes(),
        )
        .unwrap();
        assert_eq!(r.channel, PushChannel::Token("tok".into()));
        assert_eq!(r.user_id, U);
        assert_eq!(r.organization_ids, vec!["o1".to_owned()]);
        assert_eq!(r.installation_id, None);
        let w = DeviceRegistration::parse(
            json!({"deviceId": "d", "userId": U, "type": 9,
                   "webPush": {"endpoint": "https://push.example/x", "p256dh": "k", "auth": "a"}})
            .to_string()
            .as_bytes(),
        )
        .unwrap();
        assert!(matches!(w.channel, PushChannel::WebPush { .. }));
        for bad in [
            json!({"deviceId": "d", "userId": U, "type": 0}),
            json!({"deviceId": "d", "userId": U, "pushToken": "t"}),
            json!({"userId": U, "type": 0, "pushToken": "t"}),
            json!({"deviceId": "d", "userId": U, "type": 0, "pushToken": 5}),
            json!({"deviceId": "d", "userId": U, "type": 300, "pushToken": "t"}),
            json!({"deviceId": "d", "userId": U, "type": 0, "pushToken": "t", "webPush": {"endpoint": "e", "p256dh": "k", "auth": "a"}}),
            json!({"deviceId": "d", "userId": U, "type": 0, "webPush": {"endpoint": "e"}}),
        ] {
            assert!(
                DeviceRegistration::parse(bad.to_string().as_bytes()).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn send_model_picks_installation_then_user_then_organization() {
        let (t, m) = parse_send(
            json!({"userId": U, "organizationId": "o", "identifier": "me", "type": 11,
                   "payload": {"userId": U}, "clientType": 0})
            .to_string()
            .as_bytes(),
        )
        .unwrap();
        assert_eq!(t.target.recipient, Recipient::User(U.into()));
        assert_eq!(t.target.client_type, None);
        assert_eq!(t.exclude_identifier.as_deref(), Some("me"));
        assert_eq!(m.push_type, PushType::LogOut);
        let (t, _) = parse_send(
            json!({"InstallationId": "i", "UserId": U, "Type": 0, "Payload": {}, "ClientType": 4})
                .to_string()
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(t.target.recipient, Recipient::Installation("i".into()));
        assert_eq!(t.target.client_type, Some(ClientType::Mobile));
        for bad in [
            json!({"type": 0, "payload": {}}),
            json!({"userId": U, "payload": {}}),
            json!({"userId": U, "type": 99, "payload": {}}),
            json!({"userId": U, "type": 0, "payload": "x"}),
            json!({"userId": U, "type": 0, "payload": {}, "clientType": 9}),
        ] {
            assert!(parse_send(bad.to_string().as_bytes()).is_err(), "{bad}");
        }
    }
}
