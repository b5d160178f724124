//! What a first start leaves on disk (issue 13, row 12): the data directory 0700, the database
//! and its WAL 0600, the development secrets 0600; and the secret files it refuses to use.
#![cfg(unix)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use pushwarden::config::Config;
use pushwarden::secrets::apply_development_defaults;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// Development mode, the default SQLite database, the relay token secret in the data directory.
fn development(dir: &Path) -> Config {
    Config {
        listen: "127.0.0.1:0".parse().expect("address"),
        data_dir: dir.to_path_buf(),
        shutdown_timeout: std::time::Duration::from_secs(2),
        ..Config::default()
    }
}

#[tokio::test]
async fn a_first_start_keeps_the_data_directory_private() {
    let dir = common::fresh_data_dir();
    let mut config = development(&dir);
    assert!(apply_development_defaults(&mut config).expect("development secrets"));
    let server = pushwarden::server::start(config).await.expect("starts");
    let db = dir.join("pushwarden.db");
    let wal = dir.join("pushwarden.db-wal");
    let shm = dir.join("pushwarden.db-shm");
    // Migrations have written, so the WAL exists while the server runs.
    assert!(wal.exists(), "no WAL beside the database");
    assert_eq!(mode(&dir), 0o700, "data directory");
    for file in [&db, &wal, &shm] {
        assert_eq!(mode(file), 0o600, "{}", file.display());
    }
    for secret in ["dev-jwt-secret", "dev-send-api-key", "relay-token-secret"] {
        assert_eq!(mode(&dir.join(secret)), 0o600, "{secret}");
    }
    server.shutdown().await.expect("shutdown");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_data_directory_and_database_others_can_read_are_tightened() {
    let dir = common::fresh_data_dir();
    let mut config = development(&dir);
    apply_development_defaults(&mut config).expect("development secrets");
    let server = pushwarden::server::start(config).await.expect("starts");
    server.shutdown().await.expect("shutdown");
    // As an older version (or a careless copy) left them.
    let db = dir.join("pushwarden.db");
    chmod(&dir, 0o755);
    chmod(&db, 0o644);
    let mut config = development(&dir);
    apply_development_defaults(&mut config).expect("development secrets");
    assert_eq!(mode(&dir), 0o700, "data directory tightened");
    let server = pushwarden::server::start(config)
        .await
        .expect("starts again");
    assert_eq!(mode(&db), 0o600, "database tightened");
    let wal = dir.join("pushwarden.db-wal");
    if wal.exists() {
        assert_eq!(mode(&wal), 0o600, "WAL");
    }
    server.shutdown().await.expect("shutdown");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_secret_file_others_can_read_is_refused_with_the_fix() {
    let dir = common::fresh_data_dir();
    std::fs::create_dir_all(&dir).expect("dir");
    let secret = dir.join("dev-jwt-secret");
    std::fs::write(&secret, "a-long-enough-secret-of-44-characters-000000").expect("write");
    chmod(&secret, 0o644);
    let error = apply_development_defaults(&mut development(&dir))
        .expect_err("a world-readable secret is refused")
        .to_string();
    assert!(
        error.contains(&format!("chmod 600 {}", secret.display())),
        "{error}"
    );
    assert!(error.contains("644"), "{error}");
    // Fixed as the message says, it is used.
    chmod(&secret, 0o600);
    let mut config = development(&dir);
    apply_development_defaults(&mut config).expect("a private secret is used");
    assert_eq!(
        config.jwt.hs256_secret.as_deref(),
        Some("a-long-enough-secret-of-44-characters-000000")
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_short_secret_file_is_refused_with_the_fix() {
    let dir = common::fresh_data_dir();
    std::fs::create_dir_all(&dir).expect("dir");
    let secret = dir.join("dev-jwt-secret");
    common::write_private(&secret, b"0123456789\n");
    let error = apply_development_defaults(&mut development(&dir))
        .expect_err("a 10-byte secret is refused")
        .to_string();
    assert!(error.contains("10 bytes"), "{error}");
    assert!(error.contains("at least 32"), "{error}");
    assert!(error.contains("openssl rand -base64 32"), "{error}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn key_files_others_can_read_are_refused_at_start() {
    let p = common::providers::Providers::start().await;
    for (name, set) in [
        ("AuthKey.p8", "the APNs key"),
        ("fcm.json", "the FCM service account"),
        ("vapid.pem", "the VAPID private key"),
    ] {
        let file = p.dir.join(name);
        chmod(&file, 0o640);
        let error = match pushwarden::server::start(p.config()).await {
            Ok(_) => panic!("started with {name} at 0640"),
            Err(e) => format!("{e:#}"),
        };
        assert!(error.contains(set), "{error}");
        assert!(
            error.contains(&format!("chmod 600 {}", file.display())),
            "{error}"
        );
        chmod(&file, 0o600);
    }
    let server = pushwarden::server::start(p.config())
        .await
        .expect("starts with private key files");
    server.shutdown().await.expect("shutdown");
}
