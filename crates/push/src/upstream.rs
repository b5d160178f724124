//! The self-hosted role: with no APNs/FCM credentials of its own, pushwarden forwards mobile
//! registrations and pushes to an upstream relay (Bitwarden's cloud, or another pushwarden),
//! in the request shapes of Bitwarden's `RelayPushRegistrationService` and `RelayPushEngine`
//! (`src/Core/Platform/Push/` in bitwarden/server), authenticated as an installation.
//!
//! Requests wait in the store's outbox and are retried like any provider failure, through the
//! same leased-queue loop and retry decision as deliveries ([`lease`](crate::lease)).

use std::sync::Arc;
use std::time::{Duration, Instant};

use url::Url;

use crate::clock::Clock;
use crate::health::Health;
use crate::journal::Journal;
use crate::lease::{LeasedWork, Pace, RetryPolicy, Step};
use crate::store::{Outbox, OutboxItem, RetryPlan, StoreError};

/// Where the upstream relay is and who we are to it.
#[derive(Clone)]
pub struct UpstreamConfig {
    /// Base of the push API, e.g. `https://push.bitwarden.com` (requests go to `{base}/push/…`).
    pub relay_uri: Url,
    /// Base of the identity server, e.g. `https://identity.bitwarden.com`.
    pub identity_uri: Url,
    pub installation_id: String,
    pub installation_key: String,
    /// Extra trusted CA (PEM), for a relay with a private certificate.
    pub ca_pem: Option<Vec<u8>>,
}

impl std::fmt::Debug for UpstreamConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamConfig")
            .field("relay_uri", &self.relay_uri.as_str())
            .field("identity_uri", &self.identity_uri.as_str())
            .field("installation_id", &self.installation_id)
            .field("installation_key", &"<redacted>")
            .finish()
    }
}

/// How one forwarded request ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UpstreamOutcome {
    Done,
    /// The identity server refused our installation id/key, now or recently enough that we
    /// are still backing off: a configuration error; asked again after `after`.
    IdentityRefused {
        after: Duration,
        reason: String,
    },
    /// No token: the identity server is unreachable, failing or answered something we do not
    /// understand. Reported as a configuration error too, since a wrong identity URI looks
    /// like this.
    IdentityUnavailable {
        after: Option<Duration>,
        reason: String,
    },
    /// The relay is unreachable, throttling, failing or refusing our token: try again.
    Retry {
        after: Option<Duration>,
        reason: String,
    },
    /// The relay refused the request itself (400, 404…): sending it again cannot help.
    Rejected {
        reason: String,
    },
}

impl UpstreamOutcome {
    /// Short label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            UpstreamOutcome::Done => "done",
            UpstreamOutcome::IdentityRefused { .. }
            | UpstreamOutcome::IdentityUnavailable { .. }
            | UpstreamOutcome::Retry { .. } => "retry",
            UpstreamOutcome::Rejected { .. } => "rejected",
        }
    }
}

#[derive(Default)]
struct TokenState {
    token: Option<(String, Instant)>,
    /// After the identity server refused our credentials: no new attempt before this.
    refused_until: Option<Instant>,
    refusals: u32,
}

/// A client of the upstream relay with a cached installation token.
pub struct Upstream {
    config: UpstreamConfig,
    http: reqwest::Client,
    token: tokio::sync::Mutex<TokenState>,
    clock: Arc<dyn Clock>,
}

#[derive(serde::Deserialize)]
struct TokenResponse {
    access_token: String,
    expires_in: u64,
}

fn join(base: &Url, path: &str) -> String {
    format!(
        "{}/{}",
        base.as_str().trim_end_matches('/'),
        path.trim_start_matches('/')
    )
}

fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    response
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

