//! What a user with no open session gets: the notifications its infobase
//! pushed meanwhile, at the next connect (bounded, with expiry).

use crate::*;

#[actix_web::test]
async fn notifications_for_an_offline_user_wait_for_its_next_connect() {
    let p = pair_with(|c| c.limits.max_stored_notifications = 2).await;
    let app = p.env.app().await;
    let carol = user(&app, &p.b, "carol").await;
    let notify = |n: u32| {
        let app = &app;
        let path = format!("/v1/infobases/{}/users/{carol}/notifications", p.b.id);
        let auth = p.b.auth();
        async move {
            let r = call(
                app,
                "POST",
                &path,
                &auth,
                json_body(json!({"data": {"n": n}})),
            )
            .await;
            assert_eq!(r.status, 202, "{r:?}");
        }
    };
    // Carol has no session: three notifications, the newest two kept.
    for n in 1..=3 {
        notify(n).await;
    }
    let tc = token(&app, &p.b, &carol).await;
    let cc = client(&p.server, &tc).await;
    let mut got = Vec::new();
    while got.len() < 2 {
        let (n, sent_at) = expect(&cc, "a kept notification", |e| match e {
            Event::Notification { data, sent_at } => Some((data["n"].clone(), *sent_at)),
            _ => None,
        })
        .await;
        assert!(sent_at.is_some(), "a kept one says when it was sent");
        got.push(n);
    }
    assert_eq!(got, [json!(2), json!(3)]);

    // Online now: the next one is live (no sent_at), and nothing is kept.
    notify(4).await;
    let live = expect(&cc, "a live notification", |e| match e {
        Event::Notification { data, sent_at } => Some((data["n"].clone(), *sent_at)),
        _ => None,
    })
    .await;
    assert_eq!(live, (json!(4), None));
    // Once sent they are forgotten: a second connect gets none of them.
    cc.close();
    let kept: i64 = sqlx::query_scalar("SELECT count(*) FROM stored_notifications")
        .fetch_one(&p.env.db)
        .await
        .expect("count");
    assert_eq!(kept, 0);

    // An expired one is not delivered.
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let online: Value = {
            let r = call(
                &app,
                "GET",
                &format!("/v1/infobases/{}/users/{carol}/presence", p.b.id),
                &p.b.auth(),
                None,
            )
            .await;
            r.body
        };
        if online["online"] == false {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "carol stays online");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    notify(5).await;
    notify(6).await;
    sqlx::query("UPDATE stored_notifications SET expires_at = now() - interval '1 second' WHERE data->>'n' = '5'")
        .execute(&p.env.db)
        .await
        .expect("expire one");
    let cc = client(&p.server, &tc).await;
    let n = expect(&cc, "the unexpired one", |e| match e {
        Event::Notification { data, .. } => Some(data["n"].clone()),
        _ => None,
    })
    .await;
    assert_eq!(n, json!(6));
}

#[actix_web::test]
async fn a_user_away_long_enough_gets_one_digest_of_what_it_missed() {
    let p = pair_with(|c| {
        c.digest.delay_secs = 1;
        c.digest.every_secs = 1;
    })
    .await;
    let app = p.env.app().await;
    let upsert = |external: &'static str, mail: String| {
        let app = &app;
        let path = format!("/v1/infobases/{}/users", p.b.id);
        let auth = p.b.auth();
        async move {
            let r = call(
                app,
                "POST",
                &path,
                &auth,
                json_body(json!({"external_id": external, "name": external, "email": mail})),
            )
            .await;
            assert!(r.status == 200 || r.status == 201, "{r:?}");
            r.body["user"]["id"]
                .as_str()
                .or(r.body["id"].as_str())
                .expect("id")
                .to_owned()
        }
    };
    let carol_mail = email("carol-digest");
    let carol = upsert("carol", carol_mail.clone()).await;
    // Bob has a session: he is never mailed.
    let bob_mail = email("bob-digest");
    upsert("bob", bob_mail.clone()).await;
    let g = group(&p.ca, "Orders", &[uid(&carol), p.bob]).await;
    send(&p.ca, g.id, text("Invoice 7 needs a signature")).await;
    send(&p.ca, g.id, text("And invoice 8")).await;

    // Off by default: several runs pass, nothing is mailed.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(mails_to(&carol_mail), 0);
    let r = call(
        &app,
        "PUT",
        &format!("/v1/infobases/{}/email-digest", p.a.id),
        &p.a.auth(),
        json_body(json!({"enabled": true})),
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    // For the whole subscriber: B (same subscriber) sees it on.
    let r = call(
        &app,
        "GET",
        &format!("/v1/infobases/{}/email-digest", p.b.id),
        &p.b.auth(),
        None,
    )
    .await;
    assert_eq!(r.body, json!({"enabled": true}));

    let deadline = std::time::Instant::now() + WAIT;
    while mails_to(&carol_mail) == 0 {
        assert!(std::time::Instant::now() < deadline, "no digest");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let first = &mail_texts(&carol_mail)[0];
    assert!(
        first.contains("Subject: Parley: 2 unread messages in 1 conversation"),
        "{first}"
    );
    assert!(first.contains("Orders - 2 unread"), "{first}");
    assert!(first.contains("Invoice 7 needs a signature"), "{first}");

    // Mailed once: later runs send nothing more until something new comes.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(mails_to(&carol_mail), 1);
    send(&p.ca, g.id, text("Invoice 9 too")).await;
    let deadline = std::time::Instant::now() + WAIT;
    while mails_to(&carol_mail) < 2 {
        assert!(std::time::Instant::now() < deadline, "no second digest");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let second = &mail_texts(&carol_mail)[1];
    assert!(second.contains("Invoice 9 too"), "{second}");
    assert!(
        !second.contains("Invoice 7"),
        "only what was not mailed: {second}"
    );
    assert!(second.contains("Orders - 3 unread"), "{second}");
    assert_eq!(mails_to(&bob_mail), 0, "online users get no digest");
}
