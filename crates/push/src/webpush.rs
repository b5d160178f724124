//! Web Push: RFC 8291 message encryption (aes128gcm), RFC 8292 VAPID, and the RFC 8030 send.
//!
//! UnifiedPush (AND_3.0.0 and later) is Web Push on the wire, so the same sender serves both; the
//! only extra is [`check_endpoint`], because UnifiedPush endpoints are URLs supplied by users.
//!
//! Everything except [`send`] is pure and synchronous so it can be pinned by test vectors.

use std::collections::HashMap;
use std::time::Duration;

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes128Gcm, Nonce};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hkdf::Hkdf;
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};
use p256::elliptic_curve::sec1::ToEncodedPoint as _;
use p256::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _, LineEnding};
use p256::{PublicKey, SecretKey};
use parking_lot::Mutex;
use rand::RngCore as _;
use sha2::Sha256;
use url::{Host, Url};

/// Record size written into the header. One record always fits because a push service need not
/// accept more than 4096 bytes of body (RFC 8291 §4), and we never split.
const RECORD_SIZE: u32 = 4096;
/// salt (16) ‖ rs (4) ‖ idlen (1) ‖ keyid (65).
const HEADER_LEN: usize = 16 + 4 + 1 + 65;
const TAG_LEN: usize = 16;
/// Largest plaintext that keeps the whole body within 4096 bytes: 4096 - 86 - 16 - 1 (delimiter).
pub const MAX_PLAINTEXT: usize = RECORD_SIZE as usize - HEADER_LEN - TAG_LEN - 1;
/// RFC 8292 caps `exp` at 24 h; 12 h leaves room for clock skew at the push service.
const VAPID_LIFETIME_SECS: u64 = 12 * 3600;
/// A cached token is replaced once less than this remains, so a request that sits in a retry
/// queue for a while still carries a valid token.
const VAPID_REFRESH_MARGIN_SECS: u64 = 3600;

