//! Registration by e-mailed code, against real PostgreSQL and a real SMTP server.

use parley_tests::serde_json::json;
use parley_tests::*;

const CODE: &str = "/v1/registration/code";
const CONFIRM: &str = "/v1/registration/confirm";

async fn confirm<S, B>(app: &S, email: &str, code: &str) -> Resp
where
    S: actix_web::dev::Service<
        actix_http::Request,
        Response = actix_web::dev::ServiceResponse<B>,
        Error = actix_web::Error,
    >,
    B: actix_web::body::MessageBody,
{
    call(
        app,
        "POST",
        CONFIRM,
        &Auth::None,
        json_body(json!({"email": email, "code": code, "infobase_name": "Склад №1 «Север»"})),
    )
    .await
}

async fn request_code<S, B>(app: &S, email: &str) -> Resp
where
    S: actix_web::dev::Service<
        actix_http::Request,
        Response = actix_web::dev::ServiceResponse<B>,
        Error = actix_web::Error,
    >,
    B: actix_web::body::MessageBody,
{
    call(
        app,
        "POST",
        CODE,
        &Auth::None,
        json_body(json!({ "email": email })),
    )
    .await
}

fn wrong(code: &str) -> String {
    code.chars()
        .map(|c| char::from(b'0' + ((c as u8 - b'0' + 1) % 10)))
        .collect()
}

#[actix_web::test]
async fn full_flow_with_the_code_from_the_mail() {
    let env = TestEnv::default().await;
    let app = env.app().await;
    let email = email("owner");
    let r = request_code(&app, &email.to_uppercase()).await;
    assert_eq!(r.status, 202);
    assert_eq!(r.body, json!({"status": "sent", "expires_in_seconds": 600}));
    let code = code_from_mail(&email).await;
    assert_eq!(code.len(), 6);

    let r = confirm(&app, &email, &code).await;
    assert_eq!(r.status, 201, "{r:?}");
    let id = r.body["infobase_id"].as_str().expect("id").to_owned();
    let subscriber = r.body["subscriber_id"]
        .as_str()
        .expect("subscriber")
        .to_owned();
    let key = r.body["infobase_key"].as_str().expect("key").to_owned();
    assert_eq!(r.body["name"], "Склад №1 «Север»");
    assert!(key.starts_with("pbk_"));

    // The key works and is not stored in clear.
    let r = call(
        &app,
        "GET",
        &format!("/v1/infobases/{id}"),
        &Auth::Infobase(id.clone(), key.clone()),
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["name"], "Склад №1 «Север»");
    let stored: Vec<u8> = sqlx::query_scalar("SELECT key_hash FROM infobases WHERE id = $1::uuid")
        .bind(&id)
        .fetch_one(&env.db)
        .await
        .expect("row");
    assert_ne!(stored, key.as_bytes());
    let code_rows: Vec<(Vec<u8>,)> = sqlx::query_as("SELECT code_hash FROM registration_codes")
        .fetch_all(&env.db)
        .await
        .expect("codes");
    assert!(code_rows.iter().all(|(h,)| h.as_slice() != code.as_bytes()));

    // A second infobase of the same subscriber.
    let second = register(&app, &email, "Second").await;
    assert_eq!(second.subscriber_id, subscriber);
    assert_ne!(second.id, id);
    let counts = env.counts().await;
    assert_eq!(counts["subscribers"], 1);
    assert_eq!(counts["infobases"], 2);
}

#[actix_web::test]
async fn wrong_code_is_denied_and_changes_nothing() {
    let env = TestEnv::default().await;
    let app = env.app().await;
    let email = email("wrong");
    assert_eq!(request_code(&app, &email).await.status, 202);
    let code = code_from_mail(&email).await;
    let before = env.counts().await;
    confirm(&app, &email, &wrong(&code))
        .await
        .expect_error(403, "access_denied");
    // A code for another e-mail does not work either.
    confirm(&app, &parley_tests::email("other"), &code)
        .await
        .expect_error(403, "access_denied");
    assert_eq!(env.counts().await, before);
    // The right code still works after one miss.
    assert_eq!(confirm(&app, &email, &code).await.status, 201);
}

