//! The durable store, in SQLite (embedded, the default) or PostgreSQL, through one portable
//! schema (`migrations/`), with a handle per concern sharing one pool:
//! [`Store::registrations`] (devices), [`Store::deliveries`] (the delivery queue: pushes
//! expanded to their devices as they are sent, and deliveries waiting for a retry),
//! [`Store::outbox`] (requests for an upstream relay) and [`Store::installations`] (servers
//! that push through this relay). Both queues are leased queues (`leased.rs`).
//!
//! sqlx's `Any` driver keeps one code path for both: the SQL here sticks to what both dialects
//! parse (`$n` placeholders, `ON CONFLICT`, row values), and every integer is a BIGINT.

mod audience;
mod deliveries;
mod fan_out;
mod installations;
mod leased;
mod outbox;
mod registrations;

use std::path::Path;
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, AnyQueryResult};
use sqlx::AnyPool;

pub use deliveries::{
    ClaimedDelivery, ClaimedDevice, Deliveries, Enqueued, NewPush, PendingCount,
    MAX_PUSHES_PER_INSERT,
};
pub use fan_out::{ClaimedBatch, FinishedBatch, Pending};
pub use installations::{Installation, Installations, SecretCheck};
pub use leased::{RetryPlan, RowKey};
pub use outbox::{Outbox, OutboxItem};
pub use registrations::{Registrations, Upsert};

/// A query on either database, as the helpers that add binds to one take it.
pub type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Which database the store runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("unsupported database URL {0:?}: use sqlite://PATH or postgres://…")]
    UnsupportedUrl(String),
    #[error("creating the database directory {path}: {source}")]
    Directory {
        path: String,
        source: std::io::Error,
    },
    #[error("making the database file {path} private (mode 600): {source}")]
    FileMode {
        path: String,
        source: std::io::Error,
    },
    #[error("corrupt row: {0}")]
    Corrupt(String),
    #[error("storing pushes: {0}")]
    Batch(String),
}

/// The connection pool; its handles do the work.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend)
            .finish()
    }
}

/// The default database: a SQLite file in the data directory.
pub fn default_url(data_dir: &Path) -> String {
    format!("sqlite://{}", data_dir.join("pushwarden.db").display())
}

impl Store {
    /// Connects, creating a SQLite file (and its directory) if needed, and applies migrations.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let (backend, url) = if let Some(rest) = url.strip_prefix("sqlite:") {
            (Backend::Sqlite, sqlite_url(rest)?)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (Backend::Postgres, url.to_owned())
        } else {
            return Err(StoreError::UnsupportedUrl(redact(url)));
        };
        let max_connections = match backend {
            // SQLite has one writer; more connections only queue on its lock.
            Backend::Sqlite => 4,
            Backend::Postgres => 16,
        };
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections)
            // A ping before every use costs a round trip per statement; a broken connection
            // fails its statement instead, and the caller's retry takes a fresh one.
            .test_before_acquire(false)
            .acquire_timeout(Duration::from_secs(10))
            .connect(&url)
            .await?;
        if backend == Backend::Sqlite {
            // WAL lets the delivery worker read while the API writes.
            sqlx::query("PRAGMA journal_mode = WAL")
                .execute(&pool)
                .await?;
        }
        MIGRATOR.run(&pool).await?;
        Ok(Self { pool, backend })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Closes every connection.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Registered devices.
    pub fn registrations(&self) -> Registrations {
        Registrations::new(self.pool.clone(), self.backend)
    }

    /// The delivery queue.
    pub fn deliveries(&self) -> Deliveries {
        Deliveries::new(self.pool.clone(), self.backend)
    }

    /// The outbox to an upstream relay.
    pub fn outbox(&self) -> Outbox {
        Outbox::new(self.pool.clone())
    }

    /// The installations allowed to push through this relay.
    pub fn installations(&self) -> Installations {
        Installations::new(self.pool.clone())
    }

    /// Frees every lease of both queues. Only for a store no other process uses (SQLite), at
    /// start: what a previous run held when it stopped is due again at once instead of after
    /// its lease.
    pub async fn release_all_leases(&self) -> Result<u64, StoreError> {
        Ok(self.deliveries().release_all_leases().await?
            + self.outbox().release_all_leases().await?)
    }
}

