//! Every push type reaches exactly the connections Bitwarden's `HubHelpers` would send it to
//! (`src/Notifications/HubHelpers.cs` in bitwarden/server), in the argument shape of each hub
//! protocol (camelCase JSON; PascalCase MessagePack as `MessagePackHubProtocol` writes it).
//!
//! One server, installation `INSTALLATION`, and these connections:
//!
//! | name | hub | user | devicetype (ClientType) | organizations | protocol |
//! |---|---|---|---|---|---|
//! | a_web | /hub | A | ChromeBrowser (Web) | orguser [O1] | JSON |
//! | a_mobile | /hub | A | Android (Mobile) | orguser "O1" | MessagePack |
//! | a_cli | /hub | A | LinuxCLI (Cli) | orguser [O1] | JSON |
//! | b | /hub | B | WindowsDesktop (Desktop) | orgowner "O1" | MessagePack |
//! | c | /hub | C | SDK (All) | orgadmin [O2] | JSON |
//! | ext | /hub | D | ChromeExtension (Browser) | none | MessagePack |
//! | anon_r | /anonymous-hub | Token=R | | | MessagePack |
//! | anon_other | /anonymous-hub | Token=R2 | | | JSON |

mod common;

use std::net::SocketAddr;

use chrono::DateTime;
use futures_util::future::join_all;
use pushwarden::server::Server;
use pushwarden_client::{Arguments, HubClient, Protocol};
use serde_json::{json, Map, Value};

use common::*;

const A: &str = "d2ea5b72-1111-4a4a-9f9f-00000000000a";
const B: &str = "d2ea5b72-1111-4a4a-9f9f-00000000000b";
const C: &str = "d2ea5b72-1111-4a4a-9f9f-00000000000c";
const D: &str = "d2ea5b72-1111-4a4a-9f9f-00000000000d";
const O1: &str = "aaaaaaaa-2222-4b4b-8e8e-000000000001";
const O2: &str = "aaaaaaaa-2222-4b4b-8e8e-000000000002";
const R: &str = "cccccccc-4444-4d4d-8c8c-000000000001";
const R2: &str = "cccccccc-4444-4d4d-8c8c-000000000002";
const NOBODY: &str = "eeeeeeee-5555-4e4e-8b8b-000000000000";
const REVISION: &str = "2026-11-28T10:00:00Z";

const A_ALL: &[&str] = &["a_web", "a_mobile", "a_cli"];
const ORG1: &[&str] = &["a_web", "a_mobile", "a_cli", "b"];
const HUB_ALL: &[&str] = &["a_web", "a_mobile", "a_cli", "b", "c", "ext"];
const NONE: &[&str] = &[];

const RECEIVE: &str = "ReceiveMessage";
const AUTH_RESPONSE: &str = "AuthRequestResponseRecieved";

struct Conn {
    name: &'static str,
    client: HubClient,
}

async fn setup() -> (Server, Vec<Conn>) {
    let server = start(config()).await;
    let addr = server.addr;
    let user =
        |sub: &str, devicetype: &str, extra: Value| Some(user_token(sub, Some(devicetype), extra));
    let hub = hub_url(addr);
    let conns = vec![
        Conn {
            name: "a_web",
            client: connect(
                &hub,
                user(A, "ChromeBrowser", json!({"orguser": [O1]})),
                Protocol::Json,
            )
            .await,
        },
        Conn {
            name: "a_mobile",
            client: connect(
                &hub,
                user(A, "Android", json!({"orguser": O1})),
                Protocol::MessagePack,
            )
            .await,
        },
        Conn {
            name: "a_cli",
            client: connect(
                &hub,
                user(A, "LinuxCLI", json!({"orguser": [O1]})),
                Protocol::Json,
            )
            .await,
        },
        Conn {
            name: "b",
            client: connect(
                &hub,
                user(B, "WindowsDesktop", json!({"orgowner": O1})),
                Protocol::MessagePack,
            )
            .await,
        },
        Conn {
            name: "c",
            client: connect(
                &hub,
                user(C, "SDK", json!({"orgadmin": [O2]})),
                Protocol::Json,
            )
            .await,
        },
        Conn {
            name: "ext",
            client: connect(
                &hub,
                user(D, "ChromeExtension", json!({})),
                Protocol::MessagePack,
            )
            .await,
        },
        Conn {
            name: "anon_r",
            client: connect(&anonymous_url(addr, R), None, Protocol::MessagePack).await,
        },
        Conn {
            name: "anon_other",
            client: connect(&anonymous_url(addr, R2), None, Protocol::Json).await,
        },
    ];
    // Group membership is taken when the handshake completes; connect() returned after it.
    assert_eq!(server.notifications.hub().connection_count(), 6);
    assert_eq!(server.notifications.anonymous_hub().connection_count(), 2);
    (server, conns)
}

