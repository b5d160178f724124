//! [`TokenVerifier`]: choose a key by the token header, check the signature,
//! then the time and issuer claims.
//!
//! Algorithm confusion is prevented structurally: each key is bound to one
//! algorithm family when it is loaded (HS256 only ever uses the configured
//! secret, RS/PS only RSA keys, ES only EC JWKS keys), and the algorithm passed
//! to `jsonwebtoken` is the allow-listed one from [`crate::header`]. An HS256
//! token "signed" with the RSA public key as HMAC secret therefore either finds
//! no HMAC key (refused) or is checked against the real secret (bad signature).

use std::sync::Arc;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use crate::header::{self, KeyClass};
use crate::oidc::Authority;
use crate::{error, AuthError, Claims, VerifierConfig};

/// Leeway cap: a misconfigured huge leeway would overflow the time arithmetic
/// and effectively disable expiry.
const MAX_LEEWAY_SECS: u64 = 24 * 60 * 60;

/// Verifies bearer tokens. Cheap to clone; share one per process.
#[derive(Clone)]
pub struct TokenVerifier {
    inner: Arc<Inner>,
}

struct Inner {
    hs256: Option<DecodingKey>,
    rsa: Option<DecodingKey>,
    authority: Option<Authority>,
    issuer: Option<String>,
    leeway_secs: u64,
}

impl TokenVerifier {
    /// Validate the configuration and load the static keys. The authority is
    /// not contacted until the first token needs it.
    pub fn new(config: VerifierConfig) -> Result<Self, AuthError> {
        let hs256 = match &config.hs256_secret {
            Some(secret) if secret.is_empty() => {
                return Err(AuthError::Config("hs256_secret is empty".into()));
            }
            Some(secret) => Some(DecodingKey::from_secret(secret)),
            None => None,
        };
        let rsa = config
            .rsa_public_key_pem
            .as_deref()
            .map(load_rsa_public_pem)
            .transpose()?;
        let authority = config
            .authority
            .as_deref()
            .map(|base| Authority::new(base, config.http_timeout, config.jwks_min_refresh))
            .transpose()?;
        if hs256.is_none() && rsa.is_none() && authority.is_none() {
            return Err(AuthError::Config(
                "no verification method: set an HS256 secret, an RSA public key or an authority"
                    .into(),
            ));
        }
        Ok(TokenVerifier {
            inner: Arc::new(Inner {
                hs256,
                rsa,
                authority,
                issuer: config.issuer.filter(|s| !s.is_empty()),
                leeway_secs: config.leeway.as_secs().min(MAX_LEEWAY_SECS),
            }),
        })
    }

    /// Verify a token and return its claims.
    pub async fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let inner = &*self.inner;
        // Vaultwarden strips surrounding whitespace; so do we.
        let token = token.trim();
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        let head = header::peek(token)?;
        let issuer = inner.issuer.as_deref();
        match head.class {
            KeyClass::Hmac => {
                let key = inner
                    .hs256
                    .as_ref()
                    .ok_or_else(|| not_configured(head.alg))?;
                inner.check(token, key, head.alg, issuer)
            }
            // The static RSA key handles kid-less tokens (Vaultwarden sets no
            // kid) and everything when there is no authority to ask.
            KeyClass::Rsa
                if inner.rsa.is_some() && (head.kid.is_none() || inner.authority.is_none()) =>
            {
                let key = inner.rsa.as_ref().ok_or_else(|| not_configured(head.alg))?;
                inner.check(token, key, head.alg, issuer)
            }
            KeyClass::Rsa | KeyClass::Ec => {
                let authority = inner
                    .authority
                    .as_ref()
                    .ok_or_else(|| not_configured(head.alg))?;
                let resolved = authority
                    .resolve(head.kid.as_deref(), head.alg, head.class)
                    .await?;
                let issuer = issuer.or(resolved.issuer.as_deref());
                // Several candidates only arise for kid-less tokens; the first
                // whose signature verifies decides.
                for key in &resolved.keys {
                    match inner.check(token, key, head.alg, issuer) {
                        Err(AuthError::BadSignature) => continue,
                        other => return other,
                    }
                }
                Err(AuthError::BadSignature)
            }
        }
    }

    /// The configured methods, for logging: a subset of
    /// `["hs256", "rsa", "authority"]`.
    pub fn methods(&self) -> Vec<&'static str> {
        let inner = &*self.inner;
        let mut out = Vec::new();
        if inner.hs256.is_some() {
            out.push("hs256");
        }
        if inner.rsa.is_some() {
            out.push("rsa");
        }
        if inner.authority.is_some() {
            out.push("authority");
        }
        out
    }
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenVerifier")
            .field("methods", &self.methods())
            .field("issuer", &self.inner.issuer)
            .finish_non_exhaustive()
    }
}

impl Inner {
    /// Signature first (jsonwebtoken checks it before any claim), then `exp`
    /// (required), `nbf` (when present) and `iss` (when an issuer applies).
    /// The audience is not validated, as in Bitwarden (`ValidateAudience = false`).
    fn check(
        &self,
        token: &str,
        key: &DecodingKey,
        alg: Algorithm,
        issuer: Option<&str>,
    ) -> Result<Claims, AuthError> {
        let mut validation = Validation::new(alg);
        validation.leeway = self.leeway_secs;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp"]);
        if let Some(iss) = issuer {
            validation.set_issuer(&[iss]);
            validation.required_spec_claims.insert("iss".to_owned());
        }
        jsonwebtoken::decode::<Map<String, Value>>(token, key, &validation)
            .map(|data| Claims(data.claims))
            .map_err(error::from_jwt_error)
    }
}

fn not_configured(alg: Algorithm) -> AuthError {
    AuthError::AlgorithmNotAllowed(format!("{alg:?} (no key configured for it)"))
}

/// Load an RSA public key from PEM (SPKI `PUBLIC KEY` or PKCS#1 `RSA PUBLIC
/// KEY`), checking that it really is one so a bad file fails at startup rather
/// than on every token.
fn load_rsa_public_pem(pem: &[u8]) -> Result<DecodingKey, AuthError> {
    let key = DecodingKey::from_rsa_pem(pem)
        .map_err(|e| AuthError::Config(format!("invalid RSA public key PEM: {e}")))?;
    // `from_rsa_pem` only unwraps the PEM; deriving the JWK parses the PKCS#1
    // structure and so rejects garbage, private keys and EC keys.
    jsonwebtoken::jwk::Jwk::from_decoding_key(&key, Some(Algorithm::RS256))
        .map_err(|e| AuthError::Config(format!("invalid RSA public key: {e}")))?;
    Ok(key)
}
