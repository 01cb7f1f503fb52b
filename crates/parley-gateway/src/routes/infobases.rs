//! Calls an infobase makes about itself: its record, unregistering, its users
//! and their session tokens. Every query is scoped by the caller's infobase.

use crate::auth::InfobaseCaller;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use actix_web::{web, HttpResponse};
use futures_util::StreamExt;
use parley_core::api::{
    Infobase, IssueToken, SessionToken, UpsertUser, UpsertedUser, User, UserPage,
};
use parley_core::{ErrorBody, ErrorCode, InfobaseId, TokenId, UserId};
use parley_service::UserQuery;
use serde::Deserialize;
use utoipa::IntoParams;

/// The infobase's own record.
#[utoipa::path(
    get, path = "/v1/infobases/{infobase_id}", tag = "infobases",
    params(("infobase_id" = InfobaseId, Path, description = "The caller's infobase id")),
    security(("infobase" = [])),
    responses(
        (status = 200, body = Infobase),
        (status = 401, description = "`unauthenticated`", body = ErrorBody),
        (status = 403, description = "`access_denied`: wrong key, or another infobase's id", body = ErrorBody),
    )
)]
pub async fn get_infobase(
    st: web::Data<AppState>,
    me: InfobaseCaller,
) -> ApiResult<web::Json<Infobase>> {
    Ok(web::Json(st.svc.infobase(&me.actor).await?))
}

/// Unregisters the infobase: its key and every session token of its users
/// stop working at once.
#[utoipa::path(
    delete, path = "/v1/infobases/{infobase_id}", tag = "infobases",
    params(("infobase_id" = InfobaseId, Path)),
    security(("infobase" = [])),
    responses(
        (status = 204, description = "Unregistered"),
        (status = 403, description = "`access_denied`", body = ErrorBody),
    )
)]
pub async fn unregister(st: web::Data<AppState>, me: InfobaseCaller) -> ApiResult<HttpResponse> {
    st.svc.unregister(&me.actor).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Creates the user, or updates it when `external_id` is already known; the
/// Parley user id is the same every time.
#[utoipa::path(
    post, path = "/v1/infobases/{infobase_id}/users", tag = "users",
    params(("infobase_id" = InfobaseId, Path)),
    request_body = UpsertUser,
    security(("infobase" = [])),
    responses(
        (status = 201, description = "Created", body = UpsertedUser),
        (status = 200, description = "Updated", body = UpsertedUser),
        (status = 400, description = "`invalid_json` or `invalid`", body = ErrorBody),
        (status = 413, description = "`too_large`", body = ErrorBody),
        (status = 403, description = "`access_denied`", body = ErrorBody),
    )
)]
pub async fn upsert_user(
    st: web::Data<AppState>,
    me: InfobaseCaller,
    body: web::Json<UpsertUser>,
) -> ApiResult<HttpResponse> {
    let out: UpsertedUser = st.svc.upsert_user(&me.actor, &body).await?;
    Ok(if out.created {
        HttpResponse::Created().json(out)
    } else {
        HttpResponse::Ok().json(out)
    })
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListUsersQuery {
    /// Cursor: the `next_cursor` of the previous page.
    pub after: Option<UserId>,
    /// Page size, 1..=`limits.max_user_page` (default `limits.default_user_page`).
    pub limit: Option<u32>,
    /// Only the user with this infobase-side id.
    pub external_id: Option<String>,
}

/// Users of the infobase, a page at a time.
#[utoipa::path(
    get, path = "/v1/infobases/{infobase_id}/users", tag = "users",
    params(("infobase_id" = InfobaseId, Path), ListUsersQuery),
    security(("infobase" = [])),
    responses(
        (status = 200, body = UserPage),
        (status = 400, description = "`invalid` query", body = ErrorBody),
    )
)]
pub async fn list_users(
    st: web::Data<AppState>,
    me: InfobaseCaller,
    q: web::Query<ListUsersQuery>,
) -> ApiResult<web::Json<UserPage>> {
    let q = q.into_inner();
    let query = UserQuery {
        after: q.after,
        limit: q.limit,
        external_id: q.external_id,
    };
    Ok(web::Json(st.svc.list_users(&me.actor, &query).await?))
}

/// One user of the infobase.
#[utoipa::path(
    get, path = "/v1/infobases/{infobase_id}/users/{user_id}", tag = "users",
    params(("infobase_id" = InfobaseId, Path), ("user_id" = UserId, Path)),
    security(("infobase" = [])),
    responses(
        (status = 200, body = User),
        (status = 404, description = "`not_found` (also for users of other infobases)", body = ErrorBody),
    )
)]
pub async fn get_user(
    st: web::Data<AppState>,
    me: InfobaseCaller,
    path: web::Path<(InfobaseId, UserId)>,
) -> ApiResult<web::Json<User>> {
    let (_, user_id) = path.into_inner();
    Ok(web::Json(st.svc.user_of(&me.actor, user_id).await?))
}

