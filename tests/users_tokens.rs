//! Users, session tokens, unregistering and tenant isolation.

use parley_tests::serde_json::{json, Value};
use parley_tests::*;

fn users(ib: &Ib) -> String {
    format!("/v1/infobases/{}/users", ib.id)
}

#[actix_web::test]
async fn user_upsert_is_idempotent_and_keeps_unsent_fields() {
    let env = TestEnv::default().await;
    let app = env.app().await;
    let ib = register(&app, &email("users"), "Users").await;
    let body = json!({"external_id": "Иванов И.И.", "name": "Ivan", "full_name": "Иван Иванович Иванов",
                      "email": "Ivan@Example.com", "phone": "+7 900 000-00-00", "picture": "https://example.com/i.png"});
    let r1 = call(
        &app,
        "POST",
        &users(&ib),
        &ib.auth(),
        json_body(body.clone()),
    )
    .await;
    assert_eq!(r1.status, 201, "{r1:?}");
    assert_eq!(r1.body["created"], true);
    let id = r1.body["user"]["id"].clone();
    assert_eq!(r1.body["user"]["email"], "ivan@example.com");

    let r2 = call(&app, "POST", &users(&ib), &ib.auth(), json_body(body)).await;
    assert_eq!(r2.status, 200);
    assert_eq!(r2.body["created"], false);
    assert_eq!(r2.body["user"]["id"], id);

    // Only the name is sent: the other fields stay as they were.
    let r3 = call(
        &app,
        "POST",
        &users(&ib),
        &ib.auth(),
        json_body(json!({"external_id": "Иванов И.И.", "name": "Ivan I."})),
    )
    .await;
    assert_eq!(r3.body["user"]["id"], id);
    assert_eq!(r3.body["user"]["name"], "Ivan I.");
    assert_eq!(r3.body["user"]["full_name"], "Иван Иванович Иванов");
    assert_eq!(r3.body["user"]["phone"], "+7 900 000-00-00");
    // An empty string clears a field.
    let r4 = call(
        &app,
        "POST",
        &users(&ib),
        &ib.auth(),
        json_body(json!({"external_id": "Иванов И.И.", "name": "Ivan", "phone": ""})),
    )
    .await;
    assert_eq!(r4.body["user"]["phone"], "");
    assert_eq!(env.counts().await["users"], 1);

    // Read it back by id and by the infobase's own id.
    let r = call(
        &app,
        "GET",
        &format!("{}/{}", users(&ib), id.as_str().expect("id")),
        &ib.auth(),
        None,
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["external_id"], "Иванов И.И.");
    let r = call(
        &app,
        "GET",
        &format!(
            "{}?external_id=%D0%98%D0%B2%D0%B0%D0%BD%D0%BE%D0%B2%20%D0%98.%D0%98.",
            users(&ib)
        ),
        &ib.auth(),
        None,
    )
    .await;
    assert_eq!(r.body["users"][0]["id"], id, "{r:?}");
}

