//! Files on a real S3 server (Garage, started by scripts/test.sh) and on the
//! local-directory backend: the same suite runs on both.

use parley_files::StorageKind;
use parley_tests::serde_json::{json, Value};
use parley_tests::*;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;

fn sha_hex(b: &[u8]) -> String {
    parley_files::hex(&Sha256::digest(b))
}

/// The independent S3 client (boto3) of tests/s3tool.py.
fn s3tool(args: &[&str]) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("s3tool.py");
    let out = Command::new("/usr/bin/python3")
        .arg(script)
        .args(args)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "s3tool {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

struct Ctx {
    env: TestEnv,
    kind: StorageKind,
    bucket: String,
    ib: Ib,
    conv: String,
    alice: String,
    alice_id: String,
    bob: String,
    eve: String,
    eve_id: String,
}

fn use_backend(c: &mut parley_server::config::Config, kind: StorageKind, bucket: &str) {
    c.files.backend = kind;
    if kind == StorageKind::S3 {
        let var = |k: &str| {
            std::env::var(k).unwrap_or_else(|_| panic!("{k} not set: run scripts/test.sh"))
        };
        c.files.s3_endpoint = var("PARLEY_TEST_S3_ENDPOINT");
        c.files.s3_region = var("PARLEY_TEST_S3_REGION");
        c.files.s3_access_key = var("PARLEY_TEST_S3_KEY");
        c.files.s3_secret_key = var("PARLEY_TEST_S3_SECRET");
        c.files.s3_bucket = bucket.to_owned();
        c.files.s3_force_path_style = true;
    }
}

async fn ctx(kind: StorageKind, tweak: impl FnOnce(&mut parley_server::config::Config)) -> Ctx {
    let bucket = format!("t-{}", &uuid::Uuid::new_v4().simple().to_string()[..20]);
    if kind == StorageKind::S3 {
        s3tool(&["create-bucket", &bucket]);
    }
    let env = TestEnv::new(|c| {
        use_backend(c, kind, &bucket);
        tweak(c);
    })
    .await;
    let app = env.app().await;
    let ib = register(&app, &email("files"), "Files").await;
    let alice_id = user(&app, &ib, "alice").await;
    let bob_id = user(&app, &ib, "bob").await;
    let eve_id = user(&app, &ib, "eve").await;
    let r = call(
        &app,
        "POST",
        &format!("/v1/infobases/{}/conversations", ib.id),
        &ib.auth(),
        json_body(json!({"title": "docs", "members": [alice_id, bob_id]})),
    )
    .await;
    assert_eq!(r.status, 201, "{r:?}");
    let conv = r.body["id"].as_str().expect("id").to_owned();
    Ctx {
        alice: token(&app, &ib, &alice_id).await,
        bob: token(&app, &ib, &bob_id).await,
        eve: token(&app, &ib, &eve_id).await,
        eve_id,
        alice_id,
        env,
        kind,
        bucket,
        ib,
        conv,
    }
}

impl Ctx {
    /// Every object the storage holds (bucket keys, or files under the
    /// local directory), the probe aside.
    fn objects(&self) -> Vec<String> {
        match self.kind {
            StorageKind::S3 => s3tool(&["keys", &self.bucket])
                .lines()
                .filter(|k| !k.is_empty() && !k.starts_with(".parley-probe"))
                .map(str::to_owned)
                .collect(),
            StorageKind::Local => {
                fn walk(p: &Path, out: &mut Vec<String>) {
                    if let Ok(rd) = std::fs::read_dir(p) {
                        for e in rd.flatten() {
                            let path = e.path();
                            if path.is_dir() {
                                walk(&path, out);
                            } else if !path.ends_with(".parley-probe") {
                                out.push(path.display().to_string());
                            }
                        }
                    }
                }
                let mut out = Vec::new();
                walk(&PathBuf::from(&self.env.cfg.files.local_dir), &mut out);
                out
            }
        }
    }

    async fn file_rows(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM files")
            .fetch_one(&self.env.db)
            .await
            .expect("count")
    }

