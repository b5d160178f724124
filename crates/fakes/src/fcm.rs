//! A fake of Firebase Cloud Messaging HTTP v1 together with the Google OAuth token endpoint it
//! needs (<https://firebase.google.com/docs/reference/fcm/rest/v1/projects.messages/send> and
//! <https://developers.google.com/identity/protocols/oauth2/service-account>). FCM has no emulator, so this is the only way to run the
//! whole service-account flow offline.
//!
//! `POST /token` (the service account's `token_uri`) takes the JWT-bearer grant
//! (`grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=<JWT>`) and checks the
//! assertion: RS256, signed by the service account's key (`kid`, if given, must be its
//! `private_key_id`), `iss` = `client_email`, `aud` = the token endpoint's URL, a `scope` that
//! includes `firebase.messaging` (or `cloud-platform`), and `iat`/`exp` describing at most an
//! hour around now. Failures answer 400 in Google's OAuth form: `invalid_grant` for the
//! assertion, `invalid_scope`, `unsupported_grant_type`, `invalid_request`.
//!
//! `POST /v1/projects/{project_id}/messages:send` needs a bearer this fake issued that has not
//! expired or been revoked (401 `UNAUTHENTICATED`), the right project (403
//! `PERMISSION_DENIED`), and a message FCM would take (400 `INVALID_ARGUMENT` with a
//! `BadRequest` field violation): known fields only, exactly one of `token`/`topic`/`condition`,
//! `data` values all strings and no reserved keys (`from`, `message_type`, `google.*`,
//! `gcm.*`), `android.priority` `HIGH`/`NORMAL` (any case), `android.ttl` a duration of at most
//! four weeks, and at most 4096 bytes of payload (2048 for topics). Success is
//! `200 {"name": "projects/{project_id}/messages/{id}"}`.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use http::{header, HeaderMap, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use jsonwebtoken::{Algorithm, DecodingKey};
use parking_lot::Mutex;
use serde_json::{json, Map, Value};

use crate::jwt;
use crate::record::{self, Received, Recorder};
use crate::script::{Reply, ScriptBook};
use crate::server::{Bound, CloseConnection, Handler, Server};

/// The RSA key every fake service account signs with: a throwaway test key, never used for
/// anything real.
const PRIVATE_KEY_PEM: &str = include_str!("../keys/fcm-test-key.pem");
const PUBLIC_KEY_PEM: &str = include_str!("../keys/fcm-test-key.pub.pem");
const PRIVATE_KEY_ID: &str = "f4ce0000000000000000000000000000deadbeef";

const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// Either scope lets a token send; `cloud-platform` grants more but works too.
const SEND_SCOPES: &[&str] = &[
    "https://www.googleapis.com/auth/firebase.messaging",
    "https://www.googleapis.com/auth/cloud-platform",
];
/// Google refuses assertions meant to live longer than an hour.
const MAX_ASSERTION_LIFETIME_SECS: i64 = 3600;
const CLOCK_SKEW_SECS: i64 = 60;
/// FCM's limit on a message's payload; topic messages get half.
const MAX_PAYLOAD_BYTES: usize = 4096;
const MAX_TOPIC_PAYLOAD_BYTES: usize = 2048;
/// `android.ttl` may not exceed four weeks.
const MAX_ANDROID_TTL_SECS: f64 = 2_419_200.0;
const BODY_READ_LIMIT: usize = 256 * 1024;

/// The `errorCode` values of `google.firebase.fcm.v1.FcmError`.
const FCM_ERROR_CODES: &[&str] = &[
    "UNSPECIFIED_ERROR",
    "INVALID_ARGUMENT",
    "UNREGISTERED",
    "SENDER_ID_MISMATCH",
    "QUOTA_EXCEEDED",
    "UNAVAILABLE",
    "INTERNAL",
    "THIRD_PARTY_AUTH_ERROR",
];

#[derive(Clone, Debug)]
pub struct FakeFcmConfig {
    /// The Firebase project the service account belongs to and messages must be sent to.
    pub project_id: String,
    /// Where to listen; 127.0.0.1 on a free port when `None`.
    pub addr: Option<SocketAddr>,
    /// `expires_in` of issued access tokens; Google's are about an hour.
    pub token_lifetime_secs: u64,
}

impl FakeFcmConfig {
    pub fn new(project_id: impl Into<String>) -> Self {
        Self {
            project_id: project_id.into(),
            ..Self::default()
        }
    }
}

impl Default for FakeFcmConfig {
    fn default() -> Self {
        Self {
            project_id: "pushwarden-test".to_owned(),
            addr: None,
            token_lifetime_secs: 3600,
        }
    }
}

