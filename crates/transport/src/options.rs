//! Transport settings, with ASP.NET Core's defaults where SignalR has one.

use std::time::Duration;

#[derive(Clone, Debug)]
pub struct TransportOptions {
    /// WebSockets offered (and accepted without negotiate).
    pub websockets: bool,
    pub server_sent_events: bool,
    pub long_polling: bool,
    /// Bytes the WebSocket reads per system call. Allocated for every connection for its whole
    /// life, so it is kept small: notification clients send only pings and a handshake.
    pub websocket_read_buffer: usize,
    /// Largest WebSocket message accepted (one message may carry several hub messages).
    pub websocket_max_message: usize,
    /// Largest POST body accepted from SSE and long-polling clients.
    pub max_post_body: usize,
    /// Largest POST body before the client's handshake is done: a handshake is tens of bytes,
    /// and an unauthenticated peer (the anonymous hub) must not make us hold megabytes.
    pub max_post_body_before_handshake: usize,
    /// Negotiated connections no transport has claimed yet; past it negotiate answers 503.
    pub max_pending_negotiations: usize,
    /// How long a negotiated connection without a transport, a long-polling connection between
    /// polls, or a dropped stateful WebSocket is kept (ASP.NET Core: 15 s).
    pub disconnect_timeout: Duration,
    /// How long a poll waits for data before answering empty (ASP.NET Core: 90 s).
    pub long_poll_timeout: Duration,
    /// A write that does not complete in this time means the client is not reading
    /// (ASP.NET Core's TransportSendTimeout: 10 s).
    pub send_timeout: Duration,
    /// Frames are coalesced into one WebSocket message or poll response up to this size.
    pub max_batch_bytes: usize,
}

impl Default for TransportOptions {
    fn default() -> Self {
        Self {
            websockets: true,
            server_sent_events: true,
            long_polling: true,
            websocket_read_buffer: 256,
            websocket_max_message: 64 * 1024,
            max_post_body: 1024 * 1024,
            max_post_body_before_handshake: 4096,
            max_pending_negotiations: 10_000,
            disconnect_timeout: Duration::from_secs(15),
            long_poll_timeout: Duration::from_secs(90),
            send_timeout: Duration::from_secs(10),
            max_batch_bytes: 64 * 1024,
        }
    }
}
