//! The MessagePack hub protocol: each message is a MessagePack array, framed by a VarInt
//! length prefix (see [`write_varint`]).
//!
//! Layouts (element 2 is always the headers map, except for Ping, Close, Ack, Sequence):
//!
//! | type | array |
//! |---|---|
//! | Invocation | `[1, Headers, InvocationId or nil, Target, [Args], [StreamIds]]` |
//! | StreamItem | `[2, Headers, InvocationId, Item]` |
//! | Completion | `[3, Headers, InvocationId, ResultKind (1 error, 2 void, 3 value), Result?]` |
//! | StreamInvocation | `[4, Headers, InvocationId, Target, [Args], [StreamIds]]` |
//! | CancelInvocation | `[5, Headers, InvocationId]` |
//! | Ping | `[6]` |
//! | Close | `[7, Error or nil, AllowReconnect]` |
//! | Ack / Sequence | `[8, SequenceId]` / `[9, SequenceId]` |
//!
//! The decoder is lenient where real peers differ: the trailing StreamIds and AllowReconnect
//! elements are optional (older writers omit them) and extra trailing elements are skipped,
//! as the .NET reader does. It is strict about bytes after the array, since the framing gives
//! every message its exact length.

use rmpv::Value;

use crate::message::type_ids;
use crate::{CompletionResult, Headers, HubMessage, Invocation, ProtocolError};

pub use crate::varint::write_varint;

/// Nesting limit for argument values; keeps recursion (and so stack use) small on any input.
const MAX_DEPTH: usize = 128;

/// Completion result kinds.
const RESULT_ERROR: u64 = 1;
const RESULT_VOID: u64 = 2;
const RESULT_VALUE: u64 = 3;

/// Appends one framed message (VarInt length prefix + body) to `out`.
pub fn encode(msg: &HubMessage<Value>, out: &mut Vec<u8>) {
    let start = out.len();
    encode_body(msg, out);
    let mut prefix = Vec::with_capacity(crate::varint::MAX_PREFIX_LEN);
    write_varint(out.len() - start, &mut prefix);
    out.splice(start..start, prefix);
}

/// Appends the body of one message, without the length prefix.
pub fn encode_body(msg: &HubMessage<Value>, out: &mut Vec<u8>) {
    // Every write below goes into a Vec, which cannot fail; the results are ignored on purpose.
    match msg {
        HubMessage::Invocation(inv) | HubMessage::StreamInvocation(inv) => {
            let _ = rmp::encode::write_array_len(out, 6);
            write_type(msg, out);
            write_headers(&inv.headers, out);
            match &inv.invocation_id {
                Some(id) => write_str(id, out),
                None => write_nil(out),
            }
            write_str(&inv.target, out);
            let _ = rmp::encode::write_array_len(out, len_u32(inv.arguments.len()));
            for argument in &inv.arguments {
                write_value(argument, out);
            }
            let _ = rmp::encode::write_array_len(out, len_u32(inv.stream_ids.len()));
            for id in &inv.stream_ids {
                write_str(id, out);
            }
        }
        HubMessage::StreamItem {
            headers,
            invocation_id,
            item,
        } => {
            let _ = rmp::encode::write_array_len(out, 4);
            write_type(msg, out);
            write_headers(headers, out);
            write_str(invocation_id, out);
            write_value(item, out);
        }
        HubMessage::Completion {
            headers,
            invocation_id,
            result,
        } => {
            let len = if matches!(result, CompletionResult::Void) {
                4
            } else {
                5
            };
            let _ = rmp::encode::write_array_len(out, len);
            write_type(msg, out);
            write_headers(headers, out);
            write_str(invocation_id, out);
            match result {
                CompletionResult::Error(error) => {
                    write_uint(RESULT_ERROR, out);
                    write_str(error, out);
                }
                CompletionResult::Void => write_uint(RESULT_VOID, out),
                CompletionResult::Value(value) => {
                    write_uint(RESULT_VALUE, out);
                    write_value(value, out);
                }
            }
        }
        HubMessage::CancelInvocation {
            headers,
            invocation_id,
        } => {
            let _ = rmp::encode::write_array_len(out, 3);
            write_type(msg, out);
            write_headers(headers, out);
            write_str(invocation_id, out);
        }
        HubMessage::Ping => {
            let _ = rmp::encode::write_array_len(out, 1);
            write_type(msg, out);
        }
        HubMessage::Close {
            error,
            allow_reconnect,
        } => {
            // Always three elements, like the .NET writer.
            let _ = rmp::encode::write_array_len(out, 3);
            write_type(msg, out);
            match error {
                Some(error) => write_str(error, out),
                None => write_nil(out),
            }
            let _ = rmp::encode::write_bool(out, *allow_reconnect);
        }
        HubMessage::Ack { sequence_id } | HubMessage::Sequence { sequence_id } => {
            let _ = rmp::encode::write_array_len(out, 2);
            write_type(msg, out);
            write_uint(*sequence_id, out);
        }
    }
}

