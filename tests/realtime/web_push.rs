//! Web Push to users with no session, checked by an independent push
//! service (tests/push_receiver.py: VAPID token verified, payload decrypted
//! with `http_ece`): a user with no session gets the push, one with a
//! session does not; levels, coalescing per conversation, gone
//! subscriptions removed.

use crate::*;
use parley_tests::push::PushService;
use std::time::Instant;

/// Registers a subscription for the token's user; its id.
async fn subscribe<S, B>(app: &S, token: &str, sub: &Value) -> String
where
    S: actix_web::dev::Service<
        actix_http::Request,
        Response = actix_web::dev::ServiceResponse<B>,
        Error = actix_web::Error,
    >,
    B: actix_web::body::MessageBody,
{
    let body = json!({"endpoint": sub["endpoint"], "keys": sub["keys"], "expirationTime": null});
    let r = call(
        app,
        "POST",
        "/v1/me/push-subscriptions",
        &Auth::Token(token.to_owned()),
        json_body(body),
    )
    .await;
    assert_eq!(r.status, 201, "{r:?}");
    r.body["id"].as_str().expect("id").to_owned()
}

/// Waits until the push service has seen `n` pushes; returns them all.
async fn pushes(ps: &PushService, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + WAIT;
    loop {
        let got = ps.received().await;
        if got.len() >= n {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {n} pushes: {got:#?}",
            got.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[actix_web::test]
async fn an_offline_user_gets_an_encrypted_push_and_an_online_one_does_not() {
    let ps = PushService::start();
    let p = pair_with(|c| {
        c.push.allow_private_targets = true;
        c.push.subject = "mailto:ops@parley.test".into();
    })
    .await;
    let app = p.env.app().await;
    // The key browsers subscribe with.
    let r = call(&app, "GET", "/v1/push/vapid-key", &Auth::None, None).await;
    assert_eq!(r.status, 200, "{r:?}");
    let key = r.body["public_key"].as_str().expect("key").to_owned();
    assert_eq!(
        parley_core::crypto::from_b64url(&key).map(|k| k.len()),
        Some(65)
    );

    // Carol (of B) has no session, Bob has one; both subscribed.
    let carol = user(&app, &p.b, "carol").await;
    let tcarol = token(&app, &p.b, &carol).await;
    let carol_sub = ps.subscription(false).await;
    subscribe(&app, &tcarol, &carol_sub).await;
    let tbob = token(&app, &p.b, &p.bob.to_string()).await;
    let bob_sub = ps.subscription(false).await;
    subscribe(&app, &tbob, &bob_sub).await;

    // A dialog message to offline Carol is pushed, encrypted for her
    // browser, signed with the server's key.
    let dm: Conversation =
        p.ca.call(Request::OpenDialog {
            user_id: uid(&carol),
        })
        .await
        .expect("dialog");
    let first = send(&p.ca, dm.id, text("Invoice 7 is ready")).await;
    let got = pushes(&ps, 1).await;
    assert_eq!(got.len(), 1, "{got:#?}");
    assert_eq!(got[0]["ok"], true, "verified and decrypted: {got:#?}");
    assert_eq!(got[0]["id"], carol_sub["id"]);
    let payload = &got[0]["payload"];
    assert_eq!(payload["type"], "message");
    assert_eq!(payload["text"], "Invoice 7 is ready");
    assert_eq!(payload["conversation_id"], json!(dm.id));
    assert_eq!(payload["message_id"], json!(first.id));
    assert_eq!(payload["conversation_kind"], "dialog");

    // The next one in the same conversation is coalesced; a group message
    // without a mention is not pushed at her level (mentions); Bob, online,
    // gets nothing even when mentioned.
    send(&p.ca, dm.id, text("and invoice 8")).await;
    let g = group(&p.ca, "team", &[p.bob, uid(&carol)]).await;
    send(&p.ca, g.id, text("lunch?")).await;
    send(
        &p.ca,
        g.id,
        NewMessage {
            text: "@bob look".into(),
            mentions: vec![p.bob],
            ..Default::default()
        },
    )
    .await;
    // A mention of Carol in the group is pushed: the marker that the
    // earlier ones were looked at and dropped.
    send(
        &p.ca,
        g.id,
        NewMessage {
            text: "@carol please sign".into(),
            mentions: vec![uid(&carol)],
            ..Default::default()
        },
    )
    .await;
    let got = pushes(&ps, 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got_now = ps.received().await;
    assert_eq!(got_now.len(), 2, "{got_now:#?}");
    assert_eq!(got[1]["payload"]["text"], "@carol please sign");
    assert_eq!(got[1]["payload"]["mentioned"], true);
    assert!(
        got_now.iter().all(|g| g["id"] == carol_sub["id"]),
        "Bob is online"
    );

    // Level `all`: a plain group message is pushed too (a new conversation,
    // so nothing is coalesced); `none`: nothing.
    let settings = |level: &'static str| {
        let app = &app;
        let t = tcarol.clone();
        async move {
            let r = call(
                app,
                "PUT",
                "/v1/me/push-settings",
                &Auth::Token(t),
                json_body(json!({"level": level})),
            )
            .await;
            assert_eq!(r.status, 200, "{r:?}");
        }
    };
    settings("all").await;
    let g2 = group(&p.ca, "all of it", &[uid(&carol)]).await;
    send(&p.ca, g2.id, text("plain news")).await;
    let got = pushes(&ps, 3).await;
    assert_eq!(got[2]["payload"]["text"], "plain news");
    let r = call(
        &app,
        "PUT",
        "/v1/me/push-settings",
        &Auth::Token(tcarol.clone()),
        json_body(json!({"level": "loud"})),
    )
    .await;
    r.expect_error(400, "invalid");

    // A subscription the push service says is gone is removed.
    let gone = ps.subscription(true).await;
    settings("mentions").await;
    let dave = user(&app, &p.b, "dave").await;
    let tdave = token(&app, &p.b, &dave).await;
    subscribe(&app, &tdave, &gone).await;
    let dm2: Conversation =
        p.ca.call(Request::OpenDialog {
            user_id: uid(&dave),
        })
        .await
        .expect("dialog");
    send(&p.ca, dm2.id, text("hello dave")).await;
    pushes(&ps, 4).await;
    let deadline = Instant::now() + WAIT;
    loop {
        let left: i64 =
            sqlx::query_scalar("SELECT count(*) FROM push_subscriptions WHERE user_id = $1")
                .bind(uid(&dave).0)
                .fetch_one(&p.env.db)
                .await
                .expect("count");
        if left == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the gone subscription stays");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Malformed keys and private endpoints (by default) are refused.
    let r = call(
        &app,
        "POST",
        "/v1/me/push-subscriptions",
        &Auth::Token(tcarol.clone()),
        json_body(json!({"endpoint": "https://push.example.com/x", "keys": {"p256dh": "AAAA", "auth": "AAAA"}})),
    )
    .await;
    r.expect_error(400, "invalid");
}

#[actix_web::test]
async fn push_endpoints_on_private_addresses_are_refused_by_default() {
    let env = TestEnv::default().await;
    let app = env.app().await;
    let ib = register(&app, &email("push-private"), "Push").await;
    let u = user(&app, &ib, "erin").await;
    let t = token(&app, &ib, &u).await;
    let keys = json!({"p256dh": parley_core::crypto::b64url(&[4u8; 65]), "auth": parley_core::crypto::b64url(&[1u8; 16])});
    for endpoint in [
        "https://127.0.0.1/push/1",
        "https://10.1.1.1/p",
        "http://push.example.com/p",
    ] {
        let r = call(
            &app,
            "POST",
            "/v1/me/push-subscriptions",
            &Auth::Token(t.clone()),
            json_body(json!({"endpoint": endpoint, "keys": keys})),
        )
        .await;
        r.expect_error(400, "invalid");
    }
}
