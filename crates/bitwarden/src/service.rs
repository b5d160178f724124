//! The notifications service: Bitwarden's two hubs and how a notification reaches them.

use std::sync::Arc;
use std::time::Duration;

use pushwarden_hub::{Audience, Hub, SerializedMessage};

use crate::notification::{self, HubKind, Notification};

/// Bitwarden's hubs, ready to publish to.
pub struct Notifications {
    hub: Arc<Hub>,
    anonymous: Arc<Hub>,
}

/// What happened to a published notification on this node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// Connections it was queued for.
    pub connections: usize,
}

impl Notifications {
    pub fn new(hub: Arc<Hub>, anonymous: Arc<Hub>) -> Self {
        Self { hub, anonymous }
    }

    /// `/hub`.
    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// `/anonymous-hub`.
    pub fn anonymous_hub(&self) -> &Arc<Hub> {
        &self.anonymous
    }

    /// Routes a notification and queues it for every matching connection.
    pub fn publish(
        &self,
        notification: &Notification,
    ) -> Result<Delivery, notification::EnvelopeError> {
        let route = notification.route()?;
        let message = notification.message(route.target);
        let hub = match route.hub {
            HubKind::Authenticated => &self.hub,
            HubKind::Anonymous => &self.anonymous,
        };
        let audience = match &route.audience {
            notification::Audience::User(u) => Audience::User(u),
            notification::Audience::Group(g) => Audience::Group(g),
        };
        let connections = hub.send(audience, &message);
        let name = notification.push_type.name();
        metrics::counter!("pushwarden_notifications_total", "type" => name).increment(1);
        metrics::counter!("pushwarden_notification_deliveries_total", "type" => name)
            .increment(connections as u64);
        Ok(Delivery { connections })
    }

    /// Sends `Heartbeat` (no arguments) to every `/hub` connection every `interval`, as
    /// Bitwarden's `HeartbeatHostedService` does. Runs until the hub is dropped.
    pub fn spawn_heartbeat(&self, interval: Duration) {
        let hub = Arc::downgrade(&self.hub);
        let message = SerializedMessage::invocation("Heartbeat", Vec::new(), Vec::new());
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                let Some(hub) = hub.upgrade() else { return };
                hub.send(Audience::All, &message);
            }
        });
    }
}
