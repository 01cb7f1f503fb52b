//! Tenant isolation and who may post, join and receive.

use crate::*;

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
