//! `exposure.send` and `exposure.push`: the endpoints that send notifications refuse a caller
//! without credentials.

use http::Method;

use crate::net::Net;
use crate::origin::Origin;
use crate::verdict::{Check, Problem};

pub(super) async fn send(net: &Net) -> Check {
    refuses(net, "exposure.send", "/notifications/send").await
}

pub(super) async fn push(net: &Net) -> Check {
    refuses(net, "exposure.push", "/push/send").await
}

async fn refuses(net: &Net, id: &'static str, path: &str) -> Check {
    let url = net.target.url(path);
    let answer = match net
        .fetch(
            Method::POST,
            url,
            &[("content-type", "application/json")],
            Some(b"{}".to_vec()),
            net.timeout,
        )
        .await
    {
        Ok(answer) => answer,
        Err(e) => return Check::warn(id, format!("POST {path}: {e}"), None),
    };
    let status = answer.status.as_u16();
    let seen = answer.describe();
    match (status, answer.origin()) {
        (401 | 403, _) => Check::pass(id, format!("POST {path} without credentials: {seen}")),
        (200..=299, Origin::Other(_)) => Check::pass(
            id,
            format!("POST {path} is not forwarded to pushwarden: {seen}"),
        ),
        (200..=299, Origin::Pushwarden) => Check::fail(
            id,
            format!("POST {path} without credentials was accepted: {seen}"),
            Some(Problem::Exposure),
        ),
        (404, Origin::Other(_)) => Check::pass(
            id,
            format!("POST {path} is not forwarded to pushwarden: {seen}"),
        ),
        (404, Origin::Pushwarden) => Check::pass(id, format!("POST {path}: {seen}")),
        _ => Check::warn(
            id,
            format!("POST {path} without credentials: {seen} (expected 401 or 403)"),
            None,
        ),
    }
}
