//! The leased-queue SQL both queues share: claim under a lease, give back, retry later, settle.
//!
//! A queue table has `attempts`, `next_attempt_ms`, `lease_until_ms`, `lease_token`,
//! `last_error` and `created_ms` columns beside its own. A claimed row carries a lease: it is
//! invisible to other workers (and other nodes on PostgreSQL) until it is settled, retried or
//! released, or its lease runs out, which is how a crashed worker's rows come back. What a
//! queue may differ in is described by its [`Spec`], not by a copy of these statements.

use std::time::Duration;

use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};

use super::{affected, scalar, AnyQuery, StoreError};

/// The order rows are claimed in.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Order {
    /// Any due row, the soonest due first: rows are independent of each other.
    Due,
    /// Strictly by this column, oldest first: nothing is claimed while the oldest unclaimed row
    /// waits for its retry, so no row overtakes an earlier one.
    Fifo(&'static str),
}

/// One leased queue: its table, key, claim order and the shape of a claimed row.
#[derive(Debug)]
pub(crate) struct Spec {
    pub table: &'static str,
    /// The primary key's columns.
    pub key: &'static [&'static str],
    pub order: Order,
    /// Reads the rows claimed under the lease token `$1`, in claim order.
    pub select_claimed: &'static str,
}

/// A key of a queue row, bound in the order of [`Spec::key`].
pub trait RowKey {
    fn bind_to<'q>(&self, query: AnyQuery<'q>) -> AnyQuery<'q>;
}

impl RowKey for String {
    fn bind_to<'q>(&self, query: AnyQuery<'q>) -> AnyQuery<'q> {
        query.bind(self.clone())
    }
}

impl RowKey for (String, String) {
    fn bind_to<'q>(&self, query: AnyQuery<'q>) -> AnyQuery<'q> {
        query.bind(self.0.clone()).bind(self.1.clone())
    }
}

/// When and why a row is tried again.
#[derive(Clone, Debug)]
pub struct RetryPlan {
    pub attempts: u32,
    pub next_attempt_ms: i64,
    pub error: String,
}

/// The most bound parameters one batched statement uses; far below either database's limit.
const MAX_BINDS: usize = 800;

/// The longest `last_error` kept, in bytes.
pub(super) const MAX_ERROR: usize = 500;

impl Spec {
    /// `col` or `(col1, col2)`, as a row value.
    fn key_expr(&self) -> String {
        match self.key {
            [one] => (*one).to_owned(),
            many => format!("({})", many.join(", ")),
        }
    }

    /// The condition a claimable row meets (`$3` is now), and the column it is claimed by.
    fn claimable(&self) -> (&'static str, &'static str) {
        match self.order {
            Order::Due => (
                "next_attempt_ms <= $3 AND lease_until_ms <= $3",
                "next_attempt_ms",
            ),
            Order::Fifo(column) => ("lease_until_ms <= $3", column),
        }
    }

    /// The one statement that claims rows: `$1` lease end, `$2` lease token, `$3` now, `$4`
    /// how many. The outer condition is rechecked by PostgreSQL on rows another node updated
    /// meanwhile, so two nodes never both claim a row.
    fn claim_sql(&self) -> String {
        let (claimable, order) = self.claimable();
        let (table, key, columns) = (self.table, self.key_expr(), self.key.join(", "));
        format!(
            "UPDATE {table} SET lease_until_ms = $1, lease_token = $2 \
             WHERE {claimable} AND {key} IN (SELECT {columns} FROM {table} \
             WHERE {claimable} ORDER BY {order} LIMIT $4)"
        )
    }

    /// `key IN (VALUES (…), …)` for `rows` keys, placeholders from `$first`. (SQLite takes a
    /// row value `IN` only from a subquery, hence `VALUES`.)
    fn key_in(&self, rows: usize, first: usize) -> String {
        let width = self.key.len();
        let values = (0..rows)
            .map(|r| {
                let row = (0..width)
                    .map(|c| format!("${}", first + r * width + c))
                    .collect::<Vec<_>>()
                    .join(", ");
                format!("({row})")
            })
            .collect::<Vec<_>>()
            .join(", ");
        format!("{} IN (VALUES {values})", self.key_expr())
    }

