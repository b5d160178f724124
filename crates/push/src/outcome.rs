//! One outcome type for every provider, phrased as what the delivery queue does next.

use std::time::Duration;

use crate::{apns, fcm, webpush};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The provider accepted the push (which is not a promise the device gets it).
    Delivered,
    /// The token or subscription is dead: remove the registration unless it was renewed after
    /// `at_ms` (APNs says when it learnt; otherwise now).
    Gone { reason: String, at_ms: Option<i64> },
    /// Transient (throttling, server errors, network): try again, no sooner than `after`.
    /// `throttled` when the provider answered 429 (FCM QUOTA_EXCEEDED, APNs TooManyRequests,
    /// a Web Push service's 429): it asks for fewer requests, which the provider's
    /// [`Lane`](crate::lanes::Lane) hears as [`Feedback::Throttled`](crate::lanes::Feedback).
    Retry {
        after: Option<Duration>,
        reason: String,
        throttled: bool,
    },
    /// This push can never be delivered as it is (too large, malformed): drop it.
    Rejected { reason: String },
    /// The operator's configuration is wrong (credentials, topic, key). Every push to this
    /// provider fails alike; they are kept and retried so a fixed configuration delivers them.
    Misconfigured { reason: String },
}

impl Outcome {
    /// Short label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Delivered => "delivered",
            Outcome::Gone { .. } => "gone",
            Outcome::Retry { .. } => "retry",
            Outcome::Rejected { .. } => "rejected",
            Outcome::Misconfigured { .. } => "misconfigured",
        }
    }
}

impl From<apns::Outcome> for Outcome {
    fn from(o: apns::Outcome) -> Self {
        match o {
            apns::Outcome::Delivered { .. } => Outcome::Delivered,
            apns::Outcome::Gone {
                reason,
                timestamp_ms,
            } => Outcome::Gone {
                reason,
                at_ms: timestamp_ms.and_then(|t| i64::try_from(t).ok()),
            },
            apns::Outcome::Retry {
                after,
                reason,
                throttled,
            } => Outcome::Retry {
                after,
                reason,
                throttled,
            },
            apns::Outcome::Permanent {
                status,
                reason,
                config_error,
            } => {
                let reason = format!("APNs {status}: {reason}");
                if config_error {
                    Outcome::Misconfigured { reason }
                } else {
                    Outcome::Rejected { reason }
                }
            }
        }
    }
}

impl From<fcm::Outcome> for Outcome {
    fn from(o: fcm::Outcome) -> Self {
        match o {
            fcm::Outcome::Delivered { .. } => Outcome::Delivered,
            fcm::Outcome::Gone => Outcome::Gone {
                reason: "UNREGISTERED".into(),
                at_ms: None,
            },
            fcm::Outcome::Retry {
                after,
                reason,
                throttled,
            } => Outcome::Retry {
                after,
                reason,
                throttled,
            },
            // No HTTP status means the OAuth grant failed; 401/403 are credentials or project
            // (THIRD_PARTY_AUTH_ERROR, SENDER_ID_MISMATCH, PERMISSION_DENIED).
            fcm::Outcome::Permanent { status, reason } => match status.map(|s| s.as_u16()) {
                None | Some(401) | Some(403) => Outcome::Misconfigured {
                    reason: format!("FCM: {reason}"),
                },
                Some(s) => Outcome::Rejected {
                    reason: format!("FCM {s}: {reason}"),
                },
            },
        }
    }
}

impl From<webpush::Outcome> for Outcome {
    fn from(o: webpush::Outcome) -> Self {
        match o {
            webpush::Outcome::Delivered => Outcome::Delivered,
            webpush::Outcome::Gone => Outcome::Gone {
                reason: "subscription gone (404/410)".into(),
                at_ms: None,
            },
            webpush::Outcome::Retry { after, throttled } => Outcome::Retry {
                after,
                reason: if throttled {
                    "push service throttled us (429)".into()
                } else {
                    "push service busy".into()
                },
                throttled,
            },
            webpush::Outcome::Unreachable { reason } => Outcome::Retry {
                after: None,
                reason: format!("push service unreachable: {reason}"),
                throttled: false,
            },
            // The name points somewhere we never connect to; retrying cannot help.
            webpush::Outcome::Refused { reason } => Outcome::Rejected {
                reason: format!("Web Push endpoint refused: {reason}"),
            },
            // A push service refusing our VAPID signature refuses every push alike.
            webpush::Outcome::Permanent { status, body } if status == 401 || status == 403 => {
                Outcome::Misconfigured {
                    reason: format!("Web Push {status}: {body}"),
                }
            }
            webpush::Outcome::Permanent { status, body } => Outcome::Rejected {
                reason: format!("Web Push {status}: {body}"),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttled(outcome: Outcome) -> Option<bool> {
        match outcome {
            Outcome::Retry { throttled, .. } => Some(throttled),
            _ => None,
        }
    }

    #[test]
    fn only_a_429_is_throttling() {
        let secs = Some(Duration::from_secs(3));
        assert_eq!(
            Outcome::from(apns::Outcome::Retry {
                after: secs,
                reason: "TooManyRequests".into(),
                throttled: true,
            }),
            Outcome::Retry {
                after: secs,
                reason: "TooManyRequests".into(),
                throttled: true,
            }
        );
        assert_eq!(
            throttled(
                apns::Outcome::Retry {
                    after: None,
                    reason: "InternalServerError".into(),
                    throttled: false,
                }
                .into()
            ),
            Some(false)
        );
        assert_eq!(
            Outcome::from(fcm::Outcome::Retry {
                after: secs,
                reason: "FCM answered 429 QUOTA_EXCEEDED".into(),
                throttled: true,
            }),
            Outcome::Retry {
                after: secs,
                reason: "FCM answered 429 QUOTA_EXCEEDED".into(),
                throttled: true,
            }
        );
        assert_eq!(
            throttled(
                fcm::Outcome::Retry {
                    after: None,
                    reason: "FCM answered 503 UNAVAILABLE".into(),
                    throttled: false,
                }
                .into()
            ),
            Some(false)
        );
        assert_eq!(
            Outcome::from(webpush::Outcome::Retry {
                after: secs,
                throttled: true,
            }),
            Outcome::Retry {
                after: secs,
                reason: "push service throttled us (429)".into(),
                throttled: true,
            }
        );
        assert_eq!(
            throttled(
                webpush::Outcome::Retry {
                    after: None,
                    throttled: false,
                }
                .into()
            ),
            Some(false)
        );
        assert_eq!(
            throttled(
                webpush::Outcome::Unreachable {
                    reason: "timed out".into(),
                }
                .into()
            ),
            Some(false)
        );
    }
}
