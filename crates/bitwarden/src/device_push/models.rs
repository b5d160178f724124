//! Bitwarden's push request models: `PushRegistrationRequestModel` (plus `webPush` and
//! `apnsEnvironment`), `PushDeviceRequestModel`, `PushUpdateRequestModel` and
//! `PushSendRequestModel`, in camelCase or PascalCase, old (string id) or new (GUID) forms.

use serde_json::{Map, Value};

use pushwarden_model::{
    ClientType, DeviceRegistration, DeviceTarget, PushChannel, PushMessage, PushType, Recipient,
    Target,
};

use crate::edge::ApiError;
use crate::notification::normalize_id;
use crate::payload::field;

pub(crate) fn parse_object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::BadRequest(
            "the body must be a JSON object".into(),
        )),
        Err(e) => Err(ApiError::BadRequest(format!(
            "the body is not valid JSON: {e}"
        ))),
    }
}

/// A string (or GUID) field; blank counts as absent, as Bitwarden's `Prefix` treats it.
fn optional_string(map: &Map<String, Value>, name: &str) -> Result<Option<String>, ApiError> {
    match field(map, name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(normalize_id(s))),
        Some(_) => Err(ApiError::BadRequest(format!("`{name}` must be a string"))),
    }
}

pub(crate) fn required_string(map: &Map<String, Value>, name: &str) -> Result<String, ApiError> {
    optional_string(map, name)?.ok_or_else(|| ApiError::BadRequest(format!("`{name}` is required")))
}

fn optional_u8(map: &Map<String, Value>, name: &str) -> Result<Option<u8>, ApiError> {
    match field(map, name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .and_then(|v| u8::try_from(v).ok())
            .map(Some)
            .ok_or_else(|| ApiError::BadRequest(format!("`{name}` is out of range: {n}"))),
        Some(_) => Err(ApiError::BadRequest(format!("`{name}` must be a number"))),
    }
}

/// Parses `PushRegistrationRequestModel` (plus `webPush` and `apnsEnvironment`).
pub fn parse_registration(body: &[u8]) -> Result<DeviceRegistration, ApiError> {
    let map = parse_object(body)?;
    let device_type = optional_u8(&map, "type")?
        .ok_or_else(|| ApiError::BadRequest("`type` (the DeviceType) is required".into()))?;
    let token = match field(&map, "pushToken") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.trim().is_empty() => None,
        Some(Value::String(s)) => Some(s.trim().to_owned()),
        Some(_) => return Err(ApiError::BadRequest("`pushToken` must be a string".into())),
    };
    let web_push = match field(&map, "webPush") {
        None | Some(Value::Null) => None,
        Some(Value::Object(sub)) => {
            let part = |name: &str| match field(sub, name) {
                Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.trim().to_owned()),
                _ => Err(ApiError::BadRequest(format!(
                    "`webPush.{name}` is required and must be a string"
                ))),
            };
            Some(PushChannel::WebPush {
                endpoint: part("endpoint")?,
                p256dh: part("p256dh")?,
                auth: part("auth")?,
            })
        }
        Some(_) => {
            return Err(ApiError::BadRequest(
                "`webPush` must be an object {endpoint, p256dh, auth}".into(),
            ))
        }
    };
    let channel = match (token, web_push) {
        (Some(t), None) => PushChannel::Token(t),
        (None, Some(w)) => w,
        (Some(_), Some(_)) => {
            return Err(ApiError::BadRequest(
                "give either `pushToken` or `webPush`, not both".into(),
            ))
        }
        (None, None) => {
            return Err(ApiError::BadRequest(
                "`pushToken` (APNs/FCM) or `webPush` {endpoint, p256dh, auth} is required".into(),
            ))
        }
    };
    let organization_ids = match field(&map, "organizationIds") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|v| match v {
                Value::String(s) if s.trim().is_empty() => None,
                Value::String(s) => Some(Ok(normalize_id(s))),
                _ => Some(Err(ApiError::BadRequest(
                    "`organizationIds` must be an array of strings".into(),
                ))),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(ApiError::BadRequest(
                "`organizationIds` must be an array of strings".into(),
            ))
        }
    };
    Ok(DeviceRegistration {
        device_id: required_string(&map, "deviceId")?,
        user_id: required_string(&map, "userId")?,
        identifier: optional_string(&map, "identifier")?,
        device_type,
        channel,
        organization_ids,
        installation_id: optional_string(&map, "installationId")?
            .filter(|id| id != "00000000-0000-0000-0000-000000000000"),
        apns_environment: optional_string(&map, "apnsEnvironment")?,
        owner: None,
    })
}

/// `PushUpdateRequestModel`: `{devices: [{id}], organizationId}`.
pub(crate) fn parse_update(body: &[u8]) -> Result<(Vec<String>, String), ApiError> {
    let map = parse_object(body)?;
    let organization_id = required_string(&map, "organizationId")?;
    let devices = match field(&map, "devices") {
        Some(Value::Array(items)) => items
            .iter()
            .map(|d| match d {
                Value::Object(d) => required_string(d, "id"),
                _ => Err(ApiError::BadRequest(
                    "`devices` must be an array of {id}".into(),
                )),
            })
            .collect::<Result<Vec<_>, _>>()?,
        _ => {
            return Err(ApiError::BadRequest(
                "`devices` is required: an array of {id}".into(),
            ))
        }
    };
    Ok((devices, organization_id))
}

