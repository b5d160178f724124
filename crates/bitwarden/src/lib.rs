//! What Bitwarden's notifications mean, on top of the generic hub.
//!
//! - [`notification`]: the envelope a vault server sends, and where each type goes.
//! - [`payload`]: the payload as each hub protocol carries it.
//! - [`hubs`]: who may open `/hub` and `/anonymous-hub`, and which groups they join.
//! - [`service`]: publishing to the hubs, and the `Heartbeat`.
//! - [`send`]: the `POST /send` ingest endpoint.
//! - [`device_push`]: the `/push/*` API for device registrations and pushes; storing and
//!   delivering them is the push layer's, behind `pushwarden_model::PushGateway`.
//! - [`relay`]: the relay role: installation tokens, callers, id prefixes and limits.

pub mod device_push;
pub mod hubs;
pub mod notification;
pub mod payload;
pub mod relay;
pub mod send;
pub mod service;

pub use hubs::{AnonymousHubAuthenticator, HubPolicy, UserHubAuthenticator};
pub use notification::Notification;
pub use service::{Delivery, Notifications};
