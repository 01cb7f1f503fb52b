//! Signed webhooks against a real HTTP receiver started here: the signature
//! verifies with the secret, a failing receiver gets the delivery again
//! until it takes it (then never again), order per endpoint, a disabled
//! endpoint gets nothing, one that keeps failing is disabled with the
//! reason, a private target is refused by default.

use crate::*;
use parley_tests::receiver::{signature_ok, start_receiver, Received, Receiver};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

fn text_of(r: &Received) -> String {
    let v: Value = serde_json::from_slice(&r.body).expect("json body");
    v["event"]["event"]["message"]["text"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

/// Waits until `cond` holds of the receiver.
async fn until(what: &str, rx: &Receiver, cond: impl Fn(&Receiver) -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond(rx) {
        assert!(
            Instant::now() < deadline,
            "{what}: {:#?}",
            rx.got.lock().expect("lock")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn fast(c: &mut parley_server::config::Config) {
    c.webhooks.allow_private_targets = true;
    c.webhooks.backoff_initial_ms = 100;
    c.webhooks.poll_ms = 50;
    c.feed.pump_ms = 50;
}

#[actix_web::test]
async fn webhooks_are_signed_retried_in_order_and_stop_when_disabled() {
    let p = pair_with(|c| {
        fast(c);
        c.webhooks.retry_for_secs = 2;
    })
    .await;
    let app = p.env.app().await;
    let rx = Arc::new(Receiver::default());
    rx.flaky_failures.store(3, Ordering::SeqCst);
    let base = start_receiver(Arc::clone(&rx));
    let hooks = format!("/v1/infobases/{}/webhooks", p.a.id);
    let register = |path: &'static str, kinds: Value| {
        let app = &app;
        let hooks = &hooks;
        let auth = p.a.auth();
        let url = format!("{base}{path}");
        async move {
            let r = call(
                app,
                "POST",
                hooks,
                &auth,
                json_body(json!({"url": url, "kinds": kinds})),
            )
            .await;
            assert_eq!(r.status, 201, "{r:?}");
            (
                r.body["webhook"]["id"].as_str().expect("id").to_owned(),
                r.body["secret"].as_str().expect("secret").to_owned(),
            )
        }
    };
    let (flaky, secret) = register("/flaky", json!(["message.created"])).await;
    let (off, _) = register("/off", json!([])).await;
    let (down, _) = register("/down", json!(["message.created"])).await;
    assert!(secret.starts_with("whsec_"));
    // The secret is not in the database (it is derived when signing).
    let stored: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM webhook_endpoints e WHERE position($1 in e::text) > 0",
    )
    .bind(&secret)
    .fetch_one(&p.env.db)
    .await
    .expect("count");
    assert_eq!(stored, 0);
    // Unknown kinds are refused, naming the kinds there are.
    let r = call(
        &app,
        "POST",
        &hooks,
        &p.a.auth(),
        json_body(json!({"url": format!("{base}/x"), "kinds": ["message.sent"]})),
    )
    .await;
    r.expect_error(400, "invalid");
    // Disabled: gets nothing.
    let r = call(
        &app,
        "PATCH",
        &format!("{hooks}/{off}"),
        &p.a.auth(),
        json_body(json!({"enabled": false})),
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["enabled"], false);

    let bot = bot_user(&app, &p.a, "listener", "Listener").await;
    let g = group(&p.ca, "orders", &[p.bob, uid(&bot)]).await;
    for t in ["first", "second", "third"] {
        send(&p.ca, g.id, text(t)).await;
    }

    // Three 500s for the first delivery, then it is taken; each delivery
    // is taken once, in order.
    until("three deliveries taken", &rx, |rx| {
        rx.got("/flaky").iter().filter(|r| r.status == 200).count() == 3
    })
    .await;
    let got = rx.got("/flaky");
    let taken: Vec<_> = got.iter().filter(|r| r.status == 200).collect();
    assert_eq!(
        taken.iter().map(|r| text_of(r)).collect::<Vec<_>>(),
        ["first", "second", "third"]
    );
    let first = &taken[0].delivery;
    assert_eq!(
        got.iter().filter(|r| &r.delivery == first).count(),
        4,
        "tried 3 times, then taken: {got:#?}"
    );
    assert_eq!(
        got.iter()
            .filter(|r| r.status == 200 && &r.delivery == first)
            .count(),
        1
    );
    for r in &got {
        assert!(signature_ok(&secret, r), "the signature verifies: {r:?}");
        assert_eq!(r.event, "message.created");
        let ts: i64 = r.timestamp.parse().expect("timestamp");
        assert!((chrono::Utc::now().timestamp() - ts).abs() < 300);
    }
    let mut forged = taken[1].clone();
    forged.body = String::from_utf8_lossy(&forged.body)
        .replacen("second", "forged", 1)
        .into_bytes();
    assert!(
        !signature_ok(&secret, &forged),
        "a changed body does not verify"
    );

    // The endpoint that never succeeds is disabled with the reason once
    // webhooks.retry_for_secs has passed.
    let deadline = Instant::now() + WAIT;
    let disabled = loop {
        let r = call(&app, "GET", &hooks, &p.a.auth(), None).await;
        let hook = r.body["webhooks"]
            .as_array()
            .expect("list")
            .iter()
            .find(|h| h["id"] == down.as_str())
            .cloned()
            .expect("the failing endpoint");
        if hook["enabled"] == false {
            break hook;
        }
        assert!(Instant::now() < deadline, "never disabled: {hook}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let reason = disabled["disabled_reason"].as_str().unwrap_or("");
    assert!(reason.contains("503"), "{reason}");
    assert!(!rx.got("/down").is_empty());

    // The deliveries of the flaky endpoint, newest first, with their state.
    let r = call(
        &app,
        "GET",
        &format!("{hooks}/{flaky}/deliveries"),
        &p.a.auth(),
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    let list = r.body["deliveries"].as_array().expect("deliveries").clone();
    assert_eq!(list.len(), 3, "{list:#?}");
    assert!(list.iter().all(|d| d["state"] == "delivered"));
    assert_eq!(list[2]["attempts"], 4);
    assert_eq!(list[2]["id"].to_string(), *first);

    // Nothing went to the disabled one; nothing more comes to anyone.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(rx.got("/off").is_empty());
    assert_eq!(rx.got("/flaky").len(), 6);

    // Another infobase does not see or touch A's endpoints.
    let r = call(
        &app,
        "DELETE",
        &format!("/v1/infobases/{}/webhooks/{flaky}", p.b.id),
        &p.b.auth(),
        None,
    )
    .await;
    r.expect_error(404, "not_found");
}

#[actix_web::test]
async fn a_private_target_is_refused_by_default() {
    let env = TestEnv::default().await;
    let app = env.app().await;
    let ib = register(&app, &email("wh-private"), "Private").await;
    let hooks = format!("/v1/infobases/{}/webhooks", ib.id);
    for url in [
        "http://127.0.0.1:9/hook",
        "http://localhost/hook",
        "https://10.0.0.8/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hook",
    ] {
        let r = call(
            &app,
            "POST",
            &hooks,
            &ib.auth(),
            json_body(json!({"url": url})),
        )
        .await;
        r.expect_error(400, "invalid");
        assert!(
            r.body["message"]
                .as_str()
                .unwrap_or("")
                .contains("webhooks.allow_private_targets"),
            "{r:?}"
        );
    }
    for url in [
        "ftp://example.com/x",
        "example.com/hook",
        "https://user:pw@example.com/",
    ] {
        let r = call(
            &app,
            "POST",
            &hooks,
            &ib.auth(),
            json_body(json!({"url": url})),
        )
        .await;
        r.expect_error(400, "invalid");
    }
    let r = call(&app, "GET", &hooks, &ib.auth(), None).await;
    assert_eq!(r.body["webhooks"], json!([]));
}
