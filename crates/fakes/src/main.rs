//! `pushwarden-fake`: run one provider fake stand-alone and watch pushwarden's pushes arrive.
//!
//! Each subcommand writes the credentials pushwarden needs (an APNs `.p8` key, an FCM
//! service-account file, a Web Push subscription), prints the environment variables that point
//! pushwarden at the fake, then prints every accepted push to stdout as one JSON line and every
//! refused request to stderr, until Ctrl-C.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use pushwarden_fakes::apns::{FakeApns, FakeApnsConfig};
use pushwarden_fakes::fcm::{FakeFcm, FakeFcmConfig};
use pushwarden_fakes::webpush::FakeWebPush;
use pushwarden_fakes::Event;
use tokio::sync::broadcast;

#[derive(Parser)]
#[command(
    name = "pushwarden-fake",
    version,
    about = "Fake APNs, FCM and Web Push services that check what the real ones check and print what arrives"
)]
struct Cli {
    #[command(subcommand)]
    provider: Provider,
}

#[derive(Subcommand)]
enum Provider {
    /// Apple Push Notification service (HTTP/2 cleartext, token auth).
    Apns {
        #[arg(long, default_value = "127.0.0.1:8401")]
        listen: SocketAddr,
        /// Where to write the key file, AuthKey_{key-id}.p8.
        #[arg(long, default_value = ".")]
        key_dir: PathBuf,
        #[arg(long, default_value = "ABC123DEFG")]
        key_id: String,
        #[arg(long, default_value = "DEF123GHIJ")]
        team_id: String,
        /// The app's bundle ID (apns-topic).
        #[arg(long, default_value = "com.8bit.bitwarden")]
        topic: String,
    },
    /// Firebase Cloud Messaging HTTP v1, with its OAuth token endpoint.
    Fcm {
        #[arg(long, default_value = "127.0.0.1:8402")]
        listen: SocketAddr,
        #[arg(long, default_value = "pushwarden-demo")]
        project: String,
        /// Where to write the service-account JSON.
        #[arg(long, default_value = "./fcm-service-account.json")]
        service_account: PathBuf,
    },
    /// A Web Push (RFC 8030) push service with one subscription.
    Webpush {
        #[arg(long, default_value = "127.0.0.1:8403")]
        listen: SocketAddr,
        /// Where to write the subscription ({"endpoint","p256dh","auth"}).
        #[arg(long, default_value = "./webpush-subscription.json")]
        subscription: PathBuf,
        /// Accept only pushes signed with this VAPID public key (base64url), as a browser
        /// subscription made with an applicationServerKey does.
        #[arg(long)]
        application_server_key: Option<String>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().provider {
        Provider::Apns {
            listen,
            key_dir,
            key_id,
            team_id,
            topic,
        } => {
            let (mut config, private_pem) =
                FakeApnsConfig::with_new_key(key_id.clone(), team_id.clone(), topic.clone());
            config.addr = Some(listen);
            std::fs::create_dir_all(&key_dir)
                .with_context(|| format!("creating {}", key_dir.display()))?;
            let key_file = key_dir.join(format!("AuthKey_{key_id}.p8"));
            write_file(&key_file, &private_pem)?;
            let fake = FakeApns::start(config)
                .await
                .with_context(|| format!("starting the APNs fake on {listen}"))?;
            eprintln!(
                "pushwarden-fake apns: listening on {} (HTTP/2 cleartext)",
                fake.url()
            );
            print_env(
                &[
                    ("PUSHWARDEN_APNS_KEY_FILE", absolute(&key_file)),
                    ("PUSHWARDEN_APNS_KEY_ID", key_id),
                    ("PUSHWARDEN_APNS_TEAM_ID", team_id),
                    ("PUSHWARDEN_APNS_TOPIC", topic),
                    ("PUSHWARDEN_APNS_ENDPOINT", fake.url()),
                ],
                &[],
            );
            watch("apns", fake.events()).await;
        }
        Provider::Fcm {
            listen,
            project,
            service_account,
        } => {
            let fake = FakeFcm::start(FakeFcmConfig {
                project_id: project,
                addr: Some(listen),
                ..FakeFcmConfig::default()
            })
            .await
            .with_context(|| format!("starting the FCM fake on {listen}"))?;
            write_file(&service_account, &fake.service_account_json())?;
            eprintln!(
                "pushwarden-fake fcm: listening on {} (token endpoint {})",
                fake.url(),
                fake.token_url()
            );
            print_env(
                &[
                    ("PUSHWARDEN_FCM_SERVICE_ACCOUNT", absolute(&service_account)),
                    ("PUSHWARDEN_FCM_ENDPOINT", fake.url()),
                ],
                &[],
            );
            watch("fcm", fake.events()).await;
        }
        Provider::Webpush {
            listen,
            subscription,
            application_server_key,
        } => {
            let fake = FakeWebPush::start(Some(listen))
                .await
                .with_context(|| format!("starting the Web Push fake on {listen}"))?;
            let sub = match &application_server_key {
                Some(key) => fake.subscribe_with_key(key)?,
                None => fake.subscribe(),
            };
            write_file(&subscription, &serde_json::to_string_pretty(&sub)?)?;
            eprintln!("pushwarden-fake webpush: listening on {}", fake.url());
            print_env(
                &[
                    ("PUSHWARDEN_VAPID_PRIVATE_KEY", "vapid.pem".to_owned()),
                    ("PUSHWARDEN_PUSH_ALLOW_PRIVATE_ENDPOINTS", "true".to_owned()),
                ],
                &[
                    "vapid.pem: make it with `pushwarden vapid generate --out vapid.pem`"
                        .to_owned(),
                    format!(
                        "the subscription to register for a device is in {}:",
                        absolute(&subscription)
                    ),
                    serde_json::to_string(&sub)?,
                ],
            );
            watch("webpush", fake.events()).await;
        }
    }
    Ok(())
}

/// Writes a file readable by its owner only: pushwarden refuses key files others may read.
fn write_file(path: &Path, content: &str) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    #[cfg(unix)]
    file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .with_context(|| format!("writing {}", path.display()))?;
    std::io::Write::write_all(&mut file, content.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

fn absolute(path: &Path) -> String {
    std::path::absolute(path)
        .unwrap_or_else(|_| path.to_owned())
        .display()
        .to_string()
}

fn print_env(vars: &[(&str, String)], notes: &[String]) {
    eprintln!("give pushwarden these environment variables:");
    for (name, value) in vars {
        eprintln!("{name}={}", shell_quote(value));
    }
    // Comment lines, so the whole block can still be pasted into a shell or an env file.
    for note in notes {
        eprintln!("# {note}");
    }
    eprintln!("accepted pushes are printed to stdout, refused requests here; Ctrl-C stops");
}

/// Values are meant to be pasted into a shell, so quote anything a shell would split or expand.
fn shell_quote(value: &str) -> String {
    let plain = !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-:@%+=,".contains(&b));
    if plain {
        value.to_owned()
    } else {
        format!("'{}'", value.replace('\'', r"'\''"))
    }
}

async fn watch(provider: &str, mut events: broadcast::Receiver<Event>) {
    loop {
        let event = tokio::select! {
            event = events.recv() => event,
            _ = tokio::signal::ctrl_c() => break,
        };
        match event {
            Ok(Event::Accepted(push)) => {
                let line = serde_json::json!({
                    "provider": provider,
                    "token": push.token,
                    "body": push.body,
                });
                println!("{line}");
            }
            Ok(Event::Refused {
                token,
                status: _,
                reason,
            }) => match token {
                Some(token) => eprintln!("refused ({token}): {reason}"),
                None => eprintln!("refused: {reason}"),
            },
            Ok(Event::Scripted {
                token,
                status,
                reason,
            }) => eprintln!("scripted reply ({token}): {status} {reason}"),
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                eprintln!("(fell behind; {missed} events not shown)");
            }
            Err(broadcast::error::RecvError::Closed) => break,
        }
    }
}
