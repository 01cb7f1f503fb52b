//! A database of its own for every measured load.
//!
//! The standard set writes a few hundred thousand messages per capacity
//! search. On one database, every search met the tables, indexes and
//! background work (autovacuum, checkpoints) the searches before it left,
//! and the order of the targets decided part of their figures: the 2-node
//! search always followed the 1-node one, and passed 5 063 msg/s alone on a
//! fresh database but not inside the set (docs/benchmarks.md, sessions 17
//! and 18). Now each load — Parley's or the peer's — starts on a new,
//! freshly migrated database of the same PostgreSQL, and the previous one
//! is dropped before it, outside any measured window.

use crate::report::Res;
use sqlx::postgres::PgConnection;
use sqlx::Connection;

pub struct Databases {
    /// The database the bench was given: where the others are created
    /// from, and the one used until the first [`Databases::fresh`].
    given: String,
    current: Option<String>,
    made: u32,
}

impl Databases {
    pub fn new(given: String) -> Databases {
        Databases {
            given,
            current: None,
            made: 0,
        }
    }

    /// The URL the nodes and fixtures use now.
    pub fn url(&self) -> String {
        match &self.current {
            Some(name) => with_database(&self.given, name),
            None => self.given.clone(),
        }
    }

    /// Drops the current database (if one was made) and makes a new,
    /// migrated one the current.
    pub async fn fresh(&mut self) -> Res<()> {
        self.drop_current().await?;
        self.made += 1;
        let name = format!("bench_{}_{}", std::process::id(), self.made);
        self.admin(&format!("CREATE DATABASE {name}")).await?;
        self.current = Some(name);
        let store = crate::setup::store(&self.url(), 2)?;
        store.migrate().await.map_err(|e| e.to_string())?;
        store.close().await;
        Ok(())
    }

    /// Drops the database [`Databases::fresh`] made last, if any (its
    /// nodes have stopped; connections left over are ended).
    pub async fn drop_current(&mut self) -> Res<()> {
        let Some(name) = self.current.take() else {
            return Ok(());
        };
        self.admin(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .await
    }

    /// Runs `sql` on the database the bench was given.
    async fn admin(&self, sql: &str) -> Res<()> {
        let mut admin = PgConnection::connect(&self.given)
            .await
            .map_err(|e| format!("connect to the bench's database: {e}"))?;
        sqlx::query(sql)
            .execute(&mut admin)
            .await
            .map_err(|e| format!("{sql}: {e}"))?;
        let _ = admin.close().await;
        Ok(())
    }
}

/// `url` with its database part replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    // The path starts at the first '/' after the scheme's "//".
    let authority_from = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_from..].find('/') {
        Some(slash) => &base[..authority_from + slash],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn the_database_part_is_replaced_and_the_rest_kept() {
        assert_eq!(
            with_database("postgres://parley@127.0.0.1:5432/bench", "bench_1_2"),
            "postgres://parley@127.0.0.1:5432/bench_1_2"
        );
        assert_eq!(
            with_database("postgres://u:p@h/bench?sslmode=disable", "x"),
            "postgres://u:p@h/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h:1", "x"), "postgres://h:1/x");
    }
}