    /// Announces and uploads `bytes` as alice; returns the file id.
    async fn upload<S, B>(
        &self,
        app: &S,
        name: &str,
        ctype: &str,
        bytes: &[u8],
    ) -> Result<String, Resp>
    where
        S: actix_web::dev::Service<
            actix_http::Request,
            Response = actix_web::dev::ServiceResponse<B>,
            Error = actix_web::Error,
        >,
        B: actix_web::body::MessageBody,
    {
        let r = call(app, "POST", "/v1/files", &Auth::Token(self.alice.clone()),
            json_body(json!({"conversation_id": self.conv, "name": name, "size": bytes.len(), "content_type": ctype, "sha256": sha_hex(bytes)}))).await;
        if r.status != 201 {
            return Err(r);
        }
        let id = r.body["file"]["id"].as_str().expect("id").to_owned();
        let upload = &r.body["upload"];
        if upload["direct"] == true {
            // Straight to the bucket with the presigned URL, as a browser would.
            put_to(upload, bytes, "upload");
            let r = call(
                app,
                "POST",
                &format!("/v1/files/{id}/complete"),
                &Auth::Token(self.alice.clone()),
                None,
            )
            .await;
            if r.status != 200 {
                return Err(r);
            }
        } else {
            let r = call(
                app,
                "PUT",
                &format!("/v1/files/{id}/content"),
                &Auth::Token(self.alice.clone()),
                Some(Body::Raw(bytes.to_vec())),
            )
            .await;
            if r.status != 200 {
                return Err(r);
            }
            assert_eq!(r.body["state"], "uploaded");
        }
        Ok(id)
    }

    /// Posts a message by alice carrying the files.
    async fn attach<S, B>(&self, app: &S, files: &[&str]) -> Resp
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
            &format!(
                "/v1/infobases/{}/conversations/{}/messages",
                self.ib.id, self.conv
            ),
            &self.ib.auth(),
            json_body(
                json!({"author_id": self.alice_id, "text": "see attached", "attachments": files}),
            ),
        )
        .await
    }
}

/// Downloads as `token`: follows a redirect to the bucket with the
/// independent client, or reads the streamed body.
async fn download<S, B>(app: &S, id: &str, token: &str, range: Option<&str>) -> (u16, Vec<u8>)
where
    S: actix_web::dev::Service<
        actix_http::Request,
        Response = actix_web::dev::ServiceResponse<B>,
        Error = actix_web::Error,
    >,
    B: actix_web::body::MessageBody,
{
    let mut req = actix_web::test::TestRequest::get()
        .uri(&format!("/v1/files/{id}/content"))
        .insert_header(("authorization", format!("Bearer {token}")));
    if let Some(r) = range {
        req = req.insert_header(("range", r));
    }
    let res = actix_web::test::call_service(app, req.to_request()).await;
    let status = res.status().as_u16();
    if status == 302 {
        let url = res
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .expect("location")
            .to_owned();
        let out = std::env::temp_dir().join(format!("download-{}", uuid::Uuid::new_v4()));
        s3tool(&["get-url", &url, &out.display().to_string()]);
        let bytes = std::fs::read(&out).expect("downloaded");
        let _ = std::fs::remove_file(out);
        return (302, bytes);
    }
    (status, actix_web::test::read_body(res).await.to_vec())
}

fn sample(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 % 251) as u8).collect()
}

async fn round_trip(kind: StorageKind) {
    let c = ctx(kind, |_| {}).await;
    let app = c.env.app().await;
    let bytes = sample(300_000);
    let id = c
        .upload(&app, "Счёт №5.pdf", "application/pdf", &bytes)
        .await
        .expect("upload");
    // Before the message is committed only the owner can read it.
    assert_eq!(download(&app, &id, &c.bob, None).await.0, 403);
    let r = c.attach(&app, &[&id]).await;
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(r.body["attachments"][0]["name"], "Счёт №5.pdf");
    // Bob, a member, downloads the same bytes.
    let (status, got) = download(&app, &id, &c.bob, None).await;
    assert!(status == 200 || status == 302, "{status}");
    assert_eq!(sha_hex(&got), sha_hex(&bytes));
    // Streamed through Parley with a range too.
    let mut req = actix_web::test::TestRequest::get()
        .uri(&format!("/v1/files/{id}/content?redirect=false"))
        .insert_header(("authorization", format!("Bearer {}", c.bob)))
        .insert_header(("range", "bytes=1000-1999"))
        .to_request();
    let res = actix_web::test::call_service(
        &app,
        std::mem::replace(
            &mut req,
            actix_web::test::TestRequest::default().to_request(),
        ),
    )
    .await;
    assert_eq!(res.status().as_u16(), 206);
    assert_eq!(
        res.headers()
            .get("content-range")
            .and_then(|v| v.to_str().ok()),
        Some("bytes 1000-1999/300000")
    );
    assert_eq!(
        actix_web::test::read_body(res).await.to_vec(),
        bytes[1000..2000].to_vec()
    );
    // The stored object is checked by a client that is not ours.
    let rows: Vec<(String,)> = sqlx::query_as("SELECT storage_key FROM files")
        .fetch_all(&c.env.db)
        .await
        .expect("rows");
    match kind {
        StorageKind::S3 => assert_eq!(s3tool(&["sha256", &c.bucket, &rows[0].0]), sha_hex(&bytes)),
        StorageKind::Local => {
            let on_disk = std::fs::read(Path::new(&c.env.cfg.files.local_dir).join(&rows[0].0))
                .expect("file on disk");
            assert_eq!(sha_hex(&on_disk), sha_hex(&bytes));
        }
    }
    // Metadata.
    let r = call(
        &app,
        "GET",
        &format!("/v1/files/{id}"),
        &Auth::Token(c.bob.clone()),
        None,
    )
    .await;
    assert_eq!(
        (r.body["state"].as_str(), r.body["size"].as_i64()),
        (Some("attached"), Some(300_000))
    );
}

