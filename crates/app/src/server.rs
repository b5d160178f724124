//! The HTTP service: builds the hubs, transports and endpoints from configuration, serves them,
//! and shuts down gracefully.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use axum::extract::DefaultBodyLimit;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use http::StatusCode;
use pushwarden_auth::{TokenVerifier, VerifierConfig};
use pushwarden_bitwarden::device_push::{self, PushApiState, RelayAccess};
use pushwarden_bitwarden::relay::{
    self, InstallationTokens, RateLimits, RelayLimits, TokenEndpointState,
};
use pushwarden_bitwarden::send::{self, SendAuthorizer, SendState};
use pushwarden_bitwarden::{
    AnonymousHubAuthenticator, HubPolicy, Notifications, UserHubAuthenticator,
};
use pushwarden_hub::{Hub, HubEndpoint, HubOptions};
use pushwarden_model::PushGateway;
use pushwarden_push::PushService;
use pushwarden_transport::{routes, OutboxLimits, Transport, TransportOptions};
use tokio::net::TcpListener;

use crate::admin;
use crate::config::Config;
use crate::edge::{self, ConnectionCaps, EdgeOptions, PeerRateLimits, PeerRates, TrustedProxies};
use crate::metrics;

/// A running service.
pub struct Server {
    pub addr: SocketAddr,
    pub notifications: Arc<Notifications>,
    pub push: Arc<PushService>,
    shutdown: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<()>>,
    push_worker: Option<tokio::task::JoinHandle<()>>,
}

impl Server {
    /// Starts a graceful shutdown and waits for it.
    pub async fn shutdown(self) -> Result<()> {
        let _ = self.shutdown.send(true);
        let served = self.task.await.context("server task")?;
        if let Some(worker) = self.push_worker {
            let _ = tokio::time::timeout(Duration::from_secs(5), worker).await;
        }
        self.push.store().close().await;
        served
    }
}

pub fn verifier_config(config: &Config) -> Result<VerifierConfig> {
    let rsa_public_key_pem = match &config.jwt.rsa_public_key {
        Some(path) => Some(
            std::fs::read(path)
                .with_context(|| format!("reading RSA public key {}", path.display()))?,
        ),
        None => None,
    };
    Ok(VerifierConfig {
        hs256_secret: config.jwt.hs256_secret.clone().map(String::into_bytes),
        rsa_public_key_pem,
        authority: config.jwt.authority.clone(),
        issuer: config.jwt.issuer.clone(),
        leeway: config.jwt.leeway,
        ..VerifierConfig::default()
    })
}

/// Binds and starts serving; returns once the socket is listening.
pub async fn start(config: Config) -> Result<Server> {
    // Bad certificate files stop the start, before anything listens.
    let tls = match (&config.tls.cert_file, &config.tls.key_file) {
        (Some(cert), Some(key)) => Some(crate::tls::load_server_config(cert, key)?),
        _ => None,
    };
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let addr = listener.local_addr()?;
    let nofile = edge::open_file_limit();
    let (max_total, max_per_ip) = ConnectionCaps::sized(
        nofile,
        config.limits.max_connections,
        config.limits.max_connections_per_ip,
    );
    let caps = ConnectionCaps::new(max_total, max_per_ip);
    tracing::info!(
        open_file_limit = nofile,
        max_connections = max_total,
        max_connections_per_ip = max_per_ip,
        "connection caps"
    );
    let edge_options = edge_options(&config)?;
    let (router, notifications, push) = build(&config).await?;
    let (shutdown, mut shutdown_rx) = tokio::sync::watch::channel(false);
    let push_worker = Some(
        push.start_worker(shutdown_rx.clone())
            .await
            .context("starting the push delivery worker")?,
    );
    let hubs = notifications.clone();
    let grace = config.shutdown_timeout;
    let signal = async move {
        let _ = shutdown_rx.wait_for(|stop| *stop).await;
    };
    let task = tokio::spawn(serve(
        listener,
        router,
        hubs,
        grace,
        tls,
        (edge_options, caps),
        signal,
    ));
    Ok(Server {
        addr,
        notifications,
        push,
        shutdown,
        task,
        push_worker,
    })
}

