//! A hub: its connections, the users and groups they belong to, fan-out and timers.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use dashmap::DashMap;
use pushwarden_protocol::Protocol;
use pushwarden_transport::{ConnectionInfo, OutboxLimits};

use crate::identity::Identity;
use crate::machine::CloseReason;
use crate::message::{encode_control, Control, SerializedMessage};
use crate::metrics::{ConnectionTally, HubMetrics};
use crate::options::HubOptions;
use crate::session::HubSession;

/// Whether a session is in the user and group maps. Joining happens when the handshake
/// completes, leaving when the connection ends; the two can race, so both look here first.
#[derive(Default)]
pub(crate) struct Membership {
    joined: bool,
    left: bool,
}

/// Who a message is for.
#[derive(Clone, Copy, Debug)]
pub enum Audience<'a> {
    /// Every connection of a user (SignalR's `Clients.User`).
    User(&'a str),
    /// Every connection in a group (SignalR's `Clients.Group`).
    Group(&'a str),
    /// Every connection of the hub (SignalR's `Clients.All`).
    All,
}

type Members = Vec<Arc<HubSession>>;

pub struct Hub {
    name: &'static str,
    options: HubOptions,
    outbox_limits: OutboxLimits,
    epoch: Instant,
    clock: AtomicU64,
    next_id: AtomicU64,
    /// Every open connection, handshaken or not (the timers look at all of them).
    connections: DashMap<u64, Arc<HubSession>>,
    users: DashMap<Arc<str>, Members>,
    groups: DashMap<Arc<str>, Members>,
    ping: [Bytes; 2],
    metrics: HubMetrics,
}

impl Hub {
    /// Creates a hub and starts its timer task (which ends when the hub is dropped).
    pub fn new(name: &'static str, options: HubOptions, outbox_limits: OutboxLimits) -> Arc<Self> {
        let hub = Arc::new(Self {
            name,
            outbox_limits,
            epoch: Instant::now(),
            clock: AtomicU64::new(0),
            next_id: AtomicU64::new(1),
            connections: DashMap::new(),
            users: DashMap::new(),
            groups: DashMap::new(),
            ping: [
                encode_control(Protocol::Json, Control::Ping),
                encode_control(Protocol::MessagePack, Control::Ping),
            ],
            metrics: HubMetrics::new(name),
            options,
        });
        tokio::spawn(timer_loop(Arc::downgrade(&hub), hub.options.tick()));
        hub
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    pub fn options(&self) -> &HubOptions {
        &self.options
    }

    pub(crate) fn outbox_limits(&self) -> OutboxLimits {
        self.outbox_limits
    }

    pub(crate) fn metrics(&self) -> &HubMetrics {
        &self.metrics
    }

    /// Milliseconds since the hub started, as of the last timer tick: the clock of the
    /// keep-alive timers. Coarse on purpose: it is read on every delivery, and a tick is
    /// precise enough for timeouts counted in seconds.
    pub(crate) fn now_ms(&self) -> u64 {
        self.clock.load(Ordering::Relaxed)
    }

    fn advance_clock(&self) -> u64 {
        let now = self.epoch.elapsed().as_millis() as u64;
        self.clock.store(now, Ordering::Relaxed);
        now
    }

    pub(crate) fn ping_frame(&self, protocol: Protocol) -> &Bytes {
        match protocol {
            Protocol::Json => &self.ping[0],
            Protocol::MessagePack => &self.ping[1],
        }
    }

    /// Open connections (including those still in their handshake).
    pub fn connection_count(&self) -> usize {
        self.connections.len()
    }

    /// Open connections (handshake completed) by transport and hub protocol.
    pub fn connections_by_kind(&self) -> Vec<ConnectionTally> {
        self.metrics.open_connections()
    }

    /// A new connection for `identity`; it joins its user and groups after its handshake.
    pub fn open(self: &Arc<Self>, identity: Identity, info: ConnectionInfo) -> Arc<HubSession> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let identity = self.interned(identity);
        let session = HubSession::new(
            id,
            info.connection_id,
            self.clone(),
            identity,
            info.stateful_reconnect && self.options.stateful_reconnect,
        );
        self.connections.insert(id, session.clone());
        session
    }

    /// Shares the names of users and groups that already have members, rather than keeping
    /// a copy per connection: ten thousand members of one organization hold one string.
    fn interned(&self, mut identity: Identity) -> Identity {
        if let Some(user) = &mut identity.user_id {
            if let Some(shared) = self.users.get(&**user).map(|e| e.key().clone()) {
                *user = shared;
            }
        }
        for group in &mut identity.groups {
            if let Some(shared) = self.groups.get(&**group).map(|e| e.key().clone()) {
                *group = shared;
            }
        }
        identity
    }

    pub(crate) fn joined(&self, session: &Arc<HubSession>) {
        let mut membership = session.membership.lock();
        if membership.left || membership.joined {
            return;
        }
        membership.joined = true;
        if let Some(user) = &session.identity.user_id {
            self.users
                .entry(user.clone())
                .or_default()
                .push(session.clone());
        }
        for group in &session.identity.groups {
            self.groups
                .entry(group.clone())
                .or_default()
                .push(session.clone());
        }
        if let Some(protocol) = session.protocol() {
            self.metrics
                .connection_opened(session.transport(), protocol);
        }
    }

    pub(crate) fn left(&self, session: &HubSession) {
        let mut membership = session.membership.lock();
        if membership.left {
            return;
        }
        membership.left = true;
        self.connections.remove(&session.id);
        if !membership.joined {
            return;
        }
        if let Some(user) = &session.identity.user_id {
            remove_member(&self.users, user, session.id);
        }
        for group in &session.identity.groups {
            remove_member(&self.groups, group, session.id);
        }
        if let Some(protocol) = session.protocol() {
            self.metrics
                .connection_closed(session.transport(), protocol);
        }
    }

    /// Queues `message` for every connection of `audience` on this node. Returns how many
    /// connections it was handed to.
    pub fn send(&self, audience: Audience<'_>, message: &SerializedMessage) -> usize {
        let (label, delivered) = match audience {
            Audience::User(user) => ("user", deliver_to(self.users.get(user).as_deref(), message)),
            Audience::Group(group) => (
                "group",
                deliver_to(self.groups.get(group).as_deref(), message),
            ),
            Audience::All => {
                let mut n = 0;
                for session in self.connections.iter() {
                    n += usize::from(session.deliver(message));
                }
                ("all", n)
            }
        };
        self.metrics.messages_sent(label, delivered);
        delivered
    }

    /// Closes every connection, telling clients whether to reconnect (graceful shutdown says
    /// yes: another instance, or this one restarted, will take them).
    pub fn close_all(&self, allow_reconnect: bool) {
        for session in self.snapshot() {
            session.close(CloseReason::Shutdown { allow_reconnect });
        }
    }

    fn snapshot(&self) -> Vec<Arc<HubSession>> {
        self.connections.iter().map(|e| e.value().clone()).collect()
    }
}

fn deliver_to(members: Option<&Members>, message: &SerializedMessage) -> usize {
    members.map_or(0, |m| m.iter().filter(|s| s.deliver(message)).count())
}

fn remove_member(map: &DashMap<Arc<str>, Members>, key: &str, id: u64) {
    if let Some(mut members) = map.get_mut(key) {
        if let Some(pos) = members.iter().position(|s| s.id == id) {
            members.swap_remove(pos);
        }
    }
    map.remove_if(key, |_, members| members.is_empty());
}

/// Pings quiet connections, times out silent ones and those that never finish their handshake,
/// and acknowledges stateful clients. One task for the whole hub, like ASP.NET Core's
/// heartbeat, rather than a timer per connection.
async fn timer_loop(hub: Weak<Hub>, tick: Duration) {
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let Some(hub) = hub.upgrade() else { return };
        let now = hub.advance_clock();
        // Ticked outside the map's locks: a session's own lock is never taken inside them.
        for session in hub.snapshot() {
            session.tick(now);
        }
    }
}
