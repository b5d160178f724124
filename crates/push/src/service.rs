//! The push service: registry, queue, providers and worker behind Bitwarden's push API, and,
//! when configured, the outbox to an upstream relay.

use std::collections::HashMap;
use std::sync::Arc;

use pushwarden_model::{
    BoxFuture, DeviceRegistration, DeviceTarget, GatewayError, InstallationDirectory, PushChannel,
    PushGateway, PushMessage, Recipient, SecretVerdict,
};
use tokio::sync::Notify;

use crate::accept::Acceptor;
use crate::delivery::{DeliveryOptions, DeliveryWork, Worker};
use crate::health::{Health, ProviderHealth};
use crate::journal::Journal;
use crate::lease;
use crate::providers::{parse_subscription, Providers};
use crate::registration::{parse_environment, Channel, Platform, Provider, Registration};
use crate::store::{now_ms, Backend, Enqueued, NewPush, SecretCheck, Store, StoreError, Upsert};
use crate::upstream::{OutboxWork, Upstream};

pub struct PushService {
    store: Store,
    providers: Arc<Providers>,
    upstream: Option<Arc<Upstream>>,
    health: Arc<Health>,
    journal: Arc<Journal>,
    options: DeliveryOptions,
    wake: Arc<Notify>,
    /// Set on every accepted push, for the worker (see `delivery::Worker::fresh`).
    fresh: Arc<std::sync::atomic::AtomicBool>,
    wake_outbox: Arc<Notify>,
    /// When each installation's last activity was last written (Unix ms), so that it is
    /// written at most once a minute. Holds only installations that passed a check.
    activity_written: parking_lot::Mutex<HashMap<String, i64>>,
    /// Stores accepted pushes in group commits; started on first use (it needs a runtime).
    acceptor: std::sync::OnceLock<Acceptor>,
}

/// How stale an installation's recorded last activity may get.
const ACTIVITY_RESOLUTION_MS: i64 = 60_000;

fn unavailable(e: StoreError) -> GatewayError {
    tracing::error!(error = %e, "push store failed");
    GatewayError::Unavailable(format!("the push store is unavailable: {e}"))
}