/// The edge's settings from configuration.
pub fn edge_options(config: &Config) -> Result<EdgeOptions> {
    let trusted = TrustedProxies::parse(&config.limits.trusted_proxies)
        .map_err(|e| anyhow::anyhow!("PUSHWARDEN_TRUSTED_PROXIES: {e}"))?;
    Ok(EdgeOptions {
        header_read_timeout: config.limits.header_read_timeout,
        body_read_timeout: config.limits.body_read_timeout,
        trusted: Arc::new(trusted),
    })
}

/// The router with every endpoint, and the hubs and push service behind it.
pub async fn build(config: &Config) -> Result<(Router, Arc<Notifications>, Arc<PushService>)> {
    let verifier = TokenVerifier::new(verifier_config(config)?)
        .map_err(|e| anyhow::anyhow!("JWT configuration: {e}"))?;
    let policy: HubPolicy = config
        .jwt
        .policy
        .parse()
        .map_err(|e: String| anyhow::anyhow!("PUSHWARDEN_JWT_POLICY: {e}"))?;
    let hub_options = HubOptions {
        keep_alive_interval: config.hub.keep_alive_interval,
        client_timeout: config.hub.client_timeout,
        handshake_timeout: config.hub.handshake_timeout,
        max_message_size: config.hub.max_message_size,
        stateful_reconnect: config.hub.stateful_reconnect,
    };
    let limits = OutboxLimits {
        max_queued_bytes: config.hub.max_queued_bytes,
        ..OutboxLimits::default()
    };
    let transport_options = TransportOptions {
        websockets: config.transport.websockets,
        server_sent_events: config.transport.server_sent_events,
        long_polling: config.transport.long_polling,
        websocket_read_buffer: config.transport.websocket_read_buffer,
        websocket_max_message: (config.hub.max_message_size * 2).max(4096),
        disconnect_timeout: config.transport.disconnect_timeout,
        long_poll_timeout: config.transport.long_poll_timeout,
        send_timeout: config.transport.send_timeout,
        max_pending_negotiations: config.limits.max_pending_negotiations,
        ..TransportOptions::default()
    };

    let hub = Hub::new("hub", hub_options.clone(), limits);
    let anonymous = Hub::new("anonymous-hub", hub_options, limits);
    let notifications = Arc::new(Notifications::new(hub.clone(), anonymous.clone()));
    notifications.spawn_heartbeat(config.hub.heartbeat_interval);

    let user_auth =
        UserHubAuthenticator::new(verifier.clone(), policy, config.installation_id.clone());
    let hub_transport = Transport::new(
        Arc::new(HubEndpoint::new(hub, user_auth)),
        transport_options.clone(),
    );
    let anonymous_transport = Transport::new(
        Arc::new(HubEndpoint::new(anonymous, AnonymousHubAuthenticator)),
        transport_options,
    );

    let push = Arc::new(crate::push::build(config).await?);
    let push_from_send = config.push.from_send.unwrap_or_else(|| push.can_deliver());
    let authorizer = Arc::new(SendAuthorizer::new(
        Some(verifier),
        config.send.api_key.clone(),
    ));
    let send_state = Arc::new(SendState {
        notifications: notifications.clone(),
        authorizer: authorizer.clone(),
        devices: push_from_send.then(|| push.clone() as Arc<dyn PushGateway>),
    });
    let tokens = Arc::new(
        InstallationTokens::new(
            crate::secrets::relay_token_secret(config)?,
            config.relay.token_lifetime,
        )
        .map_err(|e| anyhow::anyhow!("relay token secret: {e}"))?,
    );
    let limits = Arc::new(RateLimits::new(RelayLimits {
        requests_per_minute: config.relay.requests_per_minute,
        pushes_per_minute: config.relay.pushes_per_minute,
        max_registrations: config.relay.max_registrations,
    }));
    let push_api = Arc::new(PushApiState {
        gateway: push.clone(),
        authorizer,
        relay: Some(RelayAccess {
            tokens: tokens.clone(),
            directory: push.clone(),
            limits: limits.clone(),
        }),
    });
    let token_state = Arc::new(TokenEndpointState {
        tokens,
        directory: push.clone(),
        limits,
    });
    // Bitwarden's relay serves the push API at its root; on the EU cloud it sits under /api.
    let mut push_routes = Router::new();
    for prefix in ["", "/api"] {
        push_routes = push_routes
            .route(
                &format!("{prefix}/push/register"),
                post(device_push::register),
            )
            .route(&format!("{prefix}/push/delete"), post(device_push::delete))
            .route(
                &format!("{prefix}/push/delete/{{id}}"),
                post(device_push::delete_by_path).delete(device_push::delete_by_path),
            )
            .route(
                &format!("{prefix}/push/add-organization"),
                put(device_push::add_organization),
            )
            .route(
                &format!("{prefix}/push/delete-organization"),
                put(device_push::delete_organization),
            )
            .route(&format!("{prefix}/push/send"), post(device_push::send));
    }
    let push_routes = push_routes
        .layer(DefaultBodyLimit::max(device_push::MAX_PUSH_API_BODY))
        .with_state(push_api);
    let token_routes = Router::new()
        .route("/connect/token", post(relay::token))
        .route("/identity/connect/token", post(relay::token))
        .layer(DefaultBodyLimit::max(16 * 1024))
        .with_state(token_state);
    let health_push = push.clone();
    let inspect = Arc::new(Inspection {
        token: config.metrics_token.clone(),
    });
    let health_inspect = inspect.clone();
    // What a vault server puts in its own `/config` `push` object (`ConfigResponseModel` in bitwarden/server's
    // `src/Api/Models/Response/ConfigResponseModel.cs`): Web Push when a
    // VAPID key is configured, else SignalR.
    let vapid_public_key = push.providers().vapid_public_key().map(str::to_owned);
    let push_config = serde_json::json!({
        "pushTechnology": if vapid_public_key.is_some() { 1 } else { 0 },
        "vapidPublicKey": vapid_public_key,
    });
    let send_routes = Router::new()
        .route("/send", post(send::send))
        .route("/notifications/send", post(send::send))
        .layer(DefaultBodyLimit::max(send::MAX_SEND_BODY))
        .with_state(send_state);

    let mut router = Router::new();
    // Both hubs answer at the root and under /notifications, so a proxy that forwards
    // /notifications/* unchanged works as well as one that strips the prefix.
    for prefix in ["", "/notifications"] {
        router = router
            .merge(routes(hub_transport.clone(), &format!("{prefix}/hub")))
            .merge(routes(
                anonymous_transport.clone(),
                &format!("{prefix}/anonymous-hub"),
            ))
            .route(&format!("{prefix}/alive"), get(send::now))
            .route(&format!("{prefix}/now"), get(send::now));
    }
    let router = router
        .merge(send_routes)
        .merge(push_routes)
        .merge(token_routes)
        .route(
            "/health",
            get(move |request: axum::extract::Request| {
                let push = health_push.clone();
                let inspect = health_inspect.clone();
                async move {
                    let health = push.health().await;
                    if inspect.allows(&request) {
                        Json(health)
                    } else {
                        // The verdict only: the details name providers' errors.
                        Json(serde_json::json!({ "status": health["status"] }))
                    }
                }
            }),
        )
        .route(
            "/push/config",
            get(move || {
                let body = push_config.clone();
                async move { Json(body) }
            }),
        )
        .route("/openapi.json", get(openapi))
        .route(
            "/metrics",
            get(move |request: axum::extract::Request| {
                let inspect = inspect.clone();
                async move {
                    if inspect.allows(&request) {
                        metrics::render().await
                    } else {
                        inspect.refusal()
                    }
                }
            }),
        )
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                Json(serde_json::json!({"error": "not found"})),
            )
                .into_response()
        });
    // The admin page and the live figures it alone reads exist only when it is on.
    let router = match config.admin_token.clone() {
        Some(token) => {
            push.journal().enable();
            let stats = Arc::new(admin::LiveStats::default());
            let page = admin::Admin::new(token, push.clone(), notifications.clone(), stats.clone());
            router
                .merge(admin::routes(page))
                .layer(axum::middleware::from_fn_with_state(
                    stats,
                    admin::record_stats,
                ))
        }
        None => router,
    };
    let peer_limits = PeerRateLimits::new(PeerRates {
        negotiates_per_minute: config.limits.negotiates_per_minute,
        connects_per_minute: config.limits.connects_per_minute,
        anonymous_connects_per_minute: config.limits.anonymous_connects_per_minute,
        token_failures_per_minute: config.limits.token_failures_per_minute,
    });
    let router = router
        .layer(axum::middleware::from_fn_with_state(
            peer_limits,
            edge::rate_limit,
        ))
        .layer(axum::middleware::map_response(mark_as_ours));
    Ok((router, notifications, push))
}

