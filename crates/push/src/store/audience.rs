//! Which registered devices a push reaches, as SQL: Bitwarden's tag expression
//! `target && !deviceIdentifier:{x} && clientType:{ct}`, limited to the platforms that can
//! deliver ([`TargetFilter`]); and the same audience as a push stores it ([`Audience`]), walked
//! in device id order from where the previous batch stopped ([`Walk`]).

use pushwarden_model::{ClientType, DeviceTarget, Recipient, Target};
use sqlx::any::AnyRow;
use sqlx::Row;

use super::{AnyQuery, StoreError};
use crate::registration::Platform;

/// A push's audience as [`Deliveries::enqueue`](super::Deliveries::enqueue) stores it with the
/// push, to be expanded to devices as it is sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Audience {
    pub target: DeviceTarget,
    pub platforms: Vec<Platform>,
}

/// The `push_messages` columns holding an [`Audience`], in this order.
pub(super) const AUDIENCE_COLUMNS: &str =
    "target_kind, target_id, exclude_identifier, client_type, platforms";

impl Audience {
    /// Binds the [`AUDIENCE_COLUMNS`] values.
    pub fn bind<'q>(&self, query: AnyQuery<'q>) -> AnyQuery<'q> {
        let (kind, id) = match &self.target.target.recipient {
            Recipient::User(id) => ("user", id),
            Recipient::Organization(id) => ("organization", id),
            Recipient::Installation(id) => ("installation", id),
        };
        let platforms = self
            .platforms
            .iter()
            .map(|p| p.as_str())
            .collect::<Vec<_>>()
            .join(",");
        query
            .bind(kind)
            .bind(id.clone())
            .bind(self.target.exclude_identifier.clone())
            .bind(self.target.target.client_type.map(|c| c as i64))
            .bind(platforms)
    }

    /// Reads the [`AUDIENCE_COLUMNS`] of a row.
    pub fn from_row(row: &AnyRow) -> Result<Self, StoreError> {
        let kind: Option<String> = row.try_get("target_kind")?;
        let id: Option<String> = row.try_get("target_id")?;
        let (Some(kind), Some(id)) = (kind, id) else {
            return Err(StoreError::Corrupt("a push without its audience".into()));
        };
        let recipient = match kind.as_str() {
            "user" => Recipient::User(id),
            "organization" => Recipient::Organization(id),
            "installation" => Recipient::Installation(id),
            other => return Err(StoreError::Corrupt(format!("audience kind {other:?}"))),
        };
        let client_type = match row.try_get::<Option<i64>, _>("client_type")? {
            None => None,
            Some(n) => Some(
                u8::try_from(n)
                    .ok()
                    .and_then(ClientType::from_u8)
                    .ok_or_else(|| StoreError::Corrupt(format!("client type {n}")))?,
            ),
        };
        let platforms = row
            .try_get::<Option<String>, _>("platforms")?
            .unwrap_or_default()
            .split(',')
            .filter(|p| !p.is_empty())
            .map(|p| {
                Platform::parse(p).ok_or_else(|| StoreError::Corrupt(format!("platform {p:?}")))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            target: DeviceTarget {
                target: Target {
                    recipient,
                    client_type,
                },
                exclude_identifier: row.try_get("exclude_identifier")?,
            },
            platforms,
        })
    }
}

/// The `WHERE` condition selecting a target's registrations (`r`), limited to some platforms.
pub(super) struct TargetFilter {
    pub condition: String,
    /// The recipient's part of `condition` alone, and the rest (` AND …` on `r`, or empty).
    recipient: String,
    rest: String,
    binds: Vec<Bind>,
    /// The first placeholder number after the filter's own.
    next: usize,
}

enum Bind {
    Text(String),
    Int(i64),
}

/// How the recipient is matched: the organization form needs the tag table.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// `r.device_id IN (…)`: for counting and `INSERT … SELECT`.
    Subquery,
    /// The tag table `o` joined in the `FROM`, so that an organization's devices are read in
    /// device id order straight off its `(organization_id, device_id)` index.
    Join,
}

impl TargetFilter {
    /// `first` is the number of the first placeholder the condition may use.
    pub fn new(target: &DeviceTarget, platforms: &[Platform], first: usize) -> Self {
        Self::build(target, platforms, first, Shape::Subquery)
    }

