//! Replies (with a preview of the original) and @mentions (members only,
//! counted unread per conversation).

use crate::*;
use parley_core::protocol::ConversationPage;

#[actix_web::test]
async fn replies_show_their_original_and_mentions_are_counted() {
    let p = pair().await;
    let app = p.env.app().await;
    let g = group(&p.ca, "team", &[p.bob]).await;
    let original = send(&p.ca, g.id, text("Can you approve invoice 7?")).await;
    let reply = send(
        &p.cb,
        g.id,
        NewMessage {
            text: "Approved.".into(),
            reply_to: Some(original.id),
            mentions: vec![p.alice],
            ..Default::default()
        },
    )
    .await;
    let live = expect(&p.ca, "the reply", |e| match e {
        Event::MessageCreated { message, .. } if message.id == reply.id => Some(message.clone()),
        _ => None,
    })
    .await;
    let pv = live.reply_to.clone().expect("preview");
    assert_eq!(
        (pv.message_id, pv.author_id, pv.text.as_str(), pv.deleted),
        (original.id, p.alice, "Can you approve invoice 7?", false)
    );
    assert_eq!(live.mentions, vec![p.alice]);

    // Alice's list counts the unread mention; reading clears it.
    let list = |c: &Client| {
        let c = c.clone();
        async move {
            let page: ConversationPage = c
                .call(Request::ListConversations {
                    filter: Default::default(),
                })
                .await
                .expect("list");
            page.conversations
                .into_iter()
                .find(|x| x.id == g.id)
                .expect("listed")
        }
    };
    assert_eq!(list(&p.ca).await.unread_mentions, Some(1));
    let _: Value =
        p.ca.call(Request::Read {
            conversation_id: g.id,
            seq: reply.seq,
        })
        .await
        .expect("read");
    assert_eq!(list(&p.ca).await.unread_mentions, Some(0));

    // A deleted original shows as deleted in the reply.
    let _: Value =
        p.ca.call(Request::Delete {
            conversation_id: g.id,
            message_id: original.id,
        })
        .await
        .expect("delete");
    let messages = history(&p.cb, g.id).await;
    let r = messages.iter().find(|m| m.id == reply.id).expect("reply");
    let pv = r.reply_to.clone().expect("preview");
    assert!(pv.deleted && pv.text.is_empty(), "{pv:?}");

    // Refused: a reply to another conversation's message, a mention of a
    // non-member, a mention of a member who cannot read the message, and a
    // reply to a message addressed to others that is not addressed alike.
    let carol = user(&app, &p.a, "carol").await;
    let other = group(&p.ca, "other", &[uid(&carol)]).await;
    let elsewhere = send(&p.ca, other.id, text("elsewhere")).await;
    let g3 = group(&p.ca, "three", &[p.bob, uid(&carol)]).await;
    let private = send(
        &p.ca,
        g3.id,
        NewMessage {
            text: "bob only".into(),
            recipients: Some(vec![p.bob]),
            ..Default::default()
        },
    )
    .await;
    let refused = [
        (
            g.id,
            NewMessage {
                text: "x".into(),
                reply_to: Some(elsewhere.id),
                ..Default::default()
            },
        ),
        (
            g.id,
            NewMessage {
                text: "x".into(),
                mentions: vec![uid(&carol)],
                ..Default::default()
            },
        ),
        (
            g3.id,
            NewMessage {
                text: "x".into(),
                recipients: Some(vec![p.alice]),
                mentions: vec![uid(&carol)],
                ..Default::default()
            },
        ),
        (
            g3.id,
            NewMessage {
                text: "to all".into(),
                reply_to: Some(private.id),
                ..Default::default()
            },
        ),
    ];
    for (conv, m) in refused {
        let e =
            p.cb.request(Request::Send {
                conversation_id: conv,
                message: m.clone(),
            })
            .await
            .expect_err("refused");
        assert_eq!(e.code(), Some(ErrorCode::Invalid), "{m:?}: {e}");
    }
    // Answered to the same audience, it goes.
    send(
        &p.cb,
        g3.id,
        NewMessage {
            text: "thanks".into(),
            reply_to: Some(private.id),
            recipients: Some(vec![p.alice]),
            ..Default::default()
        },
    )
    .await;
}
