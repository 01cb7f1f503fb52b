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
