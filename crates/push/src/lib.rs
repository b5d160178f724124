//! Push providers: how a notification reaches a phone or a browser without Azure.
//!
//! - [`webpush`]: RFC 8291 message encryption and RFC 8292 VAPID, for browsers and UnifiedPush
//!   distributors.
//! - [`apns`]: Apple Push Notification service over HTTP/2 with token (ES256) authentication.
//! - [`fcm`]: Firebase Cloud Messaging HTTP v1 with a service account.
//!
//! Each provider speaks the real protocol and takes its base URL from configuration, so tests
//! point it at an in-process fake. The device registry, the durable delivery queue and routing
//! from `/send` build on these (issue: push gateway). Each provider reports its own `Outcome`
//! (delivered, gone, retry after, permanent); the delivery queue will want one shared type.

pub mod apns;
pub mod fcm;
pub mod webpush;
