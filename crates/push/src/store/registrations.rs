//! Device registrations: upsert, delete, organization tags, dead-token removal, and which
//! devices a target reaches.

use std::collections::HashMap;

use pushwarden_model::DeviceTarget;
use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};

use super::audience::TargetFilter;
use super::{affected, scalar, Backend, StoreError};
use crate::registration::{environment_name, parse_environment, Channel, Platform, Registration};

/// Registered devices: [`Store::registrations`](super::Store::registrations).
#[derive(Clone)]
pub struct Registrations {
    pool: AnyPool,
    backend: Backend,
}

/// What [`Registrations::upsert_within`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Upsert {
    Stored,
    /// The owner already holds this many registrations, the most allowed; nothing was written.
    LimitReached {
        owned: i64,
    },
}

const COLUMNS: &str = "device_id, platform, push_token, endpoint, p256dh, auth, \
    apns_environment, user_id, identifier, installation_id, device_type, owner, created_ms, \
    updated_ms";

impl Registrations {
    pub(super) fn new(pool: AnyPool, backend: Backend) -> Self {
        Self { pool, backend }
    }

    /// Creates or replaces a registration, including its organization tags, keeping its
    /// original creation time.
    pub async fn upsert(&self, r: &Registration) -> Result<(), StoreError> {
        self.write(r, None).await.map(|_| ())
    }

    /// Like [`Registrations::upsert`], unless the registration is new and its owner already
    /// holds `max_owned`. The count and the write are one transaction that no other write for
    /// the same owner can interleave with (SQLite: `BEGIN IMMEDIATE` takes the write lock first;
    /// PostgreSQL: a transaction-scoped advisory lock per owner), so concurrent registrations
    /// cannot overshoot the limit.
    pub async fn upsert_within(
        &self,
        r: &Registration,
        max_owned: i64,
    ) -> Result<Upsert, StoreError> {
        self.write(r, Some(max_owned)).await
    }

    async fn write(&self, r: &Registration, max_owned: Option<i64>) -> Result<Upsert, StoreError> {
        let (token, endpoint, p256dh, auth) = match &r.channel {
            Channel::Token(t) => (Some(t.clone()), None, None, None),
            Channel::WebPush {
                endpoint,
                p256dh,
                auth,
            } => (
                None,
                Some(endpoint.clone()),
                Some(p256dh.clone()),
                Some(auth.clone()),
            ),
        };
        let mut tx = match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        };
        if let (Some(owner), Some(max)) = (&r.owner, max_owned) {
            if self.backend == Backend::Postgres {
                sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
                    .bind(format!("pushwarden-owner:{owner}"))
                    .execute(&mut *tx)
                    .await?;
            }
            let exists = sqlx::query("SELECT 1 FROM push_registrations WHERE device_id = $1")
                .bind(r.device_id.clone())
                .fetch_optional(&mut *tx)
                .await?
                .is_some();
            let owned: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM push_registrations WHERE owner = $1")
                    .bind(owner.clone())
                    .fetch_one(&mut *tx)
                    .await?;
            if !exists && owned >= max {
                return Ok(Upsert::LimitReached { owned });
            }
        }
        sqlx::query(
            "INSERT INTO push_registrations (device_id, platform, push_token, endpoint, p256dh, \
             auth, apns_environment, user_id, identifier, installation_id, device_type, \
             client_type, owner, created_ms, updated_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) \
             ON CONFLICT (device_id) DO UPDATE SET platform = excluded.platform, \
             push_token = excluded.push_token, endpoint = excluded.endpoint, \
             p256dh = excluded.p256dh, auth = excluded.auth, \
             apns_environment = excluded.apns_environment, user_id = excluded.user_id, \
             identifier = excluded.identifier, installation_id = excluded.installation_id, \
             device_type = excluded.device_type, client_type = excluded.client_type, \
             owner = excluded.owner, updated_ms = excluded.updated_ms",
        )
        .bind(r.device_id.clone())
        .bind(r.platform.as_str())
        .bind(token)
        .bind(endpoint)
        .bind(p256dh)
        .bind(auth)
        .bind(r.apns_environment.map(environment_name))
        .bind(r.user_id.clone())
        .bind(r.identifier.clone())
        .bind(r.installation_id.clone())
        .bind(i64::from(r.device_type))
        .bind(r.client_type() as i64)
        .bind(r.owner.clone())
        .bind(r.created_ms)
        .bind(r.updated_ms)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM push_registration_organizations WHERE device_id = $1")
            .bind(r.device_id.clone())
            .execute(&mut *tx)
            .await?;
        for org in &r.organization_ids {
            sqlx::query(
                "INSERT INTO push_registration_organizations (device_id, organization_id) \
                 VALUES ($1, $2) ON CONFLICT DO NOTHING",
            )
            .bind(r.device_id.clone())
            .bind(org.clone())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(Upsert::Stored)
    }