async fn refusals_leave_nothing(kind: StorageKind) {
    let c = ctx(kind, |cfg| {
        cfg.files.max_file_bytes = 1_000_000;
        cfg.files.quota_bytes_per_subscriber = 1_500_000;
    })
    .await;
    let app = c.env.app().await;
    let alice = Auth::Token(c.alice.clone());
    let announce = |size: u64, ctype: &str, sha: String| json!({"conversation_id": c.conv, "name": "f.bin", "size": size, "content_type": ctype, "sha256": sha});
    // Declared too large.
    let r = call(
        &app,
        "POST",
        "/v1/files",
        &alice,
        json_body(announce(
            2_000_000,
            "application/octet-stream",
            sha_hex(b"x"),
        )),
    )
    .await;
    r.expect_error(413, "too_large");
    // Forbidden type.
    let r = call(
        &app,
        "POST",
        "/v1/files",
        &alice,
        json_body(announce(10, "application/x-msdownload", sha_hex(b"x"))),
    )
    .await;
    r.expect_error(415, "unsupported_type");
    // Not a member (eve).
    let r = call(
        &app,
        "POST",
        "/v1/files",
        &Auth::Token(c.eve.clone()),
        json_body(announce(10, "text/plain", sha_hex(b"x"))),
    )
    .await;
    r.expect_error(403, "access_denied");
    // Wrong checksum: the bytes differ from the declaration.
    let good = sample(50_000);
    let mut bad = good.clone();
    bad[10] ^= 1;
    let r = call(
        &app,
        "POST",
        "/v1/files",
        &alice,
        json_body(announce(
            good.len() as u64,
            "application/octet-stream",
            sha_hex(&good),
        )),
    )
    .await;
    assert_eq!(r.status, 201, "{r:?}");
    let id = r.body["file"]["id"].as_str().expect("id").to_owned();
    if r.body["upload"]["direct"] == true {
        let tmp = std::env::temp_dir().join(format!("bad-{id}"));
        std::fs::write(&tmp, &bad).expect("tmp");
        let url = r.body["upload"]["url"].as_str().expect("url").to_owned();
        s3tool(&[
            "put-url",
            &url,
            &tmp.display().to_string(),
            "content-type=application/octet-stream",
        ]);
        let r = call(
            &app,
            "POST",
            &format!("/v1/files/{id}/complete"),
            &alice,
            None,
        )
        .await;
        r.expect_error(400, "checksum_mismatch");
    } else {
        let r = call(
            &app,
            "PUT",
            &format!("/v1/files/{id}/content"),
            &alice,
            Some(Body::Raw(bad.clone())),
        )
        .await;
        r.expect_error(400, "checksum_mismatch");
    }
    // More bytes than declared, through Parley.
    let r = call(
        &app,
        "POST",
        "/v1/files",
        &alice,
        json_body(announce(
            100,
            "application/octet-stream",
            sha_hex(&good[..100]),
        )),
    )
    .await;
    let id2 = r.body["file"]["id"].as_str().expect("id").to_owned();
    let r = call(
        &app,
        "PUT",
        &format!("/v1/files/{id2}/content"),
        &alice,
        Some(Body::Raw(good.clone())),
    )
    .await;
    r.expect_error(413, "too_large");
    assert_eq!(c.file_rows().await, 0, "no row left");
    assert!(c.objects().is_empty(), "no object left: {:?}", c.objects());
    // Over quota: 900 kB twice exceeds 1.5 MB.
    let big = sample(900_000);
    c.upload(&app, "a.bin", "application/octet-stream", &big)
        .await
        .expect("first fits");
    let r = c
        .upload(&app, "b.bin", "application/octet-stream", &big)
        .await
        .expect_err("over quota");
    r.expect_error(403, "quota_exceeded");
    assert_eq!(c.file_rows().await, 1);
    assert_eq!(c.objects().len(), 1);
    // An attachment must be an uploaded file of the author in this conversation.
    let r = c.attach(&app, &[&uuid::Uuid::new_v4().to_string()]).await;
    r.expect_error(400, "invalid");
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM messages")
        .fetch_one(&c.env.db)
        .await
        .expect("count");
    assert_eq!(n, 0, "the refused message was not stored");
}

