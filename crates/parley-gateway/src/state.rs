//! What every handler and session shares: the service and the settings of
//! the HTTP and WebSocket faces.

use crate::config::{HttpConfig, WebConfig, WsConfig};
use metrics_exporter_prometheus::PrometheusHandle;
use parley_service::Service;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

pub struct AppState {
    pub svc: Arc<Service>,
    pub http: HttpConfig,
    pub ws: WsConfig,
    pub web: WebConfig,
    /// Set on shutdown: `/readyz` answers 503 so balancers stop sending.
    pub draining: AtomicBool,
    /// Renders this process's metrics (`GET /metrics`).
    pub metrics: PrometheusHandle,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("svc", &self.svc)
            .field("sessions", &self.svc.session_count())
            .finish_non_exhaustive()
    }
}
