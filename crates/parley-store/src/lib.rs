//! PostgreSQL access for Parley. Every SQL statement of the project lives in
//! this crate, grouped by domain in the modules below.

mod actions;
mod batch;
mod calls;
mod conversations;
mod db;
mod digest;
mod feed;
mod files;
mod hooks;
mod import;
mod infobases;
mod messages;
mod migration_rules;
mod notifications;
mod page;
mod pool;
mod push;
mod reactions;
mod recovery;
mod registration;
mod search;
mod session_start;
mod tokens;
mod users;
mod webhooks;

pub use actions::Invoked;
pub use batch::BatchedSend;
pub use calls::{CallChange, Declined};
pub use conversations::{
    ChangedBy, Committed, ConversationChange, ConversationMeta, ConversationSeq, CreateOutcome,
    MemberSeq, NewConversation, Viewer,
};
pub use digest::{Digest, DigestConversation, DigestRun};
pub use feed::{FeedRows, PumpLimits, Pumped};
pub use files::{FileRefusal, FileRow, NewFile};
pub use hooks::{HookRow, HookTarget, NewHook};
pub use import::ImportedMessage;
pub use infobases::{InfobaseAuth, InfobaseSummary, SubscriberSummary};
pub use messages::{
    EventPage, JoinPolicy, LoggedEvent, NewMessageRow, PostOutcome, ReadMarker, StoredEvent,
};
pub use notifications::StoredNotification;
pub use push::PushSubscription;
pub use recovery::{LoggedEnvelope, LoggedPage};
pub use registration::{ConfirmOutcome, DenyReason, NewCode, NewInfobase};
pub use search::{Reader, SearchParams};
pub use session_start::SessionStart;
pub use tokens::{NewToken, TokenSession};
pub use users::UserFields;
pub use webhooks::{Attempt, Claimed, EndpointChange, EndpointRow, NewEndpoint};

use sqlx::postgres::PgConnectOptions;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The embedded schema migrations (`migrations/` at the top of the repo).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be reached or did not answer in time.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("database error: {0}")]
    Database(sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("invalid database url: {0}")]
    Url(String),
    /// The thing asked for does not exist or is not visible to the caller.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The caller may see it but not do this.
    #[error("{0}")]
    Denied(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Conflict(String),
}

/// When a query last found PostgreSQL gone (ms since the Unix epoch; 0 =
/// never). Connections opened before that are not trusted again: after a
/// restart every pooled connection is dead, and without this each would
/// fail one request before being dropped (a ping per acquire would cost a
/// round trip on every query instead).
static BROKEN_AT_MS: AtomicU64 = AtomicU64::new(0);

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn note_broken() {
    BROKEN_AT_MS.store(now_ms(), Ordering::Relaxed);
}

/// The connection was opened before PostgreSQL was last found gone.
fn opened_before_break(age: Duration) -> bool {
    let broken = BROKEN_AT_MS.load(Ordering::Relaxed);
    broken != 0 && now_ms().saturating_sub(broken) < age.as_millis() as u64
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        let unavailable = |e: sqlx::Error| {
            note_broken();
            StoreError::Unavailable(e.to_string())
        };
        match e {
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => {
                StoreError::Unavailable(e.to_string())
            }
            sqlx::Error::Io(_) | sqlx::Error::Tls(_) => unavailable(e),
            // The server going away: shutdown or restart (57), connection
            // failures (08), out of connections or memory (53).
            sqlx::Error::Database(ref d)
                if d.code().is_some_and(|c| {
                    c.starts_with("57") || c.starts_with("08") || c.starts_with("53")
                }) =>
            {
                unavailable(e)
            }
            other => StoreError::Database(other),
        }
    }
}

impl StoreError {
    /// The same refusal again, for a retry answered with it (the error is
    /// not `Clone`: a database error is carried by its text).
    pub fn same_again(&self) -> Self {
        match self {
            StoreError::NotFound(what) => StoreError::NotFound(what),
            StoreError::Denied(m) => StoreError::Denied(m.clone()),
            StoreError::Invalid(m) => StoreError::Invalid(m.clone()),
            StoreError::Conflict(m) => StoreError::Conflict(m.clone()),
            other => StoreError::Unavailable(other.to_string()),
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Connection settings of the pool.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    pub url: String,
    pub max_connections: u32,
    pub acquire_timeout: Duration,
    /// A pooler in transaction mode (PgBouncer) stands between the nodes
    /// and PostgreSQL: statements unnamed, each in a transaction (db.rs).
    pub transaction_pooler: bool,
    /// A streaming replica for reads that promise no completeness (search);
    /// its own pool of `max_connections`, opened lazily.
    pub read_url: Option<String>,
}

/// The pool's connections at one moment.
#[derive(Clone, Copy, Debug)]
pub struct PoolStats {
    pub size: u32,
    pub idle: u32,
}

/// A handle on the database; cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    db: db::Db,
    /// The replica's pool, when there is one (see [`Store::reader`]).
    read: Option<db::Db>,
    opts: StoreOptions,
}

impl Store {
    /// Creates the pool. Connections open lazily, so a server can start (and
    /// report "unavailable" in `/readyz`) while PostgreSQL is still down.
    pub fn connect_lazy(opts: &StoreOptions) -> Result<Self> {
        let read = match opts.read_url.as_deref() {
            Some(url) if !url.is_empty() => Some(Self::pool(url, opts)?),
            _ => None,
        };
        Ok(Self {
            db: Self::pool(&opts.url, opts)?,
            read,
            opts: opts.clone(),
        })
    }

