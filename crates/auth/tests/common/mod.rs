//! Shared test helpers: fixture keys, token builders and a fake OpenID
//! authority served by axum on 127.0.0.1:0 that counts its requests.

#![allow(dead_code)] // each test binary uses a different subset

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

pub const RSA_A_PRIVATE: &[u8] = include_bytes!("../fixtures/rsa_a_private.pem");
pub const RSA_A_PUBLIC_SPKI: &[u8] = include_bytes!("../fixtures/rsa_a_public_spki.pem");
pub const RSA_A_PUBLIC_PKCS1: &[u8] = include_bytes!("../fixtures/rsa_a_public_pkcs1.pem");
pub const RSA_B_PRIVATE: &[u8] = include_bytes!("../fixtures/rsa_b_private.pem");
pub const EC_P256_PRIVATE: &[u8] = include_bytes!("../fixtures/ec_p256_private.pem");

pub const SECRET: &[u8] = b"test-secret-of-reasonable-length-0123456789";

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Typical Bitwarden user claims, valid for an hour.
pub fn user_claims() -> Value {
    json!({
        "sub": "4b2b4a3e-54b4-4b8a-9c07-5a2f0f7b0c11",
        "amr": ["Application"],
        "scope": ["api", "offline_access"],
        "device": "d1",
        "devicetype": "ChromeBrowser",
        "orgowner": ["o1", "o2"],
        "exp": now() + 3600,
    })
}

pub fn with(mut claims: Value, key: &str, value: Value) -> Value {
    if let Some(map) = claims.as_object_mut() {
        map.insert(key.to_owned(), value);
    }
    claims
}

pub fn sign(alg: Algorithm, kid: Option<&str>, claims: &Value, key: &EncodingKey) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, key).expect("test signing")
}

pub fn hs256(claims: &Value) -> String {
    sign(
        Algorithm::HS256,
        None,
        claims,
        &EncodingKey::from_secret(SECRET),
    )
}

pub fn rsa_key(pem: &[u8]) -> EncodingKey {
    EncodingKey::from_rsa_pem(pem).expect("fixture RSA key")
}

pub fn ec_key() -> EncodingKey {
    EncodingKey::from_ec_pem(EC_P256_PRIVATE).expect("fixture EC key")
}

/// The public JWK of a private key, with a `kid`.
pub fn jwk(key: &EncodingKey, alg: Algorithm, kid: Option<&str>) -> Value {
    let mut jwk = Jwk::from_encoding_key(key, alg).expect("jwk");
    jwk.common.key_id = kid.map(str::to_owned);
    let mut value = serde_json::to_value(jwk).expect("jwk json");
    if let Some(map) = value.as_object_mut() {
        map.insert("use".into(), json!("sig"));
    }
    value
}

/// Mutable behaviour and request counters of the fake authority.
pub struct AuthorityState {
    pub addr: SocketAddr,
    pub issuer: String,
    pub jwks: parking_lot::Mutex<Value>,
    pub discovery_hits: AtomicUsize,
    pub jwks_hits: AtomicUsize,
    /// When set, both endpoints answer 500.
    pub failing: AtomicBool,
    /// Artificial latency of the JWKS endpoint, to widen race windows.
    pub jwks_delay_ms: AtomicUsize,
}

impl AuthorityState {
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }
    pub fn set_keys(&self, keys: Vec<Value>) {
        *self.jwks.lock() = json!({ "keys": keys });
    }
    pub fn discovery_hits(&self) -> usize {
        self.discovery_hits.load(Ordering::SeqCst)
    }
    pub fn jwks_hits(&self) -> usize {
        self.jwks_hits.load(Ordering::SeqCst)
    }
}

/// Start a fake authority serving the given keys.
pub async fn start_authority(keys: Vec<Value>) -> Arc<AuthorityState> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let state = Arc::new(AuthorityState {
        addr,
        issuer: format!("http://{addr}"),
        jwks: parking_lot::Mutex::new(json!({ "keys": keys })),
        discovery_hits: AtomicUsize::new(0),
        jwks_hits: AtomicUsize::new(0),
        failing: AtomicBool::new(false),
        jwks_delay_ms: AtomicUsize::new(0),
    });
    let app = Router::new()
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/jwks", get(jwks))
        .with_state(state.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    state
}

async fn discovery(State(s): State<Arc<AuthorityState>>) -> Response {
    s.discovery_hits.fetch_add(1, Ordering::SeqCst);
    if s.failing.load(Ordering::SeqCst) {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    Json(json!({
        "issuer": s.issuer,
        "jwks_uri": format!("http://{}/jwks", s.addr),
    }))
    .into_response()
}

async fn jwks(State(s): State<Arc<AuthorityState>>) -> Response {
    s.jwks_hits.fetch_add(1, Ordering::SeqCst);
    let delay = s.jwks_delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay as u64)).await;
    }
    if s.failing.load(Ordering::SeqCst) {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    let body = s.jwks.lock().clone();
    Json(body).into_response()
}
