//! Push delivery: how a notification reaches a phone or a browser without Azure.
//!
//! - Providers, each speaking the real protocol with a base URL tests can override:
//!   [`apns`] (HTTP/2, ES256 token auth), [`fcm`] (HTTP v1, service-account OAuth) and
//!   [`webpush`] (RFC 8291 encryption, RFC 8292 VAPID; also UnifiedPush). [`providers`] puts
//!   them behind one call and [`outcome`] phrases every answer as what to do next.
//! - [`registration`]: a registered device, its platform and channel.
//! - [`store`]: the registry and the durable delivery queue (SQLite or PostgreSQL).
//! - [`delivery`]: the worker that drains the queue with retries, backoff and a maximum age.
//! - [`upstream`]: the self-hosted role, forwarding to an upstream relay through an outbox.
//! - [`service`]: all of it behind Bitwarden's push API ([`PushGateway`]) and the relay's
//!   installation directory.
//!
//! [`PushGateway`]: pushwarden_model::PushGateway

pub mod apns;
pub mod backoff;
pub mod delivery;
pub mod fcm;
pub mod health;
pub mod outcome;
pub mod providers;
pub mod registration;
pub mod service;
pub mod store;
pub mod upstream;
pub mod webpush;

pub use delivery::DeliveryOptions;
pub use providers::{Providers, ProvidersConfig, WebPushConfig};
pub use service::PushService;
pub use store::Store;
pub use upstream::{Upstream, UpstreamConfig};
