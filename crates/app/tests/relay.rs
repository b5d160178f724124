//! The push relay: installations, `/connect/token`, the relay API under installation tokens,
//! isolation and limits; and the self-hosted side forwarding to an upstream relay.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::providers::{call_as, health, ok, only, queued, token, wait_pending, Providers, WAIT};
use common::{http, start, SEND_KEY};
use pushwarden::server::Server;
use pushwarden_auth::Minter;
use pushwarden_push::store::now_ms;
use serde_json::{json, Value};

const RELAY_SECRET: &str = "relay-test-token-secret";
const U: &str = "d2ea5b72-1111-4a4a-9f9f-000000000001";
const ORG: &str = "aaaaaaaa-2222-4b4b-8e8e-000000000002";
/// How long "nothing more arrives" is watched for.
const QUIET: Duration = Duration::from_millis(400);

async fn relay(p: &Providers) -> Server {
    let mut c = p.config();
    c.relay.token_secret = Some(RELAY_SECRET.into());
    start(c).await
}

async fn installation(server: &Server) -> (String, String) {
    let (i, key) = server
        .push
        .store()
        .installations()
        .create(Some("ops@example.com"), now_ms())
        .await
        .expect("installation");
    (i.id, key)
}

/// `POST {path}` form-encoded, as Bitwarden's and Vaultwarden's token requests are.
async fn token_request(addr: SocketAddr, path: &str, form: &[(&str, &str)]) -> (u16, Value) {
    let body = form
        .iter()
        .map(|(k, v)| {
            format!(
                "{k}={}",
                form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>()
            )
        })
        .collect::<Vec<_>>()
        .join("&");
    let response = http()
        .post(format!("http://{addr}{path}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .expect("token request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn installation_token(addr: SocketAddr, id: &str, key: &str) -> String {
    let client_id = format!("installation.{id}");
    let (status, answer) = token_request(
        addr,
        "/connect/token",
        &[
            ("grant_type", "client_credentials"),
            ("scope", "api.push"),
            ("client_id", &client_id),
            ("client_secret", key),
        ],
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["token_type"], "Bearer");
    assert_eq!(answer["scope"], "api.push");
    assert_eq!(answer["expires_in"], 86400);
    answer["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned()
}

async fn as_installation(
    server: &Server,
    bearer: &str,
    method: &str,
    path: &str,
    body: Value,
) -> Value {
    let (status, answer) = call_as(server, Some(bearer), method, path, body.clone()).await;
    assert_eq!(status, 200, "{method} {path} {body}: {answer}");
    answer
}

fn payload_of(value: &Value) -> Value {
    serde_json::from_str(value.as_str().expect("payload string")).expect("payload JSON")
}

#[tokio::test]
async fn bitwardens_relay_client_sequence_reaches_the_phone() {
    let p = Providers::start().await;
    let server = relay(&p).await;
    let (id, key) = installation(&server).await;
    let bearer = installation_token(server.addr, &id, &key).await;
    let phone = token('a');
    // RelayPushRegistrationService.CreateOrUpdateRegistrationAsync (camelCase, nulls included).
    as_installation(
        &server,
        &bearer,
        "POST",
        "/push/register",
        json!({"deviceId": "11111111-aaaa-4aaa-8aaa-000000000001", "identifier": "phone-ident",
               "pushToken": phone, "type": 0, "userId": U, "organizationIds": [],
               "installationId": id}),
    )
    .await;
    // RelayPushEngine: a SyncVault for the user, sent from the web vault (no identifier).
    let answer = as_installation(
        &server,
        &bearer,
        "POST",
        "/push/send",
        json!({"userId": U, "organizationId": null, "deviceId": null, "identifier": null,
               "type": 5, "payload": {"userId": U, "date": "2026-11-28T10:00:00Z"},
               "clientType": null, "installationId": null}),
    )
    .await;
    assert_eq!(answer["queued"], 1);
    let got = only(p.fcm.wait_for(1, WAIT).await, 1);
    assert_eq!(got[0].token, phone);
    assert_eq!(got[0].body["data"]["type"], "5");
    assert_eq!(
        payload_of(&got[0].body["data"]["payload"])["userId"],
        U,
        "the payload as the vault server sent it"
    );
    // Organization membership, then an organization push.
    as_installation(
        &server,
        &bearer,
        "PUT",
        "/push/add-organization",
        json!({"devices": [{"id": "11111111-aaaa-4aaa-8aaa-000000000001"}], "organizationId": ORG}),
    )
    .await;
    let answer = as_installation(
        &server,
        &bearer,
        "POST",
        "/api/push/send",
        json!({"organizationId": ORG, "type": 17, "payload": {"organizationId": ORG}}),
    )
    .await;
    assert_eq!(answer["queued"], 1);
    only(p.fcm.wait_for(2, WAIT).await, 2);
    // An installation-wide push.
    let answer = as_installation(
        &server,
        &bearer,
        "POST",
        "/push/send",
        json!({"installationId": id, "type": 20, "payload": {"installationId": id}}),
    )
    .await;
    assert_eq!(answer["queued"], 1);
    // PascalCase and the delete model.
    let answer = as_installation(
        &server,
        &bearer,
        "POST",
        "/push/delete",
        json!({"Id": "11111111-aaaa-4aaa-8aaa-000000000001"}),
    )
    .await;
    assert_eq!(answer["deleted"], true);
    let answer = as_installation(
        &server,
        &bearer,
        "POST",
        "/push/send",
        json!({"UserId": U, "Type": 5, "Payload": {"UserId": U}}),
    )
    .await;
    assert_eq!(answer["queued"], 0);
    wait_pending(&server, 0).await;
    server.shutdown().await.expect("shutdown");
}

/// Vaultwarden's push client (`src/api/push.rs`), request by request, over HTTPS as it insists:
/// `PUSH_RELAY_URI` and `PUSH_IDENTITY_URI` must be `https://`.
struct Vaultwarden {
    client: reqwest::Client,
    relay_uri: String,
    identity_uri: String,
    bearer: Option<String>,
}

impl Vaultwarden {
    async fn post(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.relay_uri))
            .bearer_auth(self.bearer.as_deref().unwrap_or_default());
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("relay request");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

#[tokio::test]
async fn vaultwardens_push_client_sequence_reaches_the_iphone_but_not_the_sender() {
    let p = Providers::start().await;
    let (cert, key_file) = self_signed(&p.dir);
    let mut c = p.config();
    c.relay.token_secret = Some(RELAY_SECRET.into());
    c.tls.cert_file = Some(cert.clone());
    c.tls.key_file = Some(key_file);
    let server = start(c).await;
    let (id, key) = installation(&server).await;
    let client = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(&cert).expect("cert")).expect("pem"),
        )
        .resolve("localhost", server.addr)
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    let base = format!("https://localhost:{}", server.addr.port());
    let mut vw = Vaultwarden {
        client,
        relay_uri: base.clone(),
        // The EU template's identity URI has a path (`https://identity.bitwarden.eu`); ours
        // answers at /identity/connect/token as well as /connect/token.
        identity_uri: format!("{base}/identity"),
        bearer: None,
    };
    // get_auth_api_token: form-encoded client credentials.
    let response = vw
        .client
        .post(format!("{}/connect/token", vw.identity_uri))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(
            form_urlencoded::Serializer::new(String::new())
                .append_pair("grant_type", "client_credentials")
                .append_pair("scope", "api.push")
                .append_pair("client_id", &format!("installation.{id}"))
                .append_pair("client_secret", &key)
                .finish(),
        )
        .send()
        .await
        .expect("token request");
    assert_eq!(response.status().as_u16(), 200);
    let answer: Value = response.json().await.expect("json");
    assert!(
        answer["expires_in"].as_u64().is_some_and(|s| s > 0),
        "{answer}"
    );
    vw.bearer = Some(answer["access_token"].as_str().expect("token").to_owned());

    let (iphone, ipad) = (token('b'), token('c'));
    // register_push_device: deviceId = push_uuid, identifier = device uuid; no organizationIds.
    for (push_uuid, device_uuid, push_token) in [
        (
            "a0a0a0a0-0000-4000-8000-00000000000a",
            "d0d0d0d0-0000-4000-8000-00000000000a",
            &iphone,
        ),
        (
            "b0b0b0b0-0000-4000-8000-00000000000b",
            "e0e0e0e0-0000-4000-8000-00000000000b",
            &ipad,
        ),
    ] {
        let (status, answer) = vw
            .post(
                reqwest::Method::POST,
                "/push/register",
                Some(
                    json!({"deviceId": push_uuid, "pushToken": push_token, "userId": U,
                            "type": 1, "identifier": device_uuid, "installationId": id}),
                ),
            )
            .await;
        assert_eq!(status, 200, "{answer}");
    }
    // send_to_push_relay from the iPad: deviceId its push_uuid, identifier its uuid.
    let (status, answer) = vw
        .post(
            reqwest::Method::POST,
            "/push/send",
            Some(json!({"userId": U, "organizationId": null,
                        "deviceId": "b0b0b0b0-0000-4000-8000-00000000000b",
                        "identifier": "e0e0e0e0-0000-4000-8000-00000000000b", "type": 1,
                        "payload": {"id": "c1c1c1c1-0000-4000-8000-000000000001", "userId": U,
                                    "organizationId": null, "collectionIds": null,
                                    "revisionDate": "2026-11-28T10:00:00.000000Z"},
                        "clientType": null, "installationId": null})),
        )
        .await;
    assert_eq!(
        (status, &answer["queued"]),
        (200, &json!(1)),
        "the sending iPad is left out: {answer}"
    );
    let got = only(p.apns.wait_for(1, WAIT).await, 1);
    assert_eq!(got[0].token, iphone);
    assert_eq!(got[0].body["aps"]["content-available"], 1);
    assert_eq!(got[0].body["data"]["type"], 1);
    assert_eq!(payload_of(&got[0].body["data"]["payload"])["userId"], U);
    tokio::time::sleep(QUIET).await;
    assert_eq!(p.apns.received().len(), 1);
    // unregister_push_device: POST {relay}/push/delete/{push_uuid}; DELETE works too.
    let (status, answer) = vw
        .post(
            reqwest::Method::POST,
            "/push/delete/a0a0a0a0-0000-4000-8000-00000000000a",
            None,
        )
        .await;
    assert_eq!(
        (status, &answer["deleted"]),
        (200, &json!(true)),
        "{answer}"
    );
    let (status, answer) = vw
        .post(
            reqwest::Method::DELETE,
            "/api/push/delete/b0b0b0b0-0000-4000-8000-00000000000b",
            None,
        )
        .await;
    assert_eq!(
        (status, &answer["deleted"]),
        (200, &json!(true)),
        "{answer}"
    );
    assert_eq!(
        server
            .push
            .store()
            .registrations()
            .count_owned(&id)
            .await
            .expect("count"),
        0
    );
    server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn an_installation_cannot_touch_anothers_devices() {
    let p = Providers::start().await;
    let server = relay(&p).await;
    let (a, a_key) = installation(&server).await;
    let (b, b_key) = installation(&server).await;
    let a_bearer = installation_token(server.addr, &a, &a_key).await;
    let b_bearer = installation_token(server.addr, &b, &b_key).await;
    let b_phone = token('d');
    as_installation(
        &server,
        &b_bearer,
        "POST",
        "/push/register",
        json!({"deviceId": "dev1", "pushToken": b_phone, "userId": U, "type": 0,
               "identifier": "ident1", "organizationIds": [ORG]}),
    )
    .await;
    let stored = format!("{b}_dev1");
    assert!(server
        .push
        .store()
        .registrations()
        .get(&stored)
        .await
        .expect("lookup")
        .is_some());
    // Every id A can send names A's own namespace.
    let push = |target: Value| {
        let mut body = json!({"type": 5, "payload": {"userId": U}});
        if let (Some(b), Some(t)) = (body.as_object_mut(), target.as_object()) {
            b.extend(t.clone());
        }
        body
    };
    for target in [
        json!({"userId": U}),
        json!({"userId": format!("{b}_{U}")}),
        json!({"organizationId": ORG}),
        json!({"organizationId": format!("{b}_{ORG}")}),
    ] {
        let answer = as_installation(
            &server,
            &a_bearer,
            "POST",
            "/push/send",
            push(target.clone()),
        )
        .await;
        assert_eq!(answer["queued"], 0, "A reached B's device with {target}");
    }
    let (status, answer) = call_as(
        &server,
        Some(&a_bearer),
        "POST",
        "/push/send",
        push(json!({"installationId": b})),
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    let (status, answer) = call_as(
        &server,
        Some(&a_bearer),
        "POST",
        "/push/register",
        json!({"deviceId": "x", "pushToken": "t", "userId": U, "type": 0, "installationId": b}),
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    for id in ["dev1", stored.as_str()] {
        let answer = as_installation(
            &server,
            &a_bearer,
            "POST",
            "/push/delete",
            json!({"id": id}),
        )
        .await;
        assert_eq!(answer["deleted"], false);
        let (status, _) = call_as(
            &server,
            Some(&a_bearer),
            "DELETE",
            &format!("/push/delete/{id}"),
            Value::Null,
        )
        .await;
        assert_eq!(status, 200);
        let answer = as_installation(
            &server,
            &a_bearer,
            "PUT",
            "/push/delete-organization",
            json!({"devices": [{"id": id}], "organizationId": ORG}),
        )
        .await;
        assert_eq!(answer["updated"], 0);
    }
    // Registering the same device id under A makes A's own device, not a takeover of B's.
    as_installation(
        &server,
        &a_bearer,
        "POST",
        "/push/register",
        json!({"deviceId": "dev1", "pushToken": token('e'), "userId": U, "type": 0}),
    )
    .await;
    let b_device = server
        .push
        .store()
        .registrations()
        .get(&stored)
        .await
        .expect("lookup")
        .expect("B's device is still there");
    assert_eq!(b_device.channel.address(), b_phone);
    assert_eq!(b_device.organization_ids, vec![format!("{b}_{ORG}")]);
    // The local vault server's credentials see the prefixed world as it is: nothing at U.
    assert_eq!(queued(&server, push(json!({"userId": U}))).await, 0);
    // B still reaches its device.
    let answer = as_installation(
        &server,
        &b_bearer,
        "POST",
        "/push/send",
        push(json!({"organizationId": ORG})),
    )
    .await;
    assert_eq!(answer["queued"], 1);
    let got = only(p.fcm.wait_for(1, WAIT).await, 1);
    assert_eq!(got[0].token, b_phone);
    server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn token_endpoint_answers_oauth_errors() {
    let p = Providers::start().await;
    let server = relay(&p).await;
    let (id, key) = installation(&server).await;
    let client_id = format!("installation.{id}");
    type Form<'a> = Vec<(&'a str, &'a str)>;
    let cases: Vec<(Form, u16, &str)> = vec![
        (
            vec![
                ("scope", "api.push"),
                ("client_id", &client_id),
                ("client_secret", &key),
            ],
            400,
            "invalid_request",
        ),
        (
            vec![
                ("grant_type", "password"),
                ("client_id", &client_id),
                ("client_secret", &key),
            ],
            400,
            "unsupported_grant_type",
        ),
        (
            vec![
                ("grant_type", "client_credentials"),
                ("scope", "api.push"),
                ("client_id", &client_id),
                ("client_secret", "wrong"),
            ],
            400,
            "invalid_client",
        ),
        (
            vec![
                ("grant_type", "client_credentials"),
                ("scope", "api.push"),
                (
                    "client_id",
                    "installation.00000000-0000-4000-8000-000000000000",
                ),
                ("client_secret", &key),
            ],
            400,
            "invalid_client",
        ),
        (
            vec![
                ("grant_type", "client_credentials"),
                ("scope", "api.push"),
                ("client_id", "user.x"),
                ("client_secret", &key),
            ],
            400,
            "invalid_client",
        ),
        (
            vec![
                ("grant_type", "client_credentials"),
                ("scope", "api.push"),
                ("client_id", &client_id),
            ],
            400,
            "invalid_client",
        ),
        (
            vec![
                ("grant_type", "client_credentials"),
                ("scope", "api.push api.licensing"),
                ("client_id", &client_id),
                ("client_secret", &key),
            ],
            400,
            "invalid_scope",
        ),
    ];
    for (form, status, error) in cases {
        let (got, answer) = token_request(server.addr, "/connect/token", &form).await;
        assert_eq!(
            (got, answer["error"].as_str()),
            (status, Some(error)),
            "{form:?}: {answer}"
        );
    }
    // HTTP Basic client authentication; a wrong secret there is 401.
    let basic = |secret: &str| {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(format!("{client_id}:{secret}"))
    };
    for (secret, status) in [(key.as_str(), 200), ("wrong", 401)] {
        let response = http()
            .post(format!("http://{}/connect/token", server.addr))
            .header("authorization", format!("Basic {}", basic(secret)))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("grant_type=client_credentials&scope=api.push")
            .send()
            .await
            .expect("request");
        assert_eq!(response.status().as_u16(), status);
    }
    // Rotating the key ends the tokens minted with the old one; the new key's tokens work.
    let old_bearer = installation_token(server.addr, &id, &key).await;
    assert_eq!(sync_vault_as(&server, &old_bearer).await, 200);
    let key = server
        .push
        .store()
        .installations()
        .rotate_key(&id, now_ms())
        .await
        .expect("rotate")
        .expect("installation");
    assert_eq!(
        sync_vault_as(&server, &old_bearer).await,
        403,
        "a token of the replaced key"
    );
    let bearer = installation_token(server.addr, &id, &key).await;
    assert_eq!(
        sync_vault_as(&server, &bearer).await,
        200,
        "a token of the new key"
    );
    // A disabled installation gets no token, and its existing token stops working.
    server
        .push
        .store()
        .installations()
        .set_enabled(&id, false, now_ms())
        .await
        .expect("disable");
    let (status, answer) = token_request(
        server.addr,
        "/connect/token",
        &[
            ("grant_type", "client_credentials"),
            ("scope", "api.push"),
            ("client_id", &client_id),
            ("client_secret", &key),
        ],
    )
    .await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (400, Some("invalid_client"))
    );
    assert_eq!(sync_vault_as(&server, &bearer).await, 403);
    server.shutdown().await.expect("shutdown");
}

/// The status of a `/push/send` (a SyncVault for user `U`) made with an installation token.
async fn sync_vault_as(server: &Server, bearer: &str) -> u16 {
    call_as(
        server,
        Some(bearer),
        "POST",
        "/push/send",
        json!({"userId": U, "type": 5, "payload": {}}),
    )
    .await
    .0
}

#[tokio::test]
async fn bad_and_expired_tokens_are_refused() {
    let p = Providers::start().await;
    let server = relay(&p).await;
    let (id, _) = installation(&server).await;
    let now = common::unix_now();
    let claims = |secret: &str, exp: i64, scope: &str| {
        Minter::Hs256(secret.as_bytes().to_vec())
            .mint(&json!({"iss": "pushwarden-relay", "sub": id, "client_id": format!("installation.{id}"),
                          "client_sub": id, "scope": [scope], "iat": now - 7200, "nbf": now - 7200, "exp": exp}))
            .expect("mint")
    };
    let body = json!({"userId": U, "type": 5, "payload": {}});
    for (what, bearer, status) in [
        ("expired", claims(RELAY_SECRET, now - 3600, "api.push"), 401),
        (
            "wrong secret",
            claims("another-secret", now + 3600, "api.push"),
            401,
        ),
        ("wrong scope", claims(RELAY_SECRET, now + 3600, "api"), 401),
        ("garbage", "not-a-token".to_owned(), 401),
    ] {
        let (got, answer) =
            call_as(&server, Some(&bearer), "POST", "/push/send", body.clone()).await;
        assert_eq!(got, status, "{what}: {answer}");
        assert!(answer["error"].is_string(), "{what}: {answer}");
    }
    let response = http()
        .post(format!("http://{}/push/send", server.addr))
        .body(body.to_string())
        .send()
        .await
        .expect("request");
    assert_eq!(response.status().as_u16(), 401);
    // The same (valid) claims work, so the refusals above were about what they said.
    let good = claims(RELAY_SECRET, now + 3600, "api.push");
    as_installation(&server, &good, "POST", "/push/send", body).await;
    server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn limits_per_installation_answer_429_with_retry_after() {
    let p = Providers::start().await;
    let mut c = p.config();
    c.relay.token_secret = Some(RELAY_SECRET.into());
    c.relay.requests_per_minute = 6;
    c.relay.pushes_per_minute = 2;
    c.relay.max_registrations = 2;
    let server = start(c).await;
    let (a, a_key) = installation(&server).await;
    let (b, b_key) = installation(&server).await;
    let a_bearer = installation_token(server.addr, &a, &a_key).await;
    let b_bearer = installation_token(server.addr, &b, &b_key).await;
    let register = |n: u32| json!({"deviceId": format!("d{n}"), "pushToken": token('f'), "userId": U, "type": 0});
    as_installation(&server, &a_bearer, "POST", "/push/register", register(1)).await;
    as_installation(&server, &a_bearer, "POST", "/push/register", register(2)).await;
    let (status, answer) = call_as(
        &server,
        Some(&a_bearer),
        "POST",
        "/push/register",
        register(3),
    )
    .await;
    assert_eq!(status, 429, "registrations: {answer}");
    // Re-registering an existing device is not a new one.
    as_installation(&server, &a_bearer, "POST", "/push/register", register(2)).await;
    let send = json!({"userId": "nobody", "type": 5, "payload": {}});
    as_installation(&server, &a_bearer, "POST", "/push/send", send.clone()).await;
    as_installation(&server, &a_bearer, "POST", "/push/send", send.clone()).await;
    let response = http()
        .post(format!("http://{}/push/send", server.addr))
        .bearer_auth(&a_bearer)
        .body(send.to_string())
        .send()
        .await
        .expect("request");
    assert_eq!(response.status().as_u16(), 429, "pushes per minute");
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    // That was A's seventh request: the request budget (6) is spent too.
    let (status, _) = call_as(
        &server,
        Some(&a_bearer),
        "POST",
        "/push/delete",
        json!({"id": "d1"}),
    )
    .await;
    assert_eq!(status, 429, "requests per minute");
    // B has budgets of its own; the local vault server has no limit.
    as_installation(&server, &b_bearer, "POST", "/push/send", send.clone()).await;
    for _ in 0..10 {
        ok(&server, "POST", "/push/send", send.clone()).await;
    }
    let _ = SEND_KEY;
    server.shutdown().await.expect("shutdown");
}

/// A free port on 127.0.0.1 for a server started later. Taken below Linux's ephemeral range
/// (32768 and up), so that the other tests' servers, which bind port 0, cannot be given it
/// in the meantime.
fn free_port() -> u16 {
    use rand::Rng;
    let mut rng = rand::rng();
    for _ in 0..1000 {
        let port = rng.random_range(20_000..32_000);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port below the ephemeral range");
}

/// A self-signed certificate for localhost and 127.0.0.1: (certificate file, key file).
fn self_signed(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let key = rcgen::KeyPair::generate().expect("key");
    let params = rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
        .expect("params");
    let cert = params.self_signed(&key).expect("certificate");
    let (cert_file, key_file) = (dir.join("relay.crt"), dir.join("relay.key"));
    std::fs::write(&cert_file, cert.pem()).expect("write cert");
    common::write_private(&key_file, key.serialize_pem().as_bytes());
    (cert_file, key_file)
}

/// The environment of a relay process: its own data directory and the fakes' credentials.
fn relay_env(p: &Providers, data_dir: &std::path::Path) -> Vec<(String, String)> {
    let c = p.config();
    let path = |p: &Option<std::path::PathBuf>| {
        p.as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    };
    vec![
        ("PUSHWARDEN_DATA_DIR".into(), data_dir.display().to_string()),
        (
            "PUSHWARDEN_JWT_HS256_SECRET".into(),
            "relay-process-user-secret".into(),
        ),
        ("PUSHWARDEN_APNS_KEY_FILE".into(), path(&c.apns.key_file)),
        (
            "PUSHWARDEN_APNS_KEY_ID".into(),
            c.apns.key_id.clone().unwrap_or_default(),
        ),
        (
            "PUSHWARDEN_APNS_TEAM_ID".into(),
            c.apns.team_id.clone().unwrap_or_default(),
        ),
        (
            "PUSHWARDEN_APNS_TOPIC".into(),
            c.apns.topic.clone().unwrap_or_default(),
        ),
        (
            "PUSHWARDEN_APNS_ENDPOINT".into(),
            c.apns.endpoint.clone().unwrap_or_default(),
        ),
        (
            "PUSHWARDEN_FCM_SERVICE_ACCOUNT".into(),
            path(&c.fcm.service_account),
        ),
        (
            "PUSHWARDEN_FCM_ENDPOINT".into(),
            c.fcm.endpoint.clone().unwrap_or_default(),
        ),
        ("PUSHWARDEN_PUSH_RETRY_BASE".into(), "50ms".into()),
        ("PUSHWARDEN_PUSH_RETRY_MAX".into(), "400ms".into()),
    ]
}

/// A `pushwarden serve` process, killed when dropped.
struct Process(std::process::Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn registered(user: &str, device: &str, device_type: u8, push_token: &str) -> Value {
    json!({"deviceId": device, "userId": user, "identifier": format!("ident-{device}"),
           "type": device_type, "pushToken": push_token})
}

#[tokio::test]
async fn a_self_hosted_pushwarden_pushes_through_a_relay_process_over_https() {
    let p = Providers::start().await;
    let relay_dir = common::fresh_data_dir();
    std::fs::create_dir_all(&relay_dir).expect("dir");
    let (cert, key) = self_signed(&relay_dir);
    let port = free_port();
    let mut env = relay_env(&p, &relay_dir.join("data"));
    let (id, installation_key) = common::create_installation_with_cli(&env);
    env.extend([
        ("PUSHWARDEN_LISTEN".to_owned(), format!("127.0.0.1:{port}")),
        (
            "PUSHWARDEN_TLS_CERT_FILE".to_owned(),
            cert.display().to_string(),
        ),
        (
            "PUSHWARDEN_TLS_KEY_FILE".to_owned(),
            key.display().to_string(),
        ),
    ]);
    let _relay = Process(
        std::process::Command::new(env!("CARGO_BIN_EXE_pushwarden"))
            .arg("serve")
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("relay process"),
    );
    let https = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(&cert).expect("cert")).expect("pem"),
        )
        .timeout(Duration::from_secs(2))
        .build()
        .expect("client");
    let base = format!("https://127.0.0.1:{port}");
    let deadline = tokio::time::Instant::now() + WAIT;
    while https.get(format!("{base}/alive")).send().await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the relay process did not come up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The self-hosted side: no provider credentials, the relay upstream.
    let mut c = common::config();
    c.upstream.relay_uri = Some(base.clone());
    c.upstream.identity_uri = Some(base.clone());
    c.upstream.installation_id = Some(id.clone());
    c.upstream.installation_key = Some(installation_key);
    c.upstream.ca_file = Some(cert.clone());
    c.push.retry_base = Duration::from_millis(50);
    c.push.retry_max = Duration::from_millis(400);
    let local = start(c).await;
    let (android, iphone) = (token('a'), token('b'));
    assert_eq!(
        ok(
            &local,
            "POST",
            "/push/register",
            registered(U, "android", 0, &android)
        )
        .await["platform"],
        "fcm"
    );
    assert_eq!(
        ok(
            &local,
            "POST",
            "/push/register",
            registered(U, "iphone", 1, &iphone)
        )
        .await["platform"],
        "apns"
    );

    // Edited on the iPhone: the Android phone hears of it, through the relay.
    let envelope = |context: &str| {
        json!({"type": 0, "contextId": context,
               "payload": {"id": "c1c1c1c1-0000-4000-8000-000000000001", "userId": U,
                           "organizationId": null, "revisionDate": "2026-11-28T10:00:00Z"}})
    };
    let (status, answer) = common::send_raw(
        local.addr,
        Some(&format!("Bearer {SEND_KEY}")),
        envelope("ident-iphone").to_string(),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["queued"], 1, "one relay request: {answer}");
    let got = only(p.fcm.wait_for(1, WAIT).await, 1);
    assert_eq!(got[0].token, android);
    assert_eq!(got[0].body["data"]["type"], "0");
    assert_eq!(payload_of(&got[0].body["data"]["payload"])["userId"], U);
    assert_eq!(got[0].body["data"]["contextId"], "ident-iphone");
    tokio::time::sleep(QUIET).await;
    assert!(
        p.apns.received().is_empty(),
        "the sending iPhone is left out through the relay"
    );

    // Edited on the Android phone: the iPhone, through APNs.
    common::send(local.addr, &envelope("ident-android")).await;
    let got = only(p.apns.wait_for(1, WAIT).await, 1);
    assert_eq!(got[0].token, iphone);
    assert_eq!(got[0].body["aps"]["content-available"], 1);
    tokio::time::sleep(QUIET).await;
    assert_eq!(p.fcm.received().len(), 1);

    // Unregistering is forwarded too: then nothing reaches the relay's registry for it.
    ok(&local, "POST", "/push/delete", json!({"id": "android"})).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let health: Value = health(&local).await;
        if health["pendingRelayRequests"] == 0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{health}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let relay_store = pushwarden_push::Store::connect(&format!(
        "sqlite://{}/pushwarden.db",
        relay_dir.join("data").display()
    ))
    .await
    .expect("relay database");
    assert_eq!(
        relay_store
            .registrations()
            .count_owned(&id)
            .await
            .expect("count"),
        1
    );
    assert!(relay_store
        .registrations()
        .get(&format!("{id}_iphone"))
        .await
        .expect("lookup")
        .is_some());
    relay_store.close().await;
    local.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn requests_for_a_relay_that_is_down_wait_in_the_outbox() {
    let p = Providers::start().await;
    let port = free_port();
    // The relay's database exists (with our installation) before the relay runs.
    let relay_config = {
        let mut c = p.config();
        c.listen = format!("127.0.0.1:{port}").parse().expect("addr");
        c
    };
    let store = pushwarden_push::Store::connect(&relay_config.database_url())
        .await
        .expect("relay database");
    let (inst, key) = store
        .installations()
        .create(None, now_ms())
        .await
        .expect("installation");
    store.close().await;

    let mut c = common::config();
    let base = format!("http://127.0.0.1:{port}");
    c.upstream.relay_uri = Some(base.clone());
    c.upstream.identity_uri = Some(base);
    c.upstream.installation_id = Some(inst.id.clone());
    c.upstream.installation_key = Some(key);
    c.push.retry_base = Duration::from_millis(50);
    c.push.retry_max = Duration::from_millis(300);
    let local = start(c).await;
    let phone = token('c');
    ok(
        &local,
        "POST",
        "/push/register",
        registered(U, "phone", 0, &phone),
    )
    .await;
    common::send(local.addr, &json!({"type": 11, "payload": {"userId": U}})).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let health = health(&local).await;
    assert_eq!(
        health["pendingRelayRequests"], 2,
        "register and send wait: {health}"
    );

    // The relay comes up: the outbox drains, in order (the registration first).
    let relay = start(relay_config).await;
    let got = only(p.fcm.wait_for(1, WAIT).await, 1);
    assert_eq!(got[0].token, phone);
    assert_eq!(got[0].body["data"]["type"], "11");
    local.shutdown().await.expect("shutdown");
    relay.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_refused_installation_key_backs_off_instead_of_hammering() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    // An identity server that refuses every client and counts how often it is asked.
    let asked = Arc::new(AtomicUsize::new(0));
    let counter = asked.clone();
    let identity = axum::Router::new().route(
        "/connect/token",
        axum::routing::post(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            async {
                (
                    http::StatusCode::BAD_REQUEST,
                    axum::Json(json!({"error": "invalid_client"})),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, identity).await });

    let mut c = common::config();
    let base = format!("http://{addr}");
    c.upstream.relay_uri = Some(base.clone());
    c.upstream.identity_uri = Some(base);
    c.upstream.installation_id = Some("00000000-0000-4000-8000-000000000009".into());
    c.upstream.installation_key = Some("wrong".into());
    c.push.retry_base = Duration::from_millis(20);
    c.push.retry_max = Duration::from_millis(100);
    let local = start(c).await;
    ok(
        &local,
        "POST",
        "/push/register",
        registered(U, "phone", 0, &token('d')),
    )
    .await;
    for _ in 0..5 {
        common::send(local.addr, &json!({"type": 5, "payload": {"userId": U}})).await;
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    let degraded = loop {
        let now = health(&local).await;
        if now["providers"]["relay"]["error"].is_string() {
            break now;
        }
        assert!(tokio::time::Instant::now() < deadline, "{now}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(degraded["status"], "degraded");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        asked.load(Ordering::SeqCst),
        1,
        "one refusal, then a minute's back-off"
    );
    // Nothing is lost meanwhile: the registration and the five pushes wait.
    assert_eq!(health(&local).await["pendingRelayRequests"], 6);
    local.shutdown().await.expect("shutdown");
}
