//! Readiness of what the node depends on: database, bus, file storage.
//! Checked at most once a second whatever the number of callers (`/readyz`
//! is public; no check writes anything), and answered without the
//! components' error texts, which name internal hosts: those go to the log
//! and to `parley admin status`.

use crate::Service;
use parley_core::api::ComponentStatus;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How long one check answers `/readyz`.
const FRESH_FOR: Duration = Duration::from_secs(1);

/// Each component by name, with its state.
pub type Readiness = BTreeMap<String, ComponentStatus>;

impl Service {
    /// Every component's state, checked again when the last check is older
    /// than a second (one caller checks; the others wait for its answer).
    pub async fn readiness(&self, timeout: Duration) -> Readiness {
        let mut last = self.readiness.lock().await;
        if let Some((at, r)) = last.as_ref() {
            if at.elapsed() < FRESH_FOR {
                return r.clone();
            }
        }
        let fresh = self.check_components(timeout).await;
        *last = Some((Instant::now(), fresh.clone()));
        fresh
    }

    /// Checks every component, each within `timeout`.
    async fn check_components(&self, timeout: Duration) -> Readiness {
        let mut components = BTreeMap::new();
        let db = component(self.store.ping(), None, timeout).await;
        components.insert("database".to_owned(), db);
        let bus = component(self.bus.check(), Some(self.bus.name()), timeout).await;
        components.insert("bus".to_owned(), bus);
        let storage = component(self.files.ready(), Some(self.files.name()), timeout).await;
        components.insert("storage".to_owned(), storage);
        if self.media.configured() {
            let media = component(self.media.check(), Some("janus"), timeout).await;
            components.insert("media".to_owned(), media);
        }
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
        Ok(Err(e)) => {
            tracing::warn!(component = name.unwrap_or("database"), error = %e, "not ready");
            (
                "unavailable",
                Some("failed its check (see the node's log)".to_owned()),
            )
        }
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
