//! The in-process bus of a single node: publishing is delivering.

use crate::{Bus, BusError, Envelope, Hub};
use futures_util::future::BoxFuture;
use parley_core::UserId;
use std::sync::Arc;

#[derive(Debug, Default)]
pub struct LocalBus {
    hub: Hub,
}

impl LocalBus {
    pub fn new() -> Self {
        Self::default()
    }
}

impl Bus for LocalBus {
    fn publish(&self, envelope: Arc<Envelope>) {
        self.hub.deliver(&envelope);
    }

    fn hub(&self) -> &Hub {
        &self.hub
    }

    fn online(&self, users: Vec<UserId>) -> BoxFuture<'_, Result<Vec<bool>, BusError>> {
        let out = users.iter().map(|u| self.hub.sessions_of(*u) > 0).collect();
        Box::pin(async move { Ok(out) })
    }

    fn check(&self) -> BoxFuture<'_, Result<(), BusError>> {
        Box::pin(async { Ok(()) })
    }

    fn name(&self) -> &'static str {
        "in-process"
    }

    fn session_opened(&self, _user: UserId) -> BoxFuture<'_, bool> {
        Box::pin(async { true })
    }

    fn session_closed(&self, _user: UserId) -> BoxFuture<'_, bool> {
        Box::pin(async { true })
    }

    fn take_departures(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<UserId>> {
        None
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}
