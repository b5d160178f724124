//! Stores for tests: a SQLite file and a fresh PostgreSQL database, so every store test runs
//! on both backends.
#![allow(dead_code)]

use pushwarden_push::Store;

/// The PostgreSQL server tests use (CI starts it); its `test` database holds nothing of ours.
pub fn postgres_base() -> String {
    std::env::var("PUSHWARDEN_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned())
}

/// A store under test, and what to remove afterwards.
pub struct TestStore {
    pub store: Store,
    pub url: String,
    cleanup: Cleanup,
}

enum Cleanup {
    File(std::path::PathBuf),
    Database(String),
}

fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

pub async fn sqlite() -> TestStore {
    let dir = std::env::temp_dir().join(unique("pushwarden_store"));
    let url = format!("sqlite://{}/push.db", dir.display());
    let store = Store::connect(&url).await.expect("sqlite store");
    TestStore {
        store,
        url,
        cleanup: Cleanup::File(dir),
    }
}

/// A new database on the local PostgreSQL server. Fails (never skips) when the server is
/// not there: `scripts/test.sh` starts it.
pub async fn postgres() -> TestStore {
    use sqlx::Connection;
    let base = postgres_base();
    let name = unique("pushwarden_test");
    let mut admin = sqlx::PgConnection::connect(&format!("{base}/postgres"))
        .await
        .expect("PostgreSQL on localhost:5432 (scripts/test.sh starts it)");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .expect("create database");
    let url = format!("{base}/{name}");
    let store = Store::connect(&url).await.expect("postgres store");
    TestStore {
        store,
        url,
        cleanup: Cleanup::Database(name),
    }
}

pub async fn both() -> Vec<(&'static str, TestStore)> {
    vec![("sqlite", sqlite().await), ("postgres", postgres().await)]
}

impl TestStore {
    pub async fn remove(self) {
        self.store.close().await;
        match self.cleanup {
            Cleanup::File(dir) => {
                let _ = std::fs::remove_dir_all(dir);
            }
            Cleanup::Database(name) => {
                use sqlx::Connection;
                if let Ok(mut admin) =
                    sqlx::PgConnection::connect(&format!("{}/postgres", postgres_base())).await
                {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&mut admin)
                        .await;
                }
            }
        }
    }
}
