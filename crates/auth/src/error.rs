//! The single error type of this crate.
//!
//! Messages never contain the token itself (it is a bearer credential and
//! errors end up in logs); `reason()` gives a fixed label for metrics so that
//! label cardinality stays bounded.

use jsonwebtoken::errors::ErrorKind;

/// Why a token was refused, or why the verifier could not be built.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No token was supplied (or it was empty after trimming).
    #[error("no token supplied")]
    Missing,
    /// The token is not a well-formed JWS compact JWT.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// The header's `alg` is not acceptable for the configured key material.
    #[error("algorithm not allowed: {0}")]
    AlgorithmNotAllowed(String),
    /// No key matches the token's `kid` (even after a JWKS refresh).
    #[error("no key matches the token")]
    UnknownKey,
    /// The signature did not verify.
    #[error("invalid signature")]
    BadSignature,
    /// `exp` is in the past (beyond the leeway).
    #[error("token expired")]
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    #[error("token not yet valid")]
    NotYetValid,
    /// `iss` does not equal the expected issuer.
    #[error("wrong issuer")]
    WrongIssuer,
    /// A required claim is absent.
    #[error("missing claim: {0}")]
    MissingClaim(&'static str),
    /// The token is valid but does not satisfy an authorization policy.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// The OpenID authority's discovery document or JWKS could not be fetched.
    #[error("signing keys unavailable: {0}")]
    KeysUnavailable(String),
    /// The verifier or minter configuration is invalid.
    #[error("configuration error: {0}")]
    Config(String),
}

impl AuthError {
    /// A short snake_case label for metrics and structured logs.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing",
            AuthError::Malformed(_) => "malformed",
            AuthError::AlgorithmNotAllowed(_) => "algorithm",
            AuthError::UnknownKey => "unknown_key",
            AuthError::BadSignature => "signature",
            AuthError::Expired => "expired",
            AuthError::NotYetValid => "not_yet_valid",
            AuthError::WrongIssuer => "issuer",
            AuthError::MissingClaim(_) => "claim",
            AuthError::Forbidden(_) => "forbidden",
            AuthError::KeysUnavailable(_) => "keys_unavailable",
            AuthError::Config(_) => "config",
        }
    }

    /// True when the failure is on the server side (keys or configuration),
    /// i.e. the client's token may well be fine and a retry could succeed.
    pub fn is_server_side(&self) -> bool {
        matches!(self, AuthError::KeysUnavailable(_) | AuthError::Config(_))
    }
}

/// Translate a `jsonwebtoken` verification failure into our vocabulary.
pub(crate) fn from_jwt_error(err: jsonwebtoken::errors::Error) -> AuthError {
    match err.kind() {
        ErrorKind::InvalidSignature => AuthError::BadSignature,
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
        ErrorKind::MissingRequiredClaim(name) => AuthError::MissingClaim(static_claim(name)),
        ErrorKind::InvalidAlgorithm
        | ErrorKind::MissingAlgorithm
        | ErrorKind::UnsupportedAlgorithm
        | ErrorKind::InvalidAlgorithmName => AuthError::AlgorithmNotAllowed(err.to_string()),
        // A key that cannot be used at all (bad JWKS entry, wrong curve) can
        // never validate this token: report it as a signature failure so the
        // caller can try the next candidate key.
        ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidEddsaKey
        | ErrorKind::InvalidRsaKey(_)
        | ErrorKind::InvalidKeyFormat => AuthError::BadSignature,
        ErrorKind::InvalidClaimFormat(name) => {
            AuthError::Malformed(format!("claim `{name}` has the wrong type"))
        }
        _ => AuthError::Malformed(err.to_string()),
    }
}

/// `MissingClaim` carries a `&'static str`; map the names jsonwebtoken can
/// require onto static strings.
fn static_claim(name: &str) -> &'static str {
    match name {
        "exp" => "exp",
        "nbf" => "nbf",
        "iss" => "iss",
        "sub" => "sub",
        "aud" => "aud",
        _ => "unknown",
    }
}
