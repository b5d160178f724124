//! What Bitwarden's notifications mean, on top of the generic hub, and the HTTP API that
//! carries them.
//!
//! - [`notification`]: the envelope a vault server sends, and where each type goes.
//! - [`payload`]: the payload as each hub protocol carries it.
//! - [`hubs`]: who may open `/hub` and `/anonymous-hub`, and which groups they join.
//! - [`service`]: publishing to the hubs, and the `Heartbeat`.
//! - [`send`]: the `POST /send` ingest endpoint.
//! - [`device_push`]: the `/push/*` API for device registrations and pushes; storing and
//!   delivering them is the push layer's, behind `pushwarden_model::PushGateway`.
//! - [`relay`]: the relay role: installation tokens (`tokens`), per-installation limits
//!   (`limits`), the `/connect/token` endpoint (`token_endpoint`), and who calls the push API
//!   ([`relay::Caller`], with its id prefixes).
//! - [`edge`]: the HTTP edge. Every handler above answers failures with [`ApiError`], whose one
//!   mapping gives the status, the JSON body and `WWW-Authenticate`/`Retry-After`; the hubs'
//!   refusals come from the same mapping.
//! - [`fuzzing`]: the request decoders on arbitrary bytes, for the cargo-fuzz targets (`fuzz/`)
//!   and the proptests.

pub mod device_push;
pub mod edge;
pub mod fuzzing;
pub mod hubs;
pub mod notification;
pub mod payload;
pub mod relay;
pub mod send;
pub mod service;

pub use edge::ApiError;
pub use hubs::{AnonymousHubAuthenticator, HubPolicy, UserHubAuthenticator};
pub use notification::Notification;
pub use service::{Delivery, Notifications};