    /// Removes a registration (and its organization tags); true if there was one.
    pub async fn delete(&self, device_id: &str) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        // Deleted explicitly rather than by cascade: SQLite enforces foreign keys only when the
        // connection asks for it, and this must not depend on that.
        sqlx::query("DELETE FROM push_registration_organizations WHERE device_id = $1")
            .bind(device_id.to_owned())
            .execute(&mut *tx)
            .await?;
        let n = sqlx::query("DELETE FROM push_registrations WHERE device_id = $1")
            .bind(device_id.to_owned())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(affected(n) > 0)
    }

    /// Removes a registration the provider declared dead, unless it was registered again (a new
    /// token, or the same one refreshed) after `not_after_ms`.
    pub async fn remove_dead(
        &self,
        device_id: &str,
        address: &str,
        not_after_ms: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let n = sqlx::query(
            "DELETE FROM push_registrations WHERE device_id = $1 AND updated_ms <= $2 \
             AND (push_token = $3 OR endpoint = $4)",
        )
        .bind(device_id.to_owned())
        .bind(not_after_ms)
        .bind(address.to_owned())
        .bind(address.to_owned())
        .execute(&mut *tx)
        .await?;
        let removed = affected(n) > 0;
        if removed {
            sqlx::query("DELETE FROM push_registration_organizations WHERE device_id = $1")
                .bind(device_id.to_owned())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(removed)
    }

    /// Tags registered devices with an organization; unknown devices are skipped, as a
    /// patch of a missing hub installation is.
    pub async fn add_organization(
        &self,
        device_ids: &[String],
        organization_id: &str,
    ) -> Result<u64, StoreError> {
        self.per_device(
            "INSERT INTO push_registration_organizations (device_id, organization_id) \
             SELECT device_id, $2 FROM push_registrations WHERE device_id = $1 \
             ON CONFLICT DO NOTHING",
            device_ids,
            organization_id,
        )
        .await
    }

    pub async fn remove_organization(
        &self,
        device_ids: &[String],
        organization_id: &str,
    ) -> Result<u64, StoreError> {
        self.per_device(
            "DELETE FROM push_registration_organizations \
             WHERE device_id = $1 AND organization_id = $2",
            device_ids,
            organization_id,
        )
        .await
    }

    /// Runs `sql` (`$1` a device id, `$2` the organization id) for each device, in one
    /// transaction; answers how many rows changed.
    async fn per_device(
        &self,
        sql: &'static str,
        device_ids: &[String],
        organization_id: &str,
    ) -> Result<u64, StoreError> {
        let mut changed = 0;
        let mut tx = self.pool.begin().await?;
        for device_id in device_ids {
            let n = sqlx::query(sql)
                .bind(device_id.clone())
                .bind(organization_id.to_owned())
                .execute(&mut *tx)
                .await?;
            changed += affected(n);
        }
        tx.commit().await?;
        Ok(changed)
    }

    /// One registration with its organization tags.
    pub async fn get(&self, device_id: &str) -> Result<Option<Registration>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM push_registrations WHERE device_id = $1"
        ))
        .bind(device_id.to_owned())
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let mut registration = registration_from_row(&row)?;
        let orgs = sqlx::query(
            "SELECT organization_id FROM push_registration_organizations WHERE device_id = $1 \
             ORDER BY organization_id",
        )
        .bind(device_id.to_owned())
        .fetch_all(&self.pool)
        .await?;
        registration.organization_ids = orgs
            .iter()
            .map(|r| r.try_get::<String, _>(0))
            .collect::<Result<_, _>>()?;
        Ok(Some(registration))
    }

    /// A user's registrations (at most `limit`, the most recently updated first), without
    /// their organization tags.
    pub async fn by_user(
        &self,
        user_id: &str,
        limit: u32,
    ) -> Result<Vec<Registration>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM push_registrations WHERE user_id = $1 \
             ORDER BY updated_ms DESC, device_id LIMIT $2"
        ))
        .bind(user_id.to_owned())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(registration_from_row).collect()
    }

    /// How many devices are registered, per platform name.
    pub async fn counts(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT platform, COUNT(*) FROM push_registrations GROUP BY platform ORDER BY platform",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get::<String, _>(0)?, r.try_get::<i64, _>(1)?)))
            .collect()
    }

    /// How many devices each installation has registered (installations with none are absent).
    pub async fn counts_by_owner(&self) -> Result<HashMap<String, i64>, StoreError> {
        let rows = sqlx::query(
            "SELECT owner, COUNT(*) FROM push_registrations WHERE owner IS NOT NULL GROUP BY owner",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get::<String, _>(0)?, r.try_get::<i64, _>(1)?)))
            .collect()
    }

    /// How many devices an installation has registered.
    pub async fn count_owned(&self, owner: &str) -> Result<i64, StoreError> {
        Ok(scalar(
            &self.pool,
            "SELECT COUNT(*) FROM push_registrations WHERE owner = $1",
            &[owner],
        )
        .await?
        .unwrap_or(0))
    }

    /// PostgreSQL only: refreshes the planner's statistics of the registry's tables when a
    /// tenth of their rows (at least 1,000) changed since they were last gathered; answers the
    /// tables analyzed. Autovacuum would, within a minute or so; until it does, a registry that
    /// grew from nothing to 100,000 devices is planned as if it were empty, and walking an
    /// organization's members turns into sorting all of them for every batch.
    pub async fn refresh_statistics(&self) -> Result<Vec<String>, StoreError> {
        if self.backend != Backend::Postgres {
            return Ok(Vec::new());
        }
        let stale = sqlx::query(
            "SELECT relname FROM pg_stat_user_tables WHERE relname IN \
             ('push_registrations', 'push_registration_organizations') \
             AND n_mod_since_analyze > GREATEST(1000, n_live_tup / 10)",
        )
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| r.try_get::<String, _>(0))
        .collect::<Result<Vec<_>, _>>()?;
        for table in &stale {
            // Names from the fixed list above, never input.
            sqlx::query(&format!("ANALYZE {table}"))
                .execute(&self.pool)
                .await?;
        }
        Ok(stale)
    }

    /// Whether any device the local vault server registered (not a relayed installation) on
    /// `platforms` matches `target`.
    pub async fn has_local(
        &self,
        target: &DeviceTarget,
        platforms: &[Platform],
    ) -> Result<bool, StoreError> {
        if platforms.is_empty() {
            return Ok(false);
        }
        let filter = TargetFilter::new(target, platforms, 1);
        let sql = format!(
            "SELECT COUNT(*) FROM (SELECT r.device_id FROM push_registrations r WHERE {} \
             AND r.owner IS NULL LIMIT 1) found",
            filter.condition
        );
        let row = filter.bind(sqlx::query(&sql)).fetch_one(&self.pool).await?;
        Ok(row.try_get::<i64, _>(0)? > 0)
    }
}

