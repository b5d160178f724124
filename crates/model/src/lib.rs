//! The vocabulary that the `bitwarden` layer (what a notification means) and the `push` layer
//! (delivering to devices) share, so that neither imports the other:
//!
//! - [`push_type`]: Bitwarden's `PushType` 0–27.
//! - [`client_type`]: Bitwarden's `ClientType`, and how a device type maps to it.
//! - [`target`]: whom a notification is for: a user, an organization or an installation,
//!   optionally narrowed to one client type.
//! - [`device`]: a device registration, the devices a push goes to, and what a push carries.
//! - [`gateway`]: the traits the push layer implements and the bitwarden layer calls (the
//!   device registry and push queue, the relay's installations), with their error type.
//!
//! Pure data and traits: no I/O, no HTTP, no storage.

pub mod client_type;
pub mod device;
pub mod gateway;
pub mod push_type;
pub mod target;

pub use client_type::ClientType;
pub use device::{DeviceRegistration, DeviceTarget, PushChannel, PushMessage};
pub use gateway::{BoxFuture, GatewayError, InstallationDirectory, PushGateway, SecretVerdict};
pub use push_type::PushType;
pub use target::{Recipient, Target};
