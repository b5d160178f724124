//! The SignalR hub: what happens on a connection once the transport delivers its bytes.
//!
//! - [`HubSession`] runs one connection: handshake, incoming hub messages, keep-alive timers,
//!   stateful-reconnect sequence numbers.
//! - [`Hub`] holds the connections of one hub, the users and groups they belong to, and fans
//!   a [`SerializedMessage`] out to an [`Audience`] (encoded once per protocol, shared by all).
//! - [`HubEndpoint`] puts a hub behind the transports, with an [`Authenticator`] deciding each
//!   connection's [`Identity`].
//!
//! Scale-out across processes goes through [`Hub::send`]: a backplane delivers a message to
//! every node, and each node calls `send` for its own connections.

mod endpoint;
mod hub;
mod identity;
mod message;
mod metrics;
mod options;
mod session;

pub use endpoint::{Authenticator, HubEndpoint};
pub use hub::{Audience, Hub};
pub use identity::Identity;
pub use message::SerializedMessage;
pub use options::HubOptions;
pub use session::HubSession;