#[derive(Debug, thiserror::Error)]
pub enum WebPushError {
    #[error("{0} is not valid base64url")]
    Base64(&'static str),
    #[error("invalid key: {0}")]
    InvalidKey(&'static str),
    #[error("payload of {len} bytes exceeds the Web Push limit of {max}")]
    PayloadTooLarge { len: usize, max: usize },
    #[error("cannot decrypt: {0}")]
    Decrypt(&'static str),
    #[error("encryption failed")]
    Encrypt,
    #[error("invalid VAPID key PEM: {0}")]
    Pem(String),
    #[error("endpoint refused: {0}")]
    EndpointRefused(String),
}

/// A browser or UnifiedPush subscription (`PushSubscription.toJSON()` shape, decoded).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscription {
    pub endpoint: Url,
    /// The user agent's ECDH public key, uncompressed SEC1 (65 bytes).
    pub p256dh: Vec<u8>,
    /// The 16-byte authentication secret.
    pub auth: Vec<u8>,
}

/// Browsers emit unpadded base64url, but some libraries pad and some clients send standard
/// base64; accept all of them since the bytes are what matter.
fn decode_b64(field: &'static str, s: &str) -> Result<Vec<u8>, WebPushError> {
    let s = s.trim();
    let normalised: String = s
        .trim_end_matches('=')
        .chars()
        .map(|c| match c {
            '+' => '-',
            '/' => '_',
            c => c,
        })
        .collect();
    URL_SAFE_NO_PAD
        .decode(normalised.as_bytes())
        .map_err(|_| WebPushError::Base64(field))
}

fn parse_ua_public(bytes: &[u8]) -> Result<PublicKey, WebPushError> {
    // RFC 8291 §3.1 mandates the uncompressed form; a compressed point would also change the
    // key_info bytes, so refuse it rather than silently re-encode.
    if bytes.len() != 65 || bytes[0] != 0x04 {
        return Err(WebPushError::InvalidKey(
            "p256dh must be a 65-byte uncompressed P-256 point",
        ));
    }
    PublicKey::from_sec1_bytes(bytes)
        .map_err(|_| WebPushError::InvalidKey("p256dh is not a point on P-256"))
}

impl Subscription {
    pub fn from_base64url(endpoint: Url, p256dh: &str, auth: &str) -> Result<Self, WebPushError> {
        let p256dh = decode_b64("p256dh", p256dh)?;
        parse_ua_public(&p256dh)?;
        let auth = decode_b64("auth", auth)?;
        if auth.len() != 16 {
            return Err(WebPushError::InvalidKey("auth must be 16 bytes"));
        }
        Ok(Self {
            endpoint,
            p256dh,
            auth,
        })
    }
}

/// Secret keys from `rand` 0.9 bytes: p256 0.13 is built on rand_core 0.6, so we cannot hand it
/// `rand::rng()` directly. Rejection-sample until the bytes are a valid non-zero scalar (the
/// chance of a retry is about 2^-32).
fn random_secret_key() -> SecretKey {
    let mut rng = rand::rng();
    loop {
        let mut bytes = [0u8; 32];
        rng.fill_bytes(&mut bytes);
        if let Ok(key) = SecretKey::from_slice(&bytes) {
            return key;
        }
    }
}

fn uncompressed(key: &PublicKey) -> Vec<u8> {
    key.to_encoded_point(false).as_bytes().to_vec()
}

/// RFC 8291 §3.3–3.4 followed by RFC 8188 §2.2–2.3: returns (CEK, base nonce).
fn derive_key_nonce(
    ecdh_secret: &[u8],
    auth: &[u8],
    ua_public: &[u8],
    as_public: &[u8],
    salt: &[u8],
) -> Result<([u8; 16], [u8; 12]), WebPushError> {
    let mut key_info = Vec::with_capacity(14 + 65 + 65);
    key_info.extend_from_slice(b"WebPush: info\0");
    key_info.extend_from_slice(ua_public);
    key_info.extend_from_slice(as_public);
    let mut ikm = [0u8; 32];
    Hkdf::<Sha256>::new(Some(auth), ecdh_secret)
        .expand(&key_info, &mut ikm)
        .map_err(|_| WebPushError::Encrypt)?;

    let prk = Hkdf::<Sha256>::new(Some(salt), &ikm);
    let mut cek = [0u8; 16];
    let mut nonce = [0u8; 12];
    prk.expand(b"Content-Encoding: aes128gcm\0", &mut cek)
        .map_err(|_| WebPushError::Encrypt)?;
    prk.expand(b"Content-Encoding: nonce\0", &mut nonce)
        .map_err(|_| WebPushError::Encrypt)?;
    Ok((cek, nonce))
}

/// RFC 8188 §2.3: the nonce for record `seq` is the base nonce XOR seq (big-endian, right-aligned).
fn record_nonce(base: &[u8; 12], seq: u64) -> [u8; 12] {
    let mut nonce = *base;
    for (n, s) in nonce[4..].iter_mut().zip(seq.to_be_bytes()) {
        *n ^= s;
    }
    nonce
}

/// Encrypts `plaintext` for `sub` with a fresh ephemeral key and salt (RFC 8291 aes128gcm).
pub fn encrypt(sub: &Subscription, plaintext: &[u8]) -> Result<Vec<u8>, WebPushError> {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    encrypt_with(sub, plaintext, &random_secret_key(), &salt)
}

/// The deterministic core of [`encrypt`]; split out so the RFC 8291 Appendix A vector can pin it.
pub(crate) fn encrypt_with(
    sub: &Subscription,
    plaintext: &[u8],
    ephemeral: &SecretKey,
    salt: &[u8; 16],
) -> Result<Vec<u8>, WebPushError> {
    if plaintext.len() > MAX_PLAINTEXT {
        return Err(WebPushError::PayloadTooLarge {
            len: plaintext.len(),
            max: MAX_PLAINTEXT,
        });
    }
    if sub.auth.len() != 16 {
        return Err(WebPushError::InvalidKey("auth must be 16 bytes"));
    }
    let ua_public = parse_ua_public(&sub.p256dh)?;
    let as_public = uncompressed(&ephemeral.public_key());
    let shared = p256::ecdh::diffie_hellman(ephemeral.to_nonzero_scalar(), ua_public.as_affine());
    let (cek, nonce) = derive_key_nonce(
        &shared.raw_secret_bytes()[..],
        &sub.auth,
        &sub.p256dh,
        &as_public,
        salt,
    )?;

    // Single final record: plaintext ‖ 0x02, no extra padding (padding would only hide length,
    // and our payloads are notifications whose size is not secret enough to spend bytes on).
    let mut record = Vec::with_capacity(plaintext.len() + 1);
    record.extend_from_slice(plaintext);
    record.push(0x02);
    let cipher = Aes128Gcm::new_from_slice(&cek).map_err(|_| WebPushError::Encrypt)?;
    let ciphertext = cipher
        .encrypt(&Nonce::from(nonce), record.as_slice())
        .map_err(|_| WebPushError::Encrypt)?;

    let mut body = Vec::with_capacity(HEADER_LEN + ciphertext.len());
    body.extend_from_slice(salt);
    body.extend_from_slice(&RECORD_SIZE.to_be_bytes());
    body.push(65);
    body.extend_from_slice(&as_public);
    body.extend_from_slice(&ciphertext);
    Ok(body)
}

/// The user agent's side of RFC 8291: decrypts an aes128gcm body with the subscriber's private
/// key (32-byte scalar) and auth secret. Used by tests and fake push services; it accepts the
/// multi-record form of RFC 8188 too, so it can check other senders' output.
pub fn decrypt(ua_private_key: &[u8], auth: &[u8], body: &[u8]) -> Result<Vec<u8>, WebPushError> {
    let ua_secret = SecretKey::from_slice(ua_private_key)
        .map_err(|_| WebPushError::InvalidKey("subscriber private key"))?;
    if body.len() < 21 {
        return Err(WebPushError::Decrypt("body shorter than the header"));
    }
    let salt = &body[..16];
    let rs = u32::from_be_bytes([body[16], body[17], body[18], body[19]]) as usize;
    let idlen = body[20] as usize;
    // A record must hold at least the delimiter and the tag (RFC 8188 §2).
    if rs < TAG_LEN + 1 {
        return Err(WebPushError::Decrypt("record size too small"));
    }
    if idlen != 65 || body.len() < 21 + idlen {
        return Err(WebPushError::Decrypt("keyid is not a 65-byte public key"));
    }
    let as_public_bytes = &body[21..21 + idlen];
    let as_public = parse_ua_public(as_public_bytes)
        .map_err(|_| WebPushError::Decrypt("keyid is not a valid P-256 point"))?;
    let ua_public = uncompressed(&ua_secret.public_key());
    let shared = p256::ecdh::diffie_hellman(ua_secret.to_nonzero_scalar(), as_public.as_affine());
    let (cek, nonce) = derive_key_nonce(
        &shared.raw_secret_bytes()[..],
        auth,
        &ua_public,
        as_public_bytes,
        salt,
    )
    .map_err(|_| WebPushError::Decrypt("key derivation"))?;
    let cipher =
        Aes128Gcm::new_from_slice(&cek).map_err(|_| WebPushError::Decrypt("key derivation"))?;

    let payload = &body[21 + idlen..];
    if payload.is_empty() {
        return Err(WebPushError::Decrypt("no records"));
    }
    let mut out = Vec::new();
    let records: Vec<&[u8]> = payload.chunks(rs).collect();
    for (seq, record) in records.iter().enumerate() {
        let last = seq + 1 == records.len();
        let plain = cipher
            .decrypt(&Nonce::from(record_nonce(&nonce, seq as u64)), *record)
            .map_err(|_| WebPushError::Decrypt("authentication failed"))?;
        // Padding is zeros after the delimiter; the delimiter says whether this is the last
        // record, and a mismatch means truncation or reordering (RFC 8188 §2).
        let end = plain
            .iter()
            .rposition(|&b| b != 0)
            .ok_or(WebPushError::Decrypt("record has no padding delimiter"))?;
        let expected = if last { 0x02 } else { 0x01 };
        if plain[end] != expected {
            return Err(WebPushError::Decrypt("wrong padding delimiter"));
        }
        out.extend_from_slice(&plain[..end]);
    }
    Ok(out)
}

/// An application server's VAPID key pair (RFC 8292) with a per-origin token cache.
pub struct VapidKey {
    signing: SigningKey,
    public_b64: String,
    /// origin + subject → (JWT, exp).
    cache: Mutex<HashMap<(String, String), (String, u64)>>,
}

impl std::fmt::Debug for VapidKey {
    // Never print the private key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VapidKey")
            .field("public", &self.public_b64)
            .finish_non_exhaustive()
    }
}

/// Returns the first PEM block with `label`, so files written by `openssl ecparam -genkey`
/// (an "EC PARAMETERS" block before the key) load too.
fn pem_block<'a>(pem: &'a str, label: &str) -> Option<&'a str> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = pem.find(&begin)?;
    let stop = pem[start..].find(&end)? + start + end.len();
    Some(&pem[start..stop])
}

