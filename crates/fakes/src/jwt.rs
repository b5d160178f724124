//! Signature checking shared by the fakes. Claims are checked by each fake itself, because each
//! provider words its refusals differently and the tests want to see which rule fired.

use jsonwebtoken::{Algorithm, DecodingKey, Header, Validation};
use serde_json::{Map, Value};

/// Why a token was refused before its claims were looked at.
pub(crate) enum JwtError {
    /// Not three base64url JSON parts, or the header is not understood.
    Malformed(String),
    /// Signed with another algorithm than the provider allows.
    Algorithm(Algorithm),
    /// The signature does not verify with the expected key.
    Signature(String),
}

impl std::fmt::Display for JwtError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JwtError::Malformed(e) => write!(f, "not a well-formed JWT ({e})"),
            JwtError::Algorithm(alg) => write!(f, "JWT is signed with {alg:?}"),
            JwtError::Signature(e) => write!(f, "JWT signature does not verify ({e})"),
        }
    }
}

pub(crate) fn header(token: &str) -> Result<Header, JwtError> {
    jsonwebtoken::decode_header(token).map_err(|e| JwtError::Malformed(e.to_string()))
}

/// Verifies the signature of `token` with `key` and returns its header and claims, checking no
/// claim at all.
pub(crate) fn verify(
    token: &str,
    key: &DecodingKey,
    alg: Algorithm,
) -> Result<(Header, Map<String, Value>), JwtError> {
    let header = header(token)?;
    if header.alg != alg {
        return Err(JwtError::Algorithm(header.alg));
    }
    let mut validation = Validation::new(alg);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    let data =
        jsonwebtoken::decode::<Map<String, Value>>(token, key, &validation).map_err(|e| match e
            .kind()
        {
            jsonwebtoken::errors::ErrorKind::InvalidSignature
            | jsonwebtoken::errors::ErrorKind::InvalidEcdsaKey
            | jsonwebtoken::errors::ErrorKind::InvalidRsaKey(_)
            | jsonwebtoken::errors::ErrorKind::InvalidKeyFormat
            | jsonwebtoken::errors::ErrorKind::Provider(_) => JwtError::Signature(e.to_string()),
            _ => JwtError::Malformed(e.to_string()),
        })?;
    Ok((header, data.claims))
}

/// A numeric date claim (`iat`, `exp`) as whole seconds; fractional values are allowed by
/// RFC 7519 but truncated here since every provider works in seconds.
pub(crate) fn numeric_date(claims: &Map<String, Value>, name: &str) -> Option<i64> {
    let value = claims.get(name)?;
    value
        .as_i64()
        .or_else(|| value.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
}