    /// `col1 = $first AND col2 = $first+1 …`
    fn key_eq(&self, first: usize) -> String {
        self.key
            .iter()
            .enumerate()
            .map(|(i, col)| format!("{col} = ${}", first + i))
            .collect::<Vec<_>>()
            .join(" AND ")
    }
}

/// A leased queue on a connection pool.
#[derive(Clone)]
pub(crate) struct Leased {
    pool: AnyPool,
    spec: &'static Spec,
}

impl Leased {
    pub fn new(pool: AnyPool, spec: &'static Spec) -> Self {
        Self { pool, spec }
    }

    /// Claims up to `limit` rows for `lease`, read with `parse`, in claim order.
    pub async fn claim<T>(
        &self,
        now_ms: i64,
        lease: Duration,
        limit: u32,
        parse: impl Fn(&AnyRow) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        if let Order::Fifo(column) = self.spec.order {
            if !self.head_is_due(column, now_ms).await? {
                return Ok(Vec::new());
            }
        }
        let token = uuid::Uuid::new_v4().to_string();
        let lease_until = now_ms.saturating_add(lease.as_millis() as i64);
        let claimed = sqlx::query(&self.spec.claim_sql())
            .bind(lease_until)
            .bind(token.clone())
            .bind(now_ms)
            .bind(i64::from(limit))
            .execute(&self.pool)
            .await?;
        if affected(claimed) == 0 {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(self.spec.select_claimed)
            .bind(token)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(parse).collect()
    }

    /// Whether the oldest unclaimed row of a FIFO queue is due (and so anything may go).
    async fn head_is_due(&self, column: &str, now_ms: i64) -> Result<bool, StoreError> {
        let sql = format!(
            "SELECT next_attempt_ms FROM {} WHERE lease_until_ms <= $1 ORDER BY {column} LIMIT 1",
            self.spec.table
        );
        let head = sqlx::query(&sql)
            .bind(now_ms)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match head {
            Some(row) => row.try_get::<i64, _>(0)? <= now_ms,
            None => false,
        })
    }

    /// Removes settled rows, many per statement (one commit, one fsync).
    pub async fn settle<K: RowKey>(&self, keys: &[K]) -> Result<(), StoreError> {
        self.for_keys(&format!("DELETE FROM {}", self.spec.table), keys)
            .await
    }

    /// Gives claimed rows back untouched (their schedule kept), for a batch cut short.
    pub async fn release<K: RowKey>(&self, keys: &[K]) -> Result<(), StoreError> {
        let update = format!(
            "UPDATE {} SET lease_until_ms = 0, lease_token = NULL",
            self.spec.table
        );
        self.for_keys(&update, keys).await
    }

    /// Gives claimed rows back to be tried at `next_attempt_ms`, their attempts and last error
    /// unchanged: deferred, not failed.
    pub async fn defer<K: RowKey>(
        &self,
        keys: &[K],
        next_attempt_ms: i64,
    ) -> Result<(), StoreError> {
        for chunk in keys.chunks((MAX_BINDS - 1) / self.spec.key.len()) {
            let sql = format!(
                "UPDATE {} SET next_attempt_ms = $1, lease_until_ms = 0, lease_token = NULL \
                 WHERE {}",
                self.spec.table,
                self.spec.key_in(chunk.len(), 2)
            );
            let mut query = sqlx::query(&sql).bind(next_attempt_ms);
            for key in chunk {
                query = key.bind_to(query);
            }
            query.execute(&self.pool).await?;
        }
        Ok(())
    }

    /// Runs `statement WHERE <key in keys>`, as few times as the bind limit allows.
    async fn for_keys<K: RowKey>(&self, statement: &str, keys: &[K]) -> Result<(), StoreError> {
        for chunk in keys.chunks(MAX_BINDS / self.spec.key.len()) {
            let sql = format!("{statement} WHERE {}", self.spec.key_in(chunk.len(), 1));
            let mut query = sqlx::query(&sql);
            for key in chunk {
                query = key.bind_to(query);
            }
            query.execute(&self.pool).await?;
        }
        Ok(())
    }

