//! The web client in headless Chromium against a real server.

use parley_tests::browser::Browser;
use parley_tests::serde_json::json;
use parley_tests::*;

/// A subscriber's infobase, users alice and bob with tokens, and a group of
/// the two named `title`.
struct Two {
    env: TestEnv,
    bob: String,
    ta: String,
    tb: String,
    conv: String,
}

async fn two(tag: &str, title: &str) -> Two {
    let env = TestEnv::default().await;
    let app = env.app().await;
    let ib = register(&app, &email(tag), tag).await;
    let alice = user(&app, &ib, "alice").await;
    let bob = user(&app, &ib, "bob").await;
    let r = call(
        &app,
        "POST",
        &format!("/v1/infobases/{}/conversations", ib.id),
        &ib.auth(),
        json_body(json!({"title": title, "members": [alice, bob]})),
    )
    .await;
    assert_eq!(r.status, 201, "{r:?}");
    let conv = r.body["id"].as_str().expect("id").to_owned();
    let ta = token(&app, &ib, &alice).await;
    let tb = token(&app, &ib, &bob).await;
    Two {
        env,
        bob,
        ta,
        tb,
        conv,
    }
}

#[actix_web::test]
async fn two_browsers_chat_in_a_group_and_a_dialog() {
    let Two {
        env, bob, ta, tb, ..
    } = two("web", "Team").await;
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
    // The token left the address bar, and no WebSocket URL carries it: the
    // client opened its sessions with single-use tickets.
    assert_eq!(a.eval("location.hash").await, json!(""));
    for (t, token) in [(&a, &ta), (&b, &tb)] {
        let urls = t.websocket_urls();
        assert!(!urls.is_empty(), "no WebSocket seen");
        for u in urls {
            assert!(u.contains("ticket=pwt_"), "{u}");
            assert!(!u.contains(token.as_str()), "the session token is in {u}");
        }
    }

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
    b.wait(
        "her name",
        "[...document.querySelectorAll('#messages .author')].some(e => e.textContent === 'alice')",
    )
    .await;
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

#[actix_web::test]
async fn a_file_sent_from_one_browser_downloads_with_the_same_bytes_in_the_other() {
    let Two { env, ta, tb, .. } = two("webfile", "Files").await;
    let server = env.server().await;
    let base = format!("http://{}", server.addr);
    let bytes: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let path = std::env::temp_dir().join(format!("report-{}.bin", uuid::Uuid::new_v4().simple()));
    std::fs::write(&path, &bytes).expect("file");
    let sha = parley_files::hex(&<sha2::Sha256 as sha2::Digest>::digest(&bytes));

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
            "listed",
            "document.querySelectorAll('#conversations button').length === 1",
        )
        .await;
        t.eval("document.querySelector('#conversations button').click()")
            .await;
        t.wait("open", "!document.getElementById('composer').hidden")
            .await;
    }
    a.set_file("#file", &path).await;
    a.eval("document.getElementById('text').value = 'the report'; document.getElementById('composer').requestSubmit()").await;
    b.wait(
        "the attachment",
        "document.querySelector('#messages a.attachment') !== null",
    )
    .await;
    let got = b
        .eval(
            "fetch('/v1/files/' + document.querySelector('#messages a.attachment').dataset.fileId + '/link',
                   {method: 'POST', headers: {authorization: 'Bearer ' + sessionStorage.getItem('parley.token')}})
               .then(r => r.json()).then(l => fetch(l.url))
               .then(r => r.arrayBuffer()).then(buf => crypto.subtle.digest('SHA-256', buf))
               .then(d => [...new Uint8Array(d)].map(x => x.toString(16).padStart(2, '0')).join(''))",
        )
        .await;
    assert_eq!(got, json!(sha));
    let _ = std::fs::remove_file(path);
    assert!(
        a.errors().is_empty() && b.errors().is_empty(),
        "{:?} {:?}",
        a.errors(),
        b.errors()
    );
}