#[actix_web::test]
async fn expired_code_is_denied() {
    let env = TestEnv::default().await;
    let app = env.app().await;
    let email = email("expired");
    assert_eq!(request_code(&app, &email).await.status, 202);
    let code = code_from_mail(&email).await;
    // Age the code instead of waiting ten minutes.
    sqlx::query("UPDATE registration_codes SET expires_at = now() - interval '1 second'")
        .execute(&env.db)
        .await
        .expect("age");
    let before = env.counts().await;
    confirm(&app, &email, &code)
        .await
        .expect_error(403, "access_denied");
    assert_eq!(env.counts().await, before);
}

#[actix_web::test]
async fn reused_code_is_denied() {
    let env = TestEnv::default().await;
    let app = env.app().await;
    let email = email("reuse");
    assert_eq!(request_code(&app, &email).await.status, 202);
    let code = code_from_mail(&email).await;
    assert_eq!(confirm(&app, &email, &code).await.status, 201);
    let before = env.counts().await;
    confirm(&app, &email, &code)
        .await
        .expect_error(403, "access_denied");
    assert_eq!(env.counts().await, before);
    assert_eq!(before["infobases"], 1);
}

#[actix_web::test]
async fn too_many_attempts_kill_the_code() {
    let env = TestEnv::new(|c| c.registration.max_attempts = 3).await;
    let app = env.app().await;
    let email = email("attempts");
    assert_eq!(request_code(&app, &email).await.status, 202);
    let code = code_from_mail(&email).await;
    for _ in 0..3 {
        confirm(&app, &email, &wrong(&code))
            .await
            .expect_error(403, "access_denied");
    }
    let before = env.counts().await;
    confirm(&app, &email, &code)
        .await
        .expect_error(403, "access_denied");
    assert_eq!(env.counts().await, before);
    assert_eq!(before["infobases"], 0);
    assert_eq!(before["subscribers"], 0);
}

