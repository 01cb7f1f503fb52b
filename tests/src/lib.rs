//! Test harness: every test gets its own PostgreSQL database on the cluster
//! that `scripts/test.sh` started, the real application built exactly as
//! `parley serve` builds it, and the real SMTP server's mailbox to read codes
//! from.

pub mod browser;
pub mod chat;
pub mod cluster;
pub mod faults;
pub mod janus;
pub mod pooler;
pub mod push;
pub mod receiver;
pub mod redis_ha;
pub mod replica;
pub mod tls;
pub mod turn;

use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::test::{self, TestRequest};
use actix_web::web;
use base64::Engine;
use faults::{FaultBus, Proxy};
use parley_gateway::AppState;
use parley_mail::{Mailer, SmtpTls, Transport};
use parley_server::config::Config;
use parley_service::{Parts, Service as ChatService};
use serde_json::{json, Value};
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use actix_web;
pub use serde_json;

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the tests with scripts/test.sh, which starts PostgreSQL and SMTP")
    })
}

/// One test's world: a fresh database and the app state built on it.
pub struct TestEnv {
    pub cfg: Config,
    pub state: web::Data<AppState>,
    /// A pool on the test's database for checks the API does not expose.
    pub db: PgPool,
    /// The store on the test's database (direct, never through the proxy),
    /// for checks and admin operations.
    pub store: parley_store::Store,
    /// The bus the service publishes on, with fault controls.
    pub bus: Arc<FaultBus>,
    /// Between the service and PostgreSQL, when asked for: pauses the store.
    pub db_proxy: Option<Proxy>,
    /// PgBouncer in transaction mode between the service and PostgreSQL,
    /// when asked for.
    pub pgbouncer: Option<pooler::PgBouncer>,
    /// The test database's own URL (PostgreSQL itself).
    pub db_url: String,
}

/// How the service reaches PostgreSQL in a test.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Route {
    Direct,
    /// Through a [`Proxy`] that can pause it.
    Proxy,
    /// Through PgBouncer in transaction pooling mode, with this many server
    /// connections.
    PgBouncer(u32),
}

impl TestEnv {
    /// A new database with the schema applied; `tweak` adjusts the
    /// configuration (limits, mail) before the app is built.
    pub async fn new(tweak: impl FnOnce(&mut Config)) -> TestEnv {
        Self::build(tweak, Route::Direct).await
    }

    /// As [`TestEnv::new`], with the service reaching PostgreSQL through
    /// PgBouncer in transaction mode with `server_connections` (`pgbouncer`).
    pub async fn with_pgbouncer(
        server_connections: u32,
        tweak: impl FnOnce(&mut Config),
    ) -> TestEnv {
        Self::build(tweak, Route::PgBouncer(server_connections)).await
    }

    /// As [`TestEnv::new`], with the service reaching PostgreSQL through a
    /// [`Proxy`] (`db_proxy`) that can pause it.
    pub async fn with_db_proxy(tweak: impl FnOnce(&mut Config)) -> TestEnv {
        Self::build(tweak, Route::Proxy).await
    }

    /// As [`TestEnv::new`], on another PostgreSQL cluster (`admin_url`
    /// names its `postgres` database).
    pub async fn on_cluster(admin_url: &str, tweak: impl FnOnce(&mut Config)) -> TestEnv {
        Self::build_on(admin_url.to_owned(), tweak, Route::Direct).await
    }

    async fn build(tweak: impl FnOnce(&mut Config), route: Route) -> TestEnv {
        Self::build_on(var("PARLEY_TEST_DATABASE_URL"), tweak, route).await
    }

    async fn build_on(admin_url: String, tweak: impl FnOnce(&mut Config), route: Route) -> TestEnv {
        let name = format!("t_{}", uuid::Uuid::new_v4().simple());
        let admin = PgPoolOptions::new()
            .max_connections(1)
            .connect(&admin_url)
            .await
            .expect("connect to the test cluster");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&admin)
            .await
            .expect("create test database");
        admin.close().await;
        let db_url = match admin_url.rsplit_once('/') {
            Some((base, _)) => format!("{base}/{name}"),
            None => panic!("PARLEY_TEST_DATABASE_URL has no database part"),
        };

        let mut cfg = Config::default();
        cfg.database.url = db_url.clone();
        cfg.database.max_connections = 8;
        cfg.mail.transport = Transport::Smtp;
        cfg.mail.smtp_host = "127.0.0.1".into();
        cfg.mail.smtp_port = var("PARLEY_TEST_SMTP_PORT").parse().expect("SMTP port");
        cfg.mail.smtp_tls = SmtpTls::None;
        cfg.files.local_dir = std::env::temp_dir()
            .join(format!("parley-files-{name}"))
            .display()
            .to_string();
        tweak(&mut cfg);
        cfg.validate().expect("test configuration is valid");

