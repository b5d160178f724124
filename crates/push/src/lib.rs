//! Push delivery: how a notification reaches a phone or a browser without Azure.
//!
//! - [`apns`]: Apple's HTTP/2 provider API, ES256 token auth, the Bitwarden iOS payload.
//! - [`fcm`]: Firebase Cloud Messaging HTTP v1, service-account OAuth, data messages.
//! - [`webpush`]: Web Push and UnifiedPush, RFC 8291 encryption and RFC 8292 VAPID.
//! - [`providers`]: the configured providers behind one call.
//! - [`ssrf`]: the addresses a user-supplied endpoint may not reach, before and after DNS.
//! - [`origin`]: per-origin limits and backoff for user-supplied Web Push endpoints.
//! - [`outbound`]: every outbound HTTP client: no environment proxy, capped response bodies.
//! - [`outcome`]: every provider's answer phrased as what the queue does next.
//! - [`health`]: each provider's configuration error, for logs and `/health`.
//! - [`journal`]: recent delivery attempts per device, each provider's last errors and drops
//!   by reason, in memory for the admin page.
//! - [`clock`]: the time the token caches read, which tests move by hand.
//! - [`registration`]: a registered device, its platform and channel.
//! - `accept`: group commit: pushes accepted together are stored in one commit.
//! - [`store`]: SQLite or PostgreSQL, with a handle per concern: registrations, deliveries,
//!   outbox, installations; both queues share its leased-queue SQL.
//! - [`backoff`]: exponential backoff with jitter, never sooner than `Retry-After`.
//! - [`lease`]: the retry-or-expire decision and the claim/work/wait loop both queues run.
//! - [`lanes`]: adaptive concurrency per provider: fewer requests in flight after a 429, more
//!   as pushes are accepted, and a pause for Retry-After that leaves other providers alone.
//! - [`delivery`]: the delivery queue's worker: bounded concurrency per provider, batched settles.
//! - [`upstream`]: the self-hosted role, forwarding to an upstream relay through the outbox.
//! - [`fuzzing`]: the subscription check on arbitrary bytes, for the cargo-fuzz target.
//! - [`service`]: all of it behind Bitwarden's push API ([`PushGateway`]) and the relay's
//!   installation directory.
//!
//! [`PushGateway`]: pushwarden_model::PushGateway

mod accept;
pub mod apns;
pub mod backoff;
pub mod clock;
pub mod delivery;
pub mod fcm;
pub mod fuzzing;
pub mod health;
pub mod journal;
pub mod lanes;
pub mod lease;
pub mod origin;
pub mod outbound;
pub mod outcome;
pub mod providers;
pub mod registration;
pub mod service;
pub mod ssrf;
pub mod store;
pub mod upstream;
pub mod webpush;

pub use delivery::DeliveryOptions;
pub use providers::{Providers, ProvidersConfig, WebPushConfig};
pub use service::PushService;
pub use store::Store;
pub use upstream::{Upstream, UpstreamConfig};
