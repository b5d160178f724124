//! Bitwarden's push relay, the cloud side self-hosted servers push through: an installation
//! (id + key) gets a token from `/connect/token`
//! (`src/Identity/IdentityServer/ClientProviders/InstallationClientProvider.cs` in
//! bitwarden/server) and calls the push API with it
//! (`src/Api/Platform/Push/Controllers/PushController.cs`).
//!
//! - `tokens`: [`InstallationTokens`], minting and verifying installation tokens.
//! - `limits`: [`RateLimits`], per-installation rate limits and the registration cap.
//! - `token_endpoint`: [`token`], the `/connect/token` handler.
//! - here: [`Caller`], who calls the push API, and how an installation's ids are kept apart
//!   from every other's.
//!
//! Installations themselves are stored by the push layer, behind
//! [`InstallationDirectory`](pushwarden_model::InstallationDirectory).

mod limits;
mod token_endpoint;
mod tokens;

pub use limits::{RateLimits, RelayLimits};
pub(crate) use token_endpoint::TokenRequest;
pub use token_endpoint::{token, TokenEndpointState};
pub use tokens::{InstallationTokens, PUSH_SCOPE};

/// Who calls the push API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// The vault server beside pushwarden (`/send` credentials): ids are used as given.
    Local,
    /// A relayed installation: its ids are kept apart by [`Caller::prefix`].
    Installation(String),
}

impl Caller {
    /// Bitwarden's `Prefix(x)` in `PushController.cs`: `{installationId}_{x}` for an
    /// installation, so that no installation can name another's devices, users or
    /// organizations.
    pub fn prefix(&self, id: &str) -> String {
        match self {
            Caller::Local => id.to_owned(),
            Caller::Installation(installation) => format!("{installation}_{id}"),
        }
    }

    pub fn installation(&self) -> Option<&str> {
        match self {
            Caller::Local => None,
            Caller::Installation(id) => Some(id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installations_ids_are_prefixed() {
        assert_eq!(Caller::Local.prefix("d"), "d");
        assert_eq!(Caller::Installation("i".into()).prefix("d"), "i_d");
        assert_eq!(Caller::Installation("i".into()).installation(), Some("i"));
        assert_eq!(Caller::Local.installation(), None);
    }
}