fn build_client(
    config: &UpstreamConfig,
    proxy: Option<&Url>,
) -> Result<reqwest::Client, reqwest::Error> {
    let mut builder = crate::outbound::client_builder(proxy)?
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(30));
    if let Some(pem) = &config.ca_pem {
        for cert in reqwest::Certificate::from_pem_bundle(pem)? {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder.build()
}

impl Upstream {
    pub fn new(config: UpstreamConfig) -> Result<Self, reqwest::Error> {
        Ok(Self {
            http: build_client(&config, None)?,
            config,
            token: tokio::sync::Mutex::new(TokenState::default()),
            clock: crate::clock::system(),
        })
    }

    /// Connects through `proxy` instead of directly. Without it no proxy is used, whatever the
    /// environment says.
    pub fn with_proxy(mut self, proxy: &Url) -> Result<Self, reqwest::Error> {
        self.http = build_client(&self.config, Some(proxy))?;
        Ok(self)
    }

    /// Reads the time for the token cache and the refusal back-off from `clock`.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    pub fn installation_id(&self) -> &str {
        &self.config.installation_id
    }

    /// A valid token: the cached one until 80 % of its life, else a new one. One request at a
    /// time asks the identity server; a refused secret backs off (1 min, doubling to 1 h)
    /// instead of asking again for every queued push.
    async fn token(&self) -> Result<String, UpstreamOutcome> {
        let mut state = self.token.lock().await;
        let now = self.clock.now();
        if let Some((token, refresh_at)) = &state.token {
            if now < *refresh_at {
                return Ok(token.clone());
            }
        }
        if let Some(until) = state.refused_until {
            if now < until {
                return Err(UpstreamOutcome::IdentityRefused {
                    after: until - now,
                    reason: "the upstream identity server refused our installation credentials"
                        .into(),
                });
            }
        }
        let url = join(&self.config.identity_uri, "connect/token");
        let client_id = format!("installation.{}", self.config.installation_id);
        let form = [
            ("grant_type", "client_credentials"),
            ("scope", "api.push"),
            ("client_id", client_id.as_str()),
            ("client_secret", self.config.installation_key.as_str()),
        ];
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let response = self
            .http
            .post(&url)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body)
            .send()
            .await
            .map_err(|e| UpstreamOutcome::IdentityUnavailable {
                after: None,
                reason: format!("identity server unreachable: {e}"),
            })?;
        let status = response.status();
        if status == reqwest::StatusCode::BAD_REQUEST || status == reqwest::StatusCode::UNAUTHORIZED
        {
            let text = crate::outbound::text(response).await.unwrap_or_default();
            state.refusals = state.refusals.saturating_add(1);
            let wait = Duration::from_secs(60)
                .saturating_mul(1u32 << (state.refusals - 1).min(6))
                .min(Duration::from_secs(3600));
            state.refused_until = Some(now + wait);
            state.token = None;
            tracing::error!(
                status = status.as_u16(),
                answer = %text.chars().take(300).collect::<String>(),
                retry_in = ?wait,
                "the upstream relay's identity server refused our installation id/key"
            );
            return Err(UpstreamOutcome::IdentityRefused {
                after: wait,
                reason: format!("identity server answered {status}"),
            });
        }
        if !status.is_success() {
            return Err(UpstreamOutcome::IdentityUnavailable {
                after: retry_after(&response),
                reason: format!("identity server answered {status}"),
            });
        }
        let parsed: TokenResponse = crate::outbound::bytes(response)
            .await
            .map_err(|e| e.to_string())
            .and_then(|body| serde_json::from_slice(&body).map_err(|e| e.to_string()))
            .map_err(|e| UpstreamOutcome::IdentityUnavailable {
                after: None,
                reason: format!("unexpected token response: {e}"),
            })?;
        state.refusals = 0;
        state.refused_until = None;
        let life = Duration::from_secs(parsed.expires_in.max(1)).mul_f64(0.8);
        state.token = Some((parsed.access_token.clone(), now + life));
        Ok(parsed.access_token)
    }

    async fn forget_token(&self, token: &str) {
        let mut state = self.token.lock().await;
        if state.token.as_ref().is_some_and(|(t, _)| t == token) {
            state.token = None;
        }
    }

    /// Sends one request to the relay; a rejected token is renewed and the request tried once more.
    pub async fn call(&self, method: &str, path: &str, body: &str) -> UpstreamOutcome {
        for attempt in 0..2 {
            let token = match self.token().await {
                Ok(t) => t,
                Err(outcome) => return outcome,
            };
            let method =
                reqwest::Method::from_bytes(method.as_bytes()).unwrap_or(reqwest::Method::POST);
            let response = self
                .http
                .request(method, join(&self.config.relay_uri, path))
                .bearer_auth(&token)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_owned())
                .send()
                .await;
            let response = match response {
                Ok(r) => r,
                Err(e) => {
                    return UpstreamOutcome::Retry {
                        after: None,
                        reason: format!("relay unreachable: {e}"),
                    }
                }
            };
            let status = response.status();
            if status.is_success() {
                return UpstreamOutcome::Done;
            }
            if status == reqwest::StatusCode::UNAUTHORIZED && attempt == 0 {
                self.forget_token(&token).await;
                continue;
            }
            let after = retry_after(&response);
            let text: String = crate::outbound::text(response)
                .await
                .unwrap_or_default()
                .chars()
                .take(300)
                .collect();
            let reason = format!("relay answered {status}: {text}");
            return if status.as_u16() == 429
                || status.is_server_error()
                || status.as_u16() == 401
                || status.as_u16() == 403
            {
                UpstreamOutcome::Retry { after, reason }
            } else {
                UpstreamOutcome::Rejected { reason }
            };
        }
        UpstreamOutcome::Retry {
            after: None,
            reason: "the relay refused a fresh token".into(),
        }
    }
}

