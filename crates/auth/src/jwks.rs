//! Parsing a JWK Set (RFC 7517) into verification keys.
//!
//! Entries are parsed one by one so that a single key we do not support (an
//! `OKP` key, a symmetric key, an encryption key) does not make the whole set
//! unusable. Symmetric (`oct`) keys are never taken from a JWKS: a published
//! HMAC key would let anyone mint tokens.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;

use crate::header::KeyClass;

/// The curve of an EC key, which fixes the only algorithm it may verify.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Curve {
    P256,
    P384,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Kind {
    Rsa,
    Ec(Curve),
}

/// One usable signature-verification key.
#[derive(Clone)]
struct JwkKey {
    kid: Option<String>,
    /// The JWK's own `alg`, when it pins one.
    alg: Option<String>,
    kind: Kind,
    key: DecodingKey,
}

impl JwkKey {
    /// Whether this key may verify a token signed with `alg`.
    fn accepts(&self, alg: Algorithm, class: KeyClass) -> bool {
        let family_ok = match (&self.kind, class) {
            (Kind::Rsa, KeyClass::Rsa) => true,
            (Kind::Ec(Curve::P256), KeyClass::Ec) => alg == Algorithm::ES256,
            (Kind::Ec(Curve::P384), KeyClass::Ec) => alg == Algorithm::ES384,
            _ => false,
        };
        let alg_ok = self
            .alg
            .as_deref()
            .is_none_or(|pinned| pinned == alg_name(alg));
        family_ok && alg_ok
    }
}

/// The result of looking a token's key up in a set.
pub(crate) enum Lookup {
    /// Keys that may have signed the token, most likely first.
    Found(Vec<DecodingKey>),
    /// A key with the token's `kid` exists but cannot verify its `alg`.
    Incompatible,
    /// No key with that `kid` (or, for a kid-less token, no kid-less key).
    Absent,
}

/// The verification keys of one JWKS document.
#[derive(Clone, Default)]
pub(crate) struct KeySet {
    keys: Vec<JwkKey>,
}

impl KeySet {
    /// Parse a JWKS document, skipping entries we cannot or must not use.
    pub(crate) fn parse(doc: &Value) -> Result<KeySet, String> {
        let entries = doc
            .get("keys")
            .and_then(Value::as_array)
            .ok_or_else(|| "JWKS has no `keys` array".to_string())?;
        let mut keys = Vec::new();
        for entry in entries {
            match parse_key(entry) {
                Ok(Some(key)) => keys.push(key),
                Ok(None) => {}
                Err(why) => {
                    let kid = entry.get("kid").and_then(Value::as_str).unwrap_or("-");
                    tracing::warn!(kid, why, "skipping unusable JWKS key");
                }
            }
        }
        Ok(KeySet { keys })
    }

    /// Number of usable keys.
    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    /// Find the keys that may verify a token with this `kid` and `alg`.
    ///
    /// A token with a `kid` only matches keys with the same `kid`; a token
    /// without one only matches keys that have none either.
    pub(crate) fn lookup(&self, kid: Option<&str>, alg: Algorithm, class: KeyClass) -> Lookup {
        let mut same_kid = self
            .keys
            .iter()
            .filter(|k| k.kid.as_deref() == kid)
            .peekable();
        if same_kid.peek().is_none() {
            return Lookup::Absent;
        }
        let found: Vec<DecodingKey> = same_kid
            .filter(|k| k.accepts(alg, class))
            .map(|k| k.key.clone())
            .collect();
        if found.is_empty() {
            Lookup::Incompatible
        } else {
            Lookup::Found(found)
        }
    }
}

