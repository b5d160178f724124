//! The handshake that opens every SignalR connection.
//!
//! The client sends `{"protocol":"json"|"messagepack","version":N}` followed by 0x1E; the
//! server answers `{}` + 0x1E, or `{"error":"..."}` + 0x1E and closes. The handshake is always
//! JSON text, whatever hub protocol it selects, and hub messages may follow it in the same
//! transport frame, so the parsers report how many bytes they consumed.

use serde::Deserialize;

use crate::{HandshakeError, RECORD_SEPARATOR};

/// What the client asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandshakeRequest {
    /// Hub protocol name, e.g. `"messagepack"` (see [`crate::Protocol::from_name`]).
    pub protocol: String,
    /// Protocol version. JS clients send 2 only when they negotiated stateful reconnect.
    pub version: u32,
}

/// What the server answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandshakeResponse {
    /// `None` when the handshake succeeded.
    pub error: Option<String>,
}

#[derive(Deserialize)]
struct RawRequest {
    protocol: Option<String>,
    version: Option<u32>,
}

#[derive(Deserialize)]
struct RawResponse {
    error: Option<String>,
}

/// Looks for a complete handshake request (JSON text ending in 0x1E) at the start of `buf`.
///
/// `Ok(None)`: need more bytes (and `buf.len() <= max_len`). `Ok(Some((req, consumed)))`:
/// `consumed` includes the separator; bytes after it are hub messages. `Err`: malformed JSON,
/// missing or invalid fields, or no separator within `max_len` bytes (the JSON text itself may
/// be up to `max_len` bytes long).
pub fn parse_request(
    buf: &[u8],
    max_len: usize,
) -> Result<Option<(HandshakeRequest, usize)>, HandshakeError> {
    // A first message that is not a JSON object (a hub message sent before the handshake,
    // say) can never become a handshake: refuse it now rather than at the timeout.
    if let Some(&first) = buf.iter().find(|b| !b.is_ascii_whitespace()) {
        if first != b'{' {
            return Err(HandshakeError::Malformed(
                "the first message must be the JSON handshake request".into(),
            ));
        }
    }
    // Only look at the window the limit allows, so a flood without a separator is
    // rejected as soon as it is too long rather than when it ends.
    let window = &buf[..buf.len().min(max_len.saturating_add(1))];
    let Some(end) = find_separator(window) else {
        return if buf.len() > max_len {
            Err(HandshakeError::TooLarge { max: max_len })
        } else {
            Ok(None)
        };
    };
    let raw: RawRequest = serde_json::from_slice(&window[..end])
        .map_err(|e| HandshakeError::Malformed(e.to_string()))?;
    let protocol = raw
        .protocol
        .ok_or(HandshakeError::MissingField("protocol"))?;
    let version = raw.version.ok_or(HandshakeError::MissingField("version"))?;
    Ok(Some((HandshakeRequest { protocol, version }, end + 1)))
}

/// Encodes a handshake request, separator included.
pub fn encode_request(protocol: &str, version: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(48);
    out.extend_from_slice(b"{\"protocol\":");
    crate::json::write_json_string(protocol, &mut out);
    out.extend_from_slice(b",\"version\":");
    out.extend_from_slice(version.to_string().as_bytes());
    out.push(b'}');
    out.push(RECORD_SEPARATOR);
    out
}

/// Encodes a handshake response: `{}` + 0x1E on success, else `{"error":"..."}` + 0x1E.
pub fn encode_response(error: Option<&str>) -> Vec<u8> {
    match error {
        None => vec![b'{', b'}', RECORD_SEPARATOR],
        Some(message) => {
            let mut out = Vec::with_capacity(message.len() + 16);
            out.extend_from_slice(b"{\"error\":");
            crate::json::write_json_string(message, &mut out);
            out.push(b'}');
            out.push(RECORD_SEPARATOR);
            out
        }
    }
}

/// Looks for a complete handshake response at the start of `buf`; used by clients.
///
/// `Ok(None)`: need more bytes. `Ok(Some((resp, consumed)))`: `consumed` includes the
/// separator. Unknown fields (newer servers add `minorVersion`) are ignored. The caller
/// bounds how much it buffers.
pub fn parse_response(buf: &[u8]) -> Result<Option<(HandshakeResponse, usize)>, HandshakeError> {
    let Some(end) = find_separator(buf) else {
        return Ok(None);
    };
    let raw: RawResponse = serde_json::from_slice(&buf[..end])
        .map_err(|e| HandshakeError::Malformed(e.to_string()))?;
    Ok(Some((HandshakeResponse { error: raw.error }, end + 1)))
}