/// Drains the outbox in order, one request at a time (a device's registration goes before
/// the pushes that follow it).
pub(crate) struct OutboxWork {
    pub outbox: Outbox,
    pub upstream: Arc<Upstream>,
    pub health: Arc<Health>,
    pub journal: Arc<Journal>,
    pub policy: RetryPolicy,
    pub lease: Duration,
    pub poll_interval: Duration,
}

/// The most requests one claim takes.
const CLAIM_BATCH: u32 = 32;

impl OutboxWork {
    pub fn pace(&self) -> Pace {
        Pace {
            batch: CLAIM_BATCH,
            min_batch: 1,
            poll_interval: self.poll_interval,
        }
    }

    /// Sends one item; false when it is to be retried (and so blocks the ones after it).
    async fn forward(&self, item: OutboxItem) -> bool {
        let now = crate::store::now_ms();
        if self.policy.expired(item.created_ms, now) {
            self.drop_item(&item, "expired", "older than the maximum age")
                .await;
            return true;
        }
        let outcome = self
            .upstream
            .call(&item.method, &item.path, &item.body)
            .await;
        metrics::counter!("pushwarden_upstream_requests_total", "path" => item.path.clone(), "outcome" => outcome.label())
            .increment(1);
        let (after, reason) = match outcome {
            UpstreamOutcome::Done => {
                self.health.ok("relay");
                if let Err(e) = self.outbox.settle(std::slice::from_ref(&item.id)).await {
                    tracing::warn!(error = %e, "relay outbox: settling failed; it will be sent again");
                }
                return true;
            }
            UpstreamOutcome::Rejected { reason } => {
                self.journal
                    .provider_error("relay", "rejected", &reason, now);
                self.drop_item(&item, "rejected", &reason).await;
                return true;
            }
            UpstreamOutcome::IdentityRefused { after, reason } => {
                self.health.config_error("relay", &reason, now);
                self.journal
                    .provider_error("relay", "misconfigured", &reason, now);
                (Some(after), reason)
            }
            UpstreamOutcome::IdentityUnavailable { after, reason } => {
                self.health.config_error("relay", &reason, now);
                self.journal
                    .provider_error("relay", "misconfigured", &reason, now);
                (after, reason)
            }
            UpstreamOutcome::Retry { after, reason } => {
                self.journal.provider_error("relay", "retry", &reason, now);
                (after, reason)
            }
        };
        let next = match self
            .policy
            .next_step(item.attempts, item.created_ms, now, after)
        {
            Step::RetryAt(next) => next,
            Step::Expire => {
                let why = format!("would retry after the maximum age; last error: {reason}");
                self.drop_item(&item, "expired", &why).await;
                return true;
            }
        };
        let delay = Duration::from_millis(u64::try_from(next - now).unwrap_or(0));
        tracing::debug!(path = %item.path, attempts = item.attempts + 1, ?delay, %reason, "relay request will be retried");
        let plan = RetryPlan {
            attempts: item.attempts.saturating_add(1),
            next_attempt_ms: next,
            error: reason,
        };
        if let Err(e) = self.outbox.retry(&item.id, &plan).await {
            tracing::warn!(error = %e, "relay outbox: rescheduling failed");
        }
        false
    }

    async fn drop_item(&self, item: &OutboxItem, reason: &'static str, detail: &str) {
        metrics::counter!("pushwarden_push_dropped_total", "provider" => "relay", "reason" => reason)
            .increment(1);
        self.journal.dropped("relay", reason);
        tracing::warn!(path = %item.path, reason, attempts = item.attempts, %detail, "relay request dropped");
        if let Err(e) = self.outbox.settle(std::slice::from_ref(&item.id)).await {
            tracing::warn!(error = %e, "relay outbox: settling a dropped request failed");
        }
    }
}

/// Items are forwarded one after another; the first one to wait for a retry sends the rest of
/// its batch back, in order, behind it.
impl LeasedWork for OutboxWork {
    type Item = OutboxItem;
    const NAME: &'static str = "relay outbox";

    fn room(&self) -> usize {
        CLAIM_BATCH as usize
    }

    async fn claim(&self, now_ms: i64, limit: u32) -> Result<Vec<OutboxItem>, StoreError> {
        self.outbox.claim(now_ms, self.lease, limit).await
    }

    async fn process(&self, items: Vec<OutboxItem>) {
        let mut items = items.into_iter();
        while let Some(item) = items.next() {
            if !self.forward(item).await {
                let rest: Vec<String> = items.map(|i| i.id).collect();
                if let Err(e) = self.outbox.release(&rest).await {
                    tracing::warn!(error = %e, "relay outbox: releasing failed; leases will lapse");
                }
                break;
            }
        }
    }

    async fn after_round(&self) {
        if let Ok(n) = self.outbox.pending().await {
            metrics::gauge!("pushwarden_upstream_outbox_pending").set(n as f64);
        }
    }

    async fn next_due_ms(&self) -> Result<Option<i64>, StoreError> {
        self.outbox.next_due_ms().await
    }
}
