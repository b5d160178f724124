//! A fake RFC 8030 push service, the kind a browser or a UnifiedPush distributor hands out
//! endpoints for (RFC 8030, with RFC 8291 encryption and RFC 8292 VAPID; UnifiedPush
//! distributors speak the same protocol: <https://unifiedpush.org/developers/spec/server/>).
//!
//! [`FakeWebPush::subscribe`] plays the user agent: it makes the key pair and auth secret a
//! browser would and returns the subscription an application server stores. Pushes to
//! `POST /push/{id}` are checked as a strict push service checks them, then decrypted with the
//! subscription's private key, as the user agent would:
//!
//! | check | refusal |
//! |---|---|
//! | the subscription exists | 404 (unknown), 410 (after [`FakeWebPush::unsubscribe`]) |
//! | `TTL` present, a non-negative integer | 400 |
//! | `Urgency`, if present, `very-low`/`low`/`normal`/`high`; `Topic` ≤ 32 base64url characters | 400 |
//! | a body is `Content-Encoding: aes128gcm` (RFC 8291) | 400 |
//! | `Authorization: vapid t=<JWT>, k=<key>` present and well-formed (RFC 8292) | 401 |
//! | ES256 signature valid for `k`; `k` is the subscription's application server key, if it has one | 403 |
//! | `aud` = the endpoint's origin, `exp` in the future and at most 24 h ahead, `sub` a `mailto:` or `https:` URI | 403 |
//! | body at most 4096 bytes | 413 |
//! | body decrypts | 400 |
//!
//! Success is 201 Created with a `Location` header and the `TTL` the service kept.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use http::{header, HeaderMap, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use jsonwebtoken::{Algorithm, DecodingKey};
use p256::elliptic_curve::sec1::ToEncodedPoint as _;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::jwt;
use crate::record::{self, Received, Recorder};
use crate::script::{Reply, ScriptBook};
use crate::server::{Bound, CloseConnection, Handler, Server};

/// RFC 8030 §7.2: a push service must accept bodies up to this size and may refuse larger ones.
pub const MAX_BODY_BYTES: usize = 4096;
/// RFC 8292 §2: `exp` no further ahead than a day.
const MAX_VAPID_LIFETIME_SECS: i64 = 24 * 3600;
const CLOCK_SKEW_SECS: i64 = 60;
/// The longest TTL the service keeps (autopush's 30 days); longer ones are shortened and the
/// kept value returned in the `TTL` response header, as RFC 8030 §5.2 describes.
const MAX_TTL_SECS: u64 = 30 * 24 * 3600;
const BODY_READ_LIMIT: usize = 64 * 1024;

/// What an application server stores for a user agent (`PushSubscription.toJSON()`, flattened).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscription {
    pub endpoint: String,
    /// The user agent's ECDH public key, uncompressed P-256, base64url without padding.
    pub p256dh: String,
    /// The 16-byte authentication secret, base64url without padding.
    pub auth: String,
}

impl Subscription {
    /// The last path segment of the endpoint, which [`Received::token`] and
    /// [`FakeWebPush::script`] use.
    pub fn id(&self) -> &str {
        self.endpoint.rsplit('/').next().unwrap_or_default()
    }
}

/// A running fake push service. Dropping it stops the server.
pub struct FakeWebPush {
    server: Server,
    state: Arc<State>,
}

struct State {
    /// Scheme, host and port of every endpoint: the `aud` VAPID tokens must carry.
    origin: String,
    subscriptions: Mutex<HashMap<String, UserAgent>>,
    recorder: Recorder,
    scripts: ScriptBook<Reply>,
}

/// The browser's secret half of a subscription.
#[derive(Clone)]
struct UserAgent {
    /// The subscription's P-256 key pair, as `ece` takes it: the private scalar `d` and the
    /// uncompressed public point.
    keys: ece::EcKeyComponents,
    auth: Vec<u8>,
    /// Set when subscribed with an `applicationServerKey`: only that VAPID key may push.
    application_server_key: Option<Vec<u8>>,
    unsubscribed: bool,
}

crate::fake_common!(FakeWebPush);

impl FakeWebPush {
    pub async fn start(addr: Option<SocketAddr>) -> io::Result<FakeWebPush> {
        let bound = Bound::bind(addr).await?;
        let state = Arc::new(State {
            origin: bound.url(),
            subscriptions: Mutex::new(HashMap::new()),
            recorder: Recorder::new("webpush"),
            scripts: ScriptBook::new(),
        });
        let server = bound.serve(state.clone());
        Ok(FakeWebPush { server, state })
    }