/// Decodes one message body, given WITHOUT its length prefix.
pub fn decode(body: &[u8]) -> Result<HubMessage<Value>, ProtocolError> {
    let mut input = body;
    let len = rmp::decode::read_array_len(&mut input)
        .map_err(|_| ProtocolError::Malformed("a message must be a MessagePack array".into()))?;
    let mut elements = Elements {
        input,
        remaining: len,
    };
    let message = decode_elements(&mut elements)?;
    elements.finish()?;
    Ok(message)
}

fn decode_elements(el: &mut Elements<'_>) -> Result<HubMessage<Value>, ProtocolError> {
    let kind = match el.next("type")? {
        Value::Integer(n) => n.as_u64().ok_or(ProtocolError::InvalidField {
            field: "type",
            reason: "expected a positive integer",
        })?,
        _ => {
            return Err(ProtocolError::InvalidField {
                field: "type",
                reason: "expected an integer",
            })
        }
    };
    let message = match u8::try_from(kind).unwrap_or(u8::MAX) {
        type_ids::INVOCATION => {
            let headers = headers(el.next("headers")?)?;
            let invocation_id = match el.next("invocationId")? {
                Value::Nil => None,
                other => Some(string(other, "invocationId")?),
            };
            HubMessage::Invocation(invocation_rest(el, headers, invocation_id)?)
        }
        type_ids::STREAM_INVOCATION => {
            let headers = headers(el.next("headers")?)?;
            let invocation_id = string(el.next("invocationId")?, "invocationId")?;
            HubMessage::StreamInvocation(invocation_rest(el, headers, Some(invocation_id))?)
        }
        type_ids::STREAM_ITEM => HubMessage::StreamItem {
            headers: headers(el.next("headers")?)?,
            invocation_id: string(el.next("invocationId")?, "invocationId")?,
            item: el.next("item")?,
        },
        type_ids::COMPLETION => {
            let headers = headers(el.next("headers")?)?;
            let invocation_id = string(el.next("invocationId")?, "invocationId")?;
            let result_kind = el.next("resultKind")?.as_u64();
            let result = match result_kind {
                Some(RESULT_ERROR) => CompletionResult::Error(string(el.next("error")?, "error")?),
                Some(RESULT_VOID) => CompletionResult::Void,
                Some(RESULT_VALUE) => CompletionResult::Value(el.next("result")?),
                _ => {
                    return Err(ProtocolError::InvalidField {
                        field: "resultKind",
                        reason: "expected 1 (error), 2 (void) or 3 (value)",
                    })
                }
            };
            HubMessage::Completion {
                headers,
                invocation_id,
                result,
            }
        }
        type_ids::CANCEL_INVOCATION => HubMessage::CancelInvocation {
            headers: headers(el.next("headers")?)?,
            invocation_id: string(el.next("invocationId")?, "invocationId")?,
        },
        type_ids::PING => HubMessage::Ping,
        type_ids::CLOSE => {
            let error = match el.next("error")? {
                Value::Nil => None,
                other => Some(string(other, "error")?),
            };
            let allow_reconnect = match el.next_optional()? {
                None | Some(Value::Nil) => false,
                Some(Value::Boolean(b)) => b,
                Some(_) => {
                    return Err(ProtocolError::InvalidField {
                        field: "allowReconnect",
                        reason: "expected a boolean",
                    })
                }
            };
            HubMessage::Close {
                error,
                allow_reconnect,
            }
        }
        type_ids::ACK => HubMessage::Ack {
            sequence_id: sequence_id(el.next("sequenceId")?)?,
        },
        type_ids::SEQUENCE => HubMessage::Sequence {
            sequence_id: sequence_id(el.next("sequenceId")?)?,
        },
        _ => return Err(ProtocolError::UnknownMessageType(kind)),
    };
    Ok(message)
}

