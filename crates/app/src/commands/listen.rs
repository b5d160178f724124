//! `pushwarden listen`: connects to a hub as a client and prints what arrives, one JSON line
//! per invocation.

use anyhow::{Context, Result};
use clap::Args;
use pushwarden_client::{ClientEvent, ConnectOptions, HubClient, Protocol};

use crate::commands::token::{self, TokenArgs};
use crate::config::Config;

#[derive(Args, Debug, Clone)]
pub struct ListenArgs {
    /// Hub URL (default: the configured listen address, `/hub`, or `/anonymous-hub` with --anonymous).
    #[arg(long)]
    pub url: Option<String>,
    /// Access token; minted from the configured secret (see `pushwarden token`) if omitted.
    #[arg(long)]
    pub token: Option<String>,
    /// Listen on the anonymous hub for this auth-request id instead.
    #[arg(long)]
    pub anonymous: Option<String>,
    /// Use the JSON hub protocol instead of MessagePack.
    #[arg(long)]
    pub json: bool,
    /// Negotiate first instead of connecting the WebSocket directly.
    #[arg(long)]
    pub negotiate: bool,
    /// Exit after this many invocations.
    #[arg(long)]
    pub count: Option<usize>,
    #[command(flatten)]
    pub claims: TokenArgs,
}

pub async fn run(args: &ListenArgs, config: &Config) -> Result<()> {
    let base = format!("http://{}", config.listen);
    let (url, access_token) = match &args.anonymous {
        Some(token) => (
            args.url
                .clone()
                .unwrap_or_else(|| format!("{base}/anonymous-hub?Token={token}")),
            None,
        ),
        None => {
            let token = match &args.token {
                Some(t) => t.clone(),
                None => token::mint(&args.claims, config)?,
            };
            (
                args.url.clone().unwrap_or_else(|| format!("{base}/hub")),
                Some(token),
            )
        }
    };
    let options = ConnectOptions {
        protocol: if args.json {
            Protocol::Json
        } else {
            Protocol::MessagePack
        },
        access_token,
        skip_negotiation: !args.negotiate,
        ..ConnectOptions::default()
    };
    let mut client = HubClient::connect(&url, options)
        .await
        .with_context(|| format!("connecting to {url}"))?;
    eprintln!("connected to {url}");
    let mut seen = 0usize;
    let mut keep_alive = tokio::time::interval(std::time::Duration::from_secs(15));
    loop {
        tokio::select! {
            _ = keep_alive.tick() => client.send_ping().await?,
            event = client.next_event() => match event? {
                None => break,
                Some(ClientEvent::Invocation { target, arguments }) => {
                    println!("{}", serde_json::json!({"target": target, "arguments": arguments.to_json()}));
                    seen += 1;
                    if args.count.is_some_and(|c| seen >= c) {
                        break;
                    }
                }
                Some(ClientEvent::Close { error, allow_reconnect }) => {
                    eprintln!("server closed the connection (error: {error:?}, allowReconnect: {allow_reconnect})");
                    break;
                }
                Some(_) => {}
            },
        }
    }
    let _ = client.close().await;
    Ok(())
}