    /// A new subscription that takes pushes signed with any VAPID key.
    pub fn subscribe(&self) -> Subscription {
        self.add_subscription(None)
    }

    /// A new subscription restricted to one application server key (base64url of the
    /// uncompressed P-256 public key, as `pushManager.subscribe` takes it): pushes signed with
    /// another key get 403.
    pub fn subscribe_with_key(&self, application_server_key: &str) -> anyhow::Result<Subscription> {
        let key = decode_b64(application_server_key)
            .filter(|k| p256::PublicKey::from_sec1_bytes(k).is_ok() && k.len() == 65)
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "application server key is not a base64url uncompressed P-256 point"
                )
            })?;
        Ok(self.add_subscription(Some(key)))
    }

    fn add_subscription(&self, application_server_key: Option<Vec<u8>>) -> Subscription {
        use rand::RngCore as _;
        let secret = crate::apns::random_p256_secret();
        let public = secret.public_key().to_encoded_point(false);
        let mut auth = [0u8; 16];
        rand::rng().fill_bytes(&mut auth);
        // 160 random bits, as UnifiedPush recommends for capability URLs.
        let mut id = [0u8; 20];
        rand::rng().fill_bytes(&mut id);
        let id = URL_SAFE_NO_PAD.encode(id);
        self.state.subscriptions.lock().insert(
            id.clone(),
            UserAgent {
                keys: ece::EcKeyComponents::new(
                    secret.to_bytes().to_vec(),
                    public.as_bytes().to_vec(),
                ),
                auth: auth.to_vec(),
                application_server_key,
                unsubscribed: false,
            },
        );
        Subscription {
            endpoint: format!("{}/push/{id}", self.state.origin),
            p256dh: URL_SAFE_NO_PAD.encode(public.as_bytes()),
            auth: URL_SAFE_NO_PAD.encode(auth),
        }
    }

    /// Ends a subscription (by id or endpoint) as a user agent that unsubscribed: later pushes
    /// get 410 Gone. Returns whether it existed.
    pub fn unsubscribe(&self, id_or_endpoint: &str) -> bool {
        let id = id_or_endpoint.rsplit('/').next().unwrap_or_default();
        match self.state.subscriptions.lock().get_mut(id) {
            Some(ua) => {
                ua.unsubscribed = true;
                true
            }
            None => false,
        }
    }

    /// The next `times` valid pushes to the subscription `id` get `reply` (its reason as a
    /// plain-text body) instead of 201. Pushes refused for breaking the protocol do not use up
    /// the script.
    pub fn script(&self, id: &str, reply: Reply, times: usize) {
        self.state.scripts.push(id, reply, times);
    }
}

/// A protocol violation: status and the text the push service answers with.
struct Refusal {
    status: StatusCode,
    text: String,
}

fn refuse(status: StatusCode, text: impl Into<String>) -> Refusal {
    Refusal {
        status,
        text: text.into(),
    }
}

impl Handler for State {
    type Conn = ();

    async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        _conn: Arc<()>,
    ) -> Result<Response<Body>, CloseConnection> {
        self.recorder.count_request();
        let (parts, body) = req.into_parts();
        let response = self.push(&parts, body).await;
        self.recorder.pause().await;
        Ok(response)
    }
}

