//! The JSON hub protocol: one JSON object per record, each record terminated by 0x1E.
//!
//! Field names are camelCase, their order is free and unknown fields are ignored.
//! The encoder leaves out optional fields that carry no information (no `invocationId`
//! for non-blocking calls, no empty `headers`/`streamIds`, `allowReconnect` only when true)
//! because the .NET and JS peers treat absence as the default.

use std::fmt;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::message::type_ids;
use crate::{CompletionResult, Headers, HubMessage, Invocation, ProtocolError, RECORD_SEPARATOR};

/// Appends one record, separator included, to `out`.
pub fn encode(msg: &HubMessage<Value>, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"type\":");
    out.extend_from_slice(msg.type_id().to_string().as_bytes());
    match msg {
        HubMessage::Invocation(inv) | HubMessage::StreamInvocation(inv) => {
            write_headers(&inv.headers, out);
            if let Some(id) = &inv.invocation_id {
                write_field("invocationId", out);
                write_json_string(id, out);
            }
            write_field("target", out);
            write_json_string(&inv.target, out);
            write_field("arguments", out);
            write_json(&inv.arguments, out);
            if !inv.stream_ids.is_empty() {
                write_field("streamIds", out);
                write_json(&inv.stream_ids, out);
            }
        }
        HubMessage::StreamItem {
            headers,
            invocation_id,
            item,
        } => {
            write_headers(headers, out);
            write_field("invocationId", out);
            write_json_string(invocation_id, out);
            write_field("item", out);
            write_json(item, out);
        }
        HubMessage::Completion {
            headers,
            invocation_id,
            result,
        } => {
            write_headers(headers, out);
            write_field("invocationId", out);
            write_json_string(invocation_id, out);
            match result {
                CompletionResult::Void => {}
                CompletionResult::Value(value) => {
                    write_field("result", out);
                    write_json(value, out);
                }
                CompletionResult::Error(error) => {
                    write_field("error", out);
                    write_json_string(error, out);
                }
            }
        }
        HubMessage::CancelInvocation {
            headers,
            invocation_id,
        } => {
            write_headers(headers, out);
            write_field("invocationId", out);
            write_json_string(invocation_id, out);
        }
        HubMessage::Ping => {}
        HubMessage::Close {
            error,
            allow_reconnect,
        } => {
            if let Some(error) = error {
                write_field("error", out);
                write_json_string(error, out);
            }
            if *allow_reconnect {
                write_field("allowReconnect", out);
                out.extend_from_slice(b"true");
            }
        }
        HubMessage::Ack { sequence_id } | HubMessage::Sequence { sequence_id } => {
            write_field("sequenceId", out);
            out.extend_from_slice(sequence_id.to_string().as_bytes());
        }
    }
    out.push(b'}');
    out.push(RECORD_SEPARATOR);
}

/// Decodes one record, given WITHOUT its separator.
pub fn decode(record: &[u8]) -> Result<HubMessage<Value>, ProtocolError> {
    let raw: RawMessage =
        serde_json::from_slice(record).map_err(|e| ProtocolError::Malformed(e.to_string()))?;
    let kind = raw.kind.ok_or(ProtocolError::MissingField("type"))?;
    let headers = raw.headers.map(|h| h.0).unwrap_or_default();
    let message = match u8::try_from(kind).unwrap_or(u8::MAX) {
        type_ids::INVOCATION => HubMessage::Invocation(Invocation {
            headers,
            invocation_id: raw.invocation_id,
            target: raw.target.ok_or(ProtocolError::MissingField("target"))?,
            arguments: raw
                .arguments
                .ok_or(ProtocolError::MissingField("arguments"))?,
            stream_ids: raw.stream_ids.unwrap_or_default(),
        }),
        type_ids::STREAM_INVOCATION => HubMessage::StreamInvocation(Invocation {
            headers,
            invocation_id: Some(required_id(raw.invocation_id)?),
            target: raw.target.ok_or(ProtocolError::MissingField("target"))?,
            arguments: raw
                .arguments
                .ok_or(ProtocolError::MissingField("arguments"))?,
            stream_ids: raw.stream_ids.unwrap_or_default(),
        }),
        type_ids::STREAM_ITEM => HubMessage::StreamItem {
            headers,
            invocation_id: required_id(raw.invocation_id)?,
            item: raw.item.ok_or(ProtocolError::MissingField("item"))?,
        },
        type_ids::COMPLETION => {
            let result = match (raw.result, raw.error) {
                (Some(_), Some(_)) => return Err(ProtocolError::ResultAndError),
                (Some(value), None) => CompletionResult::Value(value),
                (None, Some(error)) => CompletionResult::Error(error),
                (None, None) => CompletionResult::Void,
            };
            HubMessage::Completion {
                headers,
                invocation_id: required_id(raw.invocation_id)?,
                result,
            }
        }
        type_ids::CANCEL_INVOCATION => HubMessage::CancelInvocation {
            headers,
            invocation_id: required_id(raw.invocation_id)?,
        },
        type_ids::PING => HubMessage::Ping,
        type_ids::CLOSE => HubMessage::Close {
            error: raw.error,
            allow_reconnect: raw.allow_reconnect.unwrap_or(false),
        },
        type_ids::ACK => HubMessage::Ack {
            sequence_id: raw
                .sequence_id
                .ok_or(ProtocolError::MissingField("sequenceId"))?,
        },
        type_ids::SEQUENCE => HubMessage::Sequence {
            sequence_id: raw
                .sequence_id
                .ok_or(ProtocolError::MissingField("sequenceId"))?,
        },
        _ => return Err(ProtocolError::UnknownMessageType(kind)),
    };
    Ok(message)
}

