//! Shared helpers of the real-time tests: connecting, waiting for events,
//! sending, and the usual setups (two users of two infobases; a group).

use crate::{client, email, register, sibling, token, user, Ib, TestEnv, TestServer};
use parley_client::{Client, Options};
use parley_core::protocol::{Conversation, Event, Message, MessagePage, NewMessage, Request};
use parley_core::{ConversationId, UserId};
use std::time::Duration;

/// Longest wait for one expected event.
pub const WAIT: Duration = Duration::from_secs(20);

/// Connects a client with the test timeouts (any URL: a node, nginx, a proxy).
pub async fn connect(url: &str, token: &str) -> Client {
    let mut o = Options::new(url, token);
    o.request_timeout = Duration::from_secs(20);
    o.max_backoff = Duration::from_millis(300);
    Client::connect(o).await.expect("connect")
}

/// Waits for the first event that `pick` accepts, skipping others.
pub async fn expect<T>(c: &Client, what: &str, mut pick: impl FnMut(&Event) -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let ev = c
            .next_event(left)
            .await
            .unwrap_or_else(|| panic!("no {what} event within {WAIT:?}"));
        if let Some(t) = pick(&ev) {
            return t;
        }
    }
}

/// Waits for the first event `pick` says yes to.
pub async fn expect_event(c: &Client, what: &str, mut pick: impl FnMut(&Event) -> bool) {
    expect(c, what, |e| pick(e).then_some(())).await
}

/// Collects `message.created` of `conv` until `n` arrived.
pub async fn collect(c: &Client, conv: ConversationId, n: usize) -> Vec<Message> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT * 3;
    while got.len() < n {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match c.next_event(left).await {
            Some(Event::MessageCreated {
                conversation_id,
                message,
                ..
            }) if conversation_id == conv => got.push(message),
            Some(_) => {}
            None => panic!("only {} of {n} messages arrived", got.len()),
        }
    }
    got
}

pub fn uid(s: &str) -> UserId {
    s.parse().expect("user id")
}

pub fn text(t: &str) -> NewMessage {
    NewMessage {
        text: t.into(),
        ..Default::default()
    }
}

pub async fn send(c: &Client, conv: ConversationId, m: NewMessage) -> Message {
    c.call(Request::Send {
        conversation_id: conv,
        message: m,
    })
    .await
    .expect("send")
}

/// Creates a group as the client's user with these other members.
pub async fn group(c: &Client, title: &str, members: &[UserId]) -> Conversation {
    c.call(Request::CreateGroup {
        title: title.into(),
        members: members.to_vec(),
    })
    .await
    .expect("group")
}

/// Two users of two infobases of one subscriber, connected.
pub struct Pair {
    pub env: TestEnv,
    pub server: TestServer,
    pub a: Ib,
    pub b: Ib,
    pub alice: UserId,
    pub bob: UserId,
    pub ca: Client,
    pub cb: Client,
}

pub async fn pair() -> Pair {
    pair_with(|_| {}).await
}

pub async fn pair_with(tweak: impl FnOnce(&mut parley_server::config::Config)) -> Pair {
    pair_in(TestEnv::new(tweak).await).await
}

/// Two connected users, as [`pair`], in a given environment.
pub async fn pair_in(env: TestEnv) -> Pair {
    let app = env.app().await;
    let a = register(&app, &email("rt-a"), "A").await;
    let b = sibling(&app, &env, &a, "B").await;
    let alice = user(&app, &a, "alice").await;
    let bob = user(&app, &b, "bob").await;
    let ta = token(&app, &a, &alice).await;
    let tb = token(&app, &b, &bob).await;
    let server = env.server().await;
    let ca = client(&server, &ta).await;
    let cb = client(&server, &tb).await;
    Pair {
        alice: uid(&alice),
        bob: uid(&bob),
        env,
        server,
        a,
        b,
        ca,
        cb,
    }
}

/// The next `message.created` events of `conv` are exactly `ids`, in order
/// (a lost one fails by timeout, a duplicate by mismatch); then a sentinel
/// sent by `sender` is the very next one (no late duplicate).
pub async fn receive_exactly(
    c: &Client,
    sender: &Client,
    conv: ConversationId,
    ids: &[parley_core::MessageId],
) {
    let got: Vec<_> = collect(c, conv, ids.len())
        .await
        .into_iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(got, ids, "each message once, in order");
    let sentinel = send(sender, conv, text("sentinel")).await;
    let next = collect(c, conv, 1).await;
    assert_eq!(next[0].id, sentinel.id, "nothing delivered twice");
}

/// The first page of a conversation's history as `c` sees it.
pub async fn history(c: &Client, conv: ConversationId) -> Vec<Message> {
    let page: MessagePage = c
        .call(Request::History {
            conversation_id: conv,
            before: None,
            after: None,
            limit: None,
        })
        .await
        .expect("history");
    page.messages
}
