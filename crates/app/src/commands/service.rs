//! Calling a running service's HTTP API with the `/send` key, for the CLI verbs.

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::config::Config;

/// Where the service is and how to authenticate, shared by the verbs that call it.
#[derive(Args, Debug, Clone, Default)]
pub struct ServiceArgs {
    /// Base URL of the service (default: the configured listen address).
    #[arg(long)]
    pub url: Option<String>,
    /// Bearer key (default: PUSHWARDEN_SEND_API_KEY or the development key).
    #[arg(long)]
    pub key: Option<String>,
}

/// POSTs (or PUTs) `body` to `path`, prints the status and answer, and fails on an error status.
pub async fn call(
    service: &ServiceArgs,
    config: &Config,
    method: reqwest::Method,
    path: &str,
    body: &serde_json::Value,
) -> Result<()> {
    let base = service
        .url
        .clone()
        .unwrap_or_else(|| format!("http://{}", config.listen));
    let key = service
        .key
        .clone()
        .or_else(|| config.send.api_key.clone())
        .context("no key: pass --key or set PUSHWARDEN_SEND_API_KEY")?;
    let url = format!("{}{path}", base.trim_end_matches('/'));
    let response = reqwest::Client::new()
        .request(method, &url)
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .with_context(|| format!("calling {url}"))?;
    let status = response.status();
    let answer = response.text().await.unwrap_or_default();
    println!("{} {}", status.as_u16(), answer);
    if !status.is_success() {
        bail!("the service refused the request");
    }
    Ok(())
}
