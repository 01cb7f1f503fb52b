//! Call signaling over real WebSocket sessions (docs/calls.md): ringing on
//! every device, answered once, signaling only between the sessions in the
//! call, the outcomes and the system messages they leave in the history.

use crate::*;
use parley_core::calls::{CallState, Joined, Media, Outcome, Signal};
use parley_core::protocol::{MessageKind, RingingStopped};
use parley_core::{CallId, SessionId};

const TURN_SECRET: &str = "a-shared-secret-for-coturn";

fn with_ice(c: &mut parley_server::config::Config) {
    c.calls.stun_urls = vec!["stun:127.0.0.1:3478".into()];
    c.calls.turn_urls = vec!["turn:127.0.0.1:3478?transport=udp".into()];
    c.calls.turn_secret = TURN_SECRET.into();
    c.calls.turn_ttl_secs = 600;
    c.calls.ring_timeout_secs = 5;
    c.calls.rejoin_grace_secs = 2;
}

fn session(c: &Client) -> SessionId {
    c.ready().expect("ready").session_id
}

async fn dialog(p: &Pair) -> ConversationId {
    let c: Conversation =
        p.ca.call(Request::OpenDialog { user_id: p.bob })
            .await
            .expect("dialog");
    c.id
}

async fn start(c: &Client, conv: ConversationId) -> Joined {
    c.call(Request::CallStart {
        conversation_id: conv,
        media: Media::Video,
        group: false,
    })
    .await
    .expect("call.start")
}

async fn ringing(c: &Client) -> CallId {
    expect(c, "call.ringing", |e| match e {
        Event::CallRinging { call } => Some(call.id),
        _ => None,
    })
    .await
}

async fn ended(c: &Client, id: CallId) -> Outcome {
    expect(c, "call.ended", |e| match e {
        Event::CallEnded { call } if call.id == id => call.outcome,
        _ => None,
    })
    .await
}

/// The system message the call left in the history.
async fn record(c: &Client, conv: ConversationId, id: CallId) -> Value {
    let messages = history(c, conv).await;
    let m = messages
        .iter()
        .rev()
        .find(|m| m.kind == MessageKind::System)
        .unwrap_or_else(|| panic!("no system message: {messages:?}"));
    let rec = m.data.as_ref().expect("data")["call"].clone();
    assert_eq!(rec["call_id"], json!(id), "{rec}");
    rec
}

fn python_turn_credential(username: &str) -> String {
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import base64,hashlib,hmac,sys;print(base64.b64encode(hmac.new(sys.argv[1].encode(),sys.argv[2].encode(),hashlib.sha1).digest()).decode())",
            TURN_SECRET,
            username,
        ])
        .output()
        .expect("python3");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[actix_web::test]
