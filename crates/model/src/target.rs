//! Whom a notification is for, in the terms of Bitwarden's hub groups and notification-hub tags.

use crate::client_type::ClientType;

/// Whom a notification is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Recipient {
    User(String),
    Organization(String),
    Installation(String),
}

/// A recipient, optionally narrowed to one client type (never `All`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub recipient: Recipient,
    pub client_type: Option<ClientType>,
}