/// Full control over a scripted FCM error, for what [`Reply`] cannot say: a specific message
/// text (pushwarden treats an INVALID_ARGUMENT about the "registration token" as a dead token)
/// or extra `details` such as `google.rpc.RetryInfo` or `google.rpc.BadRequest`.
#[derive(Clone, Debug, PartialEq)]
pub struct FcmErrorReply {
    /// HTTP status; the canonical `error.status` is derived from it (404 → `NOT_FOUND` ...).
    pub status: u16,
    /// `errorCode` of the `FcmError` detail; no such detail when `None`.
    pub error_code: Option<String>,
    /// `error.message`; a text like FCM's for the code when `None`.
    pub message: Option<String>,
    /// Further `details` entries, placed before the `FcmError` one.
    pub details: Vec<Value>,
    pub retry_after_secs: Option<u64>,
}

impl FcmErrorReply {
    pub fn new(status: u16, error_code: Option<&str>) -> Self {
        Self {
            status,
            error_code: error_code.map(str::to_owned),
            message: None,
            details: Vec::new(),
            retry_after_secs: None,
        }
    }

    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = Some(message.into());
        self
    }

    pub fn with_detail(mut self, detail: Value) -> Self {
        self.details.push(detail);
        self
    }

    pub fn with_retry_after(mut self, secs: u64) -> Self {
        self.retry_after_secs = Some(secs);
        self
    }
}

/// `reason` becomes the `FcmError` code when it is one (`UNREGISTERED`, `QUOTA_EXCEEDED`...).
/// Otherwise there is no `FcmError` detail, which is how Google reports failures that are not
/// about the message (`UNAUTHENTICATED`, `PERMISSION_DENIED`): a canonical-looking reason
/// (upper case) leaves the message to the status, and any other reason becomes the message.
impl From<Reply> for FcmErrorReply {
    fn from(reply: Reply) -> Self {
        let is_code = FCM_ERROR_CODES.contains(&reply.reason.as_str());
        let looks_canonical = reply
            .reason
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b == b'_');
        Self {
            status: reply.status,
            error_code: is_code.then(|| reply.reason.clone()),
            message: (!looks_canonical).then_some(reply.reason),
            details: Vec::new(),
            retry_after_secs: reply.retry_after_secs,
        }
    }
}

/// A running fake of FCM and its token endpoint. Dropping it stops the server.
pub struct FakeFcm {
    server: Server,
    state: Arc<State>,
}

struct State {
    project_id: String,
    client_email: String,
    token_url: String,
    key: DecodingKey,
    token_lifetime_secs: AtomicU64,
    token_delay: Mutex<Duration>,
    token_requests: AtomicUsize,
    /// Issued access tokens and when each expires.
    access_tokens: Mutex<HashMap<String, Instant>>,
    /// How far the fake's clock runs ahead of the real one ([`FakeFcm::advance_clock`]), so a
    /// test can expire tokens without waiting.
    clock_offset: Mutex<Duration>,
    recorder: Recorder,
    scripts: ScriptBook<FcmErrorReply>,
}

crate::fake_common!(FakeFcm);

impl FakeFcm {
    pub async fn start(config: FakeFcmConfig) -> io::Result<FakeFcm> {
        let key = DecodingKey::from_rsa_pem(PUBLIC_KEY_PEM.as_bytes())
            .map_err(|e| io::Error::other(format!("embedded RSA key: {e}")))?;
        let bound = Bound::bind(config.addr).await?;
        let state = Arc::new(State {
            client_email: format!(
                "pushwarden-fake@{}.iam.gserviceaccount.com",
                config.project_id
            ),
            project_id: config.project_id,
            token_url: format!("{}/token", bound.url()),
            key,
            token_lifetime_secs: AtomicU64::new(config.token_lifetime_secs),
            token_delay: Mutex::new(Duration::ZERO),
            token_requests: AtomicUsize::new(0),
            access_tokens: Mutex::new(HashMap::new()),
            clock_offset: Mutex::new(Duration::ZERO),
            recorder: Recorder::new("fcm"),
            scripts: ScriptBook::new(),
        });
        let server = bound.serve(state.clone());
        Ok(FakeFcm { server, state })
    }

    pub fn project_id(&self) -> &str {
        &self.state.project_id
    }

    /// The service account's `client_email`, the only issuer the token endpoint trusts.
    pub fn client_email(&self) -> &str {
        &self.state.client_email
    }

    /// `{url}/token`: the service account's `token_uri` and the audience its assertions need.
    pub fn token_url(&self) -> &str {
        &self.state.token_url
    }

