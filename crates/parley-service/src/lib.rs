//! Every rule of Parley's domain: registration, users and tokens,
//! conversations, contexts and grants, messages, read markers, presence,
//! files and notifications. The REST API and the WebSocket sessions parse
//! their input, call one function here and map its answer to their wire
//! form; neither talks to the store, the bus or the file storage itself.
//!
//! A rule validates everything it can before it acts, so a refused request
//! changes nothing. Changes that belong to a conversation's history commit
//! with the members at commit (read under the conversation's lock), and the
//! fan-out goes to exactly those users.

pub mod config;
pub mod error;
pub mod ratelimit;

mod actions;
mod auth;
mod background;
mod calls;
mod commit;
mod conversations;
mod digest;
mod fanout;
mod feed;
mod files;
mod gaps;
mod health;
mod hooks;
mod infobases;
mod messages;
mod metrics;
mod presence;
mod push;
mod recovery;
mod registration;
mod resyncs;
mod search;
mod sessions;
mod tickets;
mod webhooks;

pub use conversations::{ConversationUpdate, NewByInfobase, Opened};
pub use error::{Error, Result};
pub use fanout::frame_text;
pub use files::Download;
pub use gaps::MissedEvents;
pub use health::Readiness;
pub use infobases::UserQuery;
pub use messages::{HistoryQuery, Posted};
pub use parley_store::TokenSession;
pub use sessions::SessionStart;

use config::{
    AuthConfig, CallsConfig, CommitConfig, DigestConfig, FeedConfig, LimitsConfig,
    MaintenanceConfig, PushConfig, RecoveryConfig, RegistrationConfig, WebhooksConfig,
};
use parley_bus::Bus;
use parley_files::{FilesConfig, Storage};
use parley_mail::Mailer;
use parley_store::Store;
use ratelimit::RateLimiter;
use std::sync::Arc;

/// The configuration the rules read.
#[derive(Clone, Debug, Default)]
pub struct ServiceConfig {
    pub registration: RegistrationConfig,
    pub auth: AuthConfig,
    pub limits: LimitsConfig,
    pub files: FilesConfig,
    pub maintenance: MaintenanceConfig,
    pub commit: CommitConfig,
    pub recovery: RecoveryConfig,
    pub calls: CallsConfig,
    pub feed: FeedConfig,
    pub webhooks: WebhooksConfig,
    pub push: PushConfig,
    pub digest: DigestConfig,
    /// `POST /v1/dev/signin` is allowed (development only).
    pub dev_signin: bool,
}

/// The parts the rules act on.
pub struct Parts {
    pub store: Store,
    pub mailer: Mailer,
    pub bus: Arc<dyn Bus>,
    pub files: Arc<dyn Storage>,
    /// Outgoing HTTP (webhooks), built for `webhooks.*` by [`outbound_for`].
    pub outbound: parley_outbound::Outbound,
    /// Outgoing HTTP to push services, built for `push.*` by
    /// [`push_outbound_for`].
    pub push_outbound: parley_outbound::Outbound,
}

/// The outgoing HTTP client the webhooks configuration asks for.
pub fn outbound_for(
    cfg: &WebhooksConfig,
) -> Result<parley_outbound::Outbound, parley_outbound::OutboundError> {
    outbound(cfg.allow_private_targets, cfg.timeout_secs)
}

/// The outgoing HTTP client the push configuration asks for.
pub fn push_outbound_for(
    cfg: &PushConfig,
) -> Result<parley_outbound::Outbound, parley_outbound::OutboundError> {
    outbound(cfg.allow_private_targets, cfg.timeout_secs)
}

fn outbound(
    allow_private: bool,
    timeout_secs: u64,
) -> Result<parley_outbound::Outbound, parley_outbound::OutboundError> {
    parley_outbound::Outbound::new(allow_private, std::time::Duration::from_secs(timeout_secs))
}

