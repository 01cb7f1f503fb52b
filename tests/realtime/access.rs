//! Tenant isolation and who may post, join and receive.

use crate::*;

#[actix_web::test]
async fn other_subscribers_cannot_see_or_join() {
    let p = pair().await;
    let app = p.env.app().await;
    let group: Conversation =
        p.ca.call(Request::CreateGroup {
            title: "private".into(),
            members: vec![p.bob],
        })
        .await
        .expect("group");
    send(&p.ca, group.id, text("secret")).await;

    // Eve belongs to another subscriber.
    let e_ib = register(&app, &email("eve"), "Eve Corp").await;
    let eve = user(&app, &e_ib, "eve").await;
    let te = token(&app, &e_ib, &eve).await;
    let ce = client(&p.server, &te).await;
    let eve = uid(&eve);

    let denied = |r: Result<Value, parley_client::ClientError>| {
        let code = r.expect_err("must be refused").code();
        assert!(
            matches!(
                code,
                Some(ErrorCode::NotFound) | Some(ErrorCode::AccessDenied)
            ),
            "{code:?}"
        );
    };
    denied(
        ce.request(Request::GetConversation {
            conversation_id: group.id,
        })
        .await,
    );
    denied(
        ce.request(Request::Send {
            conversation_id: group.id,
            message: text("hi"),
        })
        .await,
    );
    denied(
        ce.request(Request::History {
            conversation_id: group.id,
            before: None,
            after: None,
            limit: None,
        })
        .await,
    );
    denied(
        ce.request(Request::Read {
            conversation_id: group.id,
            seq: 1,
        })
        .await,
    );
    denied(
        ce.request(Request::Typing {
            conversation_id: group.id,
        })
        .await,
    );
    denied(
        ce.request(Request::Leave {
            conversation_id: group.id,
        })
        .await,
    );
    denied(
        ce.request(Request::AddMembers {
            conversation_id: group.id,
            user_ids: vec![eve],
        })
        .await,
    );
    denied(ce.request(Request::OpenDialog { user_id: p.alice }).await);
    denied(
        ce.request(Request::CreateGroup {
            title: "x".into(),
            members: vec![p.alice],
        })
        .await,
    );
    denied(
        ce.request(Request::Presence {
            user_ids: vec![p.alice],
        })
        .await,
    );
    // Alice cannot pull Eve in either.
    denied(
        p.ca.request(Request::AddMembers {
            conversation_id: group.id,
            user_ids: vec![eve],
        })
        .await,
    );
    // Resume of a foreign conversation replays nothing.
    ce.track(group.id, 0);
    let r = ce
        .request(Request::Resume {
            conversations: [(group.id, 0)].into(),
        })
        .await
        .expect("resume");
    assert_eq!(r["replayed"], 0);
    // Eve's infobase sees nothing of it over REST.
    let r = call(
        &app,
        "GET",
        &format!("/v1/infobases/{}/conversations/{}", e_ib.id, group.id),
        &e_ib.auth(),
        None,
    )
    .await;
    r.expect_error(404, "not_found");
    let r = call(
        &app,
        "POST",
        &format!("/v1/infobases/{}/conversations", e_ib.id),
        &e_ib.auth(),
        json_body(json!({"title": "steal", "members": [p.alice.to_string()]})),
    )
    .await;
    r.expect_error(404, "not_found");
    assert!(ce
        .drain_events()
        .await
        .iter()
        .all(|e| !matches!(e, Event::MessageCreated { .. })));
}

/// Members and the event log of a conversation, to show that a refusal
/// changed nothing.
async fn footprint(env: &TestEnv, conv: ConversationId) -> (i64, i64) {
    let members: i64 =
        sqlx::query_scalar("SELECT count(*) FROM members WHERE conversation_id = $1")
            .bind(conv.0)
            .fetch_one(&env.db)
            .await
            .expect("members");
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE conversation_id = $1")
        .bind(conv.0)
        .fetch_one(&env.db)
        .await
        .expect("events");
    (members, events)
}