    /// Puts a claimed row back for a later attempt.
    pub async fn retry<K: RowKey>(&self, key: &K, plan: &RetryPlan) -> Result<(), StoreError> {
        let mut error = plan.error.clone();
        truncate(&mut error, MAX_ERROR);
        let sql = format!(
            "UPDATE {} SET attempts = $1, next_attempt_ms = $2, lease_until_ms = 0, \
             lease_token = NULL, last_error = $3 WHERE {}",
            self.spec.table,
            self.spec.key_eq(4)
        );
        let query = sqlx::query(&sql)
            .bind(i64::from(plan.attempts))
            .bind(plan.next_attempt_ms)
            .bind(error);
        key.bind_to(query).execute(&self.pool).await?;
        Ok(())
    }

    /// Frees every lease; how many there were.
    pub async fn release_all(&self) -> Result<u64, StoreError> {
        let sql = format!(
            "UPDATE {} SET lease_until_ms = 0, lease_token = NULL WHERE lease_token IS NOT NULL",
            self.spec.table
        );
        Ok(affected(sqlx::query(&sql).execute(&self.pool).await?))
    }

    /// Rows not yet settled.
    pub async fn pending(&self) -> Result<i64, StoreError> {
        let sql = format!("SELECT COUNT(*) FROM {}", self.spec.table);
        Ok(scalar(&self.pool, &sql, &[]).await?.unwrap_or(0))
    }

    /// When the next row can be claimed, if any: due, and its lease (if claimed) lapsed. In a
    /// FIFO queue that is the oldest row's time, whatever is due behind it.
    pub async fn next_due_ms(&self) -> Result<Option<i64>, StoreError> {
        let table = self.spec.table;
        // A row in flight is not due until its lease lapses: counting it as due would have the
        // worker look again and again while it is being sent.
        let at = "CASE WHEN lease_until_ms > next_attempt_ms THEN lease_until_ms \
                  ELSE next_attempt_ms END";
        let sql = match self.spec.order {
            Order::Due => format!("SELECT MIN({at}) FROM {table}"),
            Order::Fifo(column) => {
                format!("SELECT {at} FROM {table} ORDER BY {column} LIMIT 1")
            }
        };
        scalar(&self.pool, &sql, &[]).await
    }
}

pub(super) fn truncate(s: &mut String, max: usize) {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAIRS: Spec = Spec {
        table: "t",
        key: &["a", "b"],
        order: Order::Due,
        select_claimed: "",
    };
    const FIFO: Spec = Spec {
        table: "t",
        key: &["id"],
        order: Order::Fifo("seq"),
        select_claimed: "",
    };

    #[test]
    fn statements_follow_the_spec() {
        assert_eq!(
            PAIRS.claim_sql(),
            "UPDATE t SET lease_until_ms = $1, lease_token = $2 \
             WHERE next_attempt_ms <= $3 AND lease_until_ms <= $3 AND (a, b) IN \
             (SELECT a, b FROM t WHERE next_attempt_ms <= $3 AND lease_until_ms <= $3 \
             ORDER BY next_attempt_ms LIMIT $4)"
        );
        assert_eq!(PAIRS.key_in(2, 1), "(a, b) IN (VALUES ($1, $2), ($3, $4))");
        assert_eq!(PAIRS.key_eq(4), "a = $4 AND b = $5");
        assert_eq!(FIFO.key_in(2, 1), "id IN (VALUES ($1), ($2))");
        assert!(FIFO
            .claim_sql()
            .contains("WHERE lease_until_ms <= $3 ORDER BY seq LIMIT $4"));
    }

    #[test]
    fn errors_are_cut_at_a_character_boundary() {
        let mut s = "é".repeat(300);
        truncate(&mut s, MAX_ERROR);
        assert_eq!(s.len(), MAX_ERROR);
        let mut s = format!("a{}", "é".repeat(300));
        truncate(&mut s, MAX_ERROR);
        assert_eq!(s.len(), MAX_ERROR - 1);
    }
}
