//! A small SignalR client over WebSockets, for integration tests, `pushwarden listen` and the
//! load generator.
//!
//! It is deliberately lean: one [`HubClient`] is one WebSocket driven by whoever awaits it
//! (no background task), it answers nothing on its own, and it exposes raw sends so tests can
//! misbehave on purpose. Wire formats come from `pushwarden-protocol`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), pushwarden_client::ClientError> {
//! use pushwarden_client::{ClientEvent, ConnectOptions, HubClient};
//!
//! let options = ConnectOptions { access_token: Some("jwt".into()), ..Default::default() };
//! let mut client = HubClient::connect("http://127.0.0.1:8080/notifications/hub", options).await?;
//! while let Some(event) = client.next_event().await? {
//!     if let ClientEvent::Invocation { target, arguments } = event {
//!         println!("{target}: {:?}", arguments.to_json());
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! Layout:
//!
//! - `options`: [`ConnectOptions`], how to connect;
//! - `endpoint`: the negotiate and WebSocket URLs derived from the hub URL;
//! - `negotiate`: the optional `POST {hub}/negotiate` step;
//! - `socket`: opening the WebSocket (TCP connect from a chosen source address, then upgrade);
//! - `client`: [`HubClient`], the handshake and the stream of [`ClientEvent`]s;
//! - `arguments`: [`Arguments`] of an invocation in either protocol;
//! - `error`: [`ClientError`].

mod arguments;
mod client;
mod endpoint;
mod error;
mod negotiate;
mod options;
mod socket;

pub use arguments::Arguments;
pub use client::{ClientEvent, FrameCounts, HubClient};
pub use error::ClientError;
pub use options::ConnectOptions;
pub use pushwarden_protocol::{DecodedMessage, HubMessage, Protocol};
