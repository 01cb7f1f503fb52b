//! Forwarding a message to another conversation (its origin travels with
//! it) and @all mentions (counted for every reader, by policy).

use crate::*;
use parley_core::protocol::{ConversationPage, ForwardRef};

fn forward_of(m: &Message) -> NewMessage {
    NewMessage {
        forward: Some(ForwardRef {
            conversation_id: m.conversation_id,
            message_id: m.id,
        }),
        ..Default::default()
    }
}

async fn refused(c: &Client, conv: ConversationId, m: NewMessage) -> ErrorCode {
    match c
        .call::<Message>(Request::Send {
            conversation_id: conv,
            message: m,
        })
        .await
    {
        Err(parley_client::ClientError::Server { code, .. }) => code,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[actix_web::test]
async fn a_forward_carries_its_origin_and_only_what_the_sender_reads() {
    let p = pair().await;
    let app = p.env.app().await;
    let carol = uid(&user(&app, &p.a, "carol").await);
    let team = group(&p.ca, "team", &[p.bob]).await;
    let other = group(&p.ca, "other", &[carol]).await;
    let original = send(
        &p.cb,
        team.id,
        NewMessage {
            text: "Invoice 7 is paid".into(),
            data: Some(json!({"invoice": 7})),
            ..Default::default()
        },
    )
    .await;
    let copy = send(&p.ca, other.id, forward_of(&original)).await;
    assert_eq!(copy.text, "Invoice 7 is paid");
    assert_eq!(copy.data, Some(json!({"invoice": 7})));
    assert_eq!(copy.author_id, p.alice, "the forwarder posts it");
    let origin = copy.forwarded.clone().expect("origin");
    assert_eq!(
        (
            origin.message_id,
            origin.conversation_id,
            origin.author_id,
            origin.conversation_title.as_deref()
        ),
        (original.id, team.id, p.bob, Some("team"))
    );
    // A forward of the forward still names the first message.
    let third = group(&p.ca, "third", &[]).await;
    let again = send(&p.ca, third.id, forward_of(&copy)).await;
    assert_eq!(
        again.forwarded.expect("origin").message_id,
        original.id,
        "a chain names its first message"
    );

    // Refused: forwarding from a conversation the sender is not in, a
    // message addressed to others, a comment in the same frame.
    let bob_own = group(&p.cb, "bob's", &[]).await;
    assert_eq!(
        refused(&p.cb, bob_own.id, forward_of(&copy)).await,
        ErrorCode::Invalid,
        "Bob is not in `other`"
    );
    let private = send(
        &p.ca,
        team.id,
        NewMessage {
            text: "for Alice only".into(),
            recipients: Some(vec![p.alice]),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        refused(&p.cb, bob_own.id, forward_of(&private)).await,
        ErrorCode::Invalid,
        "addressed to Alice only"
    );
    let mut with_text = forward_of(&original);
    with_text.text = "look".into();
    assert_eq!(
        refused(&p.ca, other.id, with_text).await,
        ErrorCode::Invalid
    );

    // Carol reads the copy in history, origin included.
    let tc = token(&app, &p.a, &carol.to_string()).await;
    let cc = client(&p.server, &tc).await;
    let messages = history(&cc, other.id).await;
    let seen = messages.iter().find(|m| m.id == copy.id).expect("the copy");
    assert_eq!(seen.forwarded.as_ref().map(|o| o.author_id), Some(p.bob));
}

async fn unread_mentions(c: &Client, conv: ConversationId) -> Option<i64> {
    let page: ConversationPage = c
        .call(Request::ListConversations {
            filter: Default::default(),
        })
        .await
        .expect("list");
    page.conversations
        .into_iter()
        .find(|x| x.id == conv)
        .expect("listed")
        .unread_mentions
}

fn all(t: &str) -> NewMessage {
    NewMessage {
        text: t.into(),
        mention_all: true,
        ..Default::default()
    }
}

#[actix_web::test]
async fn mention_all_reaches_every_reader_as_the_policy_allows() {
    let p = pair().await;
    let g = group(&p.ca, "team", &[p.bob]).await;
    let m = send(&p.ca, g.id, all("@all standup in 5")).await;
    assert!(m.mention_all);
    let live = expect(&p.cb, "the @all message", |e| match e {
        Event::MessageCreated { message, .. } if message.id == m.id => Some(message.mention_all),
        _ => None,
    })
    .await;
    assert!(live, "the event says so");
    assert_eq!(unread_mentions(&p.cb, g.id).await, Some(1));
    assert_eq!(
        unread_mentions(&p.ca, g.id).await,
        Some(0),
        "not the author's"
    );
    // Addressed to Alice only: Bob is not mentioned by it.
    send(
        &p.cb,
        g.id,
        NewMessage {
            recipients: Some(vec![p.bob]),
            ..all("@all (to myself)")
        },
    )
    .await;
    assert_eq!(unread_mentions(&p.ca, g.id).await, Some(0));
    // Not in a dialog.
    let d: Conversation =
        p.ca.call(Request::OpenDialog { user_id: p.bob })
            .await
            .expect("dialog");
    assert_eq!(refused(&p.ca, d.id, all("@all")).await, ErrorCode::Invalid);

    // `creator`: only the group's creator; `nobody`: no one.
    let q = pair_with(|c| c.limits.mention_all = "creator".into()).await;
    let g = group(&q.ca, "team", &[q.bob]).await;
    send(&q.ca, g.id, all("@all from the creator")).await;
    assert_eq!(
        refused(&q.cb, g.id, all("@all from Bob")).await,
        ErrorCode::AccessDenied
    );
    let n = pair_with(|c| c.limits.mention_all = "nobody".into()).await;
    let g = group(&n.ca, "team", &[n.bob]).await;
    assert_eq!(
        refused(&n.ca, g.id, all("@all")).await,
        ErrorCode::AccessDenied
    );
}
