//! Wiring of the `parley` binary, shared with the integration tests so they
//! run exactly what `parley serve` runs.

pub mod cli;
pub mod config;

use actix_web::web;
use config::Config;
use parley_bus::LocalBus;
use parley_gateway::ratelimit::RateLimiter;
use parley_gateway::AppState;
use parley_mail::Mailer;
use parley_store::{Store, StoreOptions};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("database: {0}")]
    Store(#[from] parley_store::StoreError),
    #[error("mail: {0}")]
    Mail(#[from] parley_mail::MailError),
    #[error("http: {0}")]
    Io(#[from] std::io::Error),
}

pub fn store(cfg: &Config) -> Result<Store, StartError> {
    Ok(Store::connect_lazy(&StoreOptions {
        url: cfg.database.url.clone(),
        max_connections: cfg.database.max_connections,
        acquire_timeout: Duration::from_secs(cfg.database.acquire_timeout_secs),
    })?)
}

/// The state every request handler shares.
pub fn app_state(cfg: &Config, store: Store) -> Result<web::Data<AppState>, StartError> {
    Ok(web::Data::new(AppState {
        store,
        mailer: Mailer::new(&cfg.mail)?,
        http: cfg.http.clone(),
        registration: cfg.registration.clone(),
        auth: cfg.auth.clone(),
        ws: cfg.ws.clone(),
        limits: cfg.limits.clone(),
        bus: Arc::new(LocalBus::new()),
        limiter: RateLimiter::new(),
    }))
}
