//! Incoming webhooks: the infobase manages them; whoever holds a hook's URL
//! posts through it (no other credential: the token in the path is it).

use crate::auth::InfobaseCaller;
use crate::error::ApiResult;
use crate::state::AppState;
use actix_web::{web, HttpResponse};
use parley_core::api::{HookCreated, HookList, HookMessage, NewHookBody};
use parley_core::protocol::{Message, NewMessage};
use parley_core::{ErrorBody, HookId, InfobaseId};
use parley_service::Posted;

/// Creates an incoming webhook bound to a conversation and a bot user of
/// this infobase; the token (and URL) are shown once.
#[utoipa::path(post, path = "/v1/infobases/{infobase_id}/incoming-webhooks", tag = "webhooks",
    params(("infobase_id" = InfobaseId, Path)), request_body = NewHookBody, security(("infobase" = [])),
    responses((status = 201, body = HookCreated),
              (status = 400, description = "`invalid`: the author is not a bot user of this infobase", body = ErrorBody),
              (status = 403, description = "`limit_reached`: limits.max_incoming_webhooks", body = ErrorBody)))]
pub async fn create(
    st: web::Data<AppState>,
    me: InfobaseCaller,
    body: web::Json<NewHookBody>,
) -> ApiResult<HttpResponse> {
    let created = st.svc.create_hook(&me.actor, body.into_inner()).await?;
    Ok(HttpResponse::Created().json(created))
}

/// The infobase's incoming webhooks, newest first (revoked ones marked).
#[utoipa::path(get, path = "/v1/infobases/{infobase_id}/incoming-webhooks", tag = "webhooks",
    params(("infobase_id" = InfobaseId, Path)), security(("infobase" = [])),
    responses((status = 200, body = HookList)))]
pub async fn list(st: web::Data<AppState>, me: InfobaseCaller) -> ApiResult<web::Json<HookList>> {
    Ok(web::Json(HookList {
        webhooks: st.svc.list_hooks(&me.actor).await?,
    }))
}

/// Revokes a webhook: its URL answers `404 not_found` from now on.
#[utoipa::path(delete, path = "/v1/infobases/{infobase_id}/incoming-webhooks/{hook_id}", tag = "webhooks",
    params(("infobase_id" = InfobaseId, Path), ("hook_id" = HookId, Path)), security(("infobase" = [])),
    responses((status = 204), (status = 404, description = "`not_found`: no live webhook with this id", body = ErrorBody)))]
pub async fn revoke(
    st: web::Data<AppState>,
    me: InfobaseCaller,
    path: web::Path<(InfobaseId, HookId)>,
) -> ApiResult<HttpResponse> {
    st.svc.revoke_hook(&me.actor, path.1).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Posts a message through a webhook, as its bot into its conversation.
#[utoipa::path(post, path = "/v1/hooks/{token}", tag = "webhooks",
    params(("token" = String, Path, description = "the webhook's token, `phk_…`")), request_body = HookMessage,
    responses((status = 201, body = Message), (status = 200, description = "Idempotent retry", body = Message),
              (status = 404, description = "`not_found`: unknown or revoked webhook", body = ErrorBody),
              (status = 429, description = "`rate_limited`: limits.hook_messages_per_minute", body = ErrorBody)))]
pub async fn post(
    st: web::Data<AppState>,
    token: web::Path<String>,
    body: web::Json<HookMessage>,
) -> ApiResult<HttpResponse> {
    let b = body.into_inner();
    let m = NewMessage {
        text: b.text,
        data: b.data,
        idempotency_key: b.idempotency_key,
        ..Default::default()
    };
    let Posted { message, fresh } = st.svc.post_by_hook(&token, m).await?;
    Ok(if fresh {
        HttpResponse::Created()
    } else {
        HttpResponse::Ok()
    }
    .json(message))
}
