//! Keys from an OpenID authority: discovery document + JWKS, fetched lazily and
//! cached.
//!
//! Concurrency design:
//! - The current key set lives in a small `parking_lot` mutex holding a
//!   cheaply clonable [`Snapshot`]; the hot path only clones an `Arc` from it.
//! - Fetching is serialized by a `tokio` mutex, so at most one fetch is in
//!   flight. A caller that had to wait for the lock first checks whether a
//!   fetch *finished while it waited* (the `attempts` counter moved) and, if
//!   so, uses that outcome instead of fetching again. This is what keeps a
//!   burst of connections from stampeding the authority, including when the
//!   authority is down.
//! - An unknown `kid` re-fetches the JWKS at most once per `min_refresh`, so
//!   tokens with made-up key ids cannot turn us into a request amplifier.
//! - Failures keep the previous key set and are retried by a later call.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;

use crate::header::KeyClass;
use crate::jwks::{KeySet, Lookup};
use crate::AuthError;

/// Largest discovery / JWKS document we are willing to read.
const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;

/// Keys that may verify a token, and the issuer the authority announces.
pub(crate) struct Resolved {
    pub keys: Vec<DecodingKey>,
    pub issuer: Option<String>,
}

/// The state readers see.
#[derive(Clone, Default)]
struct Snapshot {
    keys: Option<Arc<KeySet>>,
    issuer: Option<String>,
    /// Number of completed fetch attempts (successful or not).
    attempts: u64,
    last_attempt: Option<Instant>,
    /// Why the most recent attempt failed, if it did.
    last_error: Option<String>,
}

/// What the discovery document tells us.
#[derive(Clone)]
struct Discovery {
    issuer: Option<String>,
    jwks_uri: String,
}

/// A lazily-fetched OpenID authority.
pub(crate) struct Authority {
    discovery_url: String,
    client: reqwest::Client,
    min_refresh: Duration,
    snapshot: parking_lot::Mutex<Snapshot>,
    /// Held for the duration of a fetch; caches the discovery document.
    fetch: tokio::sync::Mutex<Option<Discovery>>,
}