async fn a_call_rings_every_device_is_answered_once_signals_only_inside_and_leaves_a_record() {
    let p = pair_with(with_ice).await;
    let app = p.env.app().await;
    let conv = dialog(&p).await;
    // Bob has a second device.
    let tb2 = token(&app, &p.b, &p.bob.to_string()).await;
    let cb2 = client(&p.server, &tb2).await;

    let joined = start(&p.ca, conv).await;
    let id = joined.call.id;
    assert_eq!(joined.call.state, CallState::Ringing);
    // STUN as configured; TURN with credentials that expire as configured
    // (coturn's REST scheme, checked against Python's hmac).
    assert_eq!(joined.ice_servers[0].urls, vec!["stun:127.0.0.1:3478"]);
    let turn = &joined.ice_servers[1];
    let username = turn.username.clone().expect("username");
    let (expiry, user) = username.split_once(':').expect("expiry:user");
    assert_eq!(user, p.alice.to_string());
    let expiry: i64 = expiry.parse().expect("expiry");
    let want = chrono::Utc::now().timestamp() + 600;
    assert!(
        (want - 5..=want + 1).contains(&expiry),
        "{expiry} vs {want}"
    );
    assert_eq!(
        turn.credential.as_deref(),
        Some(python_turn_credential(&username).as_str())
    );

    // Both of Bob's devices ring; the first answer wins.
    assert_eq!(ringing(&p.cb).await, id);
    assert_eq!(ringing(&cb2).await, id);
    let answered: Joined =
        p.cb.call(Request::CallAccept { call_id: id })
            .await
            .expect("accept");
    assert_eq!(answered.call.state, CallState::Active);
    assert_eq!(answered.call.participants.len(), 2);
    let (sid, why) = expect(&cb2, "ringing stopped", |e| match e {
        Event::CallRingingStopped {
            call_id,
            session_id,
            reason,
        } if *call_id == id => Some((*session_id, *reason)),
        _ => None,
    })
    .await;
    assert_eq!(
        (sid, why),
        (session(&p.cb), RingingStopped::AnsweredElsewhere)
    );
    let e = cb2
        .request(Request::CallAccept { call_id: id })
        .await
        .expect_err("answered elsewhere");
    assert_eq!(e.code(), Some(ErrorCode::Conflict), "{e}");
    expect_event(&p.ca, "call.updated", |e| {
        matches!(e, Event::CallUpdated { call } if call.id == id && call.participants.len() == 2)
    })
    .await;

    // Signaling: Alice to Bob's answering session only.
    let offer = Signal {
        sdp: Some(json!({"type": "offer", "sdp": "v=0 fake"})),
        candidate: None,
    };
    p.ca.call::<Value>(Request::CallSignal {
        call_id: id,
        to_session: Some(session(&p.cb)),
        signal: offer.clone(),
    })
    .await
    .expect("signal");
    let (from, got) = expect(&p.cb, "call.signal", |e| match e {
        Event::CallSignal {
            call_id,
            from_session,
            signal,
            ..
        } if *call_id == id => Some((*from_session, signal.clone())),
        _ => None,
    })
    .await;
    assert_eq!((from, got), (session(&p.ca), offer.clone()));
    // Never to a session outside the call, nor from one.
    let e =
        p.ca.request(Request::CallSignal {
            call_id: id,
            to_session: Some(session(&cb2)),
            signal: offer.clone(),
        })
        .await
        .expect_err("outside the call");
    assert_eq!(e.code(), Some(ErrorCode::AccessDenied), "{e}");
    let e = cb2
        .request(Request::CallSignal {
            call_id: id,
            to_session: None,
            signal: offer.clone(),
        })
        .await
        .expect_err("not in the call");
    assert_eq!(e.code(), Some(ErrorCode::AccessDenied), "{e}");
    // Bad signals: both or neither, too large.
    for bad in [
        Signal {
            sdp: None,
            candidate: None,
        },
        Signal {
            sdp: Some(json!("x".repeat(70_000))),
            candidate: None,
        },
    ] {
        let e =
            p.ca.request(Request::CallSignal {
                call_id: id,
                to_session: None,
                signal: bad,
            })
            .await
            .expect_err("refused");
        assert!(
            matches!(
                e.code(),
                Some(ErrorCode::Invalid) | Some(ErrorCode::TooLarge)
            ),
            "{e}"
        );
    }
    for ev in cb2.drain_events().await {
        assert!(!matches!(ev, Event::CallSignal { .. }), "leaked: {ev:?}");
    }
    // Alice shares a screen: the members see who.
    p.ca.call::<Value>(Request::CallScreen {
        call_id: id,
        sharing: true,
    })
    .await
    .expect("screen");
    expect_event(&p.cb, "who shares", |e| {
        matches!(e, Event::CallUpdated { call } if call.id == id
            && call.participants.iter().any(|x| x.user_id == p.alice && x.screen))
    })
    .await;
    let e = cb2
        .request(Request::CallScreen {
            call_id: id,
            sharing: true,
        })
        .await
        .expect_err("not in the call");
    assert_eq!(e.code(), Some(ErrorCode::AccessDenied), "{e}");

    // Bob hangs up: over for both, with its duration in the history.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    p.cb.call::<Value>(Request::CallHangup { call_id: id })
        .await
        .expect("hangup");
    assert_eq!(ended(&p.ca, id).await, Outcome::Completed);
    let rec = record(&p.ca, conv, id).await;
    assert_eq!(rec["outcome"], "completed");
    assert!(
        rec["duration_secs"].as_i64().is_some_and(|d| d >= 1),
        "{rec}"
    );
    // Bob's history has it too (a message with its own seq).
    let rec = record(&p.cb, conv, id).await;
    assert_eq!(rec["media"], "video");
}