    /// `SELECT COUNT(*)` of a target's registrations, driven by the organization's tag index
    /// for an organization (counting 100,000 members is then one index range, not 100,000
    /// probes of a subquery).
    pub fn count(target: &DeviceTarget, platforms: &[Platform]) -> (String, Self) {
        let filter = Self::build(target, platforms, 1, Shape::Join);
        let from = match target.target.recipient {
            Recipient::Organization(_) => {
                "push_registration_organizations o \
                 JOIN push_registrations r ON r.device_id = o.device_id"
            }
            _ => "push_registrations r",
        };
        let sql = format!("SELECT COUNT(*) FROM {from} WHERE {}", filter.condition);
        (sql, filter)
    }

    fn build(target: &DeviceTarget, platforms: &[Platform], first: usize, shape: Shape) -> Self {
        let mut binds = Vec::new();
        let mut next = |bind: Bind| {
            binds.push(bind);
            format!("${}", first + binds.len() - 1)
        };
        let recipient = match &target.target.recipient {
            Recipient::User(id) => format!("r.user_id = {}", next(Bind::Text(id.clone()))),
            Recipient::Organization(id) if shape == Shape::Join => {
                format!("o.organization_id = {}", next(Bind::Text(id.clone())))
            }
            Recipient::Organization(id) => format!(
                "r.device_id IN (SELECT o.device_id FROM push_registration_organizations o \
                 WHERE o.organization_id = {})",
                next(Bind::Text(id.clone()))
            ),
            Recipient::Installation(id) => {
                format!("r.installation_id = {}", next(Bind::Text(id.clone())))
            }
        };
        // Platform names are our own constants, never request input. No platform: nothing.
        let platform_list = platforms
            .iter()
            .map(|p| format!("'{}'", p.as_str()))
            .collect::<Vec<_>>()
            .join(", ");
        let mut rest = String::new();
        if platform_list.is_empty() {
            rest.push_str(" AND 1 = 0");
        } else {
            rest.push_str(&format!(" AND r.platform IN ({platform_list})"));
        }
        if let Some(identifier) = &target.exclude_identifier {
            rest.push_str(&format!(
                " AND (r.identifier IS NULL OR r.identifier <> {})",
                next(Bind::Text(identifier.clone()))
            ));
        }
        if let Some(client_type) = target.target.client_type {
            rest.push_str(&format!(
                " AND r.client_type = {}",
                next(Bind::Int(client_type as i64))
            ));
        }
        let next = first + binds.len();
        Self {
            condition: format!("{recipient}{rest}"),
            recipient,
            rest,
            binds,
            next,
        }
    }

    pub fn bind<'q>(&self, mut query: AnyQuery<'q>) -> AnyQuery<'q> {
        for b in &self.binds {
            query = match b {
                Bind::Text(s) => query.bind(s.clone()),
                Bind::Int(i) => query.bind(*i),
            };
        }
        query
    }
}

/// The registration columns a delivery needs, as [`Walk`] selects them.
pub(super) const DEVICE_COLUMNS: &str = "r.device_id, r.platform, r.push_token, r.endpoint, \
    r.p256dh, r.auth, r.apns_environment, r.updated_ms";

/// An audience's devices in device id order, after one id and up to another: how a push is
/// expanded a batch at a time, and how a batch whose worker died is read again. Each row also
/// carries `through`, the batch's last device id in the database's own order (its collation,
/// not Rust's byte order), which is where the next batch starts; and `walk`, the walk's tag, so
/// that many walks can go in one statement ([`Walk::union`]).
pub(super) struct Walk {
    sql: String,
    filter: TargetFilter,
    bounded: bool,
}

impl Walk {
    /// Devices with an id `> after` (and `<= through`, when `bounded`), at most `limit`; its
    /// placeholders start at `$first`, its rows are tagged `tag`.
    ///
    /// An organization's members are read first, in order, off the tag index (a range of it,
    /// whatever the planner knows of the tables), and the registrations joined to them after:
    /// a member the rest of the filter excludes comes back with no device (`device_id` NULL),
    /// so that a batch covers a range of members, and fewer rows than asked for means the
    /// walk reached the end.
    pub fn new(audience: &Audience, bounded: bool, first: usize, tag: usize) -> Self {
        let filter = TargetFilter::build(&audience.target, &audience.platforms, first, Shape::Join);
        let n = filter.next;
        let (upper, limit) = if bounded {
            (format!(" AND {{key}} <= ${}", n + 1), n + 2)
        } else {
            (String::new(), n + 1)
        };
        let inner = match audience.target.target.recipient {
            Recipient::Organization(_) => {
                let upper = upper.replace("{key}", "o.device_id");
                format!(
                    "SELECT m.device_id AS member, {DEVICE_COLUMNS} FROM \
                     (SELECT o.device_id FROM push_registration_organizations o \
                     WHERE {} AND o.device_id > ${n}{upper} ORDER BY o.device_id \
                     LIMIT ${limit}) AS m \
                     LEFT JOIN push_registrations r ON r.device_id = m.device_id{}",
                    filter.recipient, filter.rest
                )
            }
            _ => {
                let upper = upper.replace("{key}", "r.device_id");
                format!(
                    "SELECT r.device_id AS member, {DEVICE_COLUMNS} FROM push_registrations r \
                     WHERE {} AND r.device_id > ${n}{upper} ORDER BY r.device_id LIMIT ${limit}",
                    filter.condition
                )
            }
        };
        let sql = format!(
            "SELECT w.*, CAST({tag} AS BIGINT) AS walk, MAX(w.member) OVER () AS through \
             FROM ({inner}) AS w"
        );
        Self {
            sql,
            filter,
            bounded,
        }
    }

