//! What each provider's last outcome says about its configuration, for logs and `/health`.

use std::collections::HashMap;

use parking_lot::Mutex;
use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProviderHealth {
    pub configured: bool,
    /// The configuration error every push to this provider currently fails with.
    pub error: Option<String>,
    /// Unix ms of the error's first occurrence.
    pub error_since_ms: Option<i64>,
}

/// Per-provider configuration state. A configuration error is logged once, loudly, when it
/// first appears (not once per push), and again when it clears.
/// Keyed by provider name: `apns`, `fcm`, `webpush`, and `relay` for an upstream relay.
#[derive(Default)]
pub struct Health {
    errors: Mutex<HashMap<&'static str, (String, i64)>>,
}

impl Health {
    pub fn config_error(&self, provider: &'static str, reason: &str, now_ms: i64) {
        let mut errors = self.errors.lock();
        let changed = errors.get(&provider).is_none_or(|(r, _)| r != reason);
        if changed {
            tracing::error!(
                provider,
                %reason,
                "push provider misconfigured: pushes to it are kept and retried until the configuration is fixed or they expire"
            );
            errors.insert(provider, (reason.to_owned(), now_ms));
        }
    }

    pub fn ok(&self, provider: &'static str) {
        if self.errors.lock().remove(provider).is_some() {
            tracing::info!(provider, "push provider works again");
        }
    }

    /// The state of each named provider; `configured` says which are set up.
    pub fn snapshot(
        &self,
        providers: &[(&'static str, bool)],
    ) -> HashMap<&'static str, ProviderHealth> {
        let errors = self.errors.lock();
        providers
            .iter()
            .map(|&(p, configured)| {
                let error = errors.get(p);
                (
                    p,
                    ProviderHealth {
                        configured,
                        error: error.map(|(r, _)| r.clone()),
                        error_since_ms: error.map(|(_, t)| *t),
                    },
                )
            })
            .collect()
    }
}
