//! Files of conversations. A member announces a file (name, size, type,
//! SHA-256) and gets where to upload it: a presigned URL of the bucket, or
//! this server (streamed, never held whole in memory). The bytes are
//! verified before the file counts as uploaded; attached to a committed
//! message it becomes readable by the conversation's readers.

use crate::auth::{authenticate_token, UserCaller};
use crate::chat;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::Utc;
use futures_util::StreamExt;
use parley_core::protocol::{FileInfo, FileState};
use parley_core::{validate, ConversationId, ErrorBody, ErrorCode, FileId};
use parley_files::{FilesError, Presigned};
use parley_store::{FileRefusal, FileRow, NewFile};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use utoipa::ToSchema;

/// `POST /v1/files`
#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewFileBody {
    pub conversation_id: ConversationId,
    pub name: String,
    pub size: u64,
    pub content_type: String,
    /// SHA-256 of the bytes, lower-case hex.
    pub sha256: String,
}

/// Where and how to upload.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Upload {
    /// `PUT`.
    pub method: String,
    /// A presigned bucket URL (direct), or this server's
    /// `/v1/files/{id}/content` (through Parley, with the session token).
    pub url: String,
    pub headers: Vec<(String, String)>,
    /// true: upload to the bucket, then call `POST /v1/files/{id}/complete`.
    pub direct: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct FileCreated {
    pub file: FileInfo,
    pub upload: Upload,
}

impl From<FilesError> for ApiError {
    fn from(e: FilesError) -> Self {
        match e {
            FilesError::NotFound => ApiError::not_found("file content"),
            FilesError::Unavailable(m) => ApiError::new(ErrorCode::Unavailable, m),
            FilesError::TooLarge { limit } => ApiError::new(
                ErrorCode::TooLarge,
                format!("more bytes than declared or than files.max_file_bytes ({limit})"),
            ),
            FilesError::Invalid(m) => ApiError::new(ErrorCode::Invalid, m),
        }
    }
}

fn hex_ok(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// Announces a file of a conversation the caller is a member of.
#[utoipa::path(post, path = "/v1/files", tag = "files", request_body = NewFileBody, security(("session" = [])),
    responses((status = 201, body = FileCreated),
              (status = 413, description = "`too_large`: over files.max_file_bytes", body = ErrorBody),
              (status = 415, description = "`unsupported_type`", body = ErrorBody),
              (status = 403, description = "`quota_exceeded` or `access_denied`", body = ErrorBody),
              (status = 503, description = "`unavailable`: storage unreachable", body = ErrorBody)))]
