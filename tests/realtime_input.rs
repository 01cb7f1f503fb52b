//! Bad input on the WebSocket: each gets its documented error frame or close
//! code, the server keeps serving everyone else, nothing half-written stays.

use futures_util::{SinkExt, StreamExt};
use parley_bus::Bus;
use parley_core::protocol::{close, Conversation, Event, NewMessage, Request};
use parley_core::UserId;
use parley_tests::serde_json::{json, Value};
use parley_tests::*;
use std::time::Duration;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message as Ws;

type Sock =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A raw WebSocket: with a session token in the Authorization header, or
/// (`query`) with a ticket (or whatever `token` holds) as `?ticket=`.
async fn raw(server: &TestServer, token: Option<&str>, query: bool) -> Sock {
    let url = match (token, query) {
        (Some(t), true) => format!("{}?ticket={t}", server.ws_url()),
        _ => server.ws_url(),
    };
    let mut req = url.into_client_request().expect("request");
    if let (Some(t), false) = (token, query) {
        req.headers_mut().insert(
            "authorization",
            format!("Bearer {t}").parse().expect("header"),
        );
    }
    tokio_tungstenite::connect_async(req)
        .await
        .expect("connect")
        .0
}

/// The next text frame as JSON, or the close code.
async fn next(ws: &mut Sock) -> Result<Value, Option<u16>> {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Err(_) => panic!("no frame within 10 s"),
            Ok(Some(Ok(Ws::Text(t)))) => return Ok(serde_json::from_str(&t).expect("JSON frame")),
            Ok(Some(Ok(Ws::Close(f)))) => return Err(f.map(|f| u16::from(f.code))),
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(_))) | Ok(None) => return Err(None),
        }
    }
}

/// The next frame that is not an event.
async fn answer(ws: &mut Sock) -> Value {
    loop {
        let v = next(ws).await.expect("a frame, not a close");
        if v["type"] != "event" {
            return v;
        }
    }
}

/// A server on `env` and the session token of the one user of a new
/// infobase.
async fn one_user(env: &TestEnv, tag: &str) -> (TestServer, String) {
    let app = env.app().await;
    let ib = register(&app, &email(tag), tag).await;
    let u = user(&app, &ib, "u").await;
    let t = token(&app, &ib, &u).await;
    (env.server().await, t)
}

async fn setup() -> (
    TestEnv,
    TestServer,
    Ib,
    String,
    String,
    UserId,
    Conversation,
    parley_client::Client,
) {
    let env = TestEnv::new(|c| {
        c.ws.max_frame_bytes = 8192;
        c.limits.max_text_bytes = 1000;
    })
    .await;
    let app = env.app().await;
    let ib = register(&app, &email("wsbad"), "WS").await;
    let u1 = user(&app, &ib, "u1").await;
    let u2 = user(&app, &ib, "u2").await;
    let t1 = token(&app, &ib, &u1).await;
    let t2 = token(&app, &ib, &u2).await;
    let server = env.server().await;
    let c2 = client(&server, &t2).await;
    let conv: Conversation = c2
        .call(Request::CreateGroup {
            title: "g".into(),
            members: vec![u1.parse().expect("id")],
        })
        .await
        .expect("group");
    let u2: UserId = u2.parse().expect("id");
    (env, server, ib, t1, u1, u2, conv, c2)
}

