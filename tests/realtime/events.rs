//! Edits, deletes, read markers, typing and presence.

use crate::*;

#[actix_web::test]
async fn edits_deletes_read_markers_typing_and_presence() {
    let p = pair().await;
    let app = p.env.app().await;
    let group: Conversation =
        p.ca.call(Request::CreateGroup {
            title: "events".into(),
            members: vec![p.bob],
        })
        .await
        .expect("group");
    let m1 = send(&p.ca, group.id, text("first")).await;
    let m2 = send(&p.ca, group.id, text("second")).await;
    let _m3 = send(
        &p.ca,
        group.id,
        NewMessage {
            text: "for alice only".into(),
            recipients: Some(vec![p.alice]),
            ..Default::default()
        },
    )
    .await;

    // Edit: only the author.
    assert_eq!(
        p.cb.request(Request::Edit {
            conversation_id: group.id,
            message_id: m1.id,
            text: Some("hacked".into()),
            data: None
        })
        .await
        .expect_err("not author")
        .code(),
        Some(ErrorCode::AccessDenied)
    );
    let edited: Message =
        p.ca.call(Request::Edit {
            conversation_id: group.id,
            message_id: m1.id,
            text: Some("first (edited)".into()),
            data: None,
        })
        .await
        .expect("edit");
    assert!(edited.edited_at.is_some());
    expect(&p.cb, "message.edited", |e| match e {
        Event::MessageEdited { message, .. }
            if message.id == m1.id && message.text == "first (edited)" =>
        {
            Some(())
        }
        _ => None,
    })
    .await;
    // Delete: the author (or the infobase).
    p.ca.request(Request::Delete {
        conversation_id: group.id,
        message_id: m2.id,
    })
    .await
    .expect("delete");
    expect(&p.cb, "message.deleted", |e| match e {
        Event::MessageDeleted { message_id, .. } if *message_id == m2.id => Some(()),
        _ => None,
    })
    .await;
    // Bob never saw the message addressed to Alice only.
    let h: MessagePage =
        p.cb.call(Request::History {
            conversation_id: group.id,
            before: None,
            after: None,
            limit: None,
        })
        .await
        .expect("history");
    assert!(h.messages.iter().all(|m| m.text != "for alice only"));
    assert!(h
        .messages
        .iter()
        .any(|m| m.id == m2.id && m.deleted && m.text.is_empty()));
    let ha: MessagePage =
        p.ca.call(Request::History {
            conversation_id: group.id,
            before: None,
            after: None,
            limit: None,
        })
        .await
        .expect("history");
    assert!(ha.messages.iter().any(|m| m.text == "for alice only"));

    // Unread: Bob has "first" (the deleted one and Alice's private one do not count).
    let c: Conversation =
        p.cb.call(Request::GetConversation {
            conversation_id: group.id,
        })
        .await
        .expect("get");
    assert_eq!(c.unread, Some(1));
    let rs: ReadState =
        p.cb.call(Request::Read {
            conversation_id: group.id,
            seq: c.last_seq,
        })
        .await
        .expect("read");
    assert_eq!(rs.unread, 0);
    expect(&p.ca, "read", |e| match e {
        Event::Read {
            user_id, read_seq, ..
        } if *user_id == p.bob && *read_seq == c.last_seq => Some(()),
        _ => None,
    })
    .await;
    // A marker never moves back.
    let back: ReadState =
        p.cb.call(Request::Read {
            conversation_id: group.id,
            seq: 1,
        })
        .await
        .expect("read");
    assert_eq!(back.read_seq, c.last_seq);

    // Typing reaches the others, not the typist.
    p.ca.request(Request::Typing {
        conversation_id: group.id,
    })
    .await
    .expect("typing");
    expect(&p.cb, "typing", |e| match e {
        Event::Typing { user_id, .. } if *user_id == p.alice => Some(()),
        _ => None,
    })
    .await;

    // Presence: Bob is online; when he leaves, Alice is told, and the
    // infobase sees it over REST.
    let online: parley_core::protocol::PresenceState =
        p.ca.call(Request::Presence {
            user_ids: vec![p.bob],
        })
        .await
        .expect("presence");
    assert_eq!(online.users.get(&p.bob), Some(&true));
    let r = call(
        &app,
        "GET",
        &format!("/v1/infobases/{}/users/{}/presence", p.b.id, p.bob),
        &p.b.auth(),
        None,
    )
    .await;
    assert_eq!(r.body["online"], true, "{r:?}");
    p.cb.close();
    expect(&p.ca, "presence offline", |e| match e {
        Event::Presence { user_id, online } if *user_id == p.bob && !online => Some(()),
        _ => None,
    })
    .await;
    let r = call(
        &app,
        "GET",
        &format!("/v1/infobases/{}/users/{}/presence", p.b.id, p.bob),
        &p.b.auth(),
        None,
    )
    .await;
    assert_eq!(r.body["online"], false);
    // Bob comes back: Alice sees him online.
    let tb = token(&app, &p.b, &p.bob.to_string()).await;
    let cb2 = client(&p.server, &tb).await;
    expect(&p.ca, "presence online", |e| match e {
        Event::Presence { user_id, online } if *user_id == p.bob && *online => Some(()),
        _ => None,
    })
    .await;
    // A notification from the infobase reaches Bob's open session.
    let r = call(
        &app,
        "POST",
        &format!("/v1/infobases/{}/users/{}/notifications", p.b.id, p.bob),
        &p.b.auth(),
        json_body(json!({"data": {"kind": "task", "id": 7}})),
    )
    .await;
    assert_eq!(r.status, 202, "{r:?}");
    expect(&cb2, "notification", |e| match e {
        Event::Notification { data, .. } if data["id"] == 7 => Some(()),
        _ => None,
    })
    .await;
    // Members: Alice (creator) removes Bob; Bob is told.
    p.ca.request(Request::RemoveMember {
        conversation_id: group.id,
        user_id: p.bob,
    })
    .await
    .expect("remove");
    expect(&cb2, "member.removed", |e| match e {
        Event::MemberRemoved { user_id, .. } if *user_id == p.bob => Some(()),
        _ => None,
    })
    .await;
    assert_eq!(
        cb2.request(Request::Send {
            conversation_id: group.id,
            message: text("still here?")
        })
        .await
        .expect_err("removed")
        .code(),
        Some(ErrorCode::AccessDenied)
    );
}

