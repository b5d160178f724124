//! Verifier configuration.

use std::fmt;
use std::time::Duration;

/// The clock-skew allowance for `exp` and `nbf` when none is configured: Vaultwarden's
/// `decode_jwt` allows 30 s.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);

/// Which key material a [`crate::TokenVerifier`] trusts. At least one of
/// `hs256_secret`, `rsa_public_key_pem` and `authority` must be set.
#[derive(Clone)]
pub struct VerifierConfig {
    /// Shared secret for HS256 tokens.
    pub hs256_secret: Option<Vec<u8>>,
    /// RSA public key in PEM form: `PUBLIC KEY` (SPKI) or `RSA PUBLIC KEY`
    /// (PKCS#1). This is what Vaultwarden signs its RS256 tokens with.
    pub rsa_public_key_pem: Option<Vec<u8>>,
    /// OpenID authority base URL. Discovery is read from
    /// `{authority}/.well-known/openid-configuration`, keys from its `jwks_uri`.
    pub authority: Option<String>,
    /// When set, `iss` must equal it (for every method). When `None` and an
    /// authority is configured, tokens verified with the authority's keys must
    /// carry the discovery document's `issuer`.
    pub issuer: Option<String>,
    /// Clock-skew allowance for `exp` and `nbf` (default [`DEFAULT_LEEWAY`]).
    /// Whole seconds; capped at one day.
    pub leeway: Duration,
    /// An unknown `kid` triggers a JWKS re-fetch at most this often.
    pub jwks_min_refresh: Duration,
    /// Timeout for each discovery / JWKS HTTP request.
    pub http_timeout: Duration,
}

impl Default for VerifierConfig {
    fn default() -> Self {
        VerifierConfig {
            hs256_secret: None,
            rsa_public_key_pem: None,
            authority: None,
            issuer: None,
            leeway: DEFAULT_LEEWAY,
            jwks_min_refresh: Duration::from_secs(30),
            http_timeout: Duration::from_secs(10),
        }
    }
}

// Hand-written so the HS256 secret never reaches a log line.
impl fmt::Debug for VerifierConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifierConfig")
            .field(
                "hs256_secret",
                &self.hs256_secret.as_ref().map(|_| "[redacted]"),
            )
            .field(
                "rsa_public_key_pem",
                &self.rsa_public_key_pem.as_ref().map(|_| "[set]"),
            )
            .field("authority", &self.authority)
            .field("issuer", &self.issuer)
            .field("leeway", &self.leeway)
            .field("jwks_min_refresh", &self.jwks_min_refresh)
            .field("http_timeout", &self.http_timeout)
            .finish()
    }
}
