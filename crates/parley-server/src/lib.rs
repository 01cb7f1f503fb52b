//! Wiring of the `parley` binary, shared with the integration tests so they
//! run exactly what `parley serve` runs.

pub mod cli;
pub mod config;
pub mod open_files;
pub mod tls;

use actix_web::web;
use config::Config;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use parley_bus::{Bus, LocalBus, RedisBus, RedisOptions};
use parley_gateway::AppState;
use parley_mail::Mailer;
use parley_service::{Parts, Service, ServiceConfig};
use parley_store::{Store, StoreOptions};
use std::sync::{Arc, OnceLock};
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
    #[error("outgoing http: {0}")]
    Outbound(#[from] parley_outbound::OutboundError),
    #[error("tls: {0}")]
    Tls(String),
    /// `parley admin status` found a component unavailable (it printed which).
    #[error("{0}")]
    Unready(String),
}

pub fn store(cfg: &Config) -> Result<Store, StartError> {
    Ok(Store::connect_lazy(&StoreOptions {
        url: cfg.database.url.clone(),
        max_connections: cfg.database.max_connections,
        acquire_timeout: Duration::from_secs(cfg.database.acquire_timeout_secs),
        transaction_pooler: cfg.database.transaction_pooler,
        read_url: Some(cfg.database.read_url.clone()).filter(|u| !u.is_empty()),
    })?)
}

/// The store migrations run on: `database.migrate_url` when set (PostgreSQL
/// itself, not a transaction-mode pooler), else the nodes' own.
pub fn migration_store(cfg: &Config) -> Result<Store, StartError> {
    if cfg.database.migrate_url.is_empty() {
        return store(cfg);
    }
    Ok(Store::connect_lazy(&StoreOptions {
        url: cfg.database.migrate_url.clone(),
        max_connections: 1,
        acquire_timeout: Duration::from_secs(cfg.database.acquire_timeout_secs),
        transaction_pooler: false,
        read_url: None,
    })?)
}

/// The bus the configuration asks for.
pub async fn bus(cfg: &Config) -> Result<Arc<dyn Bus>, StartError> {
    Ok(match cfg.bus.redis_target() {
        None => Arc::new(LocalBus::new()),
        Some(target) => {
            let advertise = if cfg.bus.advertise.is_empty() {
                cfg.http.bind.clone()
            } else {
                cfg.bus.advertise.clone()
            };
            RedisBus::start(RedisOptions {
                target,
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
        outbound: parley_service::outbound_for(&cfg.webhooks)?,
        push_outbound: parley_service::push_outbound_for(&cfg.push)?,
    };
    // The recorder first: the service registers its counters when built.
    metrics_handle();
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
        commit: cfg.commit.clone(),
        recovery: cfg.recovery.clone(),
        calls: cfg.calls.clone(),
        feed: cfg.feed.clone(),
        webhooks: cfg.webhooks.clone(),
        push: cfg.push.clone(),
        digest: cfg.digest.clone(),
        dev_signin: cfg.web.dev_signin,
    }
}

/// The process's metrics recorder, installed on first use (one per
/// process: the `metrics` facade is global).
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Suffix("_seconds".into()),
                    &[
                        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                        5.0,
                    ],
                )
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("parley_fanout_targets".into()),
                        &[1.0, 2.0, 5.0, 10.0, 50.0, 100.0, 500.0, 1000.0, 5000.0],
                    )
                });
            match builder {
                Ok(b) => {
                    let recorder = b.build_recorder();
                    let handle = recorder.handle();
                    if metrics::set_global_recorder(recorder).is_err() {
                        tracing::warn!("a metrics recorder was installed already");
                    }
                    handle
                }
                Err(e) => {
                    tracing::warn!(error = %e, "metrics buckets refused; plain recorder");
                    PrometheusBuilder::new().build_recorder().handle()
                }
            }
        })
        .clone()
}

/// The state every request handler shares, around a service.
pub fn app_state_for(cfg: &Config, svc: Arc<Service>) -> web::Data<AppState> {
    let metrics = metrics_handle();
    web::Data::new(AppState {
        svc,
        http: cfg.http.clone(),
        ws: cfg.ws.clone(),
        web: cfg.web.clone(),
        draining: Default::default(),
        metrics,
        session_tasks: Default::default(),
    })
}

/// The state every request handler shares.
pub async fn app_state(cfg: &Config, store: Store) -> Result<web::Data<AppState>, StartError> {
    Ok(app_state_for(cfg, service(cfg, store).await?))
}
