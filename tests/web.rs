//! The web client in headless Chromium against a real server.

use parley_tests::browser::Browser;
use parley_tests::serde_json::json;
use parley_tests::*;

#[actix_web::test]
async fn two_browsers_chat_in_a_group_and_a_dialog() {
    let env = TestEnv::default().await;
    let app = env.app().await;
    let ib = register(&app, &email("web"), "Web").await;
    let alice = user(&app, &ib, "alice").await;
    let bob = user(&app, &ib, "bob").await;
    let r = call(
        &app,
        "POST",
        &format!("/v1/infobases/{}/conversations", ib.id),
        &ib.auth(),
        json_body(json!({"title": "Team", "members": [alice, bob]})),
    )
    .await;
    assert_eq!(r.status, 201, "{r:?}");
    let ta = token(&app, &ib, &alice).await;
    let tb = token(&app, &ib, &bob).await;
    let server = env.server().await;
    let base = format!("http://{}", server.addr);

    let browser = Browser::launch().await;
    let a = browser.tab(&format!("{base}/#token={ta}")).await;
    let b = browser.tab(&format!("{base}/#token={tb}")).await;
    for t in [&a, &b] {
        t.wait(
            "live",
            "document.getElementById('status').textContent === 'live'",
        )
        .await;
        t.wait(
            "the group listed",
            "document.querySelectorAll('#conversations button').length === 1",
        )
        .await;
    }
    // The token left the address bar.
    assert_eq!(a.eval("location.hash").await, json!(""));

    // Group: Alice writes, Bob reads (and the unread badge shows first).
    a.eval("document.querySelector('#conversations button').click()")
        .await;
    a.wait("composer", "!document.getElementById('composer').hidden")
        .await;
    a.eval("document.getElementById('text').value = 'Hello Bob'; document.getElementById('composer').requestSubmit()").await;
    b.wait(
        "unread badge",
        "document.querySelector('#conversations .unread')?.textContent === '1'",
    )
    .await;
    b.eval("document.querySelector('#conversations button').click()")
        .await;
    b.wait("Alice's message", "[...document.querySelectorAll('#messages .text')].some(e => e.textContent === 'Hello Bob')").await;
    b.eval("document.getElementById('text').value = 'Hi Alice'; document.getElementById('composer').requestSubmit()").await;
    a.wait(
        "Bob's reply",
        "[...document.querySelectorAll('#messages .text')].some(e => e.textContent === 'Hi Alice')",
    )
    .await;
    // Typing reaches the other side.
    b.eval("document.getElementById('text').dispatchEvent(new Event('input'))")
        .await;
    a.wait(
        "typing",
        "document.getElementById('typing').textContent.includes('typing')",
    )
    .await;

    // Dialog: Alice opens one with Bob by id.
    a.eval(&format!("document.getElementById('dialog-user').value = '{bob}'; document.getElementById('new-dialog').requestSubmit()")).await;
    a.wait(
        "dialog open",
        "document.getElementById('conv-title').textContent.startsWith('Dialog')",
    )
    .await;
    a.eval("document.getElementById('text').value = 'Just us'; document.getElementById('composer').requestSubmit()").await;
    b.wait(
        "the dialog listed",
        "document.querySelectorAll('#conversations button').length === 2",
    )
    .await;
    b.eval("[...document.querySelectorAll('#conversations button')].find(x => x.textContent.startsWith('Dialog')).click()").await;
    b.wait(
        "the dialog message",
        "[...document.querySelectorAll('#messages .text')].some(e => e.textContent === 'Just us')",
    )
    .await;
    // Each message is shown once.
    assert_eq!(b.eval("[...document.querySelectorAll('#messages .text')].filter(e => e.textContent === 'Just us').length").await, json!(1));

    let shots = [
        a.screenshot("desktop-conversation", 1280).await,
        b.screenshot("narrow-conversation", 360).await,
    ];
    for s in shots {
        assert!(
            std::fs::metadata(&s)
                .map(|m| m.len() > 1000)
                .unwrap_or(false),
            "{}",
            s.display()
        );
    }
    assert!(a.errors().is_empty(), "console errors: {:?}", a.errors());
    assert!(b.errors().is_empty(), "console errors: {:?}", b.errors());
}

#[actix_web::test]
async fn the_development_sign_in_works_only_when_enabled() {
    let env = TestEnv::new(|c| c.web.dev_signin = true).await;
    let app = env.app().await;
    let r = call(
        &app,
        "POST",
        "/v1/dev/signin",
        &Auth::None,
        json_body(json!({"name": "Dana"})),
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    let token = r.body["token"].as_str().expect("token").to_owned();
    let me = call(&app, "GET", "/v1/me", &Auth::Token(token), None).await;
    assert_eq!(me.body["name"], "Dana");
    let again = call(
        &app,
        "POST",
        "/v1/dev/signin",
        &Auth::None,
        json_body(json!({"name": "Dana"})),
    )
    .await;
    assert_eq!(
        again.body["user_id"], r.body["user_id"],
        "same user every time"
    );

    let off = TestEnv::default().await;
    let app = off.app().await;
    let r = call(
        &app,
        "POST",
        "/v1/dev/signin",
        &Auth::None,
        json_body(json!({"name": "Eve"})),
    )
    .await;
    r.expect_error(404, "not_found");
    // The client itself is served.
    let page = actix_web::test::call_service(
        &app,
        actix_web::test::TestRequest::get().uri("/").to_request(),
    )
    .await;
    assert_eq!(page.status().as_u16(), 200);
    let js = actix_web::test::call_service(
        &app,
        actix_web::test::TestRequest::get()
            .uri("/app.js")
            .to_request(),
    )
    .await;
    assert_eq!(js.status().as_u16(), 200);
}
