//! The push API a vault server calls to register devices and push to them, in the shape of
//! Bitwarden's relay (`src/Api/Platform/Push/Controllers/PushController.cs` in
//! bitwarden/server): `/push/register`, `/push/delete`, `/push/add-organization`,
//! `/push/delete-organization` and `/push/send`.
//!
//! - `models`: Bitwarden's request models (camelCase or PascalCase), parsed and validated.
//! - `routes`: the handlers, who is calling (the local vault server or a relayed
//!   installation), and how an installation's ids are kept apart.
//!
//! Storing and delivering is a [`PushGateway`](pushwarden_model::PushGateway)'s job (the push
//! layer). Failures are answered by [`ApiError`](crate::edge::ApiError).

mod models;
mod routes;

pub(crate) use models::{parse_object, parse_update, required_string};
pub use models::{parse_registration, parse_send};
pub use routes::{
    add_organization, delete, delete_by_path, delete_organization, register, send, PushApiState,
    RelayAccess, MAX_PUSH_API_BODY,
};
pub(crate) use routes::{relayed_registration, relayed_target};