        let direct = parley_server::store(&cfg).expect("store");
        direct.migrate().await.expect("migrate");
        let pgbouncer = if let Route::PgBouncer(servers) = route {
            let (host_port, target) = pg_address(&db_url);
            let bouncer =
                pooler::PgBouncer::start(&target.ip().to_string(), target.port(), servers).await;
            cfg.database.url =
                db_url.replacen(&host_port, &format!("127.0.0.1:{}", bouncer.port), 1);
            cfg.database.transaction_pooler = true;
            cfg.database.migrate_url = db_url.clone();
            cfg.validate().expect("the pooler configuration is valid");
            Some(bouncer)
        } else {
            None
        };
        let db_proxy = if route == Route::Proxy {
            let (host_port, target) = pg_address(&db_url);
            let proxy = Proxy::start(target).await;
            let mut svc_cfg = cfg.clone();
            svc_cfg.database.url = db_url.replacen(&host_port, &proxy.addr.to_string(), 1);
            cfg.database.url = svc_cfg.database.url;
            Some(proxy)
        } else {
            None
        };
        let store = parley_server::store(&cfg).expect("store");
        let bus = Arc::new(FaultBus::new(parley_server::bus(&cfg).await.expect("bus")));
        let parts = Parts {
            store,
            mailer: Mailer::new(&cfg.mail).expect("mailer"),
            bus: Arc::clone(&bus) as Arc<dyn parley_bus::Bus>,
            files: parley_files::open(&cfg.files).await.expect("files"),
            outbound: parley_service::outbound_for(&cfg.webhooks).expect("outbound"),
            push_outbound: parley_service::push_outbound_for(&cfg.push).expect("push outbound"),
        };
        parley_server::metrics_handle();
        let svc = Arc::new(ChatService::new(parts, parley_server::service_config(&cfg)));
        // As `parley serve` does (the other background loops would only
        // purge and sweep).
        svc.start_recovery();
        svc.start_call_sweeper();
        svc.start_feed();
        svc.start_push();
        svc.start_digests();
        let state = parley_server::app_state_for(&cfg, svc);
        let db = PgPoolOptions::new()
            .max_connections(2)
            .connect(&db_url)
            .await
            .expect("connect to the test database");
        TestEnv {
            cfg,
            state,
            db,
            store: direct,
            bus,
            db_proxy,
            pgbouncer,
            db_url,
        }
    }

    pub async fn default() -> TestEnv {
        Self::new(|_| {}).await
    }

    /// The real application, as `parley serve` builds it.
    pub async fn app(
        &self,
    ) -> impl Service<
        actix_http::Request,
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
    > {
        test::init_service(parley_gateway::app(self.state.clone())).await
    }

    /// Rows per table, to show that a refused request changed nothing.
    pub async fn counts(&self) -> Value {
        let mut out = serde_json::Map::new();
        for table in ["subscribers", "infobases", "users", "session_tokens"] {
            let n: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
                .fetch_one(&self.db)
                .await
                .expect("count");
            out.insert(table.into(), json!(n));
        }
        Value::Object(out)
    }
}

/// `host:port` of a PostgreSQL URL on loopback, and it as an address.
fn pg_address(url: &str) -> (String, SocketAddr) {
    let after_at = url.rsplit_once('@').map_or(url, |(_, rest)| rest);
    let host_port = after_at.split('/').next().unwrap_or(after_at).to_owned();
    let addr = host_port
        .parse()
        .expect("the test database is on 127.0.0.1:PORT");
    (host_port, addr)
}

/// How a request authenticates.
#[derive(Clone, Debug)]
pub enum Auth {
    None,
    Infobase(String, String),
    Token(String),
    Raw(String),
}

/// A response reduced to what tests look at.
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub body: Value,
    pub retry_after: Option<String>,
}

impl Resp {
    /// The error code of an error response.
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or("<no code>")
    }

    #[track_caller]
    pub fn expect_error(&self, status: u16, code: &str) {
        assert_eq!(
            (self.status.as_u16(), self.code()),
            (status, code),
            "unexpected answer: {self:?}"
        );
        assert!(
            self.body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "error without message: {self:?}"
        );
    }
}

/// Peer address used when a test does not pick one.
pub const PEER: &str = "127.0.0.1:40000";

