//! `pushwarden config check | example | readme-table` as a user runs them: the real binary,
//! an environment holding only what each test sets, exit codes and output.

use std::path::PathBuf;
use std::process::{Command, Output};

fn pushwarden(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pushwarden"))
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .expect("running pushwarden")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn repo_file(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(name)
}

#[test]
fn example_prints_the_example_file() {
    let out = pushwarden(&["config", "example"], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let on_disk = std::fs::read_to_string(repo_file("pushwarden.example.toml")).expect("example");
    assert_eq!(text(&out.stdout), on_disk);
}

#[test]
fn readme_table_prints_the_table_between_its_markers() {
    let out = pushwarden(&["config", "readme-table"], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    assert!(table.starts_with("<!-- settings table"), "{table}");
    assert!(table.contains("| `PUSHWARDEN_LISTEN` | `listen` | `127.0.0.1:5000` |"));
}

#[test]
fn check_prints_the_effective_configuration_with_secrets_masked() {
    let example = repo_file("pushwarden.example.toml");
    let example = example.to_str().expect("path");
    let out = pushwarden(
        &["config", "check", "--config", example],
        &[
            ("PUSHWARDEN_JWT_HS256_SECRET", "hs-secret-value"),
            ("PUSHWARDEN_UPSTREAM_INSTALLATION_ID", "i"),
            ("PUSHWARDEN_UPSTREAM_INSTALLATION_KEY", "upstream-key-value"),
            ("PUSHWARDEN_CLIENT_TIMEOUT", "45s"),
            ("PUSHWARDEN_ADMIN_TOKEN", "admin-token-value-0123"),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(!stdout.contains("hs-secret-value") && !stdout.contains("upstream-key-value"));
    assert!(!stdout.contains("admin-token-value"));
    assert!(stdout.contains("admin_token = \"********\"  # PUSHWARDEN_ADMIN_TOKEN"));
    assert!(stdout.contains("hs256_secret = \"********\"  # PUSHWARDEN_JWT_HS256_SECRET"));
    assert!(stdout.contains("client_timeout = \"45s\"  # PUSHWARDEN_CLIENT_TIMEOUT"));
    assert!(
        stdout.contains("[upstream]\ninstallation_id = \"i\""),
        "{stdout}"
    );
    // PUSHWARDEN_CONFIG names the file as --config does.
    let out = pushwarden(
        &["config", "check"],
        &[("PUSHWARDEN_CONFIG", "/nonexistent/pushwarden.toml")],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("/nonexistent/pushwarden.toml"));
}

#[test]
fn check_exits_1_naming_each_bad_value() {
    let out = pushwarden(
        &["config", "check"],
        &[
            ("PUSHWARDEN_LISTEN", "nope"),
            ("PUSHWARDEN_PUSH_CONCURRENCY", "many"),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
    let stderr = text(&out.stderr);
    for expected in [
        "PUSHWARDEN_LISTEN=nope",
        "PUSHWARDEN_PUSH_CONCURRENCY=many: expected a whole number",
    ] {
        assert!(
            stderr.contains(expected),
            "{expected:?} missing from {stderr}"
        );
    }
    // The policy is checked once the values themselves parse.
    let out = pushwarden(&["config", "check"], &[("PUSHWARDEN_JWT_POLICY", "strict")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("PUSHWARDEN_JWT_POLICY=strict: unknown hub policy"));
}
