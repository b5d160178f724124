//! A notification's payload, as received and as each hub protocol carries it.
//!
//! The payload is passed through whole (Bitwarden's hub drops fields when it re-types some
//! payloads; we do not). Only its shape changes per protocol, as ASP.NET Core's serializers
//! would write Bitwarden's C# models:
//! - JSON: property names in camelCase;
//! - MessagePack (contractless resolver): property names in PascalCase, dates as MessagePack
//!   timestamps, GUIDs as strings, enums as integers.

use chrono::{DateTime, NaiveDateTime, Utc};
use serde_json::{Map, Value};

/// A field of a JSON object, looked up case-insensitively (senders use either casing).
pub fn field<'a>(object: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    object.get(name).or_else(|| {
        object
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

/// A string field that is present and not null.
pub fn string_field<'a>(object: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    field(object, name).and_then(Value::as_str)
}

/// `System.Text.Json`'s camelCase policy: lower-case the leading run of capitals, keeping the
/// last one of a run that is followed by a lower-case letter ("ID" → "id", "URLValue" →
/// "urlValue", "UserId" → "userId").
pub fn camel_case(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    if chars.first().is_none_or(|c| !c.is_uppercase()) {
        return name.to_owned();
    }
    let mut out = chars.clone();
    for i in 0..chars.len() {
        if i == 1 && !chars[i].is_uppercase() {
            break;
        }
        let next_is_lower = chars.get(i + 1).is_some_and(|c| !c.is_uppercase());
        if i > 0 && next_is_lower {
            if chars.get(i + 1) == Some(&' ') {
                out[i] = chars[i].to_lowercase().next().unwrap_or(chars[i]);
            }
            break;
        }
        out[i] = chars[i].to_lowercase().next().unwrap_or(chars[i]);
    }
    out.into_iter().collect()
}

/// C# property names start with a capital.
pub fn pascal_case(name: &str) -> String {
    let mut chars = name.chars();
    match chars.next() {
        Some(first) if first.is_lowercase() => first.to_uppercase().chain(chars).collect(),
        _ => name.to_owned(),
    }
}

/// The payload as the JSON hub protocol carries it: object keys in camelCase, at every depth.
pub fn to_json_protocol(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (camel_case(k), to_json_protocol(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(to_json_protocol).collect()),
        other => other.clone(),
    }
}

/// The payload as the MessagePack hub protocol carries it: PascalCase keys, and the values of
/// date properties (C# names ending in `Date`) as timestamps when they parse as dates.
pub fn to_msgpack_protocol(value: &Value) -> rmpv::Value {
    convert(value, false)
}

fn convert(value: &Value, is_date_field: bool) -> rmpv::Value {
    match value {
        Value::Null => rmpv::Value::Nil,
        Value::Bool(b) => rmpv::Value::Boolean(*b),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                rmpv::Value::from(u)
            } else if let Some(i) = n.as_i64() {
                rmpv::Value::from(i)
            } else {
                rmpv::Value::F64(n.as_f64().unwrap_or(0.0))
            }
        }
        Value::String(s) => {
            if is_date_field {
                if let Some(ts) = parse_date(s) {
                    return timestamp(ts);
                }
            }
            rmpv::Value::String(s.clone().into())
        }
        Value::Array(items) => {
            rmpv::Value::Array(items.iter().map(|v| convert(v, false)).collect())
        }
        Value::Object(map) => rmpv::Value::Map(
            map.iter()
                .map(|(k, v)| {
                    let key = pascal_case(k);
                    let date = key.ends_with("Date");
                    (rmpv::Value::String(key.into()), convert(v, date))
                })
                .collect(),
        ),
    }
}

/// Parses the date forms .NET writes and reads: ISO 8601 with an offset or `Z`, or without one
/// (taken as UTC, as Bitwarden's dates are).
pub fn parse_date(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
        return Some(dt.with_timezone(&Utc));
    }
    NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|n| n.and_utc())
}

/// A MessagePack timestamp (extension type -1) in its smallest form, as MessagePack-CSharp
/// writes a `DateTime`.
pub fn timestamp(dt: DateTime<Utc>) -> rmpv::Value {
    let secs = dt.timestamp();
    let nanos = dt.timestamp_subsec_nanos();
    let data = if nanos == 0 && (0..=i64::from(u32::MAX)).contains(&secs) {
        (secs as u32).to_be_bytes().to_vec()
    } else if (0..(1i64 << 34)).contains(&secs) {
        ((u64::from(nanos) << 34) | secs as u64)
            .to_be_bytes()
            .to_vec()
    } else {
        let mut d = nanos.to_be_bytes().to_vec();
        d.extend_from_slice(&secs.to_be_bytes());
        d
    };
    rmpv::Value::Ext(-1, data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn camel_case_follows_system_text_json() {
        assert_eq!(camel_case("UserId"), "userId");
        assert_eq!(camel_case("Id"), "id");
        assert_eq!(camel_case("ID"), "id");
        assert_eq!(camel_case("URLValue"), "urlValue");
        assert_eq!(camel_case("userId"), "userId");
        assert_eq!(camel_case(""), "");
    }

    #[test]
    fn payload_shapes_per_protocol() {
        let payload = json!({"id": "6c5d", "userId": "u", "revisionDate": "2026-11-28T10:00:00Z",
                             "collectionIds": ["a"], "Policy": {"Data": "{\"x\":1}", "CreationDate": "2026-01-01T00:00:00.5"}});
        let j = to_json_protocol(&payload);
        assert_eq!(j["policy"]["data"], "{\"x\":1}");
        assert_eq!(j["revisionDate"], "2026-11-28T10:00:00Z");
        let m = to_msgpack_protocol(&payload);
        let map = m.as_map().unwrap();
        let get = |k: &str| {
            map.iter()
                .find(|(key, _)| key.as_str() == Some(k))
                .map(|(_, v)| v.clone())
        };
        assert_eq!(get("Id"), Some(rmpv::Value::from("6c5d")));
        let secs = DateTime::parse_from_rfc3339("2026-11-28T10:00:00Z")
            .unwrap()
            .timestamp() as u32;
        assert_eq!(
            get("RevisionDate"),
            Some(rmpv::Value::Ext(-1, secs.to_be_bytes().to_vec()))
        );
        let policy = get("Policy").unwrap();
        let policy = policy.as_map().unwrap();
        assert!(
            matches!(&policy[1].1, rmpv::Value::Ext(-1, d) if d.len() == 8),
            "{policy:?}"
        );
        assert_eq!(policy[0].1, rmpv::Value::from("{\"x\":1}"));
    }

    #[test]
    fn non_date_strings_stay_strings() {
        let m = to_msgpack_protocol(
            &json!({"title": "2026-11-28T10:00:00Z", "readDate": "not a date"}),
        );
        let map = m.as_map().unwrap();
        assert_eq!(map[0].1, rmpv::Value::from("2026-11-28T10:00:00Z"));
        assert_eq!(map[1].1, rmpv::Value::from("not a date"));
    }

    #[test]
    fn timestamp_forms() {
        let t = |s: &str| timestamp(parse_date(s).unwrap());
        assert!(
            matches!(t("1970-01-01T00:00:01Z"), rmpv::Value::Ext(-1, d) if d == vec![0, 0, 0, 1])
        );
        assert!(matches!(t("2026-01-01T00:00:00.5Z"), rmpv::Value::Ext(-1, d) if d.len() == 8));
        assert!(matches!(t("1960-01-01T00:00:00Z"), rmpv::Value::Ext(-1, d) if d.len() == 12));
    }
}
