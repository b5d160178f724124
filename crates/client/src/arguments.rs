//! Invocation arguments in either protocol, and their conversion to JSON for printing.
//!
//! MessagePack carries things JSON has no word for; the conversion picks what a reader
//! expects from the JSON protocol of the same server: maps become objects, the timestamp
//! extension (type -1, used by Bitwarden for dates) becomes an RFC 3339 string in UTC,
//! binary becomes base64 (as System.Text.Json writes `byte[]`).

use base64::Engine;
use chrono::{DateTime, SecondsFormat};
use rmpv::Value as Mp;
use serde_json::{Map, Value as Js};

/// The arguments of an invocation, in the value type of the connection's protocol.
#[derive(Clone, Debug, PartialEq)]
pub enum Arguments {
    /// From (or for) a JSON connection.
    Json(Vec<serde_json::Value>),
    /// From (or for) a MessagePack connection.
    MessagePack(Vec<rmpv::Value>),
}

/// MessagePack extension type of timestamps.
const TIMESTAMP_EXT: i8 = -1;

impl Arguments {
    /// The arguments as JSON values (MessagePack ones converted, see the module docs).
    pub fn to_json(&self) -> Vec<serde_json::Value> {
        match self {
            Arguments::Json(values) => values.clone(),
            Arguments::MessagePack(values) => values.iter().map(msgpack_to_json).collect(),
        }
    }

    /// Number of arguments.
    pub fn len(&self) -> usize {
        match self {
            Arguments::Json(values) => values.len(),
            Arguments::MessagePack(values) => values.len(),
        }
    }

    /// Whether there are no arguments.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Converts one MessagePack value to JSON.
pub(crate) fn msgpack_to_json(value: &Mp) -> Js {
    match value {
        Mp::Nil => Js::Null,
        Mp::Boolean(b) => Js::Bool(*b),
        Mp::Integer(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => Js::from(u),
            (None, Some(i)) => Js::from(i),
            // Every MessagePack integer fits u64 or i64; keep a safe fallback anyway.
            (None, None) => Js::Null,
        },
        // NaN and infinities have no JSON form: from_f64 yields None, shown as null.
        Mp::F32(f) => serde_json::Number::from_f64(f64::from(*f)).map_or(Js::Null, Js::Number),
        Mp::F64(f) => serde_json::Number::from_f64(*f).map_or(Js::Null, Js::Number),
        Mp::String(s) => Js::String(match s.as_str() {
            Some(text) => text.to_owned(),
            None => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        }),
        Mp::Binary(bytes) => Js::String(base64::engine::general_purpose::STANDARD.encode(bytes)),
        Mp::Array(items) => Js::Array(items.iter().map(msgpack_to_json).collect()),
        Mp::Map(pairs) => {
            let mut object = Map::new();
            for (key, value) in pairs {
                object.insert(map_key(key), msgpack_to_json(value));
            }
            Js::Object(object)
        }
        Mp::Ext(TIMESTAMP_EXT, data) => match timestamp(data) {
            Some(text) => Js::String(text),
            None => ext_object(TIMESTAMP_EXT, data),
        },
        Mp::Ext(kind, data) => ext_object(*kind, data),
    }
}

/// JSON keys are strings: string keys stay, others are written as their JSON text.
fn map_key(key: &Mp) -> String {
    match msgpack_to_json(key) {
        Js::String(s) => s,
        other => other.to_string(),
    }
}

fn ext_object(kind: i8, data: &[u8]) -> Js {
    let mut object = Map::new();
    object.insert("ext".into(), Js::from(kind));
    object.insert(
        "data".into(),
        Js::String(base64::engine::general_purpose::STANDARD.encode(data)),
    );
    Js::Object(object)
}

/// Decodes the three timestamp layouts of the MessagePack spec (32, 64 and 96 bit) to RFC 3339.
fn timestamp(data: &[u8]) -> Option<String> {
    let (seconds, nanos): (i64, u32) = match data.len() {
        4 => (i64::from(u32::from_be_bytes(data.try_into().ok()?)), 0),
        8 => {
            let raw = u64::from_be_bytes(data.try_into().ok()?);
            ((raw & 0x3_ffff_ffff) as i64, (raw >> 34) as u32)
        }
        12 => {
            let nanos = u32::from_be_bytes(data.get(..4)?.try_into().ok()?);
            let seconds = i64::from_be_bytes(data.get(4..)?.try_into().ok()?);
            (seconds, nanos)
        }
        _ => return None,
    };
    let time = DateTime::from_timestamp(seconds, nanos)?;
    Some(time.to_rfc3339_opts(SecondsFormat::AutoSi, true))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bitwarden_payload_converts() {
        // 2024-01-02T03:04:05.5Z as timestamp 96 (nanos, seconds).
        let mut ts = 500_000_000u32.to_be_bytes().to_vec();
        ts.extend_from_slice(&1_704_164_645i64.to_be_bytes());
        let payload = Mp::Map(vec![
            (Mp::from("ContextId"), Mp::Nil),
            (Mp::from("Type"), Mp::from(11)),
            (
                Mp::from("Payload"),
                Mp::Map(vec![
                    (Mp::from("UserId"), Mp::from("u")),
                    (Mp::from("Date"), Mp::Ext(-1, ts)),
                ]),
            ),
        ]);
        let args = Arguments::MessagePack(vec![payload]);
        assert_eq!(
            args.to_json(),
            vec![json!({
                "ContextId": null,
                "Type": 11,
                "Payload": {"UserId": "u", "Date": "2024-01-02T03:04:05.500Z"}
            })]
        );
    }

    #[test]
    fn timestamp_layouts() {
        assert_eq!(
            timestamp(&0u32.to_be_bytes()).as_deref(),
            Some("1970-01-01T00:00:00Z")
        );
        let raw: u64 = (1u64 << 34) | 60;
        assert_eq!(
            timestamp(&raw.to_be_bytes()).as_deref(),
            Some("1970-01-01T00:01:00.000000001Z")
        );
        assert_eq!(timestamp(&[1, 2, 3]), None);
        let mut huge = 0u32.to_be_bytes().to_vec();
        huge.extend_from_slice(&i64::MAX.to_be_bytes());
        assert_eq!(
            msgpack_to_json(&Mp::Ext(-1, huge.clone())),
            ext_object(-1, &huge)
        );
    }

    #[test]
    fn other_values() {
        let values = Arguments::MessagePack(vec![
            Mp::Binary(vec![1, 2, 3]),
            Mp::F64(f64::NAN),
            Mp::from(-5),
            Mp::Map(vec![(Mp::from(1), Mp::Boolean(true))]),
            Mp::Ext(5, vec![0xff]),
        ]);
        assert_eq!(
            values.to_json(),
            vec![
                json!("AQID"),
                json!(null),
                json!(-5),
                json!({"1": true}),
                json!({"ext": 5, "data": "/w=="})
            ]
        );
        assert_eq!(values.len(), 5);
        assert!(Arguments::Json(vec![]).is_empty());
    }
}