pub async fn call<S, B>(app: &S, method: &str, path: &str, auth: &Auth, body: Option<Body>) -> Resp
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    call_from(app, PEER, method, path, auth, body).await
}

/// A body: JSON value or raw bytes.
pub enum Body {
    Json(Value),
    Raw(Vec<u8>),
}

pub async fn call_from<S, B>(
    app: &S,
    peer: &str,
    method: &str,
    path: &str,
    auth: &Auth,
    body: Option<Body>,
) -> Resp
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let method = actix_web::http::Method::from_bytes(method.as_bytes()).expect("method");
    let peer: SocketAddr = peer.parse().expect("peer address");
    let mut req = TestRequest::default()
        .method(method)
        .uri(path)
        .peer_addr(peer);
    req = match auth {
        Auth::None => req,
        Auth::Infobase(id, key) => {
            let b = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{key}"));
            req.insert_header(("authorization", format!("Basic {b}")))
        }
        Auth::Token(t) => req.insert_header(("authorization", format!("Bearer {t}"))),
        Auth::Raw(v) => req.insert_header(("authorization", v.clone())),
    };
    req = match body {
        None => req,
        Some(Body::Json(v)) => req
            .insert_header(("content-type", "application/json"))
            .set_payload(v.to_string()),
        Some(Body::Raw(b)) => req
            .insert_header(("content-type", "application/json"))
            .set_payload(b),
    };
    let res = test::call_service(app, req.to_request()).await;
    let status = res.status();
    let retry_after = res
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let bytes = test::read_body(res).await;
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or_else(|_| {
            panic!(
                "non-JSON answer {status}: {}",
                String::from_utf8_lossy(&bytes)
            )
        })
    };
    assert_ne!(status.as_u16(), 500, "internal error: {body}");
    Resp {
        status,
        body,
        retry_after,
    }
}

pub fn json_body(v: Value) -> Option<Body> {
    Some(Body::Json(v))
}

/// A unique e-mail for one test.
pub fn email(tag: &str) -> String {
    format!("{tag}-{}@example.com", uuid::Uuid::new_v4().simple())
}

/// Waits for the newest mail to `to` in the SMTP server's maildir and returns
/// the code in it.
pub async fn code_from_mail(to: &str) -> String {
    let dir = PathBuf::from(var("PARLEY_TEST_MAILDIR")).join("new");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let mut newest: Option<(std::time::SystemTime, String)> = None;
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                let Ok(text) = std::fs::read_to_string(e.path()) else {
                    continue;
                };
                if !text
                    .lines()
                    .any(|l| l.eq_ignore_ascii_case(&format!("To: {to}")))
                {
                    continue;
                }
                let modified = e
                    .metadata()
                    .and_then(|m| m.modified())
                    .unwrap_or(std::time::UNIX_EPOCH);
                if newest.as_ref().is_none_or(|(t, _)| modified >= *t) {
                    newest = Some((modified, text));
                }
            }
        }
        if let Some((_, text)) = newest {
            let marker = "registration code is ";
            let at = text.find(marker).expect("mail has a code") + marker.len();
            return text[at..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
        }
        assert!(
            Instant::now() < deadline,
            "no mail to {to} arrived in {}",
            dir.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The mails to `to` that have arrived, oldest first (raw).
pub fn mail_texts(to: &str) -> Vec<String> {
    let dir = PathBuf::from(var("PARLEY_TEST_MAILDIR")).join("new");
    let mut found: Vec<(std::time::SystemTime, String)> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| {
                    let text = std::fs::read_to_string(e.path()).ok()?;
                    let to_line = format!("To: {to}");
                    if !text.lines().any(|l| l.eq_ignore_ascii_case(&to_line)) {
                        return None;
                    }
                    let at = e.metadata().and_then(|m| m.modified()).ok()?;
                    Some((at, text))
                })
                .collect()
        })
        .unwrap_or_default();
    found.sort_by_key(|(at, _)| *at);
    found.into_iter().map(|(_, t)| t).collect()
}

/// How many mails to `to` have arrived.
pub fn mails_to(to: &str) -> usize {
    let dir = PathBuf::from(var("PARLEY_TEST_MAILDIR")).join("new");
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| {
                    std::fs::read_to_string(e.path()).is_ok_and(|t| {
                        t.lines()
                            .any(|l| l.eq_ignore_ascii_case(&format!("To: {to}")))
                    })
                })
                .count()
        })
        .unwrap_or(0)
}

/// A registered infobase: id and key.
#[derive(Clone, Debug)]
pub struct Ib {
    pub id: String,
    pub key: String,
    pub subscriber_id: String,
}

