//! Conversations in real time over real WebSocket connections.

use parley_client::Client;
use parley_core::protocol::{
    Conversation, Event, Message, MessagePage, NewMessage, ReadState, Request,
};
use parley_core::{ConversationId, ErrorCode, UserId};
use parley_tests::serde_json::{json, Value};
use parley_tests::*;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

/// Waits for the first event that `pick` accepts, skipping others.
async fn expect<T>(c: &Client, what: &str, mut pick: impl FnMut(&Event) -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let ev = c
            .next_event(left)
            .await
            .unwrap_or_else(|| panic!("no {what} event within {WAIT:?}"));
        if let Some(t) = pick(&ev) {
            return t;
        }
    }
}

fn uid(s: &str) -> UserId {
    s.parse().expect("user id")
}

fn text(t: &str) -> NewMessage {
    NewMessage {
        text: t.into(),
        ..Default::default()
    }
}

async fn send(c: &Client, conv: ConversationId, m: NewMessage) -> Message {
    c.call(Request::Send {
        conversation_id: conv,
        message: m,
    })
    .await
    .expect("send")
}

/// Two users of two infobases of one subscriber, connected.
struct Pair {
    env: TestEnv,
    server: TestServer,
    a: Ib,
    b: Ib,
    alice: UserId,
    bob: UserId,
    ca: Client,
    cb: Client,
}

async fn pair() -> Pair {
    pair_with(|_| {}).await
}

async fn pair_with(tweak: impl FnOnce(&mut parley_server::config::Config)) -> Pair {
    let env = TestEnv::new(tweak).await;
    let app = env.app().await;
    let a = register(&app, &email("rt-a"), "A").await;
    let b = sibling(&app, &env, &a, "B").await;
    let alice = user(&app, &a, "alice").await;
    let bob = user(&app, &b, "bob").await;
    let ta = token(&app, &a, &alice).await;
    let tb = token(&app, &b, &bob).await;
    let server = env.server().await;
    let ca = client(&server, &ta).await;
    let cb = client(&server, &tb).await;
    Pair {
        alice: uid(&alice),
        bob: uid(&bob),
        env,
        server,
        a,
        b,
        ca,
        cb,
    }
}

#[actix_web::test]
async fn two_infobases_of_one_subscriber_chat_in_a_group_and_a_dialog() {
    let p = pair().await;
    let group: Conversation =
        p.ca.call(Request::CreateGroup {
            title: "Закупки".into(),
            members: vec![p.bob],
        })
        .await
        .expect("group");
    assert_eq!(group.member_count, 2);
    let members = group.members.clone().expect("members");
    assert!(members.contains(&p.alice) && members.contains(&p.bob));
    // Bob learns he was added.
    expect(&p.cb, "member.added", |e| match e {
        Event::MemberAdded {
            conversation_id,
            user_id,
            ..
        } if *conversation_id == group.id && *user_id == p.bob => Some(()),
        _ => None,
    })
    .await;

    let sent = send(&p.ca, group.id, text("Привет, Bob")).await;
    assert!(sent.seq > 0);
    let got = expect(&p.cb, "message.created", |e| match e {
        Event::MessageCreated { message, .. } if message.id == sent.id => Some(message.clone()),
        _ => None,
    })
    .await;
    assert_eq!(got.text, "Привет, Bob");
    assert_eq!(got.seq, sent.seq);
    assert_eq!(got.author_id, p.alice);

    let reply = send(&p.cb, group.id, text("Hi Alice")).await;
    assert_eq!(reply.seq, sent.seq + 1, "seq is strictly increasing");
    expect(&p.ca, "reply", |e| match e {
        Event::MessageCreated { message, .. } if message.id == reply.id => Some(()),
        _ => None,
    })
    .await;

    // A dialog is one per pair, whoever opens it.
    let d1: Conversation =
        p.ca.call(Request::OpenDialog { user_id: p.bob })
            .await
            .expect("dialog");
    let d2: Conversation =
        p.cb.call(Request::OpenDialog { user_id: p.alice })
            .await
            .expect("dialog");
    assert_eq!(d1.id, d2.id);
    assert_eq!(d1.kind, parley_core::protocol::ConversationKind::Dialog);
    let dm = send(&p.cb, d1.id, text("just us")).await;
    expect(&p.ca, "dialog message", |e| match e {
        Event::MessageCreated { message, .. } if message.id == dm.id => Some(()),
        _ => None,
    })
    .await;

    // The list shows both, with unread counts.
    let page: parley_core::protocol::ConversationPage =
        p.ca.call(Request::ListConversations {
            filter: Default::default(),
        })
        .await
        .expect("list");
    assert_eq!(page.conversations.len(), 2);
    let dialog_row = page
        .conversations
        .iter()
        .find(|c| c.id == d1.id)
        .expect("dialog listed");
    assert_eq!(dialog_row.unread, Some(1));
    let only_dialogs: parley_core::protocol::ConversationPage =
        p.ca.call(Request::ListConversations {
            filter: parley_core::protocol::ConversationFilter {
                kind: Some(parley_core::protocol::ConversationKind::Dialog),
                ..Default::default()
            },
        })
        .await
        .expect("list");
    assert_eq!(only_dialogs.conversations.len(), 1);

    // History holds the messages in order.
    let h: MessagePage =
        p.cb.call(Request::History {
            conversation_id: group.id,
            before: None,
            after: None,
            limit: Some(10),
        })
        .await
        .expect("history");
    let texts: Vec<&str> = h.messages.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, vec!["Привет, Bob", "Hi Alice"]);
    let _ = (&p.env, &p.server, &p.a, &p.b);
}