impl VapidKey {
    fn from_secret(secret: SecretKey) -> Self {
        let public_b64 = URL_SAFE_NO_PAD.encode(uncompressed(&secret.public_key()));
        Self {
            signing: SigningKey::from(&secret),
            public_b64,
            cache: Mutex::new(HashMap::new()),
        }
    }

    pub fn generate() -> Self {
        Self::from_secret(random_secret_key())
    }

    /// Loads a PKCS#8 ("PRIVATE KEY") or SEC1 ("EC PRIVATE KEY") PEM.
    pub fn from_pem(pem: &str) -> Result<Self, WebPushError> {
        if let Some(block) = pem_block(pem, "PRIVATE KEY") {
            return SecretKey::from_pkcs8_pem(block)
                .map(Self::from_secret)
                .map_err(|e| WebPushError::Pem(e.to_string()));
        }
        if let Some(block) = pem_block(pem, "EC PRIVATE KEY") {
            return SecretKey::from_sec1_pem(block)
                .map(Self::from_secret)
                .map_err(|e| WebPushError::Pem(e.to_string()));
        }
        Err(WebPushError::Pem(
            "no PRIVATE KEY or EC PRIVATE KEY block".into(),
        ))
    }

    /// PKCS#8 PEM, the form most tools (openssl, web-push, py-vapid) read.
    pub fn to_pem(&self) -> Result<String, WebPushError> {
        let secret = SecretKey::from(self.signing.as_nonzero_scalar());
        secret
            .to_pkcs8_pem(LineEnding::LF)
            .map(|pem| pem.to_string())
            .map_err(|e| WebPushError::Pem(e.to_string()))
    }

