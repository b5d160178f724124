//! Devices registered for pushes, which of them a push goes to, and what it carries.

use crate::push_type::PushType;
use crate::target::Target;

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

/// Bitwarden's `PushRegistrationRequestModel`, plus `webPush` and `apnsEnvironment`.
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
