//! What every outbound HTTP client of the push gateway obeys, whoever is on the other end (APNs,
//! FCM and its token endpoint, Web Push and UnifiedPush endpoints, an upstream relay): no proxy
//! from the process environment, only the one configured, and response bodies read up to a small
//! cap and then dropped, never whole.

use url::Url;

/// The most of a response body any provider answer is read to. Every answer we parse (APNs
/// and FCM errors, OAuth tokens, the relay's) is far smaller; the rest is dropped unread.
pub const MAX_RESPONSE_BODY: usize = 64 * 1024;

/// A client builder that ignores `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY` and the like, and
/// goes through `proxy` when one is configured.
pub fn client_builder(proxy: Option<&Url>) -> Result<reqwest::ClientBuilder, reqwest::Error> {
    let builder = reqwest::Client::builder().no_proxy();
    Ok(match proxy {
        Some(url) => builder.proxy(reqwest::Proxy::all(url.as_str())?),
        None => builder,
    })
}

/// Reads `response`'s body chunk by chunk up to `cap` bytes and drops the rest with the
/// response (the connection is closed rather than drained).
pub async fn read_capped(
    mut response: reqwest::Response,
    cap: usize,
) -> Result<Capped, reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = cap - body.len();
        if chunk.len() >= room {
            body.extend_from_slice(&chunk[..room]);
            return Ok(Capped {
                body,
                truncated: true,
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Capped {
        body,
        truncated: false,
    })
}

/// A response body read up to a cap.
#[derive(Debug)]
pub struct Capped {
    pub body: Vec<u8>,
    /// The cap was reached: the rest, if any, was not read.
    pub truncated: bool,
}

impl Capped {
    /// The body as text, invalid UTF-8 replaced.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// [`read_capped`] at [`MAX_RESPONSE_BODY`], as text.
pub async fn text(response: reqwest::Response) -> Result<String, reqwest::Error> {
    read_capped(response, MAX_RESPONSE_BODY)
        .await
        .map(|c| c.text())
}

/// [`read_capped`] at [`MAX_RESPONSE_BODY`], as bytes.
pub async fn bytes(response: reqwest::Response) -> Result<Vec<u8>, reqwest::Error> {
    read_capped(response, MAX_RESPONSE_BODY)
        .await
        .map(|c| c.body)
}
