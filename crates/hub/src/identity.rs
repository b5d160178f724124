//! Who a connection belongs to, as decided when it was authenticated.

use std::sync::Arc;

/// The user a connection belongs to (if any) and the groups it joins once its handshake is
/// done. Group membership is fixed for the life of the connection, as in Bitwarden's hubs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Identity {
    pub user_id: Option<Arc<str>>,
    pub groups: Vec<Arc<str>>,
}
