//! `pushwarden installation …`: the self-hosted servers allowed to push through this relay.
//! Works on the configured database directly, so it runs beside (or without) `serve`.

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use pushwarden_push::store::{now_ms, redact, Store};

use crate::config::Config;

#[derive(Subcommand, Debug, Clone)]
pub enum InstallationCommand {
    /// Create an installation; prints its id and key (the key is shown only now).
    Create {
        /// A contact address for the installation's operator.
        #[arg(long)]
        email: Option<String>,
    },
    /// List installations.
    List,
    /// Stop an installation: no new tokens, and its current tokens stop working.
    Disable { id: String },
    /// Allow a disabled installation again.
    Enable { id: String },
    /// Replace an installation's key; prints the new one. The old key stops working at once.
    RotateKey { id: String },
}

async fn open(config: &Config) -> Result<Store> {
    let url = config.database_url();
    Store::connect(&url)
        .await
        .with_context(|| format!("opening the database {}", redact(&url)))
}

pub async fn run(command: &InstallationCommand, config: &Config) -> Result<()> {
    let store = open(config).await?;
    let result = execute(command, &store).await;
    store.close().await;
    result
}

async fn execute(command: &InstallationCommand, store: &Store) -> Result<()> {
    match command {
        InstallationCommand::Create { email } => {
            let (installation, key) = store
                .installations()
                .create(email.as_deref(), now_ms())
                .await?;
            println!("id:  {}", installation.id);
            println!("key: {key}");
            eprintln!(
                "\nKeep the key: it is not shown again. A Vaultwarden pointing at this relay sets\n\
                 \x20 PUSH_ENABLED=true PUSH_INSTALLATION_ID={} PUSH_INSTALLATION_KEY=<key>\n\
                 \x20 PUSH_RELAY_URI=https://<this relay> PUSH_IDENTITY_URI=https://<this relay>",
                installation.id
            );
        }
        InstallationCommand::List => {
            let installations = store.installations().list().await?;
            if installations.is_empty() {
                eprintln!("no installations");
            }
            for i in installations {
                let devices = store.registrations().count_owned(&i.id).await?;
                let created = chrono::DateTime::from_timestamp_millis(i.created_ms)
                    .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
                    .unwrap_or_default();
                println!(
                    "{}  {:8}  {:>7} devices  created {}  {}",
                    i.id,
                    if i.enabled { "enabled" } else { "disabled" },
                    devices,
                    created,
                    i.email.unwrap_or_default()
                );
            }
        }
        InstallationCommand::Disable { id } | InstallationCommand::Enable { id } => {
            let enable = matches!(command, InstallationCommand::Enable { .. });
            if !store
                .installations()
                .set_enabled(id, enable, now_ms())
                .await?
            {
                bail!("no installation {id}");
            }
            println!("{id} {}", if enable { "enabled" } else { "disabled" });
        }
        InstallationCommand::RotateKey { id } => {
            match store.installations().rotate_key(id, now_ms()).await? {
                Some(key) => {
                    println!("id:  {id}");
                    println!("key: {key}");
                }
                None => bail!("no installation {id}"),
            }
        }
    }
    Ok(())
}