#[actix_web::test]
async fn other_subscribers_cannot_see_or_join() {
    let p = pair().await;
    let app = p.env.app().await;
    let group: Conversation =
        p.ca.call(Request::CreateGroup {
            title: "private".into(),
            members: vec![p.bob],
        })
        .await
        .expect("group");
    send(&p.ca, group.id, text("secret")).await;

    // Eve belongs to another subscriber.
    let e_ib = register(&app, &email("eve"), "Eve Corp").await;
    let eve = user(&app, &e_ib, "eve").await;
    let te = token(&app, &e_ib, &eve).await;
    let ce = client(&p.server, &te).await;
    let eve = uid(&eve);

    let denied = |r: Result<Value, parley_client::ClientError>| {
        let code = r.expect_err("must be refused").code();
        assert!(
            matches!(
                code,
                Some(ErrorCode::NotFound) | Some(ErrorCode::AccessDenied)
            ),
            "{code:?}"
        );
    };
    denied(
        ce.request(Request::GetConversation {
            conversation_id: group.id,
        })
        .await,
    );
    denied(
        ce.request(Request::Send {
            conversation_id: group.id,
            message: text("hi"),
        })
        .await,
    );
    denied(
        ce.request(Request::History {
            conversation_id: group.id,
            before: None,
            after: None,
            limit: None,
        })
        .await,
    );
    denied(
        ce.request(Request::Read {
            conversation_id: group.id,
            seq: 1,
        })
        .await,
    );
    denied(
        ce.request(Request::Typing {
            conversation_id: group.id,
        })
        .await,
    );
    denied(
        ce.request(Request::Leave {
            conversation_id: group.id,
        })
        .await,
    );
    denied(
        ce.request(Request::AddMembers {
            conversation_id: group.id,
            user_ids: vec![eve],
        })
        .await,
    );
    denied(ce.request(Request::OpenDialog { user_id: p.alice }).await);
    denied(
        ce.request(Request::CreateGroup {
            title: "x".into(),
            members: vec![p.alice],
        })
        .await,
    );
    denied(
        ce.request(Request::Presence {
            user_ids: vec![p.alice],
        })
        .await,
    );
    // Alice cannot pull Eve in either.
    denied(
        p.ca.request(Request::AddMembers {
            conversation_id: group.id,
            user_ids: vec![eve],
        })
        .await,
    );
    // Resume of a foreign conversation replays nothing.
    ce.track(group.id, 0);
    let r = ce
        .request(Request::Resume {
            conversations: [(group.id, 0)].into(),
        })
        .await
        .expect("resume");
    assert_eq!(r["replayed"], 0);
    // Eve's infobase sees nothing of it over REST.
    let r = call(
        &app,
        "GET",
        &format!("/v1/infobases/{}/conversations/{}", e_ib.id, group.id),
        &e_ib.auth(),
        None,
    )
    .await;
    r.expect_error(404, "not_found");
    let r = call(
        &app,
        "POST",
        &format!("/v1/infobases/{}/conversations", e_ib.id),
        &e_ib.auth(),
        json_body(json!({"title": "steal", "members": [p.alice.to_string()]})),
    )
    .await;
    r.expect_error(404, "not_found");
    assert!(ce
        .drain_events()
        .await
        .iter()
        .all(|e| !matches!(e, Event::MessageCreated { .. })));
}