#[actix_web::test]
async fn the_embedded_view_shows_and_sends_in_the_objects_discussion() {
    let env = TestEnv::default().await;
    let app = env.app().await;
    let ib = register(&app, &email("embed"), "Embed").await;
    let alice = user(&app, &ib, "alice").await;
    let bot = user(&app, &ib, "bot").await;
    let r = call(
        &app,
        "PUT",
        &format!("/v1/infobases/{}/contexts", ib.id),
        &ib.auth(),
        json_body(json!({"object_ref": "Document.Order/42", "title": "Order 42"})),
    )
    .await;
    let conv = r.body["id"].as_str().expect("id").to_owned();
    call(
        &app,
        "POST",
        &format!("/v1/infobases/{}/conversations/{conv}/members", ib.id),
        &ib.auth(),
        json_body(json!({"user_ids": [alice]})),
    )
    .await;
    call(
        &app,
        "POST",
        &format!("/v1/infobases/{}/conversations/{conv}/messages", ib.id),
        &ib.auth(),
        json_body(json!({"author_id": bot, "text": "Order 42 was shipped"})),
    )
    .await;
    let ta = token(&app, &ib, &alice).await;
    let server = env.server().await;
    let url = format!(
        "http://{}/embed/context?infobase={}&object=Document.Order%2F42#token={ta}",
        server.addr, ib.id
    );

    let browser = Browser::launch().await;
    let t = browser.tab(&url).await;
    t.wait(
        "the object's discussion",
        "document.getElementById('conv-title').textContent === 'Order 42'",
    )
    .await;
    t.wait("its history", "[...document.querySelectorAll('#messages .text')].some(e => e.textContent === 'Order 42 was shipped')").await;
    assert_eq!(t.eval("getComputedStyle(document.getElementById('side')).display === 'none' || document.getElementById('side').hidden").await, json!(true));
    t.eval("document.getElementById('text').value = 'Thanks!'; document.getElementById('composer').requestSubmit()").await;
    t.wait(
        "sent",
        "[...document.querySelectorAll('#messages .text')].some(e => e.textContent === 'Thanks!')",
    )
    .await;
    let h = call(
        &app,
        "GET",
        &format!("/v1/infobases/{}/conversations/{conv}/messages", ib.id),
        &ib.auth(),
        None,
    )
    .await;
    assert!(
        h.body["messages"]
            .as_array()
            .expect("messages")
            .iter()
            .any(|m| m["text"] == "Thanks!"),
        "{h:?}"
    );
    t.screenshot("embedded-context", 800).await;
    assert!(t.errors().is_empty(), "{:?}", t.errors());
}

/// A browser whose node dies reconnects through nginx and shows every
/// message once.
#[actix_web::test]
async fn a_browser_survives_the_death_of_its_node() {
    use parley_client::{Client, Options};
    use parley_core::protocol::NewMessage;
    use parley_tests::cluster::Cluster;
    let Two {
        env, ta, tb, conv, ..
    } = two("webfail", "Failover").await;
    let conv: parley_core::ConversationId = conv.parse().expect("uuid");
    let mut cl = Cluster::start(&env, 2, true, &[]).await;
    let port = cl.nginx_port.expect("nginx");

    let browser = Browser::launch().await;
    let a = browser
        .tab(&format!("http://127.0.0.1:{port}/#token={ta}"))
        .await;
    a.wait(
        "live",
        "document.getElementById('status').textContent === 'live'",
    )
    .await;
    a.wait(
        "listed",
        "document.querySelectorAll('#conversations button').length === 1",
    )
    .await;
    a.eval("document.querySelector('#conversations button').click()")
        .await;
    // Which node holds the browser's session?
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let victim = loop {
        let nodes =
            parley_bus::list_nodes(&parley_bus::RedisTarget::Single(cl.redis_url()), &cl.prefix)
                .await
                .expect("nodes");
        if let Some(n) = nodes.iter().find(|n| n.sessions == 1) {
            break cl
                .nodes
                .iter()
                .position(|x| n.addr == format!("127.0.0.1:{}", x.port))
                .expect("node");
        }
        assert!(std::time::Instant::now() < deadline, "{nodes:?}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    let mut o = Options::new(format!("ws://127.0.0.1:{port}/ws"), tb);
    o.max_backoff = std::time::Duration::from_millis(300);
    let bob_client = Client::connect(o).await.expect("bob");
    let mut texts = Vec::new();
    for i in 0..20 {
        if i == 10 {
            cl.kill(victim);
        }
        let text = format!("m{i}");
        let key = format!("k{i}");
        let m = NewMessage {
            text: text.clone(),
            idempotency_key: Some(key),
            ..Default::default()
        };
        bob_client
            .send_reliably(conv, m, std::time::Duration::from_secs(60))
            .await
            .unwrap_or_else(|e| panic!("send {text}: {e}"));
        texts.push(text);
    }
    a.wait(
        "every message",
        "document.querySelectorAll('#messages li[data-id]').length === 20",
    )
    .await;
    let shown = a
        .eval("[...document.querySelectorAll('#messages .text')].map(e => e.textContent)")
        .await;
    assert_eq!(shown, json!(texts), "every message once, in order");
    assert_eq!(
        a.eval("document.getElementById('status').textContent")
            .await,
        json!("live")
    );
}

/// `(key, value)` pairs borrowed, as `Cluster::start` takes them.
fn pairs(settings: &[(String, String)]) -> Vec<(&str, &str)> {
    settings
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

/// A tab signed in on `port` with its only conversation open, calls forced
/// through the TURN relay.
async fn call_tab<'b>(
    browser: &'b Browser,
    port: u16,
    token: &str,
) -> parley_tests::browser::Tab<'b> {
    let t = browser
        .tab(&format!("http://127.0.0.1:{port}/#token={token}"))
        .await;
    t.wait(
        "live",
        "document.getElementById('status').textContent === 'live'",
    )
    .await;
    t.eval("sessionStorage.setItem('parley.icePolicy', 'relay')")
        .await;
    t.wait(
        "listed",
        "document.querySelectorAll('#conversations button').length === 1",
    )
    .await;
    t.eval("document.querySelector('#conversations button').click()")
        .await;
    t.wait("open", "!document.getElementById('call-buttons').hidden")
        .await;
    t
}

/// Inbound RTP bytes by kind in the tab's call, how many inbound video
/// streams carry bytes, and whether the pair in use goes through the relay.
const CALL_STATS: &str = "(async () => {
  const c = window.parleyCall; if (!c || !c.pc) return null;
  const s = await c.pc.getStats();
  const out = {audio: 0, video: 0, videos: 0, relay: false, state: c.pc.connectionState};
  s.forEach(r => {
    if (r.type === 'inbound-rtp') {
      out[r.kind] += r.bytesReceived || 0;
      if (r.kind === 'video' && (r.bytesReceived || 0) > 0) out.videos += 1;
    }
    if (r.type === 'candidate-pair' && r.state === 'succeeded' && r.nominated) {
      const l = s.get(r.localCandidateId);
      if (l && l.candidateType === 'relay') out.relay = true;
    }
  });
  return out;
})()";

