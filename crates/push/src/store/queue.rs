//! The durable delivery queue: a message stored once, one row per device it must reach, each
//! claimed under a lease, retried on its own schedule, and removed once it is settled.

use std::time::Duration;

use pushwarden_model::Recipient;
use pushwarden_model::{DeviceTarget, PushMessage};
use sqlx::any::AnyRow;
use sqlx::Row;

use super::registrations::channel_from_row;
use super::{affected, Store, StoreError};
use crate::apns::Environment;
use crate::registration::{parse_environment, Channel, Platform};

/// What [`Store::enqueue`] stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Enqueued {
    /// `None` when no device matched, so nothing was written.
    pub message_id: Option<String>,
    pub deliveries: u64,
}

/// A delivery claimed by this worker until its lease runs out.
#[derive(Clone, Debug)]
pub struct ClaimedDelivery {
    pub message_id: String,
    pub device_id: String,
    /// Attempts made before this one.
    pub attempts: u32,
    pub created_ms: i64,
    pub push_type: u8,
    pub payload: String,
    pub context_id: Option<String>,
    /// Where the device is now; `None` if it was unregistered since the push was accepted.
    pub device: Option<ClaimedDevice>,
}

#[derive(Clone, Debug)]
pub struct ClaimedDevice {
    pub platform: Platform,
    pub channel: Channel,
    pub apns_environment: Option<Environment>,
    pub updated_ms: i64,
}

/// When and why a delivery is tried again.
#[derive(Clone, Debug)]
pub struct RetryPlan {
    pub attempts: u32,
    pub next_attempt_ms: i64,
    pub error: String,
}

impl Store {
    /// Writes a message and one delivery per matching device on `platforms`, in one
    /// transaction: when this returns, the push survives a restart.
    pub async fn enqueue(
        &self,
        target: &DeviceTarget,
        message: &PushMessage,
        platforms: &[Platform],
        now_ms: i64,
    ) -> Result<Enqueued, StoreError> {
        let nothing = Enqueued {
            message_id: None,
            deliveries: 0,
        };
        if platforms.is_empty() {
            return Ok(nothing);
        }
        let message_id = uuid::Uuid::new_v4().to_string();
        let filter = TargetFilter::new(target, platforms, 3);
        let sql = format!(
            "INSERT INTO push_deliveries (message_id, device_id, platform, attempts, \
             next_attempt_ms, lease_until_ms, created_ms) \
             SELECT $1, r.device_id, r.platform, 0, $2, 0, $2 FROM push_registrations r \
             WHERE {}",
            filter.condition
        );
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO push_messages (id, push_type, payload, context_id, created_ms) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(message_id.clone())
        .bind(i64::from(message.push_type.as_u8()))
        .bind(message.payload.clone())
        .bind(message.context_id.clone())
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        let insert = filter.bind(sqlx::query(&sql).bind(message_id.clone()).bind(now_ms));
        let deliveries = affected(insert.execute(&mut *tx).await?);
        if deliveries == 0 {
            tx.rollback().await?;
            return Ok(nothing);
        }
        tx.commit().await?;
        Ok(Enqueued {
            message_id: Some(message_id),
            deliveries,
        })
    }