    /// The uncompressed public key, base64url without padding: the `applicationServerKey`
    /// clients pass to `pushManager.subscribe` and the `k=` parameter.
    pub fn public_key_base64url(&self) -> &str {
        &self.public_b64
    }

    /// The `Authorization` header value for a request to `endpoint`.
    pub fn authorization(&self, endpoint: &Url, subject: &str, now_unix: u64) -> String {
        // RFC 8292 §2: aud is the origin (scheme, host, non-default port) of the push resource.
        let aud = endpoint.origin().ascii_serialization();
        let key = (aud, subject.to_owned());
        let mut cache = self.cache.lock();
        let token = match cache.get(&key) {
            // Reuse while comfortably valid; also refuse a token whose exp is over 24 h away,
            // which can only happen if the clock stepped backwards.
            Some((token, exp))
                if *exp > now_unix.saturating_add(VAPID_REFRESH_MARGIN_SECS)
                    && *exp <= now_unix.saturating_add(24 * 3600) =>
            {
                token.clone()
            }
            _ => {
                let exp = now_unix.saturating_add(VAPID_LIFETIME_SECS);
                let token = self.sign_jwt(&key.0, subject, exp);
                cache.insert(key, (token.clone(), exp));
                token
            }
        };
        format!("vapid t={token}, k={}", self.public_b64)
    }

    /// ES256 compact JWS by hand: the header and claims are fixed, and signing with p256 keeps
    /// one key type for both ECDH and VAPID (RFC 6979 deterministic signatures).
    fn sign_jwt(&self, aud: &str, subject: &str, exp: u64) -> String {
        let header = URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"ES256"}"#);
        let claims = serde_json::json!({ "aud": aud, "exp": exp, "sub": subject });
        let claims = URL_SAFE_NO_PAD.encode(claims.to_string());
        let signing_input = format!("{header}.{claims}");
        let signature: Signature = self.signing.sign(signing_input.as_bytes());
        format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature.to_bytes())
        )
    }
}

/// RFC 8030 §5.3 urgency.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Urgency {
    VeryLow,
    Low,
    #[default]
    Normal,
    High,
}

impl Urgency {
    pub fn as_str(self) -> &'static str {
        match self {
            Urgency::VeryLow => "very-low",
            Urgency::Low => "low",
            Urgency::Normal => "normal",
            Urgency::High => "high",
        }
    }
}

