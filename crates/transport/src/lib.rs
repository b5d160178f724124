//! SignalR transports: WebSockets, Server-Sent Events and long polling, negotiate and
//! connection tokens.
//!
//! This layer moves bytes between HTTP and a [`Session`]; it knows nothing of hub messages.
//! [`routes`] mounts one endpoint (a hub) at a path:
//!
//! | request | answer |
//! |---|---|
//! | `POST {path}/negotiate` | connection id/token and the transports offered |
//! | `GET {path}` with a WebSocket upgrade | WebSocket; without `id` a new connection (negotiation skipped) |
//! | `GET {path}?id=` with `Accept: text/event-stream` | Server-Sent Events |
//! | `GET {path}?id=` | a long poll |
//! | `POST {path}?id=` | client-to-server bytes for SSE and long polling |
//! | `DELETE {path}?id=` | ends a long-polling connection |
//!
//! Status codes follow ASP.NET Core's `HttpConnectionDispatcher`
//! (`src/SignalR/common/Http.Connections/src/Internal/HttpConnectionDispatcher.cs` in
//! dotnet/aspnetcore) and its transport spec
//! (<https://github.com/dotnet/aspnetcore/blob/main/src/SignalR/docs/specs/TransportProtocols.md>).
//!
//! Layout:
//!
//! - `endpoint`: what a transport needs from the hub above it ([`Endpoint`], [`Session`]);
//! - `dispatch`: requests to the hub path, routed to a transport by method, headers and `id`;
//! - `negotiate` and `registry`: negotiate, and the connections it creates, addressable by token;
//! - `upgrade` and `websocket`: the RFC 6455 upgrade and the WebSocket transport;
//! - `sse`, `long_polling` and `http_send`: Server-Sent Events, long polling, and the POSTs
//!   that carry their client-to-server bytes;
//! - `outbox`: one connection's bounded outgoing queue ([`Outbox`]);
//! - `options`: [`TransportOptions`];
//! - [`fuzzing`]: the upgrade checks on an arbitrary request, for the cargo-fuzz target.

mod dispatch;
mod endpoint;
pub mod fuzzing;
mod http_send;
mod long_polling;
mod negotiate;
mod options;
mod outbox;
mod registry;
mod sse;
mod upgrade;
mod websocket;

use std::sync::{Arc, Weak};
use std::time::Duration;

use axum::Router;

pub use endpoint::{ConnectionInfo, Endpoint, Rejection, RequestInfo, Session, TransportKind};
pub use options::TransportOptions;
pub use outbox::{Drained, Outbox, OutboxLimits, PushError};
pub use registry::new_id;

use registry::Registry;

/// The transports of one endpoint: its options and its negotiated connections.
pub struct Transport<E: Endpoint> {
    endpoint: Arc<E>,
    options: TransportOptions,
    registry: Registry<E>,
}

impl<E: Endpoint> Transport<E> {
    /// Creates the transports of `endpoint` and starts reaping idle negotiated connections
    /// (the reaper stops when the transport is dropped).
    pub fn new(endpoint: Arc<E>, options: TransportOptions) -> Arc<Self> {
        let transport = Arc::new(Self {
            endpoint,
            options,
            registry: Registry::new(),
        });
        let weak = Arc::downgrade(&transport);
        let tick = (transport.options.disconnect_timeout / 4)
            .clamp(Duration::from_millis(50), Duration::from_secs(1));
        tokio::spawn(reap_loop(weak, tick));
        transport
    }

    pub fn endpoint(&self) -> &Arc<E> {
        &self.endpoint
    }

    pub fn options(&self) -> &TransportOptions {
        &self.options
    }

    /// Negotiated connections currently addressable by token.
    pub fn negotiated_connections(&self) -> usize {
        self.registry.len()
    }
}

async fn reap_loop<E: Endpoint>(transport: Weak<Transport<E>>, tick: Duration) {
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let Some(t) = transport.upgrade() else { return };
        let reaped = t.registry.reap(t.options.disconnect_timeout);
        if reaped > 0 {
            tracing::debug!(reaped, "reaped inactive connections");
        }
    }
}

/// Routes `path` and `path/negotiate` to the transports of one endpoint.
pub fn routes<E: Endpoint>(transport: Arc<Transport<E>>, path: &str) -> Router {
    Router::new()
        .route(path, axum::routing::any(dispatch::connection::<E>))
        .route(
            &format!("{path}/negotiate"),
            axum::routing::any(negotiate::negotiate::<E>),
        )
        .with_state(transport)
}