impl Ib {
    pub fn auth(&self) -> Auth {
        Auth::Infobase(self.id.clone(), self.key.clone())
    }
}

/// Registers an infobase through the API with the code read from the mail.
pub async fn register<S, B>(app: &S, email: &str, name: &str) -> Ib
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let r = call(
        app,
        "POST",
        "/v1/registration/code",
        &Auth::None,
        json_body(json!({ "email": email })),
    )
    .await;
    assert_eq!(r.status, 202, "{r:?}");
    let code = code_from_mail(email).await;
    let r = call(
        app,
        "POST",
        "/v1/registration/confirm",
        &Auth::None,
        json_body(json!({ "email": email, "code": code, "infobase_name": name })),
    )
    .await;
    assert_eq!(r.status, 201, "{r:?}");
    Ib {
        id: r.body["infobase_id"].as_str().expect("id").to_owned(),
        key: r.body["infobase_key"].as_str().expect("key").to_owned(),
        subscriber_id: r.body["subscriber_id"]
            .as_str()
            .expect("subscriber")
            .to_owned(),
    }
}

/// Creates (or updates) a user and returns its Parley id.
pub async fn user<S, B>(app: &S, ib: &Ib, external_id: &str) -> String
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let r = call(
        app,
        "POST",
        &format!("/v1/infobases/{}/users", ib.id),
        &ib.auth(),
        json_body(json!({ "external_id": external_id, "name": external_id })),
    )
    .await;
    assert!(r.status == 201 || r.status == 200, "{r:?}");
    r.body["user"]["id"].as_str().expect("user id").to_owned()
}

/// A bot user (`"bot": true`) of the infobase; its id.
pub async fn bot_user<S, B>(app: &S, ib: &Ib, external_id: &str, name: &str) -> String
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let r = call(
        app,
        "POST",
        &format!("/v1/infobases/{}/users", ib.id),
        &ib.auth(),
        json_body(json!({ "external_id": external_id, "name": name, "bot": true })),
    )
    .await;
    assert!(r.status == 201 || r.status == 200, "{r:?}");
    r.body["user"]["id"].as_str().expect("bot id").to_owned()
}

/// A real HTTP/WebSocket server on a loopback port, sharing the test's
/// state (so REST calls through [`TestEnv::app`] reach its sessions).
pub struct TestServer {
    pub addr: SocketAddr,
    pub handle: actix_web::dev::ServerHandle,
}

impl TestServer {
    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    pub async fn stop(&self) {
        self.handle.stop(false).await;
    }
}

impl TestEnv {
    /// Starts the application on 127.0.0.1 with one worker.
    pub async fn server(&self) -> TestServer {
        let state = self.state.clone();
        let bound = parley_gateway::server::start(
            state,
            parley_gateway::server::ServerOptions {
                bind: "127.0.0.1:0".into(),
                workers: 1,
                request_timeout: Duration::from_secs(5),
                shutdown_timeout: Duration::from_secs(1),
                backlog: 1024,
                tls: None,
            },
        )
        .expect("bind");
        let addr = bound.addrs[0];
        let handle = bound.server.handle();
        actix_web::rt::spawn(bound.server);
        TestServer { addr, handle }
    }
}

/// Issues a session token for a user through the API.
pub async fn token<S, B>(app: &S, ib: &Ib, user_id: &str) -> String
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let r = call(
        app,
        "POST",
        &format!("/v1/infobases/{}/users/{user_id}/tokens", ib.id),
        &ib.auth(),
        None,
    )
    .await;
    assert_eq!(r.status, 201, "{r:?}");
    r.body["token"].as_str().expect("token").to_owned()
}

/// Connects a client for a token.
pub async fn client(server: &TestServer, token: &str) -> parley_client::Client {
    let mut opts = parley_client::Options::new(server.ws_url(), token);
    opts.request_timeout = Duration::from_secs(20);
    opts.max_backoff = Duration::from_millis(500);
    parley_client::Client::connect(opts)
        .await
        .expect("client connects")
}

/// A second infobase of the same subscriber as `ib`.
pub async fn sibling<S, B>(app: &S, env: &TestEnv, ib: &Ib, name: &str) -> Ib
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let email: String = sqlx::query_scalar(
        "SELECT s.email FROM subscribers s JOIN infobases i ON i.subscriber_id = s.id WHERE i.id = $1::uuid",
    )
    .bind(&ib.id)
    .fetch_one(&env.db)
    .await
    .expect("subscriber email");
    register(app, &email, name).await
}
