//! Fakes of the push providers pushwarden talks to: APNs, FCM HTTP v1 (with Google's OAuth
//! token endpoint) and an RFC 8030 Web Push service.
//!
//! Neither Apple, Google nor the browsers' push services offer an emulator, and a fake that accepts
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
//!
//! Layout:
//!
//! - [`apns`], [`fcm`], [`webpush`]: one fake per provider, each checking what that service
//!   checks;
//! - `server`: the HTTP/1.1 and HTTP/2 (prior knowledge) server under every fake;
//! - `jwt`: signature checks the fakes share (each checks its own claims);
//! - `record`: what a fake saw ([`Received`], [`Event`]); `script`: scripted answers ([`Reply`]).

/// The accessors every fake shares: where it listens, what it received and refused, and how to
/// slow or stop it. Each fake keeps a `server` and a `state.recorder`.
macro_rules! fake_common {
    ($fake:ty) => {
        impl $fake {
            /// Base URL, e.g. `http://127.0.0.1:41234`: the endpoint override for pushwarden
            /// (and, for Web Push, the origin VAPID tokens name).
            pub fn url(&self) -> String {
                self.server.url()
            }

            pub fn addr(&self) -> std::net::SocketAddr {
                self.server.addr()
            }

            /// Accepted pushes so far, in arrival order (Web Push: decrypted).
            pub fn received(&self) -> Vec<$crate::Received> {
                self.state.recorder.received()
            }

            /// Waits until at least `n` pushes were accepted, or `timeout` passed; returns what
            /// arrived.
            pub async fn wait_for(
                &self,
                n: usize,
                timeout: std::time::Duration,
            ) -> Vec<$crate::Received> {
                self.state.recorder.wait_for(n, timeout).await
            }

            /// Push requests seen, including refused and scripted ones (FCM: not counting its
            /// token endpoint).
            pub fn requests(&self) -> usize {
                self.state.recorder.requests()
            }

            /// Push requests for one token (Web Push: one subscription id), valid or not.
            pub fn requests_for(&self, token: &str) -> usize {
                self.state.recorder.requests_for(token)
            }

            /// Why requests were refused for breaking the protocol, e.g.
            /// `403 InvalidProviderToken: kid "X" is not ...`.
            pub fn rejections(&self) -> Vec<String> {
                self.state.recorder.rejections()
            }

            /// A live feed of accepted, refused and scripted pushes.
            pub fn events(&self) -> tokio::sync::broadcast::Receiver<$crate::Event> {
                self.state.recorder.events()
            }

            /// TCP connections accepted so far (a well-behaved client keeps one open).
            pub fn connections(&self) -> usize {
                self.server.stats().connections()
            }

            /// Connections whose requests were HTTP/1.x (FCM: its token endpoint's too).
            /// Together with [`Self::http2_connections`] this is every connection that carried
            /// at least one request.
            pub fn http1_connections(&self) -> usize {
                self.server.stats().http1_connections()
            }

            /// Connections whose requests were HTTP/2 (prior knowledge), each carrying any
            /// number of concurrent streams.
            pub fn http2_connections(&self) -> usize {
                self.server.stats().http2_connections()
            }

            /// The most requests that were being answered at the same moment (FCM: its token
            /// endpoint's included), across all connections.
            pub fn max_concurrent_requests(&self) -> usize {
                self.server.stats().max_in_flight()
            }

            /// Holds every push answer back by `delay`, so that concurrent requests overlap.
            pub fn set_delay(&self, delay: std::time::Duration) {
                self.state.recorder.set_delay(delay);
            }

            /// Stops listening and closes open connections; dropping the fake does the same.
            pub fn shutdown(&self) {
                self.server.shutdown();
            }
        }
    };
}
pub(crate) use fake_common;

pub mod apns;
pub mod fcm;
mod jwt;
mod record;
mod script;
mod server;
pub mod webpush;

pub use record::{Event, Received};
pub use script::Reply;
