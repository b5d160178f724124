//! What the admin page shows, gathered from the hubs, the push service and its store, and the
//! live figures. A part the database cannot answer shows its error; the rest still shows.

use std::time::{Duration, SystemTime};

use pushwarden_bitwarden::Notifications;
use pushwarden_hub::ConnectionTally;
use pushwarden_push::journal::{Attempt, ProviderError};
use pushwarden_push::registration::Registration;
use pushwarden_push::store::{Installation, PendingCount};
use pushwarden_push::PushService;

use super::stats::{Latency, LiveStats};

/// Registrations of one user shown at most.
pub const MAX_USER_DEVICES: u32 = 50;

pub struct HubView {
    pub name: &'static str,
    /// Open connections, those still in their handshake included.
    pub total: usize,
    pub tallies: Vec<ConnectionTally>,
}

pub struct ProviderView {
    pub name: &'static str,
    pub configured: bool,
    /// The configuration error every push currently fails with.
    pub error: Option<String>,
    pub last_errors: Vec<ProviderError>,
}

pub struct InstallationView {
    pub installation: Installation,
    pub devices: i64,
}

pub struct Dashboard {
    pub uptime: Duration,
    pub hubs: Vec<HubView>,
    /// Notifications accepted per 5-second bucket over 15 minutes, oldest first.
    pub notifications: Vec<u64>,
    pub latency: Option<Latency>,
    pub providers: Vec<ProviderView>,
    pub pending: Result<Vec<PendingCount>, String>,
    pub dropped: Vec<(&'static str, &'static str, u64)>,
    pub registrations: Result<Vec<(String, i64)>, String>,
    /// Requests waiting for the upstream relay; `None` without one.
    pub outbox: Option<Result<i64, String>>,
    pub installations: Result<Vec<InstallationView>, String>,
}

pub struct DeviceView {
    /// `None` when the device is not registered (any more) but has recent attempts.
    pub registration: Option<Registration>,
    pub device_id: String,
    pub attempts: Vec<Attempt>,
}

pub struct Lookup {
    pub query: String,
    pub devices: Vec<DeviceView>,
    pub error: Option<String>,
}

fn text<T>(result: Result<T, impl std::fmt::Display>) -> Result<T, String> {
    result.map_err(|e| e.to_string())
}

pub async fn dashboard(
    notifications: &Notifications,
    push: &PushService,
    stats: &LiveStats,
) -> Dashboard {
    let hubs = [notifications.hub(), notifications.anonymous_hub()]
        .into_iter()
        .map(|hub| HubView {
            name: hub.name(),
            total: hub.connection_count(),
            tallies: hub.connections_by_kind(),
        })
        .collect();
    let health = push.provider_health();
    let mut providers: Vec<ProviderView> = health
        .into_iter()
        .map(|(name, h)| ProviderView {
            name,
            configured: h.configured,
            error: h.error,
            last_errors: push.journal().provider_errors(name),
        })
        .collect();
    providers.sort_by_key(|p| p.name);
    let store = push.store();
    let outbox = if push.has_upstream() {
        Some(text(store.outbox().pending().await))
    } else {
        None
    };
    Dashboard {
        uptime: stats.uptime(),
        hubs,
        notifications: stats.notification_window(SystemTime::now()),
        latency: stats.send_latency(),
        providers,
        pending: text(store.deliveries().pending_by_platform().await),
        dropped: push.journal().dropped_counts(),
        registrations: text(store.registrations().counts().await),
        outbox,
        installations: installations(push).await,
    }
}

async fn installations(push: &PushService) -> Result<Vec<InstallationView>, String> {
    let store = push.store();
    let list = text(store.installations().list().await)?;
    let devices = text(store.registrations().counts_by_owner().await)?;
    Ok(list
        .into_iter()
        .map(|installation| InstallationView {
            devices: devices.get(&installation.id).copied().unwrap_or(0),
            installation,
        })
        .collect())
}

/// Registrations whose device id or user id is `query`, each with its recent attempts; a
/// device id with attempts but no registration (removed as dead since) shows its attempts.
pub async fn lookup(push: &PushService, query: &str) -> Lookup {
    let query = query.trim().to_owned();
    let mut lookup = Lookup {
        query: query.clone(),
        devices: Vec::new(),
        error: None,
    };
    if query.is_empty() {
        return lookup;
    }
    let registrations = push.store().registrations();
    let found = async {
        let mut found = Vec::new();
        if let Some(r) = registrations.get(&query).await? {
            found.push(r);
        }
        for r in registrations.by_user(&query, MAX_USER_DEVICES).await? {
            if !found.iter().any(|f| f.device_id == r.device_id) {
                found.push(r);
            }
        }
        Ok::<_, pushwarden_push::store::StoreError>(found)
    }
    .await;
    let found = match found {
        Ok(found) => found,
        Err(e) => {
            lookup.error = Some(e.to_string());
            Vec::new()
        }
    };
    let journal = push.journal();
    if found.is_empty() {
        let attempts = journal.attempts(&query);
        if !attempts.is_empty() {
            lookup.devices.push(DeviceView {
                registration: None,
                device_id: query,
                attempts,
            });
        }
        return lookup;
    }
    lookup.devices = found
        .into_iter()
        .map(|r| DeviceView {
            attempts: journal.attempts(&r.device_id),
            device_id: r.device_id.clone(),
            registration: Some(r),
        })
        .collect();
    lookup
}