/// Marks every answer of pushwarden's own (`x-pushwarden: 1`), so that `pushwarden doctor`
/// tells them from a proxy's: a proxy passes the header on but would not write it.
async fn mark_as_ours(mut response: Response) -> Response {
    response.headers_mut().insert(
        http::HeaderName::from_static(pushwarden_doctor::origin::MARKER_HEADER),
        http::HeaderValue::from_static("1"),
    );
    response
}

/// Who may read `/metrics` and `/health`'s details: a bearer of the metrics token when one is
/// set, else a client on this host (the address a trusted proxy forwards, if any, so a proxy
/// on this host does not open them to everyone).
struct Inspection {
    token: Option<String>,
}

impl Inspection {
    fn allows(&self, request: &axum::extract::Request) -> bool {
        match &self.token {
            Some(token) => pushwarden_auth::token_from_request(request.headers(), None)
                .is_some_and(|given| {
                    use subtle::ConstantTimeEq;
                    bool::from(given.as_bytes().ct_eq(token.as_bytes()))
                }),
            None => edge::client_ip(request.extensions()).is_some_and(|ip| ip.is_loopback()),
        }
    }

    fn refusal(&self) -> Response {
        let message = if self.token.is_some() {
            "metrics need the metrics token as a bearer token"
        } else {
            "metrics are served to this host only; set PUSHWARDEN_METRICS_TOKEN to scrape them from elsewhere"
        };
        (
            StatusCode::FORBIDDEN,
            Json(serde_json::json!({ "error": message })),
        )
            .into_response()
    }
}