async fn only_readers_download(kind: StorageKind) {
    let c = ctx(kind, |_| {}).await;
    let app = c.env.app().await;
    let id = c
        .upload(&app, "secret.txt", "text/plain", b"top secret")
        .await
        .expect("upload");
    assert_eq!(c.attach(&app, &[&id]).await.status, 201);
    let (status, body) = download(&app, &id, &c.eve, None).await;
    assert_eq!(status, 403);
    let v: Value = parley_tests::serde_json::from_slice(&body).expect("json");
    assert_eq!(v["code"], "access_denied");
    let r = call(
        &app,
        "GET",
        &format!("/v1/files/{id}"),
        &Auth::Token(c.eve.clone()),
        None,
    )
    .await;
    r.expect_error(403, "access_denied");
    let r = call(&app, "GET", &format!("/v1/files/{id}"), &Auth::None, None).await;
    r.expect_error(401, "unauthenticated");
}

/// A forwarded message's attachments are the original's: readers of the
/// copy download them; a reader of neither still cannot; the files keep
/// pointing at the original.
async fn forwarded_files_are_readable_where_forwarded(kind: StorageKind) {
    let c = ctx(kind, |_| {}).await;
    let app = c.env.app().await;
    let id = c
        .upload(&app, "report.txt", "text/plain", b"quarterly")
        .await
        .expect("upload");
    let r = c.attach(&app, &[&id]).await;
    assert_eq!(r.status, 201, "{r:?}");
    let original = r.body["id"].as_str().expect("id").to_owned();
    let carol_id = user(&app, &c.ib, "carol").await;
    let carol = token(&app, &c.ib, &carol_id).await;
    // Alice and Eve talk elsewhere; Carol is in neither.
    let r = call(
        &app,
        "POST",
        &format!("/v1/infobases/{}/conversations", c.ib.id),
        &c.ib.auth(),
        json_body(json!({"title": "eve and alice", "members": [c.alice_id, c.eve_id]})),
    )
    .await;
    assert_eq!(r.status, 201, "{r:?}");
    let other = r.body["id"].as_str().expect("id").to_owned();
    assert_eq!(download(&app, &id, &c.eve, None).await.0, 403);
    let r = call(
        &app,
        "POST",
        &format!("/v1/infobases/{}/conversations/{other}/messages", c.ib.id),
        &c.ib.auth(),
        json_body(json!({"author_id": c.alice_id,
                         "forward": {"conversation_id": c.conv, "message_id": original}})),
    )
    .await;
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(r.body["text"], "see attached");
    assert_eq!(r.body["attachments"][0]["id"], id.as_str());
    assert_eq!(r.body["forwarded"]["message_id"], original.as_str());
    assert_eq!(r.body["forwarded"]["conversation_title"], "docs");
    // Streamed (200) or redirected to the bucket (302), the bytes arrive.
    let (status, body) = download(&app, &id, &c.eve, None).await;
    assert!(status == 200 || status == 302, "{status}");
    assert_eq!(body, b"quarterly");
    assert_eq!(download(&app, &id, &carol, None).await.0, 403);
    let home: Option<uuid::Uuid> =
        sqlx::query_scalar("SELECT message_id FROM files WHERE id = $1::uuid")
            .bind(&id)
            .fetch_one(&c.env.db)
            .await
            .expect("file row");
    assert_eq!(home.map(|u| u.to_string()), Some(original));
}

/// A conversation's picture: an image uploaded to it, set by its owner
/// infobase; its members download it, others do not; null removes it.
async fn a_picture_is_an_image_of_the_conversation(kind: StorageKind) {
    let c = ctx(kind, |_| {}).await;
    let app = c.env.app().await;
    let path = format!("/v1/infobases/{}/conversations/{}", c.ib.id, c.conv);
    let auth = c.ib.auth();
    let patch = |picture: Value| {
        call(
            &app,
            "PATCH",
            &path,
            &auth,
            json_body(json!({ "picture": picture })),
        )
    };
    let text = c
        .upload(&app, "notes.txt", "text/plain", b"not an image")
        .await
        .expect("upload");
    let r = patch(json!(text)).await;
    r.expect_error(400, "invalid");
    let png = c
        .upload(&app, "logo.png", "image/png", b"\x89PNG fake")
        .await
        .expect("upload");
    let r = patch(json!(png)).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["picture"], png.as_str());
    assert_eq!(r.body["title"], "docs", "the title stays");
    let (status, body) = download(&app, &png, &c.bob, None).await;
    assert!(status == 200 || status == 302, "{status}");
    assert_eq!(body, b"\x89PNG fake");
    assert_eq!(download(&app, &png, &c.eve, None).await.0, 403);
    // Used once: the same file cannot be attached to a message now.
    assert_eq!(c.attach(&app, &[&png]).await.status, 400);
    let r = patch(json!(null)).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.body.get("picture").is_none(), "{r:?}");
}