fn required_id(id: Option<String>) -> Result<String, ProtocolError> {
    id.ok_or(ProtocolError::MissingField("invocationId"))
}

/// Every field any message type may carry. Unknown fields are skipped by serde without
/// being materialised.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawMessage {
    #[serde(rename = "type")]
    kind: Option<u64>,
    headers: Option<HeaderMap>,
    invocation_id: Option<String>,
    target: Option<String>,
    arguments: Option<Vec<Value>>,
    stream_ids: Option<Vec<String>>,
    // `item` and `result` may legitimately be `null`: presence is what matters.
    #[serde(default, deserialize_with = "present")]
    item: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    result: Option<Value>,
    error: Option<String>,
    allow_reconnect: Option<bool>,
    sequence_id: Option<u64>,
}

/// Deserializes a field that is present as `Some`, even when its value is `null`.
fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(deserializer).map(Some)
}

/// A `headers` object, kept in input order.
struct HeaderMap(Headers);

impl<'de> Deserialize<'de> for HeaderMap {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct HeaderVisitor;
        impl<'de> Visitor<'de> for HeaderVisitor {
            type Value = HeaderMap;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of string values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<HeaderMap, A::Error> {
                let mut headers = Vec::new();
                while let Some(pair) = map.next_entry::<String, String>()? {
                    headers.push(pair);
                }
                Ok(HeaderMap(headers))
            }
        }
        deserializer.deserialize_map(HeaderVisitor)
    }
}

fn write_field(name: &str, out: &mut Vec<u8>) {
    out.push(b',');
    out.push(b'"');
    out.extend_from_slice(name.as_bytes());
    out.push(b'"');
    out.push(b':');
}

fn write_headers(headers: &Headers, out: &mut Vec<u8>) {
    if headers.is_empty() {
        return;
    }
    write_field("headers", out);
    out.push(b'{');
    for (i, (key, value)) in headers.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_json_string(key, out);
        out.push(b':');
        write_json_string(value, out);
    }
    out.push(b'}');
}

/// Writes a JSON string literal. serde_json escapes control characters, so the output
/// never contains a raw 0x1E that could split the record.
pub(crate) fn write_json_string(s: &str, out: &mut Vec<u8>) {
    write_json(s, out);
}

