//! Where the store's statements go: straight to the pool, or — behind a
//! pooler in transaction mode (PgBouncer before 1.21) — in a shape such a
//! pooler can carry.
//!
//! A transaction-mode pooler lends a server connection for one transaction
//! only. sqlx prepares a statement (Parse, Sync) and then runs it (Bind,
//! Execute, Sync): outside a transaction the two halves may reach different
//! servers, and the names of cached statements (`sqlx_s_1`, …) exist on the
//! server that prepared them only — or, worse, on another one from another
//! client. So in that mode every statement is unnamed and never cached, and
//! a statement run outside an explicit transaction gets a transaction of its
//! own (BEGIN … COMMIT: two more round trips, the documented cost of the
//! mode). Everything the store writes is already one statement or one
//! explicit transaction, so the meaning of no query changes.

use crate::pool::{Lent, Pool};
use futures_util::TryStreamExt;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgArguments, PgQueryResult, PgRow, PgStatement, PgTypeInfo};
use sqlx::{Database, Describe, Either, Error, Execute, Executor, Postgres, TransactionManager};
use std::ops::{Deref, DerefMut};

/// sqlx's transaction bookkeeping for PostgreSQL (BEGIN, COMMIT, the
/// ROLLBACK queued when a transaction is dropped).
type Txm = <Postgres as Database>::TransactionManager;

type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;
type BoxStream<'a, T> = std::pin::Pin<Box<dyn futures_util::Stream<Item = T> + Send + 'a>>;

/// The pool, and whether a transaction-mode pooler stands in front of
/// PostgreSQL.
#[derive(Clone, Debug)]
pub(crate) struct Db {
    pub(crate) pool: Pool,
    pooler: bool,
}

impl Db {
    pub(crate) fn new(pool: Pool, pooler: bool) -> Self {
        Self { pool, pooler }
    }

    /// An explicit transaction; its statements follow the same rule.
    pub(crate) async fn begin(&self) -> Result<Tx, Error> {
        begin(&self.pool, self.pooler).await
    }
}

async fn begin(pool: &Pool, unnamed: bool) -> Result<Tx, Error> {
    let mut conn = pool.acquire().await?;
    let begun = Txm::begin(&mut conn, None).await;
    conn.finish(begun)?;
    // Open until COMMIT or ROLLBACK: cleaned if dropped before.
    conn.busy();
    Ok(Tx(TxConn {
        conn,
        unnamed,
        open: true,
    }))
}

/// A statement that is neither named nor cached (see the module comment).
struct Unnamed<E>(E);

impl<'q, E: Execute<'q, Postgres>> Execute<'q, Postgres> for Unnamed<E> {
    fn sql(&self) -> &'q str {
        self.0.sql()
    }

    fn statement(&self) -> Option<&PgStatement<'q>> {
        self.0.statement()
    }

    fn take_arguments(&mut self) -> Result<Option<PgArguments>, BoxDynError> {
        self.0.take_arguments()
    }

    fn persistent(&self) -> bool {
        false
    }
}

type Step = Either<PgQueryResult, PgRow>;

impl<'p> Executor<'p> for &'_ Db {
    type Database = Postgres;

    fn fetch_many<'e, 'q: 'e, E>(self, query: E) -> BoxStream<'e, Result<Step, Error>>
    where
        'p: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        // The rows are read whole before the first is handed out: the
        // connection goes back to the pool as soon as its answer is in
        // (the store reads small results, never a cursor).
        let (pool, pooler) = (self.pool.clone(), self.pooler);
        let steps = async move {
            let steps: Vec<Step> = if pooler {
                let mut tx = begin(&pool, true).await?;
                let steps = (&mut *tx).fetch_many(query).try_collect().await?;
                tx.commit().await?;
                steps
            } else {
                let mut conn = pool.acquire().await?;
                let steps = (&mut *conn).fetch_many(query).try_collect().await;
                conn.finish(steps)?
            };
            Ok::<_, Error>(futures_util::stream::iter(steps.into_iter().map(Ok)))
        };
        Box::pin(futures_util::stream::once(steps).try_flatten())
    }

    fn fetch_optional<'e, 'q: 'e, E>(self, query: E) -> BoxFuture<'e, Result<Option<PgRow>, Error>>
    where
        'p: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        let (pool, pooler) = (self.pool.clone(), self.pooler);
        Box::pin(async move {
            if pooler {
                let mut tx = begin(&pool, true).await?;
                let row = (&mut *tx).fetch_optional(query).await?;
                tx.commit().await?;
                return Ok(row);
            }
            let mut conn = pool.acquire().await?;
            let row = (&mut *conn).fetch_optional(query).await;
            conn.finish(row)
        })
    }

    fn prepare_with<'e, 'q: 'e>(
        self,
        sql: &'q str,
        parameters: &'e [PgTypeInfo],
    ) -> BoxFuture<'e, Result<PgStatement<'q>, Error>>
    where
        'p: 'e,
    {
        let pool = self.pool.clone();
        Box::pin(async move {
            let mut conn = pool.acquire().await?;
            let prepared = (&mut *conn).prepare_with(sql, parameters).await;
            conn.finish(prepared)
        })
    }

    fn describe<'e, 'q: 'e>(self, sql: &'q str) -> BoxFuture<'e, Result<Describe<Postgres>, Error>>
    where
        'p: 'e,
    {
        let pool = self.pool.clone();
        Box::pin(async move {
            let mut conn = pool.acquire().await?;
            let described = (&mut *conn).describe(sql).await;
            conn.finish(described)
        })
    }
}

