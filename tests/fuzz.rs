//! Fuzzing on stable Rust: generated WebSocket frames against a real session
//! and generated bodies against every REST route that takes one, for a
//! bounded time (`PARLEY_FUZZ_SECS`, default 10; `scripts/test.sh` gives 60,
//! split between the two). The server must answer every frame and request
//! with a result or a documented error: no 5xx, no dropped socket, no close
//! other than a documented one.
//!
//! Inputs are built by proptest strategies from the protocol's own names
//! (frame types, field names, real and foreign ids) mixed with random
//! values and raw garbage, so most inputs reach the handlers instead of
//! stopping at the JSON parser. A failure prints the input and the seed
//! (`PARLEY_FUZZ_SEED` replays it).

use futures_util::{SinkExt, StreamExt};
use parley_core::protocol::Request;
use parley_tests::serde_json::{json, Map, Value};
use parley_tests::*;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message as Ws;

type Sock =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Field names the protocol and the REST bodies use, so that generated
/// objects often have the right keys with the wrong values.
const FIELDS: &[&str] = &[
    "id",
    "type",
    "token",
    "conversation_id",
    "conversations",
    "message_id",
    "user_id",
    "user_ids",
    "members",
    "title",
    "text",
    "data",
    "actions",
    "recipients",
    "attachments",
    "idempotency_key",
    "seq",
    "before",
    "after",
    "limit",
    "cursor",
    "kind",
    "hidden",
    "displayed",
    "contextual",
    "member",
    "object_ref",
    "key",
    "infobase_id",
    "value",
    "caption",
    "external_id",
    "name",
    "full_name",
    "email",
    "phone",
    "picture",
    "bot",
    "locked",
    "ttl_seconds",
    "author_id",
    "size",
    "content_type",
    "sha256",
    "code",
    "infobase_name",
    "since",
];

fn seconds() -> u64 {
    std::env::var("PARLEY_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10)
}

fn runner() -> (TestRunner, u64) {
    let seed: u64 = std::env::var("PARLEY_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(7);
            t ^ u64::from(std::process::id())
        });
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &bytes);
    (TestRunner::new_with_rng(Config::default(), rng), seed)
}

fn sample<T: std::fmt::Debug>(r: &mut TestRunner, s: &impl Strategy<Value = T>) -> T {
    s.new_tree(r).expect("a value").current()
}

