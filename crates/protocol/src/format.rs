//! Names of the hub protocols and the transfer formats they need.

/// A hub protocol, as named in the handshake request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// Text records terminated by 0x1E.
    Json,
    /// Binary messages prefixed by a VarInt length.
    MessagePack,
}

impl Protocol {
    /// The name used in the handshake (`{"protocol":"json"}`).
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Json => "json",
            Protocol::MessagePack => "messagepack",
        }
    }

    /// Looks up a protocol by its handshake name. Names are case-sensitive, as in ASP.NET Core.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "json" => Some(Protocol::Json),
            "messagepack" => Some(Protocol::MessagePack),
            _ => None,
        }
    }

    /// The transfer format the protocol needs: it decides WebSocket frame types and
    /// whether a transport (Server-Sent Events is text only) can carry the protocol.
    pub fn transfer_format(self) -> TransferFormat {
        match self {
            Protocol::Json => TransferFormat::Text,
            Protocol::MessagePack => TransferFormat::Binary,
        }
    }
}

/// A transport-level transfer format, as listed in the negotiate response.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TransferFormat {
    /// UTF-8 text (WebSocket text frames).
    Text,
    /// Arbitrary bytes (WebSocket binary frames).
    Binary,
}

impl TransferFormat {
    /// The exact spelling used in `transferFormats` and in handshake error messages.
    pub fn as_str(self) -> &'static str {
        match self {
            TransferFormat::Text => "Text",
            TransferFormat::Binary => "Binary",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for p in [Protocol::Json, Protocol::MessagePack] {
            assert_eq!(Protocol::from_name(p.name()), Some(p));
        }
        assert_eq!(Protocol::from_name("MessagePack"), None);
        assert_eq!(Protocol::Json.transfer_format().as_str(), "Text");
        assert_eq!(Protocol::MessagePack.transfer_format().as_str(), "Binary");
    }
}