/// The push API's OpenAPI description.
async fn openapi() -> impl IntoResponse {
    (
        [(http::header::CONTENT_TYPE, "application/json")],
        include_str!("../../../docs/openapi.json"),
    )
}

async fn serve(
    listener: TcpListener,
    router: Router,
    notifications: Arc<Notifications>,
    grace: Duration,
    tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    (options, caps): (EdgeOptions, Arc<ConnectionCaps>),
    signal: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let hubs = notifications.clone();
    let stopping = Arc::new(tokio::sync::Notify::new());
    let stopping_tx = stopping.clone();
    let stop = async move {
        signal.await;
        tracing::info!("shutting down: closing every connection with allowReconnect");
        hubs.hub().close_all(true);
        hubs.anonymous_hub().close_all(true);
        stopping_tx.notify_one();
    };
    let server = edge::serve(listener, router, tls, options, caps, stop);
    tokio::select! {
        result = server => result.context("serving")?,
        _ = async { stopping.notified().await; tokio::time::sleep(grace).await } => {
            tracing::warn!("requests still open after the shutdown timeout");
        }
    }
    // WebSockets live on after the HTTP server: wait for them to deliver their Close.
    tracing::debug!(
        hub = notifications.hub().connection_count(),
        anonymous_hub = notifications.anonymous_hub().connection_count(),
        "HTTP server stopped; waiting for connections to close"
    );
    let deadline = Instant::now() + grace;
    while notifications.hub().connection_count() + notifications.anonymous_hub().connection_count()
        > 0
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Waits for SIGTERM or Ctrl-C.
pub async fn termination() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