    /// Whether any device the local vault server registered (not a relayed installation) on
    /// `platforms` matches `target`.
    pub async fn has_local_devices(
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

    /// Claims up to `limit` due deliveries for `lease`. A claimed row is invisible to other
    /// workers (and other nodes on PostgreSQL) until it is settled or its lease runs out, which
    /// is how a crashed worker's deliveries come back.
    pub async fn claim(
        &self,
        now_ms: i64,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        let token = uuid::Uuid::new_v4().to_string();
        let lease_until = now_ms.saturating_add(lease.as_millis() as i64);
        // The outer lease condition is rechecked by PostgreSQL on rows another node updated
        // meanwhile, so two nodes never both claim a row.
        let claimed = sqlx::query(
            "UPDATE push_deliveries SET lease_until_ms = $1, lease_token = $2 \
             WHERE lease_until_ms <= $3 AND next_attempt_ms <= $3 \
             AND (message_id, device_id) IN (SELECT message_id, device_id FROM push_deliveries \
             WHERE next_attempt_ms <= $3 AND lease_until_ms <= $3 \
             ORDER BY next_attempt_ms LIMIT $4)",
        )
        .bind(lease_until)
        .bind(token.clone())
        .bind(now_ms)
        .bind(i64::from(limit))
        .execute(&self.pool)
        .await?;
        if affected(claimed) == 0 {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(
            "SELECT d.message_id, d.device_id, d.attempts, d.created_ms, m.push_type, m.payload, \
             m.context_id, r.platform, r.push_token, r.endpoint, r.p256dh, r.auth, \
             r.apns_environment, r.updated_ms \
             FROM push_deliveries d JOIN push_messages m ON m.id = d.message_id \
             LEFT JOIN push_registrations r ON r.device_id = d.device_id \
             WHERE d.lease_token = $1 ORDER BY d.next_attempt_ms",
        )
        .bind(token)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(claimed_from_row).collect()
    }

    /// Removes a settled delivery: delivered, or dropped for a reason already counted.
    pub async fn settle(&self, message_id: &str, device_id: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM push_deliveries WHERE message_id = $1 AND device_id = $2")
            .bind(message_id.to_owned())
            .bind(device_id.to_owned())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Removes many settled deliveries in one statement (one commit, one fsync), as the
    /// delivery worker batches them.
    pub async fn settle_many(&self, deliveries: &[(String, String)]) -> Result<(), StoreError> {
        // Row-value IN needs a VALUES subquery in SQLite; 400 pairs stay far below either
        // database's limit on parameters.
        for chunk in deliveries.chunks(400) {
            let values = (0..chunk.len())
                .map(|i| format!("(${}, ${})", 2 * i + 1, 2 * i + 2))
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!(
                "DELETE FROM push_deliveries WHERE (message_id, device_id) IN (VALUES {values})"
            );
            let mut query = sqlx::query(&sql);
            for (message_id, device_id) in chunk {
                query = query.bind(message_id.clone()).bind(device_id.clone());
            }
            query.execute(&self.pool).await?;
        }
        Ok(())
    }

    /// Puts a delivery back for a later attempt.
    pub async fn reschedule(
        &self,
        message_id: &str,
        device_id: &str,
        plan: &RetryPlan,
    ) -> Result<(), StoreError> {
        let mut error = plan.error.clone();
        truncate(&mut error, 500);
        sqlx::query(
            "UPDATE push_deliveries SET attempts = $1, next_attempt_ms = $2, lease_until_ms = 0, \
             lease_token = NULL, last_error = $3 WHERE message_id = $4 AND device_id = $5",
        )
        .bind(i64::from(plan.attempts))
        .bind(plan.next_attempt_ms)
        .bind(error)
        .bind(message_id.to_owned())
        .bind(device_id.to_owned())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Frees every lease. Only for a store no other process uses (SQLite), at start: what a
    /// previous run held when it stopped is due again at once instead of after its lease.
    pub async fn release_all_leases(&self) -> Result<u64, StoreError> {
        let n = sqlx::query(
            "UPDATE push_deliveries SET lease_until_ms = 0, lease_token = NULL \
             WHERE lease_token IS NOT NULL",
        )
        .execute(&self.pool)
        .await?;
        let m = sqlx::query(
            "UPDATE relay_outbox SET lease_until_ms = 0, lease_token = NULL \
             WHERE lease_token IS NOT NULL",
        )
        .execute(&self.pool)
        .await?;
        Ok(affected(n) + affected(m))
    }

    /// Deletes messages no delivery refers to any more.
    pub async fn purge_settled_messages(&self) -> Result<u64, StoreError> {
        let n = sqlx::query(
            "DELETE FROM push_messages WHERE NOT EXISTS \
             (SELECT 1 FROM push_deliveries d WHERE d.message_id = push_messages.id)",
        )
        .execute(&self.pool)
        .await?;
        Ok(affected(n))
    }

    /// Deliveries not yet settled.
    pub async fn pending_deliveries(&self) -> Result<i64, StoreError> {
        Ok(self
            .scalar("SELECT COUNT(*) FROM push_deliveries", &[])
            .await?
            .unwrap_or(0))
    }

    /// When the next delivery falls due, if any.
    pub async fn next_due_ms(&self) -> Result<Option<i64>, StoreError> {
        self.scalar("SELECT MIN(next_attempt_ms) FROM push_deliveries", &[])
            .await
    }
}

/// The `WHERE` condition selecting a target's registrations (`r`): Bitwarden's tag expression
/// `target && !deviceIdentifier:{x} && clientType:{ct}`, limited to some platforms.
struct TargetFilter {
    condition: String,
    binds: Vec<Bind>,
}

enum Bind {
    Text(String),
    Int(i64),
}

type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>;

impl TargetFilter {
    /// `first` is the number of the first placeholder the condition may use.
    fn new(target: &DeviceTarget, platforms: &[Platform], first: usize) -> Self {
        let mut n = first;
        let mut binds = Vec::new();
        let mut next = |bind: Bind| {
            binds.push(bind);
            n += 1;
            format!("${}", n - 1)
        };
        let mut condition = match &target.target.recipient {
            Recipient::User(id) => format!("r.user_id = {}", next(Bind::Text(id.clone()))),
            Recipient::Organization(id) => format!(
                "r.device_id IN (SELECT o.device_id FROM push_registration_organizations o \
                 WHERE o.organization_id = {})",
                next(Bind::Text(id.clone()))
            ),
            Recipient::Installation(id) => {
                format!("r.installation_id = {}", next(Bind::Text(id.clone())))
            }
        };
        // Platform names are our own constants, never request input.
        let platform_list = platforms
            .iter()
            .map(|p| format!("'{}'", p.as_str()))
            .collect::<Vec<_>>()
            .join(", ");
        condition.push_str(&format!(" AND r.platform IN ({platform_list})"));
        if let Some(identifier) = &target.exclude_identifier {
            condition.push_str(&format!(
                " AND (r.identifier IS NULL OR r.identifier <> {})",
                next(Bind::Text(identifier.clone()))
            ));
        }
        if let Some(client_type) = target.target.client_type {
            condition.push_str(&format!(
                " AND r.client_type = {}",
                next(Bind::Int(client_type as i64))
            ));
        }
        Self { condition, binds }
    }

    fn bind<'q>(&self, mut query: AnyQuery<'q>) -> AnyQuery<'q> {
        for b in &self.binds {
            query = match b {
                Bind::Text(s) => query.bind(s.clone()),
                Bind::Int(i) => query.bind(*i),
            };
        }
        query
    }
}

fn claimed_from_row(row: &AnyRow) -> Result<ClaimedDelivery, StoreError> {
    let attempts: i64 = row.try_get("attempts")?;
    let push_type: i64 = row.try_get("push_type")?;
    let device = match row.try_get::<Option<String>, _>("platform")? {
        None => None,
        Some(name) => {
            let platform = Platform::parse(&name)
                .ok_or_else(|| StoreError::Corrupt(format!("unknown platform {name:?}")))?;
            Some(ClaimedDevice {
                platform,
                channel: channel_from_row(row, platform)?,
                apns_environment: row
                    .try_get::<Option<String>, _>("apns_environment")?
                    .as_deref()
                    .and_then(parse_environment),
                updated_ms: row.try_get::<Option<i64>, _>("updated_ms")?.unwrap_or(0),
            })
        }
    };
    Ok(ClaimedDelivery {
        message_id: row.try_get("message_id")?,
        device_id: row.try_get("device_id")?,
        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
        created_ms: row.try_get("created_ms")?,
        push_type: u8::try_from(push_type)
            .map_err(|_| StoreError::Corrupt(format!("push type {push_type}")))?,
        payload: row.try_get("payload")?,
        context_id: row.try_get("context_id")?,
        device,
    })
}

fn truncate(s: &mut String, max: usize) {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
}
