//! Fakes of the push providers pushwarden talks to: APNs, FCM HTTP v1 (with Google's OAuth
//! token endpoint) and an RFC 8030 Web Push service.
//!
//! None of the providers offers an emulator (spec: push-providers §6), and a fake that accepts
//! anything proves nothing, so each fake refuses what the real service refuses: a bad signature,
//! a stale token, a wrong topic or audience, a missing header, a malformed message. A request
//! that passes every check is recorded as a [`Received`] and answered the way the provider
//! answers success, unless a test [scripted](apns::FakeApns::script) another answer for that
//! token. Refused requests are kept as readable reasons ([`apns::FakeApns::rejections`]) so a
//! failing test says what the client got wrong.
//!
//! The same fakes run stand-alone as the `pushwarden-fake` binary, which prints every accepted
//! push, so a person can watch pushwarden deliver without any Apple or Google account.
//!
//! Each fake serves on its own port (127.0.0.1:0 unless an address is given) and stops when it
//! is dropped or [shut down](apns::FakeApns::shutdown).

pub mod apns;
pub mod fcm;
mod jwt;
mod record;
mod script;
mod server;
pub mod webpush;

pub use record::{Event, Received};
pub use script::Reply;
