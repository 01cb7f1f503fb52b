//! Group and dialog chat, idempotent sends.

use crate::*;

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

    // The bus loses an envelope: the next event reveals the gap and Bob's
    // session fills it from PostgreSQL, in order, once.
    expect(&p.cb, "own reply", |e| match e {
        Event::MessageCreated { message, .. } if message.id == reply.id => Some(()),
        _ => None,
    })
    .await;
    p.env.bus.drop_next(1);
    let lost = send(&p.ca, group.id, text("lost on the bus")).await;
    let found = send(&p.ca, group.id, text("reveals the gap")).await;
    receive_exactly(&p.cb, &p.ca, group.id, &[lost.id, found.id]).await;
    assert_eq!(p.env.bus.faults().0, 1, "one envelope was dropped");

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
    assert_eq!(
        texts,
        vec![
            "Привет, Bob",
            "Hi Alice",
            "lost on the bus",
            "reveals the gap",
            "sentinel"
        ]
    );
    let _ = (&p.env, &p.server, &p.a, &p.b);
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
    // The bus delivers the first envelope twice, and the retry publishes
    // the stored message again: Bob still sees it once.
    p.env.bus.duplicate_next(1);
    let one = send(&p.ca, group.id, m.clone()).await;
    let two = send(&p.ca, group.id, m.clone()).await;
    assert_eq!((one.id, one.seq), (two.id, two.seq));
    receive_exactly(&p.cb, &p.ca, group.id, &[one.id]).await;
    assert_eq!(p.env.bus.faults().1, 1, "one envelope was duplicated");
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
    assert_eq!(n, 3, "once, race and the sentinel");
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

/// `events` and `messages` carry no foreign key to `conversations` (the
/// writers lock the conversation anyway; migration 28): a trigger still
/// takes a deleted conversation's history with it, and only its history.
#[actix_web::test]
async fn deleting_a_conversation_takes_its_history_and_nothing_else() {
    let p = pair().await;
    let mut groups = Vec::new();
    for title in ["gone", "kept"] {
        let g: Conversation =
            p.ca.call(Request::CreateGroup {
                title: title.into(),
                members: vec![p.bob],
            })
            .await
            .expect("group");
        send(&p.ca, g.id, text("hello")).await;
        send(&p.cb, g.id, text("hi")).await;
        groups.push(g.id);
    }
    let history = |id: ConversationId| {
        let db = p.env.db.clone();
        async move {
            let q = "SELECT (SELECT count(*) FROM events WHERE conversation_id = $1)
                          + (SELECT count(*) FROM messages WHERE conversation_id = $1)";
            sqlx::query_scalar::<_, i64>(q)
                .bind(id.0)
                .fetch_one(&db)
                .await
                .expect("count")
        }
    };
    let kept_before = history(groups[1]).await;
    assert!(history(groups[0]).await >= 4 && kept_before >= 4);
    sqlx::query("DELETE FROM conversations WHERE id = $1")
        .bind(groups[0].0)
        .execute(&p.env.db)
        .await
        .expect("delete");
    assert_eq!(history(groups[0]).await, 0, "the deleted one's history");
    assert_eq!(history(groups[1]).await, kept_before, "the other's history");
}
