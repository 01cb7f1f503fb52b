//! Through PgBouncer in transaction pooling mode. Debian's PgBouncer (1.18)
//! keeps no prepared statements in that mode: sqlx's defaults break behind
//! it (the first test shows the trap, so the second can fail), and
//! `database.transaction_pooler` makes every path of the service work.

use crate::*;
use parley_core::protocol::SearchQuery;
use sqlx::{Connection, Row};

#[actix_web::test]
async fn sqlx_defaults_break_behind_a_transaction_mode_pooler() {
    let env = TestEnv::with_pgbouncer(1, |_| {}).await;
    let url = &env.cfg.database.url;
    let mut a = sqlx::PgConnection::connect(url).await.expect("a");
    let mut b = sqlx::PgConnection::connect(url).await.expect("b");
    let one: i32 = sqlx::query_scalar("SELECT $1::int4")
        .bind(1)
        .fetch_one(&mut a)
        .await
        .expect("the first client's statement");
    assert_eq!(one, 1);
    // The one server connection already holds the first client's cached
    // statement under the name the second client picks for its own.
    let second = sqlx::query_scalar::<_, String>("SELECT $1::text")
        .bind("x")
        .fetch_one(&mut b)
        .await;
    let err = second.expect_err("named statements cannot cross a transaction-mode pooler");
    assert!(err.to_string().contains("already exists"), "{err}");
}

#[actix_web::test]
async fn everything_works_through_pgbouncer_in_transaction_mode() {
    // Two server connections for the whole service: its pools' connections
    // (requests, group commit workers, background loops) share them.
    let env = TestEnv::with_pgbouncer(2, |c| c.commit.workers = 2).await;
    let bouncer_port = env.pgbouncer.as_ref().expect("pgbouncer").port;
    let db_name = env.db_url.rsplit('/').next().expect("db name").to_owned();
    // Registration (mail codes), users and tokens, WebSocket sessions.
    let p = pair_in(env).await;
    let app = p.env.app().await;
    let carol = user(&app, &p.a, "carol").await;
    let tc = token(&app, &p.a, &carol).await;
    let cc = client(&p.server, &tc).await;
    let g = group(&p.ca, "through the pooler", &[p.bob, uid(&carol)]).await;

    // Concurrent sends of three members: batched commits.
    let senders = [&p.ca, &p.cb, &cc];
    let sends = (0..20).flat_map(|i| {
        senders.iter().enumerate().map(move |(s, c)| {
            let m = NewMessage {
                text: format!("сообщение {s}-{i}"),
                idempotency_key: Some(format!("k{s}-{i}")),
                ..Default::default()
            };
            c.send_reliably(g.id, m, Duration::from_secs(30))
        })
    });
    let sent = futures_util::future::join_all(sends).await;
    assert!(sent.iter().all(|r| r.is_ok()), "{sent:?}");
    // A retry of a committed key answers the first message.
    let again =
        p.ca.send_reliably(
            g.id,
            NewMessage {
                text: "сообщение 0-3".into(),
                idempotency_key: Some("k0-3".into()),
                ..Default::default()
            },
            Duration::from_secs(30),
        )
        .await
        .expect("retry");
    let first = sent[3 * 3].as_ref().expect("sent");
    assert_eq!(again.id, first.id);

    // Every member hears all 60 in seq order.
    for c in [&p.ca, &p.cb, &cc] {
        let got = collect(c, g.id, 60).await;
        let seqs: Vec<i64> = got.iter().map(|m| m.seq).collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
        assert_eq!(got.len(), 60);
    }
    // Edit, reaction, history, search: reads and explicit transactions.
    let target = sent[0].as_ref().expect("sent");
    let _: Value =
        p.ca.call(Request::Edit {
            conversation_id: g.id,
            message_id: target.id,
            text: Some("исправлено".into()),
            data: None,
        })
        .await
        .expect("edit");
    let _: Value =
        p.cb.call(Request::ReactionAdd {
            conversation_id: g.id,
            message_id: target.id,
            emoji: "👍".into(),
        })
        .await
        .expect("reaction");
    let page: MessagePage = cc
        .call(Request::History {
            conversation_id: g.id,
            before: None,
            after: None,
            limit: Some(100),
        })
        .await
        .expect("history");
    assert_eq!(page.messages.len(), 60);
    let edited = page
        .messages
        .iter()
        .find(|m| m.id == target.id)
        .expect("edited one");
    assert_eq!(edited.text, "исправлено");
    let hits: parley_core::protocol::SearchPage =
        p.cb.call(Request::Search {
            query: SearchQuery {
                query: "исправлено".into(),
                ..Default::default()
            },
        })
        .await
        .expect("search");
    assert_eq!(hits.hits.len(), 1);

    // Reads at once: the node's pool lends a connection back as soon as
    // its statement ends, so sequential work may use one or two; sixteen
    // concurrent requests make it open more than the pooler's two servers.
    let path = format!("/v1/infobases/{}/conversations/{}/messages", p.a.id, g.id);
    let auth = p.a.auth();
    let reads = (0..16).map(|_| call(&app, "GET", &path, &auth, None));
    for r in futures_util::future::join_all(reads).await {
        assert_eq!(r.status, 200, "{r:?}");
    }

    // The pooler really pooled: more client connections than the two
    // server connections it was given.
    let admin_url = format!("postgres://parley@127.0.0.1:{bouncer_port}/pgbouncer");
    let mut admin = sqlx::PgConnection::connect(&admin_url)
        .await
        .expect("admin console");
    let mine = |rows: &[sqlx::postgres::PgRow]| {
        rows.iter()
            .filter(|r| {
                r.try_get::<String, _>("database").ok().as_deref() == Some(db_name.as_str())
            })
            .count()
    };
    let clients = sqlx::raw_sql("SHOW CLIENTS")
        .fetch_all(&mut admin)
        .await
        .expect("clients");
    let servers = sqlx::raw_sql("SHOW SERVERS")
        .fetch_all(&mut admin)
        .await
        .expect("servers");
    let (clients, servers) = (mine(&clients), mine(&servers));
    assert!(
        servers <= 2 && clients > servers,
        "clients {clients}, servers {servers}"
    );
}
