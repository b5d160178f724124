//! Fan-out as a push is sent: a stored push is expanded to its devices a batch at a time, in
//! device id order, each batch recorded (its device range, under a lease) in the same
//! transaction that moves the push's cursor past it. A batch is finished in one transaction
//! that writes the deliveries that must wait (retries, deferrals) to `push_deliveries` and
//! deletes the batch; if its worker dies first, the lease lapses and another worker reads the
//! same range again and sends it: a possible duplicate, never a loss.
//!
//! Pushes still being expanded take turns (`turn_ms`): a round serves up to 64 of them, oldest
//! turn first, one batch each, an even share of the round's budget each, and a served push
//! goes to the back. A new push starts with its turn [`HEAD_START_MS`] before its arrival, so it
//! goes before pushes served lately: most pushes are a user's few devices, and one that just
//! arrived should not wait behind rounds of a big push. A push to 100,000 devices and a push to one device are expanded side by
//! side, not one after the other.

use std::time::Duration;

use sqlx::any::AnyRow;
use sqlx::Row;

use super::audience::{Audience, Walk, AUDIENCE_COLUMNS};
use super::deliveries::{device_from_row, push_type_from_row};
use super::{affected, Backend, ClaimedDelivery, Deliveries, StoreError};

/// The most bound parameters one statement uses (see `leased.rs`).
const MAX_BINDS: usize = 800;

/// A batch of one push's devices, claimed by this worker until it is finished.
#[derive(Clone, Debug)]
pub struct ClaimedBatch {
    pub message_id: String,
    /// The batch is the devices with an id in `(after_device, last_device]`.
    pub after_device: String,
    pub last_device: String,
    /// The batch is the whole push: it was expanded in one go, from its first device to its
    /// last.
    pub whole: bool,
    pub deliveries: Vec<ClaimedDelivery>,
}

/// A delivery of a finished batch that goes on in `push_deliveries`: to be retried, or sent
/// later than the batch (its Web Push origin was busy).
#[derive(Clone, Debug)]
pub struct Pending {
    pub device_id: String,
    pub platform: &'static str,
    /// Attempts made so far.
    pub attempts: u32,
    pub next_attempt_ms: i64,
    pub last_error: Option<String>,
}

/// A batch whose every delivery has an outcome.
#[derive(Clone, Debug)]
pub struct FinishedBatch {
    pub message_id: String,
    pub after_device: String,
    pub created_ms: i64,
    pub pending: Vec<Pending>,
}

/// The push columns a batch's deliveries carry.
const MESSAGE_COLUMNS: &str = "m.id, m.push_type, m.payload, m.context_id, m.created_ms";

/// A push being expanded, as read at the start of a round.
struct Expanding {
    id: String,
    push_type: u8,
    payload: String,
    context_id: Option<String>,
    created_ms: i64,
    audience: Audience,
    expanded_through: String,
}

impl Expanding {
    fn from_row(row: &AnyRow) -> Result<Self, StoreError> {
        Ok(Self {
            id: row.try_get("id")?,
            push_type: push_type_from_row(row)?,
            payload: row.try_get("payload")?,
            context_id: row.try_get("context_id")?,
            created_ms: row.try_get("created_ms")?,
            audience: Audience::from_row(row)?,
            expanded_through: row
                .try_get::<Option<String>, _>("expanded_through")?
                .unwrap_or_default(),
        })
    }

    /// The deliveries of `rows` (a walk's), devices of this push; a member the filter excluded
    /// (no device) is none.
    fn deliveries(&self, rows: &[AnyRow]) -> Result<Vec<ClaimedDelivery>, StoreError> {
        let mut deliveries = Vec::with_capacity(rows.len());
        for row in rows {
            let Some(device_id) = row.try_get::<Option<String>, _>("device_id")? else {
                continue;
            };
            deliveries.push(ClaimedDelivery {
                message_id: self.id.clone(),
                device_id,
                attempts: 0,
                created_ms: self.created_ms,
                push_type: self.push_type,
                payload: self.payload.clone(),
                context_id: self.context_id.clone(),
                device: device_from_row(row)?,
            });
        }
        Ok(deliveries)
    }
}

