//! The store's connection pool.
//!
//! Why not sqlx's: its pool sends a Sync to PostgreSQL every time a
//! connection goes back (`return_to_pool` pings, to flush whatever an
//! abandoned statement or transaction left behind), so every pooled
//! statement costs two round trips, and the connection is lent to nobody
//! until the second one returns. Measured on 10 000 connects (two statements
//! each): PostgreSQL's CPU 0.90 → 0.64 s and the node's 1.10 → 0.95 s
//! without it. sqlx offers no switch, so this pool keeps sqlx's connections
//! and its rules (a limit, an acquire timeout, lazy connects, a lifetime)
//! but puts a connection back as it is when its last use ran to the end.
//! Only one left mid-statement or mid-transaction (its future dropped, or
//! an error) is brought back to a clean state first — a Sync, after the
//! ROLLBACK a dropped transaction queued — in the background and within the
//! acquire timeout, or closed.

use sqlx::postgres::{PgConnectOptions, PgConnection, PgDatabaseError, PgSeverity};
use sqlx::{ConnectOptions, Connection, Error};
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A connection older than this is closed when it comes back (as sqlx's
/// default `max_lifetime`): server-side caches and memory do not grow
/// without end.
const MAX_LIFETIME: Duration = Duration::from_secs(30 * 60);
/// An idle connection unused this long is closed (sqlx's default
/// `idle_timeout`): a node that had a burst gives its connections back.
const IDLE_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// What the pool needs to open and lend connections.
#[derive(Clone, Debug)]
pub(crate) struct PoolOptions {
    pub(crate) connect: PgConnectOptions,
    pub(crate) max_connections: u32,
    pub(crate) acquire_timeout: Duration,
    /// Whether a connection opened this long ago may no longer be trusted
    /// (PostgreSQL was found gone since).
    pub(crate) stale: fn(Duration) -> bool,
}

/// A pool of PostgreSQL connections; cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct Pool(Arc<Shared>);

#[derive(Debug)]
struct Shared {
    opts: PoolOptions,
    /// One permit per connection that may be lent at once.
    permits: Arc<Semaphore>,
    /// Connections waiting to be lent, the most recently used last (lent
    /// first: the warmest one; the coldest age out at the front).
    idle: Mutex<Vec<Idle>>,
    /// Connections open, lent or idle.
    size: AtomicU32,
    closed: AtomicBool,
}

#[derive(Debug)]
struct Idle {
    conn: PgConnection,
    opened: Instant,
    since: Instant,
}

/// How a lent connection is left.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Its last statement ran to the end: it goes back as it is.
    Clean,
    /// In use, or abandoned in the middle of something: cleaned first.
    Busy,
    /// Failed at the transport: closed.
    Broken,
}

/// A connection lent by the pool; it goes back when dropped.
#[derive(Debug)]
pub(crate) struct Lent {
    conn: Option<PgConnection>,
    opened: Instant,
    state: State,
    permit: Option<OwnedSemaphorePermit>,
    pool: Arc<Shared>,
}

impl Pool {
    pub(crate) fn new(opts: PoolOptions) -> Self {
        let permits = Arc::new(Semaphore::new(opts.max_connections as usize));
        Self(Arc::new(Shared {
            opts,
            permits,
            idle: Mutex::new(Vec::new()),
            size: AtomicU32::new(0),
            closed: AtomicBool::new(false),
        }))
    }

    /// Lends a connection: an idle one, else a new one, waiting for a free
    /// place up to the acquire timeout (waiting and connecting together).
    pub(crate) async fn acquire(&self) -> Result<Lent, Error> {
        let shared = &self.0;
        if shared.closed.load(Ordering::Acquire) {
            return Err(Error::PoolClosed);
        }
        let deadline = tokio::time::Instant::now() + shared.opts.acquire_timeout;
        let permit = tokio::time::timeout_at(deadline, Arc::clone(&shared.permits).acquire_owned())
            .await
            .map_err(|_| Error::PoolTimedOut)?
            .map_err(|_| Error::PoolClosed)?;
        while let Some(idle) = shared.pop() {
            let age = idle.opened.elapsed();
            if age > MAX_LIFETIME || (shared.opts.stale)(age) {
                shared.discard(idle.conn, true);
                continue;
            }
            return Ok(self.lend(idle.conn, idle.opened, permit));
        }
        // A place but no idle connection: open one (counted from the start,
        // uncounted again unless it opens, even if this future is dropped).
        let opening = Opening::new(shared);
        let conn = tokio::time::timeout_at(deadline, shared.opts.connect.connect())
            .await
            .map_err(|_| Error::PoolTimedOut)??;
        opening.opened();
        Ok(self.lend(conn, Instant::now(), permit))
    }

    fn lend(&self, conn: PgConnection, opened: Instant, permit: OwnedSemaphorePermit) -> Lent {
        Lent {
            conn: Some(conn),
            opened,
            state: State::Busy,
            permit: Some(permit),
            pool: Arc::clone(&self.0),
        }
    }

    /// Connections open (lent or idle).
    pub(crate) fn size(&self) -> u32 {
        self.0.size.load(Ordering::Acquire)
    }

