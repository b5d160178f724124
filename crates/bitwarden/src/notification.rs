//! A notification as a vault server hands it over, and where it goes.
//!
//! The envelope is Bitwarden's `PushNotificationData<T>`: `{type, payload, contextId}` in
//! camelCase (`POST /send`) or PascalCase (the queue), with nulls written or omitted. Routing
//! follows `HubHelpers.SendNotificationToHubAsync` (`src/Notifications/HubHelpers.cs` in
//! bitwarden/server): which payload field selects the user, organization, installation or
//! anonymous group.

use pushwarden_hub::SerializedMessage;
use pushwarden_model::{ClientType, DeviceTarget, PushMessage, PushType, Recipient, Target};
use serde_json::{Map, Value};

use crate::payload::{field, string_field, to_json_protocol, to_msgpack_protocol};

/// How deep a payload may nest (the payload object is level 1). Bitwarden's payloads nest two
/// levels; the hub message that carries one adds four more, and must still decode on every
/// client. Found with the `send` fuzz target's check: an accepted payload 62 levels deep made a
/// MessagePack message our own reader refuses (`depth limit exceeded`), one 124 deep a JSON one.
pub const MAX_PAYLOAD_DEPTH: usize = 32;

/// Nesting depth of a JSON value: 0 for a scalar, 1 for a flat array or object.
fn depth(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Value::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

#[derive(Clone, Debug)]
pub struct Notification {
    pub push_type: PushType,
    pub payload: Map<String, Value>,
    /// The acting device's identifier; clients ignore notifications carrying their own.
    pub context_id: Option<String>,
}

/// Why an envelope was refused. The message names the problem for the sender.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvelopeError {
    #[error("the body is not valid JSON: {0}")]
    Json(String),
    #[error("the body must be a JSON object with type, payload and contextId")]
    NotAnObject,
    #[error("`type` is missing")]
    MissingType,
    #[error("`type` must be an integer push type, got {0}")]
    BadType(String),
    #[error("unknown push type {0}")]
    UnknownType(u64),
    #[error("`payload` must be a JSON object")]
    PayloadNotObject,
    #[error("`contextId` must be a string or null")]
    BadContextId,
    #[error("`payload` nests deeper than {max} levels")]
    TooDeep { max: usize },
    #[error("push type {push_type} ({name}) needs `payload.{field}`")]
    MissingField {
        push_type: u8,
        name: &'static str,
        field: &'static str,
    },
}

impl EnvelopeError {
    /// Short label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            EnvelopeError::Json(_) | EnvelopeError::NotAnObject => "malformed",
            EnvelopeError::MissingType | EnvelopeError::BadType(_) => "bad_type",
            EnvelopeError::UnknownType(_) => "unknown_type",
            EnvelopeError::PayloadNotObject
            | EnvelopeError::BadContextId
            | EnvelopeError::TooDeep { .. } => "malformed",
            EnvelopeError::MissingField { .. } => "missing_field",
        }
    }
}