impl PushService {
    pub fn new(
        store: Store,
        providers: Providers,
        upstream: Option<Upstream>,
        options: DeliveryOptions,
    ) -> Self {
        Self {
            store,
            providers: Arc::new(providers),
            upstream: upstream.map(Arc::new),
            health: Arc::new(Health::default()),
            journal: Arc::new(Journal::default()),
            options,
            activity_written: parking_lot::Mutex::new(HashMap::new()),
            acceptor: std::sync::OnceLock::new(),
            wake: Arc::new(Notify::new()),
            fresh: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            wake_outbox: Arc::new(Notify::new()),
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn providers(&self) -> &Providers {
        &self.providers
    }

    /// Recent delivery attempts, provider errors and drops (in memory, this process only).
    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// Whether pushes for mobile platforms go to an upstream relay.
    pub fn has_upstream(&self) -> bool {
        self.upstream.is_some()
    }

    /// Records that an installation was active now, in the database at most once a minute.
    async fn installation_active(&self, id: &str) {
        let now = now_ms();
        {
            let mut written = self.activity_written.lock();
            if written
                .get(id)
                .is_some_and(|at| now - at < ACTIVITY_RESOLUTION_MS)
            {
                return;
            }
            written.insert(id.to_owned(), now);
        }
        if let Err(e) = self.store.installations().touch(id, now).await {
            tracing::warn!(error = %e, "recording an installation's last activity failed");
        }
    }

    /// Mobile platforms with no local credentials, which go to the upstream relay instead.
    /// Web Push is never relayed (as Bitwarden's relay client skips it).
    pub fn relayed_platforms(&self) -> Vec<Platform> {
        if self.upstream.is_none() {
            return Vec::new();
        }
        [Platform::Apns, Platform::Fcm]
            .into_iter()
            .filter(|p| !self.providers.is_configured(p.provider()))
            .collect()
    }

    /// Whether this service can deliver anywhere: a provider or an upstream relay.
    pub fn can_deliver(&self) -> bool {
        !self.providers.platforms().is_empty() || self.upstream.is_some()
    }

    /// Starts the delivery worker (and the relay outbox's); they stop when `stop` turns true.
    pub async fn start_worker(
        &self,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> Result<tokio::task::JoinHandle<()>, StoreError> {
        if self.store.backend() == Backend::Sqlite {
            // A SQLite file has one user, so leases left by a previous run are stale.
            let released = self.store.release_all_leases().await?;
            if released > 0 {
                tracing::info!(
                    released,
                    "push queue: resuming work claimed by the previous run"
                );
            }
        }
        let pending = self.store.deliveries().pending().await?;
        metrics::gauge!("pushwarden_push_queue_pending").set(pending as f64);
        if pending > 0 {
            tracing::info!(
                pending,
                "push queue: deliveries pending from before the start"
            );
        }
        let (finished, to_finish) = tokio::sync::mpsc::channel(4 * 512);
        let finisher = tokio::spawn(crate::delivery::finish_in_batches(
            self.store.deliveries(),
            to_finish,
            self.wake.clone(),
        ));
        let deliveries = DeliveryWork::new(Worker {
            deliveries: self.store.deliveries(),
            registrations: self.store.registrations(),
            providers: self.providers.clone(),
            health: self.health.clone(),
            journal: self.journal.clone(),
            options: self.options.clone(),
            finished,
            wake: self.wake.clone(),
            fresh: self.fresh.clone(),
        });
        let outbox = self.upstream.clone().map(|upstream| OutboxWork {
            outbox: self.store.outbox(),
            upstream,
            health: self.health.clone(),
            journal: self.journal.clone(),
            policy: self.options.retry_policy(),
            lease: self.options.lease,
            poll_interval: self.options.poll_interval,
        });
        let (wake, wake_outbox) = (self.wake.clone(), self.wake_outbox.clone());
        Ok(tokio::spawn(async move {
            let outbox = outbox.map(|o| {
                let pace = o.pace();
                tokio::spawn(lease::run(Arc::new(o), pace, wake_outbox, stop.clone()))
            });
            let pace = deliveries.pace();
            lease::run(Arc::new(deliveries), pace, wake, stop).await;
            // The finisher ends once the worker and its deliveries in flight (which hold
            // clones of the sender) are gone, after writing its last batch.
            let _ = finisher.await;
            if let Some(outbox) = outbox {
                let _ = outbox.await;
            }
        }))
    }

    /// Each provider's configuration state (`apns`, `fcm`, `webpush`, and `relay` for the
    /// upstream relay).
    pub fn provider_health(&self) -> HashMap<&'static str, ProviderHealth> {
        let mut names: Vec<(&'static str, bool)> = Provider::ALL
            .into_iter()
            .map(|p| (p.as_str(), self.providers.is_configured(p)))
            .collect();
        names.push(("relay", self.upstream.is_some()));
        self.health.snapshot(&names)
    }

    /// Provider configuration state and queue depth, for `/health`.
    pub async fn health(&self) -> serde_json::Value {
        let providers = self.provider_health();
        let (database, pending) = match self.store.deliveries().pending().await {
            Ok(n) => ("ok", Some(n)),
            Err(e) => {
                tracing::warn!(error = %e, "health: push store unreachable");
                ("unreachable", None)
            }
        };
        let outbox = match &self.upstream {
            Some(_) => self.store.outbox().pending().await.ok(),
            None => None,
        };
        // Judged from the same snapshot that is shown, so the two always agree.
        let degraded = providers.values().any(|p| p.error.is_some()) || database != "ok";
        serde_json::json!({
            "status": if degraded { "degraded" } else { "ok" },
            "database": database,
            "pendingDeliveries": pending,
            "pendingRelayRequests": outbox,
            "providers": providers,
        })
    }

    fn registration(&self, device: DeviceRegistration) -> Result<Registration, GatewayError> {
        let bad = |m: String| GatewayError::BadRequest(m);
        let (platform, channel) = match device.channel {
            PushChannel::Token(token) => (
                Platform::for_push_token(device.device_type).map_err(|e| bad(e.to_string()))?,
                Channel::Token(token),
            ),
            PushChannel::WebPush {
                endpoint,
                p256dh,
                auth,
            } => {
                parse_subscription(
                    &endpoint,
                    &p256dh,
                    &auth,
                    self.providers.allow_private_endpoints(),
                )
                .map_err(bad)?;
                (
                    Platform::for_web_push(device.device_type),
                    Channel::WebPush {
                        endpoint,
                        p256dh,
                        auth,
                    },
                )
            }
        };
        let apns_environment = match device.apns_environment.as_deref() {
            None => None,
            Some(s) => Some(parse_environment(s).ok_or_else(|| {
                bad(format!(
                    "apnsEnvironment must be \"production\" or \"sandbox\", got {s:?}"
                ))
            })?),
        };
        let now = now_ms();
        Ok(Registration {
            device_id: device.device_id,
            platform,
            channel,
            apns_environment,
            user_id: device.user_id,
            identifier: device.identifier,
            organization_ids: device.organization_ids,
            installation_id: device.installation_id,
            owner: device.owner,
            device_type: device.device_type,
            created_ms: now,
            updated_ms: now,
        })
    }

    /// Queues a request for the upstream relay.
    async fn forward(
        &self,
        method: &str,
        path: &str,
        body: serde_json::Value,
    ) -> Result<(), GatewayError> {
        self.store
            .outbox()
            .add(method, path, &body.to_string(), now_ms())
            .await
            .map_err(unavailable)?;
        self.wake_outbox.notify_one();
        Ok(())
    }

    /// Of these device ids, those registered locally on a platform that goes upstream.
    async fn relayed_devices(&self, device_ids: &[String]) -> Result<Vec<String>, GatewayError> {
        let relayed = self.relayed_platforms();
        let mut out = Vec::new();
        if relayed.is_empty() {
            return Ok(out);
        }
        let registrations = self.store.registrations();
        for id in device_ids {
            let found = registrations.get(id).await.map_err(unavailable)?;
            if found.is_some_and(|r| r.owner.is_none() && relayed.contains(&r.platform)) {
                out.push(id.clone());
            }
        }
        Ok(out)
    }

    async fn update_organization(
        &self,
        device_ids: Vec<String>,
        organization_id: String,
        add: bool,
    ) -> Result<u64, GatewayError> {
        let relayed = self.relayed_devices(&device_ids).await?;
        let registrations = self.store.registrations();
        let changed = if add {
            registrations
                .add_organization(&device_ids, &organization_id)
                .await
        } else {
            registrations
                .remove_organization(&device_ids, &organization_id)
                .await
        }
        .map_err(unavailable)?;
        // Bitwarden's relay client skips an empty device list.
        if !relayed.is_empty() {
            let path = if add {
                "push/add-organization"
            } else {
                "push/delete-organization"
            };
            let devices: Vec<serde_json::Value> = relayed
                .iter()
                .map(|id| serde_json::json!({ "id": id }))
                .collect();
            self.forward(
                "PUT",
                path,
                serde_json::json!({"devices": devices, "organizationId": organization_id}),
            )
            .await?;
        }
        Ok(changed)
    }
}

impl PushGateway for PushService {
    fn register(
        &self,
        device: DeviceRegistration,
        max_owned: Option<u64>,
    ) -> BoxFuture<'_, Result<String, GatewayError>> {
        Box::pin(async move {
            let registration = self.registration(device)?;
            let platform = registration.platform;
            let registrations = self.store.registrations();
            let relayed =
                registration.owner.is_none() && self.relayed_platforms().contains(&platform);
            if !relayed && !self.providers.is_configured(platform.provider()) {
                tracing::warn!(
                    platform = platform.as_str(),
                    "registered a device whose provider is not configured: it gets no pushes until it is"
                );
            }
            let limit = registration
                .owner
                .as_ref()
                .and(max_owned)
                .map(|max| i64::try_from(max).unwrap_or(i64::MAX));
            match limit {
                None => registrations.upsert(&registration).await,
                Some(max) => match registrations.upsert_within(&registration, max).await {
                    Ok(Upsert::Stored) => Ok(()),
                    Ok(Upsert::LimitReached { owned }) => {
                        return Err(GatewayError::LimitExceeded(format!(
                            "the installation has {owned} registrations, the most allowed"
                        )))
                    }
                    Err(e) => Err(e),
                },
            }
            .map_err(unavailable)?;
            metrics::counter!("pushwarden_push_registrations_total", "platform" => platform.as_str())
                .increment(1);
            if relayed {
                // `RelayPushRegistrationService.CreateOrUpdateRegistrationAsync`'s body.
                let Channel::Token(token) = &registration.channel else {
                    return Ok(platform.as_str().to_owned());
                };
                let upstream_installation = self
                    .upstream
                    .as_ref()
                    .map(|u| u.installation_id().to_owned());
                self.forward(
                    "POST",
                    "push/register",
                    serde_json::json!({
                        "deviceId": registration.device_id,
                        "identifier": registration.identifier,
                        "pushToken": token,
                        "type": registration.device_type,
                        "userId": registration.user_id,
                        "organizationIds": registration.organization_ids,
                        "installationId": upstream_installation,
                    }),
                )
                .await?;
            }
            Ok(platform.as_str().to_owned())
        })
    }

    fn delete(&self, device_id: String) -> BoxFuture<'_, Result<bool, GatewayError>> {
        Box::pin(async move {
            let relayed = self
                .relayed_devices(std::slice::from_ref(&device_id))
                .await?;
            let existed = self
                .store
                .registrations()
                .delete(&device_id)
                .await
                .map_err(unavailable)?;
            if !relayed.is_empty() {
                self.forward(
                    "POST",
                    "push/delete",
                    serde_json::json!({ "id": device_id }),
                )
                .await?;
            }
            Ok(existed)
        })
    }

    fn add_organization(
        &self,
        device_ids: Vec<String>,
        organization_id: String,
    ) -> BoxFuture<'_, Result<u64, GatewayError>> {
        Box::pin(self.update_organization(device_ids, organization_id, true))
    }

