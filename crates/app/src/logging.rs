//! Where log lines go and what they look like: standard error, text or JSON lines, levels in
//! tracing's filter syntax.
//!
//! Colour codes are written only when standard error is a terminal (and `NO_COLOR` is unset):
//! a journal, a file or a log collector gets plain text.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// The level filter for `level`, or why it is not one.
pub fn filter(level: &str) -> Result<EnvFilter, String> {
    EnvFilter::try_new(level).map_err(|e| format!("not a log filter ({e})"))
}

/// The configured filter: `log.level`, else `RUST_LOG`, else `info`.
fn configured_filter(config: &LogConfig) -> Result<EnvFilter, String> {
    match &config.level {
        Some(level) => filter(level),
        None => match std::env::var("RUST_LOG") {
            Ok(level) if !level.trim().is_empty() => filter(&level),
            _ => filter("info"),
        },
    }
}

/// Installs the process's subscriber. Called once, before anything logs.
pub fn init(config: &LogConfig) -> Result<(), String> {
    let filter = configured_filter(config)?;
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    let installed = match config.format {
        LogFormat::Text => builder.with_ansi(colour).try_init(),
        LogFormat::Json => builder
            .json()
            .with_ansi(false)
            .with_current_span(false)
            .try_init(),
    };
    installed.map_err(|e| format!("cannot install the logger: {e}"))
}

/// The settings from the environment alone, for the commands that run without loading the
/// configuration (`vapid`, `config`): a bad value there falls back to the defaults.
pub fn from_environment() -> LogConfig {
    LogConfig {
        level: std::env::var("PUSHWARDEN_LOG")
            .ok()
            .filter(|l| !l.is_empty()),
        format: match std::env::var("PUSHWARDEN_LOG_FORMAT").as_deref() {
            Ok("json") => LogFormat::Json,
            _ => LogFormat::Text,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_in_tracing_syntax_are_accepted_and_nonsense_is_refused() {
        assert!(filter("info").is_ok());
        assert!(filter("warn,pushwarden_push=debug").is_ok());
        let refused = filter("pushwarden=loud").map(|_| ()).unwrap_err();
        assert!(refused.contains("not a log filter"), "{refused}");
    }
}
