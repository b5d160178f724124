//! A fake of Apple's push gateway (the HTTP/2 provider API with token authentication).
//!
//! It speaks HTTP/2 cleartext with prior knowledge, which is what pushwarden's `ApnsClient`
//! uses for an `http://` endpoint, and checks what APNs checks, as Apple's "Sending notification requests to APNs" documents
//! (<https://developer.apple.com/documentation/usernotifications/sending-notification-requests-to-apns>):
//!
//! | check | refusal |
//! |---|---|
//! | HTTP/2 | an HTTP/1.x request gets its connection closed, as a TLS+ALPN "h2" server would |
//! | `POST /3/device/{token}` | 405 `MethodNotAllowed`, 404 `BadPath`, 400 `MissingDeviceToken` |
//! | each `apns-*` header and `authorization` at most once | 400 `DuplicateHeaders` |
//! | `authorization: bearer <JWT>` | 403 `MissingProviderToken` |
//! | ES256, `kid` = key id, signature, `iss` = team id, `iat` not in the future | 403 `InvalidProviderToken` |
//! | `iat` at most one hour old | 403 `ExpiredProviderToken` |
//! | a connection changes its token at most every 20 minutes | 429 `TooManyProviderTokenUpdates` |
//! | `apns-push-type` present and known | 400 `InvalidPushType` |
//! | `apns-topic` present, equal to the topic (plus `.voip` etc. for those push types) | 400 `MissingTopic`, `BadTopic`, `DeviceTokenNotForTopic` |
//! | `apns-priority` 1, 5 or 10; 5 for background pushes | 400 `BadPriority` |
//! | `apns-expiration` a number, `apns-collapse-id` ≤ 64 bytes, `apns-id` a UUID | 400 `BadExpirationDate`, `BadCollapseId`, `BadMessageId` |
//! | device token is hex | 400 `BadDeviceToken` |
//! | body non-empty, ≤ 4096 bytes (5120 for VoIP) | 400 `PayloadEmpty`, 413 `PayloadTooLarge` |
//! | body a JSON object; background pushes carry `aps.content-available: 1` | 400 `BadPayload` (the fake's own word: Apple documents no reason for this) |
//!
//! Success is 200 with an empty body and an `apns-id` header (the request's, or a new one).

