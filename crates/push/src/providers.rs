//! The configured providers behind one call: deliver this push to that device.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pushwarden_model::PushType;
use url::Url;

use crate::apns::{self, ApnsClient, ApnsConfig, Environment, SendOptions};
use crate::fcm::{self, FcmClient, ServiceAccount};
use crate::origin::{origin_key, Admission, Origins};
use crate::outcome::Outcome;
use crate::registration::{Channel, Platform, Provider};
use crate::ssrf::{CheckError, GuardedResolver};
use crate::store::ClaimedDevice;
use crate::webpush::{self, Subscription, Urgency, VapidKey};

/// Web Push settings.
pub struct WebPushConfig {
    pub vapid: VapidKey,
    /// `mailto:` or `https:` contact for push services (RFC 8292 `sub`).
    pub subject: String,
    /// How long a push service keeps a message for an offline browser.
    pub ttl: Duration,
}

/// Which providers are configured.
#[derive(Default)]
pub struct ProvidersConfig {
    pub apns: Option<ApnsConfig>,
    /// The service account and an optional base URL instead of `https://fcm.googleapis.com`.
    pub fcm: Option<(ServiceAccount, Option<Url>)>,
    pub webpush: Option<WebPushConfig>,
    /// Lifts the SSRF guard on Web Push endpoints (tests, LAN distributors).
    pub allow_private_endpoints: bool,
    /// Names Web Push endpoints resolve to without DNS (tests); the guard still applies.
    pub resolve_overrides: HashMap<String, Vec<IpAddr>>,
    /// Every provider connects through this HTTP(S) proxy. Unset, none is used: `HTTPS_PROXY`
    /// and the like in the environment are ignored.
    pub proxy: Option<Url>,
    pub webpush_limits: WebPushLimits,
}

/// How long a Web Push request may take, and how many may be in flight to one endpoint origin.
/// Endpoints are user-supplied, so these are short.
#[derive(Clone, Copy, Debug)]
pub struct WebPushLimits {
    pub connect_timeout: Duration,
    /// The whole request: connect, send, answer and the (capped) body.
    pub timeout: Duration,
    /// Pushes in flight to one origin (scheme, host, port); more wait in the queue.
    pub origin_concurrency: usize,
}