/// A request's answer goes out together with what reached the session
/// while it ran: of two sends written back to back, the first one's own
/// copy of the message follows its answer at once instead of waiting
/// behind the second request (it was put in the session's queue before the
/// answer came back, and both leave in one write).
#[actix_web::test]
async fn a_sends_answer_leaves_with_its_own_copy_of_the_message() {
    let env = TestEnv::with_db_proxy(|_| {}).await;
    let (server, t1) = one_user(&env, "wsanswer").await;
    let c1 = client(&server, &t1).await;
    let conv: Conversation = c1
        .call(Request::CreateGroup {
            title: "g".into(),
            members: vec![],
        })
        .await
        .expect("group");
    let mut ws = raw(&server, Some(&t1), false).await;
    let ready = next(&mut ws).await.expect("ready");
    assert_eq!(ready["type"], "ready");
    // The database held still: the second send is surely waiting to be
    // read when the first one's answer comes.
    let proxy = env.db_proxy.as_ref().expect("a proxied database");
    proxy.pause(true);
    for (id, text) in [("a", "first"), ("b", "second")] {
        let frame =
            json!({"id": id, "type": "message.send", "conversation_id": conv.id, "text": text});
        ws.send(Ws::text(frame.to_string())).await.expect("send");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.pause(false);
    let mut seen = Vec::new();
    while seen.len() < 4 {
        let v = next(&mut ws).await.expect("a frame, not a close");
        match v["type"].as_str() {
            Some("result") => seen.push(format!("answer {}", v["id"].as_str().unwrap_or("?"))),
            Some("event") if v["event"] == "message.created" => seen.push(format!(
                "copy {}",
                v["message"]["text"].as_str().unwrap_or("?")
            )),
            _ => {}
        }
    }
    assert_eq!(seen, ["answer a", "copy first", "answer b", "copy second"]);
}

#[actix_web::test]
async fn malformed_frames_get_error_frames_and_the_session_lives_on() {
    let (env, server, _ib, t1, _u1, _u2, conv, c2) = setup().await;
    let mut ws = raw(&server, Some(&t1), false).await;
    let ready = next(&mut ws).await.expect("ready");
    assert_eq!(ready["type"], "ready");
    let before: i64 = sqlx::query_scalar("SELECT count(*) FROM messages")
        .fetch_one(&env.db)
        .await
        .expect("count");

    let cases: Vec<(String, Option<&str>, &str)> = vec![
        ("{not json".into(), None, "invalid_json"),
        ("[1,2,3]".into(), None, "invalid_json"),
        (json!({"type": "ping"}).to_string(), None, "invalid_json"),
        (json!({"id": 5, "type": "ping"}).to_string(), None, "invalid_json"),
        (json!({"id": "a", "type": "fly"}).to_string(), Some("a"), "unknown_frame"),
        (json!({"id": "b"}).to_string(), Some("b"), "unknown_frame"),
        (json!({"id": "c", "type": "message.send"}).to_string(), Some("c"), "invalid_json"),
        (json!({"id": "d", "type": "message.send", "conversation_id": "nope", "text": "x"}).to_string(), Some("d"), "invalid_json"),
        (json!({"id": "e", "type": "message.send", "conversation_id": conv.id, "text": "y".repeat(1001)}).to_string(), Some("e"), "too_large"),
        (json!({"id": "f", "type": "message.send", "conversation_id": conv.id, "text": "   "}).to_string(), Some("f"), "invalid"),
        (json!({"id": "g", "type": "message.send", "conversation_id": conv.id, "text": "z", "recipients": [uuid::Uuid::new_v4()]}).to_string(), Some("g"), "invalid"),
        (json!({"id": "h", "type": "history", "conversation_id": conv.id, "limit": 0}).to_string(), Some("h"), "invalid"),
        (json!({"id": "i", "type": "conversation.get", "conversation_id": uuid::Uuid::new_v4()}).to_string(), Some("i"), "not_found"),
        (json!({"id": "j", "type": "auth", "token": "again"}).to_string(), Some("j"), "invalid"),
        (json!({"id": "k", "type": "conversation.create", "title": "", "members": []}).to_string(), Some("k"), "invalid"),
    ];
    for (frame, id, code) in cases {
        ws.send(Ws::text(frame.clone())).await.expect("send");
        let v = answer(&mut ws).await;
        assert_eq!(v["type"], "error", "{frame}: {v}");
        assert_eq!(v["code"], code, "{frame}: {v}");
        assert_eq!(v["id"].as_str(), id, "{frame}: {v}");
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    // Binary frames are refused with an error frame too.
    ws.send(Ws::binary(vec![1u8, 2, 3])).await.expect("send");
    let v = answer(&mut ws).await;
    assert_eq!(
        (v["type"].as_str(), v["code"].as_str()),
        (Some("error"), Some("invalid"))
    );
    // The session still works: application-level ping.
    ws.send(Ws::text(json!({"id": "p", "type": "ping"}).to_string()))
        .await
        .expect("send");
    assert_eq!(answer(&mut ws).await, json!({"type": "pong", "id": "p"}));
    let after: i64 = sqlx::query_scalar("SELECT count(*) FROM messages")
        .fetch_one(&env.db)
        .await
        .expect("count");
    assert_eq!(before, after, "no refused message was stored");

    // An oversize frame closes this session with 1009 ...
    ws.send(Ws::text(
        json!({"id": "big", "type": "ping", "pad": "x".repeat(10_000)}).to_string(),
    ))
    .await
    .expect("send");
    let mut code = None;
    loop {
        match next(&mut ws).await {
            Ok(_) => continue,
            Err(c) => {
                code = code.or(c);
                break;
            }
        }
    }
    assert_eq!(code, Some(close::TOO_BIG));
    // ... and everyone else is still served.
    let m: parley_core::protocol::Message = c2
        .call(Request::Send {
            conversation_id: conv.id,
            message: NewMessage {
                text: "still up".into(),
                ..Default::default()
            },
        })
        .await
        .expect("send");
    assert!(m.seq > 0);
}

#[actix_web::test]
async fn bad_expired_and_locked_credentials_are_closed_with_4003() {
    let (env, server, ib, t1, u1, _u2, conv, c2) = setup().await;
    let app = env.app().await;

    // Unknown token, in the header and in the query string.
    for query in [false, true] {
        let mut ws = raw(&server, Some("pst_bogus"), query).await;
        let v = next(&mut ws).await.expect("error frame");
        assert_eq!(
            (v["type"].as_str(), v["code"].as_str()),
            (Some("error"), Some("access_denied"))
        );
        assert_eq!(
            next(&mut ws).await.expect_err("closed"),
            Some(close::ACCESS_DENIED)
        );
    }
    // Token in a first auth frame: the good one works (and answers with its id).
    let mut ws = raw(&server, None, false).await;
    ws.send(Ws::text(
        json!({"id": "1", "type": "auth", "token": t1}).to_string(),
    ))
    .await
    .expect("send");
    let v = next(&mut ws).await.expect("result");
    assert_eq!(
        (v["type"].as_str(), v["id"].as_str()),
        (Some("result"), Some("1"))
    );
    assert_eq!(next(&mut ws).await.expect("ready")["type"], "ready");
    drop(ws);
    // A first frame that is not auth.
    let mut ws = raw(&server, None, false).await;
    ws.send(Ws::text(json!({"id": "1", "type": "ping"}).to_string()))
        .await
        .expect("send");
    let v = next(&mut ws).await.expect("error");
    assert_eq!(v["code"], "unauthenticated");
    assert_eq!(
        next(&mut ws).await.expect_err("closed"),
        Some(close::UNAUTHENTICATED)
    );

    // Expired token.
    sqlx::query("UPDATE session_tokens SET expires_at = now() - interval '1 second' WHERE token_hash = sha256($1::bytea)")
        .bind(t1.as_bytes())
        .execute(&env.db)
        .await
        .expect("expire");
    let mut ws = raw(&server, Some(&t1), false).await;
    assert_eq!(next(&mut ws).await.expect("error")["code"], "access_denied");
    assert_eq!(
        next(&mut ws).await.expect_err("closed"),
        Some(close::ACCESS_DENIED)
    );

    // Locked user: a fresh token stops working once the user is locked,
    // and so does a ticket taken before.
    let t1b = token(&app, &ib, &u1).await;
    let ticket = ws_ticket(&app, &t1b).await;
    let r = call(
        &app,
        "POST",
        &format!("/v1/infobases/{}/users", ib.id),
        &ib.auth(),
        json_body(json!({"external_id": "u1", "name": "u1", "locked": true})),
    )
    .await;
    assert_eq!(r.body["user"]["locked"], true);
    let mut ws = raw(&server, Some(&ticket), true).await;
    assert_eq!(next(&mut ws).await.expect("error")["code"], "access_denied");
    assert_eq!(
        next(&mut ws).await.expect_err("closed"),
        Some(close::ACCESS_DENIED)
    );

    // The others are unaffected.
    let m: parley_core::protocol::Message = c2
        .call(Request::Send {
            conversation_id: conv.id,
            message: NewMessage {
                text: "fine".into(),
                ..Default::default()
            },
        })
        .await
        .expect("send");
    assert!(m.seq > 0);
    let _: Option<Event> = None;
}

#[actix_web::test]
async fn connection_limits_per_user_are_refused_with_4009() {
    let env = TestEnv::new(|c| c.ws.max_connections_per_user = 2).await;
    let (server, t) = one_user(&env, "limit").await;
    let _c1 = client(&server, &t).await;
    let _c2 = client(&server, &t).await;
    let mut ws = raw(&server, Some(&t), false).await;
    let v = next(&mut ws).await.expect("error frame");
    assert_eq!(v["code"], "rate_limited");
    assert!(v["message"]
        .as_str()
        .is_some_and(|m| m.contains("max_connections_per_user")));
    assert_eq!(
        next(&mut ws).await.expect_err("closed"),
        Some(close::TOO_MANY_CONNECTIONS)
    );
}

/// One tenant fills its share of a node, not the node: the next session of
/// that subscriber (from any of its infobases) is refused with 4009 while
/// another subscriber still gets in.
#[actix_web::test]
async fn a_subscriber_cannot_exhaust_the_sessions_of_another() {
    let env = TestEnv::new(|c| {
        c.ws.max_connections = 6;
        c.ws.max_connections_per_subscriber = 3;
        c.ws.max_connections_per_infobase = 2;
    })
    .await;
    let app = env.app().await;
    let greedy = register(&app, &email("greedy"), "Greedy").await;
    let sibling = sibling(&app, &env, &greedy, "Greedy too").await;
    let other = register(&app, &email("victim"), "Victim").await;
    let mut tokens = Vec::new();
    for i in 0..3 {
        let u = user(&app, &greedy, &format!("g{i}")).await;
        tokens.push(token(&app, &greedy, &u).await);
    }
    let s = user(&app, &sibling, "s").await;
    let ts = token(&app, &sibling, &s).await;
    let v = user(&app, &other, "v").await;
    let tv = token(&app, &other, &v).await;
    let server = env.server().await;

    let _g0 = client(&server, &tokens[0]).await;
    let _g1 = client(&server, &tokens[1]).await;
    // The infobase's share is full.
    let mut ws = raw(&server, Some(&tokens[2]), false).await;
    let e = next(&mut ws).await.expect("error frame");
    assert_eq!(e["code"], "rate_limited");
    assert!(
        e["message"]
            .as_str()
            .is_some_and(|m| m.contains("max_connections_per_infobase")),
        "{e}"
    );
    assert_eq!(
        next(&mut ws).await.expect_err("closed"),
        Some(close::TOO_MANY_CONNECTIONS)
    );
    // The sibling infobase fills the subscriber's share…
    let _s0 = client(&server, &ts).await;
    let mut ws = raw(&server, Some(&ts), false).await;
    let e = next(&mut ws).await.expect("error frame");
    assert!(
        e["message"]
            .as_str()
            .is_some_and(|m| m.contains("max_connections_per_subscriber")),
        "{e}"
    );
    assert_eq!(
        next(&mut ws).await.expect_err("closed"),
        Some(close::TOO_MANY_CONNECTIONS)
    );
    // …and the other subscriber is not touched.
    let cv = client(&server, &tv).await;
    cv.call::<Value>(Request::Ping).await.expect("served");
}

/// A session on a server that pings every second and closes a session
/// silent for 2 s.
async fn heartbeat_session() -> (TestEnv, TestServer, Sock) {
    let env = TestEnv::new(|c| {
        c.ws.heartbeat_secs = 1;
        c.ws.heartbeat_timeout_secs = 2;
    })
    .await;
    let (server, t) = one_user(&env, "hb").await;
    let ws = raw(&server, Some(&t), false).await;
    (env, server, ws)
}

#[actix_web::test]
async fn a_silent_client_is_closed_by_the_heartbeat() {
    let (_env, _server, mut ws) = heartbeat_session().await;
    // Not reading means not answering pings either.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut code = None;
    loop {
        match next(&mut ws).await {
            Ok(_) => continue,
            Err(c) => {
                code = code.or(c);
                break;
            }
        }
    }
    assert_eq!(code, Some(close::IDLE));
}

#[actix_web::test]
async fn a_client_that_answers_pings_stays_past_the_heartbeat_timeout() {
    let (_env, _server, mut ws) = heartbeat_session().await;
    // Reading answers each ping with a pong (tungstenite does, on read).
    let mut pings = 0;
    let until = tokio::time::Instant::now() + Duration::from_millis(4500);
    while let Ok(frame) = tokio::time::timeout_at(until, ws.next()).await {
        match frame {
            Some(Ok(Ws::Ping(_))) => pings += 1,
            Some(Ok(Ws::Close(f))) => panic!("closed while answering pings: {f:?}"),
            Some(Ok(_)) => {}
            Some(Err(e)) => panic!("connection failed: {e}"),
            None => panic!("connection ended"),
        }
    }
    assert!(pings >= 3, "a ping a second for 4.5 s, got {pings}");
    ws.send(Ws::text(json!({"id": "p", "type": "ping"}).to_string()))
        .await
        .expect("write");
    assert_eq!(answer(&mut ws).await["type"], "pong", "still served");
}

#[actix_web::test]
async fn the_client_reconnects_and_resumes_by_itself() {
    let (env, server, _ib, t1, _u1, u2, conv, c2) = setup().await;
    let c1 = client(&server, &t1).await;
    let first: parley_core::protocol::Message = c2
        .call(Request::Send {
            conversation_id: conv.id,
            message: NewMessage {
                text: "one".into(),
                ..Default::default()
            },
        })
        .await
        .expect("send");
    // c1 sees it, so it knows the seq to resume from.
    loop {
        match c1.next_event(Duration::from_secs(10)).await.expect("event") {
            Event::MessageCreated { message, .. } if message.id == first.id => break,
            _ => {}
        }
    }
    let u1: UserId = c1.ready().expect("ready").user_id;
    // The server cuts c1 off as if its queue had overflowed ...
    for h in env.bus.hub().all() {
        if h.user == u1 {
            h.overflow.trip();
        }
    }
    // ... while messages keep coming.
    let mut sent = Vec::new();
    for i in 0..20 {
        let m: parley_core::protocol::Message = c2
            .call(Request::Send {
                conversation_id: conv.id,
                message: NewMessage {
                    text: format!("m{i}"),
                    ..Default::default()
                },
            })
            .await
            .expect("send");
        sent.push(m.id);
    }
    let mut got = Vec::new();
    while got.len() < sent.len() {
        match c1.next_event(Duration::from_secs(10)).await {
            Some(Event::MessageCreated { message, .. }) => got.push(message.id),
            Some(_) => {}
            None => panic!("got {} of {}", got.len(), sent.len()),
        }
    }
    assert_eq!(got, sent, "every message once, in order");
    assert!(
        c1.close_codes().contains(&close::QUEUE_OVERFLOW),
        "{:?}",
        c1.close_codes()
    );
    assert_eq!(c1.state(), parley_client::State::Live);
    let _ = u2;
}

/// Takes a WebSocket ticket with a session token.
async fn ws_ticket<S, B>(app: &S, token: &str) -> String
where
    S: actix_web::dev::Service<
        actix_http::Request,
        Response = actix_web::dev::ServiceResponse<B>,
        Error = actix_web::Error,
    >,
    B: actix_web::body::MessageBody,
{
    let r = call(
        app,
        "POST",
        "/v1/ws-tickets",
        &Auth::Token(token.to_owned()),
        None,
    )
    .await;
    assert_eq!(r.status, 201, "{r:?}");
    r.body["ticket"].as_str().expect("ticket").to_owned()
}

/// A browser opens its WebSocket with a ticket: short-lived, single use,
/// never the session token; a session token in the URL is not read at all.
#[actix_web::test]
async fn a_ticket_opens_one_session_once_and_a_token_in_the_url_is_ignored() {
    let env = TestEnv::default().await;
    let app = env.app().await;
    let ib = register(&app, &email("ticket"), "T").await;
    let u = user(&app, &ib, "u").await;
    let t = token(&app, &ib, &u).await;
    let server = env.server().await;

    let ticket = ws_ticket(&app, &t).await;
    assert!(ticket.starts_with("pwt_"), "{ticket}");
    assert!(!ticket.contains(&t));
    let mut ws = raw(&server, Some(&ticket), true).await;
    let ready = next(&mut ws).await.expect("ready");
    assert_eq!(ready["type"], "ready", "{ready}");
    assert_eq!(ready["user_id"], u.as_str());
    // Used up: the same ticket opens nothing.
    let mut again = raw(&server, Some(&ticket), true).await;
    assert_eq!(
        next(&mut again).await.expect("error")["code"],
        "access_denied"
    );
    assert_eq!(
        next(&mut again).await.expect_err("closed"),
        Some(close::ACCESS_DENIED)
    );
    // Expired before use.
    let late = ws_ticket(&app, &t).await;
    sqlx::query("UPDATE ws_tickets SET expires_at = now() - interval '1 second'")
        .execute(&env.db)
        .await
        .expect("expire");
    let mut ws2 = raw(&server, Some(&late), true).await;
    assert_eq!(
        next(&mut ws2).await.expect("error")["code"],
        "access_denied"
    );
    // The session token in the URL is not a credential: the server waits for
    // an auth frame.
    let url = format!("{}?token={t}", server.ws_url());
    let (mut ws3, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("connect");
    ws3.send(Ws::text(json!({"id": "1", "type": "ping"}).to_string()))
        .await
        .expect("send");
    assert_eq!(
        next(&mut ws3).await.expect("error")["code"],
        "unauthenticated"
    );
    // No ticket without a token.
    call(&app, "POST", "/v1/ws-tickets", &Auth::None, None)
        .await
        .expect_error(401, "unauthenticated");
    drop(ws);
}

/// Writes `request` (and whatever follows it) on a raw connection and reads
/// until the server closes or `until` appears in what was read.
async fn raw_http(server: &TestServer, bytes: &[u8], until: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    conn.write_all(bytes).await.expect("write");
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains(until) {
        match tokio::time::timeout(Duration::from_secs(10), conn.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => got.extend_from_slice(&chunk[..n]),
            Err(_) => panic!(
                "nothing more within 10 s: {}",
                String::from_utf8_lossy(&got)
            ),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

fn upgrade_request(path: &str, upgrade: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: parley\r\nConnection: Upgrade\r\nUpgrade: {upgrade}\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
}

/// The answer to an upgrade request alone, read until `until`.
async fn upgrade_answer(server: &TestServer, path: &str, upgrade: &str, until: &str) -> String {
    raw_http(server, upgrade_request(path, upgrade).as_bytes(), until).await
}

/// A masked client text frame.
fn masked_text(text: &str) -> Vec<u8> {
    let mask = [7u8, 1, 9, 3];
    let bytes = text.as_bytes();
    assert!(bytes.len() < 126);
    let mut out = vec![0x81, 0x80 | bytes.len() as u8];
    out.extend_from_slice(&mask);
    out.extend(bytes.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// Upgrades are served outside actix-web's routes: each refusal still has
/// its status and error body, and a first frame sent in the same packet as
/// the upgrade request is not lost.
#[actix_web::test]
async fn upgrades_are_answered_on_the_raw_connection_and_early_frames_are_kept() {
    let (env, server, _ib, t1, u1, _u2, _conv, _c2) = setup().await;

    let wrong_path = upgrade_answer(&server, "/nope", "websocket", "}").await;
    assert!(wrong_path.starts_with("HTTP/1.1 404"), "{wrong_path}");
    assert!(wrong_path.contains("\"not_found\""), "{wrong_path}");

    let not_ws = upgrade_answer(&server, "/ws", "h2c", "}").await;
    assert!(not_ws.starts_with("HTTP/1.1 400"), "{not_ws}");
    assert!(not_ws.contains("expected a WebSocket upgrade"), "{not_ws}");

    let plain = raw_http(
        &server,
        b"GET /ws HTTP/1.1\r\nHost: parley\r\nConnection: close\r\n\r\n",
        "}",
    )
    .await;
    assert!(plain.starts_with("HTTP/1.1 400"), "{plain}");
    assert!(plain.contains("\"invalid\""), "{plain}");

    // The upgrade and the auth frame in one write.
    let mut both = upgrade_request("/ws", "websocket").into_bytes();
    let auth = format!(r#"{{"id":"a1","type":"auth","token":"{t1}"}}"#);
    assert!(auth.len() < 126);
    both.extend(masked_text(&auth));
    let got = raw_http(&server, &both, "\"type\":\"ready\"").await;
    assert!(
        got.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
        "{got}"
    );
    assert!(
        got.contains("sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"),
        "{got}"
    );
    assert!(
        got.contains("\"id\":\"a1\""),
        "the auth frame was answered: {got}"
    );
    assert!(got.contains(&u1), "{got}");

    // A node shutting down sends newcomers elsewhere.
    env.state
        .draining
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let draining = upgrade_answer(&server, "/ws", "websocket", "}").await;
    assert!(draining.starts_with("HTTP/1.1 503"), "{draining}");
    assert!(draining.contains("\"unavailable\""), "{draining}");
}

/// Connections that never authenticate are bounded too: beyond twice
/// `ws.max_connections` an upgrade is refused before it happens.
#[actix_web::test]
async fn unauthenticated_connections_are_capped_at_twice_max_connections() {
    let env = TestEnv::new(|c| c.ws.max_connections = 1).await;
    let server = env.server().await;
    // Two upgraded connections that send nothing (each waits for its auth
    // frame).
    let _a = raw(&server, None, false).await;
    let _b = raw(&server, None, false).await;
    let refused = upgrade_answer(&server, "/ws", "websocket", "}").await;
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    assert!(refused.contains("ws.max_connections"), "{refused}");
    // One gone, one may come.
    drop(_a);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let got = upgrade_answer(&server, "/ws", "websocket", "\r\n\r\n").await;
        if got.starts_with("HTTP/1.1 101") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{got}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