impl State {
    async fn push(&self, parts: &http::request::Parts, body: Incoming) -> Response<Body> {
        let id = parts
            .uri
            .path()
            .strip_prefix("/push/")
            .filter(|id| !id.is_empty() && !id.contains('/'));
        let Some(id) = id else {
            let text = format!("{} is not a push resource", parts.uri.path());
            self.recorder.reject(None, 404, "Not Found", &text);
            return text_response(StatusCode::NOT_FOUND, &text);
        };
        self.recorder.count_token(id);
        if parts.method != Method::POST {
            let text = format!("{} is not POST", parts.method);
            self.recorder
                .reject(Some(id), 405, "Method Not Allowed", &text);
            return text_response(StatusCode::METHOD_NOT_ALLOWED, &text);
        }
        let ua = self.subscriptions.lock().get(id).cloned();
        let ua = match ua {
            None => {
                self.recorder
                    .refuse_quietly(id, 404, "no such subscription");
                return text_response(StatusCode::NOT_FOUND, "no such subscription");
            }
            Some(ua) if ua.unsubscribed => {
                self.recorder.refuse_quietly(id, 410, "subscription ended");
                return text_response(StatusCode::GONE, "subscription ended");
            }
            Some(ua) => ua,
        };

        let (ttl, plaintext) = match self.check(&parts.headers, body, &ua).await {
            Ok(accepted) => accepted,
            Err(refusal) => {
                let status = refusal.status;
                self.recorder.reject(
                    Some(id),
                    status.as_u16(),
                    status.canonical_reason().unwrap_or(""),
                    &refusal.text,
                );
                return text_response(status, &refusal.text);
            }
        };

        if let Some(reply) = self.scripts.take(id).filter(|r| r.status >= 300) {
            self.recorder.scripted(id, reply.status, &reply.reason);
            let status =
                StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut response = text_response(status, &reply.reason);
            if let Some(secs) = reply.retry_after_secs {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, http::HeaderValue::from(secs));
            }
            return response;
        }