pub async fn create(
    st: web::Data<AppState>,
    me: UserCaller,
    body: web::Json<NewFileBody>,
) -> ApiResult<HttpResponse> {
    let UserCaller(user, subscriber) = me;
    let b = body.into_inner();
    chat::require_member(&st, b.conversation_id, user.id, subscriber).await?;
    let name = validate::text("name", &b.name, 255)?;
    if name.contains('/') || name.contains('\\') {
        return Err(ApiError::new(
            ErrorCode::Invalid,
            "name: must not contain / or \\",
        ));
    }
    let content_type = validate::text("content_type", &b.content_type, 255)?.to_ascii_lowercase();
    if !content_type.contains('/') {
        return Err(ApiError::new(
            ErrorCode::Invalid,
            "content_type: not a media type",
        ));
    }
    if !st.files_cfg.type_allowed(&content_type) {
        return Err(ApiError::new(
            ErrorCode::UnsupportedType,
            format!("content_type: {content_type} is not accepted"),
        ));
    }
    let max = st.files_cfg.max_file_bytes;
    if b.size > max {
        return Err(ApiError::new(
            ErrorCode::TooLarge,
            format!("size: larger than files.max_file_bytes ({max})"),
        ));
    }
    let sha256 = b.sha256.to_ascii_lowercase();
    if !hex_ok(&sha256) {
        return Err(ApiError::new(ErrorCode::Invalid, "sha256: 64 hex digits"));
    }
    let id = FileId::new_random();
    let new = NewFile {
        id,
        subscriber_id: subscriber,
        conversation_id: b.conversation_id,
        owner_id: user.id,
        name,
        content_type: content_type.clone(),
        size: b.size as i64,
        sha256,
        storage_key: format!("files/{}/{id}", subscriber),
        expires_at: Utc::now() + Duration::from_secs(st.files_cfg.upload_ttl_secs),
    };
    // Ask the storage first: an unreachable bucket must not leave a row.
    let ttl = Duration::from_secs(st.files_cfg.presign_ttl_secs);
    let presigned = st
        .files
        .presign_put(&new.storage_key, &content_type, b.size, ttl)
        .await?;
    let quota = i64::try_from(st.files_cfg.quota_bytes_per_subscriber).unwrap_or(i64::MAX);
    let row = match st.store.create_file(&new, quota).await? {
        Ok(row) => row,
        Err(FileRefusal::Quota { used, quota }) => {
            return Err(ApiError::new(
                ErrorCode::QuotaExceeded,
                format!("{used} of {quota} bytes used (files.quota_bytes_per_subscriber)"),
            ))
        }
    };
    let upload = match presigned {
        Some(Presigned {
            method,
            url,
            headers,
        }) => Upload {
            method,
            url,
            headers,
            direct: true,
        },
        None => Upload {
            method: "PUT".into(),
            url: format!("/v1/files/{id}/content"),
            headers: vec![("content-type".into(), content_type)],
            direct: false,
        },
    };
    Ok(HttpResponse::Created().json(FileCreated {
        file: row.info,
        upload,
    }))
}

/// The caller's own pending file.
async fn own_pending(st: &AppState, id: FileId, user: parley_core::UserId) -> ApiResult<FileRow> {
    let row = st
        .store
        .file(id)
        .await?
        .ok_or_else(|| ApiError::not_found("file"))?;
    if row.info.owner_id != user {
        return Err(ApiError::not_found("file"));
    }
    if row.info.state != FileState::Pending {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            "the file is uploaded already",
        ));
    }
    Ok(row)
}

/// Checks what was stored against what was declared; on mismatch removes
/// both the object and the row.
async fn settle(st: &AppState, row: &FileRow, stored: parley_files::Stored) -> ApiResult<FileInfo> {
    if stored.size != row.info.size as u64 || stored.sha256 != row.info.sha256 {
        let _ = st.files.delete(&row.storage_key).await;
        st.store.delete_file_row(row.info.id).await?;
        return Err(ApiError::new(
            ErrorCode::ChecksumMismatch,
            format!(
                "got {} bytes with SHA-256 {}, declared {} bytes with {}; the upload was discarded",
                stored.size, stored.sha256, row.info.size, row.info.sha256
            ),
        ));
    }
    st.store.mark_uploaded(row.info.id).await?;
    let mut info = row.info.clone();
    info.state = FileState::Uploaded;
    Ok(info)
}

/// Uploads the bytes through Parley (streamed; multipart above the threshold).
#[utoipa::path(put, path = "/v1/files/{file_id}/content", tag = "files", params(("file_id" = FileId, Path)),
    security(("session" = [])),
    responses((status = 200, body = FileInfo),
              (status = 400, description = "`checksum_mismatch`", body = ErrorBody),
              (status = 413, description = "`too_large`: more bytes than declared", body = ErrorBody)))]
pub async fn upload(
    st: web::Data<AppState>,
    me: UserCaller,
    path: web::Path<FileId>,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    let row = own_pending(&st, path.into_inner(), me.0.id).await?;
    let declared = row.info.size as u64;
    // The request body is tied to this worker thread; a small bounded
    // channel hands it to the storage chunk by chunk (memory stays flat).
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<web::Bytes, FilesError>>(4);
    let mut payload = payload;
    actix_web::rt::spawn(async move {
        while let Some(chunk) = payload.next().await {
            let item = chunk.map_err(|e| FilesError::Invalid(format!("upload interrupted: {e}")));
            let stop = item.is_err();
            if tx.send(item).await.is_err() || stop {
                break;
            }
        }
    });
    let body =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|i| (i, rx)) })
            .boxed();
    let stored = match st
        .files
        .put(&row.storage_key, &row.info.content_type, body, declared)
        .await
    {
        Ok(s) => s,
        Err(e) => {
            // Nothing half-written: the storage removed its part; the row goes.
            st.store.delete_file_row(row.info.id).await?;
            return Err(e.into());
        }
    };
    Ok(HttpResponse::Ok().json(settle(&st, &row, stored).await?))
}