    /// A complete service-account key file for this fake, shaped like the ones Google issues.
    pub fn service_account_json(&self) -> String {
        let email = &self.state.client_email;
        serde_json::to_string_pretty(&json!({
            "type": "service_account",
            "project_id": self.state.project_id,
            "private_key_id": PRIVATE_KEY_ID,
            "private_key": PRIVATE_KEY_PEM,
            "client_email": email,
            "client_id": "100000000000000000001",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": self.state.token_url,
            "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
            "client_x509_cert_url": format!(
                "https://www.googleapis.com/robot/v1/metadata/x509/{}",
                email.replace('@', "%40")
            ),
            "universe_domain": "googleapis.com",
        }))
        .unwrap_or_default()
    }

    /// Requests to the token endpoint, granted or not.
    pub fn token_requests(&self) -> usize {
        self.state.token_requests.load(Ordering::SeqCst)
    }

    /// The next `times` valid messages to `token` get `reply` instead of success. Requests
    /// refused for a bad bearer or message do not use up the script.
    pub fn script(&self, token: &str, reply: Reply, times: usize) {
        self.state.scripts.push(token, reply.into(), times);
    }

    /// Like [`FakeFcm::script`], with full control over the error body.
    pub fn script_error(&self, token: &str, reply: FcmErrorReply, times: usize) {
        self.state.scripts.push(token, reply, times);
    }

    /// Changes `expires_in` for tokens issued from now on.
    pub fn set_token_lifetime(&self, secs: u64) {
        self.state.token_lifetime_secs.store(secs, Ordering::SeqCst);
    }

    /// Moves the fake's clock forward: access tokens expire as if `by` had passed.
    pub fn advance_clock(&self, by: Duration) {
        *self.state.clock_offset.lock() += by;
    }

    /// Slows the token endpoint, so concurrent senders overlap with a refresh.
    pub fn set_token_delay(&self, delay: Duration) {
        *self.state.token_delay.lock() = delay;
    }

    /// Invalidates every access token issued so far, as a revoked key would: the next send
    /// with one gets 401 and the client must fetch a new token.
    pub fn revoke_access_tokens(&self) {
        self.state.access_tokens.lock().clear();
    }
}

impl Handler for State {
    type Conn = ();

    async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        _conn: Arc<()>,
    ) -> Result<Response<Body>, CloseConnection> {
        let (parts, body) = req.into_parts();
        if parts.uri.path() == "/token" {
            return Ok(self.token_endpoint(&parts, body).await);
        }
        self.recorder.count_request();
        let response = self.send_endpoint(&parts, body).await;
        self.recorder.pause().await;
        Ok(response)
    }
}

/// An OAuth refusal: 400 with Google's `{"error", "error_description"}`.
struct OAuthError {
    error: &'static str,
    description: String,
}

fn oauth_error(error: &'static str, description: impl Into<String>) -> OAuthError {
    OAuthError {
        error,
        description: description.into(),
    }
}

/// A send refusal, rendered as Google's error envelope.
struct SendError {
    status: StatusCode,
    message: String,
    details: Vec<Value>,
}

impl State {
    /// The fake's clock: the real one plus whatever a test advanced it by.
    fn now(&self) -> Instant {
        Instant::now() + *self.clock_offset.lock()
    }

    async fn token_endpoint(&self, parts: &http::request::Parts, body: Incoming) -> Response<Body> {
        self.token_requests.fetch_add(1, Ordering::SeqCst);
        let delay = *self.token_delay.lock();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        match self.grant(parts, body).await {
            Ok(response) => response,
            Err(e) => {
                self.recorder.reject(
                    None,
                    400,
                    e.error,
                    &format!("token endpoint: {}", e.description),
                );
                json_response(
                    StatusCode::BAD_REQUEST,
                    &json!({ "error": e.error, "error_description": e.description }),
                )
            }
        }
    }

