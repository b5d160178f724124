//! Proptest strategies for hub messages in both value types.
#![allow(dead_code)]

use proptest::prelude::*;
use pushwarden_protocol::{CompletionResult, Headers, HubMessage, Invocation};

/// JSON values that survive a text round trip exactly: floats are dyadic with few digits,
/// so any float parser gets them right.
pub fn json_value() -> BoxedStrategy<serde_json::Value> {
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (any::<i32>(), 0u32..4).prop_map(|(m, e)| Value::from(f64::from(m) / f64::from(1u32 << e))),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(any::<String>(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
    .boxed()
}

/// MessagePack values of every kind except NaN floats (NaN != NaN defeats equality checks).
pub fn msgpack_value() -> BoxedStrategy<rmpv::Value> {
    use rmpv::Value;
    let leaf = prop_oneof![
        Just(Value::Nil),
        any::<bool>().prop_map(Value::Boolean),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f32>()
            .prop_filter("no NaN", |f| !f.is_nan())
            .prop_map(Value::F32),
        any::<f64>()
            .prop_filter("no NaN", |f| !f.is_nan())
            .prop_map(Value::F64),
        any::<String>().prop_map(Value::from),
        prop::collection::vec(any::<u8>(), 0..40).prop_map(Value::Binary),
        (any::<i8>(), prop::collection::vec(any::<u8>(), 0..20))
            .prop_map(|(t, d)| Value::Ext(t, d)),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((inner.clone(), inner), 0..6).prop_map(Value::Map),
        ]
    })
    .boxed()
}

fn headers() -> BoxedStrategy<Headers> {
    prop::collection::vec((any::<String>(), any::<String>()), 0..3).boxed()
}

/// Every message type, with values drawn from `value`.
pub fn hub_message<V>(value: BoxedStrategy<V>) -> BoxedStrategy<HubMessage<V>>
where
    V: Clone + std::fmt::Debug + 'static,
{
    let invocation = (
        headers(),
        proptest::option::of(any::<String>()),
        any::<String>(),
        prop::collection::vec(value.clone(), 0..4),
        prop::collection::vec(any::<String>(), 0..3),
    )
        .prop_map(
            |(headers, invocation_id, target, arguments, stream_ids)| Invocation {
                headers,
                invocation_id,
                target,
                arguments,
                stream_ids,
            },
        )
        .boxed();
    let result = prop_oneof![
        Just(CompletionResult::Void),
        value.clone().prop_map(CompletionResult::Value),
        any::<String>().prop_map(CompletionResult::Error),
    ];
    prop_oneof![
        invocation.clone().prop_map(HubMessage::Invocation),
        (headers(), any::<String>(), value).prop_map(|(headers, invocation_id, item)| {
            HubMessage::StreamItem {
                headers,
                invocation_id,
                item,
            }
        }),
        (headers(), any::<String>(), result).prop_map(|(headers, invocation_id, result)| {
            HubMessage::Completion {
                headers,
                invocation_id,
                result,
            }
        }),
        (invocation, any::<String>()).prop_map(|(mut inv, id)| {
            inv.invocation_id = Some(id);
            HubMessage::StreamInvocation(inv)
        }),
        (headers(), any::<String>()).prop_map(|(headers, invocation_id)| {
            HubMessage::CancelInvocation {
                headers,
                invocation_id,
            }
        }),
        Just(HubMessage::Ping),
        (proptest::option::of(any::<String>()), any::<bool>()).prop_map(
            |(error, allow_reconnect)| HubMessage::Close {
                error,
                allow_reconnect
            }
        ),
        any::<u64>().prop_map(|sequence_id| HubMessage::Ack { sequence_id }),
        any::<u64>().prop_map(|sequence_id| HubMessage::Sequence { sequence_id }),
    ]
    .boxed()
}

/// Splits `data` at the given (unsorted, possibly out of range) cut points.
pub fn chunks<'a>(data: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (data.len() + 1)).collect();
    points.push(0);
    points.push(data.len());
    points.sort_unstable();
    points.dedup();
    points.windows(2).map(|w| &data[w[0]..w[1]]).collect()
}