/// After a direct upload to the bucket: verifies size and SHA-256.
#[utoipa::path(post, path = "/v1/files/{file_id}/complete", tag = "files", params(("file_id" = FileId, Path)),
    security(("session" = [])),
    responses((status = 200, body = FileInfo), (status = 400, description = "`checksum_mismatch`", body = ErrorBody)))]
pub async fn complete(
    st: web::Data<AppState>,
    me: UserCaller,
    path: web::Path<FileId>,
) -> ApiResult<HttpResponse> {
    let row = own_pending(&st, path.into_inner(), me.0.id).await?;
    match st.files.head(&row.storage_key).await? {
        None => Err(ApiError::new(
            ErrorCode::Conflict,
            "nothing was uploaded yet",
        )),
        Some(size) if size != row.info.size as u64 => {
            let stored = parley_files::Stored {
                size,
                sha256: String::new(),
            };
            settle(&st, &row, stored)
                .await
                .map(|_| HttpResponse::Ok().finish())
        }
        Some(_) => {
            let stored = parley_files::digest(st.files.as_ref(), &row.storage_key).await?;
            Ok(HttpResponse::Ok().json(settle(&st, &row, stored).await?))
        }
    }
}

/// The caller may see the file: its owner, or a reader of the message that
/// carries it.
async fn readable(st: &AppState, req: &HttpRequest, id: FileId) -> ApiResult<FileRow> {
    // Browsers fetch files by URL: the token may come as ?token=.
    let token = match req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        Some(v) => v
            .strip_prefix("Bearer ")
            .map(str::to_owned)
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::Unauthenticated,
                    "expected a Bearer session token",
                )
            })?,
        None => req
            .query_string()
            .split('&')
            .find_map(|kv| kv.strip_prefix("token="))
            .map(str::to_owned)
            .ok_or_else(|| ApiError::new(ErrorCode::Unauthenticated, "missing session token"))?,
    };
    let (user, subscriber) = authenticate_token(st, &token).await?;
    let row = st
        .store
        .file(id)
        .await?
        .ok_or_else(|| ApiError::not_found("file"))?;
    if row.subscriber_id != subscriber {
        return Err(ApiError::not_found("file"));
    }
    if row.info.owner_id == user.id || st.store.may_read_file(&row, user.id).await? {
        return Ok(row);
    }
    Err(ApiError::access_denied("you may not read this file"))
}

/// The file's metadata.
#[utoipa::path(get, path = "/v1/files/{file_id}", tag = "files", params(("file_id" = FileId, Path)),
    security(("session" = [])), responses((status = 200, body = FileInfo), (status = 403, body = ErrorBody)))]
pub async fn info(
    st: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<FileId>,
) -> ApiResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(readable(&st, &req, path.into_inner()).await?.info))
}

/// `bytes=START-END` / `bytes=START-` / `bytes=-SUFFIX`.
fn parse_range(v: &str, total: u64) -> Option<(u64, Option<u64>)> {
    let spec = v.strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (s, e) = spec.split_once('-')?;
    if s.is_empty() {
        let n: u64 = e.parse().ok()?;
        return Some((total.saturating_sub(n), None));
    }
    let start: u64 = s.parse().ok()?;
    let end = if e.is_empty() {
        None
    } else {
        Some(e.parse().ok()?)
    };
    Some((start, end))
}