    async fn grant(
        &self,
        parts: &http::request::Parts,
        body: Incoming,
    ) -> Result<Response<Body>, OAuthError> {
        if parts.method != Method::POST {
            return Err(oauth_error(
                "invalid_request",
                format!("{} is not POST", parts.method),
            ));
        }
        let form_encoded = record::header(&parts.headers, "content-type")
            .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
        if !form_encoded {
            return Err(oauth_error(
                "invalid_request",
                "content-type must be application/x-www-form-urlencoded",
            ));
        }
        let bytes = axum::body::to_bytes(Body::new(body), BODY_READ_LIMIT)
            .await
            .map_err(|e| oauth_error("invalid_request", format!("body unreadable: {e}")))?;
        let mut grant_type = None;
        let mut assertion = None;
        for (key, value) in url::form_urlencoded::parse(&bytes) {
            match &*key {
                "grant_type" => grant_type = Some(value.into_owned()),
                "assertion" => assertion = Some(value.into_owned()),
                _ => {}
            }
        }
        match grant_type.as_deref() {
            Some(GRANT_TYPE) => {}
            Some(other) => {
                return Err(oauth_error(
                    "unsupported_grant_type",
                    format!("Invalid grant_type: {other}"),
                ))
            }
            None => {
                return Err(oauth_error(
                    "invalid_request",
                    "Missing required parameter: grant_type",
                ))
            }
        }
        let assertion = assertion.ok_or_else(|| {
            oauth_error("invalid_request", "Missing required parameter: assertion")
        })?;
        let scope = self.check_assertion(&assertion)?;

        let access_token = format!("ya29.fake-{}", record::random_hex(24));
        let lifetime = self.token_lifetime_secs.load(Ordering::SeqCst);
        self.access_tokens.lock().insert(
            access_token.clone(),
            self.now() + Duration::from_secs(lifetime),
        );
        tracing::debug!(scope = %scope, "fake FCM issued an access token");
        Ok(json_response(
            StatusCode::OK,
            &json!({
                "access_token": access_token,
                "expires_in": lifetime,
                "token_type": "Bearer",
            }),
        ))
    }

    /// Checks the signed assertion and returns the scope granted.
    fn check_assertion(&self, assertion: &str) -> Result<String, OAuthError> {
        let grant = |d: String| oauth_error("invalid_grant", d);
        let header = jwt::header(assertion).map_err(|e| grant(e.to_string()))?;
        if let Some(kid) = &header.kid {
            if kid != PRIVATE_KEY_ID {
                return Err(grant(format!(
                    "Invalid JWT Signature: kid {kid:?} is not this account's private_key_id"
                )));
            }
        }
        let (_, claims) = jwt::verify(assertion, &self.key, Algorithm::RS256)
            .map_err(|e| grant(format!("Invalid JWT Signature: {e}")))?;

        let iss = claims.get("iss").and_then(Value::as_str);
        if iss != Some(self.client_email.as_str()) {
            return Err(grant(format!(
                "Invalid grant: account not found (iss {iss:?}, expected {:?})",
                self.client_email
            )));
        }
        let aud = claims.get("aud").and_then(Value::as_str);
        if aud != Some(self.token_url.as_str()) {
            return Err(grant(format!(
                "Invalid JWT: Failed audience check (aud {aud:?}, expected {:?})",
                self.token_url
            )));
        }
        let timeframe = |why: &str| {
            grant(format!(
                "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable \
                 timeframe. Check your iat and exp values in the JWT claim. ({why})"
            ))
        };
        let iat = jwt::numeric_date(&claims, "iat").ok_or_else(|| timeframe("no iat"))?;
        let exp = jwt::numeric_date(&claims, "exp").ok_or_else(|| timeframe("no exp"))?;
        let now = record::now_secs() as i64;
        if exp <= iat {
            return Err(timeframe("exp is not after iat"));
        }
        if exp - iat > MAX_ASSERTION_LIFETIME_SECS {
            return Err(timeframe(&format!("exp - iat is {} s", exp - iat)));
        }
        if iat > now + CLOCK_SKEW_SECS {
            return Err(timeframe("iat is in the future"));
        }
        if exp < now - CLOCK_SKEW_SECS {
            return Err(timeframe("exp has passed"));
        }
        let scope = claims
            .get("scope")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !scope.split_whitespace().any(|s| SEND_SCOPES.contains(&s)) {
            return Err(oauth_error(
                "invalid_scope",
                format!("scope {scope:?} does not allow sending FCM messages"),
            ));
        }
        Ok(scope.to_owned())
    }

    async fn send_endpoint(&self, parts: &http::request::Parts, body: Incoming) -> Response<Body> {
        let mut target = None;
        match self.send(parts, body, &mut target).await {
            Ok(response) => response,
            Err(e) => {
                let canonical = canonical_status(e.status.as_u16());
                self.recorder
                    .reject(target.as_deref(), e.status.as_u16(), canonical, &e.message);
                google_error(e.status.as_u16(), &e.message, e.details, None)
            }
        }
    }