impl Deliveries {
    /// Expands pushes into batches of at most `max_batch` devices, `budget` devices in all,
    /// one batch per push, the push waiting longest for its turn first; the batches are
    /// claimed for `lease`. One transaction: the batches are recorded and the pushes' cursors
    /// moved together. On PostgreSQL, pushes another node is expanding are skipped.
    pub async fn expand(
        &self,
        now_ms: i64,
        lease: Duration,
        budget: u32,
        max_batch: u32,
    ) -> Result<Vec<ClaimedBatch>, StoreError> {
        self.expand_where(now_ms, lease, budget, max_batch, false)
            .await
    }

    /// [`Deliveries::expand`] for pushes not started yet only: how the worker serves pushes
    /// that just arrived while it has its hands full with ones it started.
    pub async fn expand_new(
        &self,
        now_ms: i64,
        lease: Duration,
        budget: u32,
        max_batch: u32,
    ) -> Result<Vec<ClaimedBatch>, StoreError> {
        self.expand_where(now_ms, lease, budget, max_batch, true)
            .await
    }

    async fn expand_where(
        &self,
        now_ms: i64,
        lease: Duration,
        budget: u32,
        max_batch: u32,
        only_new: bool,
    ) -> Result<Vec<ClaimedBatch>, StoreError> {
        if budget == 0 || max_batch == 0 {
            return Ok(Vec::new());
        }
        // SQLite: take the write lock first, so the reads below cannot go stale before the
        // writes (the API inserts pushes meanwhile).
        let mut tx = match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        };
        let lock = match self.backend {
            Backend::Sqlite => "",
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
        };
        let new = if only_new {
            " AND expanded_through = ''"
        } else {
            ""
        };
        let pushes = sqlx::query(&format!(
            "SELECT id, push_type, payload, context_id, created_ms, {AUDIENCE_COLUMNS}, \
             expanded_through FROM push_messages WHERE expanded = 0{new} ORDER BY turn_ms \
             LIMIT $1{lock}"
        ))
        .bind(i64::from(
            (budget / MIN_SHARE).clamp(1, MAX_PUSHES_PER_ROUND),
        ))
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(Expanding::from_row)
        .collect::<Result<Vec<_>, _>>()?;
        if pushes.is_empty() {
            tx.rollback().await?;
            return Ok(Vec::new());
        }
        let token = uuid::Uuid::new_v4().to_string();
        let lease_until = now_ms.saturating_add(i64::try_from(lease.as_millis()).unwrap_or(0));
        // An even share of the budget for each push of the round, so that a big push does not
        // take it all from the small ones behind it; but never a sliver, which would cost a
        // batch per handful of devices (the round takes no more pushes than that allows).
        let take = (budget / pushes.len() as u32).clamp(MIN_SHARE.min(max_batch), max_batch);
        // Every push's next devices in one statement, padded to a bucket size with copies of
        // the first walk that match nothing.
        let mut walks = Vec::with_capacity(bucket(pushes.len()));
        let mut first = 1;
        for tag in 0..bucket(pushes.len()) {
            let push = pushes.get(tag).unwrap_or(&pushes[0]);
            let walk = Walk::new(&push.audience, false, first, tag);
            first = walk.next_placeholder();
            walks.push(walk);
        }
        let sql = Walk::union(&walks);
        let mut query = sqlx::query(&sql);
        for (tag, walk) in walks.iter().enumerate() {
            query = match pushes.get(tag) {
                Some(push) => walk.bind(query, &push.expanded_through, None, take),
                None => walk.bind_nothing(query),
            };
        }
        let rows = query.fetch_all(&mut *tx).await?;
        let found = by_walk(rows, pushes.len())?;
        let mut batches = Vec::new();
        let mut moved = Vec::with_capacity(pushes.len());
        for (push, rows) in pushes.iter().zip(&found) {
            // Fewer than asked for: the push has no devices left after these.
            let done = rows.len() < take as usize;
            let through = match rows.first() {
                Some(row) => row.try_get::<String, _>("through")?,
                None => push.expanded_through.clone(),
            };
            moved.push((push.id.clone(), through.clone(), i64::from(done)));
            let deliveries = push.deliveries(rows)?;
            // Members the filter excluded move the cursor but make no batch.
            if !deliveries.is_empty() {
                batches.push(ClaimedBatch {
                    message_id: push.id.clone(),
                    after_device: push.expanded_through.clone(),
                    last_device: through,
                    whole: done && push.expanded_through.is_empty(),
                    deliveries,
                });
            }
        }
        // Every push's cursor moved, and its turn taken, in one statement (padded to a bucket
        // size with rows that match nothing, so the database plans a few statements, once).
        let rows = bucket(moved.len());
        let values = (0..rows)
            .map(|i| format!("(${}, ${}, ${})", 2 + 3 * i, 3 + 3 * i, 4 + 3 * i))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "UPDATE push_messages SET expanded_through = v.column2, expanded = v.column3, \
             turn_ms = $1 FROM (VALUES {values}) AS v WHERE push_messages.id = v.column1"
        );
        let mut query = sqlx::query(&sql).bind(now_ms);
        let padding = rows - moved.len();
        for (id, through, done) in moved {
            query = query.bind(Some(id)).bind(Some(through)).bind(Some(done));
        }
        for _ in 0..padding {
            query = query
                .bind(None::<String>)
                .bind(None::<String>)
                .bind(None::<i64>);
        }
        query.execute(&mut *tx).await?;
        // One statement for every batch (at most MAX_PUSHES_PER_ROUND), padded like the
        // update above; the padding rows are filtered out.
        if !batches.is_empty() {
            let rows = bucket(batches.len());
            let values = (0..rows)
                .map(|i| format!("(${}, ${}, ${})", 4 + 3 * i, 5 + 3 * i, 6 + 3 * i))
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!(
                "INSERT INTO push_batches (message_id, after_device, last_device, \
                 lease_until_ms, lease_token, created_ms) \
                 SELECT v.column1, v.column2, v.column3, $1, $2, $3 \
                 FROM (VALUES {values}) AS v WHERE v.column1 IS NOT NULL"
            );
            let mut query = sqlx::query(&sql)
                .bind(lease_until)
                .bind(token.clone())
                .bind(now_ms);
            for batch in &batches {
                query = query
                    .bind(Some(batch.message_id.clone()))
                    .bind(Some(batch.after_device.clone()))
                    .bind(Some(batch.last_device.clone()));
            }
            for _ in batches.len()..rows {
                query = query
                    .bind(None::<String>)
                    .bind(None::<String>)
                    .bind(None::<String>);
            }
            query.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(batches)
    }

    /// Claims up to `limit` batches whose lease lapsed (their worker died, or could not
    /// finish them) and reads their devices again.
    pub async fn reclaim_batches(
        &self,
        now_ms: i64,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<ClaimedBatch>, StoreError> {
        let token = uuid::Uuid::new_v4().to_string();
        let lease_until = now_ms.saturating_add(i64::try_from(lease.as_millis()).unwrap_or(0));
        let claimed = sqlx::query(
            "UPDATE push_batches SET lease_until_ms = $1, lease_token = $2 \
             WHERE lease_until_ms <= $3 AND (message_id, after_device) IN \
             (SELECT message_id, after_device FROM push_batches WHERE lease_until_ms <= $3 \
             ORDER BY lease_until_ms LIMIT $4)",
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
        let rows = sqlx::query(&format!(
            "SELECT {MESSAGE_COLUMNS}, {AUDIENCE_COLUMNS}, m.expanded_through, \
             b.after_device, b.last_device FROM push_batches b \
             JOIN push_messages m ON m.id = b.message_id WHERE b.lease_token = $1"
        ))
        .bind(token)
        .fetch_all(&self.pool)
        .await?;
        let mut claimed = Vec::with_capacity(rows.len());
        for row in &rows {
            let push = Expanding::from_row(row)?;
            let after: String = row.try_get("after_device")?;
            let last: String = row.try_get("last_device")?;
            claimed.push((push, after, last));
        }
        // Every batch's range read again, in one statement.
        let mut walks = Vec::with_capacity(claimed.len());
        let mut first = 1;
        for (tag, (push, _, _)) in claimed.iter().enumerate() {
            let walk = Walk::new(&push.audience, true, first, tag);
            first = walk.next_placeholder();
            walks.push(walk);
        }
        let sql = Walk::union(&walks);
        let mut query = sqlx::query(&sql);
        for (walk, (_, after, last)) in walks.iter().zip(&claimed) {
            // A range holds what it held when it was expanded, plus devices registered since
            // with an id inside it: no more than a batch of them is expected.
            query = walk.bind(query, after, Some(last), RECLAIM_MAX);
        }
        let devices = query.fetch_all(&self.pool).await?;
        let found = by_walk(devices, claimed.len())?;
        let mut batches = Vec::with_capacity(claimed.len());
        for ((push, after, last), rows) in claimed.into_iter().zip(&found) {
            if rows.len() >= RECLAIM_MAX as usize {
                tracing::warn!(message_id = %push.id, devices = rows.len(), "push queue: a batch read again holds the most devices it may; devices past them in its range are left out");
            }
            batches.push(ClaimedBatch {
                deliveries: push.deliveries(rows)?,
                message_id: push.id,
                after_device: after,
                last_device: last,
                whole: false,
            });
        }
        Ok(batches)
    }

    /// Finishes batches and settles retried deliveries, in one transaction: each batch's
    /// pending deliveries are written to `push_deliveries` and the batch deleted, the settled
    /// rows deleted, and then each push of theirs that is fully expanded and has nothing left
    /// deleted too.
    pub async fn finish(
        &self,
        batches: &[FinishedBatch],
        settled: &[(String, String)],
    ) -> Result<(), StoreError> {
        if batches.is_empty() && settled.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        let pending: Vec<(&FinishedBatch, &Pending)> = batches
            .iter()
            .flat_map(|b| b.pending.iter().map(move |p| (b, p)))
            .collect();
        for chunk in pending.chunks(MAX_BINDS / 7) {
            let values = (0..chunk.len())
                .map(|i| {
                    let n = 1 + 7 * i;
                    format!(
                        "(${}, ${}, ${}, ${}, ${}, 0, ${}, ${})",
                        n,
                        n + 1,
                        n + 2,
                        n + 3,
                        n + 4,
                        n + 5,
                        n + 6
                    )
                })
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!(
                "INSERT INTO push_deliveries (message_id, device_id, platform, attempts, \
                 next_attempt_ms, lease_until_ms, last_error, created_ms) VALUES {values} \
                 ON CONFLICT (message_id, device_id) DO NOTHING"
            );
            let mut query = sqlx::query(&sql);
            for (batch, p) in chunk {
                let mut error = p.last_error.clone();
                if let Some(e) = error.as_mut() {
                    super::leased::truncate(e, super::leased::MAX_ERROR);
                }
                query = query
                    .bind(batch.message_id.clone())
                    .bind(p.device_id.clone())
                    .bind(p.platform)
                    .bind(i64::from(p.attempts))
                    .bind(p.next_attempt_ms)
                    .bind(error)
                    .bind(batch.created_ms);
            }
            query.execute(&mut *tx).await?;
        }
        for chunk in batches.chunks(MAX_BINDS / 2) {
            let keys = chunk.iter().map(|b| (&b.message_id, &b.after_device));
            delete_pairs(&mut tx, "push_batches", "after_device", keys).await?;
        }
        for chunk in settled.chunks(MAX_BINDS / 2) {
            let keys = chunk.iter().map(|(m, d)| (m, d));
            delete_pairs(&mut tx, "push_deliveries", "device_id", keys).await?;
        }
        let mut pushes: Vec<&String> = batches
            .iter()
            .map(|b| &b.message_id)
            .chain(settled.iter().map(|(m, _)| m))
            .collect();
        pushes.sort();
        pushes.dedup();
        for chunk in pushes.chunks(MAX_BINDS / 2) {
            let rows = bucket(chunk.len());
            let list = (1..=rows)
                .map(|i| format!("${i}"))
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!(
                "DELETE FROM push_messages WHERE id IN ({list}) AND expanded = 1 \
                 AND NOT EXISTS (SELECT 1 FROM push_batches b WHERE b.message_id = push_messages.id) \
                 AND NOT EXISTS (SELECT 1 FROM push_deliveries d WHERE d.message_id = push_messages.id)"
            );
            let mut query = sqlx::query(&sql);
            for id in chunk {
                query = query.bind(Some((*id).clone()));
            }
            for _ in chunk.len()..rows {
                query = query.bind(None::<String>);
            }
            query.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

/// The most devices a batch read again may hold. A batch is at most a round's share when it is
/// made; devices registered later with an id inside its range join it. Past this many, the
/// rest of the range is left out (and logged): bounded memory over completeness for a range
/// that would have to have grown a hundredfold.
const RECLAIM_MAX: u32 = 10_000;

/// How far ahead of pushes being expanded a new push's first turn comes (see the module docs).
/// A big push that has not been served for this long goes before new ones again, so a stream
/// of new pushes cannot starve it.
pub const HEAD_START_MS: i64 = 2_000;

/// The most pushes one round expands, whatever its budget.
const MAX_PUSHES_PER_ROUND: u32 = 64;

/// The fewest devices a push is given in a round: most pushes (a user's devices) fit in it
/// whole.
const MIN_SHARE: u32 = 8;

/// `n` rounded up to a power of two: statements whose size varies are padded to one of a few
/// sizes, so that the database parses and plans each size once (a prepared statement) rather
/// than every distinct count it meets.
pub(super) fn bucket(n: usize) -> usize {
    n.max(1).next_power_of_two()
}

/// Deletes the rows of `table` keyed `(message_id, second)` in `keys`, one statement padded to
/// a bucket size with keys that match nothing.
async fn delete_pairs<'k>(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    table: &str,
    second: &str,
    keys: impl ExactSizeIterator<Item = (&'k String, &'k String)>,
) -> Result<(), StoreError> {
    let real = keys.len();
    let rows = bucket(real);
    let sql = format!(
        "DELETE FROM {table} WHERE (message_id, {second}) IN (VALUES {})",
        pairs(rows)
    );
    let mut query = sqlx::query(&sql);
    for (a, b) in keys {
        query = query.bind(Some(a.clone())).bind(Some(b.clone()));
    }
    for _ in real..rows {
        query = query.bind(None::<String>).bind(None::<String>);
    }
    query.execute(&mut **tx).await?;
    Ok(())
}

/// The rows of a [`Walk::union`] of `walks` walks, grouped by the walk they answer.
fn by_walk(rows: Vec<AnyRow>, walks: usize) -> Result<Vec<Vec<AnyRow>>, StoreError> {
    let mut found: Vec<Vec<AnyRow>> = (0..walks).map(|_| Vec::new()).collect();
    for row in rows {
        let tag: i64 = row.try_get("walk")?;
        match usize::try_from(tag).ok().and_then(|t| found.get_mut(t)) {
            Some(group) => group.push(row),
            // A padding walk matches nothing; any other tag is not ours.
            None => return Err(StoreError::Corrupt(format!("walk tag {tag}"))),
        }
    }
    Ok(found)
}

/// `($1, $2), ($3, $4), …` for `rows` pairs.
fn pairs(rows: usize) -> String {
    (0..rows)
        .map(|r| format!("(${}, ${})", 2 * r + 1, 2 * r + 2))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_number_their_placeholders() {
        assert_eq!(pairs(2), "($1, $2), ($3, $4)");
    }

    #[test]
    fn sizes_fall_in_few_buckets() {
        assert_eq!([0, 1, 2, 3, 5, 64].map(bucket), [1, 1, 2, 4, 8, 64]);
    }
}
