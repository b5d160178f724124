//! `long_polling`: negotiate, the first (immediate) poll, the handshake posted, and its
//! response on the next poll. The connection is reused by the idle check.

use std::time::{Duration, Instant};

use http::Method;
use pushwarden_protocol::handshake;
use url::Url;

use super::{negotiate, unexpected};
use crate::net::{seconds, Net, NoAnswer};
use crate::origin::{Answer, Origin};
use crate::verdict::{Check, Problem};

const ID: &str = "long_polling";

pub(super) async fn check(net: &Net) -> Check {
    let started = Instant::now();
    match LongPoll::open(net, ID).await {
        Ok(_) => Check::pass(
            ID,
            format!(
                "negotiated, polled and got the handshake response in {}",
                seconds(started.elapsed())
            ),
        ),
        Err(check) => check,
    }
}

/// A long-polling connection whose handshake is done.
pub(super) struct LongPoll {
    url: Url,
}

impl LongPoll {
    /// Opens a connection; a failure is `id`'s failing check.
    pub(super) async fn open(net: &Net, id: &'static str) -> Result<LongPoll, Check> {
        let url = negotiate::connection_url(net, id).await?;
        let poll = LongPoll { url };
        // The first poll only starts the transport and is answered at once.
        let first = poll
            .poll(net, net.timeout)
            .await
            .map_err(|e| no_answer(id, "first poll", e))?;
        if first.status.as_u16() != 200 || first.origin() != Origin::Pushwarden {
            return Err(unexpected(
                id,
                "first poll",
                &first,
                Problem::RouteAnonymousHub,
            ));
        }
        let posted = poll
            .post(net, handshake::encode_request("json", 1))
            .await
            .map_err(|e| no_answer(id, "posting the handshake", e))?;
        if posted.status.as_u16() != 200 {
            return Err(unexpected(
                id,
                "posting the handshake",
                &posted,
                Problem::RouteAnonymousHub,
            ));
        }
        let answer = poll
            .poll(net, net.timeout)
            .await
            .map_err(|e| no_answer(id, "poll", e))?;
        if answer.status.as_u16() != 200 || answer.origin() != Origin::Pushwarden {
            return Err(unexpected(
                id,
                "poll for the handshake response",
                &answer,
                Problem::RouteAnonymousHub,
            ));
        }
        match handshake::parse_response(&answer.body) {
            Ok(Some((response, _))) if response.error.is_none() => Ok(poll),
            Ok(Some((response, _))) => Err(Check::fail(
                id,
                format!(
                    "pushwarden answered the handshake: {}",
                    response.error.unwrap_or_default()
                ),
                None,
            )),
            _ => Err(Check::fail(
                id,
                format!(
                    "the poll did not carry the handshake response: {}",
                    answer.body_text()
                ),
                None,
            )),
        }
    }

    /// One poll, waited for up to `deadline`.
    pub(super) async fn poll(&self, net: &Net, deadline: Duration) -> Result<Answer, NoAnswer> {
        net.fetch(Method::GET, self.url.clone(), &[], None, deadline)
            .await
    }

    /// Client-to-server bytes (a handshake, a ping).
    pub(super) async fn post(&self, net: &Net, body: Vec<u8>) -> Result<Answer, NoAnswer> {
        net.fetch(
            Method::POST,
            self.url.clone(),
            &[("content-type", "text/plain;charset=UTF-8")],
            Some(body),
            net.timeout,
        )
        .await
    }

    /// Ends the connection (`DELETE`), best effort.
    pub(super) async fn close(&self, net: &Net) {
        let _ = net
            .fetch(Method::DELETE, self.url.clone(), &[], None, net.timeout)
            .await;
    }
}

fn no_answer(id: &'static str, what: &str, e: NoAnswer) -> Check {
    Check::fail(id, format!("{what}: {e}"), Some(Problem::Unreachable))
}
