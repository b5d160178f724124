//! Errors of the decoders.
//!
//! Their `Display` text is meant for people: the server sends it to the client in a Close
//! message or a handshake error, so it says what was wrong without internal jargon.

/// A hub message could not be framed or decoded. The connection should normally be closed,
/// except for [`ProtocolError::UnknownMessageType`], which a peer may choose to skip.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// The message is not valid JSON / MessagePack, or has the wrong shape.
    #[error("Invalid message: {0}")]
    Malformed(String),
    /// A field that this message type needs is absent.
    #[error("Missing required property '{0}'.")]
    MissingField(&'static str),
    /// A field is present but has the wrong type or value.
    #[error("Invalid value for property '{field}': {reason}")]
    InvalidField {
        /// The JSON name of the field (also used for MessagePack positions).
        field: &'static str,
        /// What was expected.
        reason: &'static str,
    },
    /// A Completion carried both a result and an error.
    #[error("The 'error' and 'result' properties are mutually exclusive.")]
    ResultAndError,
    /// The message type is not one this implementation knows. The message itself was
    /// consumed, so a reader may continue after this error.
    #[error("Unknown message type: {0}")]
    UnknownMessageType(u64),
    /// The MessagePack length prefix is not a valid VarInt (more than 5 bytes or over 2 GB).
    #[error("Invalid message length prefix.")]
    InvalidLengthPrefix,
    /// A message exceeds the configured maximum size.
    #[error("The maximum message size of {max} bytes was exceeded.")]
    MessageTooLarge {
        /// The configured limit in bytes.
        max: usize,
    },
}

/// The handshake could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// The handshake is not a JSON object, or has fields of the wrong type.
    #[error("Invalid handshake: {0}")]
    Malformed(String),
    /// A required handshake field is absent.
    #[error("Missing required property '{0}' in the handshake.")]
    MissingField(&'static str),
    /// No record separator was found within the size limit.
    #[error("The handshake exceeded the maximum size of {max} bytes.")]
    TooLarge {
        /// The configured limit in bytes.
        max: usize,
    },
}
