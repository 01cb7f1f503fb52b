//! Command line: `parley [--config FILE] serve|migrate|config|admin …`.

use crate::config::{Config, CONFIG_ENV};
use crate::StartError;
use clap::{Parser, Subcommand};
use parley_core::InfobaseId;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(name = "parley", version, about = "Parley collaboration server")]
pub struct Cli {
    /// Configuration file (TOML). Environment variables PARLEY_SECTION__KEY
    /// override it.
    #[arg(long, short, global = true, env = CONFIG_ENV)]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server.
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Print the effective configuration (secrets redacted).
    Config,
    /// Administration.
    #[command(subcommand)]
    Admin(Admin),
}

#[derive(Debug, Subcommand)]
pub enum Admin {
    /// Subscribers (tenants).
    #[command(subcommand)]
    Subscribers(SubscribersCmd),
    /// Registered infobases.
    #[command(subcommand)]
    Infobases(InfobasesCmd),
    /// File storage.
    #[command(subcommand)]
    Storage(StorageCmd),
    /// List the nodes of the cluster with their session counts (needs
    /// `bus.kind = "redis"`).
    Nodes,
    /// Check the database, the bus and the file storage as configured and
    /// say what is wrong in detail (`/readyz` only says which).
    Status,
}

#[derive(Debug, Subcommand)]
pub enum StorageCmd {
    /// Verify credentials and bucket access (or the local directory), and
    /// explain what is wrong.
    Check,
}

#[derive(Debug, Subcommand)]
pub enum SubscribersCmd {
    /// List subscribers with their number of registered infobases.
    List,
}

#[derive(Debug, Subcommand)]
pub enum InfobasesCmd {
    /// List infobases (including unregistered ones).
    List,
    /// Unregister an infobase: its key and its users' tokens stop working.
    Unregister { id: InfobaseId },
}

pub async fn run(cli: Cli, cfg: Config) -> Result<(), StartError> {
    match cli.command {
        Command::Config => {
            print!("{}", cfg.redacted_toml());
            Ok(())
        }
        Command::Migrate => {
            let store = crate::migration_store(&cfg)?;
            store.migrate().await?;
            store.close().await;
            println!("migrations applied");
            Ok(())
        }
        Command::Serve => serve(cfg).await,
        Command::Admin(a) => admin(a, cfg).await,
    }
}

async fn serve(mut cfg: Config) -> Result<(), StartError> {
    cfg.ws.max_connections = crate::open_files::sessions_allowed(cfg.ws.max_connections);
    let store = crate::store(&cfg)?;
    if cfg.database.migrate_on_start {
        let migrations = crate::migration_store(&cfg)?;
        migrations.migrate().await?;
        migrations.close().await;
        tracing::info!("database schema up to date");
    }
    let state = crate::app_state(&cfg, store.clone()).await?;
    tracing::info!(bus = state.svc.bus_name(), "bus ready");
    state.svc.start_background();
    let tls = if cfg.http.tls_cert.is_empty() {
        None
    } else {
        Some(crate::tls::server_config(
            &cfg.http.tls_cert,
            &cfg.http.tls_key,
        )?)
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let bound = parley_gateway::server::start(
        state.clone(),
        parley_gateway::server::ServerOptions {
            bind: cfg.http.bind.clone(),
            workers: cfg.http.workers,
            request_timeout: Duration::from_secs(cfg.http.request_timeout_secs),
            shutdown_timeout: SHUTDOWN_GRACE,
            backlog: LISTEN_BACKLOG,
            tls,
        },
    )?;
    for addr in &bound.addrs {
        tracing::info!("listening on {scheme}://{addr}");
    }
    let server = bound.server;
    let handle = server.handle();
    let st = state.clone();
    actix_web::rt::spawn(async move {
        let signal = wait_for_signal().await;
        tracing::info!(
            signal,
            "shutting down: closing sessions with 1001, draining requests"
        );
        st.draining
            .store(true, std::sync::atomic::Ordering::Relaxed);
        // Sessions end with 1001 and finish their work (presence, close
        // frame) before the store closes; they run outside the server's
        // connection count, so this is the wait for them. Told again while
        // waiting: a session may have been opening when the first word went.
        let deadline = std::time::Instant::now() + SHUTDOWN_GRACE;
        loop {
            st.svc.going_away();
            let idle = st.session_tasks.wait_idle(Duration::from_millis(200)).await;
            if idle || std::time::Instant::now() >= deadline {
                break;
            }
        }
        let running = st.session_tasks.running();
        if running > 0 {
            tracing::warn!(running, "sessions still closing at shutdown");
        }
        st.svc.leave_cluster().await;
        handle.stop(true).await;
    });
    server.await?;
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// Longest wait for in-flight requests at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Connections the kernel queues while the node accepts (actix-web's
/// default; a reconnect storm arrives all at once).
const LISTEN_BACKLOG: u32 = 1024;

async fn wait_for_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = tokio::signal::ctrl_c() => "SIGINT",
            },
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                "SIGINT"
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "SIGINT"
    }
}

