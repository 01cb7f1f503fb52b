//! Answered buttons: a reader clicks an action; the bot that wrote the
//! message hears it at once, its infobase reads it back over REST, and a
//! single-use question is answered once for everyone.

use crate::*;
use parley_core::protocol::{ActionInvocation, InvocationPage};

#[actix_web::test]
async fn a_click_reaches_the_bot_and_its_infobase_and_single_use_answers_once() {
    let p = pair().await;
    let app = p.env.app().await;
    let g = group(&p.ca, "approvals", &[p.bob]).await;
    // A bot of infobase A with a session of its own.
    let bot = user(&app, &p.a, "approval-bot").await;
    let cbot = client(&p.server, &token(&app, &p.a, &bot).await).await;
    let post = |body: Value| {
        let app = &app;
        let path = format!("/v1/infobases/{}/conversations/{}/messages", p.a.id, g.id);
        let auth = p.a.auth();
        async move {
            let r = call(app, "POST", &path, &auth, json_body(body)).await;
            assert_eq!(r.status, 201, "{r:?}");
            serde_json::from_value::<Message>(r.body).expect("message")
        }
    };
    let poll = post(json!({"author_id": bot, "text": "Lunch?",
        "actions": [{"value": "yes", "caption": "Yes"}, {"value": "no", "caption": "No"}]}))
    .await;
    let question = post(json!({"author_id": bot, "text": "Approve invoice 7?",
        "actions": [{"value": "approve", "caption": "Approve", "single_use": true},
                    {"value": "reject", "caption": "Reject", "single_use": true}]}))
    .await;

    // An ordinary button: every click counts, the bot hears each.
    let inv: ActionInvocation =
        p.cb.call(Request::ActionInvoke {
            conversation_id: g.id,
            message_id: poll.id,
            value: "yes".into(),
        })
        .await
        .expect("invoke");
    let heard = expect(&cbot, "action.invoked", |e| match e {
        Event::ActionInvoked { invocation } => Some(invocation.clone()),
        _ => None,
    })
    .await;
    assert_eq!(heard, inv);
    assert_eq!((heard.user_id, heard.value.as_str()), (p.bob, "yes"));
    let e =
        p.cb.request(Request::ActionInvoke {
            conversation_id: g.id,
            message_id: poll.id,
            value: "maybe".into(),
        })
        .await
        .expect_err("no such action");
    assert_eq!(e.code(), Some(ErrorCode::Invalid), "{e}");

    // Single use: the first answer wins, everyone sees it, later ones are
    // refused.
    p.ca.call::<ActionInvocation>(Request::ActionInvoke {
        conversation_id: g.id,
        message_id: question.id,
        value: "approve".into(),
    })
    .await
    .expect("approve");
    let chosen = expect(&p.cb, "action.chosen", |e| match e {
        Event::ActionChosen {
            message_id, choice, ..
        } if *message_id == question.id => Some(choice.clone()),
        _ => None,
    })
    .await;
    assert_eq!(
        (chosen.value.as_str(), chosen.user_id),
        ("approve", p.alice)
    );
    let e =
        p.cb.request(Request::ActionInvoke {
            conversation_id: g.id,
            message_id: question.id,
            value: "reject".into(),
        })
        .await
        .expect_err("answered");
    assert_eq!(e.code(), Some(ErrorCode::Conflict), "{e}");
    let page: MessagePage =
        p.cb.call(Request::History {
            conversation_id: g.id,
            before: None,
            after: None,
            limit: None,
        })
        .await
        .expect("history");
    let q = page
        .messages
        .iter()
        .find(|m| m.id == question.id)
        .expect("q");
    assert_eq!(q.chosen.as_ref().map(|c| c.value.as_str()), Some("approve"));

    // The infobase reads the clicks on its bot's messages, after a cursor.
    let r = call(
        &app,
        "GET",
        &format!("/v1/infobases/{}/action-invocations", p.a.id),
        &p.a.auth(),
        None,
    )
    .await;
    let page: InvocationPage = serde_json::from_value(r.body).expect("page");
    let values: Vec<&str> = page.invocations.iter().map(|i| i.value.as_str()).collect();
    assert_eq!(values, vec!["yes", "approve"]);
    let r = call(
        &app,
        "GET",
        &format!(
            "/v1/infobases/{}/action-invocations?after={}",
            p.a.id,
            page.next_cursor.expect("cursor")
        ),
        &p.a.auth(),
        None,
    )
    .await;
    assert_eq!(r.body["invocations"], json!([]), "{r:?}");
    // Infobase B (Bob's) has no bot messages: nothing.
    let r = call(
        &app,
        "GET",
        &format!("/v1/infobases/{}/action-invocations", p.b.id),
        &p.b.auth(),
        None,
    )
    .await;
    assert_eq!(r.body["invocations"], json!([]), "{r:?}");

    // Not on a message one cannot read.
    let app2 = p.env.app().await;
    let carol = user(&app2, &p.a, "carol").await;
    let g3 = group(&p.ca, "three", &[p.bob, uid(&carol)]).await;
    let private = send(
        &p.ca,
        g3.id,
        NewMessage {
            text: "carol only".into(),
            recipients: Some(vec![uid(&carol)]),
            actions: vec![parley_core::protocol::Action {
                value: "ok".into(),
                caption: "OK".into(),
                single_use: false,
            }],
            ..Default::default()
        },
    )
    .await;
    let e =
        p.cb.request(Request::ActionInvoke {
            conversation_id: g3.id,
            message_id: private.id,
            value: "ok".into(),
        })
        .await
        .expect_err("unreadable");
    assert_eq!(e.code(), Some(ErrorCode::NotFound), "{e}");
}