fn registration_from_row(row: &AnyRow) -> Result<Registration, StoreError> {
    let platform_name: String = row.try_get("platform")?;
    let platform = Platform::parse(&platform_name)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown platform {platform_name:?}")))?;
    let channel = channel_from_row(row, platform)?;
    let device_type: i64 = row.try_get("device_type")?;
    Ok(Registration {
        device_id: row.try_get("device_id")?,
        platform,
        channel,
        apns_environment: row
            .try_get::<Option<String>, _>("apns_environment")?
            .as_deref()
            .and_then(parse_environment),
        user_id: row.try_get("user_id")?,
        identifier: row.try_get("identifier")?,
        organization_ids: Vec::new(),
        installation_id: row.try_get("installation_id")?,
        owner: row.try_get("owner")?,
        device_type: u8::try_from(device_type)
            .map_err(|_| StoreError::Corrupt(format!("device type {device_type}")))?,
        created_ms: row.try_get("created_ms")?,
        updated_ms: row.try_get("updated_ms")?,
    })
}

/// The channel columns of a row; shared with the queue, which joins registrations.
pub(super) fn channel_from_row(row: &AnyRow, platform: Platform) -> Result<Channel, StoreError> {
    let missing = |what: &str| {
        StoreError::Corrupt(format!("{} registration without {what}", platform.as_str()))
    };
    Ok(match platform {
        Platform::Apns | Platform::Fcm => Channel::Token(
            row.try_get::<Option<String>, _>("push_token")?
                .ok_or_else(|| missing("a token"))?,
        ),
        Platform::WebPush | Platform::UnifiedPush => Channel::WebPush {
            endpoint: row
                .try_get::<Option<String>, _>("endpoint")?
                .ok_or_else(|| missing("an endpoint"))?,
            p256dh: row
                .try_get::<Option<String>, _>("p256dh")?
                .ok_or_else(|| missing("p256dh"))?,
            auth: row
                .try_get::<Option<String>, _>("auth")?
                .ok_or_else(|| missing("auth"))?,
        },
    })
}