async fn cleanup_removes_object_and_row(kind: StorageKind) {
    let c = ctx(kind, |cfg| cfg.files.retention_days = 30).await;
    let app = c.env.app().await;
    // An upload never completed.
    let r = call(&app, "POST", "/v1/files", &Auth::Token(c.alice.clone()),
        json_body(json!({"conversation_id": c.conv, "name": "half.bin", "size": 10, "content_type": "application/octet-stream", "sha256": sha_hex(b"0123456789")}))).await;
    assert_eq!(r.status, 201);
    // An old attached file.
    let id = c
        .upload(&app, "old.txt", "text/plain", b"old news")
        .await
        .expect("upload");
    assert_eq!(c.attach(&app, &[&id]).await.status, 201);
    // A fresh one that must stay.
    let keep = c
        .upload(&app, "new.txt", "text/plain", b"fresh")
        .await
        .expect("upload");
    assert_eq!(c.objects().len(), 2);
    sqlx::query(
        "UPDATE files SET expires_at = now() - interval '1 minute' WHERE state = 'pending'",
    )
    .execute(&c.env.db)
    .await
    .expect("age");
    sqlx::query("UPDATE files SET created_at = now() - interval '31 days' WHERE id = $1::uuid")
        .bind(&id)
        .execute(&c.env.db)
        .await
        .expect("age");
    let gone = c
        .env
        .state
        .svc
        .file_housekeeping()
        .await
        .expect("housekeeping");
    assert_eq!(gone, 2);
    let left: Vec<(String,)> = sqlx::query_as("SELECT id::text FROM files")
        .fetch_all(&c.env.db)
        .await
        .expect("rows");
    assert_eq!(left, vec![(keep,)]);
    assert_eq!(c.objects().len(), 1);
}

