//! Wiring of the `parley` binary, shared with the integration tests so they
//! run exactly what `parley serve` runs.

pub mod cli;
pub mod config;

use actix_web::web;
use config::BusKind;
use config::Config;
use parley_bus::{Bus, LocalBus, RedisBus, RedisOptions};
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
    #[error("bus: {0}")]
    Bus(#[from] parley_bus::BusError),
    #[error("files: {0}")]
    Files(#[from] parley_files::FilesError),
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

/// The bus the configuration asks for.
pub async fn bus(cfg: &Config) -> Result<Arc<dyn Bus>, StartError> {
    Ok(match cfg.bus.kind {
        BusKind::Local => Arc::new(LocalBus::new()),
        BusKind::Redis => {
            let advertise = if cfg.bus.advertise.is_empty() {
                cfg.http.bind.clone()
            } else {
                cfg.bus.advertise.clone()
            };
            RedisBus::start(RedisOptions {
                url: cfg.bus.redis_url.clone(),
                prefix: cfg.bus.prefix.clone(),
                node_id: uuid::Uuid::new_v4().simple().to_string()[..12].to_owned(),
                advertise,
                heartbeat: Duration::from_secs(cfg.bus.heartbeat_secs),
                node_ttl: Duration::from_secs(cfg.bus.node_ttl_secs),
                publish_queue: cfg.bus.publish_queue,
            })
            .await?
        }
    })
}

/// The state every request handler shares.
pub async fn app_state(cfg: &Config, store: Store) -> Result<web::Data<AppState>, StartError> {
    let bus = bus(cfg).await?;
    let files = parley_files::open(&cfg.files).await?;
    Ok(web::Data::new(AppState {
        store,
        mailer: Mailer::new(&cfg.mail)?,
        http: cfg.http.clone(),
        registration: cfg.registration.clone(),
        auth: cfg.auth.clone(),
        ws: cfg.ws.clone(),
        limits: cfg.limits.clone(),
        files,
        files_cfg: cfg.files.clone(),
        web: cfg.web.clone(),
        bus,
        limiter: RateLimiter::new(),
        draining: Default::default(),
    }))
}