/// A fully prepared push: POST `body` with `headers` to `endpoint`.
#[derive(Clone, Debug)]
pub struct WebPushRequest {
    pub endpoint: Url,
    pub body: Vec<u8>,
    pub headers: Vec<(String, String)>,
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Encrypts `payload_json` for `sub` and builds the RFC 8030 request with VAPID.
pub fn build_request(
    sub: &Subscription,
    payload_json: &[u8],
    vapid: &VapidKey,
    subject: &str,
    ttl_secs: u32,
    urgency: Urgency,
) -> Result<WebPushRequest, WebPushError> {
    let body = encrypt(sub, payload_json)?;
    let headers = vec![
        ("Content-Encoding".to_owned(), "aes128gcm".to_owned()),
        (
            "Content-Type".to_owned(),
            "application/octet-stream".to_owned(),
        ),
        ("TTL".to_owned(), ttl_secs.to_string()),
        ("Urgency".to_owned(), urgency.as_str().to_owned()),
        (
            "Authorization".to_owned(),
            vapid.authorization(&sub.endpoint, subject, now_unix()),
        ),
    ];
    Ok(WebPushRequest {
        endpoint: sub.endpoint.clone(),
        body,
        headers,
    })
}

/// What the caller should do after a send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx: the push service accepted the message (not proof of delivery to the device).
    Delivered,
    /// 404/410: the subscription is dead; delete it.
    Gone,
    /// 429 or 5xx: try again later, no sooner than `after` if given. `throttled` for 429: the
    /// push service asks us to slow down.
    Retry {
        after: Option<Duration>,
        throttled: bool,
    },
    /// Anything else (413, 400, 401/403, redirects …): retrying the same request cannot help.
    Permanent { status: u16, body: String },
    /// No answer: the connection failed or timed out. Try again later.
    Unreachable { reason: String },
    /// The endpoint's name resolves to an address the SSRF guard refuses ([`crate::ssrf`]).
    Refused { reason: String },
}

/// Caps the body we keep from error responses; it is for logs, not for parsing.
const MAX_ERROR_BODY: usize = 2048;

/// POSTs a prepared request. `client` should be built with redirects disabled (UnifiedPush
/// SERV_1.2.0 forbids following them, and a redirect would sidestep [`check_endpoint`]); a 3xx
/// that reaches us is reported as permanent.
pub async fn send(client: &reqwest::Client, req: &WebPushRequest) -> Outcome {
    let mut builder = client.post(req.endpoint.clone()).body(req.body.clone());
    for (name, value) in &req.headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    let response = match builder.send().await {
        Ok(r) => r,
        Err(e) => {
            if let Some(refused) = crate::ssrf::refused_in(&e) {
                return Outcome::Refused {
                    reason: refused.to_string(),
                };
            }
            tracing::debug!(error = %e, "web push transport error");
            let reason = if e.is_timeout() {
                "timed out".to_owned()
            } else if e.is_connect() {
                "connection failed".to_owned()
            } else {
                e.to_string()
            };
            return Outcome::Unreachable { reason };
        }
    };
    let status = response.status().as_u16();
    match status {
        200..=299 => Outcome::Delivered,
        404 | 410 => Outcome::Gone,
        429 | 500..=599 => {
            let after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, now_unix()));
            Outcome::Retry {
                after,
                throttled: status == 429,
            }
        }
        _ => {
            // Only the start of the body is read (it is for logs); the rest is dropped unread.
            let mut body = crate::outbound::read_capped(response, MAX_ERROR_BODY)
                .await
                .map(|c| c.text())
                .unwrap_or_default();
            if body.len() > MAX_ERROR_BODY {
                let mut cut = MAX_ERROR_BODY;
                while !body.is_char_boundary(cut) {
                    cut -= 1;
                }
                body.truncate(cut);
            }
            Outcome::Permanent { status, body }
        }
    }
}

/// `Retry-After` is delay-seconds or an IMF-fixdate (RFC 9110 §10.2.3). Obsolete date forms are
/// ignored; the caller then falls back to its own backoff.
pub fn parse_retry_after(value: &str, now_unix: u64) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = parse_imf_fixdate(value)?;
    Some(Duration::from_secs(at.saturating_sub(now_unix)))
}