impl Notification {
    pub fn parse(body: &[u8]) -> Result<Self, EnvelopeError> {
        let value: Value =
            serde_json::from_slice(body).map_err(|e| EnvelopeError::Json(e.to_string()))?;
        let Value::Object(envelope) = value else {
            return Err(EnvelopeError::NotAnObject);
        };
        let push_type = match field(&envelope, "type") {
            None | Some(Value::Null) => return Err(EnvelopeError::MissingType),
            Some(Value::Number(n)) => match n.as_u64() {
                Some(v) => u8::try_from(v)
                    .ok()
                    .and_then(PushType::from_u8)
                    .ok_or(EnvelopeError::UnknownType(v))?,
                None => return Err(EnvelopeError::BadType(n.to_string())),
            },
            Some(other) => return Err(EnvelopeError::BadType(other.to_string())),
        };
        let payload = match field(&envelope, "payload") {
            Some(Value::Object(p)) => p.clone(),
            _ => return Err(EnvelopeError::PayloadNotObject),
        };
        if payload.values().any(|v| depth(v) >= MAX_PAYLOAD_DEPTH) {
            return Err(EnvelopeError::TooDeep {
                max: MAX_PAYLOAD_DEPTH,
            });
        }
        let context_id = match field(&envelope, "contextId") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(EnvelopeError::BadContextId),
        };
        Ok(Self {
            push_type,
            payload,
            context_id,
        })
    }

    /// Who this notification is for, as Bitwarden's push engines target it (user, organization
    /// or installation, optionally narrowed to a client type). Both SignalR routing and device
    /// push start from here.
    pub fn target(&self) -> Result<Target, EnvelopeError> {
        use PushType::*;
        let user = |name: &'static str| self.id_field(name).map(Recipient::User);
        let recipient = match self.push_type {
            SyncCipherUpdate | SyncCipherCreate | SyncLoginDelete | SyncCipherDelete => {
                match (
                    self.optional_id("userId"),
                    self.optional_id("organizationId"),
                ) {
                    (Some(user), _) => Recipient::User(user),
                    (None, Some(org)) => Recipient::Organization(org),
                    (None, None) => return Err(self.missing("userId or organizationId")),
                }
            }
            SyncFolderUpdate | SyncFolderCreate | SyncFolderDelete | SyncCiphers | SyncVault
            | SyncOrganizations | SyncOrgKeys | SyncSettings | LogOut | SyncSendCreate
            | SyncSendUpdate | SyncSendDelete | AuthRequest | RefreshSecurityTasks
            | AutoConfirm | PremiumStatusChanged => user("userId")?,
            // The requesting device listens on the anonymous hub (see `route`); the user's
            // phones are told through push, as `PushAuthRequestResponseAsync` targets the user.
            AuthRequestResponse => user("userId")?,
            SyncOrganizationStatusChanged
            | SyncOrganizationCollectionSettingChanged
            | OrganizationBankAccountVerified
            | PolicyChanged => Recipient::Organization(self.id_field("organizationId")?),
            ProviderBankAccountVerified => user("adminId")?,
            Notification | NotificationStatus => return self.notification_center_target(),
        };
        Ok(Target {
            recipient,
            client_type: None,
        })
    }

    /// The registered devices this notification reaches: its target, minus the sending device.
    pub fn device_target(&self) -> Result<DeviceTarget, EnvelopeError> {
        Ok(DeviceTarget {
            target: self.target()?,
            exclude_identifier: self.context_id.as_deref().map(normalize_id),
        })
    }

    /// What a device push of this notification carries.
    pub fn push_message(&self) -> PushMessage {
        PushMessage {
            push_type: self.push_type,
            payload: Value::Object(self.payload.clone()).to_string(),
            context_id: self.context_id.clone(),
        }
    }

    /// Where this notification goes over SignalR.
    pub fn route(&self) -> Result<Route, EnvelopeError> {
        if self.push_type == PushType::AuthRequestResponse {
            return Ok(Route {
                hub: HubKind::Anonymous,
                audience: Audience::Group(self.id_field("id")?),
                target: "AuthRequestResponseRecieved",
            });
        }
        Ok(Route {
            hub: HubKind::Authenticated,
            audience: hub_audience(&self.target()?),
            target: "ReceiveMessage",
        })
    }

    /// The rule for Notification (20) and NotificationStatus (21): installation, else user,
    /// else organization, each narrowed to a client type unless it is All.
    fn notification_center_target(&self) -> Result<Target, EnvelopeError> {
        let client_type = field(&self.payload, "clientType")
            .and_then(Value::as_u64)
            .and_then(|v| u8::try_from(v).ok())
            .and_then(ClientType::from_u8)
            .filter(|ct| *ct != ClientType::All);
        let recipient = if let Some(installation) = self.optional_id("installationId") {
            Recipient::Installation(installation)
        } else if let Some(user) = self.optional_id("userId") {
            Recipient::User(user)
        } else if let Some(org) = self.optional_id("organizationId") {
            Recipient::Organization(org)
        } else {
            return Err(self.missing("installationId, userId or organizationId"));
        };
        Ok(Target {
            recipient,
            client_type,
        })
    }

    fn optional_id(&self, name: &str) -> Option<String> {
        string_field(&self.payload, name)
            .filter(|s| !s.trim().is_empty())
            .map(normalize_id)
    }

    fn id_field(&self, name: &'static str) -> Result<String, EnvelopeError> {
        self.optional_id(name).ok_or_else(|| self.missing(name))
    }

    fn missing(&self, field: &'static str) -> EnvelopeError {
        EnvelopeError::MissingField {
            push_type: self.push_type.as_u8(),
            name: self.push_type.name(),
            field,
        }
    }

    /// The hub message carrying this notification: one argument `{Type, Payload, ContextId}`.
    pub fn message(&self, target: &str) -> SerializedMessage {
        let json_arg = serde_json::json!({
            "type": self.push_type.as_u8(),
            "payload": to_json_protocol(&Value::Object(self.payload.clone())),
            "contextId": self.context_id,
        });
        let msgpack_arg = rmpv::Value::Map(vec![
            ("Type".into(), rmpv::Value::from(self.push_type.as_u8())),
            (
                "Payload".into(),
                to_msgpack_protocol(&Value::Object(self.payload.clone())),
            ),
            (
                "ContextId".into(),
                self.context_id
                    .as_deref()
                    .map_or(rmpv::Value::Nil, rmpv::Value::from),
            ),
        ]);
        SerializedMessage::invocation(target, vec![json_arg], vec![msgpack_arg])
    }
}

