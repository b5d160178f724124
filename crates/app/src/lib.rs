//! pushwarden's application layer: configuration, the HTTP service, metrics and the CLI
//! commands. Thin: every behaviour lives in the crates below. Module map:
//!
//! - `admin`: the admin page at `/admin` (login, live figures, installations, device lookup),
//!   on when `PUSHWARDEN_ADMIN_TOKEN` is set;
//! - `config`: [`config::Config`], loaded from a TOML file and `PUSHWARDEN_*` variables by
//!   figment; `config::settings` declares every setting once (key, variable, default, doc),
//!   `config::sources` reads and checks them, `config::render` writes the example file, the
//!   README table and `config check`'s output;
//! - `edge`: the accept loop and what a peer may hold: connection caps, header and body
//!   timeouts, trusted proxies, per-address rate limits;
//! - `server`: the HTTP service (hubs, transports, endpoints), served and shut down gracefully;
//! - `push`: the push service from the provider settings;
//! - `secrets`: development secrets and the relay token secret in the data directory;
//! - `metrics`: the Prometheus recorder;
//! - `tls`: serving HTTPS directly;
//! - `commands`: the CLI verbs besides `serve` (`config`, `token`, `send`, `listen`,
//!   `register`, `installation`, `vapid`).

pub mod admin;
pub mod commands;
pub mod config;
pub mod edge;
pub mod logging;
pub mod metrics;
pub mod push;
pub mod secrets;
pub mod server;
pub mod tls;