async fn unreachable_storage_is_unavailable_and_chat_goes_on(kind: StorageKind) {
    let c = ctx(kind, |cfg| match cfg.files.backend {
        StorageKind::S3 => {
            cfg.files.s3_endpoint = "http://127.0.0.1:1".into();
            cfg.files.s3_timeout_secs = 2;
        }
        StorageKind::Local => cfg.files.local_dir = "/proc/parley-cannot-write-here".into(),
    })
    .await;
    let app = c.env.app().await;
    let r = call(&app, "POST", "/v1/files", &Auth::Token(c.alice.clone()),
        json_body(json!({"conversation_id": c.conv, "name": "x.txt", "size": 1, "content_type": "text/plain", "sha256": sha_hex(b"x")}))).await;
    if kind == StorageKind::S3 {
        // Presigning needs no network; the upload itself is where S3 is needed.
        assert!(r.status == 201 || r.code() == "unavailable", "{r:?}");
        if r.status == 201 {
            let id = r.body["file"]["id"].as_str().expect("id");
            let r = call(
                &app,
                "PUT",
                &format!("/v1/files/{id}/content"),
                &Auth::Token(c.alice.clone()),
                Some(Body::Raw(b"x".to_vec())),
            )
            .await;
            r.expect_error(503, "unavailable");
            assert!(
                r.body["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("127.0.0.1:1")),
                "{r:?}"
            );
        }
    } else {
        let r = call(
            &app,
            "PUT",
            &format!(
                "/v1/files/{}/content",
                r.body["file"]["id"].as_str().unwrap_or("x")
            ),
            &Auth::Token(c.alice.clone()),
            Some(Body::Raw(b"x".to_vec())),
        )
        .await;
        r.expect_error(503, "unavailable");
    }
    let r = call(&app, "GET", "/readyz", &Auth::None, None).await;
    assert_eq!(r.status, 503);
    assert_eq!(r.body["components"]["storage"]["status"], "unavailable");
    assert_eq!(r.body["components"]["database"]["status"], "ready");
    // Chat goes on.
    let r = call(
        &app,
        "POST",
        &format!(
            "/v1/infobases/{}/conversations/{}/messages",
            c.ib.id, c.conv
        ),
        &c.ib.auth(),
        json_body(json!({"author_id": c.alice_id, "text": "files are down, chat is not"})),
    )
    .await;
    assert_eq!(r.status, 201, "{r:?}");
}

/// `<img src>` and download links carry a short-lived signed link, never
/// the session token: for this file only, for readers only, dead with the
/// token; a token in the URL is no credential.
async fn signed_links_replace_tokens_in_urls(kind: StorageKind) {
    let c = ctx(kind, |_| {}).await;
    let app = c.env.app().await;
    let bytes = b"picture bytes";
    let id = c
        .upload(&app, "p.png", "image/png", bytes)
        .await
        .expect("upload");
    let other = c
        .upload(&app, "q.png", "image/png", b"other")
        .await
        .expect("upload");
    assert_eq!(c.attach(&app, &[&id, &other]).await.status, 201);
    let link_of = |token: &str, file: &str| {
        let (token, file) = (token.to_owned(), file.to_owned());
        let app = &app;
        async move {
            call(
                app,
                "POST",
                &format!("/v1/files/{file}/link"),
                &Auth::Token(token),
                None,
            )
            .await
        }
    };
    let r = link_of(&c.bob, &id).await;
    assert_eq!(r.status, 200, "{r:?}");
    let url = r.body["url"].as_str().expect("url").to_owned();
    assert!(
        url.starts_with(&format!("/v1/files/{id}/content?link=")),
        "{url}"
    );
    assert!(!url.contains(&c.bob), "the token is in the link");
    // Fetched with no header at all.
    let get = |u: String| {
        let app = &app;
        async move {
            let req = actix_web::test::TestRequest::get().uri(&u).to_request();
            let res = actix_web::test::call_service(app, req).await;
            res.status().as_u16()
        }
    };
    let ok = if kind == StorageKind::S3 { 302 } else { 200 };
    assert_eq!(get(url.clone()).await, ok);
    assert_eq!(get(format!("{url}&redirect=false")).await, 200);
    // Not for another file, not tampered with.
    let link = url.split("link=").nth(1).expect("link").to_owned();
    assert_eq!(
        get(format!("/v1/files/{other}/content?link={link}")).await,
        403
    );
    let mut forged = link.clone();
    forged.pop();
    forged.push(if link.ends_with('A') { 'B' } else { 'A' });
    assert_eq!(
        get(format!("/v1/files/{id}/content?link={forged}")).await,
        403
    );
    // Eve may not read the file, so she gets no link.
    link_of(&c.eve, &id)
        .await
        .expect_error(403, "access_denied");
    // The session token in the URL is no credential any more.
    assert_eq!(
        get(format!("/v1/files/{id}/content?token={}", c.bob)).await,
        401
    );
    // Expired links and links of a revoked token are dead.
    let exp_link = {
        let mut p: Vec<String> = link.split('.').map(str::to_owned).collect();
        p[1] = "1".into();
        p.join(".")
    };
    assert_eq!(
        get(format!("/v1/files/{id}/content?link={exp_link}")).await,
        403
    );
    sqlx::query("UPDATE session_tokens SET revoked_at = now()")
        .execute(&c.env.db)
        .await
        .expect("revoke");
    assert_eq!(get(url).await, 403);
}

macro_rules! on_both {
    ($($name:ident),*) => {
        mod s3 {
            $( #[actix_web::test] async fn $name() { super::$name(parley_files::StorageKind::S3).await } )*
        }
        mod local {
            $( #[actix_web::test] async fn $name() { super::$name(parley_files::StorageKind::Local).await } )*
        }
    };
}

on_both!(
    round_trip,
    a_picture_is_an_image_of_the_conversation,
    forwarded_files_are_readable_where_forwarded,
    refusals_leave_nothing,
    only_readers_download,
    cleanup_removes_object_and_row,
    unreachable_storage_is_unavailable_and_chat_goes_on,
    signed_links_replace_tokens_in_urls
);

/// Puts `bytes` to a presigned upload as a browser would.
fn put_to(upload: &Value, bytes: &[u8], tag: &str) {
    let tmp = std::env::temp_dir().join(format!("put-{tag}-{}", uuid::Uuid::new_v4().simple()));
    std::fs::write(&tmp, bytes).expect("tmp");
    let mut args = vec![
        "put-url".to_owned(),
        upload["url"].as_str().expect("url").to_owned(),
        tmp.display().to_string(),
    ];
    for h in upload["headers"].as_array().expect("headers") {
        let (k, v) = (h[0].as_str().unwrap_or(""), h[1].as_str().unwrap_or(""));
        if !k.eq_ignore_ascii_case("content-length") {
            args.push(format!("{k}={v}"));
        }
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    s3tool(&refs);
    let _ = std::fs::remove_file(tmp);
}

/// An upload URL outlives neither its file nor its purpose: bytes sent
/// through it after the file was deleted do not survive the sweep, and
/// bytes sent after the file was verified change nothing.
#[actix_web::test]
async fn upload_urls_write_nothing_that_survives() {
    let c = ctx(StorageKind::S3, |_| {}).await;
    let app = c.env.app().await;
    let alice = Auth::Token(c.alice.clone());
    let body = b"the real contract";
    let announce = json!({"conversation_id": c.conv, "name": "c.txt", "size": body.len(),
        "content_type": "text/plain", "sha256": sha_hex(body)});
    // Short-lived: five minutes by default.
    let r = call(
        &app,
        "POST",
        "/v1/files",
        &alice,
        json_body(announce.clone()),
    )
    .await;
    assert_eq!(r.status, 201, "{r:?}");
    let url = r.body["upload"]["url"].as_str().expect("url").to_owned();
    assert!(url.contains("X-Amz-Expires=300"), "{url}");
    // Deleted before any upload; the URL is then used anyway.
    let id = r.body["file"]["id"].as_str().expect("id").to_owned();
    let upload = r.body["upload"].clone();
    let r = call(&app, "DELETE", &format!("/v1/files/{id}"), &alice, None).await;
    assert_eq!(r.status, 204, "{r:?}");
    put_to(&upload, body, "late");
    assert_eq!(c.objects().len(), 1, "the late upload landed");
    c.env.state.svc.file_housekeeping().await.expect("sweep");
    assert!(c.objects().is_empty(), "survived: {:?}", c.objects());

    // Verified, then the same URL is used to overwrite it.
    let r = call(&app, "POST", "/v1/files", &alice, json_body(announce)).await;
    let id = r.body["file"]["id"].as_str().expect("id").to_owned();
    let upload = r.body["upload"].clone();
    put_to(&upload, body, "first");
    let r = call(
        &app,
        "POST",
        &format!("/v1/files/{id}/complete"),
        &alice,
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    let forged = b"the fake contract";
    assert_eq!(forged.len(), body.len());
    put_to(&upload, forged, "forged");
    c.env.state.svc.file_housekeeping().await.expect("sweep");
    assert_eq!(c.objects().len(), 1, "{:?}", c.objects());
    assert_eq!(c.attach(&app, &[&id]).await.status, 201);
    let (status, got) = download(&app, &id, &c.alice, None).await;
    assert_eq!(status, 302, "from the bucket");
    assert_eq!(got, body, "the verified bytes were overwritten");
}

/// A file far above the multipart threshold, streamed through a real node
/// into Garage: the node's memory must stay flat (about one part).
#[actix_web::test]
async fn streamed_upload_keeps_the_servers_memory_flat() {
    use parley_tests::cluster::Cluster;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const SIZE: usize = 256 * 1024 * 1024;
    const CHUNK: usize = 1024 * 1024;
    let c = ctx(StorageKind::S3, |cfg| cfg.files.max_file_bytes = 1 << 30).await;
    let app = c.env.app().await;
    let chunk_of =
        |i: usize| -> Vec<u8> { (0..CHUNK).map(|j| ((i * 7 + j * 13) % 251) as u8).collect() };
    let mut h = Sha256::new();
    for i in 0..SIZE / CHUNK {
        h.update(chunk_of(i));
    }
    let sha = parley_files::hex(&h.finalize());
    let r = call(&app, "POST", "/v1/files", &Auth::Token(c.alice.clone()),
        json_body(json!({"conversation_id": c.conv, "name": "big.bin", "size": SIZE, "content_type": "application/octet-stream", "sha256": sha}))).await;
    assert_eq!(r.status, 201, "{r:?}");
    let id = r.body["file"]["id"].as_str().expect("id").to_owned();

    let f = &c.env.cfg.files;
    let env_pairs = [
        ("PARLEY_FILES__BACKEND", "s3".to_owned()),
        ("PARLEY_FILES__S3_ENDPOINT", f.s3_endpoint.clone()),
        ("PARLEY_FILES__S3_REGION", f.s3_region.clone()),
        ("PARLEY_FILES__S3_BUCKET", f.s3_bucket.clone()),
        ("PARLEY_FILES__S3_ACCESS_KEY", f.s3_access_key.clone()),
        ("PARLEY_FILES__S3_SECRET_KEY", f.s3_secret_key.clone()),
        ("PARLEY_FILES__MAX_FILE_BYTES", (1u64 << 30).to_string()),
    ];
    let extra: Vec<(&str, &str)> = env_pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let cl = Cluster::start(&c.env, 1, false, &extra).await;
    let port = cl.nodes[0].port;
    let baseline = cl.rss_kib(0).expect("rss");

    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let head = format!(
        "PUT /v1/files/{id}/content HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/octet-stream\r\nContent-Length: {SIZE}\r\nConnection: close\r\n\r\n",
        c.alice
    );
    s.write_all(head.as_bytes()).await.expect("head");
    let mut peak = baseline;
    for i in 0..SIZE / CHUNK {
        s.write_all(&chunk_of(i)).await.expect("body");
        if i % 8 == 0 {
            peak = peak.max(cl.rss_kib(0).unwrap_or(0));
        }
    }
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).await.expect("response");
    peak = peak.max(cl.rss_kib(0).unwrap_or(0));
    let text = String::from_utf8_lossy(&resp);
    assert!(
        text.starts_with("HTTP/1.1 200"),
        "{}",
        &text[..text.len().min(400)]
    );
    let key: String = sqlx::query_scalar("SELECT storage_key FROM files WHERE id = $1::uuid")
        .bind(&id)
        .fetch_one(&c.env.db)
        .await
        .expect("key");
    assert_eq!(
        s3tool(&["sha256", &c.bucket, &key]),
        sha,
        "Garage holds the same bytes"
    );
    let growth_mib = (peak.saturating_sub(baseline)) as f64 / 1024.0;
    println!(
        "STREAMED UPLOAD: {} MiB through one node to S3 (multipart, parts of {} MiB): RSS baseline {:.1} MiB, peak {:.1} MiB, growth {:.1} MiB",
        SIZE >> 20,
        c.env.cfg.files.part_size_bytes >> 20,
        baseline as f64 / 1024.0,
        peak as f64 / 1024.0,
        growth_mib
    );
    // Flat: bounded by a few parts, not by the file.
    assert!(
        growth_mib < 64.0,
        "memory grew by {growth_mib:.1} MiB for a {} MiB upload",
        SIZE >> 20
    );
}

/// `parley admin storage check` says what is wrong.
#[actix_web::test]
async fn admin_storage_check_explains() {
    let c = ctx(StorageKind::S3, |_| {}).await;
    let f = &c.env.cfg.files;
    let run = |bucket: &str, secret: &str| {
        Command::new(parley_tests::cluster::parley_bin())
            .args(["admin", "storage", "check"])
            .env("PARLEY_DATABASE__URL", &c.env.cfg.database.url)
            .env("PARLEY_FILES__BACKEND", "s3")
            .env("PARLEY_FILES__S3_ENDPOINT", &f.s3_endpoint)
            .env("PARLEY_FILES__S3_REGION", &f.s3_region)
            .env("PARLEY_FILES__S3_BUCKET", bucket)
            .env("PARLEY_FILES__S3_ACCESS_KEY", &f.s3_access_key)
            .env("PARLEY_FILES__S3_SECRET_KEY", secret)
            .output()
            .expect("parley")
    };
    let ok = run(&c.bucket, &f.s3_secret_key);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("storage ok"));
    let missing = run("no-such-bucket-here", &f.s3_secret_key);
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("does not exist"),
        "{}",
        String::from_utf8_lossy(&missing.stderr)
    );
    let wrong = run(
        &c.bucket,
        "0000000000000000000000000000000000000000000000000000000000000000",
    );
    assert!(!wrong.status.success());
    let msg = String::from_utf8_lossy(&wrong.stderr);
    assert!(
        msg.contains("s3_secret_key") || msg.contains("denied"),
        "{msg}"
    );
}

/// Presigned URLs name the endpoint browsers reach
/// (`files.s3_public_endpoint`; inside compose the nodes' own endpoint is a
/// private name): here `localhost` for the browsers and `127.0.0.1` for
/// the node, the same bucket behind both.
#[actix_web::test]
async fn presigned_urls_name_the_public_endpoint() {
    let own = std::env::var("PARLEY_TEST_S3_ENDPOINT").expect("PARLEY_TEST_S3_ENDPOINT");
    assert!(own.contains("127.0.0.1"), "{own}");
    let public = own.replace("127.0.0.1", "localhost");
    let p = public.clone();
    let c = ctx(StorageKind::S3, move |cfg| cfg.files.s3_public_endpoint = p).await;
    let app = c.env.app().await;
    let bytes = sample(40_000);
    let r = call(&app, "POST", "/v1/files", &Auth::Token(c.alice.clone()),
        json_body(json!({"conversation_id": c.conv, "name": "a.bin", "size": bytes.len(), "content_type": "application/octet-stream", "sha256": sha_hex(&bytes)}))).await;
    assert_eq!(r.status, 201, "{r:?}");
    let upload = &r.body["upload"];
    let url = upload["url"].as_str().expect("upload url");
    assert!(url.starts_with(&format!("{public}/")), "{url}");
    put_to(upload, &bytes, "public");
    let id = r.body["file"]["id"].as_str().expect("id").to_owned();
    let r = call(
        &app,
        "POST",
        &format!("/v1/files/{id}/complete"),
        &Auth::Token(c.alice.clone()),
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    let r = c.attach(&app, &[&id]).await;
    assert_eq!(r.status, 201, "{r:?}");
    let res = actix_web::test::call_service(
        &app,
        actix_web::test::TestRequest::get()
            .uri(&format!("/v1/files/{id}/content"))
            .insert_header(("authorization", format!("Bearer {}", c.bob)))
            .to_request(),
    )
    .await;
    assert_eq!(res.status().as_u16(), 302);
    let location = res
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(location.starts_with(&format!("{public}/")), "{location}");
    let (_, got) = download(&app, &id, &c.bob, None).await;
    assert_eq!(sha_hex(&got), sha_hex(&bytes));
}
