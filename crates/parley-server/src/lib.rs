//! Wiring of the `parley` binary, shared with the integration tests so they
//! run exactly what `parley serve` runs.

pub mod cli;
pub mod config;

use actix_web::web;
use config::BusKind;
use config::Config;
use parley_bus::{Bus, LocalBus, RedisBus, RedisOptions};
use parley_gateway::AppState;
use parley_mail::Mailer;
use parley_service::{Parts, Service, ServiceConfig};
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

/// The service with every part the configuration asks for.
pub async fn service(cfg: &Config, store: Store) -> Result<Arc<Service>, StartError> {
    let parts = Parts {
        store,
        mailer: Mailer::new(&cfg.mail)?,
        bus: bus(cfg).await?,
        files: parley_files::open(&cfg.files).await?,
    };
    Ok(Arc::new(Service::new(parts, service_config(cfg))))
}

/// The sections of the configuration that the domain rules read.
pub fn service_config(cfg: &Config) -> ServiceConfig {
    ServiceConfig {
        registration: cfg.registration.clone(),
        auth: cfg.auth.clone(),
        limits: cfg.limits.clone(),
        files: cfg.files.clone(),
        maintenance: cfg.maintenance.clone(),
        dev_signin: cfg.web.dev_signin,
    }
}

/// The state every request handler shares, around a service.
pub fn app_state_for(cfg: &Config, svc: Arc<Service>) -> web::Data<AppState> {
    web::Data::new(AppState {
        svc,
        http: cfg.http.clone(),
        ws: cfg.ws.clone(),
        web: cfg.web.clone(),
        draining: Default::default(),
    })
}

/// The state every request handler shares.
pub async fn app_state(cfg: &Config, store: Store) -> Result<web::Data<AppState>, StartError> {
    Ok(app_state_for(cfg, service(cfg, store).await?))
}
