//! The checks, one module per concern, run side by side so that a run takes about `--idle`.
//!
//! - `scheme` and `tls`: https, the certificate (chain, name, expiry), the redirect from http;
//! - `websocket`: both hubs upgrade and complete the MessagePack handshake;
//! - `negotiate`, `sse`, `long_polling`: the fallback transports the official clients may use;
//! - `idle`: a WebSocket and a long poll held past a proxy's usual read timeout;
//! - `exposure`: `/notifications/send` and `/push/*` refuse callers without credentials;
//! - `clock`: the server's time agrees with ours.

mod clock;
mod exposure;
mod idle;
mod long_polling;
mod negotiate;
mod scheme;
mod sse;
mod tls;
mod websocket;

use std::time::Duration;

use crate::net::Net;
use crate::origin::{Answer, Origin};
use crate::verdict::{Check, Problem};

/// The `Token` the checks open the anonymous hub with: any value joins a group of that name,
/// and no auth request is ever called this.
pub(crate) const ANONYMOUS_TOKEN: &str = "pushwarden-doctor";

/// What the checks need besides the network.
pub struct Settings {
    /// A user access token for `/notifications/hub`.
    pub token: Option<String>,
    /// How long the idle checks hold their connections; zero skips them.
    pub idle: Duration,
}

/// Runs every check; the result is in report order.
pub async fn run(net: &Net, settings: &Settings) -> Vec<Check> {
    let https = net.target.is_https();
    let (tls, anonymous, hub, negotiate, sse, long_polling, idle, send, push, clock) = tokio::join!(
        async {
            if https {
                tls::run(net).await
            } else {
                Vec::new()
            }
        },
        websocket::anonymous_hub(net),
        websocket::hub(net, settings.token.as_deref()),
        negotiate::check(net),
        sse::check(net),
        long_polling::check(net),
        idle::run(net, settings.idle),
        exposure::send(net),
        exposure::push(net),
        clock::check(net),
    );
    let mut checks = vec![scheme::check(net)];
    checks.extend(tls);
    checks.extend([anonymous, hub, negotiate, sse, long_polling]);
    checks.extend(idle);
    checks.extend([send, push, clock]);
    checks
}

/// A check that got an answer it did not expect: names who answered and, for an answer that
/// is not pushwarden's, what that says about the proxy's routing.
pub(crate) fn unexpected(id: &'static str, what: &str, answer: &Answer, route: Problem) -> Check {
    let seen = answer.describe();
    let status = answer.status.as_u16();
    match answer.origin() {
        Origin::Pushwarden => Check::fail(id, format!("{what}: {seen}"), None),
        Origin::Other(_) if matches!(status, 502..=504) => Check::fail(
            id,
            format!("{what}: {seen}: the proxy cannot reach pushwarden (is it running, and is the proxy's upstream address right?)"),
            Some(Problem::Unreachable),
        ),
        Origin::Other(_) if status == 404 || status == 405 => Check::fail(
            id,
            format!("{what}: {seen}: this path is not forwarded to pushwarden"),
            Some(route),
        ),
        Origin::Other(_) => Check::fail(
            id,
            format!("{what}: {seen}: the request did not reach pushwarden (its answers carry an x-pushwarden header)"),
            Some(route),
        ),
    }
}