/// "Sun, 06 Nov 1994 08:49:37 GMT" → Unix seconds.
fn parse_imf_fixdate(s: &str) -> Option<u64> {
    let rest = s.split_once(", ")?.1;
    let mut parts = rest.split(' ');
    let day: u64 = parts.next()?.parse().ok()?;
    let month = match parts.next()? {
        "Jan" => 1,
        "Feb" => 2,
        "Mar" => 3,
        "Apr" => 4,
        "May" => 5,
        "Jun" => 6,
        "Jul" => 7,
        "Aug" => 8,
        "Sep" => 9,
        "Oct" => 10,
        "Nov" => 11,
        "Dec" => 12,
        _ => return None,
    };
    let year: u64 = parts.next()?.parse().ok()?;
    let mut hms = parts.next()?.split(':');
    let h: u64 = hms.next()?.parse().ok()?;
    let m: u64 = hms.next()?.parse().ok()?;
    let sec: u64 = hms.next()?.parse().ok()?;
    if parts.next()? != "GMT" || !(1970..=9999).contains(&year) || day == 0 || day > 31 {
        return None;
    }
    if h > 23 || m > 59 || sec > 60 {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm), shifted so the year starts in March.
    let (y, mo) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era = y / 400;
    let yoe = y % 400;
    let doy = (153 * mo + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = (era * 146_097 + doe).checked_sub(719_468)?;
    Some(days * 86_400 + h * 3600 + m * 60 + sec)
}

/// SSRF guard for user-supplied endpoints, checked on the URL alone: scheme, literal IP ranges
/// ([`crate::ssrf`]) and `localhost` names. It cannot see what a hostname resolves to, so the caller must also check
/// resolved addresses at connect time (e.g. a resolver wrapper on the HTTP client) and disable
/// redirects. `allow_private` is for tests and deployments that push to an internal ntfy.
pub fn check_endpoint(url: &Url, allow_private: bool) -> Result<(), WebPushError> {
    match url.scheme() {
        "https" => {}
        "http" if allow_private => {}
        other => {
            return Err(WebPushError::EndpointRefused(format!(
                "scheme {other} is not allowed"
            )));
        }
    }
    let host = url
        .host()
        .ok_or_else(|| WebPushError::EndpointRefused("no host".into()))?;
    if allow_private {
        return Ok(());
    }
    let refused = match host {
        Host::Ipv4(ip) => crate::ssrf::refusal(ip.into()),
        Host::Ipv6(ip) => crate::ssrf::refusal(ip.into()),
        Host::Domain(name) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            (name == "localhost" || name.ends_with(".localhost")).then_some("loopback (localhost)")
        }
    };
    if let Some(range) = refused {
        return Err(WebPushError::EndpointRefused(format!(
            "{host} is a local, private or special-purpose address: {range}"
        )));
    }
    Ok(())
}

// Only the byte-exact vector lives here, because it needs the fixed ephemeral key that the
// public API deliberately does not accept; everything else is in tests/webpush.rs.
#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> Vec<u8> {
        decode_b64("test", s).expect("vector is valid base64url")
    }

    #[test]
    fn rfc8291_appendix_a_vector() {
        let sub = Subscription::from_base64url(
            Url::parse("https://push.example.net/push/JzLQ3raZJfFBR0aqvOMsLrt54w4rJUsV")
                .expect("url"),
            "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4",
            "BTBZMqHH6r4Tts7J_aSIgg",
        )
        .expect("subscription");
        let as_secret = SecretKey::from_slice(&b64("yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw"))
            .expect("as key");
        assert_eq!(
            URL_SAFE_NO_PAD.encode(uncompressed(&as_secret.public_key())),
            "BP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A8"
        );
        let salt: [u8; 16] = b64("DGv6ra1nlYgDCS1FRnbzlw").try_into().expect("salt");
        let body = encrypt_with(
            &sub,
            b"When I grow up, I want to be a watermelon",
            &as_secret,
            &salt,
        )
        .expect("encrypt");
        assert_eq!(
            URL_SAFE_NO_PAD.encode(&body),
            concat!(
                "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27ml",
                "mlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPT",
                "pK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN",
            )
        );
    }

    #[test]
    fn padded_and_standard_base64_accepted() {
        assert_eq!(
            b64("BTBZMqHH6r4Tts7J_aSIgg=="),
            b64("BTBZMqHH6r4Tts7J_aSIgg")
        );
        assert_eq!(b64("BTBZMqHH6r4Tts7J/aSIgg"), b64("BTBZMqHH6r4Tts7J_aSIgg"));
    }

    #[test]
    fn imf_fixdate() {
        assert_eq!(
            parse_imf_fixdate("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777)
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:50:37 GMT", 784_111_777),
            Some(Duration::from_secs(60))
        );
        assert_eq!(parse_retry_after("garbage", 0), None);
    }
}
