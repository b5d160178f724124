//! The SignalR wire protocol, without any I/O.
//!
//! This crate turns bytes into SignalR messages and back. It knows nothing about sockets,
//! tasks or time, so the server, the test client and the fuzzers all share the same code
//! and every decoder can be exercised with plain byte slices.
//!
//! * [`handshake`]: the JSON handshake that opens every connection.
//! * [`json`] and [`msgpack`]: the two hub protocols, one message at a time.
//! * [`MessageReader`]: splits a byte stream into messages and enforces the size limit.
//! * [`negotiate`]: the HTTP negotiate exchange that may precede the connection.
//!
//! Decoders never panic and never trust a length they have not checked; see [`fuzzing`].

mod error;
mod format;
pub mod fuzzing;
pub mod handshake;
pub mod json;
mod message;
pub mod msgpack;
pub mod negotiate;
mod reader;
mod varint;

pub use error::{HandshakeError, ProtocolError};
pub use format::{Protocol, TransferFormat};
pub use message::{CompletionResult, Headers, HubMessage, Invocation};
pub use reader::{DecodedMessage, MessageReader};

/// Terminates every JSON record, including the handshake in both protocols (ASCII "record separator").
pub const RECORD_SEPARATOR: u8 = 0x1e;