    async fn send(
        &self,
        parts: &http::request::Parts,
        body: Incoming,
        target: &mut Option<String>,
    ) -> Result<Response<Body>, SendError> {
        let path = parts.uri.path();
        let project = path
            .strip_prefix("/v1/projects/")
            .and_then(|rest| rest.split_once('/'))
            .filter(|(_, action)| {
                action.eq_ignore_ascii_case("messages:send")
                    || action.eq_ignore_ascii_case("messages%3Asend")
            })
            .map(|(project, _)| project);
        let Some(project) = project else {
            return Err(send_error(
                StatusCode::NOT_FOUND,
                format!("{path} is not /v1/projects/{{project}}/messages:send"),
            ));
        };
        if parts.method != Method::POST {
            return Err(send_error(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("{} is not POST", parts.method),
            ));
        }
        self.check_bearer(&parts.headers)?;
        if project != self.project_id {
            return Err(send_error(
                StatusCode::FORBIDDEN,
                format!(
                    "Permission 'cloudmessaging.messages.create' denied on resource \
                     '//cloudresourcemanager.googleapis.com/projects/{project}' (or it may not exist)."
                ),
            ));
        }
        let bytes = axum::body::to_bytes(Body::new(body), BODY_READ_LIMIT)
            .await
            .map_err(|e| send_error(StatusCode::BAD_REQUEST, format!("body unreadable: {e}")))?;
        let request: Value = serde_json::from_slice(&bytes).map_err(|e| {
            send_error(
                StatusCode::BAD_REQUEST,
                format!("Invalid JSON payload received. {e}"),
            )
        })?;
        let message = request.get("message").cloned().unwrap_or(Value::Null);
        *target = message_target(&message);
        if let Some(t) = target.as_deref() {
            self.recorder.count_token(t);
        }
        let validate_only = check_request(&request).map_err(|v| v.into_error())?;
        let Some(target) = target.clone() else {
            // check_request guarantees a target; this only keeps the types honest.
            return Err(send_error(
                StatusCode::BAD_REQUEST,
                "Recipient of the message is not set.".to_owned(),
            ));
        };

        if validate_only {
            return Ok(json_response(
                StatusCode::OK,
                &json!({ "name": format!("projects/{}/messages/fake_message_id", self.project_id) }),
            ));
        }
        if let Some(reply) = self.scripts.take(&target).filter(|r| r.status >= 300) {
            let shown = reply
                .error_code
                .clone()
                .unwrap_or_else(|| canonical_status(reply.status).to_owned());
            self.recorder.scripted(&target, reply.status, &shown);
            return Ok(render_reply(&reply));
        }
        let name = format!(
            "projects/{}/messages/0:{}%{}",
            self.project_id,
            record::now_millis() * 1000,
            record::random_hex(8)
        );
        self.recorder.accept(Received {
            token: target,
            body: message,
            headers: record::header_map(&parts.headers),
        });
        Ok(json_response(StatusCode::OK, &json!({ "name": name })))
    }

    fn check_bearer(&self, headers: &HeaderMap) -> Result<(), SendError> {
        let unauthenticated = |why: &str| SendError {
            status: StatusCode::UNAUTHORIZED,
            message: format!(
                "Request had invalid authentication credentials. Expected OAuth 2 access token, \
                 login cookie or other valid authentication credential. ({why})"
            ),
            details: Vec::new(),
        };
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Err(SendError {
                status: StatusCode::UNAUTHORIZED,
                message: "Request is missing required authentication credential. Expected OAuth \
                          2 access token, login cookie or other valid authentication credential."
                    .to_owned(),
                details: Vec::new(),
            });
        };
        let bearer = value
            .to_str()
            .ok()
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .ok_or_else(|| unauthenticated("authorization is not `Bearer <token>`"))?;
        match self.access_tokens.lock().get(bearer) {
            None => Err(unauthenticated("unknown or revoked access token")),
            Some(expiry) if self.now() >= *expiry => {
                Err(unauthenticated("the access token has expired"))
            }
            Some(_) => Ok(()),
        }
    }
}

fn send_error(status: StatusCode, message: String) -> SendError {
    SendError {
        status,
        message,
        details: Vec::new(),
    }
}

/// A message FCM would refuse, with the field to blame.
struct Violation {
    field: String,
    description: String,
}

fn violation(field: impl Into<String>, description: impl Into<String>) -> Violation {
    Violation {
        field: field.into(),
        description: description.into(),
    }
}

impl Violation {
    /// Rendered as FCM does: the description as message, a `BadRequest` field violation, and
    /// the `INVALID_ARGUMENT` FcmError code.
    fn into_error(self) -> SendError {
        SendError {
            status: StatusCode::BAD_REQUEST,
            message: self.description.clone(),
            details: vec![
                json!({
                    "@type": "type.googleapis.com/google.rpc.BadRequest",
                    "fieldViolations": [{ "field": self.field, "description": self.description }],
                }),
                json!({
                    "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
                    "errorCode": "INVALID_ARGUMENT",
                }),
            ],
        }
    }
}

