//! `pushwarden doctor <public-url>`: checks a deployment from the outside (see the
//! `pushwarden-doctor` crate) and prints one verdict per check. Exit status: 0 when nothing
//! failed, 1 when a check failed, 2 for a usage error.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use pushwarden_doctor::{render, Options, Proxy};

#[derive(Args, Debug, Clone)]
pub struct DoctorArgs {
    /// The vault's public URL, e.g. https://vault.example.com (…/notifications is accepted too).
    pub url: String,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// How long the idle checks hold a WebSocket and a long poll (0s skips them).
    #[arg(long, default_value = "75s", value_parser = humantime::parse_duration)]
    pub idle: Duration,
    /// A user access token, to complete the /notifications/hub handshake too.
    #[arg(long)]
    pub token: Option<String>,
    /// Also trust the CA certificate(s) in this PEM file.
    #[arg(long, value_name = "PEM")]
    pub ca_file: Option<PathBuf>,
    /// Deadline of each step (connect, upgrade, handshake, first event).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Show this proxy's fix lines (nginx, caddy, apache, haproxy, traefik) instead of the
    /// recognised one's.
    #[arg(long)]
    pub proxy: Option<Proxy>,
}

/// Runs the checks and prints the report; returns the exit status.
pub async fn run(args: &DoctorArgs) -> i32 {
    let options = Options {
        url: args.url.clone(),
        token: args.token.clone(),
        idle: args.idle,
        timeout: args.timeout,
        ca_file: args.ca_file.clone(),
        proxy: args.proxy,
    };
    if options.timeout.is_zero() {
        eprintln!("error: --timeout must be more than 0s");
        return 2;
    }
    if !args.json {
        eprintln!(
            "checking {} (the idle checks take {})…",
            args.url,
            humantime::format_duration(args.idle)
        );
    }
    match pushwarden_doctor::run(&options).await {
        Err(usage) => {
            eprintln!("error: {usage}");
            2
        }
        Ok(report) => {
            if args.json {
                println!("{}", render::json(&report));
            } else {
                print!("{}", render::text(&report));
            }
            report.exit_code()
        }
    }
}
