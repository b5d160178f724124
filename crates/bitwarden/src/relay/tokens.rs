//! Installation access tokens: what `/connect/token` mints and the push API verifies.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pushwarden_auth::{AuthError, Minter, TokenVerifier, VerifierConfig};

/// The only scope an installation token carries: the push API.
pub const PUSH_SCOPE: &str = "api.push";
const ISSUER: &str = "pushwarden-relay";
/// The private claim naming the key generation a token was minted in (see
/// [`InstallationDirectory::key_generation`](pushwarden_model::InstallationDirectory::key_generation)).
const KEY_GENERATION_CLAIM: &str = "key_generation";
/// An installation's OAuth client id is `installation.{id}`, as Bitwarden's
/// `src/Identity/IdentityServer/ClientProviders/InstallationClientProvider.cs` registers it.
pub(super) const CLIENT_PREFIX: &str = "installation.";

/// Mints and verifies installation access tokens (HS256 with the relay's own secret).
pub struct InstallationTokens {
    minter: Minter,
    verifier: TokenVerifier,
    lifetime: Duration,
}

impl InstallationTokens {
    pub fn new(secret: Vec<u8>, lifetime: Duration) -> Result<Self, AuthError> {
        let verifier = TokenVerifier::new(VerifierConfig {
            hs256_secret: Some(secret.clone()),
            issuer: Some(ISSUER.to_owned()),
            ..VerifierConfig::default()
        })?;
        Ok(Self {
            minter: Minter::Hs256(secret),
            verifier,
            lifetime,
        })
    }

    /// A token naming the installation as IdentityServer does (`client_id`, `client_sub`), and
    /// the key generation it was minted in.
    pub fn mint(&self, installation_id: &str, key_generation: i64) -> Result<String, AuthError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        self.minter.mint(&serde_json::json!({
            "iss": ISSUER,
            "sub": installation_id,
            "client_id": format!("{CLIENT_PREFIX}{installation_id}"),
            "client_sub": installation_id,
            "scope": [PUSH_SCOPE],
            "iat": now,
            "nbf": now,
            "exp": now + self.lifetime.as_secs(),
            KEY_GENERATION_CLAIM: key_generation,
        }))
    }

    /// The installation an installation token names, and the key generation it was minted in
    /// (0 for tokens minted before generations existed, as every installation starts at 0).
    pub async fn verify(&self, token: &str) -> Result<(String, i64), AuthError> {
        let claims = self.verifier.verify(token).await?;
        claims.require_scope(PUSH_SCOPE)?;
        let id = claims
            .get_str("client_id")
            .and_then(|c| c.strip_prefix(CLIENT_PREFIX))
            .ok_or(AuthError::MissingClaim("client_id"))?;
        if claims.get_str("client_sub") != Some(id) {
            return Err(AuthError::Forbidden(
                "client_sub does not match client_id".into(),
            ));
        }
        let key_generation = claims
            .0
            .get(KEY_GENERATION_CLAIM)
            .map_or(Some(0), serde_json::Value::as_i64)
            .ok_or(AuthError::MissingClaim(KEY_GENERATION_CLAIM))?;
        Ok((id.to_owned(), key_generation))
    }

    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tokens_name_their_installation() {
        let tokens = InstallationTokens::new(b"relay-secret".to_vec(), Duration::from_secs(60))
            .expect("tokens");
        let t = tokens.mint("inst-1", 3).expect("mint");
        assert_eq!(
            tokens.verify(&t).await.expect("verify"),
            ("inst-1".to_owned(), 3)
        );
        let other =
            InstallationTokens::new(b"other".to_vec(), Duration::from_secs(60)).expect("tokens");
        assert!(other.verify(&t).await.is_err());
        // A token with another scope (say, a user's) is not an installation token.
        let user = Minter::Hs256(b"relay-secret".to_vec())
            .mint(
                &serde_json::json!({"iss": ISSUER, "sub": "u", "scope": ["api"],
                "client_id": "installation.x", "client_sub": "x", "exp": 4_000_000_000u64}),
            )
            .expect("mint");
        assert!(tokens.verify(&user).await.is_err());
        // A token minted before key generations existed belongs to generation 0.
        let old = Minter::Hs256(b"relay-secret".to_vec())
            .mint(&serde_json::json!({"iss": ISSUER, "scope": ["api.push"],
                "client_id": "installation.x", "client_sub": "x", "exp": 4_000_000_000u64}))
            .expect("mint");
        assert_eq!(
            tokens.verify(&old).await.expect("verify"),
            ("x".to_owned(), 0)
        );
    }
}
