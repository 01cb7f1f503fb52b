//! Readiness of what the node depends on: database, bus, file storage.

use crate::Service;
use parley_core::api::ComponentStatus;
use std::collections::BTreeMap;
use std::time::Duration;

/// Each component by name, with its state.
pub type Readiness = BTreeMap<String, ComponentStatus>;

impl Service {
    /// Checks every component, each within `timeout`.
    pub async fn readiness(&self, timeout: Duration) -> Readiness {
        let mut components = BTreeMap::new();
        let db = component(self.store.ping(), None, timeout).await;
        components.insert("database".to_owned(), db);
        let bus = component(self.bus.check(), Some(self.bus.name()), timeout).await;
        components.insert("bus".to_owned(), bus);
        let storage = component(self.files.ready(), Some(self.files.name()), timeout).await;
        components.insert("storage".to_owned(), storage);
        components
    }
}

async fn component<E: std::fmt::Display>(
    check: impl std::future::Future<Output = Result<(), E>>,
    name: Option<&str>,
    timeout: Duration,
) -> ComponentStatus {
    let (status, message) = match tokio::time::timeout(timeout, check).await {
        Ok(Ok(())) => ("ready", name.map(str::to_owned)),
        Ok(Err(e)) => ("unavailable", Some(e.to_string())),
        Err(_) => (
            "unavailable",
            Some(format!("no answer within {} s", timeout.as_secs())),
        ),
    };
    ComponentStatus {
        status: status.into(),
        message,
    }
}
