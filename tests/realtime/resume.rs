//! Resume after a disconnect and recovery of a cut-off client.

use crate::*;

#[actix_web::test]
async fn a_client_that_misses_100_messages_gets_exactly_those_on_resume() {
    let p = pair().await;
    let group: Conversation =
        p.ca.call(Request::CreateGroup {
            title: "resume".into(),
            members: vec![p.bob],
        })
        .await
        .expect("group");
    let first = send(&p.ca, group.id, text("before")).await;
    expect(&p.cb, "first", |e| match e {
        Event::MessageCreated { message, .. } if message.id == first.id => Some(()),
        _ => None,
    })
    .await;
    let seen = p.cb.last_seq(group.id).expect("seq tracked");
    p.cb.drain_events().await;
    p.cb.disconnect().await;

    let mut sent = Vec::new();
    for i in 0..100 {
        sent.push(send(&p.ca, group.id, text(&format!("m{i}"))).await.id);
    }
    p.cb.reconnect().await.expect("reconnect");
    let mut got = Vec::new();
    while got.len() < 100 {
        match p.cb.next_event(WAIT).await {
            Some(Event::MessageCreated { message, seq, .. }) => {
                assert!(seq > seen);
                got.push(message.id);
            }
            Some(_) => {}
            None => panic!("only {} of 100 replayed", got.len()),
        }
    }
    assert_eq!(got, sent, "exactly the missed messages, in order");
    // Two live envelopes arrive in the opposite order: the session waits
    // for neither and delivers both in `seq` order, once each.
    p.env.bus.reorder_next_pair();
    let x = send(&p.ca, group.id, text("x")).await;
    let y = send(&p.ca, group.id, text("y")).await;
    receive_exactly(&p.cb, &p.ca, group.id, &[x.id, y.id]).await;
    assert_eq!(p.env.bus.faults().2, 1, "one pair was reordered");
    // Nothing more (no duplicates), and live delivery continues.
    let after = send(&p.ca, group.id, text("live again")).await;
    let next = expect(&p.cb, "live", |e| match e {
        Event::MessageCreated { message, .. } => Some(message.id),
        _ => None,
    })
    .await;
    assert_eq!(next, after.id);

    // Raw protocol: resume states the seq, the server replays after it.
    let r =
        p.ca.request(Request::Resume {
            conversations: [(group.id, after.seq - 3)].into(),
        })
        .await
        .expect("resume");
    assert_eq!(r["replayed"], 3);
}

#[actix_web::test]
async fn a_gap_that_fills_while_held_is_delivered_without_reading_the_store() {
    // A long wait, and the store paused while the session sorts two
    // reordered envelopes out: reading the store would hang the test.
    let env = TestEnv::with_db_proxy(|c| c.ws.gap_wait_ms = 10_000).await;
    let p = pair_in(env).await;
    let group = group(&p.ca, "held", &[p.bob]).await;
    let warm = send(&p.ca, group.id, text("warm")).await;
    assert_eq!(collect(&p.cb, group.id, 1).await[0].id, warm.id);
    p.env.bus.reorder_next_pair();
    let x = send(&p.ca, group.id, text("x")).await;
    let y = send(&p.ca, group.id, text("y")).await;
    // Both envelopes are in Bob's queue once Alice has both acks (the
    // fan-out precedes the ack); now the store stops answering.
    let proxy = p.env.db_proxy.as_ref().expect("proxy");
    proxy.pause(true);
    let got: Vec<_> = collect(&p.cb, group.id, 2)
        .await
        .into_iter()
        .map(|m| m.id)
        .collect();
    proxy.pause(false);
    assert_eq!(
        got,
        vec![x.id, y.id],
        "in seq order, from the held envelope"
    );
    assert_eq!(p.env.bus.faults().2, 1, "one pair was reordered");
    receive_exactly(&p.cb, &p.ca, group.id, &[]).await;
}

