//! `pushwarden register` / `unregister`: file a device with a running service's push registry,
//! as a vault server does through `/push/register`.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;

use super::service::{call, ServiceArgs};
use crate::config::Config;

#[derive(Args, Debug, Clone)]
pub struct RegisterArgs {
    #[command(flatten)]
    pub service: ServiceArgs,
    /// The device's owner.
    #[arg(long)]
    pub user: String,
    /// Bitwarden DeviceType: 0 = Android (FCM), 1 = iOS (APNs), 9 = Chrome browser, ...
    #[arg(long = "device-type")]
    pub device_type: u8,
    /// An APNs or FCM token.
    #[arg(long, conflicts_with = "web_push")]
    pub token: Option<String>,
    /// A Web Push / UnifiedPush subscription: a JSON file `{endpoint, p256dh, auth}`.
    #[arg(long = "web-push")]
    pub web_push: Option<PathBuf>,
    /// Device id (default: a new one).
    #[arg(long)]
    pub device_id: Option<String>,
    /// Device identifier: a notification whose contextId names it skips this device.
    #[arg(long)]
    pub identifier: Option<String>,
    /// Organization ids the device hears about (repeatable).
    #[arg(long = "org")]
    pub organizations: Vec<String>,
    /// `production` (default) or `sandbox` (an iOS debug build's token).
    #[arg(long)]
    pub apns_environment: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub struct UnregisterArgs {
    #[command(flatten)]
    pub service: ServiceArgs,
    /// The device id given at registration.
    #[arg(long)]
    pub device_id: String,
}

pub async fn register(args: &RegisterArgs, config: &Config) -> Result<()> {
    let device_id = args
        .device_id
        .clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let mut body = serde_json::json!({
        "deviceId": device_id,
        "userId": args.user,
        "identifier": args.identifier.clone().unwrap_or_else(|| device_id.clone()),
        "type": args.device_type,
        "organizationIds": args.organizations,
        "apnsEnvironment": args.apns_environment,
    });
    match (&args.token, &args.web_push) {
        (Some(token), None) => body["pushToken"] = token.clone().into(),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let subscription: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("{} is not JSON", path.display()))?;
            body["webPush"] = subscription;
        }
        _ => bail!("give --token (APNs/FCM) or --web-push FILE"),
    }
    call(
        &args.service,
        config,
        reqwest::Method::POST,
        "/push/register",
        &body,
    )
    .await
}

pub async fn unregister(args: &UnregisterArgs, config: &Config) -> Result<()> {
    call(
        &args.service,
        config,
        reqwest::Method::POST,
        "/push/delete",
        &serde_json::json!({ "id": args.device_id }),
    )
    .await
}
