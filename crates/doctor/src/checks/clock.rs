//! `clock`: pushwarden's time (`/notifications/alive`) against ours. Tokens are checked with
//! 30 s of leeway by default, so a larger difference refuses fresh or still valid tokens.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use http::Method;

use crate::net::Net;
use crate::origin::Origin;
use crate::verdict::{Check, Problem};

const ID: &str = "clock";
/// The default JWT leeway: past it, tokens start being refused.
const WARN_OVER: Duration = Duration::from_secs(30);
const FAIL_OVER: Duration = Duration::from_secs(300);

pub(super) async fn check(net: &Net) -> Check {
    let sent_at = Utc::now();
    let started = Instant::now();
    let answer = match net
        .fetch(
            Method::GET,
            net.target.url("/notifications/alive"),
            &[],
            None,
            net.timeout,
        )
        .await
    {
        Ok(answer) => answer,
        Err(e) => return Check::warn(ID, format!("GET /notifications/alive: {e}"), None),
    };
    let round_trip = started.elapsed();
    if answer.origin() != Origin::Pushwarden || !answer.status.is_success() {
        return Check::warn(
            ID,
            format!(
                "GET /notifications/alive: {}; cannot read pushwarden's time",
                answer.describe()
            ),
            None,
        );
    }
    let Some(server) = serde_json::from_slice::<String>(&answer.body)
        .ok()
        .and_then(|s| DateTime::parse_from_rfc3339(&s).ok())
        .map(|t| t.with_timezone(&Utc))
    else {
        return Check::warn(
            ID,
            format!("/notifications/alive is not a time: {}", answer.body_text()),
            None,
        );
    };
    // The server read its clock somewhere within the round trip: compare with the middle.
    let half = chrono::Duration::from_std(round_trip / 2).unwrap_or_default();
    let local = sent_at + half;
    let skew_ms = (server - local).num_milliseconds();
    let skew = Duration::from_millis(skew_ms.unsigned_abs());
    let slack = round_trip / 2;
    let direction = if skew_ms >= 0 { "ahead of" } else { "behind" };
    let detail = format!(
        "pushwarden's clock is {:.1} s {direction} this one (±{:.1} s)",
        skew.as_secs_f64(),
        slack.as_secs_f64()
    );
    let beyond = skew.saturating_sub(slack);
    if beyond > FAIL_OVER {
        Check::fail(ID, detail, Some(Problem::Clock))
    } else if beyond > WARN_OVER {
        Check::warn(
            ID,
            format!("{detail}: more than the 30 s tokens are allowed"),
            Some(Problem::Clock),
        )
    } else {
        Check::pass(ID, detail)
    }
}