/// `PushSendRequestModel`: the target (installation, else user, else organization), the
/// sending device to skip, an optional client type, and the notification itself.
pub fn parse_send(body: &[u8]) -> Result<(DeviceTarget, PushMessage), ApiError> {
    let map = parse_object(body)?;
    let type_number = optional_u8(&map, "type")?
        .ok_or_else(|| ApiError::BadRequest("`type` is required".into()))?;
    let push_type = PushType::from_u8(type_number)
        .ok_or_else(|| ApiError::BadRequest(format!("unknown push type {type_number}")))?;
    let payload = match field(&map, "payload") {
        Some(Value::Object(p)) => Value::Object(p.clone()).to_string(),
        _ => {
            return Err(ApiError::BadRequest(
                "`payload` must be a JSON object".into(),
            ))
        }
    };
    let recipient = if let Some(id) = optional_string(&map, "installationId")? {
        Recipient::Installation(id)
    } else if let Some(id) = optional_string(&map, "userId")? {
        Recipient::User(id)
    } else if let Some(id) = optional_string(&map, "organizationId")? {
        Recipient::Organization(id)
    } else {
        return Err(ApiError::BadRequest(
            "one of `userId`, `organizationId` or `installationId` is required".into(),
        ));
    };
    let client_type = match optional_u8(&map, "clientType")? {
        None => None,
        Some(v) => match ClientType::from_u8(v) {
            Some(ClientType::All) => None,
            Some(ct) => Some(ct),
            None => return Err(ApiError::BadRequest(format!("unknown client type {v}"))),
        },
    };
    let identifier = optional_string(&map, "identifier")?;
    Ok((
        DeviceTarget {
            target: Target {
                recipient,
                client_type,
            },
            exclude_identifier: identifier.clone(),
        },
        PushMessage {
            push_type,
            payload,
            context_id: identifier,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use pushwarden_model::Recipient;
    use serde_json::json;

    const U: &str = "d2ea5b72-1111-4a4a-9f9f-000000000001";

    #[test]
    fn registration_models() {
        let r = parse_registration(
            json!({"DeviceId": "dev-1", "PushToken": "tok", "UserId": U.to_uppercase(),
                   "Identifier": "ident", "Type": 0, "OrganizationIds": ["o1", ""],
                   "InstallationId": "00000000-0000-0000-0000-000000000000"})
            .to_string()
            .as_bytes(),
        )
        .unwrap();
        assert_eq!(r.channel, PushChannel::Token("tok".into()));
        assert_eq!(r.user_id, U);
        assert_eq!(r.organization_ids, vec!["o1".to_owned()]);
        assert_eq!(r.installation_id, None);
        let w = parse_registration(
            json!({"deviceId": "d", "userId": U, "type": 9,
                   "webPush": {"endpoint": "https://push.example/x", "p256dh": "k", "auth": "a"}})
            .to_string()
            .as_bytes(),
        )
        .unwrap();
        assert!(matches!(w.channel, PushChannel::WebPush { .. }));
        for bad in [
            json!({"deviceId": "d", "userId": U, "type": 0}),
            json!({"deviceId": "d", "userId": U, "pushToken": "t"}),
            json!({"userId": U, "type": 0, "pushToken": "t"}),
            json!({"deviceId": "d", "userId": U, "type": 0, "pushToken": 5}),
            json!({"deviceId": "d", "userId": U, "type": 300, "pushToken": "t"}),
            json!({"deviceId": "d", "userId": U, "type": 0, "pushToken": "t", "webPush": {"endpoint": "e", "p256dh": "k", "auth": "a"}}),
            json!({"deviceId": "d", "userId": U, "type": 0, "webPush": {"endpoint": "e"}}),
        ] {
            assert!(
                parse_registration(bad.to_string().as_bytes()).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn send_model_picks_installation_then_user_then_organization() {
        let (t, m) = parse_send(
            json!({"userId": U, "organizationId": "o", "identifier": "me", "type": 11,
                   "payload": {"userId": U}, "clientType": 0})
            .to_string()
            .as_bytes(),
        )
        .unwrap();
        assert_eq!(t.target.recipient, Recipient::User(U.into()));
        assert_eq!(t.target.client_type, None);
        assert_eq!(t.exclude_identifier.as_deref(), Some("me"));
        assert_eq!(m.push_type, PushType::LogOut);
        let (t, _) = parse_send(
            json!({"InstallationId": "i", "UserId": U, "Type": 0, "Payload": {}, "ClientType": 4})
                .to_string()
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(t.target.recipient, Recipient::Installation("i".into()));
        assert_eq!(t.target.client_type, Some(ClientType::Mobile));
        for bad in [
            json!({"type": 0, "payload": {}}),
            json!({"userId": U, "payload": {}}),
            json!({"userId": U, "type": 99, "payload": {}}),
            json!({"userId": U, "type": 0, "payload": "x"}),
            json!({"userId": U, "type": 0, "payload": {}, "clientType": 9}),
        ] {
            assert!(parse_send(bad.to_string().as_bytes()).is_err(), "{bad}");
        }
    }
}