impl Authority {
    /// Validate the base URL and build the HTTP client. Does not fetch.
    pub(crate) fn new(
        base: &str,
        http_timeout: Duration,
        min_refresh: Duration,
    ) -> Result<Authority, AuthError> {
        let base = base.trim().trim_end_matches('/');
        let url = reqwest::Url::parse(base)
            .map_err(|e| AuthError::Config(format!("invalid authority URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(AuthError::Config("authority must be an http(s) URL".into()));
        }
        if http_timeout.is_zero() {
            return Err(AuthError::Config("http_timeout must be non-zero".into()));
        }
        let client = reqwest::Client::builder()
            .timeout(http_timeout)
            .build()
            .map_err(|e| AuthError::Config(format!("cannot build HTTP client: {e}")))?;
        Ok(Authority {
            discovery_url: format!("{base}/.well-known/openid-configuration"),
            client,
            min_refresh,
            snapshot: parking_lot::Mutex::new(Snapshot::default()),
            fetch: tokio::sync::Mutex::new(None),
        })
    }

    /// Find the keys for a token, fetching or refreshing the JWKS if needed.
    pub(crate) async fn resolve(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
        class: KeyClass,
    ) -> Result<Resolved, AuthError> {
        let seen = self.snapshot.lock().clone();
        if let Some(keys) = &seen.keys {
            match keys.lookup(kid, alg, class) {
                Lookup::Found(found) => {
                    return Ok(Resolved {
                        keys: found,
                        issuer: seen.issuer,
                    })
                }
                Lookup::Incompatible => return Err(incompatible(alg)),
                Lookup::Absent => {}
            }
        }

        let mut discovery = self.fetch.lock().await;
        let current = self.snapshot.lock().clone();
        if current.attempts != seen.attempts {
            // Someone fetched while we waited for the lock: share their result.
            return outcome(&current, kid, alg, class);
        }
        if current.keys.is_some() {
            let recent = current
                .last_attempt
                .is_some_and(|t| t.elapsed() < self.min_refresh);
            if recent {
                return outcome(&current, kid, alg, class);
            }
        }

        let result = self.fetch_keys(&mut discovery).await;
        let updated = {
            let mut snap = self.snapshot.lock();
            snap.attempts += 1;
            snap.last_attempt = Some(Instant::now());
            match result {
                Ok((keys, issuer)) => {
                    tracing::debug!(keys = keys.len(), "fetched JWKS from authority");
                    snap.keys = Some(Arc::new(keys));
                    snap.issuer = issuer;
                    snap.last_error = None;
                }
                Err(why) => {
                    tracing::warn!(error = %why, "fetching signing keys from authority failed");
                    snap.last_error = Some(why);
                }
            }
            snap.clone()
        };
        outcome(&updated, kid, alg, class)
    }

    /// Discovery (once, cached) then JWKS. A JWKS failure forgets the
    /// discovery document so the next attempt re-discovers a moved `jwks_uri`.
    async fn fetch_keys(
        &self,
        discovery: &mut Option<Discovery>,
    ) -> Result<(KeySet, Option<String>), String> {
        let disc = match discovery.clone() {
            Some(d) => d,
            None => {
                let d = self.fetch_discovery().await?;
                *discovery = Some(d.clone());
                d
            }
        };
        let parsed = self
            .get_json(&disc.jwks_uri)
            .await
            .and_then(|doc| KeySet::parse(&doc));
        match parsed {
            Ok(keys) => Ok((keys, disc.issuer)),
            Err(why) => {
                *discovery = None;
                Err(why)
            }
        }
    }

    async fn fetch_discovery(&self) -> Result<Discovery, String> {
        let doc = self.get_json(&self.discovery_url).await?;
        let jwks_uri = doc
            .get("jwks_uri")
            .and_then(Value::as_str)
            .ok_or("discovery document has no `jwks_uri`")?;
        let parsed = reqwest::Url::parse(jwks_uri).map_err(|e| format!("invalid jwks_uri: {e}"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err("jwks_uri is not an http(s) URL".into());
        }
        let issuer = doc
            .get("issuer")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned);
        Ok(Discovery {
            issuer,
            jwks_uri: jwks_uri.to_owned(),
        })
    }

    /// GET a JSON document, with a size cap.
    async fn get_json(&self, url: &str) -> Result<Value, String> {
        let mut response = self
            .client
            .get(url)
            .header(http::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("GET {url}: HTTP {}", response.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?
        {
            if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                return Err(format!(
                    "GET {url}: document larger than {MAX_DOCUMENT_BYTES} bytes"
                ));
            }
            body.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&body).map_err(|e| format!("GET {url}: invalid JSON: {e}"))
    }
}

/// Answer a lookup from a snapshot without fetching.
fn outcome(
    snap: &Snapshot,
    kid: Option<&str>,
    alg: Algorithm,
    class: KeyClass,
) -> Result<Resolved, AuthError> {
    if let Some(keys) = &snap.keys {
        match keys.lookup(kid, alg, class) {
            Lookup::Found(found) => {
                return Ok(Resolved {
                    keys: found,
                    issuer: snap.issuer.clone(),
                });
            }
            Lookup::Incompatible => return Err(incompatible(alg)),
            Lookup::Absent => {}
        }
    }
    match &snap.last_error {
        // The key may well exist; we just could not get it.
        Some(why) => Err(AuthError::KeysUnavailable(why.clone())),
        None if snap.keys.is_none() => {
            Err(AuthError::KeysUnavailable("keys not fetched yet".into()))
        }
        None => Err(AuthError::UnknownKey),
    }
}

fn incompatible(alg: Algorithm) -> AuthError {
    AuthError::AlgorithmNotAllowed(format!("{alg:?} not allowed for this key"))
}