/// Waits until the call's inbound bytes of every kind grow (twice, so the
/// media flows and did not merely start), with `videos` video streams.
async fn media_flows(t: &parley_tests::browser::Tab<'_>, who: &str, videos: u64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(40);
    let mut last: Option<serde_json::Value> = None;
    let mut grew = 0;
    loop {
        let s = t.eval(CALL_STATS).await;
        if let (Some(prev), false) = (&last, s.is_null()) {
            let up = |k: &str| s[k].as_f64().unwrap_or(0.0) > prev[k].as_f64().unwrap_or(0.0);
            if up("audio") && up("video") && s["videos"].as_u64() >= Some(videos) {
                grew += 1;
                if grew >= 2 {
                    assert_eq!(s["relay"], true, "{who}: not through TURN: {s}");
                    return;
                }
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{who}: media does not flow: {s} (before {last:?}); errors {:?}",
            t.errors()
        );
        last = Some(s);
        tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    }
}

/// Two browsers on different nodes call each other through the web client,
/// forced through coturn (`iceTransportPolicy: "relay"`): audio and video
/// flow both ways, a shared screen arrives as a second video stream, and the
/// hang-up ends it on both with the call and its duration in the history.
#[actix_web::test]
async fn two_browsers_on_two_nodes_call_through_turn_and_share_a_screen() {
    use parley_tests::cluster::Cluster;
    use parley_tests::turn::Coturn;
    let Two { env, ta, tb, .. } = two("webcall", "Call").await;
    let turn = Coturn::start().await;
    let cl = Cluster::start(&env, 2, false, &pairs(&turn.settings())).await;
    let browser = Browser::launch().await;
    let a = call_tab(&browser, cl.nodes[0].port, &ta).await;
    let b = call_tab(&browser, cl.nodes[1].port, &tb).await;
    a.eval_as_user("document.getElementById('call-video').click()")
        .await;
    b.wait("ringing", "!document.getElementById('incoming').hidden")
        .await;
    b.eval_as_user("document.getElementById('call-accept').click()")
        .await;
    for (t, who) in [(&a, "caller"), (&b, "callee")] {
        t.wait(
            "connected",
            "window.parleyCall && window.parleyCall.pc.connectionState === 'connected'",
        )
        .await;
        media_flows(t, who, 1).await;
    }
    b.screenshot("call-video", 1000).await;

    // The caller shares a screen: a second video stream on the other side.
    a.eval_as_user("document.getElementById('call-screen').click()")
        .await;
    media_flows(&b, "callee, with the screen", 2).await;
    // The protocol says who shares: the other side names the sharer.
    b.wait(
        "who shares",
        "document.getElementById('call-status').textContent.includes('sharing a screen')",
    )
    .await;

    // Hang up: over on both, recorded in the history with a duration.
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    a.eval_as_user("document.getElementById('call-hangup').click()")
        .await;
    for t in [&a, &b] {
        t.wait("call over", "document.getElementById('call').hidden")
            .await;
        t.wait(
            "the call in the history",
            "[...document.querySelectorAll('#messages li.system')].some(li => /Video call, \\d+:\\d\\d/.test(li.textContent))",
        )
        .await;
    }
    b.screenshot("call-ended", 1000).await;
    for t in [&a, &b] {
        assert!(t.errors().is_empty(), "console errors: {:?}", t.errors());
    }
}

/// Inbound bytes over the tab's group call: per remote feed (one
/// subscription each), and whether they all go through the relay.
const GROUP_STATS: &str = "(async () => {
  const c = window.parleyCall; if (!c || !c.subs) return null;
  const out = {feeds: 0, video: 0, audio: 0, relay: true, room: c.room.room};
  for (const s of c.subs.values()) {
    if (!s.pc) continue;
    const st = await s.pc.getStats();
    let v = 0, rel = false;
    st.forEach(r => {
      if (r.type === 'inbound-rtp') { if (r.kind === 'video') v += r.bytesReceived || 0; else out.audio += r.bytesReceived || 0; }
      if (r.type === 'candidate-pair' && r.state === 'succeeded' && r.nominated) {
        const l = st.get(r.localCandidateId); if (l && l.candidateType === 'relay') rel = true;
      }
    });
    if (v > 0) out.feeds += 1;
    out.video += v;
    out.relay = out.relay && rel;
  }
  return out;
})()";