    /// The number of the first placeholder after this walk's.
    pub fn next_placeholder(&self) -> usize {
        self.filter.next + if self.bounded { 3 } else { 2 }
    }

    /// Binds this walk's values: the filter's, `after`, `through` (bounded walks) and `limit`.
    pub fn bind<'q>(
        &self,
        query: AnyQuery<'q>,
        after: &str,
        through: Option<&str>,
        limit: u32,
    ) -> AnyQuery<'q> {
        let mut query = self.filter.bind(query).bind(after.to_owned());
        if self.bounded {
            query = query.bind(through.unwrap_or_default().to_owned());
        }
        query.bind(i64::from(limit))
    }

    /// Binds values for a padding copy of this walk, which matches nothing (its recipient is
    /// NULL, and `= NULL` is never true).
    pub fn bind_nothing<'q>(&self, mut query: AnyQuery<'q>) -> AnyQuery<'q> {
        for b in &self.filter.binds {
            query = match b {
                Bind::Text(_) => query.bind(None::<String>),
                Bind::Int(_) => query.bind(None::<i64>),
            };
        }
        query = query.bind(None::<String>);
        if self.bounded {
            query = query.bind(None::<String>);
        }
        query.bind(0_i64)
    }

    /// One statement running every walk of `walks`.
    pub fn union(walks: &[Walk]) -> String {
        walks
            .iter()
            .map(|w| w.sql.as_str())
            .collect::<Vec<_>>()
            .join(" UNION ALL ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(recipient: Recipient, exclude: Option<&str>, ct: Option<ClientType>) -> Audience {
        Audience {
            target: DeviceTarget {
                target: Target {
                    recipient,
                    client_type: ct,
                },
                exclude_identifier: exclude.map(str::to_owned),
            },
            platforms: vec![Platform::Fcm, Platform::Apns],
        }
    }

    #[test]
    fn an_organization_is_walked_off_its_tag_index() {
        let walk = Walk::new(
            &target(
                Recipient::Organization("o".into()),
                Some("me"),
                Some(ClientType::Mobile),
            ),
            false,
            1,
            0,
        );
        assert_eq!(
            walk.sql,
            format!(
                "SELECT w.*, CAST(0 AS BIGINT) AS walk, MAX(w.member) OVER () AS through \
                 FROM (SELECT m.device_id AS member, {DEVICE_COLUMNS} FROM \
                 (SELECT o.device_id FROM push_registration_organizations o \
                 WHERE o.organization_id = $1 AND o.device_id > $4 ORDER BY o.device_id \
                 LIMIT $5) AS m \
                 LEFT JOIN push_registrations r ON r.device_id = m.device_id \
                 AND r.platform IN ('fcm', 'apns') \
                 AND (r.identifier IS NULL OR r.identifier <> $2) AND r.client_type = $3) AS w"
            )
        );
        assert_eq!(walk.next_placeholder(), 6);
        // A second walk in the same statement numbers its placeholders on.
        let bounded = Walk::new(&target(Recipient::User("u".into()), None, None), true, 6, 1);
        assert!(bounded.sql.ends_with(
            "r.user_id = $6 AND r.platform IN ('fcm', 'apns') AND r.device_id > $7 \
             AND r.device_id <= $8 ORDER BY r.device_id LIMIT $9) AS w"
        ));
        assert_eq!(bounded.next_placeholder(), 10);
        assert!(Walk::union(&[walk, bounded]).contains(") AS w UNION ALL SELECT w.*"));
    }

    #[test]
    fn no_platform_matches_nothing() {
        let mut audience = target(Recipient::Installation("i".into()), None, None);
        audience.platforms.clear();
        let filter = TargetFilter::new(&audience.target, &audience.platforms, 1);
        assert_eq!(filter.condition, "r.installation_id = $1 AND 1 = 0");
    }
}
