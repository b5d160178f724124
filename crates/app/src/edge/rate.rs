//! Per-address rate limits on what costs the service memory or a lookup before anyone is
//! authenticated: negotiates, WebSocket connects to each hub, and failed `/connect/token`
//! attempts. Failures are budgeted per source, never per installation, so an outsider cannot
//! lock a real installation out by failing in its name.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use http::{header, HeaderValue, Method, StatusCode};
use parking_lot::Mutex;

use super::peer::peer_key;
use super::RATE_LIMITED_METRIC;

/// Per-minute budgets per address; 0 turns one off.
#[derive(Clone, Copy, Debug, Default)]
pub struct PeerRates {
    pub negotiates_per_minute: u32,
    pub connects_per_minute: u32,
    pub anonymous_connects_per_minute: u32,
    pub token_failures_per_minute: u32,
}

type Limiter = DefaultKeyedRateLimiter<IpAddr>;

pub struct PeerRateLimits {
    negotiate: Option<Limiter>,
    connect: Option<Limiter>,
    anonymous_connect: Option<Limiter>,
    token_failures: Option<Limiter>,
    /// Addresses whose failed token attempts ran out, and until when.
    blocked: Mutex<HashMap<IpAddr, Instant>>,
}

/// What a request is, for these limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Negotiate,
    Connect,
    AnonymousConnect,
    Token,
    Other,
}

impl Kind {
    fn of(request: &Request) -> Kind {
        let path = request.uri().path();
        let method = request.method();
        if path.ends_with("/connect/token") {
            return Kind::Token;
        }
        if path.ends_with("/negotiate") && method == Method::POST {
            return Kind::Negotiate;
        }
        let upgrade = request
            .headers()
            .get(header::UPGRADE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
        // A WebSocket with `id` continues a negotiated connection, already counted.
        let new =
            pushwarden_protocol::negotiate::query_param(request.uri().query(), "id").is_none();
        if method == Method::GET && upgrade && new {
            if path.ends_with("/anonymous-hub") {
                return Kind::AnonymousConnect;
            }
            if path.ends_with("/hub") {
                return Kind::Connect;
            }
        }
        Kind::Other
    }
}

fn limiter(per_minute: u32) -> Option<Limiter> {
    let n = NonZeroU32::new(per_minute)?;
    Some(RateLimiter::dashmap(Quota::per_minute(n)))
}

fn take(limiter: &Option<Limiter>, key: IpAddr) -> Result<(), Duration> {
    match limiter {
        None => Ok(()),
        Some(l) => l
            .check_key(&key)
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now())),
    }
}

impl PeerRateLimits {
    /// The limits, with a task that forgets idle addresses every minute (it stops when the
    /// limits are dropped). Needs a Tokio runtime.
    pub fn new(rates: PeerRates) -> Arc<Self> {
        let limits = Arc::new(Self {
            negotiate: limiter(rates.negotiates_per_minute),
            connect: limiter(rates.connects_per_minute),
            anonymous_connect: limiter(rates.anonymous_connects_per_minute),
            token_failures: limiter(rates.token_failures_per_minute),
            blocked: Mutex::new(HashMap::new()),
        });
        tokio::spawn(forget_idle(Arc::downgrade(&limits)));
        limits
    }

    fn blocked_for(&self, key: IpAddr) -> Option<Duration> {
        let now = Instant::now();
        let until = *self.blocked.lock().get(&key)?;
        (until > now).then(|| until - now)
    }

    fn failed(&self, key: IpAddr) {
        if let Err(wait) = take(&self.token_failures, key) {
            self.blocked.lock().insert(key, Instant::now() + wait);
        }
    }
}

async fn forget_idle(limits: Weak<PeerRateLimits>) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(limits) = limits.upgrade() else {
            return;
        };
        for l in [
            &limits.negotiate,
            &limits.connect,
            &limits.anonymous_connect,
            &limits.token_failures,
        ]
        .into_iter()
        .flatten()
        {
            l.retain_recent();
            l.shrink_to_fit();
        }
        let now = Instant::now();
        let mut blocked = limits.blocked.lock();
        blocked.retain(|_, until| *until > now);
        blocked.shrink_to_fit();
    }
}

fn too_many(kind: &'static str, wait: Duration) -> Response {
    metrics::counter!(RATE_LIMITED_METRIC, "kind" => kind).increment(1);
    let secs = (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1);
    let mut response = (
        StatusCode::TOO_MANY_REQUESTS,
        Json(serde_json::json!({ "error": format!("rate limit exceeded: {kind} from this address") })),
    )
        .into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    response
}

/// The middleware: applies the limit that fits the request, keyed by the client's address
/// (set by the accept loop, trusted proxies resolved).
pub async fn limit(
    State(limits): State<Arc<PeerRateLimits>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(key) = super::client_ip(request.extensions()).map(peer_key) else {
        return next.run(request).await;
    };
    let (limiter, label) = match Kind::of(&request) {
        Kind::Other => return next.run(request).await,
        Kind::Negotiate => (&limits.negotiate, "negotiate"),
        Kind::Connect => (&limits.connect, "hub connects"),
        Kind::AnonymousConnect => (&limits.anonymous_connect, "anonymous hub connects"),
        Kind::Token => {
            if let Some(wait) = limits.blocked_for(key) {
                return too_many("failed token requests", wait);
            }
            let response = next.run(request).await;
            if matches!(
                response.status(),
                StatusCode::BAD_REQUEST | StatusCode::UNAUTHORIZED
            ) {
                limits.failed(key);
            }
            return response;
        }
    };
    match take(limiter, key) {
        Ok(()) => next.run(request).await,
        Err(wait) => too_many(label, wait),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: Method, uri: &str, upgrade: bool) -> Request {
        let mut b = http::Request::builder().method(method).uri(uri);
        if upgrade {
            b = b.header(header::UPGRADE, "websocket");
        }
        b.body(axum::body::Body::empty()).unwrap()
    }

    #[test]
    fn requests_are_classified_by_what_they_cost() {
        use Kind::*;
        let cases = [
            (
                Method::POST,
                "/notifications/hub/negotiate?negotiateVersion=1",
                false,
                Negotiate,
            ),
            (Method::GET, "/notifications/hub/negotiate", false, Other),
            (
                Method::GET,
                "/notifications/hub?access_token=x",
                true,
                Connect,
            ),
            (Method::GET, "/hub", true, Connect),
            (
                Method::GET,
                "/notifications/anonymous-hub?Token=t",
                true,
                AnonymousConnect,
            ),
            (Method::GET, "/notifications/hub?id=abc", true, Other),
            (Method::GET, "/notifications/hub?id=abc", false, Other),
            (Method::POST, "/notifications/hub?id=abc", false, Other),
            (Method::POST, "/identity/connect/token", false, Token),
            (Method::POST, "/send", false, Other),
        ];
        for (method, uri, upgrade, kind) in cases {
            assert_eq!(Kind::of(&request(method, uri, upgrade)), kind, "{uri}");
        }
    }

    #[tokio::test]
    async fn failures_block_only_their_source() {
        let limits = PeerRateLimits::new(PeerRates {
            token_failures_per_minute: 2,
            ..PeerRates::default()
        });
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..3 {
            limits.failed(a);
        }
        assert!(limits.blocked_for(a).is_some());
        assert!(limits.blocked_for(b).is_none());
    }
}