/// The target as [`Received::token`] reports it.
fn message_target(message: &Value) -> Option<String> {
    if let Some(token) = message.get("token").and_then(Value::as_str) {
        return Some(token.to_owned());
    }
    if let Some(topic) = message.get("topic").and_then(Value::as_str) {
        let topic = topic.strip_prefix("/topics/").unwrap_or(topic);
        return Some(format!("/topics/{topic}"));
    }
    message
        .get("condition")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// Proto JSON accepts both spellings of every field.
fn known_field(key: &str, fields: &[&str]) -> bool {
    fields.iter().any(|f| {
        *f == key || {
            let camel = snake_to_camel(f);
            camel == key
        }
    })
}

fn snake_to_camel(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut upper = false;
    for c in s.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

fn get<'a>(object: &'a Map<String, Value>, field: &str) -> Option<&'a Value> {
    object
        .get(field)
        .or_else(|| object.get(&snake_to_camel(field)))
        .filter(|v| !v.is_null())
}

fn unknown_fields(object: &Map<String, Value>, fields: &[&str], at: &str) -> Result<(), Violation> {
    match object.keys().find(|k| !known_field(k, fields)) {
        Some(key) => Err(violation(
            at,
            format!("Invalid JSON payload received. Unknown name \"{key}\" at '{at}': Cannot find field."),
        )),
        None => Ok(()),
    }
}

const REQUEST_FIELDS: &[&str] = &["message", "validate_only"];
const MESSAGE_FIELDS: &[&str] = &[
    "name",
    "data",
    "notification",
    "android",
    "webpush",
    "apns",
    "fcm_options",
    "token",
    "topic",
    "condition",
];
const ANDROID_FIELDS: &[&str] = &[
    "collapse_key",
    "priority",
    "ttl",
    "restricted_package_name",
    "data",
    "notification",
    "fcm_options",
    "direct_boot_ok",
    "bandwidth_constrained_ok",
    "restricted_satellite_ok",
];

/// Checks a send request the way FCM's schema does; returns `validate_only`.
fn check_request(request: &Value) -> Result<bool, Violation> {
    let Some(request) = request.as_object() else {
        return Err(violation(
            "",
            "Invalid JSON payload received. Expected an object.",
        ));
    };
    unknown_fields(request, REQUEST_FIELDS, "")?;
    let validate_only = match get(request, "validate_only") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            return Err(violation(
                "validate_only",
                format!("Invalid value at 'validate_only' (TYPE_BOOL), {other}"),
            ))
        }
    };
    let Some(message) = get(request, "message") else {
        return Err(violation(
            "message",
            "Request contains an invalid argument: no message.",
        ));
    };
    let Some(message) = message.as_object() else {
        return Err(violation(
            "message",
            "Invalid value at 'message': not an object.",
        ));
    };
    unknown_fields(message, MESSAGE_FIELDS, "message")?;

    let targets: Vec<&str> = ["token", "topic", "condition"]
        .into_iter()
        .filter(|t| get(message, t).is_some())
        .collect();
    match targets.as_slice() {
        [] => return Err(violation("message", "Recipient of the message is not set.")),
        [_] => {}
        [first, second, ..] => {
            return Err(violation(
                format!("message.{second}"),
                format!(
                    "Invalid value at 'message' (oneof), oneof field 'target' is already set \
                     ({first}). Cannot set '{second}'"
                ),
            ))
        }
    }
    let target = targets[0];
    let Some(value) = get(message, target).and_then(Value::as_str) else {
        return Err(violation(
            format!("message.{target}"),
            format!("Invalid value at 'message.{target}' (TYPE_STRING)"),
        ));
    };
    match target {
        "token" => {
            if value.is_empty() || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(violation(
                    "message.token",
                    "The registration token is not a valid FCM registration token",
                ));
            }
        }
        "topic" => {
            let name = value.strip_prefix("/topics/").unwrap_or(value);
            let ok = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.~%".contains(&b));
            if !ok {
                return Err(violation(
                    "message.topic",
                    format!("Invalid topic name {value:?}"),
                ));
            }
        }
        _ => {
            if value.trim().is_empty() {
                return Err(violation(
                    "message.condition",
                    "Invalid condition expression",
                ));
            }
        }
    }

    let mut payload = 0;
    if let Some(data) = get(message, "data") {
        payload += check_data(data, "message.data")?;
    }
    if let Some(notification) = get(message, "notification") {
        payload += check_notification(notification, "message.notification")?;
    }
    let android = get(message, "android");
    if let Some(android) = android {
        payload += check_android(android)?;
    }
    for (section, maps) in [
        ("apns", &["headers"][..]),
        ("webpush", &["headers", "data"][..]),
    ] {
        if let Some(config) = get(message, section) {
            let Some(config) = config.as_object() else {
                return Err(violation(format!("message.{section}"), "not an object"));
            };
            for map in maps {
                if let Some(value) = get(config, map) {
                    check_string_map(value, &format!("message.{section}.{map}"))?;
                }
            }
        }
    }
    let limit = if target == "token" {
        MAX_PAYLOAD_BYTES
    } else {
        MAX_TOPIC_PAYLOAD_BYTES
    };
    if payload > limit {
        let what = if android.is_some() {
            "Android message is too big"
        } else {
            "Message is too big"
        };
        return Err(violation(
            "message",
            format!("{what} ({payload} bytes of payload; at most {limit})"),
        ));
    }
    Ok(validate_only)
}