/// A JSON value: scalars of every kind (ids among them), nested a little.
fn value(ids: Vec<String>) -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        prop_oneof![
            Just(0i64),
            Just(-1),
            Just(1),
            Just(i64::MAX),
            Just(i64::MIN)
        ]
        .prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        "\\PC{0,24}".prop_map(Value::from),
        "[a-z._/@-]{0,12}".prop_map(Value::from),
        proptest::sample::select(ids).prop_map(Value::from),
        (0usize..70_000).prop_map(|n| Value::from("x".repeat(n))),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(field(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
    .boxed()
}

fn field() -> BoxedStrategy<String> {
    prop_oneof![
        4 => proptest::sample::select(FIELDS).prop_map(str::to_owned),
        1 => "\\PC{0,8}",
    ]
    .boxed()
}

/// An object of known and unknown fields.
fn object(ids: Vec<String>) -> BoxedStrategy<Map<String, Value>> {
    proptest::collection::btree_map(field(), value(ids), 0..7)
        .prop_map(|m| m.into_iter().collect())
        .boxed()
}

/// Text sent as a frame or a body: mostly JSON objects, sometimes garbage
/// or JSON cut short.
fn text(base: BoxedStrategy<Value>) -> BoxedStrategy<String> {
    prop_oneof![
        8 => base.clone().prop_map(|v| v.to_string()),
        1 => base.prop_flat_map(|v| {
            let s = v.to_string();
            let n = s.len();
            (Just(s), 0..=n)
        })
        .prop_map(|(s, cut)| s.chars().take(cut).collect()),
        1 => "\\PC{0,64}",
    ]
    .boxed()
}

/// Valid frames of every type, built on the fixture's ids: mutated, they
/// reach the handlers' own checks instead of stopping at the parser.
fn templates(w: &World) -> Vec<Value> {
    let (g, a, b, e, f) = (&w.ids[3], &w.ids[0], &w.ids[1], &w.ids[2], &w.ids[4]);
    let ib = &w.ib.id;
    vec![
        json!({"id": "1", "type": "ping"}),
        json!({"id": "1", "type": "resume", "conversations": {g: 0, f: 1}}),
        json!({"id": "1", "type": "conversations.list", "limit": 5, "kind": "group", "displayed": true}),
        json!({"id": "1", "type": "conversation.get", "conversation_id": g}),
        json!({"id": "1", "type": "conversation.create", "title": "t", "members": [b]}),
        json!({"id": "1", "type": "dialog.open", "user_id": b}),
        json!({"id": "1", "type": "context.get", "infobase_id": ib, "object_ref": "Doc/1"}),
        json!({"id": "1", "type": "members.add", "conversation_id": g, "user_ids": [e]}),
        json!({"id": "1", "type": "members.remove", "conversation_id": g, "user_id": b}),
        json!({"id": "1", "type": "message.send", "conversation_id": g, "text": "hi",
               "data": {"k": 1}, "actions": [{"value": "v", "caption": "c"}], "recipients": [a],
               "idempotency_key": "k1", "attachments": []}),
        json!({"id": "1", "type": "message.edit", "conversation_id": g, "message_id": a, "text": "x"}),
        json!({"id": "1", "type": "message.delete", "conversation_id": g, "message_id": a}),
        json!({"id": "1", "type": "history", "conversation_id": g, "before": 10, "limit": 5}),
        json!({"id": "1", "type": "read", "conversation_id": g, "seq": 1}),
        json!({"id": "1", "type": "typing", "conversation_id": g}),
        json!({"id": "1", "type": "presence.get", "user_ids": [a, b, e]}),
        json!({"id": "1", "type": "users.get", "user_ids": [a, e]}),
        json!({"id": "1", "type": "conversation.leave", "conversation_id": f}),
    ]
}

/// A template with one to three fields replaced, removed or added.
fn mutated(templates: Vec<Value>, ids: Vec<String>) -> BoxedStrategy<Value> {
    let edit = (any::<u8>(), field(), value(ids));
    (
        proptest::sample::select(templates),
        proptest::collection::vec(edit, 1..4),
    )
        .prop_map(|(t, edits)| {
            let mut obj = t.as_object().cloned().unwrap_or_default();
            for (how, name, v) in edits {
                let keys: Vec<String> = obj.keys().cloned().collect();
                let existing = keys[usize::from(how) % keys.len().max(1)].clone();
                match how % 3 {
                    0 => {
                        obj.insert(existing, v);
                    }
                    1 if existing != "type" => {
                        obj.remove(&existing);
                    }
                    _ => {
                        obj.insert(name, v);
                    }
                }
            }
            Value::Object(obj)
        })
        .boxed()
}

/// A request frame: a known type (mostly) with generated fields.
fn frame(ids: Vec<String>) -> BoxedStrategy<Value> {
    // `logout` revokes the fuzzer's own token: it is tested elsewhere.
    let types: Vec<&str> = Request::TYPES
        .iter()
        .copied()
        .filter(|t| *t != "logout")
        .collect();
    let ty = prop_oneof![
        6 => proptest::sample::select(types).prop_map(Value::from),
        1 => value(ids.clone()),
    ];
    let id = prop_oneof![
        6 => "[a-z0-9]{1,8}".prop_map(Value::from),
        1 => value(ids.clone()),
    ];
    (id, ty, object(ids))
        .prop_map(|(id, ty, mut rest)| {
            rest.insert("id".into(), id);
            rest.insert("type".into(), ty);
            Value::Object(rest)
        })
        .boxed()
}

async fn open(server: &TestServer, token: &str) -> Sock {
    let mut req = server.ws_url().into_client_request().expect("request");
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("header"),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("connect");
    // The `ready` frame.
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(Ws::Text(t)))) if t.contains("\"ready\"") => return ws,
            Ok(Some(Ok(_))) => continue,
            other => panic!("no ready frame: {other:?}"),
        }
    }
}

/// What the server did with one frame.
enum Answer {
    /// A `result` / `pong` (true) or an `error` frame (false).
    Frame(bool),
    /// A close with this code.
    Closed(Option<u16>),
    /// Nothing within 20 s.
    Silence,
}