    fn delete_organization(
        &self,
        device_ids: Vec<String>,
        organization_id: String,
    ) -> BoxFuture<'_, Result<u64, GatewayError>> {
        Box::pin(self.update_organization(device_ids, organization_id, false))
    }

    fn send(
        &self,
        target: DeviceTarget,
        message: PushMessage,
    ) -> BoxFuture<'_, Result<u64, GatewayError>> {
        Box::pin(async move {
            let platforms = self.providers.platforms();
            let deliveries = self.store.deliveries();
            // Counted by each caller at once; stored with the pushes accepted alongside it.
            let matching = deliveries
                .count_matching(&target, &platforms)
                .await
                .map_err(unavailable)?;
            let enqueued = if matching == 0 {
                Enqueued {
                    message_id: None,
                    deliveries: 0,
                }
            } else {
                let push = NewPush {
                    target: target.clone(),
                    message: message.clone(),
                    platforms,
                    now_ms: now_ms(),
                };
                let acceptor = self
                    .acceptor
                    .get_or_init(|| Acceptor::start(self.store.deliveries()));
                Enqueued {
                    message_id: Some(acceptor.store(push).await.map_err(unavailable)?),
                    deliveries: matching,
                }
            };
            let name = message.push_type.name();
            metrics::counter!("pushwarden_push_messages_total", "type" => name).increment(1);
            metrics::counter!("pushwarden_push_enqueued_total").increment(enqueued.deliveries);
            if enqueued.deliveries > 0 {
                self.fresh.store(true, std::sync::atomic::Ordering::Relaxed);
                self.wake.notify_one();
            }
            let mut queued = enqueued.deliveries;
            // The upstream relay does its own fan-out: one request per push, and only when a
            // local device on a relayed platform would get it (as Vaultwarden checks).
            let relayed = self.relayed_platforms();
            if let Some(upstream) = &self.upstream {
                if self
                    .store
                    .registrations()
                    .has_local(&target, &relayed)
                    .await
                    .map_err(unavailable)?
                {
                    let payload: serde_json::Value =
                        serde_json::from_str(&message.payload).unwrap_or(serde_json::Value::Null);
                    let (user, organization, installation) = match &target.target.recipient {
                        Recipient::User(u) => (Some(u.clone()), None, None),
                        Recipient::Organization(o) => (None, Some(o.clone()), None),
                        Recipient::Installation(_) => {
                            (None, None, Some(upstream.installation_id().to_owned()))
                        }
                    };
                    // `RelayPushEngine`'s body (camelCase, nulls included).
                    self.forward(
                        "POST",
                        "push/send",
                        serde_json::json!({
                            "userId": user,
                            "organizationId": organization,
                            "installationId": installation,
                            "deviceId": null,
                            "identifier": target.exclude_identifier,
                            "type": message.push_type.as_u8(),
                            "payload": payload,
                            "clientType": target.target.client_type.map(|c| c as u8),
                        }),
                    )
                    .await?;
                    queued += 1;
                }
            }
            Ok(queued)
        })
    }
}

