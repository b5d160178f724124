//! `negotiate`: `POST /notifications/anonymous-hub/negotiate?negotiateVersion=1` answers a
//! connection token and the transports on offer. Also opens connections for the SSE and
//! long-polling checks.

use http::Method;
use pushwarden_protocol::negotiate::NegotiateResponse;
use url::Url;

use super::{unexpected, ANONYMOUS_TOKEN};
use crate::net::Net;
use crate::origin::Origin;
use crate::verdict::{Check, Problem};

const ID: &str = "negotiate";

pub(super) async fn check(net: &Net) -> Check {
    match negotiate(net, ID).await {
        Err(check) => check,
        Ok(response) => {
            let offered: Vec<&str> = response
                .available_transports
                .iter()
                .map(|t| t.transport)
                .collect();
            let missing: Vec<&str> = ["WebSockets", "ServerSentEvents", "LongPolling"]
                .into_iter()
                .filter(|t| !offered.contains(t))
                .collect();
            if missing.is_empty() {
                Check::pass(ID, format!("offers {}", offered.join(", ")))
            } else {
                Check::warn(
                    ID,
                    format!(
                        "offers {}; not {} (turned off in pushwarden's [transport] settings)",
                        offered.join(", "),
                        missing.join(", ")
                    ),
                    None,
                )
            }
        }
    }
}

/// Negotiates on the anonymous hub; a failure is `id`'s failing check.
pub(super) async fn negotiate(net: &Net, id: &'static str) -> Result<NegotiateResponse, Check> {
    let mut url = net.target.hub("anonymous-hub/negotiate", "");
    url.query_pairs_mut()
        .append_pair("Token", ANONYMOUS_TOKEN)
        .append_pair("negotiateVersion", "1");
    let answer = net
        .fetch(
            Method::POST,
            url,
            &[("content-type", "text/plain;charset=UTF-8")],
            Some(Vec::new()),
            net.timeout,
        )
        .await
        .map_err(|e| Check::fail(id, format!("negotiate: {e}"), Some(Problem::Unreachable)))?;
    if answer.status.as_u16() != 200 || answer.origin() != Origin::Pushwarden {
        return Err(unexpected(
            id,
            "negotiate",
            &answer,
            Problem::RouteAnonymousHub,
        ));
    }
    NegotiateResponse::parse(&answer.body)
        .map_err(|e| Check::fail(id, format!("negotiate answered 200 but: {e}"), None))
}

/// Negotiates and returns the URL the transport requests go to (`?Token=…&id=…`).
pub(super) async fn connection_url(net: &Net, id: &'static str) -> Result<Url, Check> {
    let response = negotiate(net, id).await?;
    let token = response.connection_token.unwrap_or(response.connection_id);
    let mut url = net.target.hub("anonymous-hub", "");
    url.query_pairs_mut()
        .append_pair("Token", ANONYMOUS_TOKEN)
        .append_pair("id", &token);
    Ok(url)
}