struct Case {
    label: String,
    push_type: u8,
    /// Payload in camelCase, as the JSON hub protocol must deliver it.
    payload: Value,
    expect: &'static [&'static str],
    target: &'static str,
}

fn case(
    label: impl Into<String>,
    push_type: u8,
    payload: Value,
    expect: &'static [&'static str],
) -> Case {
    Case {
        label: label.into(),
        push_type,
        payload,
        expect,
        target: RECEIVE,
    }
}

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// The payload each push type gets in the per-type sweep: aimed at user A, organization O1,
/// or auth request R.
fn sweep_case(t: u8) -> Case {
    let id = new_id();
    match t {
        16 => Case {
            target: AUTH_RESPONSE,
            ..case(
                "AuthRequestResponse to R",
                t,
                json!({"id": R, "userId": A}),
                &["anon_r"],
            )
        },
        15 => case(
            "AuthRequest to A (not the anonymous hub)",
            t,
            json!({"id": R, "userId": A}),
            A_ALL,
        ),
        18 => case(
            "organization status to O1",
            t,
            json!({"organizationId": O1, "enabled": true, "id": id}),
            ORG1,
        ),
        19 => case(
            "collection settings to O1",
            t,
            json!({"organizationId": O1, "limitCollectionCreation": true,
                   "limitCollectionDeletion": false, "limitItemDeletion": false, "id": id}),
            ORG1,
        ),
        23 => case(
            "bank account verified to O1",
            t,
            json!({"organizationId": O1, "id": id}),
            ORG1,
        ),
        25 => case(
            "policy changed to O1",
            t,
            json!({"organizationId": O1, "id": id, "policy": {
                "id": new_id(), "organizationId": O1, "type": 2, "data": "{\"x\":1}",
                "enabled": true, "creationDate": "2026-01-01T00:00:00Z", "revisionDate": REVISION}}),
            ORG1,
        ),
        24 => case(
            "provider bank account to adminId A",
            t,
            json!({"providerId": new_id(), "adminId": A, "id": id}),
            A_ALL,
        ),
        20 | 21 => case(
            "notification center to A, ClientType All",
            t,
            json!({"id": id, "priority": 2, "global": false, "clientType": 0, "userId": A,
                   "organizationId": null, "installationId": null, "title": "t", "body": "b",
                   "creationDate": REVISION, "revisionDate": REVISION,
                   "readDate": null, "deletedDate": null}),
            A_ALL,
        ),
        _ => case(
            "user push to A",
            t,
            json!({"id": id, "userId": A, "revisionDate": REVISION}),
            A_ALL,
        ),
    }
}

