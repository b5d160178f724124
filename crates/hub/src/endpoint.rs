//! A hub as a transport endpoint: authentication by the layer above, sessions by the hub.

use std::future::Future;
use std::sync::Arc;

use pushwarden_transport::{ConnectionInfo, Endpoint, Rejection, RequestInfo};

use crate::hub::Hub;
use crate::identity::Identity;
use crate::session::HubSession;

/// Decides who a request comes from and which groups its connection joins.
pub trait Authenticator: Send + Sync + 'static {
    fn authenticate(
        &self,
        request: &RequestInfo,
    ) -> impl Future<Output = Result<Identity, Rejection>> + Send;
}

/// Mounts a [`Hub`] on the transports, with an [`Authenticator`] in front of it.
pub struct HubEndpoint<A> {
    hub: Arc<Hub>,
    authenticator: A,
}

impl<A: Authenticator> HubEndpoint<A> {
    pub fn new(hub: Arc<Hub>, authenticator: A) -> Self {
        Self { hub, authenticator }
    }

    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }
}

impl<A: Authenticator> Endpoint for HubEndpoint<A> {
    type Principal = Identity;
    type Session = HubSession;

    fn authenticate(
        &self,
        request: &RequestInfo,
    ) -> impl Future<Output = Result<Identity, Rejection>> + Send {
        self.authenticator.authenticate(request)
    }

    fn same_principal(&self, opened_by: &Identity, request: &Identity) -> bool {
        opened_by == request
    }

    fn allows_stateful_reconnect(&self) -> bool {
        self.hub.options().stateful_reconnect
    }

    fn open(&self, principal: &Identity, info: ConnectionInfo) -> Arc<HubSession> {
        self.hub.open(principal.clone(), info)
    }
}
