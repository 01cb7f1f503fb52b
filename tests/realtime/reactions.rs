//! Emoji reactions: one per user per emoji, events with `seq` (resume
//! replays them), counts and "mine" in history, and only on messages the
//! user can read.

use crate::*;

fn react(conv: ConversationId, m: &Message, emoji: &str, add: bool) -> Request {
    let (conversation_id, message_id, emoji) = (conv, m.id, emoji.to_owned());
    if add {
        Request::ReactionAdd {
            conversation_id,
            message_id,
            emoji,
        }
    } else {
        Request::ReactionRemove {
            conversation_id,
            message_id,
            emoji,
        }
    }
}

#[actix_web::test]
async fn reactions_are_counted_replayed_and_refused_where_unreadable() {
    let p = pair().await;
    let g = group(&p.ca, "team", &[p.bob]).await;
    let m = send(&p.ca, g.id, text("ship it?")).await;
    let r: Value = p.cb.call(react(g.id, &m, "👍", true)).await.expect("react");
    assert_eq!(r["changed"], true);
    // Once per user per emoji.
    let r: Value = p.cb.call(react(g.id, &m, "👍", true)).await.expect("again");
    assert_eq!(r["changed"], false);
    let seq = expect(&p.ca, "reaction.added", |e| match e {
        Event::ReactionAdded {
            message_id,
            user_id,
            emoji,
            seq,
            ..
        } if *message_id == m.id && *user_id == p.bob && emoji == "👍" => Some(*seq),
        _ => None,
    })
    .await;
    assert!(seq > m.seq);
    let _: Value = p.ca.call(react(g.id, &m, "👍", true)).await.expect("mine");
    let _: Value = p.ca.call(react(g.id, &m, "🎉", true)).await.expect("party");
    let page: MessagePage =
        p.cb.call(Request::History {
            conversation_id: g.id,
            before: None,
            after: None,
            limit: None,
        })
        .await
        .expect("history");
    let got = &page
        .messages
        .iter()
        .find(|x| x.id == m.id)
        .expect("m")
        .reactions;
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(
        (got[0].emoji.as_str(), got[0].count, got[0].mine),
        ("👍", 2, true)
    );
    assert_eq!(
        (got[1].emoji.as_str(), got[1].count, got[1].mine),
        ("🎉", 1, false)
    );
    // Removing is an event too, replayed by resume after a disconnect.
    p.cb.disconnect().await;
    let _: Value =
        p.ca.call(react(g.id, &m, "🎉", false))
            .await
            .expect("remove");
    p.cb.reconnect().await.expect("back");
    expect_event(&p.cb, "replayed removal", |e| {
        matches!(e, Event::ReactionRemoved { message_id, emoji, .. } if *message_id == m.id && emoji == "🎉")
    })
    .await;

    // Not on a message addressed to someone else, nor in a conversation
    // one is not in; bad emoji refused.
    let app = p.env.app().await;
    let carol = user(&app, &p.a, "carol").await;
    let g3 = group(&p.ca, "three", &[p.bob, uid(&carol)]).await;
    let private = send(
        &p.ca,
        g3.id,
        NewMessage {
            text: "for carol".into(),
            recipients: Some(vec![uid(&carol)]),
            ..Default::default()
        },
    )
    .await;
    let e =
        p.cb.request(react(g3.id, &private, "👍", true))
            .await
            .expect_err("unreadable");
    assert_eq!(e.code(), Some(ErrorCode::NotFound), "{e}");
    let other = group(&p.ca, "not bob", &[uid(&carol)]).await;
    let hidden = send(&p.ca, other.id, text("x")).await;
    let e =
        p.cb.request(react(other.id, &hidden, "👍", true))
            .await
            .expect_err("not a member");
    assert_eq!(e.code(), Some(ErrorCode::AccessDenied), "{e}");
    for bad in ["", "a b", &"x".repeat(40)] {
        let e =
            p.cb.request(react(g.id, &m, bad, true))
                .await
                .expect_err("bad");
        assert!(
            matches!(
                e.code(),
                Some(ErrorCode::Invalid) | Some(ErrorCode::TooLarge)
            ),
            "{bad:?}: {e}"
        );
    }
    // Bob never saw a reaction event of the private message (none was made),
    // and Carol's view counts only what she can see.
    for ev in p.cb.drain_events().await {
        if let Event::ReactionAdded { message_id, .. } = ev {
            assert_ne!(message_id, private.id);
        }
    }
}