#[actix_web::test]
async fn a_refused_rest_post_by_a_non_member_changes_nothing() {
    let p = pair_with(|c| c.limits.max_text_bytes = 100).await;
    let app = p.env.app().await;
    let carol = user(&app, &p.a, "carol").await;
    let g = group(&p.ca, "refusals", &[p.bob]).await;
    let before = footprint(&p.env, g.id).await;
    let path = format!("/v1/infobases/{}/conversations/{}/messages", p.a.id, g.id);
    // Too long: refused before anything happens.
    let r = call(
        &app,
        "POST",
        &path,
        &p.a.auth(),
        json_body(json!({"author_id": carol, "text": "x".repeat(101)})),
    )
    .await;
    r.expect_error(413, "too_large");
    assert_eq!(footprint(&p.env, g.id).await, before, "oversized post");
    // An attachment that is not hers: refused inside the transaction that
    // would have made her a member, so that rolls back too.
    let r = call(
        &app,
        "POST",
        &path,
        &p.a.auth(),
        json_body(json!({"author_id": carol, "text": "see file",
                         "attachments": [uuid::Uuid::new_v4()]})),
    )
    .await;
    r.expect_error(400, "invalid");
    assert_eq!(footprint(&p.env, g.id).await, before, "bad attachment");
    // Recipients who are not members: the same.
    let r = call(
        &app,
        "POST",
        &path,
        &p.a.auth(),
        json_body(json!({"author_id": carol, "text": "psst",
                         "recipients": [uuid::Uuid::new_v4()]})),
    )
    .await;
    r.expect_error(400, "invalid");
    assert_eq!(footprint(&p.env, g.id).await, before, "stranger recipient");
    // A valid post makes her a member and posts, in one commit.
    let r = call(
        &app,
        "POST",
        &path,
        &p.a.auth(),
        json_body(json!({"author_id": carol, "text": "hello"})),
    )
    .await;
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(footprint(&p.env, g.id).await, (before.0 + 1, before.1 + 2));
}

#[actix_web::test]
async fn a_member_removed_during_a_send_gets_it_only_if_it_precedes_the_removal() {
    const ROUNDS: usize = 20;
    let p = pair().await;
    let app = p.env.app().await;
    let carol = user(&app, &p.a, "carol").await;
    let tc = token(&app, &p.a, &carol).await;
    let cc = client(&p.server, &tc).await;
    let carol = uid(&carol);
    let mut rounds = Vec::new();
    for i in 0..ROUNDS {
        let g = group(&p.ca, &format!("race {i}"), &[p.bob, carol]).await;
        let path = format!(
            "/v1/infobases/{}/conversations/{}/members/{carol}",
            p.a.id, g.id
        );
        let auth = p.a.auth();
        let (sent, removed) = tokio::join!(
            send(&p.ca, g.id, text(&format!("m{i}"))),
            call(&app, "DELETE", &path, &auth, None)
        );
        assert_eq!(removed.status, 204, "{removed:?}");
        rounds.push((g.id, sent));
    }
    // Carol hears of every removal; messages before it reach her too.
    let mut got_message = std::collections::HashSet::new();
    let mut got_removal = std::collections::HashSet::new();
    while got_removal.len() < ROUNDS {
        match cc.next_event(WAIT).await {
            Some(Event::MessageCreated {
                conversation_id, ..
            }) => {
                assert!(
                    !got_removal.contains(&conversation_id),
                    "a message after the removal reached the removed member"
                );
                got_message.insert(conversation_id);
            }
            Some(Event::MemberRemoved {
                conversation_id,
                user_id,
                ..
            }) if user_id == carol => {
                got_removal.insert(conversation_id);
            }
            Some(_) => {}
            None => panic!("only {} of {ROUNDS} removals arrived", got_removal.len()),
        }
    }
    // Anything still on its way arrives within a moment.
    while let Some(e) = cc.next_event(Duration::from_millis(300)).await {
        if let Event::MessageCreated {
            conversation_id, ..
        } = e
        {
            got_message.insert(conversation_id);
        }
    }
    let mut before = 0;
    for (conv, sent) in &rounds {
        let removed_at: i64 = sqlx::query_scalar(
            "SELECT seq FROM events WHERE conversation_id = $1
               AND body->>'event' = 'member.removed' AND body->>'user_id' = $2",
        )
        .bind(conv.0)
        .bind(carol.to_string())
        .fetch_one(&p.env.db)
        .await
        .expect("removal logged");
        let in_history = sent.seq < removed_at;
        assert_eq!(
            got_message.contains(conv),
            in_history,
            "message seq {} vs removal seq {removed_at}: delivered iff before the removal",
            sent.seq
        );
        before += usize::from(in_history);
    }
    eprintln!("{before} of {ROUNDS} messages preceded the removal");
}

