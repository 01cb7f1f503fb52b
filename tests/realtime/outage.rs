//! PostgreSQL goes away mid-traffic and comes back: nothing is acknowledged
//! without a commit, nothing acknowledged is lost, and the open sessions go
//! on by themselves.

use crate::*;
use parley_client::ClientError;

#[actix_web::test]
async fn five_seconds_without_postgresql_lose_nothing_acknowledged() {
    let env = TestEnv::with_db_proxy(|c| {
        c.database.acquire_timeout_secs = 1;
    })
    .await;
    let p = pair_in(env).await;
    let g = group(&p.ca, "outage", &[p.bob]).await;
    let first = send(&p.ca, g.id, text("before")).await;
    receive_exactly(&p.cb, &p.ca, g.id, &[first.id]).await;
    let connects = (p.ca.connects(), p.cb.connects());
    let proxy = p.env.db_proxy.as_ref().expect("proxy");

    // Steady sends; the outage starts after a few and lasts 5 s.
    let mut acked = Vec::new();
    let mut refused = 0;
    let started = std::time::Instant::now();
    let mut down = false;
    let mut up_again = false;
    let mut i = 0;
    while !up_again || i < 60 {
        let elapsed = started.elapsed();
        if !down && elapsed > Duration::from_millis(500) {
            proxy.refuse_new(true);
            proxy.cut_all();
            down = true;
            // Meanwhile the bus asks every session to resync (as after a
            // Redis reconnect): they must wait for PostgreSQL, not close.
            p.env.bus.hub().resync_all();
        }
        if down && !up_again && elapsed > Duration::from_millis(5500) {
            proxy.refuse_new(false);
            up_again = true;
        }
        let key = format!("k{i}");
        let r =
            p.ca.call::<Message>(Request::Send {
                conversation_id: g.id,
                message: NewMessage {
                    text: format!("m{i}"),
                    idempotency_key: Some(key),
                    ..Default::default()
                },
            })
            .await;
        match r {
            Ok(m) => acked.push(m),
            Err(ClientError::Server { code, .. }) => {
                assert_eq!(code, ErrorCode::Unavailable, "refusals say unavailable");
                refused += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("send m{i}: {e}"),
        }
        i += 1;
    }
    assert!(refused > 0, "the outage was felt");
    // Every acknowledged message is stored, once (a refused one may be
    // stored too: the answer, not the commit, may be what was lost).
    let stored: Vec<uuid::Uuid> = sqlx::query_scalar(
        "SELECT id FROM messages WHERE conversation_id = $1 AND text LIKE 'm%' ORDER BY seq",
    )
    .bind(g.id.0)
    .fetch_all(&p.env.db)
    .await
    .expect("stored");
    for m in &acked {
        assert_eq!(
            stored.iter().filter(|id| **id == m.id.0).count(),
            1,
            "acknowledged {} is stored once",
            m.text
        );
    }
    // Bob got each stored message, in order, once, on the session he had.
    let ids: Vec<_> = stored.into_iter().map(parley_core::MessageId).collect();
    receive_exactly(&p.cb, &p.ca, g.id, &ids).await;
    assert_eq!(
        (p.ca.connects(), p.cb.connects()),
        connects,
        "the sessions stayed open"
    );
}
