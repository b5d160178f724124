//! The push API's handlers: who is calling (the local vault server by `/send`'s credentials, or
//! a relayed installation by its token), the installation's id prefixes and limits, then the
//! gateway.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::Json;
use pushwarden_auth::{token_from_request, AuthError};
use serde_json::{json, Value};

use pushwarden_model::{
    DeviceRegistration, DeviceTarget, InstallationDirectory, PushGateway, Recipient,
};

use super::models::{parse_object, parse_registration, parse_send, parse_update, required_string};
use crate::edge::{read_body, ApiError};
use crate::notification::normalize_id;
use crate::relay::{Caller, InstallationTokens, RateLimits};
use crate::send::SendAuthorizer;

/// State of the push API routes.
pub struct PushApiState {
    pub gateway: Arc<dyn PushGateway>,
    /// The local vault server's credentials (those of `/send`).
    pub authorizer: Arc<SendAuthorizer>,
    /// Installation tokens, when this service is a relay.
    pub relay: Option<RelayAccess>,
}

/// What the push API needs to serve relayed installations.
pub struct RelayAccess {
    pub tokens: Arc<InstallationTokens>,
    pub directory: Arc<dyn InstallationDirectory>,
    pub limits: Arc<RateLimits>,
}

/// Largest request body the push API accepts.
pub const MAX_PUSH_API_BODY: usize = 64 * 1024;

impl PushApiState {
    /// Who is calling `endpoint`: an installation (by its token) or the local vault server (by
    /// `/send`'s credentials). An installation's request also takes from its rate budget.
    async fn caller(
        &self,
        headers: &HeaderMap,
        endpoint: &'static str,
    ) -> Result<Caller, ApiError> {
        if let (Some(relay), Some(token)) = (&self.relay, token_from_request(headers, None)) {
            match relay.tokens.verify(&token).await {
                Ok((installation, key_generation)) => {
                    return relay
                        .installation_caller(installation, key_generation, endpoint)
                        .await
                }
                // An installation token that has run out says so rather than failing as a
                // local credential.
                Err(e @ (AuthError::Expired | AuthError::NotYetValid)) => {
                    return Err(ApiError::auth("push", &e));
                }
                Err(_) => {}
            }
        }
        self.authorizer
            .authorize(headers)
            .await
            .map(|()| Caller::Local)
            .map_err(|e| ApiError::auth("push", &e))
    }
}

impl RelayAccess {
    /// An enabled installation whose token belongs to its current key generation, counted,
    /// within its requests per minute.
    async fn installation_caller(
        &self,
        installation: String,
        token_generation: i64,
        endpoint: &'static str,
    ) -> Result<Caller, ApiError> {
        match self.directory.key_generation(installation.clone()).await? {
            None => {
                tracing::info!(%installation, "request from a disabled or deleted installation");
                return Err(ApiError::auth(
                    "push",
                    &AuthError::Forbidden("the installation is disabled".into()),
                ));
            }
            // The key this token was obtained with has been rotated (or disabled) since.
            Some(current) if current != token_generation => {
                tracing::info!(%installation, "request with a token of a replaced key");
                return Err(ApiError::auth(
                    "push",
                    &AuthError::Forbidden(
                        "the token was issued for a key that has since been replaced".into(),
                    ),
                ));
            }
            Some(_) => {}
        }
        // Installation ids are not metric labels: `/metrics` may be scraped by others, and a
        // label per installation would grow without bound. The logs name them.
        metrics::counter!("pushwarden_relay_requests_total", "endpoint" => endpoint).increment(1);
        if let Err(wait) = self.limits.request(&installation) {
            metrics::counter!("pushwarden_relay_rate_limited_total", "kind" => "requests")
                .increment(1);
            tracing::info!(installation = %installation, endpoint, "relay request over the installation's rate");
            return Err(ApiError::rate_limited("requests per minute", wait));
        }
        Ok(Caller::Installation(installation))
    }
}

/// Counts and logs a request the push API refused or the gateway failed, by endpoint and
/// reason (`pushwarden_push_api_errors_total`), and answers it.
fn failed<E: Into<ApiError>>(endpoint: &'static str) -> impl FnOnce(E) -> ApiError {
    move |error| {
        let error = error.into();
        metrics::counter!("pushwarden_push_api_errors_total", "endpoint" => endpoint, "reason" => error.reason())
            .increment(1);
        tracing::warn!(endpoint, %error, "push API request failed");
        error
    }
}

