//! Ownership inside a subscriber: the infobase that owns a conversation
//! manages it; another infobase whose users are members acts only as those
//! users and reads only what they may read.

use crate::*;

async fn rest(p: &Pair, ib: &Ib, method: &str, tail: &str, body: Option<Value>) -> Resp {
    let app = p.env.app().await;
    call(
        &app,
        method,
        &format!("/v1/infobases/{}{tail}", ib.id),
        &ib.auth(),
        body.and_then(json_body),
    )
    .await
}

#[actix_web::test]
async fn an_infobase_cannot_take_over_another_infobases_conversation() {
    let p = pair().await;
    let app = p.env.app().await;
    let carol = user(&app, &p.b, "carol").await;
    let alex = user(&app, &p.a, "alex").await;
    let bot = user(&app, &p.a, "bot").await;

    // A's contextual conversation, with Alice and B's Bob granted.
    let r = rest(
        &p,
        &p.a,
        "PUT",
        "/contexts",
        Some(json!({"object_ref": "Document.Invoice/7", "title": "Invoice 7"})),
    )
    .await;
    assert!(r.status == 201 || r.status == 200, "{r:?}");
    let conv = r.body["id"].as_str().expect("id").to_owned();
    let r = rest(
        &p,
        &p.a,
        "POST",
        &format!("/conversations/{conv}/members"),
        Some(json!({"user_ids": [p.alice.to_string(), p.bob.to_string()]})),
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    // A message for Alice only, and one for everyone.
    let r = rest(
        &p,
        &p.a,
        "POST",
        &format!("/conversations/{conv}/messages"),
        Some(json!({"author_id": bot, "text": "salary 1000", "recipients": [p.alice.to_string()]})),
    )
    .await;
    assert_eq!(r.status, 201, "{r:?}");
    let private = r.body["id"].as_str().expect("id").to_owned();
    let r = rest(
        &p,
        &p.a,
        "POST",
        &format!("/conversations/{conv}/messages"),
        Some(json!({"author_id": bot, "text": "for all"})),
    )
    .await;
    assert_eq!(r.status, 201, "{r:?}");
    let public = r.body["id"].as_str().expect("id").to_owned();

    // B sees the conversation (Bob is in it) but manages nothing.
    let r = rest(&p, &p.b, "GET", &format!("/conversations/{conv}"), None).await;
    assert_eq!(r.status, 200, "{r:?}");
    rest(
        &p,
        &p.b,
        "POST",
        &format!("/conversations/{conv}/members"),
        Some(json!({"user_ids": [carol]})),
    )
    .await
    .expect_error(403, "access_denied");
    rest(
        &p,
        &p.b,
        "DELETE",
        &format!("/conversations/{conv}/members/{}", p.alice),
        None,
    )
    .await
    .expect_error(403, "access_denied");
    rest(
        &p,
        &p.b,
        "DELETE",
        &format!("/conversations/{conv}/messages/{public}"),
        None,
    )
    .await
    .expect_error(403, "access_denied");
    // Carol is no member: B cannot slip her in by posting as her.
    rest(
        &p,
        &p.b,
        "POST",
        &format!("/conversations/{conv}/messages"),
        Some(json!({"author_id": carol, "text": "let me in"})),
    )
    .await
    .expect_error(403, "access_denied");
    let r = rest(&p, &p.a, "GET", &format!("/conversations/{conv}"), None).await;
    let members = r.body["members"].as_array().expect("members").clone();
    assert_eq!(members.len(), 3, "Alice, Bob and the bot: {members:?}");
    assert!(!members.contains(&json!(carol)));
    // B reads what Bob may read: not Alice's private message.
    let r = rest(
        &p,
        &p.b,
        "GET",
        &format!("/conversations/{conv}/messages"),
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    let ids: Vec<&str> = r.body["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert!(ids.contains(&public.as_str()), "{ids:?}");
    assert!(
        !ids.contains(&private.as_str()),
        "B read a message addressed to Alice"
    );
    // The owner reads everything.
    let r = rest(
        &p,
        &p.a,
        "GET",
        &format!("/conversations/{conv}/messages"),
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
    // B posts as Bob, a member, and deletes Bob's own message.
    let r = rest(
        &p,
        &p.b,
        "POST",
        &format!("/conversations/{conv}/messages"),
        Some(json!({"author_id": p.bob.to_string(), "text": "Bob here"})),
    )
    .await;
    assert_eq!(r.status, 201, "{r:?}");
    let bobs = r.body["id"].as_str().expect("id").to_owned();
    let r = rest(
        &p,
        &p.b,
        "DELETE",
        &format!("/conversations/{conv}/messages/{bobs}"),
        None,
    )
    .await;
    assert_eq!(r.status, 204, "{r:?}");
    // The owner still manages: it revokes Bob's grant.
    let r = rest(
        &p,
        &p.a,
        "DELETE",
        &format!("/conversations/{conv}/members/{}", p.bob),
        None,
    )
    .await;
    assert_eq!(r.status, 204, "{r:?}");

    // Dialogs: B cannot open (and so own) the dialog of two users of A.
    rest(
        &p,
        &p.b,
        "POST",
        "/conversations",
        Some(json!({"kind": "dialog", "members": [p.alice.to_string(), alex]})),
    )
    .await
    .expect_error(403, "access_denied");
    let r = rest(
        &p,
        &p.a,
        "POST",
        "/conversations",
        Some(json!({"kind": "dialog", "members": [p.alice.to_string(), alex]})),
    )
    .await;
    assert_eq!(r.status, 201, "{r:?}");
    // A dialog of B's own user with A's user is fine.
    let r = rest(
        &p,
        &p.b,
        "POST",
        "/conversations",
        Some(json!({"kind": "dialog", "members": [p.bob.to_string(), p.alice.to_string()]})),
    )
    .await;
    assert_eq!(r.status, 201, "{r:?}");
}