/// An explicit transaction of the store. `&mut *tx` is its executor, as
/// with sqlx's own transaction.
#[derive(Debug)]
pub struct Tx(TxConn);

/// What a [`Tx`] dereferences to: the transaction's connection.
#[derive(Debug)]
pub struct TxConn {
    conn: Lent,
    unnamed: bool,
    /// BEGIN ran, and neither COMMIT nor ROLLBACK yet.
    open: bool,
}

impl Tx {
    pub(crate) async fn commit(mut self) -> Result<(), Error> {
        self.end(true).await
    }

    pub(crate) async fn rollback(mut self) -> Result<(), Error> {
        self.end(false).await
    }

    async fn end(&mut self, commit: bool) -> Result<(), Error> {
        let t = &mut self.0;
        let ended = if commit {
            Txm::commit(&mut t.conn).await
        } else {
            Txm::rollback(&mut t.conn).await
        };
        t.open = false;
        if ended.is_err() {
            // sqlx counts the transaction as still open when COMMIT or
            // ROLLBACK failed: the ROLLBACK it then queues is sent when the
            // pool cleans the connection (or the connection is closed).
            if Txm::get_transaction_depth(&t.conn) > 0 {
                Txm::start_rollback(&mut t.conn);
            }
            t.conn.busy();
            return ended;
        }
        t.conn.finish(ended)
    }
}

impl Drop for TxConn {
    fn drop(&mut self) {
        if self.open {
            // Dropped mid-way (an early return, a cancelled request): the
            // ROLLBACK is queued, and sent when the pool cleans the
            // connection (pool.rs), as sqlx's own transaction does.
            Txm::start_rollback(&mut self.conn);
            self.conn.busy();
        }
    }
}

impl Deref for Tx {
    type Target = TxConn;
    fn deref(&self) -> &TxConn {
        &self.0
    }
}

impl DerefMut for Tx {
    fn deref_mut(&mut self) -> &mut TxConn {
        &mut self.0
    }
}

impl<'c> Executor<'c> for &'c mut TxConn {
    type Database = Postgres;

    fn fetch_many<'e, 'q: 'e, E>(self, query: E) -> BoxStream<'e, Result<Step, Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        if self.unnamed {
            (&mut *self.conn).fetch_many(Unnamed(query))
        } else {
            (&mut *self.conn).fetch_many(query)
        }
    }

    fn fetch_optional<'e, 'q: 'e, E>(self, query: E) -> BoxFuture<'e, Result<Option<PgRow>, Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        if self.unnamed {
            (&mut *self.conn).fetch_optional(Unnamed(query))
        } else {
            (&mut *self.conn).fetch_optional(query)
        }
    }

    fn prepare_with<'e, 'q: 'e>(
        self,
        sql: &'q str,
        parameters: &'e [PgTypeInfo],
    ) -> BoxFuture<'e, Result<PgStatement<'q>, Error>>
    where
        'c: 'e,
    {
        (&mut *self.conn).prepare_with(sql, parameters)
    }

    fn describe<'e, 'q: 'e>(self, sql: &'q str) -> BoxFuture<'e, Result<Describe<Postgres>, Error>>
    where
        'c: 'e,
    {
        (&mut *self.conn).describe(sql)
    }
}
