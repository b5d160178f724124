//! Installations: the self-hosted servers allowed to push through this one when it is a relay.
//! Only a SHA-256 of each key is kept; the key itself is shown once, when it is made.

use rand::Rng;
use sha2::{Digest, Sha256};
use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};
use subtle::ConstantTimeEq;

use super::{affected, StoreError};

/// Installations: [`Store::installations`](super::Store::installations).
#[derive(Clone)]
pub struct Installations {
    pool: AnyPool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Installation {
    pub id: String,
    pub enabled: bool,
    pub email: Option<String>,
    pub created_ms: i64,
    pub updated_ms: i64,
    /// Moves on with every key rotation and every disabling; tokens minted in an earlier
    /// generation are refused.
    pub key_generation: i64,
    /// When it last obtained a token or made a relay request (Unix ms, to the minute);
    /// `None` if never.
    pub last_activity_ms: Option<i64>,
}

/// What checking an installation's credentials found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretCheck {
    Valid(Installation),
    Unknown,
    Disabled,
    WrongSecret,
}

fn digest(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A new installation key: 30 random alphanumerics (about 178 bits).
fn new_key() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..30)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

fn from_row(row: &AnyRow) -> Result<Installation, StoreError> {
    Ok(Installation {
        id: row.try_get("id")?,
        enabled: row.try_get::<i64, _>("enabled")? != 0,
        email: row.try_get("email")?,
        created_ms: row.try_get("created_ms")?,
        updated_ms: row.try_get("updated_ms")?,
        key_generation: row.try_get("key_generation")?,
        last_activity_ms: row.try_get("last_activity_ms")?,
    })
}

impl Installations {
    pub(super) fn new(pool: AnyPool) -> Self {
        Self { pool }
    }

    /// Creates an enabled installation; returns it with its key (shown this once).
    pub async fn create(
        &self,
        email: Option<&str>,
        now_ms: i64,
    ) -> Result<(Installation, String), StoreError> {
        let installation = Installation {
            id: uuid::Uuid::new_v4().to_string(),
            enabled: true,
            email: email.map(str::to_owned),
            created_ms: now_ms,
            updated_ms: now_ms,
            key_generation: 0,
            last_activity_ms: None,
        };
        let key = new_key();
        sqlx::query(
            "INSERT INTO installations (id, key_sha256, enabled, email, created_ms, updated_ms) \
             VALUES ($1, $2, 1, $3, $4, $4)",
        )
        .bind(installation.id.clone())
        .bind(digest(&key))
        .bind(installation.email.clone())
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok((installation, key))
    }

    pub async fn list(&self) -> Result<Vec<Installation>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, enabled, email, created_ms, updated_ms, key_generation, last_activity_ms \
             FROM installations ORDER BY created_ms, id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(from_row).collect()
    }

    pub async fn get(&self, id: &str) -> Result<Option<Installation>, StoreError> {
        let row = sqlx::query(
            "SELECT id, enabled, email, created_ms, updated_ms, key_generation, last_activity_ms \
             FROM installations WHERE id = $1",
        )
        .bind(id.to_owned())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// Enables or disables an installation; false if there is none with that id. Disabling
    /// starts a new key generation, so the tokens it holds stay dead if it is enabled again.
    pub async fn set_enabled(
        &self,
        id: &str,
        enabled: bool,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let n = sqlx::query(
            "UPDATE installations SET enabled = $1, updated_ms = $2, \
             key_generation = key_generation + (1 - $1) WHERE id = $3",
        )
        .bind(i64::from(enabled))
        .bind(now_ms)
        .bind(id.to_owned())
        .execute(&self.pool)
        .await?;
        Ok(affected(n) > 0)
    }

    /// Replaces an installation's key; the old one, and every token minted with it, stop
    /// working at once (a new key generation).
    pub async fn rotate_key(&self, id: &str, now_ms: i64) -> Result<Option<String>, StoreError> {
        let key = new_key();
        let n = sqlx::query(
            "UPDATE installations SET key_sha256 = $1, updated_ms = $2, \
             key_generation = key_generation + 1 WHERE id = $3",
        )
        .bind(digest(&key))
        .bind(now_ms)
        .bind(id.to_owned())
        .execute(&self.pool)
        .await?;
        Ok((affected(n) > 0).then_some(key))
    }

    /// Records that an installation was active at `now_ms` (callers write this at most once a
    /// minute per installation, so it costs the relay's requests nothing).
    pub async fn touch(&self, id: &str, now_ms: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE installations SET last_activity_ms = $1 WHERE id = $2")
            .bind(now_ms)
            .bind(id.to_owned())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Checks an installation id and key, as the token endpoint does.
    pub async fn check_secret(&self, id: &str, secret: &str) -> Result<SecretCheck, StoreError> {
        let row = sqlx::query(
            "SELECT id, key_sha256, enabled, email, created_ms, updated_ms, key_generation, \
             last_activity_ms FROM installations WHERE id = $1",
        )
        .bind(id.to_owned())
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(SecretCheck::Unknown);
        };
        let stored: String = row.try_get("key_sha256")?;
        if !bool::from(stored.as_bytes().ct_eq(digest(secret).as_bytes())) {
            return Ok(SecretCheck::WrongSecret);
        }
        let installation = from_row(&row)?;
        if !installation.enabled {
            return Ok(SecretCheck::Disabled);
        }
        Ok(SecretCheck::Valid(installation))
    }
}
