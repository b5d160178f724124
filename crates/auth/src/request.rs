//! Extracting the bearer token from an HTTP request.
//!
//! Mirrors Bitwarden's `TokenRetrieval` (`src/Core/Auth/IdentityServer/
//! TokenRetrieval.cs`): the `Authorization` header wins when present, and the
//! `access_token` query parameter is only consulted when there is no header
//! at all. Browsers cannot set headers on a WebSocket upgrade, so the SignalR
//! JS client always uses the query parameter there.

use http::header::AUTHORIZATION;
use http::HeaderMap;
pub use pushwarden_protocol::negotiate::query_param;

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

fn non_empty(s: String) -> Option<String> {
    if s.is_empty() {
        None
    } else {
        Some(s)
    }
}