#[actix_web::test]
async fn declined_cancelled_busy_and_unanswered_calls_end_with_their_outcome() {
    let p = pair_with(with_ice).await;
    let app = p.env.app().await;
    let conv = dialog(&p).await;

    // Declined.
    let id = start(&p.ca, conv).await.call.id;
    ringing(&p.cb).await;
    p.cb.call::<Value>(Request::CallDecline { call_id: id })
        .await
        .expect("decline");
    assert_eq!(ended(&p.ca, id).await, Outcome::Declined);
    assert_eq!(record(&p.ca, conv, id).await["outcome"], "declined");

    // Cancelled by the caller.
    let id = start(&p.ca, conv).await.call.id;
    ringing(&p.cb).await;
    let e =
        p.cb.request(Request::CallCancel { call_id: id })
            .await
            .expect_err("only the caller cancels");
    assert_eq!(e.code(), Some(ErrorCode::AccessDenied));
    p.ca.call::<Value>(Request::CallCancel { call_id: id })
        .await
        .expect("cancel");
    assert_eq!(ended(&p.cb, id).await, Outcome::Cancelled);

    // Busy: Bob is in a call with Carol; Alice's call ends at once.
    let carol = user(&app, &p.b, "carol").await;
    let tc = token(&app, &p.b, &carol).await;
    let cc = client(&p.server, &tc).await;
    let bc: Conversation =
        p.cb.call(Request::OpenDialog {
            user_id: uid(&carol),
        })
        .await
        .expect("dialog");
    let with_carol = start(&p.cb, bc.id).await.call.id;
    ringing(&cc).await;
    cc.call::<Joined>(Request::CallAccept {
        call_id: with_carol,
    })
    .await
    .expect("carol answers");
    let busy = start(&p.ca, conv).await;
    assert_eq!(busy.call.outcome, Some(Outcome::Busy));
    assert_eq!(record(&p.ca, conv, busy.call.id).await["outcome"], "busy");
    // Nor can Bob start another call while in one.
    let e =
        p.cb.request(Request::CallStart {
            conversation_id: conv,
            media: Media::Audio,
            group: false,
        })
        .await
        .expect_err("in a call");
    assert_eq!(e.code(), Some(ErrorCode::Conflict));
    cc.call::<Value>(Request::CallHangup {
        call_id: with_carol,
    })
    .await
    .expect("hangup");

    // Nobody answers within calls.ring_timeout_secs: missed.
    let id = start(&p.ca, conv).await.call.id;
    assert_eq!(ended(&p.cb, id).await, Outcome::Missed);
    let rec = record(&p.cb, conv, id).await;
    assert_eq!(rec["outcome"], "missed");
    assert!(rec.get("duration_secs").is_none(), "{rec}");
}

#[actix_web::test]
async fn a_non_member_cannot_start_answer_or_hear_a_call() {
    let p = pair_with(with_ice).await;
    let app = p.env.app().await;
    let conv = dialog(&p).await;
    // Dave: same subscriber, not in the dialog. Eve: another subscriber.
    let dave = user(&app, &p.a, "dave").await;
    let cd = client(&p.server, &token(&app, &p.a, &dave).await).await;
    let e_ib = register(&app, &email("calls-eve"), "Eve").await;
    let eve = user(&app, &e_ib, "eve").await;
    let ce = client(&p.server, &token(&app, &e_ib, &eve).await).await;

    for c in [&cd, &ce] {
        let e = c
            .request(Request::CallStart {
                conversation_id: conv,
                media: Media::Audio,
                group: false,
            })
            .await
            .expect_err("not a member");
        assert!(
            matches!(
                e.code(),
                Some(ErrorCode::AccessDenied) | Some(ErrorCode::NotFound)
            ),
            "{e}"
        );
    }
    let id = start(&p.ca, conv).await.call.id;
    ringing(&p.cb).await;
    for c in [&cd, &ce] {
        for req in [
            Request::CallAccept { call_id: id },
            Request::CallJoin { call_id: id },
            Request::CallDecline { call_id: id },
            Request::CallHangup { call_id: id },
        ] {
            let e = c.request(req).await.expect_err("not a member");
            assert_eq!(e.code(), Some(ErrorCode::NotFound), "{e}");
        }
    }
    p.cb.call::<Joined>(Request::CallAccept { call_id: id })
        .await
        .expect("accept");
    p.ca.call::<Value>(Request::CallSignal {
        call_id: id,
        to_session: None,
        signal: Signal {
            sdp: None,
            candidate: Some(json!({"candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host"})),
        },
    })
    .await
    .expect("signal");
    expect_event(&p.cb, "signal", |e| matches!(e, Event::CallSignal { .. })).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    for c in [&cd, &ce] {
        for ev in c.drain_events().await {
            assert!(
                !matches!(
                    ev,
                    Event::CallRinging { .. }
                        | Event::CallSignal { .. }
                        | Event::CallUpdated { .. }
                ),
                "a non-member heard of the call: {ev:?}"
            );
        }
    }
}

