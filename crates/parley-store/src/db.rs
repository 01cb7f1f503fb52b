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

use futures_util::TryStreamExt;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgArguments, PgQueryResult, PgRow, PgStatement, PgTypeInfo};
use sqlx::{Describe, Either, Error, Execute, Executor, PgPool, Postgres, Transaction};
use std::ops::{Deref, DerefMut};

type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;
type BoxStream<'a, T> = std::pin::Pin<Box<dyn futures_util::Stream<Item = T> + Send + 'a>>;

/// The pool, and whether a transaction-mode pooler stands in front of
/// PostgreSQL.
#[derive(Clone, Debug)]
pub(crate) struct Db {
    pub(crate) pool: PgPool,
    pooler: bool,
}

impl Db {
    pub(crate) fn new(pool: PgPool, pooler: bool) -> Self {
        Self { pool, pooler }
    }

    /// An explicit transaction; its statements follow the same rule.
    pub(crate) async fn begin(&self) -> Result<Tx, Error> {
        Ok(Tx(TxConn {
            inner: self.pool.begin().await?,
            unnamed: self.pooler,
        }))
    }
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
        if !self.pooler {
            return (&self.pool).fetch_many(query);
        }
        let pool = self.pool.clone();
        let steps = async move {
            let mut tx = pool.begin().await?;
            let steps: Vec<Step> = (&mut *tx).fetch_many(Unnamed(query)).try_collect().await?;
            tx.commit().await?;
            Ok::<_, Error>(futures_util::stream::iter(steps.into_iter().map(Ok)))
        };
        Box::pin(futures_util::stream::once(steps).try_flatten())
    }

    fn fetch_optional<'e, 'q: 'e, E>(self, query: E) -> BoxFuture<'e, Result<Option<PgRow>, Error>>
    where
        'p: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        if !self.pooler {
            return (&self.pool).fetch_optional(query);
        }
        let pool = self.pool.clone();
        Box::pin(async move {
            let mut tx = pool.begin().await?;
            let row = (&mut *tx).fetch_optional(Unnamed(query)).await?;
            tx.commit().await?;
            Ok(row)
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
        (&self.pool).prepare_with(sql, parameters)
    }

    fn describe<'e, 'q: 'e>(self, sql: &'q str) -> BoxFuture<'e, Result<Describe<Postgres>, Error>>
    where
        'p: 'e,
    {
        (&self.pool).describe(sql)
    }
}

/// An explicit transaction of the store. `&mut *tx` is its executor, as
/// with sqlx's own transaction.
#[derive(Debug)]
pub struct Tx(TxConn);

/// What a [`Tx`] dereferences to: the transaction's connection.
#[derive(Debug)]
pub struct TxConn {
    inner: Transaction<'static, Postgres>,
    unnamed: bool,
}

impl Tx {
    pub(crate) async fn commit(self) -> Result<(), Error> {
        self.0.inner.commit().await
    }

    pub(crate) async fn rollback(self) -> Result<(), Error> {
        self.0.inner.rollback().await
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
            (&mut *self.inner).fetch_many(Unnamed(query))
        } else {
            (&mut *self.inner).fetch_many(query)
        }
    }

    fn fetch_optional<'e, 'q: 'e, E>(self, query: E) -> BoxFuture<'e, Result<Option<PgRow>, Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        if self.unnamed {
            (&mut *self.inner).fetch_optional(Unnamed(query))
        } else {
            (&mut *self.inner).fetch_optional(query)
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
        (&mut *self.inner).prepare_with(sql, parameters)
    }

    fn describe<'e, 'q: 'e>(self, sql: &'q str) -> BoxFuture<'e, Result<Describe<Postgres>, Error>>
    where
        'c: 'e,
    {
        (&mut *self.inner).describe(sql)
    }
}