impl Default for WebPushLimits {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(15),
            origin_concurrency: 16,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("APNs: {0}")]
    Apns(#[from] apns::ApnsError),
    #[error("FCM: {0}")]
    Fcm(#[from] fcm::FcmError),
    #[error("HTTP client: {0}")]
    WebPushClient(#[from] reqwest::Error),
}

struct WebPushSender {
    client: reqwest::Client,
    config: WebPushConfig,
    /// Requests go through a configured proxy, which resolves endpoint names itself.
    proxied: bool,
    /// How long resolving an endpoint's name before a proxied request may take.
    connect_timeout: Duration,
}

/// The providers, ready to send.
pub struct Providers {
    apns: Option<ApnsClient>,
    fcm: Option<FcmClient>,
    webpush: Option<WebPushSender>,
    allow_private_endpoints: bool,
    /// Endpoint names checked before a proxied Web Push request.
    resolver: GuardedResolver,
    /// Web Push requests in flight and backoff, per endpoint origin.
    origins: Origins,
}

impl Providers {
    pub fn new(config: ProvidersConfig) -> Result<Self, ProviderError> {
        let proxy = config.proxy.as_ref();
        let apns = config
            .apns
            .map(|c| {
                let client = ApnsClient::new(c)?;
                match proxy {
                    Some(p) => client.with_proxy(p),
                    None => Ok(client),
                }
            })
            .transpose()?;
        let fcm = config
            .fcm
            .map(|(account, endpoint)| {
                let client = FcmClient::new(account, endpoint)?;
                match proxy {
                    Some(p) => client.with_proxy(p),
                    None => Ok(client),
                }
            })
            .transpose()?;
        let allow_private = config.allow_private_endpoints;
        let resolver = GuardedResolver::new(config.resolve_overrides, allow_private);
        let limits = config.webpush_limits;
        let webpush = match config.webpush {
            None => None,
            Some(webpush) => {
                let mut builder = crate::outbound::client_builder(proxy)?
                    // A redirect would sidestep the endpoint check; UnifiedPush forbids them.
                    .redirect(reqwest::redirect::Policy::none())
                    // Endpoints are user-supplied: a slow or silent one holds a slot only
                    // this long.
                    .connect_timeout(limits.connect_timeout)
                    .timeout(limits.timeout)
                    .pool_idle_timeout(Duration::from_secs(90));
                // Directly, every resolved address passes the SSRF guard (the URL check sees
                // only literal IPs, not where a name points). Through a proxy the only name
                // resolved here is the proxy's, which the operator chose and may well be
                // private; the endpoint's name is checked before each request instead.
                if proxy.is_none() {
                    builder = builder.dns_resolver(Arc::new(resolver.clone()));
                }
                Some(WebPushSender {
                    client: builder.build()?,
                    config: webpush,
                    proxied: proxy.is_some(),
                    connect_timeout: limits.connect_timeout,
                })
            }
        };
        Ok(Self {
            apns,
            fcm,
            webpush,
            allow_private_endpoints: allow_private,
            resolver,
            origins: Origins::new(limits.origin_concurrency, limits.timeout),
        })
    }

    /// No provider at all.
    pub fn none() -> Self {
        Self {
            apns: None,
            fcm: None,
            webpush: None,
            allow_private_endpoints: false,
            resolver: GuardedResolver::default(),
            origins: Origins::new(1, WebPushLimits::default().timeout),
        }
    }

    pub fn is_configured(&self, provider: Provider) -> bool {
        match provider {
            Provider::Apns => self.apns.is_some(),
            Provider::Fcm => self.fcm.is_some(),
            Provider::WebPush => self.webpush.is_some(),
        }
    }

    /// Platforms some configured provider can reach.
    pub fn platforms(&self) -> Vec<Platform> {
        Platform::ALL
            .into_iter()
            .filter(|p| self.is_configured(p.provider()))
            .collect()
    }

    /// Whether a delivery to `device` may start: Web Push and UnifiedPush deliveries need a slot
    /// of their endpoint's origin ([`crate::origin`]); others always may (`None`).
    pub fn admit(&self, device: &ClaimedDevice) -> Option<Admission> {
        let Channel::WebPush { endpoint, .. } = &device.channel else {
            return None;
        };
        // An endpoint that does not parse is rejected by the delivery itself.
        let url = Url::parse(endpoint).ok()?;
        Some(self.origins.admit(&origin_key(&url)))
    }

    pub fn allow_private_endpoints(&self) -> bool {
        self.allow_private_endpoints
    }

    /// The VAPID public key browsers subscribe with, when Web Push is configured.
    pub fn vapid_public_key(&self) -> Option<&str> {
        self.webpush
            .as_ref()
            .map(|w| w.config.vapid.public_key_base64url())
    }

    /// Sends one push to one device, in the body its app reads:
    /// - APNs: `{data:{type,payload}, aps:{content-available:1}}` as a background push;
    /// - FCM: data `{type, payload, contextId}`, all strings, high priority;
    /// - Web Push: `{data:{type,payload}}` encrypted for the subscription.
    pub async fn deliver(
        &self,
        device: &ClaimedDevice,
        push_type: u8,
        payload: &str,
        context_id: Option<&str>,
    ) -> Outcome {
        let started = Instant::now();
        let provider = device.platform.provider();
        let outcome = match (&device.channel, provider) {
            (Channel::Token(token), Provider::Apns) => match &self.apns {
                Some(client) => {
                    let body = apns::bitwarden_payload(push_type, payload);
                    let env = device.apns_environment.unwrap_or(Environment::Production);
                    client
                        .send(token, env, &body, SendOptions::default())
                        .await
                        .into()
                }
                None => not_configured(provider),
            },
            (Channel::Token(token), Provider::Fcm) => match &self.fcm {
                Some(client) => {
                    let data = fcm::bitwarden_data(push_type, payload, context_id);
                    client.send(token, &data).await.into()
                }
                None => not_configured(provider),
            },
            (
                Channel::WebPush {
                    endpoint,
                    p256dh,
                    auth,
                },
                Provider::WebPush,
            ) => match &self.webpush {
                Some(sender) => {
                    self.web_push(sender, endpoint, p256dh, auth, push_type, payload)
                        .await
                }
                None => not_configured(provider),
            },
            _ => Outcome::Rejected {
                reason: format!(
                    "registration channel does not fit platform {}",
                    device.platform.as_str()
                ),
            },
        };
        metrics::histogram!("pushwarden_push_attempt_duration_seconds", "provider" => provider.as_str())
            .record(started.elapsed().as_secs_f64());
        outcome
    }

    async fn web_push(
        &self,
        sender: &WebPushSender,
        endpoint: &str,
        p256dh: &str,
        auth: &str,
        push_type: u8,
        payload: &str,
    ) -> Outcome {
        let subscription =
            match parse_subscription(endpoint, p256dh, auth, self.allow_private_endpoints) {
                Ok(s) => s,
                // Checked at registration; failing now means the rules changed: the subscription
                // can never be used.
                Err(reason) => {
                    return Outcome::Gone {
                        reason,
                        at_ms: None,
                    }
                }
            };
        let body = web_push_body(push_type, payload);
        // AuthRequest (a login waiting for approval) and LogOut should wake the device.
        let urgency = match PushType::from_u8(push_type) {
            Some(PushType::AuthRequest | PushType::AuthRequestResponse | PushType::LogOut) => {
                Urgency::High
            }
            _ => Urgency::Normal,
        };
        let ttl = u32::try_from(sender.config.ttl.as_secs()).unwrap_or(u32::MAX);
        match webpush::build_request(
            &subscription,
            body.as_bytes(),
            &sender.config.vapid,
            &sender.config.subject,
            ttl,
            urgency,
        ) {
            Ok(request) => {
                let started = Instant::now();
                let checked = if sender.proxied {
                    self.check_proxied(sender, &request.endpoint).await
                } else {
                    Ok(())
                };
                let outcome = match checked {
                    Ok(()) => webpush::send(&sender.client, &request).await,
                    Err(refused_or_unresolved) => refused_or_unresolved,
                };
                // A refused name says nothing about how the origin answers.
                if matches!(outcome, webpush::Outcome::Refused { .. }) {
                    return outcome.into();
                }
                let answered = !matches!(outcome, webpush::Outcome::Unreachable { .. });
                self.origins
                    .record(&origin_key(&request.endpoint), answered, started.elapsed());
                outcome.into()
            }
            Err(e) => Outcome::Rejected {
                reason: format!("Web Push: {e}"),
            },
        }
    }
}

impl Providers {
    /// Before a Web Push request goes to the proxy, which resolves the endpoint's name itself:
    /// the name must resolve here, and to no special-purpose address (see
    /// [`GuardedResolver::check_all`] for the DNS-rebinding gap this leaves).
    async fn check_proxied(
        &self,
        sender: &WebPushSender,
        endpoint: &Url,
    ) -> Result<(), webpush::Outcome> {
        // Literal addresses were checked with the URL.
        let Some(url::Host::Domain(host)) = endpoint.host() else {
            return Ok(());
        };
        // A name server that never answers holds the delivery no longer than a connect would.
        let checked =
            tokio::time::timeout(sender.connect_timeout, self.resolver.check_all(host)).await;
        match checked {
            Ok(Ok(())) => Ok(()),
            Ok(Err(CheckError::Refused(refused))) => Err(webpush::Outcome::Refused {
                reason: refused.to_string(),
            }),
            Ok(Err(CheckError::Lookup(e))) => Err(webpush::Outcome::Unreachable {
                reason: format!("resolving {host}: {e}"),
            }),
            Err(_) => Err(webpush::Outcome::Unreachable {
                reason: format!("resolving {host} timed out"),
            }),
        }
    }
}

/// The plaintext a browser or UnifiedPush client decrypts: Bitwarden's Web Push template
/// `{"data":{"type":#(type),"payload":"$(payload)"}}`.
pub fn web_push_body(push_type: u8, payload: &str) -> String {
    serde_json::json!({"data": {"type": push_type, "payload": payload}}).to_string()
}

/// Validates a subscription as registered: endpoint URL, SSRF rules and keys.
pub fn parse_subscription(
    endpoint: &str,
    p256dh: &str,
    auth: &str,
    allow_private: bool,
) -> Result<Subscription, String> {
    let url = Url::parse(endpoint).map_err(|e| format!("webPush.endpoint is not a URL: {e}"))?;
    webpush::check_endpoint(&url, allow_private)
        .map_err(|e| format!("{e} (the operator can allow private and plain-http endpoints)"))?;
    Subscription::from_base64url(url, p256dh, auth).map_err(|e| e.to_string())
}

fn not_configured(provider: Provider) -> Outcome {
    Outcome::Misconfigured {
        reason: format!("{} is not configured", provider.as_str()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The URL check cannot see where a name points; the client's resolver must refuse a
    /// name that resolves only to private addresses (here `localhost`, from /etc/hosts).
    #[tokio::test]
    async fn web_push_client_refuses_names_that_resolve_to_private_addresses() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let webpush = || WebPushConfig {
            vapid: VapidKey::generate(),
            subject: "mailto:ops@example.com".into(),
            ttl: Duration::from_secs(60),
        };
        let guarded = Providers::new(ProvidersConfig {
            webpush: Some(webpush()),
            ..ProvidersConfig::default()
        })
        .expect("providers");
        let client = &guarded.webpush.as_ref().expect("web push").client;
        let refused = client
            .post(format!("http://localhost:{port}/push/x"))
            .send()
            .await
            .expect_err("a private address must be refused");
        assert!(
            crate::ssrf::refused_in(&refused).is_some(),
            "the guard refused it: {refused:?}"
        );
        // With private endpoints allowed the same request reaches the listener.
        let open = Providers::new(ProvidersConfig {
            webpush: Some(webpush()),
            allow_private_endpoints: true,
            ..ProvidersConfig::default()
        })
        .expect("providers");
        let client = open.webpush.as_ref().expect("web push").client.clone();
        let request = tokio::spawn(async move {
            client
                .post(format!("http://localhost:{port}/push/x"))
                .send()
                .await
        });
        let accepted = tokio::time::timeout(Duration::from_secs(5), listener.accept()).await;
        assert!(matches!(accepted, Ok(Ok(_))), "the open client connected");
        request.abort();
    }
}
