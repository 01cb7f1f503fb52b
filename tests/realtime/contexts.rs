//! Contextual conversations and their grants.

use crate::*;

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
        r.body["messages"]
            .as_array()
            .map(|m| m.iter().filter(|m| m["kind"] != "system").count()),
        Some(2),
        "{r:?}"
    );
}
