//! Verified token claims and the Bitwarden authorization policies over them.
//!
//! Claim names are kept exactly as they appear in the JWT (Bitwarden sets
//! `MapInboundClaims = false`), so `sub`, `scope`, `amr`, `device`,
//! `devicetype`, `orgowner`, … are looked up verbatim.

use serde_json::{Map, Value};

use crate::AuthError;

/// The payload of a verified token.
#[derive(Clone, Debug)]
pub struct Claims(pub Map<String, Value>);

impl Claims {
    /// The `sub` claim (the Bitwarden user id).
    pub fn sub(&self) -> Option<&str> {
        self.get_str("sub")
    }

    /// A claim whose value is a JSON string.
    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.0.get(name).and_then(Value::as_str)
    }

    /// A claim that may be a single string or an array of strings, flattened.
    ///
    /// IdentityServer emits a multi-valued claim (e.g. `orgowner` for several
    /// organizations) as an array but a single value as a plain string;
    /// Vaultwarden always emits arrays. Non-string elements are ignored.
    pub fn strings(&self, name: &str) -> Vec<&str> {
        match self.0.get(name) {
            Some(Value::String(s)) => vec![s.as_str()],
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        }
    }

    /// The `scope` claim: a JSON array (IdentityServer, Vaultwarden) or an
    /// RFC 8693 space-separated string.
    pub fn scopes(&self) -> Vec<&str> {
        match self.0.get("scope") {
            Some(Value::String(s)) => s.split_whitespace().collect(),
            _ => self.strings("scope"),
        }
    }

    /// Whether the claim `name` holds `value` (ordinal comparison, as ASP.NET's
    /// `RequireClaim` does). For `scope` this uses [`Claims::scopes`], so a
    /// space-separated scope string works too.
    pub fn has(&self, name: &str, value: &str) -> bool {
        if name == "scope" {
            return self.scopes().contains(&value);
        }
        self.strings(name).contains(&value)
    }

    /// Bitwarden's `"Application"` policy (used by `NotificationsHub`):
    /// `amr` is `Application` or `external`, and `scope` contains `api`.
    pub fn require_application(&self) -> Result<(), AuthError> {
        if !(self.has("amr", "Application") || self.has("amr", "external")) {
            return Err(AuthError::Forbidden(
                "amr must be Application or external".into(),
            ));
        }
        self.require_scope("api")
    }

    /// Bitwarden's `"Internal"` policy (used by `SendController`): `scope`
    /// contains `internal`.
    pub fn require_internal(&self) -> Result<(), AuthError> {
        self.require_scope("internal")
    }

    /// `scope` must contain `scope`.
    pub fn require_scope(&self, scope: &str) -> Result<(), AuthError> {
        if self.has("scope", scope) {
            Ok(())
        } else {
            Err(AuthError::Forbidden(format!("scope `{scope}` required")))
        }
    }
}