/// Target, arguments and optional stream ids, shared by both invocation kinds.
fn invocation_rest(
    el: &mut Elements<'_>,
    headers: Headers,
    invocation_id: Option<String>,
) -> Result<Invocation<Value>, ProtocolError> {
    let target = string(el.next("target")?, "target")?;
    let arguments = match el.next("arguments")? {
        Value::Array(arguments) => arguments,
        _ => {
            return Err(ProtocolError::InvalidField {
                field: "arguments",
                reason: "expected an array",
            })
        }
    };
    let stream_ids = match el.next_optional()? {
        None | Some(Value::Nil) => Vec::new(),
        Some(Value::Array(ids)) => ids
            .into_iter()
            .map(|id| string(id, "streamIds"))
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(ProtocolError::InvalidField {
                field: "streamIds",
                reason: "expected an array",
            })
        }
    };
    Ok(Invocation {
        headers,
        invocation_id,
        target,
        arguments,
        stream_ids,
    })
}

/// Walks the elements of the message array, never trusting the declared count beyond
/// the bytes actually present.
struct Elements<'a> {
    input: &'a [u8],
    remaining: u32,
}

impl Elements<'_> {
    /// The next element; it is required for this message type.
    fn next(&mut self, field: &'static str) -> Result<Value, ProtocolError> {
        self.next_optional()?
            .ok_or(ProtocolError::MissingField(field))
    }

    /// The next element, or `None` if the array has no more.
    fn next_optional(&mut self) -> Result<Option<Value>, ProtocolError> {
        if self.remaining == 0 {
            return Ok(None);
        }
        self.remaining -= 1;
        rmpv::decode::read_value_with_max_depth(&mut self.input, MAX_DEPTH)
            .map(Some)
            .map_err(|e| ProtocolError::Malformed(e.to_string()))
    }

    /// Skips elements this version does not use, then requires the body to be exhausted.
    fn finish(mut self) -> Result<(), ProtocolError> {
        while self.next_optional()?.is_some() {}
        if self.input.is_empty() {
            Ok(())
        } else {
            Err(ProtocolError::Malformed(
                "unexpected bytes after the message".into(),
            ))
        }
    }
}

fn string(value: Value, field: &'static str) -> Result<String, ProtocolError> {
    match value {
        Value::String(s) => s.into_str().ok_or(ProtocolError::InvalidField {
            field,
            reason: "invalid UTF-8",
        }),
        _ => Err(ProtocolError::InvalidField {
            field,
            reason: "expected a string",
        }),
    }
}

fn headers(value: Value) -> Result<Headers, ProtocolError> {
    match value {
        Value::Map(pairs) => pairs
            .into_iter()
            .map(|(key, value)| Ok((string(key, "headers")?, string(value, "headers")?)))
            .collect(),
        _ => Err(ProtocolError::InvalidField {
            field: "headers",
            reason: "expected a map",
        }),
    }
}