fn special_cases() -> Vec<Case> {
    let id = new_id;
    vec![
        case(
            "org cipher without user reaches the O1 group",
            0,
            json!({"id": id(), "userId": null, "organizationId": O1, "revisionDate": REVISION}),
            ORG1,
        ),
        case(
            "cipher with user and organization goes to the user only",
            2,
            json!({"id": id(), "userId": A, "organizationId": O1, "collectionIds": [id()],
                   "revisionDate": REVISION}),
            A_ALL,
        ),
        case(
            "cipher delete to O2 reaches C only",
            9,
            json!({"id": id(), "organizationId": O2, "revisionDate": REVISION}),
            &["c"],
        ),
        case(
            "organization status to O2 reaches C only",
            18,
            json!({"organizationId": O2, "enabled": false, "id": id()}),
            &["c"],
        ),
        case(
            "upper-case user GUID still reaches A",
            11,
            json!({"userId": A.to_uppercase(), "reason": null, "id": id()}),
            A_ALL,
        ),
        case(
            "a user with no connection reaches nobody",
            11,
            json!({"userId": NOBODY, "id": id()}),
            NONE,
        ),
        Case {
            target: AUTH_RESPONSE,
            ..case(
                "AuthRequestResponse to R2 reaches the other anonymous connection",
                16,
                json!({"id": R2, "userId": A}),
                &["anon_other"],
            )
        },
        case(
            "AuthRequestResponse to an unknown request reaches nobody",
            16,
            json!({"id": NOBODY, "userId": A}),
            NONE,
        ),
        case(
            "installation, ClientType All reaches every /hub connection",
            20,
            json!({"id": id(), "global": true, "clientType": 0, "installationId": INSTALLATION,
                   "revisionDate": REVISION}),
            HUB_ALL,
        ),
        case(
            "installation, ClientType Browser reaches the extension only",
            21,
            json!({"id": id(), "global": true, "clientType": 2, "installationId": INSTALLATION,
                   "revisionDate": REVISION}),
            &["ext"],
        ),
        case(
            "installation, ClientType Desktop reaches B only",
            20,
            json!({"id": id(), "global": true, "clientType": 3, "installationId": INSTALLATION,
                   "userId": A}),
            &["b"],
        ),
        case(
            "another installation reaches nobody",
            20,
            json!({"id": id(), "global": true, "clientType": 0, "installationId": NOBODY}),
            NONE,
        ),
        case(
            "user A, ClientType Cli reaches A's CLI only",
            20,
            json!({"id": id(), "clientType": 5, "userId": A, "revisionDate": REVISION}),
            &["a_cli"],
        ),
        case(
            "user A, ClientType Mobile reaches A's phone only",
            21,
            json!({"id": id(), "clientType": 4, "userId": A, "readDate": REVISION}),
            &["a_mobile"],
        ),
        case(
            "user A, ClientType Browser reaches nobody (A has no extension)",
            20,
            json!({"id": id(), "clientType": 2, "userId": A}),
            NONE,
        ),
        case(
            "organization O2, ClientType All reaches C only",
            20,
            json!({"id": id(), "clientType": 0, "organizationId": O2}),
            &["c"],
        ),
        case(
            "organization O1, ClientType Web reaches A's web vault only",
            21,
            json!({"id": id(), "clientType": 1, "organizationId": O1}),
            &["a_web"],
        ),
        case(
            "organization O2, ClientType Web reaches nobody (C is ClientType All)",
            20,
            json!({"id": id(), "clientType": 1, "organizationId": O2}),
            NONE,
        ),
    ]
}

/// Upper-cases the first letter of every object key, at every depth.
fn pascalize(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let mut chars = k.chars();
                    let key = match chars.next() {
                        Some(first) => first.to_uppercase().chain(chars).collect(),
                        None => String::new(),
                    };
                    (key, pascalize(v))
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(pascalize).collect()),
        other => other.clone(),
    }
}

/// The envelope of case number `i`: even cases as `/send` bodies are (camelCase, null
/// context written), odd ones as queue messages are (PascalCase, null context omitted).
fn envelope(i: usize, case: &Case) -> (Value, Option<String>) {
    let context = (!i.is_multiple_of(3)).then(|| format!("device-{i}"));
    let envelope = if i.is_multiple_of(2) {
        json!({"type": case.push_type, "payload": case.payload, "contextId": context})
    } else {
        let mut e = json!({"Type": case.push_type, "Payload": pascalize(&case.payload)});
        if let Some(c) = &context {
            e["ContextId"] = json!(c);
        }
        e
    };
    (envelope, context)
}