/// An installation's registration, with its ids prefixed and its installation checked.
pub(crate) fn relayed_registration(
    caller: &Caller,
    mut device: DeviceRegistration,
) -> Result<DeviceRegistration, ApiError> {
    let Some(installation) = caller.installation() else {
        return Ok(device);
    };
    match &device.installation_id {
        Some(id) if id != installation => {
            return Err(ApiError::BadRequest(
                "installationId does not match the caller's installation".into(),
            ))
        }
        _ => device.installation_id = Some(installation.to_owned()),
    }
    device.device_id = caller.prefix(&device.device_id);
    device.user_id = caller.prefix(&device.user_id);
    device.identifier = device.identifier.as_deref().map(|i| caller.prefix(i));
    device.organization_ids = device
        .organization_ids
        .iter()
        .map(|o| caller.prefix(o))
        .collect();
    device.owner = Some(installation.to_owned());
    Ok(device)
}

/// An installation's push target, prefixed like its registrations. Unlike Bitwarden's current
/// relay, the sending device's identifier is prefixed too, so excluding it still works.
pub(crate) fn relayed_target(
    caller: &Caller,
    mut target: DeviceTarget,
) -> Result<DeviceTarget, ApiError> {
    let Some(installation) = caller.installation() else {
        return Ok(target);
    };
    target.target.recipient = match target.target.recipient {
        Recipient::Installation(id) if id == installation => Recipient::Installation(id),
        Recipient::Installation(_) => {
            return Err(ApiError::BadRequest(
                "installationId does not match the caller's installation".into(),
            ))
        }
        Recipient::User(u) => Recipient::User(caller.prefix(&u)),
        Recipient::Organization(o) => Recipient::Organization(caller.prefix(&o)),
    };
    target.exclude_identifier = target.exclude_identifier.map(|i| caller.prefix(&i));
    Ok(target)
}

/// `POST /push/register`.
pub async fn register(
    State(state): State<Arc<PushApiState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let caller = state.caller(&headers, "register").await?;
    let body = read_body(body, MAX_PUSH_API_BODY).await?;
    let device = parse_registration(&body)
        .and_then(|d| relayed_registration(&caller, d))
        .map_err(failed("register"))?;
    let device_id = device.device_id.clone();
    let max_owned = state
        .relay
        .as_ref()
        .filter(|_| caller != Caller::Local)
        .map(|r| r.limits.limits.max_registrations);
    let platform = state
        .gateway
        .register(device, max_owned)
        .await
        .map_err(failed("register"))?;
    Ok(Json(json!({ "deviceId": device_id, "platform": platform })))
}

/// `POST /push/delete` with `{id}`.
pub async fn delete(
    State(state): State<Arc<PushApiState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let caller = state.caller(&headers, "delete").await?;
    let body = read_body(body, MAX_PUSH_API_BODY).await?;
    let id = parse_object(&body)
        .and_then(|m| required_string(&m, "id"))
        .map_err(failed("delete"))?;
    delete_device(&state, &caller, &id).await
}

/// `POST|DELETE /push/delete/{id}`: Vaultwarden's form of delete.
pub async fn delete_by_path(
    State(state): State<Arc<PushApiState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let caller = state.caller(&headers, "delete").await?;
    if id.trim().is_empty() {
        return Err(failed("delete")(ApiError::BadRequest(
            "the device id is empty".into(),
        )));
    }
    delete_device(&state, &caller, &normalize_id(&id)).await
}

async fn delete_device(
    state: &PushApiState,
    caller: &Caller,
    id: &str,
) -> Result<Json<Value>, ApiError> {
    let existed = state
        .gateway
        .delete(caller.prefix(id))
        .await
        .map_err(failed("delete"))?;
    Ok(Json(json!({ "deleted": existed })))
}

/// `PUT /push/add-organization`.
pub async fn add_organization(
    State(state): State<Arc<PushApiState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    update_organization(&state, &headers, body, true).await
}

/// `PUT /push/delete-organization`.
pub async fn delete_organization(
    State(state): State<Arc<PushApiState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    update_organization(&state, &headers, body, false).await
}

async fn update_organization(
    state: &PushApiState,
    headers: &HeaderMap,
    body: Body,
    add: bool,
) -> Result<Json<Value>, ApiError> {
    let endpoint = if add {
        "add-organization"
    } else {
        "delete-organization"
    };
    let caller = state.caller(headers, endpoint).await?;
    let body = read_body(body, MAX_PUSH_API_BODY).await?;
    let (devices, org) = parse_update(&body).map_err(failed(endpoint))?;
    let devices = devices.iter().map(|d| caller.prefix(d)).collect();
    let org = caller.prefix(&org);
    let changed = if add {
        state.gateway.add_organization(devices, org).await
    } else {
        state.gateway.delete_organization(devices, org).await
    }
    .map_err(failed(endpoint))?;
    Ok(Json(json!({ "updated": changed })))
}

