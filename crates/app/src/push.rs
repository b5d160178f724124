//! Builds the push service (registry, queue, providers) from configuration.

use std::path::Path;

use anyhow::{bail, Context, Result};
use pushwarden_push::apns::ApnsConfig;
use pushwarden_push::backoff::Backoff;
use pushwarden_push::fcm::ServiceAccount;
use pushwarden_push::providers::WebPushLimits;
use pushwarden_push::store::redact;
use pushwarden_push::webpush::VapidKey;
use pushwarden_push::{
    DeliveryOptions, Providers, ProvidersConfig, PushService, Store, Upstream, UpstreamConfig,
    WebPushConfig,
};
use url::Url;

use crate::config::Config;

fn read(path: &Path, what: &str) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {what} {}", path.display()))
}

fn url(value: &str, name: &str) -> Result<Url> {
    Url::parse(value).with_context(|| format!("{name}={value} is not a URL"))
}

/// APNs is configured when any of its settings is; then all four credentials are required.
fn apns(config: &Config) -> Result<Option<ApnsConfig>> {
    let a = &config.apns;
    if a.key_file.is_none() && a.key_id.is_none() && a.team_id.is_none() && a.topic.is_none() {
        return Ok(None);
    }
    let missing: Vec<&str> = [
        ("PUSHWARDEN_APNS_KEY_FILE", a.key_file.is_none()),
        ("PUSHWARDEN_APNS_KEY_ID", a.key_id.is_none()),
        ("PUSHWARDEN_APNS_TEAM_ID", a.team_id.is_none()),
        ("PUSHWARDEN_APNS_TOPIC", a.topic.is_none()),
    ]
    .into_iter()
    .filter_map(|(name, absent)| absent.then_some(name))
    .collect();
    if !missing.is_empty() {
        bail!("APNs is partly configured; also set {}", missing.join(", "));
    }
    let (Some(key_file), Some(key_id), Some(team_id), Some(topic)) =
        (&a.key_file, &a.key_id, &a.team_id, &a.topic)
    else {
        bail!("APNs is partly configured");
    };
    Ok(Some(ApnsConfig {
        key_pem: crate::secrets::read_private(key_file, "the APNs key")?,
        key_id: key_id.clone(),
        team_id: team_id.clone(),
        topic: topic.clone(),
        endpoint: a
            .endpoint
            .as_deref()
            .map(|e| url(e, "PUSHWARDEN_APNS_ENDPOINT"))
            .transpose()?,
        extra_ca_pem: a
            .ca_file
            .as_deref()
            .map(|p| read(p, "the APNs CA file"))
            .transpose()?,
    }))
}

fn fcm(config: &Config) -> Result<Option<(ServiceAccount, Option<Url>)>> {
    let Some(path) = &config.fcm.service_account else {
        if config.fcm.endpoint.is_some() {
            bail!("PUSHWARDEN_FCM_ENDPOINT is set but PUSHWARDEN_FCM_SERVICE_ACCOUNT is not");
        }
        return Ok(None);
    };
    let text = String::from_utf8(crate::secrets::read_private(
        path,
        "the FCM service account",
    )?)
    .with_context(|| format!("{} is not UTF-8", path.display()))?;
    let account = ServiceAccount::from_json(&text)
        .map_err(|e| anyhow::anyhow!("FCM service account {}: {e}", path.display()))?;
    let endpoint = config
        .fcm
        .endpoint
        .as_deref()
        .map(|e| url(e, "PUSHWARDEN_FCM_ENDPOINT"))
        .transpose()?;
    Ok(Some((account, endpoint)))
}