    /// Connections idle in the pool.
    pub(crate) fn num_idle(&self) -> usize {
        self.0.idle().len()
    }

    /// Refuses further acquires and closes the idle connections; lent ones
    /// close when they come back.
    pub(crate) async fn close(&self) {
        self.0.closed.store(true, Ordering::Release);
        self.0.permits.close();
        let idle = std::mem::take(&mut *self.0.idle());
        for i in idle {
            self.0.size.fetch_sub(1, Ordering::AcqRel);
            let _ = i.conn.close().await;
        }
    }
}

/// A connection being opened, counted in the pool's size until it fails.
struct Opening<'a>(Option<&'a Shared>);

impl<'a> Opening<'a> {
    fn new(shared: &'a Shared) -> Self {
        shared.size.fetch_add(1, Ordering::AcqRel);
        Self(Some(shared))
    }

    fn opened(mut self) {
        self.0 = None;
    }
}

impl Drop for Opening<'_> {
    fn drop(&mut self) {
        if let Some(shared) = self.0 {
            shared.size.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl Shared {
    /// The idle list (a panic elsewhere while it was held leaves it intact:
    /// every change to it is one push, pop or remove).
    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Idle>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn pop(&self) -> Option<Idle> {
        self.idle().pop()
    }

    /// Puts a clean connection back (before its permit is released, so
    /// that whoever gets the permit finds it), closing the coldest idle one
    /// if it has waited too long.
    fn put_back(&self, conn: PgConnection, opened: Instant) {
        if self.closed.load(Ordering::Acquire) || opened.elapsed() > MAX_LIFETIME {
            self.discard(conn, true);
            return;
        }
        let now = Instant::now();
        let cold = {
            let mut idle = self.idle();
            idle.push(Idle {
                conn,
                opened,
                since: now,
            });
            (idle.len() > 1 && now.duration_since(idle[0].since) > IDLE_TIMEOUT)
                .then(|| idle.remove(0))
        };
        if let Some(c) = cold {
            self.discard(c.conn, true);
        }
    }

    /// Closes a connection that leaves the pool: politely (Terminate) in
    /// the background when it is healthy, by dropping its socket when not.
    fn discard(&self, conn: PgConnection, healthy: bool) {
        self.size.fetch_sub(1, Ordering::AcqRel);
        if healthy {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    let _ = conn.close().await;
                });
            }
        }
    }
}

impl Lent {
    /// The statement or transaction ended with `outcome` (handed back):
    /// when the error says the transport failed, the connection is closed;
    /// any other outcome leaves it ready for the next statement.
    pub(crate) fn finish<T>(&mut self, outcome: Result<T, Error>) -> Result<T, Error> {
        self.state = match &outcome {
            Ok(_) => State::Clean,
            Err(Error::Io(_) | Error::Tls(_) | Error::Protocol(_)) => State::Broken,
            // FATAL: the server closed the session (terminated, shutting
            // down).
            Err(Error::Database(d))
                if d.try_downcast_ref::<PgDatabaseError>().is_some_and(|d| {
                    matches!(d.severity(), PgSeverity::Fatal | PgSeverity::Panic)
                }) =>
            {
                State::Broken
            }
            // A refusal from PostgreSQL (a constraint, a lock timeout, …)
            // leaves a ReadyForQuery to read: the next statement on the
            // connection reads it first (sqlx drains before each one).
            Err(_) => State::Clean,
        };
        outcome
    }

    /// Something was started on the connection and not ended (a
    /// transaction): it must be cleaned if dropped now.
    pub(crate) fn busy(&mut self) {
        self.state = State::Busy;
    }
}

impl Deref for Lent {
    type Target = PgConnection;
    fn deref(&self) -> &PgConnection {
        // Present from lending to drop.
        self.conn.as_ref().expect("a lent connection is present")
    }
}

