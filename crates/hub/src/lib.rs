//! The SignalR hub: what happens on a connection once the transport delivers its bytes.
//!
//! - `machine`: one connection's protocol as a state machine without I/O or clock (handshake,
//!   keep-alive and client timeout, stateful reconnect's Ack and Sequence, answers to
//!   invocations); events in, actions out, typed [`CloseReason`]s.
//! - `session`: [`HubSession`], one connection's I/O around its machine: applies the actions
//!   to its outbox, the metrics and the [`Hub`], and delivers fan-out messages without taking
//!   the machine's lock.
//! - `hub`: [`Hub`], the connections of one hub, the users and groups they belong to, the timer
//!   that ticks every connection, and fan-out of a [`SerializedMessage`] to an [`Audience`].
//! - `message`: [`SerializedMessage`], a message encoded once per protocol and shared by every
//!   recipient, and the control messages the hub sends itself.
//! - `endpoint`: [`HubEndpoint`], a hub behind the transports, with an [`Authenticator`]
//!   deciding each connection's [`Identity`] (`identity`).
//! - `options`: [`HubOptions`], timers and limits with ASP.NET Core's defaults.
//! - `metrics`: the hub's Prometheus metrics.
//!
//! Scale-out across processes goes through [`Hub::send`]: a backplane delivers a message to
//! every node, and each node calls `send` for its own connections.

mod endpoint;
mod hub;
mod identity;
mod machine;
mod message;
mod metrics;
mod options;
mod session;

pub use endpoint::{Authenticator, HubEndpoint};
pub use hub::{Audience, Hub};
pub use identity::Identity;
pub use machine::{CloseMessage, CloseReason, HandshakeRefusal, SessionError};
pub use message::SerializedMessage;
pub use metrics::ConnectionTally;
pub use options::HubOptions;
pub use session::HubSession;
