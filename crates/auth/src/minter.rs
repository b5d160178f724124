//! Minting tokens: for tests, load tools, and deployments where pushwarden
//! itself issues the tokens its peers present (e.g. the internal send API).

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::Value;

use crate::AuthError;

/// Signing key material.
pub enum Minter {
    /// HMAC-SHA256 with a shared secret.
    Hs256(Vec<u8>),
    /// RSASSA-PKCS1-v1_5 SHA-256 with an RSA private key in PEM form
    /// (`RSA PRIVATE KEY` or PKCS#8 `PRIVATE KEY`); `kid` goes in the header.
    Rs256 {
        private_key_pem: Vec<u8>,
        kid: Option<String>,
    },
}

impl Minter {
    /// Sign `claims` (a JSON object) as a compact JWT with `typ: JWT`.
    /// Claims are signed as given: add `exp` yourself.
    pub fn mint(&self, claims: &Value) -> Result<String, AuthError> {
        if !claims.is_object() {
            return Err(AuthError::Config("claims must be a JSON object".into()));
        }
        let (header, key) = match self {
            Minter::Hs256(secret) => {
                if secret.is_empty() {
                    return Err(AuthError::Config("HS256 secret is empty".into()));
                }
                (
                    Header::new(Algorithm::HS256),
                    EncodingKey::from_secret(secret),
                )
            }
            Minter::Rs256 {
                private_key_pem,
                kid,
            } => {
                let key = EncodingKey::from_rsa_pem(private_key_pem)
                    .map_err(|e| AuthError::Config(format!("invalid RSA private key PEM: {e}")))?;
                let mut header = Header::new(Algorithm::RS256);
                header.kid = kid.clone();
                (header, key)
            }
        };
        jsonwebtoken::encode(&header, claims, &key)
            .map_err(|e| AuthError::Config(format!("signing failed: {e}")))
    }
}

impl std::fmt::Debug for Minter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Minter::Hs256(_) => f.write_str("Minter::Hs256([redacted])"),
            Minter::Rs256 { kid, .. } => f
                .debug_struct("Minter::Rs256")
                .field("kid", kid)
                .finish_non_exhaustive(),
        }
    }
}
