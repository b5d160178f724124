//! `pushwarden token`: mints an access token like the ones Bitwarden's identity server issues,
//! signed with the configured HS256 secret or an RSA private key.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use pushwarden_auth::Minter;

use crate::config::Config;

#[derive(Args, Debug, Clone)]
pub struct TokenArgs {
    /// User id (`sub`); a random one if omitted.
    #[arg(long)]
    pub sub: Option<String>,
    /// Organization ids the user belongs to (`orguser` claims).
    #[arg(long = "org")]
    pub orgs: Vec<String>,
    /// `devicetype` claim, a DeviceType name such as ChromeBrowser, Android, WindowsDesktop.
    #[arg(long, default_value = "ChromeBrowser")]
    pub device_type: String,
    /// `device` claim (the device identifier clients compare with `contextId`).
    #[arg(long)]
    pub device: Option<String>,
    /// Space-separated scopes.
    #[arg(long, default_value = "api offline_access")]
    pub scope: String,
    /// Lifetime of the token.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    pub ttl: Duration,
    /// `iss` claim (defaults to PUSHWARDEN_JWT_ISSUER when set).
    #[arg(long)]
    pub issuer: Option<String>,
    /// Sign RS256 with this PEM private key instead of the HS256 secret.
    #[arg(long)]
    pub rsa_private_key: Option<PathBuf>,
}

/// Claims of a user access token, as Bitwarden's identity server writes them.
pub fn claims(args: &TokenArgs, config: &Config) -> serde_json::Value {
    let now = chrono::Utc::now().timestamp();
    let sub = args
        .sub
        .clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let mut claims = serde_json::json!({
        "sub": sub,
        "nbf": now,
        "iat": now,
        "exp": now + args.ttl.as_secs() as i64,
        "amr": ["Application"],
        "scope": args.scope.split_whitespace().collect::<Vec<_>>(),
        "devicetype": args.device_type,
        "device": args.device.clone().unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
    });
    if !args.orgs.is_empty() {
        claims["orguser"] = serde_json::json!(args.orgs);
    }
    if let Some(iss) = args.issuer.clone().or_else(|| config.jwt.issuer.clone()) {
        claims["iss"] = serde_json::json!(iss);
    }
    claims
}

pub fn minter(args: &TokenArgs, config: &Config) -> Result<Minter> {
    if let Some(path) = &args.rsa_private_key {
        let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        return Ok(Minter::Rs256 {
            private_key_pem: pem,
            kid: None,
        });
    }
    match &config.jwt.hs256_secret {
        Some(secret) => Ok(Minter::Hs256(secret.clone().into_bytes())),
        None => bail!(
            "no HS256 secret configured: set PUSHWARDEN_JWT_HS256_SECRET, run without JWT settings (development mode), or pass --rsa-private-key"
        ),
    }
}

pub fn mint(args: &TokenArgs, config: &Config) -> Result<String> {
    minter(args, config)?
        .mint(&claims(args, config))
        .map_err(|e| anyhow::anyhow!("minting token: {e}"))
}