impl DerefMut for Lent {
    fn deref_mut(&mut self) -> &mut PgConnection {
        self.conn.as_mut().expect("a lent connection is present")
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        let permit = self.permit.take();
        match self.state {
            State::Clean => {
                self.pool.put_back(conn, self.opened);
                drop(permit);
            }
            State::Broken => {
                self.pool.discard(conn, false);
                drop(permit);
            }
            State::Busy => {
                // Abandoned mid-way: a Sync (which also sends a ROLLBACK a
                // dropped transaction queued) and its answers read, then
                // back; closed if that fails or takes too long. The place
                // stays taken meanwhile, as the connection is not ready.
                let Ok(rt) = tokio::runtime::Handle::try_current() else {
                    self.pool.discard(conn, false);
                    return;
                };
                let pool = Arc::clone(&self.pool);
                let opened = self.opened;
                let limit = pool.opts.acquire_timeout;
                rt.spawn(async move {
                    match tokio::time::timeout(limit, conn.ping()).await {
                        Ok(Ok(())) => pool.put_back(conn, opened),
                        _ => pool.discard(conn, false),
                    }
                    drop(permit);
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! Against the PostgreSQL of `PARLEY_TEST_DATABASE_URL` (scripts/test.sh
    //! starts one), each with a pool of its own.
    use super::*;
    use crate::db::Db;
    use sqlx::{query, query_scalar};

    fn db(max_connections: u32, acquire_timeout: Duration) -> Db {
        let url = std::env::var("PARLEY_TEST_DATABASE_URL")
            .expect("PARLEY_TEST_DATABASE_URL (scripts/test.sh sets it)");
        let connect: PgConnectOptions = url.parse().expect("a PostgreSQL URL");
        Db::new(
            Pool::new(PoolOptions {
                connect,
                max_connections,
                acquire_timeout,
                stale: |_| false,
            }),
            false,
        )
    }

    const WAIT: Duration = Duration::from_secs(10);

    /// The one integer `sql` selects, through the pool.
    async fn int(db: &Db, sql: &str) -> i32 {
        query_scalar(sql).fetch_one(db).await.expect(sql)
    }

    #[tokio::test]
    async fn a_finished_statement_gives_its_connection_straight_back() {
        let db = db(1, WAIT);
        let one = int(&db, "SELECT 1").await;
        assert_eq!(one, 1);
        // Idle the moment the call returned: no ping in flight (sqlx's
        // pool would still be waiting for its Sync's answer here).
        assert_eq!((db.pool.size(), db.pool.num_idle()), (1, 1));
        let again = int(&db, "SELECT 2").await;
        assert_eq!((again, db.pool.size()), (2, 1));
    }

    #[tokio::test]
    async fn a_dropped_transaction_is_rolled_back_before_its_connection_is_lent_again() {
        let db = db(1, WAIT);
        let table = format!("pool_test_{}", uuid::Uuid::new_v4().simple());
        let create = format!("CREATE TABLE {table} (id int)");
        let insert = format!("INSERT INTO {table} VALUES (1)");
        let count = format!("SELECT count(*) FROM {table}");
        query(&create).execute(&db).await.expect("create");
        {
            let mut tx = db.begin().await.expect("begin");
            query(&insert).execute(&mut *tx).await.expect("insert");
            // Dropped here, uncommitted (an early return).
        }
        // The pool's one connection again: still inside that transaction
        // it would see its own row.
        let n: i64 = query_scalar(&count).fetch_one(&db).await.expect("count");
        assert_eq!(n, 0);
        let mut tx = db.begin().await.expect("begin");
        query(&insert).execute(&mut *tx).await.expect("insert");
        tx.commit().await.expect("commit");
        let n: i64 = query_scalar(&count).fetch_one(&db).await.expect("count");
        assert_eq!((n, db.pool.size()), (1, 1));
        query(&format!("DROP TABLE {table}"))
            .execute(&db)
            .await
            .expect("drop");
    }

    #[tokio::test]
    async fn a_statement_abandoned_mid_way_leaves_a_usable_connection() {
        let db = db(1, WAIT);
        let abandoned = tokio::time::timeout(
            Duration::from_millis(100),
            query("SELECT pg_sleep(1)").execute(&db),
        )
        .await;
        assert!(abandoned.is_err(), "pg_sleep(1) cannot end within 100 ms");
        // Lent again once its answer is read: the answer to this
        // statement, not the abandoned one's.
        let v = int(&db, "SELECT 42").await;
        assert_eq!((v, db.pool.size()), (42, 1));
    }

    #[tokio::test]
    async fn a_full_pool_refuses_after_the_acquire_timeout() {
        let db = db(1, Duration::from_millis(200));
        let tx = db.begin().await.expect("begin");
        let refused = query("SELECT 1").execute(&db).await;
        assert!(matches!(refused, Err(Error::PoolTimedOut)), "{refused:?}");
        tx.commit().await.expect("commit");
        query("SELECT 1").execute(&db).await.expect("a place again");
    }

    #[tokio::test]
    async fn a_connection_postgresql_ended_is_closed_and_replaced() {
        let db = db(1, WAIT);
        let admin = self::db(1, WAIT);
        let pid: i32 = query_scalar("SELECT pg_backend_pid()")
            .fetch_one(&db)
            .await
            .expect("pid");
        // Returns once the backend is gone.
        let ended: bool = query_scalar("SELECT pg_terminate_backend($1, 10000)")
            .bind(pid)
            .fetch_one(&admin)
            .await
            .expect("terminate");
        assert!(ended);
        let failed = query("SELECT 1").execute(&db).await;
        assert!(failed.is_err(), "the idle connection's server is gone");
        assert_eq!(db.pool.size(), 0, "a dead connection is not kept");
        let new_pid: i32 = query_scalar("SELECT pg_backend_pid()")
            .fetch_one(&db)
            .await
            .expect("a new connection");
        assert_ne!(pid, new_pid);
    }

    #[tokio::test]
    async fn a_closed_pool_refuses_and_closes_its_connections() {
        let db = db(2, WAIT);
        query("SELECT 1").execute(&db).await.expect("select");
        db.pool.close().await;
        assert_eq!(db.pool.size(), 0);
        let refused = query("SELECT 1").execute(&db).await;
        assert!(matches!(refused, Err(Error::PoolClosed)), "{refused:?}");
    }
}