use std::collections::HashSet;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use http::{header, HeaderMap, Method, Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use jsonwebtoken::{Algorithm, DecodingKey};
use parking_lot::Mutex;
use serde_json::{json, Value};

use crate::jwt;
use crate::record::{self, Received, Recorder};
use crate::script::{Reply, ScriptBook};
use crate::server::{Bound, CloseConnection, Handler, Server};

/// Apple's limit for every push type but VoIP.
pub const MAX_PAYLOAD_BYTES: usize = 4096;
/// Apple's limit for VoIP pushes.
pub const MAX_VOIP_PAYLOAD_BYTES: usize = 5120;
/// Provider tokens older than this are refused as expired.
const TOKEN_MAX_AGE_SECS: i64 = 3600;
/// Tolerated clock skew for a token's `iat` in the future.
const TOKEN_FUTURE_SKEW_SECS: i64 = 60;
/// Apple answers TooManyProviderTokenUpdates when the token changes more often than this.
const TOKEN_MIN_UPDATE_INTERVAL: Duration = Duration::from_secs(20 * 60);
/// Read at most this much of a body: enough to tell "too large" from "fine" with room to spare.
const BODY_READ_LIMIT: usize = 64 * 1024;

/// Push types Apple knows, and the suffix each adds to the app's bundle ID in `apns-topic`.
const PUSH_TYPES: &[(&str, &str)] = &[
    ("alert", ""),
    ("background", ""),
    ("voip", ".voip"),
    ("location", ".location-query"),
    ("complication", ".complication"),
    ("fileprovider", ".pushkit.fileprovider"),
    ("mdm", ""),
    ("liveactivity", ".push-type.liveactivity"),
    ("pushtotalk", ".voip-ptt"),
    ("widgets", ".push-type.widgets"),
];

/// What the fake trusts, as an Apple developer account would define it.
#[derive(Clone, Debug)]
pub struct FakeApnsConfig {
    /// The 10-character Key ID that provider tokens must name in `kid`.
    pub key_id: String,
    /// The Team ID that provider tokens must carry as `iss`.
    pub team_id: String,
    /// The app's bundle ID, expected in `apns-topic`.
    pub topic: String,
    /// SPKI PEM of the signing key's public half (see [`generate_key`]).
    pub public_key_pem: String,
    /// Where to listen; 127.0.0.1 on a free port when `None`.
    pub addr: Option<SocketAddr>,
}

impl FakeApnsConfig {
    /// A configuration with a freshly generated key. Returns the private key as well: the
    /// PKCS#8 PEM that goes into a `.p8` file or `ApnsConfig::key_pem`.
    pub fn with_new_key(
        key_id: impl Into<String>,
        team_id: impl Into<String>,
        topic: impl Into<String>,
    ) -> (Self, String) {
        let (private_pem, public_pem) = generate_key();
        let config = Self {
            key_id: key_id.into(),
            team_id: team_id.into(),
            topic: topic.into(),
            public_key_pem: public_pem,
            addr: None,
        };
        (config, private_pem)
    }
}

/// A new P-256 signing key, as Apple issues them: (PKCS#8 PEM private key, i.e. the `.p8`
/// content; SPKI PEM public key).
pub fn generate_key() -> (String, String) {
    use p256::pkcs8::{EncodePrivateKey as _, EncodePublicKey as _, LineEnding};
    let secret = random_p256_secret();
    // Encoding a valid in-memory key into a PEM string has no failure mode besides allocation.
    let private_pem = secret
        .to_pkcs8_pem(LineEnding::LF)
        .expect("PKCS#8 encoding of a valid P-256 key")
        .to_string();
    let public_pem = secret
        .public_key()
        .to_public_key_pem(LineEnding::LF)
        .expect("SPKI encoding of a valid P-256 key");
    (private_pem, public_pem)
}

/// p256 0.13 wants a rand_core 0.6 RNG while the workspace uses rand 0.9, so draw bytes and
/// retry the (about 2^-32 likely) out-of-range ones.
pub(crate) fn random_p256_secret() -> p256::SecretKey {
    use rand::RngCore as _;
    let mut rng = rand::rng();
    loop {
        let mut bytes = [0u8; 32];
        rng.fill_bytes(&mut bytes);
        if let Ok(key) = p256::SecretKey::from_slice(&bytes) {
            return key;
        }
    }
}

/// A running fake APNs gateway. Dropping it stops the server.
///
/// Apple judges provider-token refreshes per connection, and so does the fake: a connection
/// that presents a second valid token within 20 minutes of the first gets 429
/// `TooManyProviderTokenUpdates`. Tests that try several tokens should use a new HTTP client
/// (so a new connection) for each.
pub struct FakeApns {
    server: Server,
    state: Arc<State>,
}

struct State {
    key_id: String,
    team_id: String,
    topic: String,
    key: DecodingKey,
    recorder: Recorder,
    scripts: ScriptBook<Reply>,
    /// Every distinct provider token that passed verification.
    provider_tokens: Mutex<HashSet<String>>,
}

/// The token a connection last authenticated with, and since when.
#[derive(Default)]
struct ConnTokens {
    current: Mutex<Option<(String, Instant)>>,
}

crate::fake_common!(FakeApns);

impl FakeApns {
    pub async fn start(config: FakeApnsConfig) -> io::Result<FakeApns> {
        let key = DecodingKey::from_ec_pem(config.public_key_pem.as_bytes()).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("public_key_pem is not a P-256 SPKI PEM: {e}"),
            )
        })?;
        let state = Arc::new(State {
            key_id: config.key_id,
            team_id: config.team_id,
            topic: config.topic,
            key,
            recorder: Recorder::new("apns"),
            scripts: ScriptBook::new(),
            provider_tokens: Mutex::new(HashSet::new()),
        });
        let server = Bound::bind(config.addr).await?.serve(state.clone());
        Ok(FakeApns { server, state })
    }

    /// The next `times` valid pushes to `token` get `reply` instead of success. Requests that
    /// break the protocol are refused as usual and do not use up the script.
    pub fn script(&self, token: &str, reply: Reply, times: usize) {
        self.state.scripts.push(token, reply, times);
    }

    /// Distinct provider tokens that passed verification (a well-behaved client reuses one).
    pub fn provider_tokens(&self) -> Vec<String> {
        self.state.provider_tokens.lock().iter().cloned().collect()
    }
}