        let body = match serde_json::from_slice::<Value>(&plaintext) {
            Ok(json) => json,
            Err(_) => Value::String(String::from_utf8_lossy(&plaintext).into_owned()),
        };
        self.recorder.accept(Received {
            token: id.to_owned(),
            body,
            headers: record::header_map(&parts.headers),
        });
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::CREATED;
        let location = format!("{}/message/{}", self.origin, record::random_hex(16));
        if let Ok(value) = http::HeaderValue::from_str(&location) {
            response.headers_mut().insert(header::LOCATION, value);
        }
        response
            .headers_mut()
            .insert("ttl", http::HeaderValue::from(ttl));
        response
    }

    /// Checks a push to an existing subscription; returns the TTL kept and the plaintext.
    async fn check(
        &self,
        headers: &HeaderMap,
        body: Incoming,
        ua: &UserAgent,
    ) -> Result<(u64, Vec<u8>), Refusal> {
        let bad = |text: String| refuse(StatusCode::BAD_REQUEST, text);
        let ttl = match record::header(headers, "ttl") {
            None => return Err(bad("TTL header is required (RFC 8030 §5.2)".into())),
            Some(v) => v
                .trim()
                .parse::<u64>()
                .map_err(|_| bad(format!("TTL {v:?} is not a number of seconds")))?,
        };
        if let Some(urgency) = headers.get("urgency") {
            let ok = urgency
                .to_str()
                .is_ok_and(|u| matches!(u, "very-low" | "low" | "normal" | "high"));
            if !ok {
                return Err(bad(format!(
                    "Urgency {urgency:?} is not very-low, low, normal or high"
                )));
            }
        }
        if let Some(topic) = headers.get("topic") {
            let ok = topic.len() <= 32
                && !topic.is_empty()
                && topic
                    .as_bytes()
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_');
            if !ok {
                return Err(bad(format!(
                    "Topic {topic:?} is not 1 to 32 base64url characters"
                )));
            }
        }
        let encoding = record::header(headers, "content-encoding");
        self.check_vapid(headers, ua)?;

        let bytes = axum::body::to_bytes(Body::new(body), BODY_READ_LIMIT)
            .await
            .map_err(|_| {
                refuse(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("body unreadable or over {BODY_READ_LIMIT} bytes"),
                )
            })?;
        if bytes.len() > MAX_BODY_BYTES {
            return Err(refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("body is {} bytes; at most {MAX_BODY_BYTES}", bytes.len()),
            ));
        }
        // A push without a body is a legitimate "tickle" (RFC 8030 §5) and needs no encoding.
        if bytes.is_empty() {
            return Ok((ttl.min(MAX_TTL_SECS), Vec::new()));
        }
        match encoding {
            Some("aes128gcm") => {}
            Some("aesgcm") => {
                return Err(bad(
                    "Content-Encoding aesgcm is the pre-RFC 8291 draft; use aes128gcm".into(),
                ))
            }
            Some(other) => return Err(bad(format!("Content-Encoding {other:?} is not aes128gcm"))),
            None => {
                return Err(bad(
                    "an encrypted body needs Content-Encoding: aes128gcm".into()
                ))
            }
        }
        // Decrypted by Mozilla's `ece` (RFC 8188/8291), not by pushwarden's own code, so a
        // message this fake accepts is evidence that the encryption is right.
        let plaintext = ece::decrypt(&ua.keys, &ua.auth, &bytes).map_err(|e| {
            bad(format!(
                "the body does not decrypt for this subscription: {e}"
            ))
        })?;
        Ok((ttl.min(MAX_TTL_SECS), plaintext))
    }

    fn check_vapid(&self, headers: &HeaderMap, ua: &UserAgent) -> Result<(), Refusal> {
        let unauthorized = |text: &str| refuse(StatusCode::UNAUTHORIZED, text);
        let forbidden = |text: String| refuse(StatusCode::FORBIDDEN, text);
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Err(unauthorized(
                "Authorization is required: vapid t=<JWT>, k=<key> (RFC 8292)",
            ));
        };
        let value = value
            .to_str()
            .map_err(|_| unauthorized("Authorization is not ASCII"))?;
        let params = match value.split_once(' ') {
            Some((scheme, params)) if scheme.eq_ignore_ascii_case("vapid") => params,
            _ => {
                return Err(unauthorized(
                    "Authorization scheme is not vapid (RFC 8292; the older WebPush scheme is not accepted)",
                ))
            }
        };
        let mut t = None;
        let mut k = None;
        for param in params.split(',') {
            let Some((name, value)) = param.trim().split_once('=') else {
                return Err(unauthorized("vapid parameters must be name=value"));
            };
            let value = value.trim().trim_matches('"');
            match name.trim().to_ascii_lowercase().as_str() {
                "t" => t = Some(value),
                "k" => k = Some(value),
                _ => {}
            }
        }
        let (Some(t), Some(k)) = (t, k) else {
            return Err(unauthorized("vapid needs both t= and k="));
        };
        let key = decode_b64(k)
            .filter(|key| key.len() == 65 && p256::PublicKey::from_sec1_bytes(key).is_ok())
            .ok_or_else(|| unauthorized("k is not a base64url uncompressed P-256 public key"))?;
        if let Some(expected) = &ua.application_server_key {
            if *expected != key {
                return Err(forbidden(
                    "k is not the applicationServerKey this subscription was created with".into(),
                ));
            }
        }
        let decoding = DecodingKey::from_ec_components(
            &URL_SAFE_NO_PAD.encode(&key[1..33]),
            &URL_SAFE_NO_PAD.encode(&key[33..65]),
        )
        .map_err(|e| forbidden(format!("k is unusable: {e}")))?;
        let (_, claims) = jwt::verify(t, &decoding, Algorithm::ES256)
            .map_err(|e| forbidden(format!("VAPID token refused: {e}")))?;

        let aud = claims.get("aud").and_then(Value::as_str);
        if aud != Some(self.origin.as_str()) {
            return Err(forbidden(format!(
                "VAPID aud {aud:?} is not the push resource's origin {:?}",
                self.origin
            )));
        }
        let now = record::now_secs() as i64;
        let Some(exp) = jwt::numeric_date(&claims, "exp") else {
            return Err(forbidden("VAPID token has no exp".into()));
        };
        if exp <= now - CLOCK_SKEW_SECS {
            return Err(forbidden(format!(
                "VAPID token expired {} s ago",
                now - exp
            )));
        }
        if exp > now + MAX_VAPID_LIFETIME_SECS + CLOCK_SKEW_SECS {
            return Err(forbidden(format!(
                "VAPID exp is {} s ahead; at most 24 h",
                exp - now
            )));
        }
        let sub = claims.get("sub").and_then(Value::as_str);
        if !sub.is_some_and(|s| s.starts_with("mailto:") || s.starts_with("https:")) {
            return Err(forbidden(format!(
                "VAPID sub {sub:?} is not a mailto: or https: contact"
            )));
        }
        Ok(())
    }
}

/// Base64url with or without padding, as subscriptions and VAPID keys come both ways.
fn decode_b64(s: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(s.trim().trim_end_matches('=')).ok()
}

fn text_response(status: StatusCode, text: &str) -> Response<Body> {
    let mut response = Response::new(Body::from(text.to_owned()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscription_id_is_last_segment() {
        let sub = Subscription {
            endpoint: "http://127.0.0.1:1/push/abc".into(),
            p256dh: String::new(),
            auth: String::new(),
        };
        assert_eq!(sub.id(), "abc");
    }
}