/// `Ok(None)` for keys that are well-formed but not for us (other `use`,
/// unsupported type); `Err` for keys that are broken.
fn parse_key(entry: &Value) -> Result<Option<JwkKey>, &'static str> {
    let str_field = |name: &str| entry.get(name).and_then(Value::as_str);
    if str_field("use").is_some_and(|u| u != "sig") {
        return Ok(None);
    }
    let kind_and_key = match str_field("kty") {
        Some("RSA") => {
            let n = str_field("n").ok_or("RSA key without `n`")?;
            let e = str_field("e").ok_or("RSA key without `e`")?;
            let n = b64(n).ok_or("RSA `n` is not base64url")?;
            let e = b64(e).ok_or("RSA `e` is not base64url")?;
            if n.is_empty() || e.is_empty() {
                return Err("empty RSA component");
            }
            (Kind::Rsa, DecodingKey::from_rsa_raw_components(&n, &e))
        }
        Some("EC") => {
            let (curve, len) = match str_field("crv") {
                Some("P-256") => (Curve::P256, 32),
                Some("P-384") => (Curve::P384, 48),
                _ => return Ok(None),
            };
            let x = str_field("x")
                .and_then(b64)
                .ok_or("EC key without valid `x`")?;
            let y = str_field("y")
                .and_then(b64)
                .ok_or("EC key without valid `y`")?;
            if x.len() != len || y.len() != len {
                return Err("EC coordinates have the wrong length");
            }
            // SEC1 uncompressed point, the form jsonwebtoken expects.
            let mut point = Vec::with_capacity(1 + 2 * len);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            (Kind::Ec(curve), DecodingKey::from_ec_der(&point))
        }
        _ => return Ok(None),
    };
    let (kind, key) = kind_and_key;
    Ok(Some(JwkKey {
        kid: str_field("kid").map(str::to_owned),
        alg: str_field("alg").map(str::to_owned),
        kind,
        key,
    }))
}

fn b64(s: &str) -> Option<Vec<u8>> {
    // Some issuers pad base64url despite RFC 7515; tolerate it.
    URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).ok()
}

/// The JOSE name of an algorithm, for comparison with a JWK's `alg`.
fn alg_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::HS256 => "HS256",
        Algorithm::HS384 => "HS384",
        Algorithm::HS512 => "HS512",
        Algorithm::ES256 => "ES256",
        Algorithm::ES384 => "ES384",
        Algorithm::RS256 => "RS256",
        Algorithm::RS384 => "RS384",
        Algorithm::RS512 => "RS512",
        Algorithm::PS256 => "PS256",
        Algorithm::PS384 => "PS384",
        Algorithm::PS512 => "PS512",
        Algorithm::EdDSA => "EdDSA",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn skips_unusable_keys() {
        let doc = json!({"keys": [
            {"kty": "RSA", "kid": "enc", "use": "enc", "n": "AQAB", "e": "AQAB"},
            {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
            {"kty": "OKP", "kid": "ed", "crv": "Ed25519", "x": "AAAA"},
            {"kty": "RSA", "kid": "broken"},
            {"kty": "EC", "kid": "short", "crv": "P-256", "x": "AAAA", "y": "AAAA"},
            {"kty": "RSA", "kid": "ok", "n": "AQAB", "e": "AQAB", "alg": "RS256"}
        ]});
        let set = KeySet::parse(&doc).expect("parses");
        assert_eq!(set.len(), 1);
        assert!(matches!(
            set.lookup(Some("ok"), Algorithm::RS256, KeyClass::Rsa),
            Lookup::Found(_)
        ));
        // The JWK pins RS256, so PS256 with the same key is refused.
        assert!(matches!(
            set.lookup(Some("ok"), Algorithm::PS256, KeyClass::Rsa),
            Lookup::Incompatible
        ));
        assert!(matches!(
            set.lookup(Some("hmac"), Algorithm::HS256, KeyClass::Hmac),
            Lookup::Absent
        ));
        assert!(matches!(
            set.lookup(None, Algorithm::RS256, KeyClass::Rsa),
            Lookup::Absent
        ));
    }

    #[test]
    fn rejects_documents_without_keys() {
        assert!(KeySet::parse(&json!({})).is_err());
        assert!(KeySet::parse(&json!({"keys": {}})).is_err());
    }
}