/// Why a request is refused: status, Apple's reason, and a detail for the rejection log.
struct Refusal {
    status: StatusCode,
    reason: &'static str,
    detail: String,
}

fn refuse(status: StatusCode, reason: &'static str, detail: impl Into<String>) -> Refusal {
    Refusal {
        status,
        reason,
        detail: detail.into(),
    }
}

impl Handler for State {
    type Conn = ConnTokens;

    async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        conn: Arc<ConnTokens>,
    ) -> Result<Response<Body>, CloseConnection> {
        self.recorder.count_request();
        if req.version() != Version::HTTP_2 {
            self.recorder.reject(
                None,
                0,
                "NotHttp2",
                &format!(
                    "{:?} request; APNs speaks HTTP/2 only, so the connection was closed",
                    req.version()
                ),
            );
            return Err(CloseConnection);
        }
        let (parts, body) = req.into_parts();
        // Apple echoes a well-formed apns-id on every answer and makes one up otherwise.
        let apns_id = record::header(&parts.headers, "apns-id")
            .filter(|id| is_uuid(id))
            .map(str::to_owned)
            .unwrap_or_else(new_apns_id);

        let token = parts
            .uri
            .path()
            .strip_prefix("/3/device/")
            .map(str::to_owned);
        if let Some(token) = &token {
            self.recorder.count_token(token);
        }
        let checked = match (&parts.method, &token) {
            (m, _) if *m != Method::POST => Err(refuse(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                format!("{m} {}", parts.uri.path()),
            )),
            (_, None) => Err(refuse(
                StatusCode::NOT_FOUND,
                "BadPath",
                format!("{} is not /3/device/{{token}}", parts.uri.path()),
            )),
            (_, Some(t)) if t.is_empty() => Err(refuse(
                StatusCode::BAD_REQUEST,
                "MissingDeviceToken",
                "no device token in the path",
            )),
            (_, Some(t)) => self.check(t, &parts.headers, body, &conn).await,
        };

        let mut response = match checked {
            Err(refusal) => {
                self.recorder.reject(
                    token.as_deref(),
                    refusal.status.as_u16(),
                    refusal.reason,
                    &refusal.detail,
                );
                error_response(refusal.status.as_u16(), refusal.reason, None)
            }
            Ok(received) => match self
                .scripts
                .take(&received.token)
                .filter(|r| r.status >= 300)
            {
                Some(reply) => {
                    self.recorder
                        .scripted(&received.token, reply.status, &reply.reason);
                    error_response(reply.status, &reply.reason, reply.retry_after_secs)
                }
                None => {
                    self.recorder.accept(received);
                    Response::new(Body::empty())
                }
            },
        };
        self.recorder.pause().await;
        if let Ok(value) = http::HeaderValue::from_str(&apns_id) {
            response.headers_mut().insert("apns-id", value);
        }
        Ok(response)
    }
}

