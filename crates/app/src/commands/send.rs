//! `pushwarden send`: posts a notification to a running service's `/send`.

use anyhow::{bail, Context, Result};
use clap::Args;

use super::service::{call, ServiceArgs};
use crate::config::Config;

#[derive(Args, Debug, Clone)]
pub struct SendArgs {
    #[command(flatten)]
    pub service: ServiceArgs,
    /// A whole envelope, `{"type":N,"payload":{...},"contextId":...}`; the other options are ignored.
    #[arg(long)]
    pub json: Option<String>,
    /// Push type (0-27): 5 = SyncVault, 11 = LogOut, 16 = AuthRequestResponse, ...
    #[arg(long = "type", default_value_t = 5)]
    pub push_type: u8,
    /// Target user id.
    #[arg(long)]
    pub user: Option<String>,
    /// Target organization id.
    #[arg(long)]
    pub org: Option<String>,
    /// Payload `id` (cipher, folder, send or auth request id).
    #[arg(long)]
    pub id: Option<String>,
    /// `contextId`: the acting device, which clients ignore.
    #[arg(long)]
    pub context_id: Option<String>,
}

/// The envelope these options describe.
pub fn envelope(args: &SendArgs) -> Result<serde_json::Value> {
    if let Some(json) = &args.json {
        return serde_json::from_str(json).context("--json is not valid JSON");
    }
    if args.user.is_none() && args.org.is_none() {
        bail!("give --user or --org (or a whole --json envelope)");
    }
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let id = args
        .id
        .clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let payload = serde_json::json!({
        "id": id,
        "userId": args.user,
        "organizationId": args.org,
        "revisionDate": now,
        "date": now,
    });
    Ok(
        serde_json::json!({"type": args.push_type, "payload": payload, "contextId": args.context_id}),
    )
}

pub async fn run(args: &SendArgs, config: &Config) -> Result<()> {
    call(
        &args.service,
        config,
        reqwest::Method::POST,
        "/send",
        &envelope(args)?,
    )
    .await
}
