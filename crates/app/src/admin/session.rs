//! Who may use the admin page: the login (the configured token, compared in constant time,
//! rate limited per address), sessions held in memory, the session cookie, and the checks
//! every form post passes (same origin, the session's CSRF token).
//!
//! Sessions are few and bounded ([`MAX_SESSIONS`]; the least recently used goes first), each
//! a random 256-bit id, ending 12 hours after login or after an hour unused. A restart logs
//! everyone out.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use base64::Engine;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use http::request::Parts;
use http::{header, HeaderMap};
use parking_lot::Mutex;
use rand::RngCore;
use subtle::ConstantTimeEq;

use crate::edge::{peer_key, Secure};

pub const COOKIE: &str = "pushwarden_admin";
/// Sessions held at once.
pub const MAX_SESSIONS: usize = 64;
/// A session ends this long after login…
pub const LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// …or this long after its last request.
pub const IDLE: Duration = Duration::from_secs(3600);
/// Login attempts per address per minute.
pub const LOGINS_PER_MINUTE: u32 = 10;
/// Addresses the login limiter remembers before it forgets those back at a full budget.
const LIMITER_KEYS: usize = 10_000;

struct Session {
    csrf: String,
    created: Instant,
    seen: Instant,
}

impl Session {
    fn expired(&self, now: Instant) -> bool {
        now.duration_since(self.created) >= LIFETIME || now.duration_since(self.seen) >= IDLE
    }
}

/// A live session, as a request presents it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Current {
    pub id: String,
    pub csrf: String,
}

/// Why a form post is refused (each answers 403).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    CrossOrigin,
    NoSession,
    BadCsrf,
}

impl Refusal {
    pub fn message(self) -> &'static str {
        match self {
            Refusal::CrossOrigin => "The form was posted from another site.",
            Refusal::NoSession => "Not logged in, or the session expired: log in again.",
            Refusal::BadCsrf => "The form is stale or forged (its CSRF token does not match): reload the page and try again.",
        }
    }
}

/// What a login attempt came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Login {
    Welcome(Current),
    WrongToken,
    TooMany { retry_after: Duration },
}

pub struct Sessions {
    token: String,
    sessions: Mutex<HashMap<String, Session>>,
    logins: DefaultKeyedRateLimiter<IpAddr>,
}

/// 256 random bits, base64url.
fn random_id() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A fresh value for a response's `Content-Security-Policy` nonce.
pub fn nonce() -> String {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn equal(a: &str, b: &str) -> bool {
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

impl Sessions {
    pub fn new(token: String) -> Self {
        let per_minute = NonZeroU32::new(LOGINS_PER_MINUTE).unwrap_or(NonZeroU32::MIN);
        Self {
            token,
            sessions: Mutex::new(HashMap::new()),
            logins: RateLimiter::dashmap(Quota::per_minute(per_minute)),
        }
    }

    /// Checks a login attempt from `client`; on success opens a session.
    pub fn login(&self, client: IpAddr, given: &str) -> Login {
        if self.logins.len() > LIMITER_KEYS {
            self.logins.retain_recent();
        }
        if let Err(not_until) = self.logins.check_key(&peer_key(client)) {
            return Login::TooMany {
                retry_after: not_until.wait_time_from(DefaultClock::default().now()),
            };
        }
        if !equal(given, &self.token) {
            return Login::WrongToken;
        }
        Login::Welcome(self.open())
    }

    fn open(&self) -> Current {
        let now = Instant::now();
        let current = Current {
            id: random_id(),
            csrf: random_id(),
        };
        let mut sessions = self.sessions.lock();
        sessions.retain(|_, s| !s.expired(now));
        if sessions.len() >= MAX_SESSIONS {
            let oldest = sessions
                .iter()
                .min_by_key(|(_, s)| s.seen)
                .map(|(id, _)| id.clone());
            if let Some(oldest) = oldest {
                sessions.remove(&oldest);
            }
        }
        sessions.insert(
            current.id.clone(),
            Session {
                csrf: current.csrf.clone(),
                created: now,
                seen: now,
            },
        );
        current
    }

    /// The live session the request's cookie names, if any (and marks it used).
    pub fn current(&self, headers: &HeaderMap) -> Option<Current> {
        let id = cookie(headers, COOKIE)?;
        let now = Instant::now();
        let mut sessions = self.sessions.lock();
        let session = sessions.get_mut(id)?;
        if session.expired(now) {
            sessions.remove(id);
            return None;
        }
        session.seen = now;
        Some(Current {
            id: id.to_owned(),
            csrf: session.csrf.clone(),
        })
    }

    pub fn logout(&self, current: &Current) {
        self.sessions.lock().remove(&current.id);
    }

    /// The checks a form post passes: same origin, a live session, and that session's CSRF
    /// token in the form.
    pub fn check_post(&self, parts: &Parts, csrf: &str) -> Result<Current, Refusal> {
        if !same_origin(&parts.headers) {
            return Err(Refusal::CrossOrigin);
        }
        let current = self.current(&parts.headers).ok_or(Refusal::NoSession)?;
        if !equal(csrf, &current.csrf) {
            return Err(Refusal::BadCsrf);
        }
        Ok(current)
    }
}

/// A cookie's value from the request's `Cookie` headers.
fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (n, v) = pair.trim().split_once('=')?;
            (n == name).then_some(v)
        })
}

