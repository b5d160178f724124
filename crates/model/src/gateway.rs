//! The seams between the bitwarden layer, which parses and authorizes requests, and the push
//! layer, which stores registrations and installations and delivers pushes. The push layer
//! implements these traits; the app hands the implementation to the bitwarden layer.

use std::future::Future;
use std::pin::Pin;

use crate::device::{DeviceRegistration, DeviceTarget, PushMessage};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a gateway call failed, in terms the caller can act on.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GatewayError {
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

/// Stores registrations and delivers pushes.
pub trait PushGateway: Send + Sync + 'static {
    /// Creates or replaces a registration; answers the platform name it was filed under. An
    /// owner may hold at most `max_owned` registrations.
    fn register(
        &self,
        device: DeviceRegistration,
        max_owned: Option<u64>,
    ) -> BoxFuture<'_, Result<String, GatewayError>>;
    /// Removes a registration; answers whether one existed.
    fn delete(&self, device_id: String) -> BoxFuture<'_, Result<bool, GatewayError>>;
    /// Tags devices with an organization; answers how many registrations changed.
    fn add_organization(
        &self,
        device_ids: Vec<String>,
        organization_id: String,
    ) -> BoxFuture<'_, Result<u64, GatewayError>>;
    /// Removes an organization tag; answers how many registrations changed.
    fn delete_organization(
        &self,
        device_ids: Vec<String>,
        organization_id: String,
    ) -> BoxFuture<'_, Result<u64, GatewayError>>;
    /// Stores one push for every matching device before answering how many it was queued for.
    fn send(
        &self,
        target: DeviceTarget,
        message: PushMessage,
    ) -> BoxFuture<'_, Result<u64, GatewayError>>;
}

/// What checking an installation's credentials found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecretVerdict {
    /// The key is right; tokens minted now belong to this key generation.
    Valid {
        key_generation: i64,
    },
    Unknown,
    Disabled,
    WrongSecret,
}

/// Where the relay's installations are kept.
pub trait InstallationDirectory: Send + Sync + 'static {
    fn check_secret(
        &self,
        id: String,
        secret: String,
    ) -> BoxFuture<'_, Result<SecretVerdict, GatewayError>>;
    /// The installation's current key generation, or `None` when it is unknown or disabled.
    /// Checked on every relay request against the generation a token was minted in, so that
    /// rotating or disabling a key takes effect before its tokens expire.
    fn key_generation(&self, id: String) -> BoxFuture<'_, Result<Option<i64>, GatewayError>>;
}
