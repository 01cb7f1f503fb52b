//! The infobase event feed: what its bots hear, clicks on its users'
//! buttons, calls its users missed, contextual activity when asked for —
//! in order, once per cursor position, never what its users may not read.

use crate::*;
use parley_core::calls::Media;
use parley_core::feed::FeedPage;
use std::time::Instant;

/// One feed page of `ib` after `after`, waiting up to `wait` seconds.
async fn feed_page<S, B>(app: &S, ib: &Ib, after: Option<i64>, wait: u64) -> FeedPage
where
    S: actix_web::dev::Service<
        actix_http::Request,
        Response = actix_web::dev::ServiceResponse<B>,
        Error = actix_web::Error,
    >,
    B: actix_web::body::MessageBody,
{
    let after = after.map(|a| format!("&after={a}")).unwrap_or_default();
    let path = format!("/v1/infobases/{}/events?wait={wait}{after}", ib.id);
    let r = call(app, "GET", &path, &ib.auth(), None).await;
    assert_eq!(r.status, 200, "{r:?}");
    serde_json::from_value(r.body).expect("feed page")
}

/// Reads the feed of `ib` from `after` until `pick` has found `n` events;
/// returns them and the cursor after the last page read.
async fn read_until<S, B>(
    app: &S,
    ib: &Ib,
    mut after: Option<i64>,
    n: usize,
    pick: impl Fn(&parley_core::feed::FeedEvent) -> bool,
) -> (Vec<parley_core::feed::FeedEvent>, Option<i64>)
where
    S: actix_web::dev::Service<
        actix_http::Request,
        Response = actix_web::dev::ServiceResponse<B>,
        Error = actix_web::Error,
    >,
    B: actix_web::body::MessageBody,
{
    let deadline = Instant::now() + WAIT;
    let mut got = Vec::new();
    let mut last_id = after.unwrap_or(0);
    while got.len() < n {
        assert!(
            Instant::now() < deadline,
            "the feed brought {} of {n}: {got:#?}",
            got.len()
        );
        let page = feed_page(app, ib, after, 5).await;
        for e in page.events {
            assert!(
                e.id > last_id,
                "feed ids increase: {} after {last_id}",
                e.id
            );
            last_id = e.id;
            if pick(&e) {
                got.push(e);
            }
        }
        after = Some(page.cursor);
    }
    (got, after)
}

fn message_text(e: &parley_core::feed::FeedEvent) -> Option<&str> {
    (e.kind == "message.created").then(|| e.event["message"]["text"].as_str().unwrap_or(""))
}

/// When the pump last ran (seconds since the epoch).
async fn pump_ran(env: &TestEnv) -> f64 {
    sqlx::query_scalar("SELECT extract(epoch FROM last_run)::float8 FROM feed_pump")
        .fetch_one(&env.db)
        .await
        .expect("the pump's row")
}