fn webpush(config: &Config) -> Result<Option<WebPushConfig>> {
    let w = &config.webpush;
    let Some(path) = &w.vapid_private_key else {
        return Ok(None);
    };
    let pem = String::from_utf8(crate::secrets::read_private(path, "the VAPID private key")?)
        .with_context(|| format!("{} is not UTF-8", path.display()))?;
    let vapid = VapidKey::from_pem(&pem)
        .map_err(|e| anyhow::anyhow!("VAPID private key {}: {e}", path.display()))?;
    let Some(subject) = w.vapid_subject.clone() else {
        bail!(
            "PUSHWARDEN_VAPID_SUBJECT (a mailto: or https: contact) is required with a VAPID key"
        );
    };
    if !(subject.starts_with("mailto:") || subject.starts_with("https://")) {
        bail!("PUSHWARDEN_VAPID_SUBJECT must start with mailto: or https://, got {subject:?}");
    }
    Ok(Some(WebPushConfig {
        vapid,
        subject,
        ttl: w.ttl,
    }))
}

/// The outbound proxy every provider goes through, if one is configured.
fn proxy(config: &Config) -> Result<Option<Url>> {
    config
        .push
        .proxy
        .as_deref()
        .map(|p| url(p, "PUSHWARDEN_PUSH_PROXY"))
        .transpose()
}

/// The upstream relay, when an installation id and key are configured.
fn upstream(config: &Config) -> Result<Option<Upstream>> {
    let u = &config.upstream;
    let (Some(id), Some(key)) = (&u.installation_id, &u.installation_key) else {
        return Ok(None);
    };
    let relay = u
        .relay_uri
        .as_deref()
        .unwrap_or("https://push.bitwarden.com");
    let identity = u
        .identity_uri
        .as_deref()
        .unwrap_or("https://identity.bitwarden.com");
    let upstream = Upstream::new(UpstreamConfig {
        relay_uri: url(relay, "PUSHWARDEN_UPSTREAM_RELAY_URI")?,
        identity_uri: url(identity, "PUSHWARDEN_UPSTREAM_IDENTITY_URI")?,
        installation_id: id.clone(),
        installation_key: key.clone(),
        ca_pem: u
            .ca_file
            .as_deref()
            .map(|p| read(p, "the upstream CA file"))
            .transpose()?,
    })
    .context("upstream relay HTTP client")?;
    let upstream = match proxy(config)? {
        Some(p) => upstream
            .with_proxy(&p)
            .context("upstream relay HTTP client")?,
        None => upstream,
    };
    tracing::info!(relay, identity, installation = %id, "mobile pushes without local credentials go to the upstream relay");
    Ok(Some(upstream))
}

/// The push service, with its store connected and migrated. Its worker is not started yet.
pub async fn build(config: &Config) -> Result<PushService> {
    let providers = Providers::new(ProvidersConfig {
        apns: apns(config)?,
        fcm: fcm(config)?,
        webpush: webpush(config)?,
        allow_private_endpoints: config.push.allow_private_endpoints,
        proxy: proxy(config)?,
        webpush_limits: WebPushLimits {
            connect_timeout: config.webpush.connect_timeout,
            timeout: config.webpush.timeout,
            origin_concurrency: config.webpush.origin_concurrency,
        },
        ..ProvidersConfig::default()
    })
    .context("push providers")?;
    let url = config.database_url();
    if config.database_url.is_none() {
        // The default database lives in the data directory, which is kept private.
        crate::secrets::private_dir(&config.data_dir)?;
    }
    let store = Store::connect(&url)
        .await
        .with_context(|| format!("opening the push database {}", redact(&url)))?;
    let configured: Vec<&str> = pushwarden_push::registration::Provider::ALL
        .into_iter()
        .filter(|p| providers.is_configured(*p))
        .map(|p| p.as_str())
        .collect();
    tracing::info!(database = %redact(&url), providers = ?configured, "push gateway ready");
    let options = DeliveryOptions {
        max_age: config.push.max_age,
        concurrency: config.push.concurrency,
        backoff: Backoff {
            base: config.push.retry_base,
            max: config.push.retry_max,
        },
        ..DeliveryOptions::default()
    };
    Ok(PushService::new(
        store,
        providers,
        upstream(config)?,
        options,
    ))
}
