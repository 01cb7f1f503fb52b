//! Conversation lists: paging, filters, keys.

use crate::*;

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
    // With no filter a user's list shows the displayed ones only.
    let plain: parley_core::protocol::ConversationPage =
        p.ca.call(Request::ListConversations {
            filter: Default::default(),
        })
        .await
        .expect("list");
    assert!(
        plain.conversations.iter().all(|c| !c.hidden),
        "{:?}",
        plain
            .conversations
            .iter()
            .map(|c| &c.title)
            .collect::<Vec<_>>()
    );
    assert_eq!(plain.conversations.len(), 4);
}

/// The creator renames a group (an event with `seq`, replayed by resume);
/// others may not; the owner infobase changes its own over REST, another
/// infobase may not.
#[actix_web::test]
async fn a_conversation_is_renamed_by_its_creator_or_owner_only() {
    let p = pair().await;
    let app = p.env.app().await;
    let g = group(&p.ca, "old name", &[p.bob]).await;
    let c: Conversation =
        p.ca.call(Request::UpdateConversation {
            conversation_id: g.id,
            title: Some("Budget 2027".into()),
            description: Some("Numbers and approvals".into()),
            picture: None,
        })
        .await
        .expect("rename");
    assert_eq!(
        (c.title.as_str(), c.description.as_str()),
        ("Budget 2027", "Numbers and approvals")
    );
    let seq = expect(&p.cb, "conversation.updated", |e| match e {
        Event::ConversationUpdated {
            conversation_id,
            seq,
            title,
            by,
            ..
        } if *conversation_id == g.id && title == "Budget 2027" && *by == Some(p.alice) => {
            Some(*seq)
        }
        _ => None,
    })
    .await;
    assert!(seq > 0);
    let e =
        p.cb.request(Request::UpdateConversation {
            conversation_id: g.id,
            title: Some("mine now".into()),
            description: None,
            picture: None,
        })
        .await
        .expect_err("not the creator");
    assert_eq!(e.code(), Some(ErrorCode::AccessDenied), "{e}");
    let e =
        p.ca.request(Request::UpdateConversation {
            conversation_id: g.id,
            title: Some(String::new()),
            description: None,
            picture: None,
        })
        .await
        .expect_err("empty title");
    assert_eq!(e.code(), Some(ErrorCode::Invalid), "{e}");
    // Over REST: the group belongs to Alice's infobase A.
    let path = format!("/v1/infobases/{}/conversations/{}", p.a.id, g.id);
    let r = call(
        &app,
        "PATCH",
        &path,
        &p.a.auth(),
        json_body(json!({"title": "Budget"})),
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["title"], "Budget");
    assert_eq!(r.body["description"], "Numbers and approvals");
    let path_b = format!("/v1/infobases/{}/conversations/{}", p.b.id, g.id);
    call(
        &app,
        "PATCH",
        &path_b,
        &p.b.auth(),
        json_body(json!({"title": "taken"})),
    )
    .await
    .expect_error(403, "access_denied");
}
