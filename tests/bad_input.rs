//! Bad input gets its documented error code, never a 500, and changes nothing.

use parley_tests::serde_json::json;
use parley_tests::*;

#[actix_web::test]
async fn malformed_bodies_and_fields() {
    let env = TestEnv::new(|c| c.http.max_body_bytes = 4096).await;
    let app = env.app().await;
    let ib = register(&app, &email("bad"), "Bad").await;
    let users = format!("/v1/infobases/{}/users", ib.id);
    let before = env.counts().await;

    let cases: Vec<(&str, &str, Auth, Body, u16, &str)> = vec![
        (
            "POST",
            "/v1/registration/code",
            Auth::None,
            Body::Raw(b"{\"email\": ".to_vec()),
            400,
            "invalid_json",
        ),
        (
            "POST",
            "/v1/registration/code",
            Auth::None,
            Body::Raw(b"not json".to_vec()),
            400,
            "invalid_json",
        ),
        (
            "POST",
            "/v1/registration/code",
            Auth::None,
            Body::Raw(Vec::new()),
            400,
            "invalid_json",
        ),
        (
            "POST",
            "/v1/registration/code",
            Auth::None,
            Body::Json(json!({})),
            400,
            "invalid_json",
        ),
        (
            "POST",
            "/v1/registration/code",
            Auth::None,
            Body::Json(json!({"email": 5})),
            400,
            "invalid_json",
        ),
        (
            "POST",
            "/v1/registration/code",
            Auth::None,
            Body::Json(json!([1, 2])),
            400,
            "invalid_json",
        ),
        (
            "POST",
            "/v1/registration/code",
            Auth::None,
            Body::Json(json!({"email": "a@b.org", "extra": 1})),
            400,
            "invalid_json",
        ),
        (
            "POST",
            "/v1/registration/code",
            Auth::None,
            Body::Json(json!({"email": "no-at-sign"})),
            400,
            "invalid",
        ),
        (
            "POST",
            "/v1/registration/code",
            Auth::None,
            Body::Json(json!({"email": "a@localhost"})),
            400,
            "invalid",
        ),
        (
            "POST",
            "/v1/registration/code",
            Auth::None,
            Body::Json(json!({"email": "a b@c.org"})),
            400,
            "invalid",
        ),
        (
            "POST",
            "/v1/registration/code",
            Auth::None,
            Body::Json(json!({"email": format!("{}@x.org", "a".repeat(260))})),
            413,
            "too_large",
        ),
        (
            "POST",
            "/v1/registration/code",
            Auth::None,
            Body::Raw(format!("{{\"email\": \"{}\"}}", "a".repeat(5000)).into_bytes()),
            413,
            "too_large",
        ),
        (
            "POST",
            "/v1/registration/confirm",
            Auth::None,
            Body::Json(json!({"email": "a@b.org", "code": "12ab56", "infobase_name": "x"})),
            400,
            "invalid",
        ),
        (
            "POST",
            "/v1/registration/confirm",
            Auth::None,
            Body::Json(json!({"email": "a@b.org", "code": "123456"})),
            400,
            "invalid_json",
        ),
        (
            "POST",
            "/v1/registration/confirm",
            Auth::None,
            Body::Json(json!({"email": "a@b.org", "code": "123456", "infobase_name": "  "})),
            400,
            "invalid",
        ),
        (
            "POST",
            "/v1/registration/confirm",
            Auth::None,
            Body::Json(json!({"email": "a@b.org", "code": "123456", "infobase_name": "a\u{0}b"})),
            400,
            "invalid",
        ),
        (
            "POST",
            "/v1/registration/confirm",
            Auth::None,
            Body::Json(
                json!({"email": "a@b.org", "code": "123456", "infobase_name": "я".repeat(257)}),
            ),
            413,
            "too_large",
        ),
        (
            "POST",
            &users,
            ib.auth(),
            Body::Json(json!({"name": "no id"})),
            400,
            "invalid_json",
        ),
        (
            "POST",
            &users,
            ib.auth(),
            Body::Json(json!({"external_id": "", "name": "x"})),
            400,
            "invalid",
        ),
        (
            "POST",
            &users,
            ib.auth(),
            Body::Json(json!({"external_id": "x", "name": "x", "email": "nope"})),
            400,
            "invalid",
        ),
        (
            "POST",
            &users,
            ib.auth(),
            Body::Json(json!({"external_id": "x", "name": "x", "locked": "yes"})),
            400,
            "invalid_json",
        ),
        (
            "POST",
            &users,
            ib.auth(),
            Body::Json(json!({"external_id": "x", "name": "n".repeat(300)})),
            413,
            "too_large",
        ),
        (
            "POST",
            &users,
            ib.auth(),
            Body::Json(json!({"external_id": "x", "name": "x", "phone": "1".repeat(65)})),
            413,
            "too_large",
        ),
        (
            "POST",
            &users,
            ib.auth(),
            Body::Raw(vec![b' '; 5000]),
            413,
            "too_large",
        ),
    ];
    for (method, path, auth, body, status, code) in cases {
        let shown = match &body {
            Body::Json(v) => v.to_string().chars().take(80).collect::<String>(),
            Body::Raw(b) => String::from_utf8_lossy(&b[..b.len().min(80)]).into_owned(),
        };
        let r = call(&app, method, path, &auth, Some(body)).await;
        assert_eq!(
            (r.status.as_u16(), r.code()),
            (status, code),
            "{method} {path} {shown}: {r:?}"
        );
        assert!(r.body["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    // The messages say what is wrong.
    let r = call(
        &app,
        "POST",
        &users,
        &ib.auth(),
        json_body(json!({"name": "no id"})),
    )
    .await;
    assert!(
        r.body["message"]
            .as_str()
            .is_some_and(|m| m.contains("external_id")),
        "{r:?}"
    );
    let r = call(
        &app,
        "POST",
        &users,
        &ib.auth(),
        json_body(json!({"external_id": "x", "name": "n".repeat(300)})),
    )
    .await;
    assert!(
        r.body["message"]
            .as_str()
            .is_some_and(|m| m.contains("name") && m.contains("256")),
        "{r:?}"
    );
    assert_eq!(
        env.counts().await,
        before,
        "refused requests changed nothing"
    );
}

#[actix_web::test]
async fn credentials_routes_and_parameters() {
    let env = TestEnv::default().await;
    let app = env.app().await;
    let ib = register(&app, &email("auth"), "Auth").await;
    let me = format!("/v1/infobases/{}", ib.id);
    let cases: Vec<(&str, String, Auth, u16, &str)> = vec![
        ("GET", me.clone(), Auth::None, 401, "unauthenticated"),
        (
            "GET",
            me.clone(),
            Auth::Raw("Basic !!!notbase64".into()),
            401,
            "unauthenticated",
        ),
        (
            "GET",
            me.clone(),
            Auth::Raw("Basic bm9jb2xvbg==".into()),
            401,
            "unauthenticated",
        ),
        (
            "GET",
            me.clone(),
            Auth::Raw(format!("Bearer {}", ib.key)),
            401,
            "unauthenticated",
        ),
        (
            "GET",
            me.clone(),
            Auth::Raw(format!("Basic {}", "A".repeat(2000))),
            401,
            "unauthenticated",
        ),
        (
            "GET",
            me.clone(),
            Auth::Infobase(ib.id.clone(), "pbk_wrong".into()),
            403,
            "access_denied",
        ),
        (
            "GET",
            me.clone(),
            Auth::Infobase("not-a-uuid".into(), ib.key.clone()),
            403,
            "access_denied",
        ),
        (
            "GET",
            me.clone(),
            Auth::Infobase(uuid::Uuid::new_v4().to_string(), ib.key.clone()),
            403,
            "access_denied",
        ),
        (
            "GET",
            "/v1/infobases/not-a-uuid".into(),
            ib.auth(),
            403,
            "access_denied",
        ),
        (
            "GET",
            format!("{me}/users/not-a-uuid"),
            ib.auth(),
            404,
            "not_found",
        ),
        (
            "GET",
            format!("{me}/users/{}", uuid::Uuid::new_v4()),
            ib.auth(),
            404,
            "not_found",
        ),
        (
            "POST",
            format!("{me}/users/{}/tokens", uuid::Uuid::new_v4()),
            ib.auth(),
            404,
            "not_found",
        ),
        (
            "GET",
            format!("{me}/users?limit=0"),
            ib.auth(),
            400,
            "invalid",
        ),
        (
            "GET",
            format!("{me}/users?limit=5000"),
            ib.auth(),
            400,
            "invalid",
        ),
        (
            "GET",
            format!("{me}/users?limit=abc"),
            ib.auth(),
            400,
            "invalid",
        ),
        (
            "GET",
            format!("{me}/users?after=xyz"),
            ib.auth(),
            400,
            "invalid",
        ),
        (
            "GET",
            format!("{me}/users?bogus=1"),
            ib.auth(),
            400,
            "invalid",
        ),
        ("GET", "/v1/nothing".into(), Auth::None, 404, "not_found"),
        ("GET", "/nope/".into(), Auth::None, 404, "not_found"),
        (
            "PUT",
            "/healthz".into(),
            Auth::None,
            405,
            "method_not_allowed",
        ),
        (
            "GET",
            "/v1/registration/code".into(),
            Auth::None,
            405,
            "method_not_allowed",
        ),
        ("PATCH", me.clone(), ib.auth(), 405, "method_not_allowed"),
    ];
    for (method, path, auth, status, code) in cases {
        let r = call(&app, method, &path, &auth, None).await;
        assert_eq!(
            (r.status.as_u16(), r.code()),
            (status, code),
            "{method} {path} {auth:?}: {r:?}"
        );
    }
}

#[actix_web::test]
async fn health_readiness_and_openapi() {
    let env = TestEnv::default().await;
    let app = env.app().await;
    let r = call(&app, "GET", "/healthz", &Auth::None, None).await;
    assert_eq!(
        (r.status.as_u16(), r.body["status"].as_str()),
        (200, Some("ok"))
    );
    let r = call(&app, "GET", "/readyz", &Auth::None, None).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["components"]["database"]["status"], "ready");

    let r = call(&app, "GET", parley_gateway::OPENAPI_PATH, &Auth::None, None).await;
    assert_eq!(r.status, 200);
    let paths = r.body["paths"].as_object().expect("paths");
    for p in [
        "/v1/registration/code",
        "/v1/registration/confirm",
        "/v1/infobases/{infobase_id}",
        "/v1/infobases/{infobase_id}/users",
        "/v1/infobases/{infobase_id}/users/{user_id}",
        "/v1/infobases/{infobase_id}/users/{user_id}/tokens",
        "/v1/me",
        "/healthz",
        "/readyz",
    ] {
        assert!(paths.contains_key(p), "OpenAPI lacks {p}");
    }
    let codes = &r.body["components"]["schemas"]["ErrorCode"];
    assert!(codes.to_string().contains("access_denied"), "{codes}");
}

#[actix_web::test]
async fn database_down_answers_unavailable_and_readyz_says_so() {
    // A database nobody listens on.
    let env = TestEnv::default().await;
    let mut cfg = env.cfg.clone();
    cfg.database.url = "postgres://parley@127.0.0.1:1/none".into();
    cfg.database.acquire_timeout_secs = 1;
    let store = parley_server::store(&cfg).expect("store");
    let state = parley_server::app_state(&cfg, store).await.expect("state");
    let app = actix_web::test::init_service(parley_gateway::app(state)).await;
    let r = call(&app, "GET", "/readyz", &Auth::None, None).await;
    assert_eq!(r.status, 503);
    assert_eq!(r.body["components"]["database"]["status"], "unavailable");
    // The public answer names no internal address or driver error.
    let text = r.body.to_string();
    assert!(
        !text.contains("127.0.0.1") && !text.contains("refused") && !text.contains(":1"),
        "{text}"
    );
    let r = call(
        &app,
        "POST",
        "/v1/registration/code",
        &Auth::None,
        json_body(json!({"email": email("x")})),
    )
    .await;
    r.expect_error(503, "unavailable");
}

/// Every answer tells browsers not to guess its type, errors included; the
/// web client's pages carry a Content-Security-Policy whose frame-ancestors
/// are the configured ERP origins.
#[actix_web::test]
async fn every_answer_says_nosniff_and_pages_carry_a_csp() {
    use actix_web::test::{call_service, TestRequest};
    let env = TestEnv::new(|c| {
        c.web.frame_ancestors = vec!["https://erp.example.com".into()];
    })
    .await;
    let app = env.app().await;
    for (method, path) in [
        ("GET", "/healthz"),
        ("GET", "/v1/openapi.json"),
        ("GET", "/v1/me"),
        ("GET", "/no/such/route"),
        ("POST", "/v1/registration/code"),
        ("GET", "/"),
        ("GET", "/app.js"),
    ] {
        let req = TestRequest::default()
            .method(actix_web::http::Method::from_bytes(method.as_bytes()).expect("method"))
            .uri(path)
            .to_request();
        let res = call_service(&app, req).await;
        assert_eq!(
            res.headers()
                .get("x-content-type-options")
                .and_then(|v| v.to_str().ok()),
            Some("nosniff"),
            "{method} {path} ({})",
            res.status()
        );
    }
    let res = call_service(&app, TestRequest::get().uri("/embed/context").to_request()).await;
    let csp = res
        .headers()
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(
        csp.contains("frame-ancestors 'self' https://erp.example.com"),
        "{csp}"
    );
}
