//! `database.read_url`: search reads a streaming replica the test starts;
//! history (which promises completeness) stays on the primary.

use crate::*;
use parley_core::protocol::{SearchPage, SearchQuery};
use parley_tests::replica::PgPair;
use sqlx::Connection;

async fn search(c: &Client, words: &str) -> SearchPage {
    c.call(Request::Search {
        query: SearchQuery {
            query: words.into(),
            ..Default::default()
        },
    })
    .await
    .expect("search")
}

/// Searches until `want` hits come (the replica applies commits a moment
/// after the primary).
async fn search_until(c: &Client, words: &str, want: usize) -> SearchPage {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let page = search(c, words).await;
        if page.hits.len() == want {
            return page;
        }
        assert!(tokio::time::Instant::now() < deadline, "{words}: {page:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[actix_web::test]
async fn search_reads_the_replica_and_history_the_primary() {
    let pair = PgPair::start();
    let (primary, replica) = (pair.primary, pair.replica);
    let env = TestEnv::on_cluster(&pair.primary_url("postgres"), |c| {
        c.database.read_url = c
            .database
            .url
            .replace(&format!(":{primary}/"), &format!(":{replica}/"));
    })
    .await;
    let db_name = env.db_url.rsplit('/').next().expect("db").to_owned();
    let p = pair_in(env).await;
    let g = group(&p.ca, "replicated", &[p.bob]).await;
    let first = send(&p.ca, g.id, text("накладная согласована")).await;
    let page = search_until(&p.cb, "накладная", 1).await;
    assert_eq!(page.hits[0].message.id, first.id);

    // The replica stops applying WAL: a new message is in the history at
    // once (primary) and not found by search (replica) ...
    let mut on_replica = sqlx::PgConnection::connect(&pair.replica_url(&db_name))
        .await
        .expect("replica");
    sqlx::query("SELECT pg_wal_replay_pause()")
        .execute(&mut on_replica)
        .await
        .expect("pause replay");
    let second = send(&p.cb, g.id, text("вторая накладная")).await;
    let h = history(&p.ca, g.id).await;
    assert_eq!(
        h.last().map(|m| m.id),
        Some(second.id),
        "history reads the primary"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        search(&p.ca, "накладная").await.hits.len(),
        1,
        "search reads the paused replica"
    );
    // ... until the replica catches up.
    sqlx::query("SELECT pg_wal_replay_resume()")
        .execute(&mut on_replica)
        .await
        .expect("resume replay");
    let page = search_until(&p.ca, "накладная", 2).await;
    assert!(page.hits.iter().any(|h| h.message.id == second.id));
    drop(p);
    drop(pair);
}