    fn pool(url: &str, opts: &StoreOptions) -> Result<db::Db> {
        let mut connect = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Url(e.to_string()))?
            .application_name("parley");
        if opts.transaction_pooler {
            // Named statements outlive the transaction the pooler lent
            // a server for; none may be kept. A pooler refuses startup
            // options too: set `jit = off` for the role instead
            // (docs/operations.md).
            connect = connect.statement_cache_capacity(0);
        } else {
            // Every statement here is short, but a generic plan's cost
            // estimate can pass `jit_above_cost`: the feed pump (0.1 ms of
            // work, estimated at 100 000) was compiled by LLVM for 20–60 ms
            // of CPU four times a second, stalling the sends beside it.
            connect = connect.options([("jit", "off")]);
        }
        // No ping when a connection is lent or given back (pool.rs): a
        // broken connection fails its query, which is retried by the caller
        // or answered `unavailable`, and after such a failure connections
        // opened before it are not lent again.
        let pool = pool::Pool::new(pool::PoolOptions {
            connect,
            max_connections: opts.max_connections,
            acquire_timeout: opts.acquire_timeout,
            stale: opened_before_break,
        });
        Ok(db::Db::new(pool, opts.transaction_pooler))
    }

    /// Where reads that promise no completeness go: the replica when one is
    /// configured, else the primary. A replica lags: it may miss the newest
    /// commits, so nothing that carries the no-loss promise (history,
    /// resume, gap reads, anything read before a write) reads from it.
    /// Permissions checked there are those of a moment ago; since the
    /// replica applies commits in order, a member removed before a message
    /// was written never finds that message there.
    pub(crate) fn reader(&self) -> &db::Db {
        self.read.as_ref().unwrap_or(&self.db)
    }

    /// A store on a pool of its own, of `max_connections`, opened lazily.
    /// Its connections belong to the runtime that first uses them, so a
    /// task on a runtime of its own does its I/O there.
    pub fn with_own_pool(&self, max_connections: u32) -> Result<Self> {
        Self::connect_lazy(&StoreOptions {
            max_connections,
            read_url: None,
            ..self.opts.clone()
        })
    }

    /// Applies pending migrations (idempotent; safe from several nodes at once
    /// thanks to sqlx's advisory lock).
    pub async fn migrate(&self) -> Result<()> {
        let mut conn = self.db.pool.acquire().await?;
        // A failed run leaves the connection for the pool to clean.
        MIGRATOR.run(&mut *conn).await?;
        conn.finish(Ok(()))?;
        Ok(())
    }

    /// Cheap round trip for readiness checks.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.db).await?;
        Ok(())
    }

    /// A server setting as this connection sees it (`SHOW name`), e.g.
    /// `synchronous_commit`, which a benchmark records beside its figures.
    pub async fn setting(&self, name: &str) -> Result<String> {
        let value: String = sqlx::query_scalar("SELECT current_setting($1)")
            .bind(name)
            .fetch_one(&self.db)
            .await?;
        Ok(value)
    }

    /// Removes expired codes and tokens that can no longer matter.
    /// Returns how many rows went.
    pub async fn purge_expired(&self, keep_for: Duration) -> Result<u64> {
        let keep = keep_for.as_secs_f64();
        let codes = sqlx::query(
            "DELETE FROM registration_codes
             WHERE expires_at < now() - make_interval(secs => $1)",
        )
        .bind(keep)
        .execute(&self.db)
        .await?
        .rows_affected();
        let tokens = sqlx::query(
            "DELETE FROM session_tokens
             WHERE expires_at < now() - make_interval(secs => $1)",
        )
        .bind(keep)
        .execute(&self.db)
        .await?
        .rows_affected();
        let tickets = sqlx::query("DELETE FROM ws_tickets WHERE expires_at < now()")
            .execute(&self.db)
            .await?
            .rows_affected();
        let notifications =
            sqlx::query("DELETE FROM stored_notifications WHERE expires_at < now()")
                .execute(&self.db)
                .await?
                .rows_affected();
        Ok(codes + tokens + tickets + notifications)
    }

    /// Connections of the pool: open, and idle among them.
    pub fn pool_stats(&self) -> PoolStats {
        PoolStats {
            size: self.db.pool.size(),
            idle: self.db.pool.num_idle() as u32,
        }
    }

    pub async fn close(&self) {
        self.db.pool.close().await;
    }
}