/// `POST /push/send`.
pub async fn send(
    State(state): State<Arc<PushApiState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let caller = state.caller(&headers, "send").await?;
    let body = read_body(body, MAX_PUSH_API_BODY).await?;
    let (target, message) = parse_send(&body)
        .and_then(|(t, m)| Ok((relayed_target(&caller, t)?, m)))
        .map_err(failed("send"))?;
    if let (Some(relay), Some(installation)) = (&state.relay, caller.installation()) {
        if let Err(wait) = relay.limits.push(installation) {
            metrics::counter!("pushwarden_relay_rate_limited_total", "kind" => "pushes")
                .increment(1);
            tracing::info!(installation = %installation, "relay push over the installation's rate");
            return Err(ApiError::rate_limited("pushes per minute", wait));
        }
    }
    let queued = state
        .gateway
        .send(target, message)
        .await
        .map_err(failed("send"))?;
    if let Some(installation) = caller.installation() {
        metrics::counter!("pushwarden_relay_pushes_total").increment(queued);
        tracing::debug!(installation = %installation, queued, "relay push queued");
    }
    Ok(Json(json!({ "queued": queued })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::response::IntoResponse;
    use http::{header, HeaderValue, StatusCode};
    use pushwarden_auth::Minter;
    use pushwarden_model::{BoxFuture, GatewayError, PushMessage, SecretVerdict};
    use std::sync::Mutex;
    use std::time::Duration;

    use crate::relay::RelayLimits;

    const ENABLED: &str = "inst-on";
    const DISABLED: &str = "inst-off";
    const SECRET: &[u8] = b"relay-secret";

    /// Records registrations; deleting fails as a store outage would.
    #[derive(Default)]
    struct Gateway {
        registered: Mutex<Vec<DeviceRegistration>>,
    }

    impl PushGateway for Gateway {
        fn register(
            &self,
            device: DeviceRegistration,
            _max_owned: Option<u64>,
        ) -> BoxFuture<'_, Result<String, GatewayError>> {
            self.registered.lock().expect("lock").push(device);
            Box::pin(async { Ok("fcm".to_owned()) })
        }
        fn delete(&self, _device_id: String) -> BoxFuture<'_, Result<bool, GatewayError>> {
            Box::pin(async { Err(GatewayError::Unavailable("store is down".into())) })
        }
        fn add_organization(
            &self,
            _device_ids: Vec<String>,
            _organization_id: String,
        ) -> BoxFuture<'_, Result<u64, GatewayError>> {
            Box::pin(async { Ok(0) })
        }
        fn delete_organization(
            &self,
            _device_ids: Vec<String>,
            _organization_id: String,
        ) -> BoxFuture<'_, Result<u64, GatewayError>> {
            Box::pin(async { Ok(0) })
        }
        fn send(
            &self,
            _target: DeviceTarget,
            _message: PushMessage,
        ) -> BoxFuture<'_, Result<u64, GatewayError>> {
            Box::pin(async { Ok(1) })
        }
    }

    /// `ENABLED`'s current key generation: its key was rotated once.
    const GENERATION: i64 = 1;

    struct Directory;

    impl InstallationDirectory for Directory {
        fn check_secret(
            &self,
            _id: String,
            _secret: String,
        ) -> BoxFuture<'_, Result<SecretVerdict, GatewayError>> {
            Box::pin(async {
                Ok(SecretVerdict::Valid {
                    key_generation: GENERATION,
                })
            })
        }
        fn key_generation(&self, id: String) -> BoxFuture<'_, Result<Option<i64>, GatewayError>> {
            Box::pin(async move { Ok((id == ENABLED).then_some(GENERATION)) })
        }
    }

    fn state(requests_per_minute: u32) -> (Arc<PushApiState>, Arc<Gateway>) {
        let gateway = Arc::new(Gateway::default());
        let state = PushApiState {
            gateway: gateway.clone(),
            authorizer: Arc::new(SendAuthorizer::new(None, Some("local-key".into()))),
            relay: Some(RelayAccess {
                tokens: Arc::new(
                    InstallationTokens::new(SECRET.to_vec(), Duration::from_secs(60))
                        .expect("tokens"),
                ),
                directory: Arc::new(Directory),
                limits: Arc::new(RateLimits::new(RelayLimits {
                    requests_per_minute,
                    ..RelayLimits::default()
                })),
            }),
        };
        (Arc::new(state), gateway)
    }

    fn bearer(token: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {token}")).expect("header"),
        );
        headers
    }

    fn installation_token(state: &PushApiState, id: &str) -> String {
        state
            .relay
            .as_ref()
            .expect("relay")
            .tokens
            .mint(id, GENERATION)
            .expect("mint")
    }

    #[tokio::test]
    async fn callers_are_the_local_server_or_an_enabled_installation() {
        let (state, _) = state(600);
        assert_eq!(
            state.caller(&bearer("local-key"), "send").await,
            Ok(Caller::Local)
        );
        let token = installation_token(&state, ENABLED);
        assert_eq!(
            state.caller(&bearer(&token), "send").await,
            Ok(Caller::Installation(ENABLED.into()))
        );
        // A token obtained with the key before its rotation.
        let replaced = state
            .relay
            .as_ref()
            .expect("relay")
            .tokens
            .mint(ENABLED, GENERATION - 1)
            .expect("mint");
        assert_eq!(
            state.caller(&bearer(&replaced), "send").await,
            Err(ApiError::Forbidden(
                "forbidden: the token was issued for a key that has since been replaced".into()
            ))
        );
        let token = installation_token(&state, DISABLED);
        assert_eq!(
            state.caller(&bearer(&token), "send").await,
            Err(ApiError::Forbidden(
                "forbidden: the installation is disabled".into()
            ))
        );
        assert_eq!(
            state.caller(&HeaderMap::new(), "send").await,
            Err(ApiError::Unauthorized("no token supplied".into()))
        );
        assert_eq!(
            state.caller(&bearer("wrong-key"), "send").await,
            Err(ApiError::Unauthorized("invalid signature".into()))
        );
    }

    #[tokio::test]
    async fn an_expired_installation_token_says_so() {
        let (state, _) = state(600);
        let expired = Minter::Hs256(SECRET.to_vec())
            .mint(
                &json!({"iss": "pushwarden-relay", "sub": ENABLED, "scope": ["api.push"],
                "client_id": format!("installation.{ENABLED}"), "client_sub": ENABLED,
                "exp": 1_000_000_000u64}),
            )
            .expect("mint");
        let error = state
            .caller(&bearer(&expired), "send")
            .await
            .expect_err("expired");
        assert_eq!(error, ApiError::Unauthorized("token expired".into()));
        let response = error.into_response();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(response.headers()[header::WWW_AUTHENTICATE], "Bearer");
    }

    #[tokio::test]
    async fn an_installation_over_its_requests_per_minute_waits() {
        let (state, _) = state(1);
        let token = installation_token(&state, ENABLED);
        assert!(state.caller(&bearer(&token), "register").await.is_ok());
        match state.caller(&bearer(&token), "register").await {
            Err(ApiError::TooManyRequests { what, retry_after }) => {
                assert_eq!(what, "requests per minute");
                assert!(retry_after > Duration::ZERO);
            }
            other => panic!("expected 429, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn handlers_answer_through_the_edge() {
        let (state, gateway) = state(600);
        let token = installation_token(&state, ENABLED);
        let body = json!({"deviceId": "d1", "userId": "u1", "type": 0, "pushToken": "t"});
        let Json(answer) = register(
            State(state.clone()),
            bearer(&token),
            Body::from(body.to_string()),
        )
        .await
        .expect("registered");
        assert_eq!(
            answer,
            json!({"deviceId": format!("{ENABLED}_d1"), "platform": "fcm"})
        );
        assert_eq!(
            gateway.registered.lock().expect("lock")[0].owner.as_deref(),
            Some(ENABLED)
        );
        let refused = register(State(state.clone()), bearer(&token), Body::from("[]"))
            .await
            .expect_err("not an object");
        assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
        let down = delete_by_path(
            State(state.clone()),
            Path("d1".to_owned()),
            bearer("local-key"),
        )
        .await
        .expect_err("store is down");
        assert_eq!(down, ApiError::Unavailable("store is down".into()));
        let empty = delete_by_path(State(state), Path(" ".to_owned()), bearer("local-key"))
            .await
            .expect_err("empty id");
        assert_eq!(empty, ApiError::BadRequest("the device id is empty".into()));
    }
}