pub struct Service {
    store: Store,
    mailer: Mailer,
    bus: Arc<dyn Bus>,
    files: Arc<dyn Storage>,
    cfg: ServiceConfig,
    limiter: RateLimiter,
    metrics: metrics::Metrics,
    commit: commit::GroupCommit,
    /// The key that signs file links, read once (see tickets.rs).
    link_key: tokio::sync::OnceCell<Vec<u8>>,
    /// Group calls' rooms (Janus); unconfigured without `calls.janus_urls`.
    media: parley_media::Janus,
    /// Where the sweep of stray upload objects goes on (see files.rs).
    stray_cursor: std::sync::Mutex<Option<String>>,
    /// The last readiness check and when it was made (see health.rs).
    readiness: tokio::sync::Mutex<Option<(std::time::Instant, Readiness)>>,
    /// The newest feed id this node knows of; long-polls wait on it.
    feed_head: tokio::sync::watch::Sender<i64>,
    /// Some infobase's feed carries presence changes (feed.rs).
    presence_feeds: std::sync::atomic::AtomicBool,
    /// The key webhook secrets are derived from, read once (webhooks.rs).
    webhook_key: tokio::sync::OnceCell<Vec<u8>>,
    /// Wakes an idle webhook worker: work was found or queued (webhooks.rs).
    webhook_wake: tokio::sync::Notify,
    /// An idle webhook worker looks for due deliveries every `poll_ms`.
    webhook_polling: std::sync::atomic::AtomicBool,
    outbound: parley_outbound::Outbound,
    /// Web Push: the commit side (push.rs), the VAPID key read once, the
    /// client to push services.
    push_tap: Arc<push::PushTap>,
    vapid: tokio::sync::OnceCell<parley_outbound::webpush::VapidKey>,
    push_out: parley_outbound::Outbound,
    /// Reads of what sessions miss behind a gap, one per range (gaps.rs).
    gap_reads: gaps::GapReads,
    seq_reads: resyncs::SeqReads,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("bus", &self.bus.name())
            .field("files", &self.files.name())
            .finish_non_exhaustive()
    }
}

impl Service {
    /// Builds the service and starts its commit workers on the current
    /// Tokio runtime.
    pub fn new(parts: Parts, cfg: ServiceConfig) -> Self {
        let metrics = metrics::Metrics::new();
        let push_tap = push::PushTap::new(cfg.push.enabled, cfg.push.queue);
        let commit = commit::GroupCommit::start(
            &cfg.commit,
            &parts.store,
            &parts.bus,
            &push_tap,
            metrics.for_commit(),
        );
        let media = parley_media::Janus::new(
            cfg.calls.janus_urls.clone(),
            cfg.calls.janus_admin_key.clone(),
            std::time::Duration::from_secs(cfg.calls.janus_timeout_secs),
        );
        Self {
            store: parts.store,
            mailer: parts.mailer,
            bus: parts.bus,
            files: parts.files,
            cfg,
            limiter: RateLimiter::new(),
            metrics,
            commit,
            link_key: tokio::sync::OnceCell::new(),
            media,
            stray_cursor: std::sync::Mutex::new(None),
            readiness: tokio::sync::Mutex::new(None),
            feed_head: tokio::sync::watch::Sender::new(0),
            presence_feeds: std::sync::atomic::AtomicBool::new(false),
            webhook_key: tokio::sync::OnceCell::new(),
            webhook_wake: tokio::sync::Notify::new(),
            webhook_polling: std::sync::atomic::AtomicBool::new(false),
            outbound: parts.outbound,
            push_tap,
            vapid: tokio::sync::OnceCell::new(),
            push_out: parts.push_outbound,
            gap_reads: gaps::GapReads::default(),
            seq_reads: resyncs::SeqReads::default(),
        }
    }

    pub fn limits(&self) -> &LimitsConfig {
        &self.cfg.limits
    }

    pub fn config(&self) -> &ServiceConfig {
        &self.cfg
    }

    /// The bus's name, for logs.
    pub fn bus_name(&self) -> &'static str {
        self.bus.name()
    }
}