#[actix_web::test]
async fn one_contextual_conversation_per_object_and_only_granted_users_read_it() {
    let p = pair().await;
    let app = p.env.app().await;
    let path = format!("/v1/infobases/{}/contexts", p.a.id);
    let auth = p.a.auth();
    let calls = (0..20).map(|_| {
        call(
            &app,
            "PUT",
            &path,
            &auth,
            json_body(json!({"object_ref": "Document.Invoice/000123", "title": "Invoice 123"})),
        )
    });
    let results = futures_util::future::join_all(calls).await;
    let ids: std::collections::HashSet<String> = results
        .iter()
        .map(|r| r.body["id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(ids.len(), 1, "{results:?}");
    assert_eq!(results.iter().filter(|r| r.status == 201).count(), 1);
    let conv: ConversationId = ids.into_iter().next().expect("id").parse().expect("uuid");
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM conversations WHERE kind = 'context'")
        .fetch_one(&p.env.db)
        .await
        .expect("count");
    assert_eq!(rows, 1);

    // Without a grant Alice cannot read or write it.
    let get = Request::GetContext {
        infobase_id: p.a.id.parse().expect("ib"),
        object_ref: "Document.Invoice/000123".into(),
    };
    assert_eq!(
        p.ca.request(get.clone())
            .await
            .expect_err("no grant")
            .code(),
        Some(ErrorCode::AccessDenied)
    );
    assert_eq!(
        p.ca.request(Request::History {
            conversation_id: conv,
            before: None,
            after: None,
            limit: None
        })
        .await
        .expect_err("no grant")
        .code(),
        Some(ErrorCode::AccessDenied)
    );
    assert_eq!(
        p.ca.request(Request::Send {
            conversation_id: conv,
            message: text("x")
        })
        .await
        .expect_err("no grant")
        .code(),
        Some(ErrorCode::AccessDenied)
    );
    // Users cannot grant themselves.
    assert!(p
        .ca
        .request(Request::AddMembers {
            conversation_id: conv,
            user_ids: vec![p.alice]
        })
        .await
        .is_err());

    // The infobase grants Alice and Bob (a user of its sibling infobase).
    let r = call(
        &app,
        "POST",
        &format!("/v1/infobases/{}/conversations/{conv}/members", p.a.id),
        &p.a.auth(),
        json_body(json!({"user_ids": [p.alice.to_string(), p.bob.to_string()]})),
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    let c: Conversation = p.ca.call(get.clone()).await.expect("granted");
    assert_eq!(c.id, conv);
    assert_eq!(c.object_ref.as_deref(), Some("Document.Invoice/000123"));
    let m = send(&p.ca, conv, text("about this invoice")).await;
    expect(&p.cb, "context message", |e| match e {
        Event::MessageCreated { message, .. } if message.id == m.id => Some(()),
        _ => None,
    })
    .await;
    // A bot of the infobase posts an application message with actions.
    let bot = user(&app, &p.a, "approval-bot").await;
    let r = call(&app, "POST", &format!("/v1/infobases/{}/conversations/{conv}/messages", p.a.id), &p.a.auth(),
        json_body(json!({"author_id": bot, "text": "Approve?", "data": {"doc": "000123"},
                         "actions": [{"value": "yes", "caption": "Approve"}, {"value": "no", "caption": "Reject"}]}))).await;
    assert_eq!(r.status, 201, "{r:?}");
    let bot_msg = expect(&p.cb, "bot message", |e| match e {
        Event::MessageCreated { message, .. } if message.text == "Approve?" => {
            Some(message.clone())
        }
        _ => None,
    })
    .await;
    assert_eq!(bot_msg.actions.len(), 2);
    assert_eq!(bot_msg.data, Some(json!({"doc": "000123"})));

    // Revoking the grant closes it again.
    let r = call(
        &app,
        "DELETE",
        &format!(
            "/v1/infobases/{}/conversations/{conv}/members/{}",
            p.a.id, p.alice
        ),
        &p.a.auth(),
        None,
    )
    .await;
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(
        p.ca.request(get).await.expect_err("revoked").code(),
        Some(ErrorCode::AccessDenied)
    );
    // The infobase lists its contexts with filters and reads history.
    let r = call(
        &app,
        "GET",
        &format!(
            "/v1/infobases/{}/conversations?contextual=true&object_ref=Document.Invoice/000123",
            p.a.id
        ),
        &p.a.auth(),
        None,
    )
    .await;
    assert_eq!(
        r.body["conversations"].as_array().map(Vec::len),
        Some(1),
        "{r:?}"
    );
    let r = call(
        &app,
        "GET",
        &format!("/v1/infobases/{}/conversations/{conv}/messages", p.a.id),
        &p.a.auth(),
        None,
    )
    .await;
    assert_eq!(
        r.body["messages"].as_array().map(Vec::len),
        Some(2),
        "{r:?}"
    );
}

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
async fn a_retried_send_with_the_same_key_stores_one_message() {
    let p = pair().await;
    let group: Conversation =
        p.ca.call(Request::CreateGroup {
            title: "idem".into(),
            members: vec![p.bob],
        })
        .await
        .expect("group");
    let m = NewMessage {
        text: "once".into(),
        idempotency_key: Some("k-1".into()),
        ..Default::default()
    };
    let one = send(&p.ca, group.id, m.clone()).await;
    let two = send(&p.ca, group.id, m.clone()).await;
    assert_eq!((one.id, one.seq), (two.id, two.seq));
    // Concurrent retries too.
    let m2 = NewMessage {
        text: "race".into(),
        idempotency_key: Some("k-2".into()),
        ..Default::default()
    };
    let rs =
        futures_util::future::join_all((0..5).map(|_| send(&p.ca, group.id, m2.clone()))).await;
    assert!(rs.iter().all(|r| r.id == rs[0].id));
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM messages")
        .fetch_one(&p.env.db)
        .await
        .expect("count");
    assert_eq!(n, 2);
    // Over REST as well.
    let app = p.env.app().await;
    let body = json!({"author_id": p.alice.to_string(), "text": "rest", "idempotency_key": "k-3"});
    let path = format!(
        "/v1/infobases/{}/conversations/{}/messages",
        p.a.id, group.id
    );
    let r1 = call(&app, "POST", &path, &p.a.auth(), json_body(body.clone())).await;
    let r2 = call(&app, "POST", &path, &p.a.auth(), json_body(body)).await;
    assert_eq!((r1.status.as_u16(), r2.status.as_u16()), (201, 200));
    assert_eq!(r1.body["id"], r2.body["id"]);
}

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
        Event::Notification { data } if data["id"] == 7 => Some(()),
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
        if p.env.state.bus.hub().sessions_of(carol) == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(p.env.state.bus.hub().sessions_of(carol), 1);

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
        if p.env.state.bus.hub().sessions_of(carol) == 0 {
            cut = true;
            break;
        }
    }
    assert!(cut, "the stalled session was not disconnected");
    assert!(
        p.env.state.bus.hub().stats().1 > 0,
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
async fn conversation_lists_page_by_cursor_and_find_by_key() {
    let p = pair().await;
    let app = p.env.app().await;
    let path = format!("/v1/infobases/{}/conversations", p.a.id);
    for i in 0..5 {
        let r = call(&app, "POST", &path, &p.a.auth(), json_body(json!({"title": format!("g{i}"), "members": [p.alice.to_string()], "key": format!("k{i}"), "hidden": i == 4}))).await;
        assert_eq!(r.status, 201, "{r:?}");
    }
    let r = call(
        &app,
        "POST",
        &path,
        &p.a.auth(),
        json_body(json!({"title": "dup", "members": [p.alice.to_string()], "key": "k1"})),
    )
    .await;
    r.expect_error(409, "conflict");
    let r = call(&app, "GET", &format!("{path}?key=k3"), &p.a.auth(), None).await;
    assert_eq!(r.body["conversations"][0]["title"], "g3", "{r:?}");
    // Alice pages through her list two at a time.
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page: parley_core::protocol::ConversationPage =
            p.ca.call(Request::ListConversations {
                filter: parley_core::protocol::ConversationFilter {
                    limit: Some(2),
                    cursor: cursor.clone(),
                    displayed: Some(true),
                    ..Default::default()
                },
            })
            .await
            .expect("list");
        seen.extend(page.conversations.iter().map(|c| c.title.clone()));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    seen.sort();
    assert_eq!(
        seen,
        vec!["g0", "g1", "g2", "g3"],
        "hidden g4 is not displayed"
    );
    let hidden: parley_core::protocol::ConversationPage =
        p.ca.call(Request::ListConversations {
            filter: parley_core::protocol::ConversationFilter {
                displayed: Some(false),
                ..Default::default()
            },
        })
        .await
        .expect("list");
    assert_eq!(hidden.conversations.len(), 1);
    assert!(hidden.conversations[0].hidden);
}