fn find_separator(buf: &[u8]) -> Option<usize> {
    buf.iter().position(|&b| b == RECORD_SEPARATOR)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn success_response_is_braces_and_separator() {
        assert_eq!(encode_response(None), b"{}\x1e");
        assert_eq!(encode_response(None), [0x7b, 0x7d, 0x1e]);
    }

    #[test]
    fn error_response_is_escaped() {
        let bytes = encode_response(Some("The protocol 'x\"y' is not supported."));
        assert_eq!(
            bytes,
            b"{\"error\":\"The protocol 'x\\\"y' is not supported.\"}\x1e"
        );
        let (resp, used) = parse_response(&bytes).unwrap().unwrap();
        assert_eq!(used, bytes.len());
        assert_eq!(
            resp.error.as_deref(),
            Some("The protocol 'x\"y' is not supported.")
        );
    }

    #[test]
    fn request_with_trailing_messages() {
        let mut buf = encode_request("messagepack", 1);
        assert_eq!(buf, b"{\"protocol\":\"messagepack\",\"version\":1}\x1e");
        let handshake_len = buf.len();
        buf.extend_from_slice(&[0x02, 0x91, 0x06]);
        let (req, used) = parse_request(&buf, 1024).unwrap().unwrap();
        assert_eq!(
            req,
            HandshakeRequest {
                protocol: "messagepack".into(),
                version: 1
            }
        );
        assert_eq!(used, handshake_len);
    }

    #[test]
    fn field_order_and_unknown_fields() {
        let buf = b" {\"version\":2, \"extra\":[1], \"protocol\":\"json\"} \x1e";
        let (req, _) = parse_request(buf, 1024).unwrap().unwrap();
        assert_eq!(
            req,
            HandshakeRequest {
                protocol: "json".into(),
                version: 2
            }
        );
    }

    #[test]
    fn partial_request_needs_more() {
        let full = encode_request("json", 1);
        for cut in 0..full.len() {
            assert_eq!(parse_request(&full[..cut], 1024), Ok(None));
        }
    }

    #[test]
    fn size_limit() {
        let full = encode_request("json", 1);
        let body = full.len() - 1;
        assert!(parse_request(&full, body).unwrap().is_some());
        assert_eq!(
            parse_request(&full, body - 1),
            Err(HandshakeError::TooLarge { max: body - 1 })
        );
        assert_eq!(parse_request(&full[..body], body), Ok(None));
    }

    #[test]
    fn invalid_requests() {
        assert!(matches!(
            parse_request(b"nope\x1e", 99),
            Err(HandshakeError::Malformed(_))
        ));
        assert_eq!(
            parse_request(b"{\"version\":1}\x1e", 99),
            Err(HandshakeError::MissingField("protocol"))
        );
        assert_eq!(
            parse_request(b"{\"protocol\":\"json\"}\x1e", 99),
            Err(HandshakeError::MissingField("version"))
        );
        assert!(parse_request(b"{\"protocol\":1,\"version\":1}\x1e", 99).is_err());
        assert!(parse_request(b"{\"protocol\":\"json\",\"version\":-1}\x1e", 99).is_err());
        assert!(parse_request(b"[]\x1e", 99).is_err());
    }

    #[test]
    fn response_ignores_unknown_fields() {
        let (resp, used) = parse_response(b"{\"minorVersion\":1}\x1erest")
            .unwrap()
            .unwrap();
        assert_eq!(resp.error, None);
        assert_eq!(used, 19);
        assert_eq!(parse_response(b"{}"), Ok(None));
    }

    #[test]
    fn a_hub_message_before_the_handshake_is_refused_at_once() {
        // A MessagePack Ping (varint 2, [6]) has no record separator: without the early check
        // the server would wait for the handshake timeout.
        assert!(matches!(
            parse_request(&[0x02, 0x91, 0x06], 1024),
            Err(HandshakeError::Malformed(_))
        ));
        assert!(parse_request(b"  {\"protocol\":", 1024).unwrap().is_none());
    }
}