fn sorted_keys<'a>(keys: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut keys: Vec<&str> = keys.collect();
    keys.sort_unstable();
    keys
}

/// Checks the single argument `{Type, Payload, ContextId}` in the connection's protocol.
fn check_argument(
    protocol: Protocol,
    arguments: &Arguments,
    case: &Case,
    context: Option<&str>,
) -> Result<(), String> {
    if arguments.len() != 1 {
        return Err(format!("expected one argument, got {arguments:?}"));
    }
    match (protocol, arguments) {
        (Protocol::Json, Arguments::Json(values)) => {
            let object = values[0].as_object().ok_or("argument is not an object")?;
            let keys = sorted_keys(object.keys().map(String::as_str));
            if keys != ["contextId", "payload", "type"] {
                return Err(format!("JSON argument keys {keys:?}"));
            }
            if object["type"] != json!(case.push_type) {
                return Err(format!("type {} != {}", object["type"], case.push_type));
            }
            if object["contextId"] != json!(context) {
                return Err(format!("contextId {} != {context:?}", object["contextId"]));
            }
            if object["payload"] != case.payload {
                return Err(format!(
                    "JSON payload {} != {}",
                    object["payload"], case.payload
                ));
            }
        }
        (Protocol::MessagePack, Arguments::MessagePack(values)) => {
            let map = values[0].as_map().ok_or("argument is not a map")?;
            let keys = sorted_keys(map.iter().filter_map(|(k, _)| k.as_str()));
            if map.len() != 3 || keys != ["ContextId", "Payload", "Type"] {
                return Err(format!("MessagePack argument keys {:?}", values[0]));
            }
            let get = |name: &str| {
                map.iter()
                    .find(|(k, _)| k.as_str() == Some(name))
                    .map(|(_, v)| v)
            };
            let push_type = get("Type").and_then(rmpv::Value::as_u64);
            if push_type != Some(u64::from(case.push_type)) {
                return Err(format!("Type {:?} != {}", get("Type"), case.push_type));
            }
            let context_ok = match (get("ContextId"), context) {
                (Some(rmpv::Value::Nil), None) => true,
                (Some(v), Some(c)) => v.as_str() == Some(c),
                _ => false,
            };
            if !context_ok {
                return Err(format!("ContextId {:?} != {context:?}", get("ContextId")));
            }
            let payload = get("Payload").ok_or("no Payload")?;
            let as_json = Arguments::MessagePack(vec![payload.clone()]).to_json();
            let expected = pascalize(&case.payload);
            if as_json[0] != expected {
                return Err(format!("MessagePack payload {} != {expected}", as_json[0]));
            }
            // Dates travel as MessagePack timestamps (extension -1), whole seconds in 32 bits.
            if case.payload.get("revisionDate").is_some() {
                let revision = payload
                    .as_map()
                    .and_then(|m| m.iter().find(|(k, _)| k.as_str() == Some("RevisionDate")))
                    .map(|(_, v)| v);
                let secs = DateTime::parse_from_rfc3339(REVISION)
                    .map_err(|e| e.to_string())?
                    .timestamp() as u32;
                let expected = rmpv::Value::Ext(-1, secs.to_be_bytes().to_vec());
                if revision != Some(&expected) {
                    return Err(format!(
                        "RevisionDate {revision:?} is not timestamp {expected}"
                    ));
                }
            }
        }
        (p, a) => return Err(format!("{p:?} connection got {a:?}")),
    }
    Ok(())
}

