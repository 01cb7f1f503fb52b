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
