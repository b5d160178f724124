//! Deriving the negotiate and WebSocket URLs from the hub URL, as the JS client does:
//! `/negotiate` goes before the query string, the WebSocket scheme follows the HTTP one,
//! and the connection token and access token become query parameters.

use url::Url;

use crate::ClientError;

/// Parses the hub URL; `http(s)` and `ws(s)` are accepted.
pub(crate) fn parse_hub_url(hub: &str) -> Result<Url, ClientError> {
    let url = Url::parse(hub).map_err(|e| ClientError::InvalidUrl(format!("{hub}: {e}")))?;
    match url.scheme() {
        "http" | "https" | "ws" | "wss" => {}
        other => {
            return Err(ClientError::InvalidUrl(format!(
                "unsupported scheme '{other}'"
            )))
        }
    }
    if url.host_str().is_none() {
        return Err(ClientError::InvalidUrl(format!("{hub}: no host")));
    }
    Ok(url)
}

/// `POST` target of negotiate: `{path}/negotiate?{query}&negotiateVersion=1[&useStatefulReconnect=true]`.
pub(crate) fn negotiate_url(hub: &Url, stateful_reconnect: bool) -> Url {
    let mut url = hub.clone();
    let scheme = match hub.scheme() {
        "ws" => "http",
        "wss" => "https",
        other => other,
    };
    // Only switches between special schemes, which `set_scheme` always allows.
    let _ = url.set_scheme(scheme);
    let path = format!("{}/negotiate", hub.path().trim_end_matches('/'));
    url.set_path(&path);
    url.set_fragment(None);
    {
        let mut query = url.query_pairs_mut();
        query.append_pair("negotiateVersion", "1");
        if stateful_reconnect {
            query.append_pair("useStatefulReconnect", "true");
        }
    }
    url
}

/// The WebSocket URL: `ws(s)` scheme, plus `id=<token>` after negotiate and
/// `access_token=<token>` when authenticating.
pub(crate) fn websocket_url(
    hub: &Url,
    connection_token: Option<&str>,
    access_token: Option<&str>,
) -> Url {
    let mut url = hub.clone();
    let scheme = match hub.scheme() {
        "http" => "ws",
        "https" => "wss",
        other => other,
    };
    let _ = url.set_scheme(scheme);
    url.set_fragment(None);
    if connection_token.is_some() || access_token.is_some() {
        let mut query = url.query_pairs_mut();
        if let Some(token) = connection_token {
            query.append_pair("id", token);
        }
        if let Some(token) = access_token {
            query.append_pair("access_token", token);
        }
    }
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiate_url_inserts_path_before_query() {
        let hub = parse_hub_url("http://h:1/notifications/hub?x=1").unwrap();
        assert_eq!(
            negotiate_url(&hub, false).as_str(),
            "http://h:1/notifications/hub/negotiate?x=1&negotiateVersion=1"
        );
        assert_eq!(
            negotiate_url(&hub, true).as_str(),
            "http://h:1/notifications/hub/negotiate?x=1&negotiateVersion=1&useStatefulReconnect=true"
        );
        let ws = parse_hub_url("ws://h/hub/").unwrap();
        assert_eq!(
            negotiate_url(&ws, false).as_str(),
            "http://h/hub/negotiate?negotiateVersion=1"
        );
    }

    #[test]
    fn websocket_url_carries_tokens_encoded() {
        let hub = parse_hub_url("http://h:1/hub").unwrap();
        assert_eq!(websocket_url(&hub, None, None).as_str(), "ws://h:1/hub");
        assert_eq!(
            websocket_url(&hub, Some("a/b"), Some("x.y&z")).as_str(),
            "ws://h:1/hub?id=a%2Fb&access_token=x.y%26z"
        );
        let https = parse_hub_url("https://h/hub?v=1").unwrap();
        assert_eq!(
            websocket_url(&https, None, Some("t")).as_str(),
            "wss://h/hub?v=1&access_token=t"
        );
    }

    #[test]
    fn bad_urls() {
        assert!(parse_hub_url("ftp://h/hub").is_err());
        assert!(parse_hub_url("not a url").is_err());
    }
}