/// Bitwarden formats GUIDs with `Guid.ToString()` (lower case, hyphenated) and SignalR matches
/// user ids and group names exactly, so any GUID spelling a sender uses is brought to that
/// form; other strings are kept as they are.
pub fn normalize_id(id: &str) -> String {
    match uuid::Uuid::parse_str(id.trim()) {
        Ok(u) => u.hyphenated().to_string(),
        Err(_) => id.to_owned(),
    }
}

/// Which of the two hubs a notification goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HubKind {
    /// `/hub`, authenticated users.
    Authenticated,
    /// `/anonymous-hub`, devices waiting for a login-with-device answer.
    Anonymous,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Audience {
    User(String),
    Group(String),
}

/// The SignalR user or group that reaches a target (`HubHelpers`' group names).
pub fn hub_audience(target: &Target) -> Audience {
    match (&target.recipient, target.client_type.map(ClientType::name)) {
        (Recipient::User(u), None) => Audience::User(u.clone()),
        (Recipient::User(u), Some(ct)) => Audience::Group(format!("UserClientType_{u}_{ct}")),
        (Recipient::Organization(o), None) => Audience::Group(format!("Organization_{o}")),
        (Recipient::Organization(o), Some(ct)) => {
            Audience::Group(format!("OrganizationClientType_{o}_{ct}"))
        }
        (Recipient::Installation(i), None) => Audience::Group(format!("Installation_{i}")),
        (Recipient::Installation(i), Some(ct)) => {
            Audience::Group(format!("Installation_ClientType_{i}_{ct}"))
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub hub: HubKind,
    pub audience: Audience,
    /// The client method invoked.
    pub target: &'static str,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const U: &str = "d2ea5b72-1111-4a4a-9f9f-000000000001";
    const O: &str = "aaaaaaaa-2222-4b4b-8e8e-000000000002";
    const I: &str = "bbbbbbbb-3333-4c4c-8d8d-000000000003";

    fn route(body: Value) -> Result<Route, EnvelopeError> {
        Notification::parse(body.to_string().as_bytes())?.route()
    }

    fn user(id: &str) -> Route {
        Route {
            hub: HubKind::Authenticated,
            audience: Audience::User(id.into()),
            target: "ReceiveMessage",
        }
    }

    fn group(name: String) -> Route {
        Route {
            hub: HubKind::Authenticated,
            audience: Audience::Group(name),
            target: "ReceiveMessage",
        }
    }

    /// Regression (the `send` fuzz target's check): a payload nested deeper than the hub
    /// protocols decode was accepted, and its message refused by our own readers.
    #[test]
    fn payloads_nest_only_as_deep_as_every_client_decodes() {
        use pushwarden_protocol::{MessageReader, Protocol};
        let nested = |levels: usize| {
            let inner = format!("{}{}", "[".repeat(levels), "]".repeat(levels));
            format!(r#"{{"type":5,"payload":{{"userId":"{U}","a":{inner}}}}}"#)
        };
        for levels in [62, 124] {
            assert_eq!(
                Notification::parse(nested(levels).as_bytes()).err(),
                Some(EnvelopeError::TooDeep {
                    max: MAX_PAYLOAD_DEPTH
                }),
                "{levels}"
            );
        }
        let deepest = Notification::parse(nested(MAX_PAYLOAD_DEPTH - 1).as_bytes()).unwrap();
        let message = deepest.message(deepest.route().unwrap().target);
        for protocol in [Protocol::Json, Protocol::MessagePack] {
            let mut reader = MessageReader::new(protocol, 1 << 20);
            reader.push(message.bytes(protocol));
            assert!(matches!(reader.next(), Ok(Some(_))), "{protocol:?}");
        }
        assert!(Notification::parse(nested(MAX_PAYLOAD_DEPTH).as_bytes()).is_err());
    }

    #[test]
    fn every_push_type_routes_as_hub_helpers_does() {
        let full =
            json!({"id": I, "userId": U, "organizationId": O, "adminId": U, "providerId": I});
        for t in PushType::ALL {
            let r = route(json!({"type": t.as_u8(), "payload": full, "contextId": null})).unwrap();
            use PushType::*;
            let expected = match t {
                AuthRequestResponse => Route {
                    hub: HubKind::Anonymous,
                    audience: Audience::Group(I.into()),
                    target: "AuthRequestResponseRecieved",
                },
                SyncOrganizationStatusChanged
                | SyncOrganizationCollectionSettingChanged
                | OrganizationBankAccountVerified
                | PolicyChanged => group(format!("Organization_{O}")),
                _ => user(U),
            };
            assert_eq!(r, expected, "type {t:?}");
        }
    }

    #[test]
    fn cipher_without_user_goes_to_the_organization() {
        let r =
            route(json!({"Type": 0, "Payload": {"Id": I, "UserId": null, "OrganizationId": O}}))
                .unwrap();
        assert_eq!(r, group(format!("Organization_{O}")));
        assert!(matches!(
            route(json!({"type": 1, "payload": {"id": I}})),
            Err(EnvelopeError::MissingField { .. })
        ));
    }

    #[test]
    fn notification_center_rule() {
        let r = |p: Value| route(json!({"type": 20, "payload": p})).unwrap();
        assert_eq!(
            r(json!({"installationId": I, "userId": U, "clientType": 0})),
            group(format!("Installation_{I}"))
        );
        assert_eq!(
            r(json!({"installationId": I, "clientType": 2})),
            group(format!("Installation_ClientType_{I}_Browser"))
        );
        assert_eq!(r(json!({"userId": U, "clientType": 0})), user(U));
        assert_eq!(
            r(json!({"userId": U, "clientType": 5})),
            group(format!("UserClientType_{U}_Cli"))
        );
        assert_eq!(
            r(json!({"organizationId": O, "clientType": 1})),
            group(format!("OrganizationClientType_{O}_Web"))
        );
        assert_eq!(
            r(json!({"organizationId": O})),
            group(format!("Organization_{O}"))
        );
        assert!(route(json!({"type": 21, "payload": {"global": true}})).is_err());
    }

    #[test]
    fn guids_are_normalized() {
        let r = route(json!({"type": 11, "payload": {"userId": U.to_uppercase()}})).unwrap();
        assert_eq!(r, user(U));
    }

    #[test]
    fn bad_envelopes_name_the_problem() {
        let parse = |s: &str| Notification::parse(s.as_bytes()).map(|_| ()).unwrap_err();
        assert!(matches!(parse("{"), EnvelopeError::Json(_)));
        assert_eq!(parse("[1]"), EnvelopeError::NotAnObject);
        assert_eq!(parse(r#"{"payload":{}}"#), EnvelopeError::MissingType);
        assert_eq!(
            parse(r#"{"type":"0","payload":{}}"#),
            EnvelopeError::BadType("\"0\"".into())
        );
        assert_eq!(
            parse(r#"{"type":28,"payload":{}}"#),
            EnvelopeError::UnknownType(28)
        );
        assert_eq!(
            parse(r#"{"type":-1,"payload":{}}"#),
            EnvelopeError::BadType("-1".into())
        );
        assert_eq!(parse(r#"{"type":1}"#), EnvelopeError::PayloadNotObject);
        assert_eq!(
            parse(r#"{"type":1,"payload":{},"contextId":5}"#),
            EnvelopeError::BadContextId
        );
    }

    #[test]
    fn message_shapes() {
        let n = Notification::parse(json!({"type": 0, "payload": {"Id": I, "RevisionDate": "2026-11-28T10:00:00Z"}, "contextId": "dev"}).to_string().as_bytes()).unwrap();
        let m = n.message("ReceiveMessage");
        let j = std::str::from_utf8(m.bytes(pushwarden_protocol::Protocol::Json)).unwrap();
        assert!(
            j.contains(r#""arguments":[{"type":0,"payload":{"id":""#),
            "{j}"
        );
        assert!(j.contains(r#""contextId":"dev""#));
        let mut reader = pushwarden_protocol::MessageReader::new(
            pushwarden_protocol::Protocol::MessagePack,
            1 << 16,
        );
        reader.push(m.bytes(pushwarden_protocol::Protocol::MessagePack));
        let Some(pushwarden_protocol::DecodedMessage::MessagePack(
            pushwarden_protocol::HubMessage::Invocation(inv),
        )) = reader.next().unwrap()
        else {
            panic!()
        };
        assert_eq!(inv.target, "ReceiveMessage");
        let arg = inv.arguments[0].as_map().unwrap();
        assert_eq!(arg[0].0, rmpv::Value::from("Type"));
        assert_eq!(arg[2].1, rmpv::Value::from("dev"));
    }
}
