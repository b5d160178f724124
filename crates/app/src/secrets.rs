//! Development mode: secrets kept in the data directory, created on first use.
//!
//! With no way to verify tokens configured, `pushwarden serve` signs and verifies HS256 tokens
//! with a secret of its own and accepts `/send` with a key of its own, so that it runs with no
//! setup. `pushwarden token`, `send` and `listen` read the same files.

use std::path::Path;

use anyhow::{Context, Result};
use base64::Engine;
use rand::RngCore;

use crate::config::Config;

const DEV_JWT_SECRET: &str = "dev-jwt-secret";
const DEV_SEND_KEY: &str = "dev-send-api-key";

/// Reads the secret in `file`, creating it (32 random bytes, base64url) if it does not exist.
fn load_or_create(dir: &Path, file: &str) -> Result<String> {
    let path = dir.join(file);
    if let Ok(existing) = std::fs::read_to_string(&path) {
        let existing = existing.trim().to_owned();
        if !existing.is_empty() {
            return Ok(existing);
        }
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    write_private(&path, &secret).with_context(|| format!("writing {}", path.display()))?;
    Ok(secret)
}

/// Writes `content` to `path` readable by its owner only.
#[cfg(unix)]
pub fn write_private(path: &Path, content: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(content.as_bytes())
}

#[cfg(not(unix))]
pub fn write_private(path: &Path, content: &str) -> std::io::Result<()> {
    std::fs::write(path, content)
}

const RELAY_TOKEN_SECRET: &str = "relay-token-secret";

/// The secret installation tokens are signed with: configured, or kept in the data directory.
pub fn relay_token_secret(config: &Config) -> Result<Vec<u8>> {
    match &config.relay.token_secret {
        Some(secret) => Ok(secret.clone().into_bytes()),
        None => Ok(load_or_create(&config.data_dir, RELAY_TOKEN_SECRET)?.into_bytes()),
    }
}

/// Fills in development secrets where the configuration has none. Returns whether the service
/// runs in development mode.
pub fn apply_development_defaults(config: &mut Config) -> Result<bool> {
    if !config.is_development() {
        return Ok(false);
    }
    config.jwt.hs256_secret = Some(load_or_create(&config.data_dir, DEV_JWT_SECRET)?);
    if config.send.api_key.is_none() {
        config.send.api_key = Some(load_or_create(&config.data_dir, DEV_SEND_KEY)?);
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn development_secrets_are_created_once_and_kept() {
        let dir = std::env::temp_dir().join(format!("pushwarden-secrets-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut a = Config {
            data_dir: dir.clone(),
            ..Config::default()
        };
        assert!(apply_development_defaults(&mut a).unwrap());
        let mut b = Config {
            data_dir: dir.clone(),
            ..Config::default()
        };
        apply_development_defaults(&mut b).unwrap();
        assert_eq!(a.jwt.hs256_secret, b.jwt.hs256_secret);
        assert_eq!(a.send.api_key, b.send.api_key);
        assert_ne!(a.jwt.hs256_secret, a.send.api_key);
        let mut configured = Config {
            data_dir: dir.clone(),
            ..Config::default()
        };
        configured.jwt.hs256_secret = Some("mine".into());
        assert!(!apply_development_defaults(&mut configured).unwrap());
        assert_eq!(configured.send.api_key, None);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
