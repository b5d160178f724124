//! Development mode: secrets kept in the data directory, created on first use.
//!
//! With no way to verify tokens configured, `pushwarden serve` signs and verifies HS256 tokens
//! with a secret of its own and accepts `/send` with a key of its own, so that it runs with no
//! setup. `pushwarden token`, `send` and `listen` read the same files.

use std::path::Path;

use anyhow::{bail, Context, Result};
use base64::Engine;
use rand::RngCore;

use crate::config::Config;

const DEV_JWT_SECRET: &str = "dev-jwt-secret";
const DEV_SEND_KEY: &str = "dev-send-api-key";

/// The shortest symmetric secret accepted from a file: 32 bytes, as HS256 wants.
pub const MIN_SECRET_LEN: usize = 32;

/// Reads the secret in `file`, creating it (32 random bytes, base64url) if it does not exist.
/// An existing secret that others may read, or shorter than [`MIN_SECRET_LEN`], is refused.
fn load_or_create(dir: &Path, file: &str) -> Result<String> {
    private_dir(dir)?;
    let path = dir.join(file);
    match std::fs::read_to_string(&path) {
        Ok(existing) => {
            let existing = existing.trim();
            if !existing.is_empty() {
                check_private(&path, "the secret")?;
                if existing.len() < MIN_SECRET_LEN {
                    bail!(
                        "the secret in {path} is {len} bytes; a secret needs at least {MIN_SECRET_LEN}: generate one with `openssl rand -base64 32 > {path}` (or delete the file and pushwarden creates one)",
                        path = path.display(),
                        len = existing.len(),
                    );
                }
                return Ok(existing.to_owned());
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    }
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    write_private(&path, &secret).with_context(|| format!("writing {}", path.display()))?;
    Ok(secret)
}

/// Creates the data directory readable by its owner only (0700), or tightens an existing one
/// that others may enter, with a warning. It holds the database and the development secrets.
pub fn private_dir(dir: &Path) -> Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .permissions()
            .mode()
            & 0o777;
        if mode & 0o077 != 0 {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).with_context(
                || {
                    format!(
                        "the data directory {} is open to others (mode {mode:o}) and could not be made private: run `chmod 700 {}`",
                        dir.display(),
                        dir.display()
                    )
                },
            )?;
            tracing::warn!(
                dir = %dir.display(),
                was = format!("{mode:o}"),
                "the data directory was open to others: its mode is now 700"
            );
        }
    }
    Ok(())
}

/// Refuses a secret file that its group or others may read or write (`mode & 077`), naming the
/// fix. `what` names the file for the message ("the APNs key").
pub fn check_private(path: &Path, what: &str) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .with_context(|| format!("reading {what} {}", path.display()))?
            .permissions()
            .mode()
            & 0o777;
        if mode & 0o077 != 0 {
            bail!(
                "{what} {path} can be read by other users (mode {mode:o}); it must be readable by its owner only: run `chmod 600 {path}`",
                path = path.display(),
            );
        }
    }
    #[cfg(not(unix))]
    let _ = (path, what);
    Ok(())
}

/// Reads a key file (PEM or JSON) after [`check_private`].
pub fn read_private(path: &Path, what: &str) -> Result<Vec<u8>> {
    check_private(path, what)?;
    std::fs::read(path).with_context(|| format!("reading {what} {}", path.display()))
}

/// Warns about secrets given inline (not from a file) that are shorter than
/// [`MIN_SECRET_LEN`]: they are used, but should be replaced.
pub fn warn_short_inline_secrets(config: &Config) {
    for (name, value) in [
        ("PUSHWARDEN_JWT_HS256_SECRET", &config.jwt.hs256_secret),
        ("PUSHWARDEN_SEND_API_KEY", &config.send.api_key),
        ("PUSHWARDEN_RELAY_TOKEN_SECRET", &config.relay.token_secret),
    ] {
        if let Some(len) = value
            .as_ref()
            .map(String::len)
            .filter(|l| *l < MIN_SECRET_LEN)
        {
            tracing::warn!(
                setting = name,
                bytes = len,
                "a secret shorter than {MIN_SECRET_LEN} bytes can be guessed: generate one with `openssl rand -base64 32`"
            );
        }
    }
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
    // `mode` applies to a file being created; an existing one is tightened here.
    f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
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