/// The bytes: a redirect to a presigned bucket URL (S3, unless
/// `?redirect=false`), or streamed with `Range` support.
#[utoipa::path(get, path = "/v1/files/{file_id}/content", tag = "files", params(("file_id" = FileId, Path)),
    security(("session" = [])),
    responses((status = 200, description = "The bytes"), (status = 206, description = "A range"),
              (status = 302, description = "To a presigned bucket URL"),
              (status = 403, description = "`access_denied`", body = ErrorBody)))]
pub async fn download(
    st: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<FileId>,
) -> ApiResult<HttpResponse> {
    let row = readable(&st, &req, path.into_inner()).await?;
    if row.info.state == FileState::Pending {
        return Err(ApiError::not_found("file content"));
    }
    let stream_it = req
        .query_string()
        .split('&')
        .any(|kv| kv == "redirect=false");
    if !stream_it {
        let ttl = Duration::from_secs(st.files_cfg.presign_ttl_secs);
        if let Some(p) = st
            .files
            .presign_get(&row.storage_key, &row.info.name, ttl)
            .await?
        {
            return Ok(HttpResponse::Found()
                .insert_header((header::LOCATION, p.url))
                .finish());
        }
    }
    let total = row.info.size as u64;
    let range = match req
        .headers()
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
    {
        Some(v) => match parse_range(v, total) {
            Some(r) if r.0 < total => Some(r),
            _ => {
                return Ok(HttpResponse::RangeNotSatisfiable()
                    .insert_header((header::CONTENT_RANGE, format!("bytes */{total}")))
                    .json(ErrorBody::new(ErrorCode::Invalid, "range not satisfiable")))
            }
        },
        None => None,
    };
    let obj = st.files.get(&row.storage_key, range).await?;
    let disposition = format!("attachment; filename*=UTF-8''{}", encode(&row.info.name));
    let mut res = match obj.range {
        Some((s, e)) => {
            let mut r = HttpResponse::PartialContent();
            r.insert_header((
                header::CONTENT_RANGE,
                format!("bytes {s}-{e}/{}", obj.total),
            ));
            r.no_chunking(e - s + 1);
            r
        }
        None => {
            let mut r = HttpResponse::Ok();
            r.no_chunking(obj.total);
            r
        }
    };
    res.insert_header((header::ACCEPT_RANGES, "bytes"))
        .insert_header((header::CONTENT_TYPE, row.info.content_type.clone()))
        .insert_header((header::CONTENT_DISPOSITION, disposition));
    let stream = obj
        .stream
        .map(|r| r.map_err(|e| actix_web::error::ErrorServiceUnavailable(e.to_string())));
    Ok(res.streaming(stream))
}

fn encode(name: &str) -> String {
    name.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Removes an own file that is not attached to a message.
#[utoipa::path(delete, path = "/v1/files/{file_id}", tag = "files", params(("file_id" = FileId, Path)),
    security(("session" = [])), responses((status = 204), (status = 409, body = ErrorBody)))]
pub async fn delete(
    st: web::Data<AppState>,
    me: UserCaller,
    path: web::Path<FileId>,
) -> ApiResult<HttpResponse> {
    let row = st
        .store
        .file(path.into_inner())
        .await?
        .ok_or_else(|| ApiError::not_found("file"))?;
    if row.info.owner_id != me.0.id {
        return Err(ApiError::not_found("file"));
    }
    if row.info.state == FileState::Attached {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            "the file is on a message; delete the message",
        ));
    }
    st.files.delete(&row.storage_key).await?;
    st.store.delete_file_row(row.info.id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Removes abandoned uploads and files past retention, object and row
/// together. Returns how many went.
pub async fn housekeeping(st: &AppState) -> Result<usize, ApiError> {
    let mut gone = 0;
    let mut doomed = st.store.abandoned_files(500).await?;
    if st.files_cfg.retention_days > 0 {
        let days = i64::try_from(st.files_cfg.retention_days).unwrap_or(i64::MAX);
        doomed.extend(st.store.retired_files(days, 500).await?);
    }
    for row in doomed {
        st.files.delete(&row.storage_key).await?;
        st.store.delete_file_row(row.info.id).await?;
        gone += 1;
    }
    Ok(gone)
}