/// `sqlite://path` → a URL sqlx opens read-write-create, after creating the directory.
fn sqlite_url(rest: &str) -> Result<String, StoreError> {
    let rest = rest.trim_start_matches("//");
    let (path, query) = match rest.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (rest, None),
    };
    if path.is_empty() || path == ":memory:" {
        return Err(StoreError::UnsupportedUrl(format!(
            "sqlite:{rest} (an in-memory database would lose queued pushes)"
        )));
    }
    if let Some(parent) = Path::new(path)
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
    {
        create_private_dir(parent).map_err(|source| StoreError::Directory {
            path: parent.display().to_string(),
            source,
        })?;
    }
    let creates = !query.is_some_and(|q| q.contains("mode="));
    private_database_files(Path::new(path), creates).map_err(|source| StoreError::FileMode {
        path: path.to_owned(),
        source,
    })?;
    let query = match query {
        Some(q) if q.contains("mode=") => q.to_owned(),
        Some(q) => format!("{q}&mode=rwc"),
        None => "mode=rwc".to_owned(),
    };
    Ok(format!("sqlite://{path}?{query}"))
}

/// Creates a missing database directory readable by its owner only (0700). An existing one is
/// left as it is: it may be shared (`/var/lib`); the files in it are private anyway.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// The database holds push tokens, Web Push `auth` secrets and queued payloads: the file is
/// created 0600 before SQLite opens it (SQLite then creates `-wal` and `-shm` with the
/// database's mode), and an existing database, WAL or shared-memory file that others may read
/// is tightened to 0600, with a warning.
fn private_database_files(path: &Path, create: bool) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        if create {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
            {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
        }
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        let mut shm = path.as_os_str().to_owned();
        shm.push("-shm");
        for file in [path.to_path_buf(), wal.into(), shm.into()] {
            let mode = match std::fs::metadata(&file) {
                Ok(m) => m.permissions().mode() & 0o777,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            if mode & 0o077 != 0 {
                std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))?;
                tracing::warn!(
                    file = %file.display(),
                    was = format!("{mode:o}"),
                    "the database file was readable by others: its mode is now 600"
                );
            }
        }
    }
    #[cfg(not(unix))]
    let _ = (path, create);
    Ok(())
}

/// A database URL for logs and errors, without its password.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}

fn affected(result: AnyQueryResult) -> u64 {
    result.rows_affected()
}

/// The one integer a query answers (a count, a nullable MIN…), with text binds.
async fn scalar(pool: &AnyPool, sql: &str, binds: &[&str]) -> Result<Option<i64>, StoreError> {
    let mut query = sqlx::query(sql);
    for b in binds {
        query = query.bind(b.to_string());
    }
    match query.fetch_optional(pool).await? {
        Some(row) => Ok(sqlx::Row::try_get::<Option<i64>, _>(&row, 0)?),
        None => Ok(None),
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls() {
        let dir = std::env::temp_dir().join(format!("pw-url-{}", std::process::id()));
        let url = sqlite_url(&format!("//{}/x.db", dir.display())).unwrap();
        assert_eq!(url, format!("sqlite://{}/x.db?mode=rwc", dir.display()));
        assert!(dir.is_dir());
        assert!(sqlite_url(":memory:").is_err());
        assert_eq!(
            redact("postgres://u:secret@h/db"),
            "postgres://u:***@h/db".to_owned()
        );
    }

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    /// The database holds push tokens and Web Push secrets: a new one is 0600 in a 0700
    /// directory, and SQLite gives its WAL and shared-memory files the database's mode.
    #[cfg(unix)]
    #[tokio::test]
    async fn a_new_sqlite_database_and_its_wal_are_private() {
        let dir = std::env::temp_dir().join(format!("pw-modes-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let db = dir.join("data").join("push.db");
        let store = Store::connect(&format!("sqlite://{}", db.display()))
            .await
            .unwrap();
        // The migrations wrote, so the WAL and the shared-memory index exist.
        let wal = dir.join("data").join("push.db-wal");
        let shm = dir.join("data").join("push.db-shm");
        assert!(wal.exists() && shm.exists());
        assert_eq!(mode(&dir.join("data")), 0o700);
        assert_eq!(mode(&db), 0o600);
        assert_eq!(mode(&wal), 0o600);
        assert_eq!(mode(&shm), 0o600);
        store.close().await;
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn an_existing_database_others_can_read_is_tightened() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("pw-tighten-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let db = dir.join("push.db");
        let url = format!("sqlite://{}", db.display());
        Store::connect(&url).await.unwrap().close().await;
        for file in [db.clone(), dir.join("push.db-wal"), dir.join("push.db-shm")] {
            if file.exists() {
                std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
            }
        }
        let store = Store::connect(&url).await.unwrap();
        assert_eq!(mode(&db), 0o600);
        for file in [dir.join("push.db-wal"), dir.join("push.db-shm")] {
            if file.exists() {
                assert_eq!(mode(&file), 0o600, "{}", file.display());
            }
        }
        store.close().await;
        let _ = std::fs::remove_dir_all(&dir);
    }
}