impl InstallationDirectory for PushService {
    fn check_secret(
        &self,
        id: String,
        secret: String,
    ) -> BoxFuture<'_, Result<SecretVerdict, GatewayError>> {
        Box::pin(async move {
            Ok(
                match self
                    .store
                    .installations()
                    .check_secret(&id, &secret)
                    .await
                    .map_err(unavailable)?
                {
                    SecretCheck::Valid(installation) => {
                        self.installation_active(&id).await;
                        SecretVerdict::Valid {
                            key_generation: installation.key_generation,
                        }
                    }
                    SecretCheck::Unknown => SecretVerdict::Unknown,
                    SecretCheck::Disabled => SecretVerdict::Disabled,
                    SecretCheck::WrongSecret => SecretVerdict::WrongSecret,
                },
            )
        })
    }

    fn key_generation(&self, id: String) -> BoxFuture<'_, Result<Option<i64>, GatewayError>> {
        Box::pin(async move {
            let generation = self
                .store
                .installations()
                .get(&id)
                .await
                .map_err(unavailable)?
                .filter(|i| i.enabled)
                .map(|i| i.key_generation);
            // Asked on every relay request: the installation is at work.
            if generation.is_some() {
                self.installation_active(&id).await;
            }
            Ok(generation)
        })
    }
}