/// `GET /metrics` as text.
async fn metrics_text(env: &TestEnv) -> String {
    let app = env.app().await;
    let req = actix_web::test::TestRequest::get()
        .uri("/metrics")
        .to_request();
    let res = actix_web::test::call_service(&app, req).await;
    assert_eq!(res.status(), 200);
    let ct = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(ct.starts_with("text/plain"), "{ct}");
    let body = actix_web::test::read_body(res).await;
    String::from_utf8(body.to_vec()).expect("utf-8")
}

/// The value of an unlabelled sample (0 when absent).
fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[actix_web::test]
async fn a_send_moves_the_send_commit_and_delivery_counters() {
    let p = pair().await;
    let g = group(&p.ca, "metrics", &[p.bob]).await;
    expect_event(
        &p.cb,
        "member.added",
        |e| matches!(e, Event::MemberAdded { conversation_id, .. } if *conversation_id == g.id),
    )
    .await;
    let before = metrics_text(&p.env).await;
    let m = send(&p.ca, g.id, text("counted")).await;
    let got = collect(&p.cb, g.id, 1).await;
    assert_eq!(got[0].id, m.id);
    let after = metrics_text(&p.env).await;
    for name in ["parley_sends_total", "parley_commits_total"] {
        assert!(
            sample(&after, name) > sample(&before, name),
            "{name} did not move:\n{after}"
        );
    }
    // Alice's and Bob's sessions both got the message.
    assert!(
        sample(&after, "parley_deliveries_total")
            >= sample(&before, "parley_deliveries_total") + 2.0,
        "deliveries did not move:\n{after}"
    );
    assert_eq!(sample(&after, "parley_sessions"), 2.0);
    for name in [
        "parley_ws_request_seconds_count",
        "parley_http_request_seconds_count",
        "parley_db_pool_connections",
    ] {
        assert!(sample(&after, name) > 0.0, "{name} missing:\n{after}");
    }
}
