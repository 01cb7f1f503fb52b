//! Files of conversations. A member announces a file (name, size, type,
//! SHA-256) and gets where to upload it: a presigned URL of the bucket, or
//! this server (streamed, never held whole in memory). The bytes are
//! verified before the file counts as uploaded; attached to a committed
//! message it becomes readable by the conversation's readers.

use crate::auth::{query_param, token_from_request, SessionCaller, UserCaller};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use parley_core::api::{FileCreated, FileLink, NewFileBody};
use parley_core::protocol::FileInfo;
use parley_core::{ErrorBody, ErrorCode, FileId, UserActor};
use parley_files::FilesError;
use parley_service::Download;

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
    let created: FileCreated = st.svc.create_file(&me.actor, body.into_inner()).await?;
    Ok(HttpResponse::Created().json(created))
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
    let info: FileInfo = st
        .svc
        .upload_file(&me.actor, path.into_inner(), body)
        .await?;
    Ok(HttpResponse::Ok().json(info))
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
    let info = st.svc.complete_file(&me.actor, path.into_inner()).await?;
    Ok(HttpResponse::Ok().json(info))
}

/// The caller, by a Bearer header or (browsers fetch files by URL) a signed
/// `?link=` of this very file.
async fn reader(st: &AppState, req: &HttpRequest, id: FileId) -> ApiResult<UserActor> {
    if let Some(token) = token_from_request(req)? {
        return Ok(st.svc.authenticate_token(&token).await?);
    }
    match query_param(req, "link") {
        Some(link) => Ok(st.svc.authenticate_link(id, link).await?),
        None => Err(ApiError::new(
            ErrorCode::Unauthenticated,
            "missing session token (Authorization: Bearer) or file link (?link=)",
        )),
    }
}

/// A short-lived download link of a file the caller may read, for
/// `<img src>` and `<a href>` (no header needed, no session token in it).
#[utoipa::path(post, path = "/v1/files/{file_id}/link", tag = "files", params(("file_id" = FileId, Path)),
    security(("session" = [])),
    responses((status = 200, body = FileLink), (status = 403, description = "`access_denied`", body = ErrorBody)))]
pub async fn link(
    st: web::Data<AppState>,
    me: SessionCaller,
    path: web::Path<FileId>,
) -> ApiResult<HttpResponse> {
    let link: FileLink = st.svc.file_link(&me.session, path.into_inner()).await?;
    Ok(HttpResponse::Ok().json(link))
}

/// The file's metadata.
#[utoipa::path(get, path = "/v1/files/{file_id}", tag = "files", params(("file_id" = FileId, Path)),
    security(("session" = [])), responses((status = 200, body = FileInfo), (status = 403, body = ErrorBody)))]
pub async fn info(
    st: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<FileId>,
) -> ApiResult<HttpResponse> {
    let id = path.into_inner();
    let me = reader(&st, &req, id).await?;
    let row = st.svc.readable_file(&me, id).await?;
    Ok(HttpResponse::Ok().json(row.info))
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
    let id = path.into_inner();
    let me = reader(&st, &req, id).await?;
    let stream = req
        .query_string()
        .split('&')
        .any(|kv| kv == "redirect=false");
    let range = req
        .headers()
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok());
    let (info, obj) = match st.svc.download_file(&me, id, stream, range).await? {
        Download::Redirect(url) => {
            return Ok(HttpResponse::Found()
                .insert_header((header::LOCATION, url))
                .finish())
        }
        Download::RangeNotSatisfiable { total } => {
            return Ok(HttpResponse::RangeNotSatisfiable()
                .insert_header((header::CONTENT_RANGE, format!("bytes */{total}")))
                .json(ErrorBody::new(ErrorCode::Invalid, "range not satisfiable")))
        }
        Download::Bytes { info, object } => (info, object),
    };
    let disposition = format!("attachment; filename*=UTF-8''{}", encode(&info.name));
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
        .insert_header((header::CONTENT_TYPE, served_type(&info.content_type)))
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
    st.svc.delete_file(&me.actor, path.into_inner()).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The Content-Type a download is served with: the uploader's, when a
/// browser cannot run it (pictures without scripts, PDF, audio, video, plain
/// text); anything else (HTML, SVG, scripts, unknown) as bytes.
fn served_type(declared: &str) -> String {
    const SAFE: &[&str] = &[
        "image/png",
        "image/jpeg",
        "image/gif",
        "image/webp",
        "image/avif",
        "application/pdf",
        "text/plain",
    ];
    let essence = declared
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let safe = SAFE.contains(&essence.as_str())
        || essence.starts_with("audio/")
        || essence.starts_with("video/");
    if !safe {
        return "application/octet-stream".into();
    }
    if essence == "text/plain" {
        // No charset sniffing either.
        return "text/plain; charset=utf-8".into();
    }
    essence
}

#[cfg(test)]
mod tests {
    use super::served_type;

    #[test]
    fn only_inert_types_are_served_as_declared() {
        assert_eq!(served_type("image/PNG"), "image/png");
        assert_eq!(
            served_type("text/html; charset=utf-8"),
            "application/octet-stream"
        );
        assert_eq!(served_type("image/svg+xml"), "application/octet-stream");
        assert_eq!(
            served_type("application/javascript"),
            "application/octet-stream"
        );
        assert_eq!(served_type("text/plain"), "text/plain; charset=utf-8");
        assert_eq!(served_type("video/mp4"), "video/mp4");
    }
}
