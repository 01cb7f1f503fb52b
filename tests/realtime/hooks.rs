//! Incoming webhooks: a URL with a token posts into one conversation as one
//! bot of the infobase; revocable; the token is stored hashed; rate-limited.

use crate::*;

#[actix_web::test]
async fn an_incoming_webhook_posts_as_its_bot_until_revoked() {
    let p = pair_with(|c| c.limits.hook_messages_per_minute = 3).await;
    let app = p.env.app().await;
    let g = group(&p.ca, "builds", &[p.bob]).await;
    let bot = bot_user(&app, &p.a, "ci", "CI").await;
    let hooks = format!("/v1/infobases/{}/incoming-webhooks", p.a.id);

    // A person is not a webhook's author; another infobase does not make
    // hooks into A's conversation.
    let r = call(
        &app,
        "POST",
        &hooks,
        &p.a.auth(),
        json_body(json!({"conversation_id": g.id, "author_id": p.alice})),
    )
    .await;
    r.expect_error(400, "invalid");
    let r = call(
        &app,
        "POST",
        &format!("/v1/infobases/{}/incoming-webhooks", p.b.id),
        &p.b.auth(),
        json_body(json!({"conversation_id": g.id, "author_id": bot})),
    )
    .await;
    assert!(r.status == 404 || r.status == 403, "{r:?}");

    let r = call(
        &app,
        "POST",
        &hooks,
        &p.a.auth(),
        json_body(json!({"conversation_id": g.id, "author_id": bot, "name": "nightly"})),
    )
    .await;
    assert_eq!(r.status, 201, "{r:?}");
    let token = r.body["token"].as_str().expect("token").to_owned();
    let url = r.body["url"].as_str().expect("url").to_owned();
    let id = r.body["webhook"]["id"].as_str().expect("id").to_owned();
    assert!(
        token.starts_with("phk_") && url == format!("/v1/hooks/{token}"),
        "{r:?}"
    );
    // Only the hash is kept.
    let stored: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM incoming_webhooks WHERE token_hash = sha256($1::text::bytea)
           AND position($1 in incoming_webhooks::text) = 0",
    )
    .bind(&token)
    .fetch_one(&p.env.db)
    .await
    .expect("hook row");
    assert_eq!(stored, 1);

    // Anyone with the URL posts; the members see the bot's message.
    let r = call(
        &app,
        "POST",
        &url,
        &Auth::None,
        json_body(json!({"text": "build #42 passed", "data": {"build": 42}})),
    )
    .await;
    assert_eq!(r.status, 201, "{r:?}");
    let (author, data) = expect(&p.cb, "the webhook's message", |e| match e {
        Event::MessageCreated { message, .. } if message.text == "build #42 passed" => {
            Some((message.author_id, message.data.clone()))
        }
        _ => None,
    })
    .await;
    assert_eq!(author, uid(&bot));
    assert_eq!(data, Some(json!({"build": 42})));
    // Only text and data (and a key): nothing else is accepted.
    let r = call(
        &app,
        "POST",
        &url,
        &Auth::None,
        json_body(json!({"text": "x", "recipients": [p.alice]})),
    )
    .await;
    assert_eq!(r.status, 400, "{r:?}");
    // The rate: 3 a minute (this test's setting).
    for i in 0..2 {
        let r = call(
            &app,
            "POST",
            &url,
            &Auth::None,
            json_body(json!({"text": format!("n{i}")})),
        )
        .await;
        assert_eq!(r.status, 201, "{r:?}");
    }
    let r = call(
        &app,
        "POST",
        &url,
        &Auth::None,
        json_body(json!({"text": "one too many"})),
    )
    .await;
    r.expect_error(429, "rate_limited");

    // Listed for A, not for B; revoked, the URL is gone.
    let r = call(&app, "GET", &hooks, &p.a.auth(), None).await;
    assert_eq!(r.body["webhooks"][0]["name"], "nightly", "{r:?}");
    assert!(
        r.body["webhooks"][0].get("token").is_none(),
        "never the token again"
    );
    let r = call(
        &app,
        "GET",
        &format!("/v1/infobases/{}/incoming-webhooks", p.b.id),
        &p.b.auth(),
        None,
    )
    .await;
    assert_eq!(r.body["webhooks"], json!([]));
    let r = call(&app, "DELETE", &format!("{hooks}/{id}"), &p.b.auth(), None).await;
    assert!(
        r.status == 403 || r.status == 404 || r.status == 401,
        "{r:?}"
    );
    let r = call(&app, "DELETE", &format!("{hooks}/{id}"), &p.a.auth(), None).await;
    assert_eq!(r.status, 204, "{r:?}");
    let r = call(
        &app,
        "POST",
        &url,
        &Auth::None,
        json_body(json!({"text": "after"})),
    )
    .await;
    r.expect_error(404, "not_found");
    let r = call(
        &app,
        "POST",
        "/v1/hooks/phk_not-a-token",
        &Auth::None,
        json_body(json!({"text": "x"})),
    )
    .await;
    r.expect_error(404, "not_found");
    let r = call(&app, "GET", &hooks, &p.a.auth(), None).await;
    assert_eq!(r.body["webhooks"][0]["revoked"], true, "{r:?}");
}