#[actix_web::test]
async fn a_client_that_stops_reading_is_cut_off_and_recovers_everything() {
    let p = pair_with(|c| {
        c.ws.queue_capacity = 8;
        c.ws.max_frame_bytes = 256 * 1024;
        c.limits.max_text_bytes = 200_000;
    })
    .await;
    let app = p.env.app().await;
    let carol_id = user(&app, &p.a, "carol").await;
    let carol = uid(&carol_id);
    let tc = token(&app, &p.a, &carol_id).await;
    let group: Conversation =
        p.ca.call(Request::CreateGroup {
            title: "firehose".into(),
            members: vec![p.bob, carol],
        })
        .await
        .expect("group");

    // Carol's raw connection: authenticated, then never read.
    let mut req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        p.server.ws_url(),
    )
    .expect("req");
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {tc}").parse().expect("hdr"),
    );
    let (mut stalled, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("connect");
    // Wait until the hub holds her session.
    for _ in 0..100 {
        if p.env.bus.hub().sessions_of(carol) == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(p.env.bus.hub().sessions_of(carol), 1);

    // Big messages fill the socket buffers, then her queue.
    let big = "x".repeat(150_000);
    let mut sent = Vec::new();
    let mut cut = false;
    for i in 0..400 {
        let r =
            p.ca.call::<Message>(Request::Send {
                conversation_id: group.id,
                message: text(&format!("{i}:{big}")),
            })
            .await;
        let m = r.unwrap_or_else(|e| panic!("send {i}: {e}; closes {:?}", p.ca.close_codes()));
        sent.push(m.id);
        if p.env.bus.hub().sessions_of(carol) == 0 {
            cut = true;
            break;
        }
    }
    assert!(cut, "the stalled session was not disconnected");
    assert!(
        p.env.bus.hub().stats().overflowed > 0,
        "it was its full queue that cut it off"
    );
    // Bob kept receiving every message meanwhile.
    let mut bob_got = Vec::new();
    while bob_got.len() < sent.len() {
        match p.cb.next_event(WAIT).await {
            Some(Event::MessageCreated { message, .. }) => bob_got.push(message.id),
            Some(_) => {}
            None => panic!("bob got {} of {}", bob_got.len(), sent.len()),
        }
    }
    assert_eq!(bob_got, sent);

    // Carol reads what was buffered; the connection ends (with 4008 when the
    // close frame could still be queued).
    use futures_util::StreamExt;
    let mut codes = Vec::new();
    while let Ok(Some(msg)) = tokio::time::timeout(WAIT, stalled.next()).await {
        match msg {
            Ok(tokio_tungstenite::tungstenite::Message::Close(Some(f))) => {
                codes.push(u16::from(f.code))
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    assert!(
        codes
            .iter()
            .all(|c| *c == parley_core::protocol::close::QUEUE_OVERFLOW),
        "{codes:?}"
    );

    // She resumes from the start and gets every message once, in order.
    let cc = {
        let mut opts = parley_client::Options::new(p.server.ws_url(), &tc);
        opts.request_timeout = Duration::from_secs(30);
        let c = parley_client::Client::connect(opts).await.expect("connect");
        c.track(group.id, 0);
        c
    };
    cc.request(Request::Resume {
        conversations: [(group.id, 0)].into(),
    })
    .await
    .expect("resume");
    let mut got = Vec::new();
    while let Some(ev) = cc.next_event(Duration::from_secs(2)).await {
        if let Event::MessageCreated { message, .. } = ev {
            got.push(message.id);
        }
    }
    assert_eq!(got, sent);
}

#[actix_web::test]
async fn a_cut_refused_client_and_a_paused_store_lose_nothing() {
    let env = TestEnv::with_db_proxy(|_| {}).await;
    let app = env.app().await;
    let ib = register(&app, &email("faults"), "Faults").await;
    let alice = user(&app, &ib, "alice").await;
    let bob = user(&app, &ib, "bob").await;
    let ta = token(&app, &ib, &alice).await;
    let tb = token(&app, &ib, &bob).await;
    let server = env.server().await;
    // Alice goes through a proxy the test controls; Bob connects directly.
    let link = parley_tests::faults::Proxy::start(server.addr).await;
    let ca = connect(&format!("ws://{}/ws", link.addr), &ta).await;
    let cb = client(&server, &tb).await;
    let g = group(&cb, "faults", &[uid(&alice)]).await;
    expect_event(
        &ca,
        "member.added",
        |e| matches!(e, Event::MemberAdded { conversation_id, .. } if *conversation_id == g.id),
    )
    .await;

    // Her connection is cut and new ones are refused for a while.
    assert_eq!(link.connections().len(), 1);
    link.refuse_new(true);
    link.cut(link.connections()[0]);
    let missed = send(&cb, g.id, text("while she is away")).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    link.refuse_new(false);
    // She reconnects by herself and resumes: the missed message, once.
    let got = collect(&ca, g.id, 1).await;
    assert_eq!(got[0].id, missed.id);

    // The store stops answering: a send waits (nothing is acknowledged
    // before it commits), then commits when the store is back.
    let db = env.db_proxy.as_ref().expect("db proxy");
    db.pause(true);
    let mut pending = Box::pin(send(&cb, g.id, text("after the pause")));
    assert!(
        tokio::time::timeout(Duration::from_millis(500), &mut pending)
            .await
            .is_err(),
        "a send was acknowledged while the store was paused"
    );
    db.pause(false);
    let late = pending.await;
    receive_exactly(&ca, &cb, g.id, &[late.id]).await;
}

/// The publisher dies between commit and publish, or the bus loses the
/// envelope, in a conversation with no later traffic to reveal the gap:
/// the node sees in PostgreSQL that the conversation moved on, reads the event
/// back, and both
/// members get it live, once, without reconnecting.
#[actix_web::test]
async fn a_lost_envelope_in_a_quiet_conversation_is_read_back_from_postgresql() {
    let p = pair().await;
    let g = group(&p.ca, "quiet", &[p.bob]).await;
    let before = send(&p.ca, g.id, text("before")).await;
    receive_exactly(&p.cb, &p.ca, g.id, &[before.id]).await;
    let connects = (p.ca.connects(), p.cb.connects());

    p.env.bus.drop_next(1);
    let lost = send(&p.ca, g.id, text("lost on the bus")).await;
    assert_eq!(p.env.bus.faults().0, 1, "the envelope was dropped");
    // Nothing follows that could reveal a gap. The documented bound is about
    // twice recovery.grace_ms (500 ms) plus one read; waited for with slack.
    // (Alice's own earlier messages may still be queued for her.)
    for c in [&p.cb, &p.ca] {
        let got = loop {
            match c.next_event(Duration::from_secs(5)).await {
                Some(Event::MessageCreated { message, seq, .. }) if seq >= lost.seq => {
                    break message.id
                }
                Some(_) => continue,
                None => panic!("the lost message never arrived"),
            }
        };
        assert_eq!(got, lost.id);
    }
    assert_eq!((p.ca.connects(), p.cb.connects()), connects, "no reconnect");
    // Exactly once: the next message is the very next event.
    let after = send(&p.ca, g.id, text("after")).await;
    receive_exactly(&p.cb, &p.ca, g.id, &[after.id]).await;
}

/// A live session falls behind by more than `ws.resume_max_events` (here
/// 20 + 500 events lost on the way, recovery held off): it sends the first
/// 20 from PostgreSQL, then a `gap` event naming the rest, never a silent
/// skip; the Rust client reads the rest with `history` and the application
/// ends with every message exactly once, in order.
#[actix_web::test]
async fn a_gap_beyond_the_replay_limit_is_reported_and_read_as_history() {
    let p = pair_with(|cfg| {
        cfg.ws.resume_max_events = 20;
        // The node-level recovery would close the gap in small steps.
        cfg.recovery.grace_ms = 60_000;
    })
    .await;
    let g = group(&p.ca, "big gap", &[p.bob]).await;
    let first = send(&p.ca, g.id, text("first")).await;
    receive_exactly(&p.cb, &p.ca, g.id, &[first.id]).await;
    p.cb.drain_events().await;

    p.env.bus.drop_next(520);
    let mut sent = Vec::new();
    for i in 0..520 {
        sent.push(send(&p.ca, g.id, text(&format!("m{i}"))).await);
    }
    assert_eq!(p.env.bus.faults().0, 520);
    // The next one arrives live and reveals the gap.
    sent.push(send(&p.ca, g.id, text("reveals")).await);

    let mut got = Vec::new();
    let mut gaps = Vec::new();
    while got.len() < sent.len() {
        match p.cb.next_event(WAIT).await {
            Some(Event::MessageCreated { message, .. }) => got.push(message.id),
            Some(Event::Gap {
                conversation_id,
                after_seq,
                before_seq,
            }) => gaps.push((conversation_id, after_seq, before_seq)),
            Some(_) => {}
            None => panic!("only {} of {} arrived", got.len(), sent.len()),
        }
    }
    let ids: Vec<_> = sent.iter().map(|m| m.id).collect();
    assert_eq!(got, ids, "every message once, in order");
    // The first 20 were replayed, the rest reported up to the live one.
    let last = sent.last().map(|m| m.seq).unwrap_or_default();
    assert_eq!(gaps, vec![(g.id, sent[19].seq, last)]);
    // Nothing twice afterwards.
    let after = send(&p.ca, g.id, text("after")).await;
    receive_exactly(&p.cb, &p.ca, g.id, &[after.id]).await;
}

/// What the recovery asks before reading events back: who could want the
/// events of each conversation it checks — the members, and users removed
/// within the range (they must hear of their removal) — in one query.
#[actix_web::test]
async fn the_recovery_knows_who_wants_a_conversations_events_including_the_removed() {
    let p = pair().await;
    let g = group(&p.ca, "who", &[p.bob]).await;
    let before = send(&p.ca, g.id, text("before")).await;
    let _: serde_json::Value =
        p.ca.call(Request::RemoveMember {
            conversation_id: g.id,
            user_id: p.bob,
        })
        .await
        .expect("remove");
    let after = send(&p.ca, g.id, text("after")).await;
    let sorted = |mut v: Vec<UserId>| {
        v.sort();
        v
    };
    let other = ConversationId::new_random();
    let got = p
        .env
        .store
        .interested_users(&[(g.id, before.seq, after.seq), (other, 0, 5)])
        .await
        .expect("query");
    assert_eq!(
        sorted(got.get(&g.id).cloned().unwrap_or_default()),
        sorted(vec![p.alice, p.bob]),
        "Alice is a member; Bob was removed within the range"
    );
    assert!(
        !got.contains_key(&other),
        "an unknown conversation wants nothing"
    );
    // After the removal, only the members.
    let got = p
        .env
        .store
        .interested_users(&[(g.id, after.seq - 1, after.seq)])
        .await
        .expect("query");
    assert_eq!(got.get(&g.id).cloned().unwrap_or_default(), vec![p.alice]);
}
