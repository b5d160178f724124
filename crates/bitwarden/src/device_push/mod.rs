//! The push API a vault server calls to register devices and push to them, in the shape of
//! Bitwarden's relay (`PushController`, spec §5.2): `/push/register`, `/push/delete`,
//! `/push/add-organization`, `/push/delete-organization` and `/push/send`.
//!
//! - [`models`]: Bitwarden's request models (camelCase or PascalCase), parsed and validated.
//! - [`routes`]: the handlers, who is calling (the local vault server or a relayed
//!   installation), and how an installation's ids are kept apart.
//!
//! Storing and delivering is a [`PushGateway`](pushwarden_model::PushGateway)'s job (the push
//! layer).

mod models;
mod routes;

use axum::response::{IntoResponse, Response};
use axum::Json;
use http::StatusCode;
use pushwarden_model::GatewayError;

pub use models::{parse_registration, parse_send};
pub use routes::{
    add_organization, delete, delete_by_path, delete_organization, register, send, PushApiState,
    RelayAccess, MAX_PUSH_API_BODY,
};

/// Why a push API call failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ApiError {
    /// The request is wrong; the caller must change it.
    #[error("{0}")]
    BadRequest(String),
    /// The store or a dependency is down; the caller may retry.
    #[error("{0}")]
    Unavailable(String),
    /// A per-installation limit (registrations) is reached.
    #[error("{0}")]
    LimitExceeded(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::LimitExceeded(what) => {
                return crate::relay::too_many(&what, std::time::Duration::from_secs(3600))
            }
        };
        (
            status,
            Json(serde_json::json!({ "error": self.to_string() })),
        )
            .into_response()
    }
}

impl From<GatewayError> for ApiError {
    fn from(e: GatewayError) -> Self {
        match e {
            GatewayError::BadRequest(m) => ApiError::BadRequest(m),
            GatewayError::Unavailable(m) => ApiError::Unavailable(m),
            GatewayError::LimitExceeded(m) => ApiError::LimitExceeded(m),
        }
    }
}