async fn answer(ws: &mut Sock) -> Answer {
    loop {
        match tokio::time::timeout(Duration::from_secs(20), ws.next()).await {
            Err(_) => return Answer::Silence,
            Ok(Some(Ok(Ws::Text(t)))) => {
                let v: Value = serde_json::from_str(&t).expect("server frames are JSON");
                match v["type"].as_str() {
                    Some("result") | Some("pong") => return Answer::Frame(true),
                    Some("error") => {
                        let code = v["code"].as_str().unwrap_or("");
                        assert!(
                            ErrorCodeName::known(code),
                            "an error frame with an unknown code: {v}"
                        );
                        assert_ne!(code, "internal", "an internal error: {v}");
                        return Answer::Frame(false);
                    }
                    _ => continue, // events, pongs of other frames
                }
            }
            Ok(Some(Ok(Ws::Close(c)))) => {
                return Answer::Closed(c.map(|CloseFrame { code, .. }| u16::from(code)))
            }
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(_))) | Ok(None) => return Answer::Closed(None),
        }
    }
}

struct ErrorCodeName;
impl ErrorCodeName {
    fn known(code: &str) -> bool {
        parley_core::ErrorCode::ALL
            .iter()
            .any(|c| c.as_str() == code)
    }
}

/// Shared fixture: two users in a group, a foreign subscriber's group.
struct World {
    env: TestEnv,
    ib: Ib,
    alice: String,
    ids: Vec<String>,
}

async fn world(frames_limit: bool) -> World {
    let env = TestEnv::new(|c| {
        if !frames_limit {
            // The fuzzer sends as fast as answers come; the flood limit is
            // tested elsewhere and would only shorten the run here.
            c.ws.frames_per_sec = 100_000;
            c.ws.frames_burst = 100_000;
            c.limits.messages_per_minute = 1_000_000;
        }
        c.registration.requests_per_ip_per_hour = 1_000_000;
    })
    .await;
    let app = env.app().await;
    let ib = register(&app, &email("fuzz"), "Fuzz").await;
    let alice = user(&app, &ib, "alice").await;
    let bob = user(&app, &ib, "bob").await;
    let other = register(&app, &email("fuzz-other"), "Other").await;
    let eve = user(&app, &other, "eve").await;
    let r = call(
        &app,
        "POST",
        &format!("/v1/infobases/{}/conversations", ib.id),
        &ib.auth(),
        json_body(json!({"title": "g", "members": [alice, bob]})),
    )
    .await;
    let group = r.body["id"].as_str().expect("group").to_owned();
    let r = call(
        &app,
        "POST",
        &format!("/v1/infobases/{}/conversations", other.id),
        &other.auth(),
        json_body(json!({"title": "foreign", "members": [eve]})),
    )
    .await;
    let foreign = r.body["id"].as_str().expect("foreign").to_owned();
    let ids = vec![
        alice.clone(),
        bob,
        eve,
        group,
        foreign,
        ib.id.clone(),
        other.id.clone(),
        uuid::Uuid::new_v4().to_string(),
        "not-a-uuid".into(),
        String::new(),
    ];
    World {
        env,
        ib,
        alice,
        ids,
    }
}

/// Closes the fuzzer may see: the documented answers to bad frames.
fn acceptable_close(code: Option<u16>) -> bool {
    // 1009 too big, 4009 too many frames, 1002 broken framing (garbage).
    matches!(code, Some(1009) | Some(4009) | Some(1002))
}

#[actix_web::test]
async fn generated_frames_get_an_answer_and_never_break_a_session() {
    let w = world(false).await;
    let app = w.env.app().await;
    let server = w.env.server().await;
    let token = token(&app, &w.ib, &w.alice).await;
    let (mut r, seed) = runner();
    let strategy = text(
        prop_oneof![
            1 => frame(w.ids.clone()),
            3 => mutated(templates(&w), w.ids.clone()),
        ]
        .boxed(),
    );
    let deadline = Instant::now() + Duration::from_secs(seconds().div_ceil(2));
    let mut ws = open(&server, &token).await;
    let (mut sent, mut carried_out) = (0u64, 0u64);
    while Instant::now() < deadline {
        let input: String = sample(&mut r, &strategy);
        if ws.send(Ws::text(input.clone())).await.is_err() {
            panic!("seed {seed}: the socket broke before sending {input:?}");
        }
        sent += 1;
        match answer(&mut ws).await {
            Answer::Frame(ok) => carried_out += u64::from(ok),
            Answer::Closed(code) if acceptable_close(code) => ws = open(&server, &token).await,
            Answer::Closed(code) => {
                panic!("seed {seed}: closed with {code:?} after {input:?}")
            }
            Answer::Silence => panic!("seed {seed}: no answer within 20 s to {input:?}"),
        }
    }
    // Still served.
    ws.send(Ws::text(json!({"id": "last", "type": "ping"}).to_string()))
        .await
        .expect("send");
    assert!(matches!(answer(&mut ws).await, Answer::Frame(true)));
    eprintln!("fuzz: {sent} frames ({carried_out} carried out, the rest refused), seed {seed}");
    drop(ws);
    server.stop().await;
}