/// Deletes the user: its session tokens stop working and its open sessions
/// close with 4003 on every node; it leaves its groups and contextual
/// conversations; its messages stay, and its `external_id` may be used for a
/// new user (with a new id).
#[utoipa::path(
    delete, path = "/v1/infobases/{infobase_id}/users/{user_id}", tag = "users",
    params(("infobase_id" = InfobaseId, Path), ("user_id" = UserId, Path)),
    security(("infobase" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "`not_found` (also for users of other infobases and deleted ones)", body = ErrorBody),
    )
)]
pub async fn delete_user(
    st: web::Data<AppState>,
    me: InfobaseCaller,
    path: web::Path<(InfobaseId, UserId)>,
) -> ApiResult<HttpResponse> {
    let (_, user_id) = path.into_inner();
    st.svc.delete_user(&me.actor, user_id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Reads an optional JSON body: empty means the type's default.
async fn optional_json<T: serde::de::DeserializeOwned + Default>(
    mut payload: web::Payload,
    limit: usize,
) -> ApiResult<T> {
    let mut buf = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk
            .map_err(|e| ApiError::new(ErrorCode::InvalidJson, format!("unreadable body: {e}")))?;
        if buf.len() + chunk.len() > limit {
            return Err(ApiError::new(
                ErrorCode::TooLarge,
                format!("the body exceeds the limit of {limit} bytes (http.max_body_bytes)"),
            ));
        }
        buf.extend_from_slice(&chunk);
    }
    if buf.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(&buf)
        .map_err(|e| ApiError::new(ErrorCode::InvalidJson, format!("invalid JSON body: {e}")))
}

/// Issues a session token for the user (for the WebSocket and user calls).
/// The body is optional.
#[utoipa::path(
    post, path = "/v1/infobases/{infobase_id}/users/{user_id}/tokens", tag = "users",
    params(("infobase_id" = InfobaseId, Path), ("user_id" = UserId, Path)),
    request_body(content = Option<IssueToken>, description = "Optional; `{}` or empty for the default lifetime"),
    security(("infobase" = [])),
    responses(
        (status = 201, body = SessionToken),
        (status = 403, description = "`access_denied`: the user is locked", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
    )
)]
pub async fn issue_token(
    st: web::Data<AppState>,
    me: InfobaseCaller,
    path: web::Path<(InfobaseId, UserId)>,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    let (_, user_id) = path.into_inner();
    let body: IssueToken = optional_json(payload, st.http.max_body_bytes).await?;
    let token: SessionToken = st.svc.issue_token(&me.actor, user_id, &body).await?;
    Ok(HttpResponse::Created().json(token))
}

/// Revokes one session token of the user: it stops working at once, and the
/// WebSocket sessions opened with it close with 4003 on every node.
#[utoipa::path(
    delete, path = "/v1/infobases/{infobase_id}/users/{user_id}/tokens/{token_id}", tag = "users",
    params(("infobase_id" = InfobaseId, Path), ("user_id" = UserId, Path), ("token_id" = TokenId, Path)),
    security(("infobase" = [])),
    responses(
        (status = 204, description = "Revoked"),
        (status = 404, description = "`not_found`: no such live token of this user", body = ErrorBody),
    )
)]
pub async fn revoke_token(
    st: web::Data<AppState>,
    me: InfobaseCaller,
    path: web::Path<(InfobaseId, UserId, TokenId)>,
) -> ApiResult<HttpResponse> {
    let (_, user_id, token_id) = path.into_inner();
    st.svc.revoke_token(&me.actor, user_id, token_id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Revokes every session token of the user ("log out everywhere"): every
/// open session of the user closes with 4003 on every node.
#[utoipa::path(
    delete, path = "/v1/infobases/{infobase_id}/users/{user_id}/tokens", tag = "users",
    params(("infobase_id" = InfobaseId, Path), ("user_id" = UserId, Path)),
    security(("infobase" = [])),
    responses(
        (status = 200, description = "`{\"revoked\": n}`: how many live tokens were revoked"),
        (status = 404, description = "`not_found`", body = ErrorBody),
    )
)]
pub async fn revoke_user_tokens(
    st: web::Data<AppState>,
    me: InfobaseCaller,
    path: web::Path<(InfobaseId, UserId)>,
) -> ApiResult<HttpResponse> {
    let (_, user_id) = path.into_inner();
    let n = st.svc.revoke_user_tokens(&me.actor, user_id).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "revoked": n })))
}