fn sequence_id(value: Value) -> Result<u64, ProtocolError> {
    value.as_u64().ok_or(ProtocolError::InvalidField {
        field: "sequenceId",
        reason: "expected a non-negative integer",
    })
}

fn write_type(msg: &HubMessage<Value>, out: &mut Vec<u8>) {
    write_uint(u64::from(msg.type_id()), out);
}

fn write_headers(headers: &Headers, out: &mut Vec<u8>) {
    let _ = rmp::encode::write_map_len(out, len_u32(headers.len()));
    for (key, value) in headers {
        write_str(key, out);
        write_str(value, out);
    }
}

fn write_str(s: &str, out: &mut Vec<u8>) {
    let _ = rmp::encode::write_str(out, s);
}

fn write_nil(out: &mut Vec<u8>) {
    let _ = rmp::encode::write_nil(out);
}

fn write_uint(n: u64, out: &mut Vec<u8>) {
    let _ = rmp::encode::write_uint(out, n);
}

fn write_value(value: &Value, out: &mut Vec<u8>) {
    let _ = rmpv::encode::write_value(out, value);
}

/// MessagePack counts are 32-bit; a larger collection cannot be framed anyway (2 GB limit).
fn len_u32(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(msg: &HubMessage<Value>) -> Vec<u8> {
        let mut out = Vec::new();
        encode(msg, &mut out);
        out
    }

    fn fixstr(s: &str) -> Vec<u8> {
        let mut v = vec![0xa0 | s.len() as u8];
        v.extend_from_slice(s.as_bytes());
        v
    }

    #[test]
    fn ping_is_three_bytes() {
        assert_eq!(framed(&HubMessage::Ping), [0x02, 0x91, 0x06]);
        assert_eq!(decode(&[0x91, 0x06]), Ok(HubMessage::Ping));
    }

    #[test]
    fn bitwarden_push_invocation() {
        // [1, {}, nil, "ReceiveMessage", [{"Type": 11}]] as Vaultwarden writes it (5 elements) ...
        let mut five = vec![0x95, 0x01, 0x80, 0xc0];
        five.extend(fixstr("ReceiveMessage"));
        five.extend([0x91, 0x81]);
        five.extend(fixstr("Type"));
        five.push(0x0b);
        let msg = decode(&five).unwrap();
        let expected = HubMessage::Invocation(Invocation {
            headers: vec![],
            invocation_id: None,
            target: "ReceiveMessage".into(),
            arguments: vec![Value::Map(vec![(Value::from("Type"), Value::from(11))])],
            stream_ids: vec![],
        });
        assert_eq!(msg, expected);
        // ... and as we write it: six elements with an empty StreamIds array, like .NET.
        let mut six = five.clone();
        six[0] = 0x96;
        six.push(0x90);
        let mut prefixed = vec![six.len() as u8];
        prefixed.extend(&six);
        assert_eq!(framed(&expected), prefixed);
    }

    #[test]
    fn completion_vectors() {
        // Error: [3, {}, "xyz", 1, "Error"]
        let mut error = vec![0x95, 0x03, 0x80];
        error.extend(fixstr("xyz"));
        error.push(0x01);
        error.extend(fixstr("Error"));
        let msg = decode(&error).unwrap();
        assert_eq!(
            msg,
            HubMessage::Completion {
                headers: vec![],
                invocation_id: "xyz".into(),
                result: CompletionResult::Error("Error".into())
            }
        );
        assert_eq!(framed(&msg)[1..], error[..]);
        // Void: [3, {}, "xyz", 2]
        let mut void = vec![0x94, 0x03, 0x80];
        void.extend(fixstr("xyz"));
        void.push(0x02);
        let msg = decode(&void).unwrap();
        assert!(matches!(
            msg,
            HubMessage::Completion {
                result: CompletionResult::Void,
                ..
            }
        ));
        assert_eq!(framed(&msg)[1..], void[..]);
        // Value: [3, {}, "xyz", 3, 42]
        let mut value = vec![0x95, 0x03, 0x80];
        value.extend(fixstr("xyz"));
        value.extend([0x03, 0x2a]);
        let msg = decode(&value).unwrap();
        assert!(
            matches!(&msg, HubMessage::Completion { result: CompletionResult::Value(v), .. } if v.as_u64() == Some(42))
        );
        // A value completion without the value is malformed.
        let mut missing = value.clone();
        missing[0] = 0x94;
        missing.pop();
        missing.pop();
        missing.push(0x03);
        assert_eq!(decode(&missing), Err(ProtocolError::MissingField("result")));
    }

    #[test]
    fn close_forms() {
        let msg = HubMessage::Close {
            error: None,
            allow_reconnect: false,
        };
        assert_eq!(framed(&msg), [0x04, 0x93, 0x07, 0xc0, 0xc2]);
        assert_eq!(decode(&[0x92, 0x07, 0xc0]), Ok(msg));
        let mut with_error = vec![0x93, 0x07];
        with_error.extend(fixstr("bye"));
        with_error.push(0xc3);
        assert_eq!(
            decode(&with_error),
            Ok(HubMessage::Close {
                error: Some("bye".into()),
                allow_reconnect: true
            })
        );
    }

    #[test]
    fn ack_sequence_headers() {
        assert_eq!(
            framed(&HubMessage::Ack { sequence_id: 1 }),
            [0x03, 0x92, 0x08, 0x01]
        );
        assert_eq!(
            decode(&[0x92, 0x09, 0xcd, 0x01, 0x00]),
            Ok(HubMessage::Sequence { sequence_id: 256 })
        );
        let mut cancel = vec![0x93, 0x05, 0x81];
        cancel.extend(fixstr("k"));
        cancel.extend(fixstr("v"));
        cancel.extend(fixstr("1"));
        assert_eq!(
            decode(&cancel),
            Ok(HubMessage::CancelInvocation {
                headers: vec![("k".into(), "v".into())],
                invocation_id: "1".into()
            })
        );
    }

    #[test]
    fn errors() {
        assert_eq!(
            decode(&[0x91, 0x2a]),
            Err(ProtocolError::UnknownMessageType(42))
        );
        assert_eq!(
            decode(&[0x91, 0xcc, 0xff]),
            Err(ProtocolError::UnknownMessageType(255))
        );
        assert!(matches!(decode(&[]), Err(ProtocolError::Malformed(_))));
        assert!(matches!(decode(&[0x06]), Err(ProtocolError::Malformed(_))));
        assert_eq!(decode(&[0x90]), Err(ProtocolError::MissingField("type")));
        assert!(matches!(
            decode(&[0x91, 0xff]),
            Err(ProtocolError::InvalidField { .. })
        ));
        assert!(matches!(
            decode(&[0x91, 0x06, 0x00]),
            Err(ProtocolError::Malformed(_))
        ));
        // Extra elements are skipped.
        assert_eq!(decode(&[0x93, 0x06, 0xc0, 0x01]), Ok(HubMessage::Ping));
        // A huge declared count with no data behind it fails without allocating.
        assert!(decode(&[0xdd, 0xff, 0xff, 0xff, 0xff, 0x06]).is_err());
        assert!(decode(&[0x92, 0x01, 0xdf, 0xff, 0xff, 0xff, 0xff]).is_err());
        assert!(decode(&[0x92, 0x02, 0xc6, 0xff, 0xff, 0xff, 0xff]).is_err());
        // Invalid UTF-8 in a target.
        let bad = [0x95, 0x01, 0x80, 0xc0, 0xa1, 0xff, 0x90];
        assert!(matches!(
            decode(&bad),
            Err(ProtocolError::InvalidField {
                field: "target",
                ..
            })
        ));
    }
}