#[actix_web::test]
async fn concurrent_upserts_of_one_user_give_one_id() {
    let env = TestEnv::default().await;
    let app = env.app().await;
    let ib = register(&app, &email("upsert-race"), "Race").await;
    let path = users(&ib);
    let auth = ib.auth();
    let calls = (0..10).map(|i| {
        call(
            &app,
            "POST",
            &path,
            &auth,
            json_body(json!({"external_id": "same", "name": format!("n{i}")})),
        )
    });
    let results = futures_util::future::join_all(calls).await;
    let ids: std::collections::HashSet<String> = results
        .iter()
        .map(|r| r.body["user"]["id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(ids.len(), 1, "{results:?}");
    assert_eq!(results.iter().filter(|r| r.status == 201).count(), 1);
}

#[actix_web::test]
async fn users_are_listed_a_page_at_a_time() {
    let env = TestEnv::default().await;
    let app = env.app().await;
    let ib = register(&app, &email("pages"), "Pages").await;
    for i in 0..7 {
        user(&app, &ib, &format!("u{i}")).await;
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let q = match &cursor {
            Some(c) => format!("{}?limit=3&after={c}", users(&ib)),
            None => format!("{}?limit=3", users(&ib)),
        };
        let r = call(&app, "GET", &q, &ib.auth(), None).await;
        assert_eq!(r.status, 200, "{r:?}");
        let page = r.body["users"].as_array().expect("users").clone();
        assert!(page.len() <= 3);
        seen.extend(
            page.into_iter()
                .map(|u| u["external_id"].as_str().expect("ext").to_owned()),
        );
        match r.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    seen.sort();
    assert_eq!(seen, (0..7).map(|i| format!("u{i}")).collect::<Vec<_>>());
}

#[actix_web::test]
async fn tokens_work_until_the_user_is_locked() {
    let env = TestEnv::default().await;
    let app = env.app().await;
    let ib = register(&app, &email("tokens"), "Tokens").await;
    let uid = user(&app, &ib, "ann").await;
    let tokens = format!("{}/{uid}/tokens", users(&ib));

    let r = call(&app, "POST", &tokens, &ib.auth(), None).await;
    assert_eq!(r.status, 201, "{r:?}");
    let token = r.body["token"].as_str().expect("token").to_owned();
    assert!(token.starts_with("pst_"));
    let r = call(&app, "GET", "/v1/me", &Auth::Token(token.clone()), None).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["id"], uid.as_str());

    // A body with a lifetime is accepted too.
    let r = call(
        &app,
        "POST",
        &tokens,
        &ib.auth(),
        json_body(json!({"ttl_seconds": 3600})),
    )
    .await;
    assert_eq!(r.status, 201, "{r:?}");

    // Locking revokes every token at once and refuses new ones.
    let r = call(
        &app,
        "POST",
        &users(&ib),
        &ib.auth(),
        json_body(json!({"external_id": "ann", "name": "ann", "locked": true})),
    )
    .await;
    assert_eq!(r.body["user"]["locked"], true);
    call(&app, "GET", "/v1/me", &Auth::Token(token.clone()), None)
        .await
        .expect_error(403, "access_denied");
    call(&app, "POST", &tokens, &ib.auth(), None)
        .await
        .expect_error(403, "access_denied");

    // Unlocking does not bring the revoked tokens back; a new one works.
    call(
        &app,
        "POST",
        &users(&ib),
        &ib.auth(),
        json_body(json!({"external_id": "ann", "name": "ann", "locked": false})),
    )
    .await;
    call(&app, "GET", "/v1/me", &Auth::Token(token), None)
        .await
        .expect_error(403, "access_denied");
    let r = call(&app, "POST", &tokens, &ib.auth(), None).await;
    let fresh = r.body["token"].as_str().expect("token").to_owned();
    assert_eq!(
        call(&app, "GET", "/v1/me", &Auth::Token(fresh), None)
            .await
            .status,
        200
    );

    // Tokens are stored hashed only.
    let hashes: Vec<(Vec<u8>,)> = sqlx::query_as("SELECT token_hash FROM session_tokens")
        .fetch_all(&env.db)
        .await
        .expect("rows");
    assert!(hashes.iter().all(|(h,)| h.len() == 32));
}

#[actix_web::test]
async fn expired_and_unknown_tokens_are_refused() {
    let env = TestEnv::default().await;
    let app = env.app().await;
    let ib = register(&app, &email("expiry"), "Expiry").await;
    let uid = user(&app, &ib, "bob").await;
    let r = call(
        &app,
        "POST",
        &format!("{}/{uid}/tokens", users(&ib)),
        &ib.auth(),
        None,
    )
    .await;
    let token = r.body["token"].as_str().expect("token").to_owned();
    sqlx::query("UPDATE session_tokens SET expires_at = now() - interval '1 second'")
        .execute(&env.db)
        .await
        .expect("age");
    call(&app, "GET", "/v1/me", &Auth::Token(token), None)
        .await
        .expect_error(403, "access_denied");
    call(
        &app,
        "GET",
        "/v1/me",
        &Auth::Token("pst_nothing".into()),
        None,
    )
    .await
    .expect_error(403, "access_denied");
    call(&app, "GET", "/v1/me", &Auth::None, None)
        .await
        .expect_error(401, "unauthenticated");
    // Out-of-range lifetimes name the limit.
    let r = call(
        &app,
        "POST",
        &format!("{}/{uid}/tokens", users(&ib)),
        &ib.auth(),
        json_body(json!({"ttl_seconds": 5})),
    )
    .await;
    r.expect_error(400, "invalid");
    assert!(r.body["message"]
        .as_str()
        .is_some_and(|m| m.contains("ttl_seconds")));
}

#[actix_web::test]
async fn unregister_revokes_the_key_and_every_token() {
    let env = TestEnv::default().await;
    let app = env.app().await;
    let ib = register(&app, &email("unreg"), "Gone").await;
    let uid = user(&app, &ib, "carol").await;
    let r = call(
        &app,
        "POST",
        &format!("{}/{uid}/tokens", users(&ib)),
        &ib.auth(),
        None,
    )
    .await;
    let token = r.body["token"].as_str().expect("token").to_owned();

    let r = call(
        &app,
        "DELETE",
        &format!("/v1/infobases/{}", ib.id),
        &ib.auth(),
        None,
    )
    .await;
    assert_eq!(r.status, 204, "{r:?}");
    call(
        &app,
        "GET",
        &format!("/v1/infobases/{}", ib.id),
        &ib.auth(),
        None,
    )
    .await
    .expect_error(403, "access_denied");
    call(&app, "GET", &users(&ib), &ib.auth(), None)
        .await
        .expect_error(403, "access_denied");
    call(&app, "GET", "/v1/me", &Auth::Token(token), None)
        .await
        .expect_error(403, "access_denied");
    let revoked: i64 =
        sqlx::query_scalar("SELECT count(*) FROM session_tokens WHERE revoked_at IS NOT NULL")
            .fetch_one(&env.db)
            .await
            .expect("count");
    assert_eq!(revoked, 1);
}

#[actix_web::test]
async fn admin_unregister_through_the_store_revokes_too() {
    let env = TestEnv::default().await;
    let app = env.app().await;
    let ib = register(&app, &email("admin"), "Admin").await;
    let id: parley_core::InfobaseId = ib.id.parse().expect("id");
    assert!(env
        .store
        .unregister_infobase(id)
        .await
        .expect("unregister")
        .is_some());
    assert!(env
        .store
        .unregister_infobase(id)
        .await
        .expect("again")
        .is_none());
    call(
        &app,
        "GET",
        &format!("/v1/infobases/{}", ib.id),
        &ib.auth(),
        None,
    )
    .await
    .expect_error(403, "access_denied");
    let list = env.store.list_infobases().await.expect("list");
    assert!(list
        .iter()
        .any(|i| i.id == id && i.unregistered_at.is_some()));
    let subs = env.store.list_subscribers().await.expect("subscribers");
    assert_eq!(subs.len(), 1);
    assert_eq!(subs[0].infobases, 0);
}

/// Every route of infobase B, with the credentials of infobase A.
#[actix_web::test]
async fn a_key_never_reaches_another_infobase() {
    let env = TestEnv::default().await;
    let app = env.app().await;
    let a = register(&app, &email("tenant-a"), "A").await;
    let b = register(&app, &email("tenant-b"), "B").await;
    // An infobase of the same subscriber as A is still another infobase.
    let a_email: String = sqlx::query_scalar("SELECT s.email FROM subscribers s JOIN infobases i ON i.subscriber_id = s.id WHERE i.id = $1::uuid")
        .bind(&a.id)
        .fetch_one(&env.db)
        .await
        .expect("email");
    let a2 = register(&app, &a_email, "A2").await;
    assert_eq!(a.subscriber_id, a2.subscriber_id);

    for victim in [&b, &a2] {
        let b_user = user(&app, victim, "victim").await;
        let before = env.counts().await;
        let routes: Vec<(&str, String, Option<Value>)> = vec![
            ("GET", format!("/v1/infobases/{}", victim.id), None),
            ("DELETE", format!("/v1/infobases/{}", victim.id), None),
            ("GET", format!("/v1/infobases/{}/users", victim.id), None),
            (
                "POST",
                format!("/v1/infobases/{}/users", victim.id),
                Some(json!({"external_id": "x", "name": "x"})),
            ),
            (
                "GET",
                format!("/v1/infobases/{}/users/{b_user}", victim.id),
                None,
            ),
            (
                "POST",
                format!("/v1/infobases/{}/users/{b_user}/tokens", victim.id),
                None,
            ),
        ];
        for (method, path, body) in routes {
            let r = call(&app, method, &path, &a.auth(), body.map(Body::Json)).await;
            assert!(
                r.status == 403 && r.code() == "access_denied"
                    || r.status == 404 && r.code() == "not_found",
                "{method} {path}: {r:?}"
            );
        }
        // A's own routes with B's user id find nothing.
        call(
            &app,
            "GET",
            &format!("/v1/infobases/{}/users/{b_user}", a.id),
            &a.auth(),
            None,
        )
        .await
        .expect_error(404, "not_found");
        call(
            &app,
            "POST",
            &format!("/v1/infobases/{}/users/{b_user}/tokens", a.id),
            &a.auth(),
            None,
        )
        .await
        .expect_error(404, "not_found");
        // B's key with A's id in the credentials is simply wrong.
        let mixed = Auth::Infobase(a.id.clone(), victim.key.clone());
        call(
            &app,
            "GET",
            &format!("/v1/infobases/{}", a.id),
            &mixed,
            None,
        )
        .await
        .expect_error(403, "access_denied");
        assert_eq!(env.counts().await, before, "nothing changed");
    }
    // A's list shows only A's users.
    user(&app, &a, "mine").await;
    let r = call(&app, "GET", &users(&a), &a.auth(), None).await;
    let names: Vec<&str> = r.body["users"]
        .as_array()
        .expect("users")
        .iter()
        .map(|u| u["external_id"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(names, vec!["mine"]);
}

#[actix_web::test]
async fn a_deleted_user_is_gone_its_tokens_dead_and_its_external_id_free() {
    let env = TestEnv::default().await;
    let app = env.app().await;
    let ib = register(&app, &email("delete"), "Delete").await;
    let ann = user(&app, &ib, "ann").await;
    let ben = user(&app, &ib, "ben").await;
    let token = token(&app, &ib, &ann).await;
    // Ann is in a group.
    let r = call(
        &app,
        "POST",
        &format!("/v1/infobases/{}/conversations", ib.id),
        &ib.auth(),
        json_body(json!({"kind": "group", "title": "team", "members": [ann, ben]})),
    )
    .await;
    assert_eq!(r.status, 201, "{r:?}");
    let group = r.body["id"].as_str().expect("id").to_owned();

    let path = format!("{}/{ann}", users(&ib));
    let r = call(&app, "DELETE", &path, &ib.auth(), None).await;
    assert_eq!(r.status, 204, "{r:?}");
    call(&app, "GET", "/v1/me", &Auth::Token(token), None)
        .await
        .expect_error(403, "access_denied");
    call(&app, "GET", &path, &ib.auth(), None)
        .await
        .expect_error(404, "not_found");
    call(&app, "DELETE", &path, &ib.auth(), None)
        .await
        .expect_error(404, "not_found");
    call(&app, "POST", &format!("{path}/tokens"), &ib.auth(), None)
        .await
        .expect_error(404, "not_found");
    let r = call(&app, "GET", &users(&ib), &ib.auth(), None).await;
    let listed: Vec<&str> = r.body["users"]
        .as_array()
        .expect("users")
        .iter()
        .filter_map(|u| u["id"].as_str())
        .collect();
    assert_eq!(listed, vec![ben.as_str()]);
    // She left the group, with an event in its history.
    let r = call(
        &app,
        "GET",
        &format!("/v1/infobases/{}/conversations/{group}", ib.id),
        &ib.auth(),
        None,
    )
    .await;
    assert_eq!(r.body["members"], json!([ben]), "{r:?}");
    let removed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE conversation_id = $1::uuid
         AND body->>'event' = 'member.removed' AND body->>'user_id' = $2",
    )
    .bind(&group)
    .bind(&ann)
    .fetch_one(&env.db)
    .await
    .expect("events");
    assert_eq!(removed, 1);
    // The external id makes a new user with a new id; the prefix of deleted
    // rows is reserved.
    let again = user(&app, &ib, "ann").await;
    assert_ne!(again, ann);
    call(
        &app,
        "POST",
        &users(&ib),
        &ib.auth(),
        json_body(json!({"external_id": format!("deleted:{ann}"), "name": "x"})),
    )
    .await
    .expect_error(400, "invalid");
    // Another infobase cannot delete this one's user.
    let other = register(&app, &email("delete-other"), "Other").await;
    call(
        &app,
        "DELETE",
        &format!("/v1/infobases/{}/users/{ben}", other.id),
        &other.auth(),
        None,
    )
    .await
    .expect_error(404, "not_found");
}

#[actix_web::test]
async fn users_and_live_tokens_per_infobase_are_limited() {
    let env = TestEnv::new(|c| {
        c.limits.max_users_per_infobase = 2;
        c.limits.max_live_tokens_per_infobase = 2;
    })
    .await;
    let app = env.app().await;
    let ib = register(&app, &email("counts"), "Counts").await;
    let a = user(&app, &ib, "a").await;
    user(&app, &ib, "b").await;
    let r = call(
        &app,
        "POST",
        &users(&ib),
        &ib.auth(),
        json_body(json!({"external_id": "c", "name": "c"})),
    )
    .await;
    r.expect_error(403, "limit_reached");
    assert!(r.body["message"]
        .as_str()
        .is_some_and(|m| m.contains("limits.max_users_per_infobase")));
    // Updating a known user is no creation.
    let r = call(
        &app,
        "POST",
        &users(&ib),
        &ib.auth(),
        json_body(json!({"external_id": "a", "name": "A"})),
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    // Deleting one makes room.
    let r = call(
        &app,
        "DELETE",
        &format!("{}/{a}", users(&ib)),
        &ib.auth(),
        None,
    )
    .await;
    assert_eq!(r.status, 204, "{r:?}");
    let c = user(&app, &ib, "c").await;

    let tokens = format!("{}/{c}/tokens", users(&ib));
    for _ in 0..2 {
        assert_eq!(
            call(&app, "POST", &tokens, &ib.auth(), None).await.status,
            201
        );
    }
    call(&app, "POST", &tokens, &ib.auth(), None)
        .await
        .expect_error(403, "limit_reached");
    // Revoked tokens do not count.
    let r = call(&app, "DELETE", &tokens, &ib.auth(), None).await;
    assert_eq!(r.body["revoked"], 2, "{r:?}");
    assert_eq!(
        call(&app, "POST", &tokens, &ib.auth(), None).await.status,
        201
    );
}