/// Waits until the client was closed with 4003 (the promise is at once;
/// the wait allows for a loaded machine).
async fn revoked(c: &Client, what: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !c.close_codes().contains(&4003) {
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: not closed with 4003: {:?}",
            c.close_codes()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Tokens end when the infobase or the user says so, and the sessions
/// opened with them end with them: one token revoked over REST closes its
/// sessions only; `logout` closes the caller's; revoking all of a user's
/// tokens closes every session of the user.
#[actix_web::test]
async fn revoking_a_token_or_logging_out_ends_its_sessions() {
    let p = pair().await;
    let app = p.env.app().await;
    let bob = p.bob.to_string();
    let issue = || async {
        let r = call(
            &app,
            "POST",
            &format!("/v1/infobases/{}/users/{bob}/tokens", p.b.id),
            &p.b.auth(),
            None,
        )
        .await;
        assert_eq!(r.status, 201, "{r:?}");
        (
            r.body["token"].as_str().expect("token").to_owned(),
            r.body["token_id"].as_str().expect("token id").to_owned(),
        )
    };
    let delete = |ib: &Ib, path: String| {
        let (app, auth) = (&app, ib.auth());
        async move { call(app, "DELETE", &path, &auth, None).await }
    };
    let tokens = |ib: &Ib| format!("/v1/infobases/{}/users/{bob}/tokens", ib.id);
    let (ta, ida) = issue().await;
    let (tb, _) = issue().await;
    let ca = client(&p.server, &ta).await;
    let cb = client(&p.server, &tb).await;

    let r = delete(&p.b, format!("{}/{ida}", tokens(&p.b))).await;
    assert_eq!(r.status, 204, "{r:?}");
    revoked(&ca, "the revoked token's session").await;
    cb.call::<Value>(Request::Ping)
        .await
        .expect("the other token works");
    let me = call(&app, "GET", "/v1/me", &Auth::Token(ta.clone()), None).await;
    me.expect_error(403, "access_denied");
    // Revoking it again: nothing to revoke.
    let again = delete(&p.b, format!("{}/{ida}", tokens(&p.b))).await;
    again.expect_error(404, "not_found");
    // Another infobase cannot revoke Bob's tokens.
    let other = delete(&p.a, tokens(&p.a)).await;
    assert_ne!(other.status, 200, "{other:?}");
    cb.call::<Value>(Request::Ping).await.expect("still works");

    let out: Value = cb.call(Request::Logout).await.expect("logout");
    assert_eq!(out["logged_out"], true);
    revoked(&cb, "the session that logged out").await;
    call(&app, "GET", "/v1/me", &Auth::Token(tb.clone()), None)
        .await
        .expect_error(403, "access_denied");

    // Log out everywhere: every session of the user ends (p.cb too).
    let (tc, _) = issue().await;
    let cc = client(&p.server, &tc).await;
    let r = delete(&p.b, tokens(&p.b)).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.body["revoked"].as_u64().unwrap_or(0) >= 2, "{r:?}");
    revoked(&cc, "a session of the user").await;
    revoked(&p.cb, "the user's first session").await;
    p.ca.call::<Value>(Request::Ping)
        .await
        .expect("Alice is not touched");
}

/// A session that floods frames is refused `rate_limited` beyond its budget
/// and closed with 4009 when it keeps on; the others are not slowed.
#[actix_web::test]
async fn a_session_flooding_frames_is_limited_alone() {
    let p = pair_with(|c| {
        c.ws.frames_per_sec = 5;
        c.ws.frames_burst = 10;
    })
    .await;
    let g = group(&p.ca, "flood", &[p.bob]).await;
    let flood = futures_util::future::join_all((0..40).map(|_| p.cb.request(Request::Ping))).await;
    let limited = flood
        .iter()
        .filter(|r| matches!(r, Err(e) if e.code() == Some(ErrorCode::RateLimited)))
        .count();
    assert!(limited >= 5, "refused: {limited} of 40");
    // Ten refusals in a row end the session with 4009.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !p.cb.close_codes().contains(&4009) {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}",
            p.cb.close_codes()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Alice was never limited, and Bob comes back with a fresh budget.
    let m = send(&p.ca, g.id, text("still here")).await;
    p.cb.wait_live(Duration::from_secs(10)).await.expect("back");
    let got = collect(&p.cb, g.id, 1).await;
    assert_eq!(got[0].id, m.id);
}

/// A locked user cannot be made a member: not in a new group, not in a
/// dialog, not added later; the refusal says why.
#[actix_web::test]
async fn a_locked_user_cannot_be_made_a_member() {
    let p = pair().await;
    let app = p.env.app().await;
    let carol = user(&app, &p.a, "carol").await;
    let r = call(
        &app,
        "POST",
        &format!("/v1/infobases/{}/users", p.a.id),
        &p.a.auth(),
        json_body(json!({"external_id": "carol", "name": "Carol", "locked": true})),
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    let carol = uid(&carol);
    let denied = |r: Result<Value, parley_client::ClientError>| {
        assert_eq!(
            r.expect_err("refused").code(),
            Some(ErrorCode::AccessDenied)
        );
    };
    denied(
        p.ca.request(Request::CreateGroup {
            title: "with carol".into(),
            members: vec![carol],
        })
        .await,
    );
    denied(p.ca.request(Request::OpenDialog { user_id: carol }).await);
    let g = group(&p.ca, "later", &[p.bob]).await;
    denied(
        p.ca.request(Request::AddMembers {
            conversation_id: g.id,
            user_ids: vec![carol],
        })
        .await,
    );
    // Presence of a locked user can still be asked.
    p.ca.request(Request::Presence {
        user_ids: vec![carol],
    })
    .await
    .expect("presence");
}

/// A user posting faster than `limits.messages_per_minute` is refused with
/// `rate_limited` (WebSocket and REST posts as the user alike); other users
/// are not.
#[actix_web::test]
async fn messages_per_minute_are_limited_per_user() {
    let p = pair_with(|c| c.limits.messages_per_minute = 5).await;
    let app = p.env.app().await;
    let g = group(&p.ca, "busy", &[p.bob]).await;
    for i in 0..4 {
        send(&p.ca, g.id, text(&format!("m{i}"))).await;
    }
    // The fifth goes through REST as Alice: the same budget.
    let r = call(
        &app,
        "POST",
        &format!("/v1/infobases/{}/conversations/{}/messages", p.a.id, g.id),
        &p.a.auth(),
        json_body(json!({"author_id": p.alice.to_string(), "text": "m4"})),
    )
    .await;
    assert_eq!(r.status, 201, "{r:?}");
    let e =
        p.ca.request(Request::Send {
            conversation_id: g.id,
            message: text("one too many"),
        })
        .await
        .expect_err("limited");
    assert_eq!(e.code(), Some(ErrorCode::RateLimited), "{e}");
    let r = call(
        &app,
        "POST",
        &format!("/v1/infobases/{}/conversations/{}/messages", p.a.id, g.id),
        &p.a.auth(),
        json_body(json!({"author_id": p.alice.to_string(), "text": "rest too"})),
    )
    .await;
    r.expect_error(429, "rate_limited");
    assert!(r.retry_after.is_some(), "{r:?}");
    // Bob is not limited by Alice's flood.
    send(&p.cb, g.id, text("bob fine")).await;
}

/// A session ends with 4003 when its token expires, however busy it is
/// until then.
#[actix_web::test]
async fn a_session_ends_when_its_token_expires() {
    let env = TestEnv::new(|c| c.auth.min_token_ttl_secs = 1).await;
    let app = env.app().await;
    let a = register(&app, &email("expiry"), "A").await;
    let id = user(&app, &a, "alice").await;
    let r = call(
        &app,
        "POST",
        &format!("/v1/infobases/{}/users/{id}/tokens", a.id),
        &a.auth(),
        Some(Body::Json(serde_json::json!({ "ttl_seconds": 2 }))),
    )
    .await;
    assert_eq!(r.status, 201, "{r:?}");
    let t = r.body["token"].as_str().expect("token").to_owned();
    let server = env.server().await;
    let c = client(&server, &t).await;
    // Requests keep the session's loop turning while the token lives.
    let until = std::time::Instant::now() + Duration::from_millis(1500);
    while std::time::Instant::now() < until {
        c.call::<serde_json::Value>(Request::ListConversations {
            filter: Default::default(),
        })
        .await
        .expect("the session works while its token lives");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    revoked(&c, "an expired token's session").await;
}
