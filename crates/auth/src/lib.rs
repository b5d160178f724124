//! JWT verification and minting for pushwarden.
//!
//! Verifies the access tokens Bitwarden clients present to the notifications
//! hub, with whichever key material the deployment has:
//!
//! - an HS256 shared secret,
//! - an RSA public key PEM (Vaultwarden signs RS256 with issuer
//!   `"<domain>|login"`),
//! - an OpenID authority (Bitwarden's IdentityServer), whose JWKS is fetched
//!   lazily via discovery and cached.
//!
//! Validation follows Bitwarden's `AddIdentityAuthenticationServices`
//! (no audience check) and Vaultwarden's `decode_jwt` (30 s leeway, token
//! whitespace trimmed). Module map:
//!
//! - `config`: [`VerifierConfig`], [`DEFAULT_LEEWAY`];
//! - `verifier`: [`TokenVerifier`];
//! - `header`, `jwks`, `oidc`: key selection and the authority's key cache;
//! - `claims`: [`Claims`] and the Bitwarden policies;
//! - `request`: [`token_from_request`], [`query_param`];
//! - `minter`: [`Minter`];
//! - `error`: [`AuthError`].

mod claims;
mod config;
mod error;
mod header;
mod jwks;
mod minter;
mod oidc;
mod request;
mod verifier;

pub use claims::Claims;
pub use config::{VerifierConfig, DEFAULT_LEEWAY};
pub use error::AuthError;
pub use minter::Minter;
pub use request::{query_param, token_from_request};
pub use verifier::TokenVerifier;
