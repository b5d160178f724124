//! `pushwarden`: Bitwarden-compatible push notifications.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};
use pushwarden::commands::{
    config as config_command, doctor, installation, listen, register, send, token, vapid,
};
use pushwarden::config::Config;
use pushwarden::{metrics, secrets, server};

#[derive(Parser, Debug)]
#[command(
    name = "pushwarden",
    version,
    about = "Bitwarden-compatible push notifications: SignalR hubs, /send, and push to APNs, FCM and Web Push"
)]
struct Cli {
    /// TOML configuration file; PUSHWARDEN_* environment variables override it.
    #[arg(long, global = true, env = "PUSHWARDEN_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the service.
    Serve,
    /// Mint an access token for trying the hub (HS256 secret or RSA private key).
    Token(token::TokenArgs),
    /// Post a notification to a running service's /send.
    Send(send::SendArgs),
    /// Register a device for pushes with a running service (/push/register).
    Register(register::RegisterArgs),
    /// Remove a device registration from a running service (/push/delete).
    Unregister(register::UnregisterArgs),
    /// Connect to a hub and print every notification that arrives.
    Listen(listen::ListenArgs),
    /// Installations (self-hosted servers) allowed to push through this relay.
    #[command(subcommand)]
    Installation(installation::InstallationCommand),
    /// Web Push (VAPID) application-server keys.
    #[command(subcommand)]
    Vapid(vapid::VapidCommand),
    /// The configuration: check it, or write the example file.
    #[command(subcommand)]
    Config(config_command::ConfigCommand),
    /// Check a deployment from the outside, as the official clients reach it, and name the
    /// proxy lines that fix what fails (exit 1 if a check fails).
    Doctor(doctor::DoctorArgs),
}

fn main() {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Command::Doctor(args) = &cli.command {
        // A remote check: no local configuration, and its own exit statuses.
        std::process::exit(runtime.block_on(doctor::run(args)));
    }
    if let Err(e) = runtime.block_on(run(cli)) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> Result<()> {
    if let Command::Vapid(command) = &cli.command {
        // Key files only: no configuration, and no development secrets created as a side effect.
        return vapid::run(command);
    }
    if let Command::Config(command) = &cli.command {
        // Reports problems itself, all of them, and creates no development secrets.
        return config_command::run(command, cli.config.as_deref());
    }
    let mut config = Config::load(cli.config.as_deref())?;
    let development = secrets::apply_development_defaults(&mut config)?;
    match cli.command {
        Command::Serve => serve(config, development).await,
        Command::Token(args) => {
            println!("{}", token::mint(&args, &config)?);
            Ok(())
        }
        Command::Send(args) => send::run(&args, &config).await,
        Command::Listen(args) => listen::run(&args, &config).await,
        Command::Installation(command) => installation::run(&command, &config).await,
        Command::Register(args) => register::register(&args, &config).await,
        Command::Unregister(args) => register::unregister(&args, &config).await,
        Command::Vapid(command) => vapid::run(&command),
        Command::Config(command) => config_command::run(&command, cli.config.as_deref()),
        Command::Doctor(args) => {
            std::process::exit(doctor::run(&args).await);
        }
    }
}

async fn serve(config: Config, development: bool) -> Result<()> {
    metrics::install();
    secrets::warn_short_inline_secrets(&config);
    let data_dir = config.data_dir.display().to_string();
    let tls = config.tls.cert_file.is_some();
    let running = server::start(config).await?;
    let addr = running.addr;
    let scheme = if tls { "https" } else { "http" };
    println!("listening on {scheme}://{addr}");
    if development {
        println!(
            "\nDevelopment mode: no JWT key is configured, so pushwarden signs its own tokens with a\n\
             secret kept in {data_dir}/ (and accepts /send with the key stored there).\n\
             Try it, with the same PUSHWARDEN_DATA_DIR and PUSHWARDEN_LISTEN:\n\
             \x20 pushwarden listen --sub 00000000-0000-0000-0000-000000000001\n\
             \x20 pushwarden send --type 5 --user 00000000-0000-0000-0000-000000000001\n\
             \x20 pushwarden token --sub <user id>     # a token for your own client\n\
             Configure PUSHWARDEN_JWT_HS256_SECRET, PUSHWARDEN_JWT_RSA_PUBLIC_KEY or PUSHWARDEN_JWT_AUTHORITY for production.\n"
        );
    }
    server::termination().await;
    running.shutdown().await?;
    tracing::info!("stopped");
    Ok(())
}
