//! What every handler and session shares: the service and the settings of
//! the HTTP and WebSocket faces.

use crate::config::{HttpConfig, WebConfig, WsConfig};
use metrics_exporter_prometheus::PrometheusHandle;
use parley_service::Service;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub struct AppState {
    pub svc: Arc<Service>,
    pub http: HttpConfig,
    pub ws: WsConfig,
    pub web: WebConfig,
    /// Set on shutdown: `/readyz` answers 503 so balancers stop sending.
    pub draining: AtomicBool,
    /// Renders this process's metrics (`GET /metrics`).
    pub metrics: PrometheusHandle,
    /// WebSocket session tasks still running (shutdown waits for them).
    pub session_tasks: SessionTasks,
}

/// Counts the session tasks: they run outside the HTTP server's connection
/// accounting, so stopping the server does not wait for them.
#[derive(Default)]
pub struct SessionTasks {
    running: AtomicUsize,
    done: tokio::sync::Notify,
}

/// Held by a session task for its whole life.
pub struct SessionTask<'a>(&'a SessionTasks);

impl SessionTasks {
    pub fn enter(&self) -> SessionTask<'_> {
        self.running.fetch_add(1, Ordering::AcqRel);
        SessionTask(self)
    }

    pub fn running(&self) -> usize {
        self.running.load(Ordering::Acquire)
    }

    /// Waits until no session task runs, at most `limit`; whether none does.
    pub async fn wait_idle(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.done.notified();
            if self.running() == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.running() == 0;
            }
        }
    }
}

impl Drop for SessionTask<'_> {
    fn drop(&mut self) {
        if self.0.running.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.done.notify_waiters();
        }
    }
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("svc", &self.svc)
            .field("sessions", &self.svc.session_count())
            .finish_non_exhaustive()
    }
}
