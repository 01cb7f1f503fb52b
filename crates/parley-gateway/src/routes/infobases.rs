//! Calls an infobase makes about itself: its record, unregistering, its users
//! and their session tokens. Every query is scoped by the caller's infobase.

use crate::auth::InfobaseCaller;
use crate::crypto::{self, sha256, SESSION_TOKEN_PREFIX};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use actix_web::{web, HttpResponse};
use chrono::Utc;
use futures_util::StreamExt;
use parley_core::api::{
    Infobase, IssueToken, SessionToken, UpsertUser, UpsertedUser, User, UserPage,
};
use parley_core::validate::{self, *};
use parley_core::{ErrorBody, ErrorCode, InfobaseId, TokenId, UserId};
use parley_store::{NewToken, UserFields};
use serde::Deserialize;
use std::time::Duration;
use utoipa::IntoParams;

pub const DEFAULT_PAGE: u32 = 100;
pub const MAX_PAGE: u32 = 1000;

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
    let ib = st
        .store
        .infobase(me.id)
        .await?
        .ok_or_else(|| ApiError::not_found("infobase"))?;
    Ok(web::Json(ib))
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
    if !st.store.unregister_infobase(me.id).await? {
        return Err(ApiError::not_found("infobase"));
    }
    tracing::info!(infobase_id = %me.id, "infobase unregistered");
    Ok(HttpResponse::NoContent().finish())
}

fn opt_text(field: &'static str, v: &Option<String>, max: usize) -> ApiResult<Option<String>> {
    v.as_deref()
        .map(|s| validate::optional_text(field, s, max))
        .transpose()
        .map_err(ApiError::from)
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
    let email = match body.email.as_deref().map(str::trim) {
        None => None,
        Some("") => Some(String::new()),
        Some(e) => Some(validate::email(e)?),
    };
    let fields = UserFields {
        external_id: validate::text("external_id", &body.external_id, MAX_USER_ID_CHARS)?,
        name: validate::text("name", &body.name, MAX_USER_NAME_CHARS)?,
        full_name: opt_text("full_name", &body.full_name, MAX_USER_FULL_NAME_CHARS)?,
        email,
        phone: opt_text("phone", &body.phone, MAX_PHONE_CHARS)?,
        picture: opt_text("picture", &body.picture, MAX_PICTURE_CHARS)?,
        bot: body.bot,
        locked: body.locked,
    };
    let (user, created) = st.store.upsert_user(me.id, &fields).await?;
    let out = UpsertedUser { created, user };
    Ok(if created {
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
    /// Page size, 1..=1000 (default 100).
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
    if let Some(ext) = &q.external_id {
        let users = st
            .store
            .user_by_external_id(me.id, ext)
            .await?
            .into_iter()
            .collect();
        return Ok(web::Json(UserPage {
            users,
            next_cursor: None,
        }));
    }
    let limit = q.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::new(
            ErrorCode::Invalid,
            format!("limit: must be between 1 and {MAX_PAGE}"),
        ));
    }
    let mut users = st
        .store
        .list_users(me.id, q.after, i64::from(limit) + 1)
        .await?;
    let more = users.len() > limit as usize;
    users.truncate(limit as usize);
    let next_cursor = if more {
        users.last().map(|u| u.id)
    } else {
        None
    };
    Ok(web::Json(UserPage { users, next_cursor }))
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
    let user = st
        .store
        .user(me.id, user_id)
        .await?
        .ok_or_else(|| ApiError::not_found("user"))?;
    Ok(web::Json(user))
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
    let ttl = match body.ttl_seconds {
        None => st.auth.token_ttl_secs,
        Some(t) if (60..=st.auth.max_token_ttl_secs).contains(&t) => t,
        Some(_) => {
            return Err(ApiError::new(
                ErrorCode::Invalid,
                format!(
                    "ttl_seconds: must be between 60 and {} (auth.max_token_ttl_secs)",
                    st.auth.max_token_ttl_secs
                ),
            ))
        }
    };
    let user = st
        .store
        .user(me.id, user_id)
        .await?
        .ok_or_else(|| ApiError::not_found("user"))?;
    if user.locked {
        return Err(ApiError::access_denied("the user is locked"));
    }
    let token = crypto::secret(SESSION_TOKEN_PREFIX);
    let expires_at = Utc::now() + Duration::from_secs(ttl);
    let new = NewToken {
        id: TokenId::new_random(),
        token_hash: sha256(token.as_bytes()),
        user_id,
        infobase_id: me.id,
        expires_at,
    };
    if !st.store.insert_token(&new).await? {
        // Locked or removed between the read and the insert.
        return Err(ApiError::access_denied("the user is locked"));
    }
    Ok(HttpResponse::Created().json(SessionToken {
        token,
        user_id,
        expires_at,
    }))
}
