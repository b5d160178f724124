//! The push API a vault server calls to register devices and push to them, in the shape of
//! Bitwarden's relay (`PushController`, spec §5.2): `/push/register`, `/push/delete`,
//! `/push/add-organization`, `/push/delete-organization` and `/push/send`.
//!
//! - [`models`]: Bitwarden's request models (camelCase or PascalCase), parsed and validated.
//! - [`routes`]: the handlers, who is calling (the local vault server or a relayed
//!   installation), and how an installation's ids are kept apart.
//!
//! Storing and delivering is a [`PushGateway`]'s job (the push layer).

mod models;
mod routes;

use std::future::Future;
use std::pin::Pin;

use axum::response::{IntoResponse, Response};
use axum::Json;
use http::StatusCode;
use serde_json::Value;

use crate::notification::{normalize_id, Notification, Target};
use crate::push_type::PushType;

pub use models::parse_send;
pub use routes::{
    add_organization, delete, delete_by_path, delete_organization, register, send, PushApiState,
    RelayAccess, MAX_PUSH_API_BODY,
};

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
