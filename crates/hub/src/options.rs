//! Hub settings, with ASP.NET Core SignalR's defaults.

use std::time::Duration;

#[derive(Clone, Debug)]
pub struct HubOptions {
    /// Send a Ping when nothing else was sent for this long (ASP.NET Core: 15 s).
    pub keep_alive_interval: Duration,
    /// Close a connection whose client sent nothing for this long (ASP.NET Core: 30 s).
    pub client_timeout: Duration,
    /// Close a connection that has not completed its handshake in this time (ASP.NET Core: 15 s).
    pub handshake_timeout: Duration,
    /// Largest hub message (and handshake) accepted from a client (ASP.NET Core: 32 KB).
    pub max_message_size: usize,
    /// Offer stateful reconnect to clients that ask for it at negotiate.
    pub stateful_reconnect: bool,
}

impl Default for HubOptions {
    fn default() -> Self {
        Self {
            keep_alive_interval: Duration::from_secs(15),
            client_timeout: Duration::from_secs(30),
            handshake_timeout: Duration::from_secs(15),
            max_message_size: 32 * 1024,
            stateful_reconnect: true,
        }
    }
}

impl HubOptions {
    /// How often the hub looks at its connections' timers: often enough that a ping or a
    /// timeout is at most a fraction of its interval late (ASP.NET Core ticks every second).
    pub(crate) fn tick(&self) -> Duration {
        let shortest = self
            .keep_alive_interval
            .min(self.client_timeout)
            .min(self.handshake_timeout);
        (shortest / 4).clamp(Duration::from_millis(20), Duration::from_secs(1))
    }
}