/// A map of string to string; returns its size in bytes (keys and values).
fn check_string_map(value: &Value, at: &str) -> Result<usize, Violation> {
    let Some(map) = value.as_object() else {
        return Err(violation(at, format!("Invalid value at '{at}': not a map")));
    };
    let mut size = 0;
    for (key, value) in map {
        let Some(text) = value.as_str() else {
            return Err(violation(
                format!("{at}[{key}]"),
                format!("Invalid value at '{at}[{key}].value' (TYPE_STRING), {value}"),
            ));
        };
        size += key.len() + text.len();
    }
    Ok(size)
}

fn check_data(value: &Value, at: &str) -> Result<usize, Violation> {
    let size = check_string_map(value, at)?;
    if let Some(map) = value.as_object() {
        for key in map.keys() {
            let reserved = matches!(key.as_str(), "from" | "message_type")
                || key.starts_with("google.")
                || key.starts_with("gcm.");
            if reserved {
                return Err(violation(
                    format!("{at}[{key}]"),
                    format!("Invalid data payload key: {key} (reserved)"),
                ));
            }
        }
    }
    Ok(size)
}

fn check_notification(value: &Value, at: &str) -> Result<usize, Violation> {
    let Some(map) = value.as_object() else {
        return Err(violation(
            at,
            format!("Invalid value at '{at}': not an object"),
        ));
    };
    let mut size = 0;
    for field in ["title", "body", "image"] {
        match get(map, field) {
            None => {}
            Some(Value::String(s)) => size += s.len(),
            Some(other) => {
                return Err(violation(
                    format!("{at}.{field}"),
                    format!("Invalid value at '{at}.{field}' (TYPE_STRING), {other}"),
                ))
            }
        }
    }
    Ok(size)
}

fn check_android(value: &Value) -> Result<usize, Violation> {
    let at = "message.android";
    let Some(android) = value.as_object() else {
        return Err(violation(
            at,
            "Invalid value at 'message.android': not an object",
        ));
    };
    unknown_fields(android, ANDROID_FIELDS, at)?;
    if let Some(priority) = get(android, "priority") {
        let ok = priority
            .as_str()
            .is_some_and(|p| p.eq_ignore_ascii_case("high") || p.eq_ignore_ascii_case("normal"));
        if !ok {
            return Err(violation(
                "message.android.priority",
                format!(
                    "Invalid value at 'message.android.priority' \
                     (type.googleapis.com/google.firebase.fcm.v1.AndroidMessagePriority), {priority}"
                ),
            ));
        }
    }
    if let Some(ttl) = get(android, "ttl") {
        let secs = ttl
            .as_str()
            .and_then(|t| t.strip_suffix('s'))
            .and_then(|t| t.parse::<f64>().ok())
            .filter(|s| s.is_finite());
        match secs {
            Some(s) if (0.0..=MAX_ANDROID_TTL_SECS).contains(&s) => {}
            Some(_) => {
                return Err(violation(
                    "message.android.ttl",
                    format!("TTL {ttl} is out of range; at most 4 weeks"),
                ))
            }
            None => {
                return Err(violation(
                    "message.android.ttl",
                    format!(
                        "Invalid value at 'message.android.ttl' \
                         (type.googleapis.com/google.protobuf.Duration), {ttl}"
                    ),
                ))
            }
        }
    }
    if let Some(key) = get(android, "collapse_key") {
        if !key.is_string() {
            return Err(violation(
                "message.android.collapse_key",
                "Invalid value at 'message.android.collapse_key' (TYPE_STRING)",
            ));
        }
    }
    let mut size = 0;
    if let Some(data) = get(android, "data") {
        size += check_data(data, "message.android.data")?;
    }
    if let Some(notification) = get(android, "notification") {
        if !notification.is_object() {
            return Err(violation("message.android.notification", "not an object"));
        }
    }
    Ok(size)
}

/// Google's canonical code for an HTTP status.
fn canonical_status(status: u16) -> &'static str {
    match status {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        405 | 501 => "UNIMPLEMENTED",
        409 => "ABORTED",
        412 => "FAILED_PRECONDITION",
        429 => "RESOURCE_EXHAUSTED",
        499 => "CANCELLED",
        500 => "INTERNAL",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ => "UNKNOWN",
    }
}

