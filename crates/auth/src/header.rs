//! Reading a JWT's protected header *before* verification, to choose a key.
//!
//! We parse the header ourselves rather than with `jsonwebtoken::decode_header`
//! so that `alg: none` and other unsupported algorithms are reported as
//! `AlgorithmNotAllowed` instead of a generic parse error. Nothing read here is
//! trusted beyond key selection: the signature is always checked afterwards
//! with an algorithm fixed by *our* key material. Header parameters that point
//! at keys (`jku`, `x5u`, `jwk`, `x5c`) are deliberately ignored.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::Algorithm;
use serde_json::Value;

use crate::AuthError;

/// Upper bound on the token length, to bound parsing work. IdentityServer
/// tokens with many organization claims stay well below this.
pub(crate) const MAX_TOKEN_LEN: usize = 64 * 1024;

/// Which kind of key material an algorithm needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KeyClass {
    /// HS256 with the configured shared secret.
    Hmac,
    /// RS*/PS* with the configured RSA key or an RSA JWKS key.
    Rsa,
    /// ES256/ES384 with an EC JWKS key.
    Ec,
}

/// The parts of the header used for key selection.
#[derive(Debug)]
pub(crate) struct TokenHeader {
    pub alg: Algorithm,
    pub class: KeyClass,
    pub kid: Option<String>,
}

/// Check the compact-serialization shape and read `alg` / `kid`.
pub(crate) fn peek(token: &str) -> Result<TokenHeader, AuthError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(AuthError::Malformed("token too long".into()));
    }
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(_signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthError::Malformed(
            "expected three dot-separated parts".into(),
        ));
    };
    if header.is_empty() || payload.is_empty() {
        return Err(AuthError::Malformed("empty header or payload".into()));
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| AuthError::Malformed("header is not base64url".into()))?;
    let json: Value = serde_json::from_slice(&bytes)
        .map_err(|_| AuthError::Malformed("header is not JSON".into()))?;
    let Value::Object(map) = json else {
        return Err(AuthError::Malformed("header is not a JSON object".into()));
    };
    let alg = match map.get("alg") {
        Some(Value::String(alg)) => alg.as_str(),
        _ => return Err(AuthError::Malformed("header has no `alg`".into())),
    };
    let (alg, class) = classify(alg)?;
    // RFC 7515 §4.1.11: a recipient must reject extensions it does not
    // understand, and we understand none.
    if map.contains_key("crit") {
        return Err(AuthError::Malformed("unsupported `crit` header".into()));
    }
    let kid = match map.get("kid") {
        None | Some(Value::Null) => None,
        Some(Value::String(kid)) => Some(kid.clone()),
        Some(_) => return Err(AuthError::Malformed("`kid` is not a string".into())),
    };
    Ok(TokenHeader { alg, class, kid })
}

/// The allow-list of algorithms. Everything else, `none` included, is refused.
fn classify(alg: &str) -> Result<(Algorithm, KeyClass), AuthError> {
    let pair = match alg {
        "HS256" => (Algorithm::HS256, KeyClass::Hmac),
        "RS256" => (Algorithm::RS256, KeyClass::Rsa),
        "RS384" => (Algorithm::RS384, KeyClass::Rsa),
        "RS512" => (Algorithm::RS512, KeyClass::Rsa),
        "PS256" => (Algorithm::PS256, KeyClass::Rsa),
        "PS384" => (Algorithm::PS384, KeyClass::Rsa),
        "PS512" => (Algorithm::PS512, KeyClass::Rsa),
        "ES256" => (Algorithm::ES256, KeyClass::Ec),
        "ES384" => (Algorithm::ES384, KeyClass::Ec),
        other => {
            // Bound the echoed value: it is attacker-controlled.
            let shown: String = other.chars().take(16).collect();
            return Err(AuthError::AlgorithmNotAllowed(shown));
        }
    };
    Ok(pair)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        URL_SAFE_NO_PAD.encode(s)
    }

    #[test]
    fn reads_alg_and_kid() {
        let token = format!("{}.{}.sig", b64(r#"{"alg":"RS256","kid":"k1"}"#), b64("{}"));
        let h = peek(&token).expect("valid header");
        assert_eq!(h.alg, Algorithm::RS256);
        assert_eq!(h.class, KeyClass::Rsa);
        assert_eq!(h.kid.as_deref(), Some("k1"));
    }

    #[test]
    fn refuses_none_and_unknown() {
        for alg in ["none", "None", "HS384", "EdDSA", "XX"] {
            let token = format!("{}.{}.", b64(&format!(r#"{{"alg":"{alg}"}}"#)), b64("{}"));
            assert!(
                matches!(peek(&token), Err(AuthError::AlgorithmNotAllowed(_))),
                "{alg}"
            );
        }
    }

    #[test]
    fn refuses_bad_shapes() {
        for token in ["", "a", "a.b", "a.b.c.d", ".b.c", "a..c", "!!!.e30.x"] {
            assert!(
                matches!(peek(token), Err(AuthError::Malformed(_))),
                "{token}"
            );
        }
        let crit = format!(
            "{}.{}.x",
            b64(r#"{"alg":"HS256","crit":["b64"]}"#),
            b64("{}")
        );
        assert!(matches!(peek(&crit), Err(AuthError::Malformed(_))));
    }
}