impl State {
    async fn check(
        &self,
        token: &str,
        headers: &HeaderMap,
        body: Incoming,
        conn: &ConnTokens,
    ) -> Result<Received, Refusal> {
        for name in [
            "authorization",
            "apns-topic",
            "apns-push-type",
            "apns-priority",
            "apns-expiration",
            "apns-collapse-id",
            "apns-id",
        ] {
            if headers.get_all(name).iter().count() > 1 {
                return Err(refuse(
                    StatusCode::BAD_REQUEST,
                    "DuplicateHeaders",
                    format!("{name} appears more than once"),
                ));
            }
        }
        self.check_provider_token(headers, conn)?;

        let push_type = record::header(headers, "apns-push-type").ok_or_else(|| {
            refuse(
                StatusCode::BAD_REQUEST,
                "InvalidPushType",
                "apns-push-type is missing",
            )
        })?;
        let Some(&(_, suffix)) = PUSH_TYPES.iter().find(|(t, _)| *t == push_type) else {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                "InvalidPushType",
                format!("apns-push-type {push_type:?} is not one Apple knows"),
            ));
        };
        self.check_topic(headers, push_type, suffix)?;

        let priority = match record::header(headers, "apns-priority") {
            None => 10,
            Some(p) => match p.parse::<u8>() {
                Ok(p @ (1 | 5 | 10)) => p,
                _ => {
                    return Err(refuse(
                        StatusCode::BAD_REQUEST,
                        "BadPriority",
                        format!("apns-priority {p:?} is not 1, 5 or 10"),
                    ))
                }
            },
        };
        if push_type == "background" && priority != 5 {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                "BadPriority",
                format!("background pushes must use apns-priority 5, not {priority}"),
            ));
        }
        if let Some(exp) = record::header(headers, "apns-expiration") {
            if exp.parse::<u64>().is_err() {
                return Err(refuse(
                    StatusCode::BAD_REQUEST,
                    "BadExpirationDate",
                    format!("apns-expiration {exp:?} is not UNIX seconds"),
                ));
            }
        }
        if let Some(collapse) = headers.get("apns-collapse-id") {
            if collapse.len() > 64 {
                return Err(refuse(
                    StatusCode::BAD_REQUEST,
                    "BadCollapseId",
                    format!("apns-collapse-id is {} bytes; at most 64", collapse.len()),
                ));
            }
        }
        if let Some(id) = headers.get("apns-id") {
            if !id.to_str().is_ok_and(is_uuid) {
                return Err(refuse(
                    StatusCode::BAD_REQUEST,
                    "BadMessageId",
                    format!("apns-id {id:?} is not a UUID"),
                ));
            }
        }
        if !token.len().is_multiple_of(2) || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                "BadDeviceToken",
                format!("device token {token:?} is not hex"),
            ));
        }

        let bytes = axum::body::to_bytes(Body::new(body), BODY_READ_LIMIT)
            .await
            .map_err(|e| {
                refuse(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "PayloadTooLarge",
                    format!("body unreadable or over {BODY_READ_LIMIT} bytes: {e}"),
                )
            })?;
        if bytes.is_empty() {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                "PayloadEmpty",
                "the body is empty",
            ));
        }
        let max = if push_type == "voip" {
            MAX_VOIP_PAYLOAD_BYTES
        } else {
            MAX_PAYLOAD_BYTES
        };
        if bytes.len() > max {
            return Err(refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                "PayloadTooLarge",
                format!("body is {} bytes; at most {max}", bytes.len()),
            ));
        }
        let body: Value = serde_json::from_slice(&bytes).map_err(|e| {
            refuse(
                StatusCode::BAD_REQUEST,
                "BadPayload",
                format!("body is not JSON: {e}"),
            )
        })?;
        check_payload(&body, push_type)?;

        Ok(Received {
            token: token.to_owned(),
            body,
            headers: record::header_map(headers),
        })
    }

    fn check_provider_token(&self, headers: &HeaderMap, conn: &ConnTokens) -> Result<(), Refusal> {
        let invalid =
            |detail: String| refuse(StatusCode::FORBIDDEN, "InvalidProviderToken", detail);
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Err(refuse(
                StatusCode::FORBIDDEN,
                "MissingProviderToken",
                "no authorization header",
            ));
        };
        let value = value
            .to_str()
            .map_err(|_| invalid("authorization is not ASCII".into()))?;
        let jwt = match value.split_once(' ') {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
            _ => return Err(invalid("authorization is not `bearer <JWT>`".into())),
        };
        if jwt.is_empty() {
            return Err(refuse(
                StatusCode::FORBIDDEN,
                "MissingProviderToken",
                "authorization has no token",
            ));
        }
        let jwt_header = jwt::header(jwt).map_err(|e| invalid(e.to_string()))?;
        if jwt_header.kid.as_deref() != Some(self.key_id.as_str()) {
            return Err(invalid(format!(
                "kid {:?} is not the key id {:?}",
                jwt_header.kid, self.key_id
            )));
        }
        let (_, claims) =
            jwt::verify(jwt, &self.key, Algorithm::ES256).map_err(|e| invalid(e.to_string()))?;
        let iss = claims.get("iss").and_then(Value::as_str);
        if iss != Some(self.team_id.as_str()) {
            return Err(invalid(format!(
                "iss {iss:?} is not the team id {:?}",
                self.team_id
            )));
        }
        let iat = jwt::numeric_date(&claims, "iat")
            .ok_or_else(|| invalid("no numeric iat claim".into()))?;
        let now = record::now_secs() as i64;
        if iat > now + TOKEN_FUTURE_SKEW_SECS {
            return Err(invalid(format!("iat is {} s in the future", iat - now)));
        }
        if now - iat > TOKEN_MAX_AGE_SECS {
            return Err(refuse(
                StatusCode::FORBIDDEN,
                "ExpiredProviderToken",
                format!(
                    "token is {} s old; APNs accepts {TOKEN_MAX_AGE_SECS} s",
                    now - iat
                ),
            ));
        }

        let mut current = conn.current.lock();
        match current.as_ref() {
            Some((previous, _)) if previous == jwt => {}
            Some((_, since)) if since.elapsed() < TOKEN_MIN_UPDATE_INTERVAL => {
                return Err(refuse(
                    StatusCode::TOO_MANY_REQUESTS,
                    "TooManyProviderTokenUpdates",
                    format!(
                        "this connection changed its provider token after {} s; Apple wants at least 20 minutes",
                        since.elapsed().as_secs()
                    ),
                ));
            }
            _ => *current = Some((jwt.to_owned(), Instant::now())),
        }
        drop(current);
        self.provider_tokens.lock().insert(jwt.to_owned());
        Ok(())
    }

    fn check_topic(
        &self,
        headers: &HeaderMap,
        push_type: &str,
        suffix: &str,
    ) -> Result<(), Refusal> {
        let Some(topic) = record::header(headers, "apns-topic") else {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                "MissingTopic",
                "apns-topic is missing; token authentication requires it",
            ));
        };
        let expected = format!("{}{suffix}", self.topic);
        if topic == expected {
            return Ok(());
        }
        let looks_like_bundle_id = !topic.is_empty()
            && topic
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_');
        if !looks_like_bundle_id {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                "BadTopic",
                format!("apns-topic {topic:?} is not a bundle ID"),
            ));
        }
        // The key may send to any app of the team, but the device belongs to this app.
        Err(refuse(
            StatusCode::BAD_REQUEST,
            "DeviceTokenNotForTopic",
            format!(
                "apns-topic {topic:?}; the device token belongs to {expected:?} ({push_type} push)"
            ),
        ))
    }
}

