//! Membership changes and renames in the history: `kind: system` lines at
//! the seq of their event, with structured data and no server-side words.

use crate::*;

#[actix_web::test]
async fn membership_changes_and_renames_are_lines_of_the_history() {
    let p = pair().await;
    let app = p.env.app().await;
    let carol = uid(&user(&app, &p.a, "carol").await);
    let dave = uid(&user(&app, &p.a, "dave").await);
    let g = group(&p.ca, "team", &[p.bob]).await;
    send(&p.ca, g.id, text("hello")).await;
    // Created with Bob: that is not a line (the conversation starts there).
    let _: Conversation =
        p.ca.call(Request::AddMembers {
            conversation_id: g.id,
            user_ids: vec![carol, dave],
        })
        .await
        .expect("add");
    let by = expect(&p.ca, "member.added of Carol", |e| match e {
        Event::MemberAdded { user_id, by, .. } if *user_id == carol => Some(*by),
        _ => None,
    })
    .await;
    assert_eq!(by, Some(p.alice), "the live event names who added her");
    let _: Value =
        p.ca.call(Request::RemoveMember {
            conversation_id: g.id,
            user_id: dave,
        })
        .await
        .expect("remove");
    let renamed: Value =
        p.ca.call(Request::UpdateConversation {
            conversation_id: g.id,
            title: Some("team 2".into()),
            description: None,
            picture: None,
        })
        .await
        .expect("rename");
    assert_eq!(renamed["title"], "team 2", "{renamed}");
    let _: Value =
        p.cb.call(Request::Leave {
            conversation_id: g.id,
        })
        .await
        .expect("leave");
    // The infobase adds Bob back over REST: a line without `by`.
    let r = call(
        &app,
        "POST",
        &format!("/v1/infobases/{}/conversations/{}/members", p.a.id, g.id),
        &p.a.auth(),
        Some(Body::Json(json!({ "user_ids": [p.bob] }))),
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");

    let all = history(&p.ca, g.id).await;
    let lines: Vec<Value> = all
        .iter()
        .filter(|m| m.kind == parley_core::protocol::MessageKind::System)
        .map(|m| {
            assert!(m.text.is_empty(), "words are the client's: {m:?}");
            m.data.clone().expect("data")
        })
        .collect();
    let a = p.alice.to_string();
    let expected = vec![
        json!({"member": {"change": "added", "user_id": carol, "by": a}}),
        json!({"member": {"change": "added", "user_id": dave, "by": a}}),
        json!({"member": {"change": "removed", "user_id": dave, "by": a}}),
        json!({"conversation": {"title": "team 2", "description": "", "picture": null, "changed": ["title"], "by": a}}),
        json!({"member": {"change": "left", "user_id": p.bob, "by": p.bob}}),
        json!({"member": {"change": "added", "user_id": p.bob}}),
    ];
    // Carol and Dave are added in id order.
    let mut got = lines.clone();
    if carol > dave {
        got.swap(0, 1);
    }
    assert_eq!(got, expected);
    // Each line sits at its own seq, between the messages, in order.
    let seqs: Vec<i64> = all.iter().map(|m| m.seq).collect();
    let mut sorted = seqs.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(seqs, sorted, "one entry per seq, in order");
    // The line of the infobase's change has no acting user.
    let last = all.last().expect("lines");
    assert_eq!(last.author_id, UserId(uuid::Uuid::nil()));
    // Lines are not unread news: Alice read nothing since "hello", and
    // only lines followed it.
    let page: parley_core::protocol::ConversationPage =
        p.ca.call(Request::ListConversations {
            filter: Default::default(),
        })
        .await
        .expect("list");
    let listed = page
        .conversations
        .iter()
        .find(|c| c.id == g.id)
        .expect("listed");
    assert_eq!(listed.unread, Some(0), "{listed:?}");
}
