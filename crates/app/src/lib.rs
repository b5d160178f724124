//! pushwarden's application layer: configuration, the HTTP service, metrics and the CLI
//! commands. Thin: every behaviour lives in the crates below.

pub mod commands;
pub mod config;
pub mod metrics;
pub mod push;
pub mod secrets;
pub mod server;
pub mod tls;