fn check_payload(body: &Value, push_type: &str) -> Result<(), Refusal> {
    let bad = |detail: &str| refuse(StatusCode::BAD_REQUEST, "BadPayload", detail);
    let Some(object) = body.as_object() else {
        return Err(bad("body is not a JSON object"));
    };
    let aps = match object.get("aps") {
        None => None,
        Some(Value::Object(aps)) => Some(aps),
        Some(_) => return Err(bad("aps is not a dictionary")),
    };
    if push_type == "background" {
        let available = aps.and_then(|aps| aps.get("content-available"));
        if available.and_then(Value::as_u64) != Some(1) {
            return Err(bad(
                "a background push needs aps.content-available = 1, or the app is never woken",
            ));
        }
    }
    Ok(())
}

fn error_response(status: u16, reason: &str, retry_after_secs: Option<u64>) -> Response<Body> {
    let mut body = json!({ "reason": reason });
    if status == 410 {
        // When APNs learnt the token is invalid; a later registration of the token wins.
        body["timestamp"] = json!(record::now_millis());
    }
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    if let Some(secs) = retry_after_secs {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, http::HeaderValue::from(secs));
    }
    response
}

/// 8-4-4-4-12 hex digits. Apple documents lower case; upper case is accepted as any UUID parser
/// would.
fn is_uuid(id: &str) -> bool {
    let groups: Vec<&str> = id.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, len)| g.len() == len && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A random version-4 UUID in canonical form.
fn new_apns_id() -> String {
    let hex = record::random_hex(16);
    format!(
        "{}-{}-4{}-a{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        &hex[17..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_uuids() {
        for _ in 0..20 {
            let id = new_apns_id();
            assert!(is_uuid(&id), "{id}");
        }
        assert!(!is_uuid("123e4567-e89b-12d3-a456-42661417400"));
        assert!(!is_uuid("zzze4567-e89b-12d3-a456-426614174000"));
    }

    #[test]
    fn generated_key_loads_on_both_sides() {
        let (private_pem, public_pem) = generate_key();
        assert!(jsonwebtoken::EncodingKey::from_ec_pem(private_pem.as_bytes()).is_ok());
        assert!(DecodingKey::from_ec_pem(public_pem.as_bytes()).is_ok());
    }
}