#[actix_web::test]
async fn generated_bodies_get_a_clear_answer_on_every_route() {
    let w = world(true).await;
    let app = w.env.app().await;
    let token = token(&app, &w.ib, &w.alice).await;
    let (mut r, seed) = runner();
    let ib = w.ib.id.clone();
    let ids = w.ids.clone();
    let group = ids[3].clone();
    // (method, path, who)
    let routes: Vec<(&str, String, u8)> = vec![
        ("POST", "/v1/registration/code".into(), 0),
        ("POST", "/v1/registration/confirm".into(), 0),
        ("POST", format!("/v1/infobases/{ib}/users"), 1),
        (
            "POST",
            format!("/v1/infobases/{ib}/users/{}/tokens", w.alice),
            1,
        ),
        ("POST", format!("/v1/infobases/{ib}/conversations"), 1),
        ("PUT", format!("/v1/infobases/{ib}/contexts"), 1),
        (
            "POST",
            format!("/v1/infobases/{ib}/conversations/{group}/members"),
            1,
        ),
        (
            "POST",
            format!("/v1/infobases/{ib}/conversations/{group}/messages"),
            1,
        ),
        (
            "POST",
            format!("/v1/infobases/{ib}/users/{}/notifications", w.alice),
            1,
        ),
        ("POST", "/v1/files".into(), 2),
        ("POST", "/v1/ws-tickets".into(), 2),
    ];
    // Query strings of the lists.
    let gets: Vec<(String, u8)> = vec![
        (format!("/v1/infobases/{ib}/users"), 1),
        (format!("/v1/infobases/{ib}/conversations"), 1),
        (
            format!("/v1/infobases/{ib}/conversations/{group}/messages"),
            1,
        ),
    ];
    let body = text(object(ids.clone()).prop_map(Value::Object).boxed());
    let query = proptest::collection::vec(
        (
            field(),
            prop_oneof!["\\PC{0,12}", proptest::sample::select(ids.clone())],
        ),
        0..4,
    );
    let deadline = Instant::now() + Duration::from_secs(seconds().div_ceil(2));
    let mut n = 0u64;
    while Instant::now() < deadline {
        n += 1;
        let (method, path, who, payload) = if n % 4 == 0 {
            let (path, who) = &gets[(n as usize / 4) % gets.len()];
            let q: Vec<(String, String)> = sample(&mut r, &query);
            let qs: Vec<String> = q
                .iter()
                .map(|(k, v)| {
                    let enc = |s: &str| {
                        s.bytes()
                            .map(|b| {
                                if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                                    char::from(b).to_string()
                                } else {
                                    format!("%{b:02X}")
                                }
                            })
                            .collect::<String>()
                    };
                    format!("{}={}", enc(k), enc(v))
                })
                .collect();
            ("GET", format!("{path}?{}", qs.join("&")), *who, None)
        } else {
            let (m, p, who) = &routes[n as usize % routes.len()];
            let b: String = sample(&mut r, &body);
            (*m, p.clone(), *who, Some(b))
        };
        let auth = match who {
            0 => Auth::None,
            1 => w.ib.auth(),
            _ => Auth::Token(token.clone()),
        };
        let res = call(
            &app,
            method,
            &path,
            &auth,
            payload.clone().map(|b| Body::Raw(b.into_bytes())),
        )
        .await;
        let status = res.status.as_u16();
        assert!(
            status < 500,
            "seed {seed}: {method} {path} {payload:?} -> {status} {:?}",
            res.body
        );
        if status >= 400 {
            let code = res.body["code"].as_str().unwrap_or("");
            assert!(
                ErrorCodeName::known(code) && res.body["message"].as_str().is_some(),
                "seed {seed}: {method} {path} {payload:?} -> {status} without code: {:?}",
                res.body
            );
        }
    }
    eprintln!("fuzz: {n} requests, seed {seed}");
}