fn write_json<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) {
    // Writing into a Vec cannot fail, and the values written here (strings, JSON values,
    // vectors of them) always have string map keys, so serialization cannot fail either.
    let _ = serde_json::to_writer(&mut *out, value);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn encoded(msg: &HubMessage<Value>) -> String {
        let mut out = Vec::new();
        encode(msg, &mut out);
        assert_eq!(out.pop(), Some(RECORD_SEPARATOR));
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn invocation_vector() {
        let msg = HubMessage::Invocation(Invocation {
            headers: vec![],
            invocation_id: Some("123".into()),
            target: "Send".into(),
            arguments: vec![json!(42), json!("Test Message")],
            stream_ids: vec![],
        });
        let text = encoded(&msg);
        assert_eq!(
            text,
            r#"{"type":1,"invocationId":"123","target":"Send","arguments":[42,"Test Message"]}"#
        );
        assert_eq!(decode(text.as_bytes()).unwrap(), msg);
    }

    #[test]
    fn non_blocking_invocation_omits_id() {
        let msg = HubMessage::Invocation(Invocation {
            headers: vec![("k".into(), "v".into())],
            invocation_id: None,
            target: "ReceiveMessage".into(),
            arguments: vec![json!({"ContextId": null, "Type": 11})],
            stream_ids: vec!["s1".into()],
        });
        assert_eq!(
            encoded(&msg),
            r#"{"type":1,"headers":{"k":"v"},"target":"ReceiveMessage","arguments":[{"ContextId":null,"Type":11}],"streamIds":["s1"]}"#
        );
    }

    #[test]
    fn field_order_is_free_and_unknown_fields_are_ignored() {
        let msg = decode(
            br#" {"arguments":[1],"x":{"deep":[1,2]},"target":"T","type":1,"invocationId":"7"} "#,
        )
        .unwrap();
        assert_eq!(
            msg,
            HubMessage::Invocation(Invocation {
                headers: vec![],
                invocation_id: Some("7".into()),
                target: "T".into(),
                arguments: vec![json!(1)],
                stream_ids: vec![],
            })
        );
    }

    #[test]
    fn completion_forms() {
        let void = decode(br#"{"type":3,"invocationId":"1"}"#).unwrap();
        assert!(matches!(
            void,
            HubMessage::Completion {
                result: CompletionResult::Void,
                ..
            }
        ));
        let null = decode(br#"{"type":3,"invocationId":"1","result":null}"#).unwrap();
        assert!(matches!(
            null,
            HubMessage::Completion {
                result: CompletionResult::Value(Value::Null),
                ..
            }
        ));
        assert_eq!(
            encoded(&null),
            r#"{"type":3,"invocationId":"1","result":null}"#
        );
        let err = decode(br#"{"type":3,"invocationId":"1","error":"boom"}"#).unwrap();
        assert_eq!(
            encoded(&err),
            r#"{"type":3,"invocationId":"1","error":"boom"}"#
        );
        assert_eq!(
            decode(br#"{"type":3,"invocationId":"1","error":"e","result":1}"#),
            Err(ProtocolError::ResultAndError)
        );
    }

    #[test]
    fn ping_close_ack_sequence() {
        assert_eq!(encoded(&HubMessage::Ping), r#"{"type":6}"#);
        assert_eq!(decode(br#"{"type":6}"#).unwrap(), HubMessage::Ping);
        let close = HubMessage::Close {
            error: None,
            allow_reconnect: false,
        };
        assert_eq!(encoded(&close), r#"{"type":7}"#);
        let close = HubMessage::Close {
            error: Some("bye".into()),
            allow_reconnect: true,
        };
        assert_eq!(
            encoded(&close),
            r#"{"type":7,"error":"bye","allowReconnect":true}"#
        );
        assert_eq!(
            encoded(&HubMessage::Ack { sequence_id: 5 }),
            r#"{"type":8,"sequenceId":5}"#
        );
        assert_eq!(
            decode(br#"{"sequenceId":9,"type":9}"#).unwrap(),
            HubMessage::Sequence { sequence_id: 9 }
        );
    }

    #[test]
    fn errors() {
        assert_eq!(
            decode(br#"{"type":42}"#),
            Err(ProtocolError::UnknownMessageType(42))
        );
        assert_eq!(
            decode(br#"{"type":4000000000000}"#),
            Err(ProtocolError::UnknownMessageType(4_000_000_000_000))
        );
        assert_eq!(
            decode(br#"{"target":"x"}"#),
            Err(ProtocolError::MissingField("type"))
        );
        assert_eq!(
            decode(br#"{"type":1,"arguments":[]}"#),
            Err(ProtocolError::MissingField("target"))
        );
        assert_eq!(
            decode(br#"{"type":2,"item":1}"#),
            Err(ProtocolError::MissingField("invocationId"))
        );
        assert_eq!(
            decode(br#"{"type":8}"#),
            Err(ProtocolError::MissingField("sequenceId"))
        );
        assert!(matches!(
            decode(b"{\"type\":1"),
            Err(ProtocolError::Malformed(_))
        ));
        assert!(matches!(
            decode(br#"{"type":"1"}"#),
            Err(ProtocolError::Malformed(_))
        ));
        assert!(matches!(
            decode(br#"{"type":6,"headers":{"a":1}}"#),
            Err(ProtocolError::Malformed(_))
        ));
        assert!(matches!(
            decode(&[0xff, 0xfe]),
            Err(ProtocolError::Malformed(_))
        ));
    }

    #[test]
    fn control_characters_are_escaped() {
        let msg = HubMessage::Close {
            error: Some("a\u{1e}b".into()),
            allow_reconnect: false,
        };
        let mut out = Vec::new();
        encode(&msg, &mut out);
        assert_eq!(out.iter().filter(|&&b| b == RECORD_SEPARATOR).count(), 1);
    }
}