/// What one connection should see for a case: the invocation if it is in the audience (once),
/// then nothing.
async fn observe(conn: &mut Conn, case: &Case, context: Option<&str>) -> Result<(), String> {
    let protocol = conn.client.protocol();
    if case.expect.contains(&conn.name) {
        let (target, arguments) = try_next_invocation(&mut conn.client, STEP).await?;
        if target != case.target {
            return Err(format!("target {target}, expected {}", case.target));
        }
        check_argument(protocol, &arguments, case, context)?;
    }
    check_nothing(&mut conn.client, QUIET).await
}

async fn run_cases(addr: SocketAddr, conns: &mut [Conn], cases: &[Case]) {
    let mut failures = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let (envelope, context) = envelope(i, case);
        let delivered = send(addr, &envelope).await;
        if delivered != case.expect.len() as u64 {
            failures.push(format!(
                "type {} ({}): /send reported {delivered} deliveries, expected {}",
                case.push_type,
                case.label,
                case.expect.len()
            ));
        }
        let results = join_all(
            conns
                .iter_mut()
                .map(|conn| async { (conn.name, observe(conn, case, context.as_deref()).await) }),
        )
        .await;
        for (name, result) in results {
            if let Err(e) = result {
                failures.push(format!(
                    "type {} ({}), {name}: {e}",
                    case.push_type, case.label
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "routing failures:\n{}",
        failures.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_push_type_reaches_exactly_its_audience() {
    let (server, mut conns) = setup().await;
    let cases: Vec<Case> = (0..=27).map(sweep_case).collect();
    run_cases(server.addr, &mut conns, &cases).await;
    server.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn organization_fallback_client_types_and_anonymous_tokens() {
    let (server, mut conns) = setup().await;
    run_cases(server.addr, &mut conns, &special_cases()).await;
    server.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payload_keys_follow_each_protocol() {
    // A payload sent in one casing arrives camelCase over JSON and PascalCase over
    // MessagePack, nested objects included; acronyms follow System.Text.Json.
    let server = start(config()).await;
    let addr = server.addr;
    let mut json_client = connect_user(addr, A, Some("ChromeBrowser"), Protocol::Json).await;
    let mut msgpack_client = connect_user(addr, A, Some("Android"), Protocol::MessagePack).await;
    let payload = json!({"UserId": A, "ID": "x", "URLValue": 1, "Nested": {"InnerDate": REVISION, "list": [{"Key": true}]}});
    assert_eq!(send(addr, &json!({"Type": 5, "Payload": payload})).await, 2);

    let (_, arguments) = expect_invocation(&mut json_client, STEP).await;
    let argument = &arguments.to_json()[0];
    assert_eq!(
        argument,
        &json!({"type": 5, "payload": {"userId": A, "id": "x", "urlValue": 1,
                "nested": {"innerDate": REVISION, "list": [{"key": true}]}}, "contextId": null})
    );

    let (_, arguments) = expect_invocation(&mut msgpack_client, STEP).await;
    let Arguments::MessagePack(values) = &arguments else {
        panic!("{arguments:?}")
    };
    let map: &Vec<(rmpv::Value, rmpv::Value)> = values[0].as_map().expect("map");
    let payload = &map
        .iter()
        .find(|(k, _)| k.as_str() == Some("Payload"))
        .expect("Payload")
        .1;
    let nested = &payload.as_map().expect("payload map")[3];
    assert_eq!(nested.0.as_str(), Some("Nested"));
    let inner = &nested.1.as_map().expect("nested map")[0];
    assert_eq!(inner.0.as_str(), Some("InnerDate"));
    assert!(
        matches!(&inner.1, rmpv::Value::Ext(-1, data) if data.len() == 4),
        "nested date is a timestamp: {:?}",
        inner.1
    );
    let as_json: Map<String, Value> = arguments.to_json()[0].as_object().cloned().expect("object");
    assert_eq!(
        Value::Object(as_json),
        json!({"Type": 5, "Payload": {"UserId": A, "ID": "x", "URLValue": 1,
               "Nested": {"InnerDate": REVISION, "List": [{"Key": true}]}}, "ContextId": null})
    );
    server.shutdown().await.expect("shutdown");
}