async fn admin(cmd: Admin, cfg: Config) -> Result<(), StartError> {
    let store = crate::store(&cfg)?;
    match cmd {
        Admin::Storage(StorageCmd::Check) => {
            let storage = parley_files::open(&cfg.files).await?;
            let what = match cfg.files.backend {
                parley_files::StorageKind::Local => {
                    format!("local directory {}", cfg.files.local_dir)
                }
                parley_files::StorageKind::S3 => format!(
                    "bucket {} at {}",
                    cfg.files.s3_bucket,
                    if cfg.files.s3_endpoint.is_empty() {
                        "AWS"
                    } else {
                        &cfg.files.s3_endpoint
                    }
                ),
            };
            storage.check().await?;
            println!("storage ok: {what} is reachable, readable and writable");
        }
        Admin::Status => {
            let mut failed = false;
            let mut show = |what: &str, r: Result<String, String>| match r {
                Ok(m) => println!("{what:<9} ready        {m}"),
                Err(e) => {
                    failed = true;
                    println!("{what:<9} unavailable  {e}");
                }
            };
            show(
                "database",
                store
                    .ping()
                    .await
                    .map(|()| "answers".to_owned())
                    .map_err(|e| e.to_string()),
            );
            let bus = match cfg.bus.redis_target() {
                Some(target) => parley_bus::list_nodes(&target, &cfg.bus.prefix)
                    .await
                    .map(|n| format!("redis answers; {} node(s) registered", n.len()))
                    .map_err(|e| e.to_string()),
                None => Ok("local (one node)".to_owned()),
            };
            show("bus", bus);
            let storage = match parley_files::open(&cfg.files).await {
                Ok(s) => s
                    .check()
                    .await
                    .map(|()| format!("{} reachable, readable and writable", s.name()))
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            show("storage", storage);
            if failed {
                return Err(StartError::Unready("a component is unavailable".into()));
            }
        }
        Admin::Nodes => {
            let Some(target) = cfg.bus.redis_target() else {
                println!("one node (bus.kind = \"local\"): nothing is registered");
                return Ok(());
            };
            let nodes = parley_bus::list_nodes(&target, &cfg.bus.prefix).await?;
            let now = chrono::Utc::now();
            println!(
                "{:<12}  {:<22}  {:>8}  {:>6}  {:<19}  state",
                "node", "address", "sessions", "users", "started"
            );
            for n in nodes {
                let state = if n.alive(now) {
                    "alive".to_owned()
                } else {
                    format!("silent since {}", n.heartbeat_at.format("%H:%M:%S"))
                };
                println!(
                    "{:<12}  {:<22}  {:>8}  {:>6}  {}  {}",
                    n.id,
                    n.addr,
                    n.sessions,
                    n.users,
                    n.started_at.format("%Y-%m-%d %H:%M:%S"),
                    state
                );
            }
        }
        Admin::Subscribers(SubscribersCmd::List) => {
            println!("{:<36}  {:<40}  {:>9}  created", "id", "email", "infobases");
            for s in store.list_subscribers().await? {
                println!(
                    "{:<36}  {:<40}  {:>9}  {}",
                    s.id,
                    s.email,
                    s.infobases,
                    s.created_at.format("%Y-%m-%d %H:%M:%S")
                );
            }
        }
        Admin::Infobases(InfobasesCmd::List) => {
            println!(
                "{:<36}  {:<30}  {:<30}  {:>6}  {:<19}  state",
                "id", "name", "subscriber", "users", "created"
            );
            for i in store.list_infobases().await? {
                let state = match i.unregistered_at {
                    Some(t) => format!("unregistered {}", t.format("%Y-%m-%d %H:%M:%S")),
                    None => "registered".into(),
                };
                println!(
                    "{:<36}  {:<30}  {:<30}  {:>6}  {}  {}",
                    i.id,
                    i.name.replace(['\n', '\t'], " "),
                    i.subscriber_email,
                    i.users,
                    i.created_at.format("%Y-%m-%d %H:%M:%S"),
                    state
                );
            }
        }
        Admin::Infobases(InfobasesCmd::Unregister { id }) => {
            let Some(users) = store.unregister_infobase(id).await? else {
                println!("infobase {id} is not registered");
                return Ok(());
            };
            println!("infobase {id} unregistered");
            // Its users' open sessions end on every node, as when the
            // infobase unregisters itself.
            if let Some(target) = cfg.bus.redis_target() {
                let env = parley_bus::Envelope::revocation(users, parley_bus::Revoke::Users);
                let nodes = parley_bus::publish_once(&target, &cfg.bus.prefix, &env).await?;
                println!("open sessions of its users closed on {nodes} node(s)");
            } else if !users.is_empty() {
                println!(
                    "bus.kind = \"local\": this command cannot reach the node's open sessions; \
                     they end when their tokens expire or the node restarts"
                );
            }
        }
    }
    Ok(())
}
