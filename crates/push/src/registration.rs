//! A device registration: where a device's pushes go and the tags that select it.

use pushwarden_model::ClientType;

use crate::apns::Environment;

/// How pushes reach a device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Platform {
    /// Apple Push Notification service (Bitwarden's iOS app).
    Apns,
    /// Firebase Cloud Messaging (Bitwarden's Android app).
    Fcm,
    /// A browser's Web Push subscription.
    WebPush,
    /// A UnifiedPush distributor (de-Googled Android): Web Push on the wire.
    UnifiedPush,
}

/// Who carries a push for a platform. UnifiedPush is Web Push to the distributor's endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Provider {
    Apns,
    Fcm,
    WebPush,
}

impl Platform {
    pub const ALL: [Platform; 4] = [
        Platform::Apns,
        Platform::Fcm,
        Platform::WebPush,
        Platform::UnifiedPush,
    ];

    /// The name stored in the registry.
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Apns => "apns",
            Platform::Fcm => "fcm",
            Platform::WebPush => "webpush",
            Platform::UnifiedPush => "unifiedpush",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Platform::ALL.into_iter().find(|p| p.as_str() == s)
    }

    pub fn provider(self) -> Provider {
        match self {
            Platform::Apns => Provider::Apns,
            Platform::Fcm => Provider::Fcm,
            Platform::WebPush | Platform::UnifiedPush => Provider::WebPush,
        }
    }

    /// The platform of a native push token for a Bitwarden `DeviceType`, as Bitwarden's
    /// registration service picks the hub platform: Android → FCM, iOS → APNs. Amazon devices
    /// (ADM) and desktop or browser types have no native push.
    pub fn for_push_token(device_type: u8) -> Result<Self, RegistrationError> {
        match device_type {
            0 => Ok(Platform::Fcm),
            1 => Ok(Platform::Apns),
            15 => Err(RegistrationError::Unsupported(
                "AndroidAmazon (15) devices use Amazon Device Messaging, which pushwarden does not speak",
            )),
            _ => Err(RegistrationError::Unsupported(
                "a pushToken is only meaningful for Android (0) and iOS (1) devices; browsers and UnifiedPush register with webPush",
            )),
        }
    }

    /// The platform of a Web Push subscription: a phone's is a UnifiedPush distributor, anything
    /// else is a browser.
    pub fn for_web_push(device_type: u8) -> Self {
        if ClientType::from_device_type(device_type) == ClientType::Mobile {
            Platform::UnifiedPush
        } else {
            Platform::WebPush
        }
    }
}

impl Provider {
    pub const ALL: [Provider; 3] = [Provider::Apns, Provider::Fcm, Provider::WebPush];

    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Apns => "apns",
            Provider::Fcm => "fcm",
            Provider::WebPush => "webpush",
        }
    }

    pub fn platforms(self) -> &'static [Platform] {
        match self {
            Provider::Apns => &[Platform::Apns],
            Provider::Fcm => &[Platform::Fcm],
            Provider::WebPush => &[Platform::WebPush, Platform::UnifiedPush],
        }
    }
}

/// The address a provider delivers to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Channel {
    /// An APNs device token (hex) or an FCM registration token.
    Token(String),
    /// A Web Push subscription (RFC 8030 endpoint, RFC 8291 keys, base64url).
    WebPush {
        endpoint: String,
        p256dh: String,
        auth: String,
    },
}

impl Channel {
    /// The value that identifies this channel to its provider, for "is it still the same token".
    pub fn address(&self) -> &str {
        match self {
            Channel::Token(t) => t,
            Channel::WebPush { endpoint, .. } => endpoint,
        }
    }
}

/// One registered device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registration {
    /// Bitwarden's `Device.Id` (or, relayed, `{installation}_{device}`).
    pub device_id: String,
    pub platform: Platform,
    pub channel: Channel,
    /// Which APNs gateway an iOS token belongs to.
    pub apns_environment: Option<Environment>,
    pub user_id: String,
    /// `Device.Identifier`: what a notification's `contextId` names, to skip the sender.
    pub identifier: Option<String>,
    pub organization_ids: Vec<String>,
    pub installation_id: Option<String>,
    /// The relayed installation that registered the device; `None` for the local vault server.
    pub owner: Option<String>,
    /// Bitwarden's `DeviceType`.
    pub device_type: u8,
    pub created_ms: i64,
    pub updated_ms: i64,
}

impl Registration {
    pub fn client_type(&self) -> ClientType {
        ClientType::from_device_type(self.device_type)
    }
}

/// Why a registration was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RegistrationError {
    #[error("{0}")]
    Unsupported(&'static str),
    #[error("{0}")]
    Invalid(String),
}

pub fn environment_name(env: Environment) -> &'static str {
    match env {
        Environment::Production => "production",
        Environment::Sandbox => "sandbox",
    }
}

pub fn parse_environment(s: &str) -> Option<Environment> {
    match s.to_ascii_lowercase().as_str() {
        "production" | "prod" => Some(Environment::Production),
        "sandbox" | "development" | "dev" => Some(Environment::Sandbox),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms_follow_device_types() {
        assert_eq!(Platform::for_push_token(0), Ok(Platform::Fcm));
        assert_eq!(Platform::for_push_token(1), Ok(Platform::Apns));
        assert!(Platform::for_push_token(15).is_err());
        assert!(Platform::for_push_token(9).is_err());
        assert_eq!(Platform::for_web_push(0), Platform::UnifiedPush);
        assert_eq!(Platform::for_web_push(2), Platform::WebPush);
        for p in Platform::ALL {
            assert_eq!(Platform::parse(p.as_str()), Some(p));
            assert!(p.provider().platforms().contains(&p));
        }
    }
}
