//! Extracting the bearer token from an HTTP request.
//!
//! Mirrors Bitwarden's `TokenRetrieval` (`src/Core/Auth/IdentityServer/
//! TokenRetrieval.cs`): the `Authorization` header wins when present, and the
//! `access_token` query parameter is only consulted when there is no header
//! at all. Browsers cannot set headers on a WebSocket upgrade, so the SignalR
//! JS client always uses the query parameter there.

use http::header::AUTHORIZATION;
use http::HeaderMap;

const BEARER_PREFIX: &str = "Bearer ";

/// Bitwarden's token retrieval rules.
///
/// - `Authorization` present: it must start with `Bearer ` (ASCII
///   case-insensitive) and the trimmed rest is the token. A non-Bearer
///   header yields `None` and the query is *not* consulted.
/// - Otherwise the `access_token` query parameter (name matched
///   case-insensitively, value percent-decoded; invalid UTF-8 replaced).
///
/// Empty tokens are reported as `None`.
pub fn token_from_request(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    if let Some(value) = headers.get(AUTHORIZATION) {
        let value = value.to_str().ok()?;
        let prefix = value.get(..BEARER_PREFIX.len())?;
        if !prefix.eq_ignore_ascii_case(BEARER_PREFIX) {
            return None;
        }
        let token = value.get(BEARER_PREFIX.len()..)?.trim();
        return non_empty(token.to_owned());
    }
    query_param(query, "access_token").and_then(|t| non_empty(t.trim().to_owned()))
}

/// Look up a query parameter by name, case-insensitively (ASP.NET query keys
/// are case-insensitive), and return its percent-decoded value.
///
/// Decoding follows `application/x-www-form-urlencoded`, as ASP.NET's
/// `QueryHelpers` and Rocket do: `+` means a space. The JS client encodes with
/// `encodeURIComponent` (a literal `+` arrives as `%2B`), and neither JWTs nor
/// auth-request ids contain spaces, so this choice never alters a real value.
///
/// A leading `?` is ignored. When the name occurs more than once the first
/// occurrence wins; a parameter without `=` has the empty value. Values that
/// are not UTF-8 after decoding are treated as absent.
pub fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    let query = query?;
    let query = query.strip_prefix('?').unwrap_or(query);
    form_urlencoded::parse(query.as_bytes())
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.into_owned())
}

fn non_empty(s: String) -> Option<String> {
    if s.is_empty() {
        None
    } else {
        Some(s)
    }
}