/// Waits until `feeds` remote videos carry growing bytes.
async fn group_media_flows(
    t: &parley_tests::browser::Tab<'_>,
    who: &str,
    feeds: u64,
) -> serde_json::Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut last: Option<serde_json::Value> = None;
    loop {
        let s = t.eval(GROUP_STATS).await;
        if let (Some(prev), false) = (&last, s.is_null()) {
            if s["feeds"].as_u64() == Some(feeds)
                && s["video"].as_f64() > prev["video"].as_f64()
                && s["relay"] == true
            {
                return s;
            }
        }
        if std::time::Instant::now() >= deadline {
            let state = t
                .eval(
                    "JSON.stringify({status: document.getElementById('call-status').textContent,
                      subs: [...window.parleyCall.subs.entries()].map(([k, v]) => [k, v.pc ? v.pc.connectionState : null]),
                      publisher: window.parleyCall.pc ? window.parleyCall.pc.connectionState : null})",
                )
                .await;
            panic!(
                "{who}: {feeds} feeds do not flow: {s}; state {state}; errors {:?}",
                t.errors()
            );
        }
        last = Some(s);
        tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    }
}

/// Three browsers (on two nodes) meet in a group call through Janus, each
/// receiving the two others' video through the TURN relay; when one leaves
/// the others see it; when all leave the room is gone from Janus.
#[actix_web::test]
async fn three_browsers_meet_in_a_group_call_through_janus() {
    use parley_tests::cluster::Cluster;
    use parley_tests::janus::Janus;
    use parley_tests::turn::Coturn;
    let env = TestEnv::default().await;
    let app = env.app().await;
    let ib = register(&app, &email("webgroup"), "Group").await;
    let mut ids = Vec::new();
    let mut tokens = Vec::new();
    for n in ["ann", "ben", "cat"] {
        let id = user(&app, &ib, n).await;
        tokens.push(token(&app, &ib, &id).await);
        ids.push(id);
    }
    let r = call(
        &app,
        "POST",
        &format!("/v1/infobases/{}/conversations", ib.id),
        &ib.auth(),
        json_body(json!({"title": "Standup", "members": ids})),
    )
    .await;
    assert_eq!(r.status, 201, "{r:?}");
    let turn = Coturn::start().await;
    let janus = Janus::start().await;
    let mut settings = turn.settings();
    settings.extend(janus.settings());
    let cl = Cluster::start(&env, 2, false, &pairs(&settings)).await;
    let browser = Browser::launch().await;
    let mut tabs = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        tabs.push(call_tab(&browser, cl.nodes[i % 2].port, t).await);
    }
    tabs[0]
        .eval_as_user("document.getElementById('call-video').click()")
        .await;
    for t in &tabs[1..] {
        t.wait("ringing", "!document.getElementById('incoming').hidden")
            .await;
        t.eval_as_user("document.getElementById('call-accept').click()")
            .await;
    }
    let mut room = None;
    for (i, t) in tabs.iter().enumerate() {
        let s = group_media_flows(t, &format!("tab {i}"), 2).await;
        room = s["room"].as_u64();
    }
    tabs[0].screenshot("group-call", 1000).await;
    // One leaves: the others are down to one remote video.
    tabs[2]
        .eval_as_user("document.getElementById('call-hangup').click()")
        .await;
    for t in &tabs[..2] {
        t.wait(
            "the third left",
            "document.querySelectorAll('#tiles video').length === 1",
        )
        .await;
    }
    for t in &tabs[..2] {
        t.eval_as_user("document.getElementById('call-hangup').click()")
            .await;
    }
    let room = parley_media::Room {
        server: janus.url(),
        room: room.expect("room id"),
        pin: String::new(),
    };
    let admin = parley_media::Janus::new(
        vec![janus.url()],
        janus.admin_key.clone(),
        std::time::Duration::from_secs(5),
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while admin.room_exists(&room).await.expect("exists") {
        assert!(
            std::time::Instant::now() < deadline,
            "the room outlived the call"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    for t in &tabs {
        t.wait("call over", "document.getElementById('call').hidden")
            .await;
        assert!(t.errors().is_empty(), "console errors: {:?}", t.errors());
    }
}

/// Waits for `live` and the group in the list (any language).
async fn live_with_group(t: &parley_tests::browser::Tab<'_>) {
    t.wait(
        "live",
        "document.getElementById('status').dataset.state === 'live'",
    )
    .await;
    t.wait(
        "the group listed",
        "document.querySelectorAll('#conversations button').length === 1",
    )
    .await;
}

#[actix_web::test]
async fn search_reply_reaction_and_mention_between_two_browsers() {
    let Two { env, ta, tb, .. } = two("webchat", "Team").await;
    let server = env.server().await;
    let base = format!("http://{}", server.addr);
    let browser = Browser::launch_with(&["--lang=en"]).await;
    let a = browser.tab(&format!("{base}/#token={ta}")).await;
    let b = browser.tab(&format!("{base}/#token={tb}")).await;
    for t in [&a, &b] {
        live_with_group(t).await;
    }
    // Bob writes in Russian; Alice, with no conversation open, finds it by
    // another word form and jumps to it.
    b.eval("document.querySelector('#conversations button').click()")
        .await;
    b.wait("composer", "!document.getElementById('composer').hidden")
        .await;
    b.eval("document.getElementById('text').value = 'Оплатите, пожалуйста, счёт номер 7'; document.getElementById('composer').requestSubmit()").await;
    b.wait(
        "sent",
        "[...document.querySelectorAll('#messages .text')].some(e => e.textContent.includes('счёт'))",
    )
    .await;
    a.eval("document.getElementById('search-text').value = 'счета'; document.getElementById('search').requestSubmit()").await;
    a.wait(
        "a search hit",
        "document.querySelectorAll('#search-results button.hit').length === 1",
    )
    .await;
    assert_eq!(
        a.eval("document.querySelectorAll('#search-results mark').length > 0")
            .await,
        json!(true),
        "the matched word is marked"
    );
    a.eval("document.querySelector('#search-results button.hit').click()")
        .await;
    a.wait(
        "jumped to the message",
        "(document.querySelector('#messages li.found .text') || {}).textContent === 'Оплатите, пожалуйста, счёт номер 7'",
    )
    .await;

    // Alice replies to it, reacts to it and mentions Bob.
    a.eval("document.querySelector('#messages li.found button.reply').click()")
        .await;
    a.eval("document.getElementById('text').value = 'Оплачено'; document.getElementById('composer').requestSubmit()").await;
    b.wait(
        "the reply with its quote",
        "[...document.querySelectorAll('#messages li')].some(li => li.querySelector('.quote') && li.querySelector('.quote').textContent.includes('счёт') && li.querySelector('.text').textContent === 'Оплачено')",
    )
    .await;
    a.eval("[...document.querySelectorAll('#messages li')].find(li => (li.querySelector('.text') || {}).textContent === 'Оплатите, пожалуйста, счёт номер 7').querySelector('.palette button').click()").await;
    b.wait(
        "the reaction",
        "[...document.querySelectorAll('#messages .reactions button.reaction')].some(x => x.textContent === '👍 1')",
    )
    .await;
    a.eval("{ const ta = document.getElementById('text'); ta.value = '@bo'; ta.selectionStart = ta.selectionEnd = 3; ta.dispatchEvent(new Event('input')); }").await;
    a.wait(
        "bob suggested",
        "[...document.querySelectorAll('#mention-suggestions button')].some(x => x.textContent === 'bob')",
    )
    .await;
    a.eval("[...document.querySelectorAll('#mention-suggestions button')].find(x => x.textContent === 'bob').click()").await;
    a.eval("{ document.getElementById('text').value += 'see above'; document.getElementById('composer').requestSubmit(); }").await;
    b.wait(
        "the mention, highlighted",
        "[...document.querySelectorAll('#messages li.mentioned .mention')].some(x => x.textContent === '@bob')",
    )
    .await;
    b.screenshot("messenger-features", 1280).await;
    assert!(a.errors().is_empty(), "console errors: {:?}", a.errors());
    assert!(b.errors().is_empty(), "console errors: {:?}", b.errors());
}

#[actix_web::test]
async fn the_interface_speaks_the_browsers_language_russian_or_english() {
    let Two { env, ta, .. } = two("weblang", "Команда").await;
    let server = env.server().await;
    let base = format!("http://{}", server.addr);
    for (lang, send, status, today) in [
        ("ru", "Отправить", "на связи", "Сегодня"),
        ("en", "Send", "live", "Today"),
    ] {
        let browser =
            Browser::launch_with(&[&format!("--lang={lang}"), &format!("--accept-lang={lang}")])
                .await;
        let t = browser.tab(&format!("{base}/#token={ta}")).await;
        live_with_group(&t).await;
        // Every catalog has every key, and every key the page uses exists.
        assert_eq!(
            t.eval("(() => { const c = window.PARLEY_I18N; return [...Object.keys(c.en).filter(k => !(k in c.ru)), ...Object.keys(c.ru).filter(k => !(k in c.en)), ...[...document.querySelectorAll('[data-i18n]')].map(e => e.dataset.i18n).filter(k => !(k in c.en))]; })()").await,
            json!([]),
            "missing words"
        );
        t.eval("document.querySelector('#conversations button').click()")
            .await;
        t.wait("composer", "!document.getElementById('composer').hidden")
            .await;
        t.eval(&format!("document.getElementById('text').value = 'hello in {lang}'; document.getElementById('composer').requestSubmit()")).await;
        t.wait(
            "a date separator",
            "document.querySelectorAll('#messages li.separator').length > 0",
        )
        .await;
        assert_eq!(
            t.eval("[document.documentElement.lang, document.getElementById('send').textContent, document.getElementById('status').textContent, document.querySelector('#messages li.separator').textContent]").await,
            json!([lang, send, status, today]),
            "{lang}"
        );
        t.screenshot(&format!("ui-{lang}"), 1280).await;
        assert!(t.errors().is_empty(), "console errors: {:?}", t.errors());
        // The switch changes the words at once.
        let other = if lang == "ru" { "en" } else { "ru" };
        t.eval(&format!("{{ const s = document.getElementById('lang'); s.value = '{other}'; s.dispatchEvent(new Event('change')); }}")).await;
        assert_eq!(t.eval("document.documentElement.lang").await, json!(other));
        assert_ne!(
            t.eval("document.getElementById('send').textContent").await,
            json!(send)
        );
    }
}

/// A 1×1 PNG.
const PIXEL_PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==";

#[actix_web::test]
async fn an_image_shows_inline_and_a_message_forwards_to_a_dialog() {
    let Two {
        env, bob, ta, tb, ..
    } = two("webimage", "Pictures").await;
    let server = env.server().await;
    let base = format!("http://{}", server.addr);
    use base64::Engine;
    let png = base64::engine::general_purpose::STANDARD
        .decode(PIXEL_PNG)
        .expect("png");
    let path = std::env::temp_dir().join(format!("pixel-{}.png", uuid::Uuid::new_v4().simple()));
    std::fs::write(&path, &png).expect("file");
    let browser = Browser::launch_with(&["--lang=en"]).await;
    let a = browser.tab(&format!("{base}/#token={ta}")).await;
    let b = browser.tab(&format!("{base}/#token={tb}")).await;
    for t in [&a, &b] {
        live_with_group(t).await;
        t.eval("document.querySelector('#conversations button').click()")
            .await;
        t.wait("open", "!document.getElementById('composer').hidden")
            .await;
    }
    a.set_file("#file", &path).await;
    a.eval("document.getElementById('text').value = 'the logo'; document.getElementById('composer').requestSubmit()").await;
    b.wait(
        "the image, loaded inline",
        "[...document.querySelectorAll('#messages img.inline-image')].some(i => i.complete && i.naturalWidth === 1)",
    )
    .await;
    // Alice opens a dialog with Bob, goes back and forwards the image
    // message there; Bob sees it in the dialog with its origin.
    a.eval(&format!("document.getElementById('dialog-user').value = '{bob}'; document.getElementById('new-dialog').requestSubmit()")).await;
    a.wait(
        "the dialog",
        "document.getElementById('conv-title').textContent.startsWith('Dialog')",
    )
    .await;
    a.eval("[...document.querySelectorAll('#conversations button')].find(x => x.textContent.startsWith('Pictures')).click()").await;
    a.wait(
        "the group again",
        "[...document.querySelectorAll('#messages .text')].some(e => e.textContent === 'the logo')",
    )
    .await;
    a.eval("[...document.querySelectorAll('#messages li')].find(li => (li.querySelector('.text') || {}).textContent === 'the logo').querySelector('button.forward').click()").await;
    a.wait(
        "the forward dialog",
        "document.getElementById('forward-dialog').open",
    )
    .await;
    a.eval("{ const s = document.getElementById('forward-to'); s.value = [...s.options].find(o => o.textContent.startsWith('Dialog')).value; document.getElementById('forward-go').click(); }").await;
    b.wait(
        "the dialog listed",
        "[...document.querySelectorAll('#conversations button')].some(x => x.textContent.startsWith('Dialog'))",
    )
    .await;
    b.eval("[...document.querySelectorAll('#conversations button')].find(x => x.textContent.startsWith('Dialog')).click()").await;
    b.wait(
        "the forwarded image",
        "[...document.querySelectorAll('#messages li')].some(li => (li.querySelector('.forwarded') || {}).textContent === 'Forwarded from alice in “Pictures”' && li.querySelector('img.inline-image'))",
    )
    .await;
    let _ = std::fs::remove_file(path);
    assert!(a.errors().is_empty(), "console errors: {:?}", a.errors());
    assert!(b.errors().is_empty(), "console errors: {:?}", b.errors());
}

/// The web client registers its service worker and the browser's push
/// subscription; with the page closed (no session), a dialog message
/// reaches that subscription, encrypted and signed. Chromium's own push
/// service (Google's FCM) is not reachable here, so `pushManager.subscribe`
/// answers with a subscription of the test's push service
/// (tests/push_receiver.py) — everything after it is the real path: the
/// client registers it, the server pushes, the receiver verifies and
/// decrypts.
#[actix_web::test]
async fn the_web_client_subscribes_to_push_and_an_offline_user_gets_the_message() {
    use parley_tests::push::PushService;
    let ps = PushService::start();
    let env = TestEnv::new(|c| c.push.allow_private_targets = true).await;
    let app = env.app().await;
    let ib = register(&app, &email("web-push"), "Push").await;
    let alice = user(&app, &ib, "alice").await;
    let bob = user(&app, &ib, "bob").await;
    let tb = token(&app, &ib, &bob).await;
    let ta = token(&app, &ib, &alice).await;
    let server = env.server().await;
    let base = format!("http://{}", server.addr);
    let sub = ps.subscription(false).await;

    let browser = Browser::launch().await;
    browser.grant(&base, &["notifications"]).await;
    let init = format!(
        "window.__pushKeys = [];
         PushManager.prototype.getSubscription = async function () {{ return null; }};
         PushManager.prototype.subscribe = async function (o) {{
           window.__pushKeys.push(Array.from(new Uint8Array(o.applicationServerKey)));
           const s = {sub};
           return {{ endpoint: s.endpoint, toJSON() {{ return s; }} }};
         }};",
        sub = json!({"endpoint": sub["endpoint"], "keys": sub["keys"], "expirationTime": null})
    );
    let b = browser
        .tab_with(&format!("{base}/#token={tb}"), Some(&init))
        .await;
    b.wait(
        "live",
        "document.getElementById('status').textContent === 'live'",
    )
    .await;
    // Permission is granted: the client registers without a click.
    b.wait("push on", "document.body.dataset.push === 'on'")
        .await;
    let sw = b
        .eval("navigator.serviceWorker.getRegistration().then(r => r && (r.active || r.installing || r.waiting).scriptURL)")
        .await;
    assert_eq!(sw, json!(format!("{base}/sw.js")));
    // It subscribed with the server's key.
    let key = call(&app, "GET", "/v1/push/vapid-key", &Auth::None, None).await;
    let want = parley_core::crypto::from_b64url(key.body["public_key"].as_str().expect("key"))
        .expect("base64url");
    let used: Vec<u8> =
        serde_json::from_value(b.eval("window.__pushKeys[0]").await).expect("bytes");
    assert_eq!(used, want);
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM push_subscriptions WHERE endpoint = $1")
        .bind(sub["endpoint"].as_str())
        .fetch_one(&env.db)
        .await
        .expect("count");
    assert_eq!(n, 1);
    assert_eq!(
        b.eval("document.getElementById('push').textContent").await,
        json!("Notifications on")
    );

    assert!(b.errors().is_empty(), "console errors: {:?}", b.errors());

    // Bob closes the page; Alice writes to him.
    b.cmd("Page.close", json!({})).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let r = call(
            &app,
            "GET",
            &format!("/v1/infobases/{}/users/{bob}/presence", ib.id),
            &ib.auth(),
            None,
        )
        .await;
        if r.body["online"] == false {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "bob stays online");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let ca = parley_tests::chat::connect(&server.ws_url(), &ta).await;
    let dm: parley_core::protocol::Conversation = ca
        .call(parley_core::protocol::Request::OpenDialog {
            user_id: bob.parse().expect("id"),
        })
        .await
        .expect("dialog");
    parley_tests::chat::send(&ca, dm.id, parley_tests::chat::text("Are you there?")).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let got = loop {
        let got = ps.received().await;
        if !got.is_empty() {
            break got;
        }
        assert!(std::time::Instant::now() < deadline, "no push");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(got[0]["ok"], true, "{got:?}");
    assert_eq!(got[0]["payload"]["text"], "Are you there?");
}

#[actix_web::test]
async fn the_web_client_chats_over_https_and_wss_through_nginx() {
    use parley_client::{Client, Options};
    use parley_core::protocol::{Event, NewMessage};
    use parley_tests::cluster::Cluster;
    use parley_tests::tls::TestCa;
    let Two {
        env, ta, tb, conv, ..
    } = two("webtls", "Over TLS").await;
    let conv: parley_core::ConversationId = conv.parse().expect("uuid");
    let mut cl = Cluster::start(&env, 2, false, &[]).await;
    let ca = TestCa::new(&cl.dir.join("tls"));
    let ca_pem = ca.ca_bytes();
    cl.start_nginx_tls(ca).await;
    let port = cl.nginx_tls_port.expect("TLS port");

    // The test's own authority is not in Chromium's store: this test only
    // tells it to accept the certificate.
    let browser = Browser::launch_with(&["--ignore-certificate-errors"]).await;
    let a = browser
        .tab(&format!("https://localhost:{port}/#token={ta}"))
        .await;
    a.wait(
        "live",
        "document.getElementById('status').textContent === 'live'",
    )
    .await;
    for u in a.websocket_urls() {
        assert!(
            u.starts_with(&format!("wss://localhost:{port}/ws?ticket=")),
            "{u}"
        );
    }
    // Live comes before the list is drawn: wait for it.
    a.wait(
        "the group listed",
        "document.querySelectorAll('#conversations button').length === 1",
    )
    .await;
    a.eval("document.querySelector('#conversations button').click()")
        .await;
    a.wait("composer", "!document.getElementById('composer').hidden")
        .await;

    let mut o = Options::new(format!("wss://localhost:{port}/ws"), tb);
    o.extra_ca_pem = Some(ca_pem);
    o.max_backoff = std::time::Duration::from_millis(300);
    let bob = Client::connect(o).await.expect("bob over wss");
    bob.send_reliably(
        conv,
        NewMessage {
            text: "from the Rust client".into(),
            ..Default::default()
        },
        std::time::Duration::from_secs(30),
    )
    .await
    .expect("send");
    a.wait("Bob's message", "[...document.querySelectorAll('#messages .text')].some(e => e.textContent === 'from the Rust client')").await;
    a.eval("document.getElementById('text').value = 'from Chromium'; document.getElementById('composer').requestSubmit()").await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match bob.next_event(left).await {
            Some(Event::MessageCreated { message, .. }) if message.text == "from Chromium" => break,
            Some(_) => {}
            None => panic!("the browser's message did not reach the Rust client"),
        }
    }
    assert!(a.errors().is_empty(), "{:?}", a.errors());
}
