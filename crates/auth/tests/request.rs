//! Token retrieval (Bitwarden's TokenRetrieval) and query parsing.

use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderValue};
use pushwarden_auth::{query_param, token_from_request};

fn headers(auth: &'static str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(AUTHORIZATION, HeaderValue::from_static(auth));
    h
}

#[test]
fn bearer_header_wins_and_is_case_insensitive() {
    let q = Some("access_token=from-query");
    assert_eq!(
        token_from_request(&headers("Bearer abc"), q).as_deref(),
        Some("abc")
    );
    assert_eq!(
        token_from_request(&headers("bearer abc"), q).as_deref(),
        Some("abc")
    );
    assert_eq!(
        token_from_request(&headers("BEARER  abc "), q).as_deref(),
        Some("abc")
    );
}

#[test]
fn non_bearer_header_yields_none_even_with_query() {
    let q = Some("access_token=from-query");
    assert_eq!(token_from_request(&headers("Basic dXNlcjpwYXNz"), q), None);
    assert_eq!(token_from_request(&headers("Bearer"), q), None);
    assert_eq!(token_from_request(&headers("Bearer "), q), None);
    assert_eq!(token_from_request(&headers("Bearerabc"), q), None);
    assert_eq!(token_from_request(&headers(""), q), None);
}

#[test]
fn query_used_without_header() {
    let empty = HeaderMap::new();
    assert_eq!(
        token_from_request(&empty, Some("id=1&access_token=a.b.c")).as_deref(),
        Some("a.b.c")
    );
    assert_eq!(
        token_from_request(&empty, Some("?Access_Token=x")).as_deref(),
        Some("x")
    );
    assert_eq!(token_from_request(&empty, Some("access_token=")), None);
    assert_eq!(token_from_request(&empty, Some("other=1")), None);
    assert_eq!(token_from_request(&empty, None), None);
}

#[test]
fn query_param_is_case_insensitive_and_decoded() {
    let q = Some("?id=abc&Token=a%2Fb%3Dc%2Bd&x=1+2&flag&e=%E2%9C%93");
    assert_eq!(query_param(q, "token").as_deref(), Some("a/b=c+d"));
    assert_eq!(query_param(q, "TOKEN").as_deref(), Some("a/b=c+d"));
    assert_eq!(query_param(q, "x").as_deref(), Some("1 2"));
    assert_eq!(query_param(q, "flag").as_deref(), Some(""));
    assert_eq!(query_param(q, "e").as_deref(), Some("✓"));
    assert_eq!(query_param(q, "missing"), None);
    assert_eq!(query_param(None, "token"), None);
    // Encoded keys, first occurrence wins, malformed escapes pass through.
    assert_eq!(
        query_param(Some("%54oken=1&token=2"), "token").as_deref(),
        Some("1")
    );
    assert_eq!(
        query_param(Some("token=%zz%"), "token").as_deref(),
        Some("%zz%")
    );
    // Non-UTF-8 after decoding is replaced, never a panic.
    assert_eq!(
        query_param(Some("token=%FF"), "token").as_deref(),
        Some("\u{FFFD}")
    );
    assert_eq!(
        query_param(Some("&&token=v&&"), "token").as_deref(),
        Some("v")
    );
}
