//! Bitwarden's two hubs: who may connect, and which groups a connection joins.
//!
//! - `/hub` (`src/Notifications/NotificationsHub.cs` in bitwarden/server): a user's access
//!   token; the connection joins its user (by `sub`), its organizations, its installation and
//!   client-type groups.
//! - `/anonymous-hub` (`src/Notifications/AnonymousNotificationsHub.cs`): no authentication;
//!   the connection joins the group named by its `Token` query parameter (a pending auth
//!   request's id).
//!
//! A refused connection is answered by the HTTP edge's mapping ([`ApiError::auth`]).

use std::sync::Arc;

use pushwarden_auth::{query_param, token_from_request, AuthError, Claims, TokenVerifier};
use pushwarden_hub::{Authenticator, Identity};
use pushwarden_transport::{Rejection, RequestInfo};

use crate::edge::ApiError;
use crate::notification::normalize_id;
use pushwarden_model::ClientType;

/// Which tokens may open `/hub`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum HubPolicy {
    /// Bitwarden's "Application" policy: `amr` is `Application` or `external`, and `scope`
    /// contains `api`. Bitwarden's and Vaultwarden's user tokens satisfy it.
    #[default]
    Bitwarden,
    /// Any validly signed token with a `sub`, for servers whose tokens carry other claims.
    Authenticated,
}

impl std::str::FromStr for HubPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "bitwarden" | "application" => Ok(HubPolicy::Bitwarden),
            "authenticated" | "any" => Ok(HubPolicy::Authenticated),
            other => Err(format!(
                "unknown hub policy `{other}` (bitwarden, authenticated)"
            )),
        }
    }
}

/// Organization membership claims, as Bitwarden's identity server (and Vaultwarden) emit them.
const ORGANIZATION_CLAIMS: [&str; 5] =
    ["orgowner", "orgadmin", "orguser", "orgcustom", "orgmanager"];

/// Authenticates `/hub` connections.
pub struct UserHubAuthenticator {
    verifier: TokenVerifier,
    policy: HubPolicy,
    installation_id: Option<String>,
}

impl UserHubAuthenticator {
    pub fn new(
        verifier: TokenVerifier,
        policy: HubPolicy,
        installation_id: Option<String>,
    ) -> Self {
        Self {
            verifier,
            policy,
            installation_id: installation_id.map(|id| normalize_id(&id)),
        }
    }

    async fn identity(&self, request: &RequestInfo) -> Result<Identity, AuthError> {
        let token = token_from_request(&request.headers, request.query.as_deref())
            .ok_or(AuthError::Missing)?;
        let claims = self.verifier.verify(&token).await?;
        if self.policy == HubPolicy::Bitwarden {
            claims.require_application()?;
        }
        let user = claims
            .sub()
            .map(normalize_id)
            .ok_or(AuthError::MissingClaim("sub"))?;
        Ok(Identity {
            groups: groups_for(&claims, &user, self.installation_id.as_deref())
                .into_iter()
                .map(Arc::from)
                .collect(),
            user_id: Some(user.into()),
        })
    }
}

impl Authenticator for UserHubAuthenticator {
    async fn authenticate(&self, request: &RequestInfo) -> Result<Identity, Rejection> {
        self.identity(request)
            .await
            .map_err(|e| ApiError::auth("hub", &e).into_rejection())
    }
}

/// The groups `NotificationsHub.OnConnectedAsync` joins for these claims.
pub fn groups_for(claims: &Claims, user: &str, installation_id: Option<&str>) -> Vec<String> {
    let client_type = claims
        .get_str("devicetype")
        .map_or(ClientType::All, ClientType::from_device_type_claim);
    let narrowed = client_type != ClientType::All;
    let ct = client_type.name();
    let mut groups = Vec::new();
    if narrowed {
        groups.push(format!("UserClientType_{user}_{ct}"));
    }
    if let Some(installation) = installation_id {
        groups.push(format!("Installation_{installation}"));
        if narrowed {
            groups.push(format!("Installation_ClientType_{installation}_{ct}"));
        }
    }
    let mut orgs: Vec<String> = ORGANIZATION_CLAIMS
        .iter()
        .flat_map(|claim| claims.strings(claim))
        .map(normalize_id)
        .collect();
    orgs.sort();
    orgs.dedup();
    for org in orgs {
        groups.push(format!("Organization_{org}"));
        if narrowed {
            groups.push(format!("OrganizationClientType_{org}_{ct}"));
        }
    }
    groups
}

/// Authenticates nothing: `/anonymous-hub` joins the group its `Token` names.
pub struct AnonymousHubAuthenticator;

impl Authenticator for AnonymousHubAuthenticator {
    async fn authenticate(&self, request: &RequestInfo) -> Result<Identity, Rejection> {
        let token = query_param(request.query.as_deref(), "Token")
            .filter(|t| !t.trim().is_empty())
            .map(|t| normalize_id(&t));
        Ok(Identity {
            user_id: None,
            groups: token.into_iter().map(Arc::from).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: serde_json::Value) -> Claims {
        Claims(v.as_object().cloned().unwrap_or_default())
    }

    const U: &str = "d2ea5b72-1111-4a4a-9f9f-000000000001";
    const O1: &str = "aaaaaaaa-2222-4b4b-8e8e-000000000002";
    const O2: &str = "cccccccc-2222-4b4b-8e8e-000000000004";
    const I: &str = "bbbbbbbb-3333-4c4c-8d8d-000000000003";

    #[test]
    fn groups_from_claims_as_notifications_hub_joins_them() {
        let c = claims(
            json!({"sub": U, "devicetype": "FirefoxExtension", "orgowner": O1, "orguser": [O2, O1.to_uppercase()]}),
        );
        let g = groups_for(&c, U, Some(I));
        assert_eq!(
            g,
            vec![
                format!("UserClientType_{U}_Browser"),
                format!("Installation_{I}"),
                format!("Installation_ClientType_{I}_Browser"),
                format!("Organization_{O1}"),
                format!("OrganizationClientType_{O1}_Browser"),
                format!("Organization_{O2}"),
                format!("OrganizationClientType_{O2}_Browser"),
            ]
        );
    }

    #[test]
    fn client_type_all_joins_only_plain_groups() {
        let c = claims(json!({"sub": U, "devicetype": "SDK", "orgadmin": O1}));
        assert_eq!(groups_for(&c, U, None), vec![format!("Organization_{O1}")]);
        let c = claims(json!({"sub": U}));
        assert!(groups_for(&c, U, None).is_empty());
    }

    #[tokio::test]
    async fn anonymous_hub_joins_its_token_group() {
        let info = |q: &str| RequestInfo {
            headers: Default::default(),
            query: Some(q.into()),
            peer: None,
        };
        let id = AnonymousHubAuthenticator
            .authenticate(&info(&format!("token={}", I.to_uppercase())))
            .await
            .unwrap();
        assert_eq!(id.groups, vec![Arc::<str>::from(I)]);
        let id = AnonymousHubAuthenticator
            .authenticate(&info("Token=admin-diagnostics"))
            .await
            .unwrap();
        assert_eq!(id.groups, vec![Arc::<str>::from("admin-diagnostics")]);
        let id = AnonymousHubAuthenticator
            .authenticate(&info("Token="))
            .await
            .unwrap();
        assert!(id.groups.is_empty());
    }
}