/// What FCM says alongside each code.
fn default_message(error_code: Option<&str>, status: u16) -> &'static str {
    match error_code {
        Some("UNREGISTERED") => "Requested entity was not found.",
        Some("INVALID_ARGUMENT") => "The registration token is not a valid FCM registration token",
        Some("SENDER_ID_MISMATCH") => "SenderId mismatch",
        Some("QUOTA_EXCEEDED") => "Quota exceeded for quota metric 'Send requests'.",
        Some("UNAVAILABLE") => "The service is currently unavailable.",
        Some("INTERNAL") => "Internal error encountered.",
        Some("THIRD_PARTY_AUTH_ERROR") => "Auth error from APNS or Web Push Service",
        _ => match status {
            401 => "Request had invalid authentication credentials.",
            403 => "The caller does not have permission",
            404 => "Requested entity was not found.",
            429 => "Resource has been exhausted (e.g. check quota).",
            503 => "The service is currently unavailable.",
            500 => "Internal error encountered.",
            _ => "Request contains an invalid argument.",
        },
    }
}

fn render_reply(reply: &FcmErrorReply) -> Response<Body> {
    let message = reply
        .message
        .clone()
        .unwrap_or_else(|| default_message(reply.error_code.as_deref(), reply.status).to_owned());
    let mut response = google_error(
        reply.status,
        &message,
        reply.details.clone(),
        reply.error_code.as_deref(),
    );
    if let Some(secs) = reply.retry_after_secs {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, http::HeaderValue::from(secs));
    }
    response
}

/// `{"error": {code, message, status, details}}` with an `FcmError` detail when `fcm_code` is
/// given.
fn google_error(
    status: u16,
    message: &str,
    mut details: Vec<Value>,
    fcm_code: Option<&str>,
) -> Response<Body> {
    if let Some(code) = fcm_code {
        details.push(json!({
            "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
            "errorCode": code,
        }));
    }
    let status_code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(
        status_code,
        &json!({ "error": {
            "code": status,
            "message": message,
            "status": canonical_status(status),
            "details": details,
        }}),
    )
}

fn json_response(status: StatusCode, body: &Value) -> Response<Body> {
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json; charset=UTF-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(v: Value) -> Result<bool, String> {
        check_request(&v).map_err(|e| e.description)
    }

    #[test]
    fn schema_checks() {
        assert_eq!(check(json!({"message": {"token": "t"}})), Ok(false));
        assert_eq!(
            check(json!({"validateOnly": true, "message": {"token": "t"}})),
            Ok(true)
        );
        assert!(check(json!({"message": {}})).is_err());
        assert!(check(json!({"message": {"token": "t", "topic": "x"}})).is_err());
        assert!(check(json!({"message": {"token": "t", "bogus": 1}})).is_err());
        assert!(check(json!({"message": {"token": "t", "data": {"n": 1}}})).is_err());
        assert!(check(json!({"message": {"token": "t", "data": {"from": "x"}}})).is_err());
        assert!(check(json!({"message": {"token": "t", "data": {"gcm.x": "x"}}})).is_err());
        assert!(
            check(json!({"message": {"token": "t", "android": {"priority": "urgent"}}})).is_err()
        );
        assert!(check(
            json!({"message": {"token": "t", "android": {"priority": "high", "ttl": "3600s"}}})
        )
        .is_ok());
        assert!(check(json!({"message": {"token": "t", "android": {"ttl": "9999999s"}}})).is_err());
        assert!(check(json!({"message": {"token": "t", "android": {"collapseKey": "k"}}})).is_ok());
        let big = "x".repeat(5000);
        assert!(check(json!({"message": {"token": "t", "data": {"a": big}}})).is_err());
        let mid = "x".repeat(3000);
        assert!(check(json!({"message": {"token": "t", "data": {"a": mid.clone()}}})).is_ok());
        assert!(check(json!({"message": {"topic": "news", "data": {"a": mid}}})).is_err());
    }

    #[test]
    fn reply_conversion() {
        let r = FcmErrorReply::from(Reply::new(404, "UNREGISTERED"));
        assert_eq!(r.error_code.as_deref(), Some("UNREGISTERED"));
        let r = FcmErrorReply::from(Reply::new(401, "UNAUTHENTICATED"));
        assert_eq!(r.error_code, None);
        assert_eq!(r.message, None);
        let r = FcmErrorReply::from(Reply::new(400, "Android message is too big"));
        assert_eq!(r.error_code, None);
        assert_eq!(r.message.as_deref(), Some("Android message is too big"));
    }
}