/// Whether a post comes from this site: its `Origin` (browsers send one with every POST)
/// names the host the request was sent to, and `Sec-Fetch-Site` does not say otherwise.
/// Only the host and port are compared, not the scheme, so a TLS-terminating proxy that
/// does not say `X-Forwarded-Proto` still works. A request with neither header is no
/// browser's cross-site post; the CSRF token still has to match.
pub fn same_origin(headers: &HeaderMap) -> bool {
    let text = |name| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = text(header::HeaderName::from_static("sec-fetch-site")) {
        if !matches!(site, "same-origin" | "none") {
            return false;
        }
    }
    let Some(host) = text(header::HOST) else {
        return !headers.contains_key(header::ORIGIN);
    };
    // Every `Origin` given (a browser sends one) names this host.
    headers.get_all(header::ORIGIN).iter().all(|origin| {
        origin.to_str().ok().is_some_and(|origin| {
            origin
                .strip_prefix("https://")
                .or_else(|| origin.strip_prefix("http://"))
                .is_some_and(|a| a.eq_ignore_ascii_case(host))
        })
    })
}

/// The `Set-Cookie` value for a session: `Secure` when the client came over HTTPS.
pub fn session_cookie(current: &Current, secure: bool) -> String {
    format!(
        "{COOKIE}={}; Path=/admin; HttpOnly; SameSite=Strict; Max-Age={}{}",
        current.id,
        LIFETIME.as_secs(),
        if secure { "; Secure" } else { "" }
    )
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn cleared_cookie(secure: bool) -> String {
    format!(
        "{COOKIE}=; Path=/admin; HttpOnly; SameSite=Strict; Max-Age=0{}",
        if secure { "; Secure" } else { "" }
    )
}

/// Whether the request came over HTTPS (set by the edge).
pub fn is_secure(parts: &Parts) -> bool {
    parts.extensions.get::<Secure>().is_some_and(|s| s.0)
}

/// The client's address (set by the edge, trusted proxies resolved).
pub fn client(parts: &Parts) -> IpAddr {
    crate::edge::client_ip(&parts.extensions).unwrap_or(IpAddr::from([0, 0, 0, 0]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edge::header_map as headers;

    const TOKEN: &str = "an-admin-token-for-tests";

    fn welcome(login: Login) -> Current {
        match login {
            Login::Welcome(c) => c,
            other => panic!("not logged in: {other:?}"),
        }
    }

    #[test]
    fn the_right_token_opens_a_session_the_cookie_finds() {
        let sessions = Sessions::new(TOKEN.into());
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(sessions.login(ip, "wrong"), Login::WrongToken);
        let current = welcome(sessions.login(ip, TOKEN));
        assert_eq!(current.id.len(), 43); // 32 bytes, base64url
        let found = sessions
            .current(&headers(&[(
                "cookie",
                &format!("a=b; {COOKIE}={}", current.id),
            )]))
            .unwrap();
        assert_eq!(found.csrf, current.csrf);
        sessions.logout(&found);
        assert!(sessions
            .current(&headers(&[("cookie", &format!("{COOKIE}={}", current.id))]))
            .is_none());
    }

    #[test]
    fn logins_are_limited_per_address() {
        let sessions = Sessions::new(TOKEN.into());
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..LOGINS_PER_MINUTE {
            assert_eq!(sessions.login(a, "wrong"), Login::WrongToken);
        }
        assert!(matches!(sessions.login(a, TOKEN), Login::TooMany { .. }));
        welcome(sessions.login(b, TOKEN));
    }

    #[test]
    fn sessions_are_bounded_oldest_out() {
        let sessions = Sessions::new(TOKEN.into());
        let first = sessions.open();
        for _ in 0..MAX_SESSIONS {
            sessions.open();
        }
        assert_eq!(sessions.sessions.lock().len(), MAX_SESSIONS);
        assert!(sessions
            .current(&headers(&[("cookie", &format!("{COOKIE}={}", first.id))]))
            .is_none());
    }

    #[test]
    fn cross_origin_posts_are_recognised() {
        let same = headers(&[
            ("host", "127.0.0.1:5000"),
            ("origin", "http://127.0.0.1:5000"),
        ]);
        assert!(same_origin(&same));
        let proxied = headers(&[
            ("host", "relay.example.com"),
            ("origin", "https://relay.example.com"),
        ]);
        assert!(same_origin(&proxied));
        let other = headers(&[
            ("host", "127.0.0.1:5000"),
            ("origin", "http://evil.example"),
        ]);
        assert!(!same_origin(&other));
        let null = headers(&[("host", "127.0.0.1:5000"), ("origin", "null")]);
        assert!(!same_origin(&null));
        let site = headers(&[("host", "127.0.0.1:5000"), ("sec-fetch-site", "cross-site")]);
        assert!(!same_origin(&site));
        assert!(same_origin(&headers(&[("host", "127.0.0.1:5000")])));
    }

    #[test]
    fn cookies_carry_their_flags() {
        let current = Current {
            id: "abc".into(),
            csrf: "x".into(),
        };
        let plain = session_cookie(&current, false);
        assert!(plain.contains("HttpOnly") && plain.contains("SameSite=Strict"));
        assert!(plain.contains("Path=/admin") && !plain.contains("Secure"));
        assert!(session_cookie(&current, true).ends_with("; Secure"));
    }
}
