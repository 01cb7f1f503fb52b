//! What every handler and session shares.

use crate::config::{
    AuthConfig, HttpConfig, LimitsConfig, RegistrationConfig, WebConfig, WsConfig,
};
use crate::ratelimit::RateLimiter;
use parley_bus::Bus;
use parley_files::{FilesConfig, Storage};
use parley_mail::Mailer;
use parley_store::Store;
use std::sync::Arc;

pub struct AppState {
    pub store: Store,
    pub mailer: Mailer,
    pub bus: Arc<dyn Bus>,
    pub http: HttpConfig,
    pub registration: RegistrationConfig,
    pub auth: AuthConfig,
    pub ws: WsConfig,
    pub limits: LimitsConfig,
    pub files: Arc<dyn Storage>,
    pub files_cfg: FilesConfig,
    pub web: WebConfig,
    pub limiter: RateLimiter,
    /// Set on shutdown: `/readyz` answers 503 so balancers stop sending.
    pub draining: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("bus", &self.bus.name())
            .field("sessions", &self.bus.hub().session_count())
            .finish_non_exhaustive()
    }
}