#[actix_web::test]
async fn a_new_code_replaces_the_old_one() {
    let env = TestEnv::default().await;
    let app = env.app().await;
    let email = email("replace");
    assert_eq!(request_code(&app, &email).await.status, 202);
    let first = code_from_mail(&email).await;
    assert_eq!(request_code(&app, &email).await.status, 202);
    // Wait for the second mail before reading the newest code.
    for _ in 0..300 {
        if mails_to(&email) >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let second = code_from_mail(&email).await;
    if first != second {
        confirm(&app, &email, &first)
            .await
            .expect_error(403, "access_denied");
    }
    assert_eq!(confirm(&app, &email, &second).await.status, 201);
}

#[actix_web::test]
async fn concurrent_confirms_register_exactly_one_infobase() {
    let env = TestEnv::default().await;
    let app = env.app().await;
    let email = email("race");
    assert_eq!(request_code(&app, &email).await.status, 202);
    let code = code_from_mail(&email).await;
    let attempts = (0..20).map(|_| confirm(&app, &email, &code));
    let results = futures_util::future::join_all(attempts).await;
    let created = results.iter().filter(|r| r.status == 201).count();
    assert_eq!(created, 1, "{results:?}");
    for r in results.iter().filter(|r| r.status != 201) {
        r.expect_error(403, "access_denied");
    }
    let counts = env.counts().await;
    assert_eq!(
        (counts["subscribers"].clone(), counts["infobases"].clone()),
        (json!(1), json!(1))
    );
}

#[actix_web::test]
async fn known_and_unknown_emails_get_the_same_answer() {
    let env = TestEnv::default().await;
    let app = env.app().await;
    let known = email("known");
    register(&app, &known, "Known").await;
    let a = request_code(&app, &known).await;
    let b = request_code(&app, &email("unknown")).await;
    assert_eq!((a.status, &a.body), (b.status, &b.body));
}

#[actix_web::test]
async fn code_requests_are_rate_limited_per_email_and_per_address() {
    let env = TestEnv::new(|c| {
        c.registration.codes_per_email_per_hour = 2;
        c.registration.requests_per_ip_per_hour = 4;
    })
    .await;
    let app = env.app().await;
    let email1 = email("limit");
    for _ in 0..2 {
        let r = call_from(
            &app,
            "10.0.0.1:1",
            "POST",
            CODE,
            &Auth::None,
            json_body(json!({"email": email1})),
        )
        .await;
        assert_eq!(r.status, 202);
    }
    let r = call_from(
        &app,
        "10.0.0.2:1",
        "POST",
        CODE,
        &Auth::None,
        json_body(json!({"email": email1})),
    )
    .await;
    r.expect_error(429, "rate_limited");
    assert!(r.retry_after.is_some());

    // Per address: the fifth request from one address is refused, whatever the e-mail.
    for i in 0..3 {
        let r = call_from(
            &app,
            "10.0.0.3:1",
            "POST",
            CODE,
            &Auth::None,
            json_body(json!({"email": email(&format!("ip{i}"))})),
        )
        .await;
        assert_eq!(r.status, 202, "{r:?}");
    }
    let r = call_from(
        &app,
        "10.0.0.3:1",
        "POST",
        CODE,
        &Auth::None,
        json_body(json!({"email": email("ip3")})),
    )
    .await;
    assert_eq!(r.status, 202, "{r:?}");
    let r = call_from(
        &app,
        "10.0.0.3:1",
        "POST",
        CODE,
        &Auth::None,
        json_body(json!({"email": email("ip4")})),
    )
    .await;
    r.expect_error(429, "rate_limited");
    // Confirms from an address are limited too.
    for _ in 0..4 {
        let r = call_from(
            &app,
            "10.0.0.4:1",
            "POST",
            CONFIRM,
            &Auth::None,
            json_body(json!({"email": email1, "code": "000000", "infobase_name": "x"})),
        )
        .await;
        r.expect_error(403, "access_denied");
    }
    let r = call_from(
        &app,
        "10.0.0.4:1",
        "POST",
        CONFIRM,
        &Auth::None,
        json_body(json!({"email": email1, "code": "000000", "infobase_name": "x"})),
    )
    .await;
    r.expect_error(429, "rate_limited");
}

#[actix_web::test]
async fn forwarded_address_counts_only_from_a_trusted_proxy() {
    let env = TestEnv::new(|c| {
        c.registration.requests_per_ip_per_hour = 1;
        c.http.trusted_proxies = vec!["10.9.9.9".parse().expect("ip")];
    })
    .await;
    let app = env.app().await;
    let from_proxy = |client: &'static str| {
        let app = &app;
        async move {
            let req = actix_web::test::TestRequest::post()
                .uri(CONFIRM)
                .peer_addr("10.9.9.9:5000".parse().expect("addr"))
                .insert_header(("x-forwarded-for", client))
                .set_json(json!({"email": "a@example.com", "code": "000000", "infobase_name": "x"}))
                .to_request();
            actix_web::test::call_service(app, req)
                .await
                .status()
                .as_u16()
        }
    };
    assert_eq!(from_proxy("192.0.2.1").await, 403);
    assert_eq!(
        from_proxy("192.0.2.2").await,
        403,
        "another client behind the same proxy has its own limit"
    );
    assert_eq!(from_proxy("192.0.2.1").await, 429);
}

#[actix_web::test]
async fn mail_server_down_answers_unavailable() {
    let env = TestEnv::new(|c| c.mail.smtp_port = 1).await;
    let app = env.app().await;
    request_code(&app, &email("down"))
        .await
        .expect_error(503, "unavailable");
}