#[actix_web::test]
async fn a_dropped_participant_rejoins_in_time_or_the_call_ends() {
    let p = pair_with(with_ice).await;
    let conv = dialog(&p).await;
    let id = start(&p.ca, conv).await.call.id;
    ringing(&p.cb).await;
    p.cb.call::<Joined>(Request::CallAccept { call_id: id })
        .await
        .expect("accept");
    // Bob's connection drops and comes back at once: he rejoins.
    p.cb.disconnect().await;
    p.cb.reconnect().await.expect("reconnect");
    let back: Joined =
        p.cb.call(Request::CallJoin { call_id: id })
            .await
            .expect("rejoin");
    assert_eq!(back.call.state, CallState::Active);
    assert!(back
        .call
        .participants
        .iter()
        .any(|x| x.user_id == p.bob && x.session_id == session(&p.cb)));
    // Then he drops for longer than calls.rejoin_grace_secs: over.
    p.cb.disconnect().await;
    assert_eq!(ended(&p.ca, id).await, Outcome::Completed);
}

/// A call in a group goes through a Janus VideoRoom that Parley creates
/// (only with the admin key), gives to the participants with its pin, and
/// destroys when the last one leaves; one leaving does not end it.
#[actix_web::test]
async fn a_group_call_gets_a_janus_room_until_the_last_one_leaves() {
    let janus = parley_tests::janus::Janus::start().await;
    let (url, key) = (janus.url(), janus.admin_key.clone());
    let p = pair_with(|c| {
        with_ice(c);
        c.calls.janus_urls = vec![url.clone()];
        c.calls.janus_admin_key = key.clone();
    })
    .await;
    let app = p.env.app().await;
    let carol = user(&app, &p.b, "carol").await;
    let cc = client(&p.server, &token(&app, &p.b, &carol).await).await;
    let g = group(&p.ca, "standup", &[p.bob, uid(&carol)]).await;

    let joined = start(&p.ca, g.id).await;
    assert!(joined.call.group);
    let room = joined.room.clone().expect("a room for a group call");
    assert_eq!(room.server, url);
    assert!(room.pin.len() >= 16);
    let admin = parley_media::Janus::new(vec![url.clone()], key.clone(), Duration::from_secs(5));
    assert!(
        admin.room_exists(&room).await.expect("exists"),
        "{}",
        janus.log()
    );
    // Nobody without the admin key creates rooms on this Janus.
    let stranger =
        parley_media::Janus::new(vec![url.clone()], String::new(), Duration::from_secs(5));
    assert!(stranger.create_room("x", 3).await.is_err());

    let id = joined.call.id;
    assert_eq!(ringing(&p.cb).await, id);
    assert_eq!(ringing(&cc).await, id);
    for c in [&p.cb, &cc] {
        let j: Joined = c
            .call(Request::CallAccept { call_id: id })
            .await
            .expect("accept");
        assert_eq!(j.room.as_ref(), Some(&room));
    }
    expect_event(&p.ca, "three in the call", |e| {
        matches!(e, Event::CallUpdated { call } if call.id == id && call.participants.len() == 3)
    })
    .await;
    // One leaves: the others go on.
    p.cb.call::<Value>(Request::CallHangup { call_id: id })
        .await
        .expect("hangup");
    expect_event(&p.ca, "two left", |e| {
        matches!(e, Event::CallUpdated { call } if call.id == id && call.participants.len() == 2)
    })
    .await;
    assert!(admin.room_exists(&room).await.expect("exists"));
    for c in [&p.ca, &cc] {
        c.call::<Value>(Request::CallHangup { call_id: id })
            .await
            .expect("hangup");
    }
    assert_eq!(ended(&p.cb, id).await, Outcome::Completed);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while admin.room_exists(&room).await.expect("exists") {
        assert!(
            std::time::Instant::now() < deadline,
            "the room was not destroyed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A call between two started as a group call gets a room too.
    let conv = dialog(&p).await;
    let j: Joined =
        p.ca.call(Request::CallStart {
            conversation_id: conv,
            media: Media::Audio,
            group: true,
        })
        .await
        .expect("group call in a dialog");
    assert!(j.call.group && j.room.is_some(), "{j:?}");
    p.ca.call::<Value>(Request::CallCancel { call_id: j.call.id })
        .await
        .expect("cancel");
}

#[actix_web::test]
async fn a_group_call_without_a_media_server_is_unavailable() {
    let p = pair_with(with_ice).await;
    let app = p.env.app().await;
    let carol = user(&app, &p.b, "carol").await;
    let g = group(&p.ca, "no janus", &[p.bob, uid(&carol)]).await;
    let e =
        p.ca.request(Request::CallStart {
            conversation_id: g.id,
            media: Media::Audio,
            group: false,
        })
        .await
        .expect_err("no media server");
    assert_eq!(e.code(), Some(ErrorCode::Unavailable), "{e}");
}

/// Runs coturn's own client against the relay; true when it allocated.
fn turn_allocates(port: u16, username: &str, credential: &str) -> bool {
    std::process::Command::new("turnutils_uclient")
        .args(["-y", "-n", "1", "-m", "1", "-u", username, "-w", credential])
        .args(["-p", &port.to_string(), "127.0.0.1"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// The TURN credentials of a call work on a real coturn with the shared
/// secret, and the same kind of credential past its expiry does not.
#[actix_web::test]
async fn turn_credentials_work_on_coturn_until_they_expire() {
    let turn = parley_tests::turn::Coturn::start().await;
    let (port, secret) = (turn.port, turn.secret.clone());
    let p = pair_with(|c| {
        with_ice(c);
        c.calls.turn_urls = vec![format!("turn:127.0.0.1:{port}?transport=udp")];
        c.calls.turn_secret = secret.clone();
        c.calls.turn_ttl_secs = 60;
    })
    .await;
    let conv = dialog(&p).await;
    let joined = start(&p.ca, conv).await;
    let ice = joined
        .ice_servers
        .iter()
        .find(|s| s.urls[0].starts_with("turn:"))
        .expect("turn");
    let (user, cred) = (
        ice.username.clone().expect("username"),
        ice.credential.clone().expect("credential"),
    );
    let expiry: i64 = user
        .split(':')
        .next()
        .and_then(|e| e.parse().ok())
        .expect("expiry");
    let now = chrono::Utc::now().timestamp();
    assert!((now + 55..=now + 61).contains(&expiry), "{user}");
    let allocates = tokio::task::spawn_blocking(move || turn_allocates(port, &user, &cred))
        .await
        .expect("join");
    assert!(allocates, "coturn refused fresh credentials");
    // Expired: the same scheme and secret, an expiry in the past.
    let old = format!("{}:{}", now - 5, p.alice);
    let old_cred = parley_core::crypto::turn_credential(secret.as_bytes(), &old);
    let allocates = tokio::task::spawn_blocking(move || turn_allocates(port, &old, &old_cred))
        .await
        .expect("join");
    assert!(!allocates, "coturn took expired credentials");
}

/// Janus not answering: a group call is unavailable, with a clear message.
#[actix_web::test]
async fn a_group_call_with_janus_down_is_unavailable() {
    let closed = parley_tests::cluster::free_port();
    let p = pair_with(|c| {
        with_ice(c);
        c.calls.janus_urls = vec![format!("http://127.0.0.1:{closed}/janus")];
        c.calls.janus_timeout_secs = 2;
    })
    .await;
    let app = p.env.app().await;
    let carol = user(&app, &p.b, "carol").await;
    let g = group(&p.ca, "janus down", &[p.bob, uid(&carol)]).await;
    let e =
        p.ca.request(Request::CallStart {
            conversation_id: g.id,
            media: Media::Video,
            group: false,
        })
        .await
        .expect_err("janus down");
    assert_eq!(e.code(), Some(ErrorCode::Unavailable), "{e}");
    assert!(e.to_string().contains("media server"), "{e}");
    // Nothing was left behind: a call can start once Janus is back (here:
    // the conversation has no live call).
    let live: i64 = sqlx::query_scalar("SELECT count(*) FROM calls WHERE state <> 'ended'")
        .fetch_one(&p.env.db)
        .await
        .expect("count");
    assert_eq!(live, 0);
}
