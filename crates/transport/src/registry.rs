//! Connections addressable by token: those created by negotiate.
//!
//! A WebSocket opened without negotiate (as Bitwarden's clients connect) has no token, nobody
//! can address it again, so it is never entered here and costs nothing here.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use parking_lot::Mutex;
use rand::RngCore;
use tokio::sync::Notify;

use crate::endpoint::{Endpoint, Session, TransportKind};

/// A fresh id: 16 random bytes, base64url (22 characters), as ASP.NET Core makes them.
pub fn new_id() -> String {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Where a negotiated connection is in its life.
#[derive(Debug)]
pub(crate) struct EntryState {
    /// The transport chosen by the first request that carried the token.
    pub transport: Option<TransportKind>,
    /// A WebSocket, SSE stream or poll is attached right now.
    pub attached: bool,
    /// Since when nothing has been attached (reaped after the disconnect timeout).
    pub detached_since: Instant,
    /// Long polling: each poll takes a number; a newer poll ends the older one.
    pub poll_generation: u64,
    /// The connection has ended; polls still get their final answer (204).
    pub terminated: bool,
}

pub(crate) struct Entry<E: Endpoint> {
    pub token: Arc<str>,
    pub principal: E::Principal,
    pub session: Arc<E::Session>,
    pub stateful: bool,
    pub state: Mutex<EntryState>,
    /// Wakes a waiting poll when a newer poll arrives or the connection is deleted.
    pub poll_cancel: Notify,
    /// A POST is being processed (a second concurrent one gets 409).
    pub posting: AtomicBool,
    /// No transport has claimed the connection yet (counted in [`Registry::unclaimed`]).
    unclaimed: AtomicBool,
    closed: AtomicBool,
    /// Wakes whatever waits on the connection (a POST's body read) when it ends.
    ended: Notify,
}

impl<E: Endpoint> Entry<E> {
    /// Tells the session it is over, once.
    pub fn close_session(&self) {
        if !self.closed.swap(true, Ordering::AcqRel) {
            self.session.outbox().close(None, true);
            self.session.closed();
            self.ended.notify_waiters();
        }
    }

    /// Completes once the connection has ended.
    pub async fn ended(&self) {
        let notified = self.ended.notified();
        tokio::pin!(notified);
        // Register before looking, so that an end between the look and the wait counts.
        notified.as_mut().enable();
        if self.closed.load(Ordering::Acquire) {
            return;
        }
        notified.await;
    }
}

pub(crate) struct Registry<E: Endpoint> {
    entries: Mutex<HashMap<Arc<str>, Arc<Entry<E>>>>,
    /// Entries no transport has claimed yet: what a flood of negotiates would grow.
    unclaimed: AtomicUsize,
}

impl<E: Endpoint> Registry<E> {
    pub fn new() -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            unclaimed: AtomicUsize::new(0),
        }
    }

    pub fn insert(
        &self,
        token: Arc<str>,
        principal: E::Principal,
        session: Arc<E::Session>,
        stateful: bool,
    ) -> Arc<Entry<E>> {
        let entry = Arc::new(Entry {
            token: token.clone(),
            principal,
            session,
            stateful,
            state: Mutex::new(EntryState {
                transport: None,
                attached: false,
                detached_since: Instant::now(),
                poll_generation: 0,
                terminated: false,
            }),
            poll_cancel: Notify::new(),
            posting: AtomicBool::new(false),
            unclaimed: AtomicBool::new(true),
            closed: AtomicBool::new(false),
            ended: Notify::new(),
        });
        self.unclaimed.fetch_add(1, Ordering::AcqRel);
        self.entries.lock().insert(token, entry.clone());
        entry
    }

    /// Negotiated connections no transport has claimed yet.
    pub fn unclaimed(&self) -> usize {
        self.unclaimed.load(Ordering::Acquire)
    }

    /// The entry is claimed by a transport, or gone: it no longer counts as unclaimed.
    pub fn settle(&self, entry: &Entry<E>) {
        if entry.unclaimed.swap(false, Ordering::AcqRel) {
            self.unclaimed.fetch_sub(1, Ordering::AcqRel);
        }
    }

    pub fn get(&self, token: &str) -> Option<Arc<Entry<E>>> {
        self.entries.lock().get(token).cloned()
    }

    /// Ends a connection: forgets its token and closes its session.
    pub fn remove(&self, entry: &Entry<E>) {
        self.entries.lock().remove(&entry.token);
        self.settle(entry);
        entry.close_session();
    }

    pub fn len(&self) -> usize {
        self.entries.lock().len()
    }

    /// Ends every connection that has had nothing attached for longer than `timeout`, and
    /// every closing one with nothing attached and nothing left to write (no transport will
    /// come for it, as at shutdown). Returns how many were reaped.
    pub fn reap(&self, timeout: Duration) -> usize {
        let now = Instant::now();
        let expired: Vec<Arc<Entry<E>>> = self
            .entries
            .lock()
            .values()
            .filter(|e| {
                let st = e.state.lock();
                let outbox = e.session.outbox();
                !st.attached
                    && (now.duration_since(st.detached_since) > timeout
                        || (outbox.is_closing() && outbox.queued_bytes() == 0))
            })
            .cloned()
            .collect();
        for entry in &expired {
            entry.state.lock().terminated = true;
            entry.poll_cancel.notify_waiters();
            self.remove(entry);
        }
        expired.len()
    }
}