/// An idle server leaves PostgreSQL alone: with nothing watched and nothing
/// in the inbox, the pump (every `pump_ms` on every node) does not run its
/// transaction; the first watch starts it.
#[actix_web::test]
async fn the_pump_rests_while_no_feed_has_anything_to_carry() {
    let p = pair_with(|c| c.feed.pump_ms = 20).await;
    let app = p.env.app().await;
    let before = pump_ran(&p.env).await;
    // Fifteen pump ticks.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        pump_ran(&p.env).await,
        before,
        "the pump ran with nothing to carry"
    );

    let bot = bot_user(&app, &p.a, "helper", "Helper").await;
    group(&p.ca, "with the bot", &[uid(&bot)]).await;
    let deadline = Instant::now() + WAIT;
    while pump_ran(&p.env).await == before {
        assert!(
            Instant::now() < deadline,
            "the pump did not start for the bot's conversation"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // And what it copied is in the feed.
    read_until(&app, &p.a, None, 1, |e| e.kind == "member.added").await;
}

#[actix_web::test]
async fn the_feed_carries_what_its_bots_hear_in_order_and_nothing_else() {
    let p = pair().await;
    let app = p.env.app().await;
    let bot = bot_user(&app, &p.a, "helper", "Helper").await;
    let with_bot = group(&p.ca, "with the bot", &[p.bob, uid(&bot)]).await;
    let without = group(&p.ca, "people only", &[p.bob]).await;

    send(&p.ca, with_bot.id, text("one")).await;
    send(&p.cb, without.id, text("not for the feed")).await;
    send(&p.cb, with_bot.id, text("two")).await;
    // Addressed to Bob only (a user of B): not A's to read.
    send(
        &p.ca,
        with_bot.id,
        NewMessage {
            text: "for bob only".into(),
            recipients: Some(vec![p.bob]),
            ..Default::default()
        },
    )
    .await;
    send(&p.ca, with_bot.id, text("three")).await;

    let (texts, cursor) = read_until(&app, &p.a, None, 3, |e| message_text(e).is_some()).await;
    let texts: Vec<_> = texts.iter().filter_map(message_text).collect();
    assert_eq!(texts, ["one", "two", "three"]);

    // The same cursor position gives the same events again (at least once:
    // the app moves on only when it has handled them).
    let first = feed_page(&app, &p.a, None, 0).await;
    let again = feed_page(&app, &p.a, None, 0).await;
    assert_eq!(first.events, again.events);
    assert!(first
        .events
        .iter()
        .all(|e| e.conversation_id == Some(with_bot.id)));
    assert!(
        first.events.iter().any(|e| e.kind == "member.added"),
        "{first:#?}"
    );
    let seqs: Vec<_> = first.events.iter().filter_map(|e| e.seq).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "seq order: {seqs:?}");

    // Infobase B has no bot there: its feed has none of it, and it cannot
    // read A's.
    assert!(feed_page(&app, &p.b, None, 0).await.events.is_empty());
    let r = call(
        &app,
        "GET",
        &format!("/v1/infobases/{}/events", p.a.id),
        &p.b.auth(),
        None,
    )
    .await;
    assert!(r.status == 403 || r.status == 401, "{r:?}");

    // A long-poll is woken by the next event, long before its wait ends.
    let waiter = {
        let app = p.env.app().await;
        let ib = p.a.clone();
        actix_web::rt::spawn(async move {
            let started = Instant::now();
            let page = feed_page(&app, &ib, cursor, 20).await;
            (page, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent_at = Instant::now();
    send(&p.cb, with_bot.id, text("four")).await;
    let (page, waited) = waiter.await.expect("long-poll");
    let woke_after = sent_at.elapsed();
    assert_eq!(
        page.events
            .iter()
            .filter_map(message_text)
            .collect::<Vec<_>>(),
        ["four"]
    );
    assert!(
        waited < Duration::from_secs(15),
        "answered by the event, not the wait's end"
    );
    println!("long-poll answered {woke_after:?} after the send");

    // The bot leaves: its removal is the last thing A hears of the group.
    let r = call(
        &app,
        "DELETE",
        &format!(
            "/v1/infobases/{}/conversations/{}/members/{bot}",
            p.a.id, with_bot.id
        ),
        &p.a.auth(),
        None,
    )
    .await;
    assert_eq!(r.status, 204, "{r:?}");
    send(&p.ca, with_bot.id, text("after the bot left")).await;
    let (removed, cursor) = read_until(&app, &p.a, Some(page.cursor), 1, |e| {
        e.kind == "member.removed"
    })
    .await;
    assert_eq!(removed[0].event["user_id"], json!(bot));
    // A later event anywhere A listens shows the pump went past it.
    let dm: Conversation =
        p.cb.call(Request::OpenDialog { user_id: uid(&bot) })
            .await
            .expect("dialog with the bot");
    send(&p.cb, dm.id, text("hello bot")).await;
    let (rest, _) = read_until(&app, &p.a, cursor, 1, |e| message_text(e).is_some()).await;
    assert_eq!(message_text(&rest[0]), Some("hello bot"), "{rest:#?}");
}

#[actix_web::test]
async fn clicks_missed_calls_and_contextual_activity_reach_the_feed() {
    let p = pair_with(|c| c.calls.ring_timeout_secs = 5).await;
    let app = p.env.app().await;
    let bot = bot_user(&app, &p.a, "approver", "Approver").await;
    let g = group(&p.ca, "approvals", &[p.bob]).await;
    let r = call(
        &app,
        "POST",
        &format!("/v1/infobases/{}/conversations/{}/messages", p.a.id, g.id),
        &p.a.auth(),
        json_body(json!({"author_id": bot, "text": "Approve invoice 7?",
            "actions": [{"value": "approve", "caption": "Approve", "single_use": true}]})),
    )
    .await;
    assert_eq!(r.status, 201, "{r:?}");
    let question: Message = serde_json::from_value(r.body).expect("message");
    p.cb.call::<Value>(Request::ActionInvoke {
        conversation_id: g.id,
        message_id: question.id,
        value: "approve".into(),
    })
    .await
    .expect("click");
    let (clicks, _) = read_until(&app, &p.a, None, 1, |e| e.kind == "action.invoked").await;
    assert_eq!(clicks[0].event["invocation"]["value"], "approve");
    assert_eq!(clicks[0].event["invocation"]["user_id"], json!(p.bob));

    // Alice calls Bob, who does not answer: B hears that its user missed it.
    let dm: Conversation =
        p.ca.call(Request::OpenDialog { user_id: p.bob })
            .await
            .expect("dialog");
    p.ca.call::<Value>(Request::CallStart {
        conversation_id: dm.id,
        media: Media::Audio,
        group: false,
    })
    .await
    .expect("call");
    let (missed, _) = read_until(&app, &p.b, None, 1, |e| e.kind == "call.missed").await;
    assert_eq!(missed[0].event["user_id"], json!(p.bob));
    assert_eq!(missed[0].event["started_by"], json!(p.alice));
    assert!(
        feed_page(&app, &p.a, None, 0)
            .await
            .events
            .iter()
            .all(|e| e.kind != "call.missed"),
        "the caller's infobase is not told of its own call"
    );

    // Contextual activity: off by default, on when asked for.
    let settings = format!("/v1/infobases/{}/feed-settings", p.a.id);
    let r = call(&app, "GET", &settings, &p.a.auth(), None).await;
    assert_eq!(r.body, json!({"contextual": false, "presence": false}));
    let open = |object: &'static str| {
        let app = &app;
        let base = format!("/v1/infobases/{}", p.a.id);
        let auth = p.a.auth();
        let alice = p.alice;
        async move {
            let r = call(
                app,
                "PUT",
                &format!("{base}/contexts"),
                &auth,
                json_body(json!({"object_ref": object, "title": object})),
            )
            .await;
            assert!(r.status == 201 || r.status == 200, "{r:?}");
            let c = serde_json::from_value::<Conversation>(r.body).expect("context");
            let r = call(
                app,
                "POST",
                &format!("{base}/conversations/{}/members", c.id),
                &auth,
                json_body(json!({"user_ids": [alice]})),
            )
            .await;
            assert!(r.status == 200 || r.status == 204, "{r:?}");
            c
        }
    };
    let quiet = open("invoice:1").await;
    send(&p.ca, quiet.id, text("before the switch")).await;
    let r = call(
        &app,
        "PUT",
        &settings,
        &p.a.auth(),
        json_body(json!({"contextual": true})),
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    let fresh = open("invoice:2").await;
    send(&p.ca, fresh.id, text("on invoice 2")).await;
    send(&p.ca, quiet.id, text("on invoice 1")).await;
    let (ctx, _) = read_until(&app, &p.a, None, 2, |e| {
        message_text(e).is_some_and(|t| t.starts_with("on invoice") || t == "before the switch")
    })
    .await;
    let texts: Vec<_> = ctx.iter().filter_map(message_text).collect();
    assert_eq!(texts, ["on invoice 2", "on invoice 1"]);

    // Presence changes of its users, when asked for.
    let r = call(
        &app,
        "PUT",
        &settings,
        &p.a.auth(),
        json_body(json!({"contextual": true, "presence": true})),
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    let erin = user(&app, &p.a, "erin").await;
    let ce = client(&p.server, &token(&app, &p.a, &erin).await).await;
    let (on, _) = read_until(&app, &p.a, None, 1, |e| {
        e.kind == "presence" && e.event["user_id"] == json!(erin)
    })
    .await;
    assert_eq!(on[0].event["online"], true);
    ce.close();
    let (seen, _) = read_until(&app, &p.a, None, 2, |e| {
        e.kind == "presence" && e.event["user_id"] == json!(erin)
    })
    .await;
    assert_eq!(seen[1].event["online"], false);
    // B did not ask: its users' presence is not in its feed.
    assert!(feed_page(&app, &p.b, None, 0)
        .await
        .events
        .iter()
        .all(|e| e.kind != "presence"));

    // Retention removed what the cursor points into: a clear error.
    let cursor = feed_page(&app, &p.a, None, 0).await.cursor;
    assert!(cursor > 0);
    p.env.store.purge_feed(Duration::ZERO).await.expect("purge");
    let r = call(
        &app,
        "GET",
        &format!("/v1/infobases/{}/events?after=0", p.a.id),
        &p.a.auth(),
        None,
    )
    .await;
    r.expect_error(410, "cursor_expired");
    // From the newest position on it is fine.
    let page = feed_page(&app, &p.a, Some(cursor), 0).await;
    assert!(page.events.is_empty());
    // Out-of-range waits and pages are refused with the limit named.
    let r = call(
        &app,
        "GET",
        &format!("/v1/infobases/{}/events?wait=100000", p.a.id),
        &p.a.auth(),
        None,
    )
    .await;
    r.expect_error(400, "invalid");
    assert!(r.body["message"]
        .as_str()
        .unwrap_or("")
        .contains("feed.max_wait_secs"));
}
