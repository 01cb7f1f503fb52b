//! Web Push: the server's public key, and a user's browsers' subscriptions
//! and push level (session token).

use crate::auth::UserCaller;
use crate::error::ApiResult;
use crate::state::AppState;
use actix_web::{web, HttpResponse};
use parley_core::api::{NewPushSubscription, PushSettings, PushSubscribed, VapidPublicKey};
use parley_core::{ErrorBody, PushSubscriptionId};

/// The application server key (VAPID, P-256) a browser subscribes with.
#[utoipa::path(get, path = "/v1/push/vapid-key", tag = "push",
    responses((status = 200, body = VapidPublicKey)))]
pub async fn vapid_key(st: web::Data<AppState>) -> ApiResult<web::Json<VapidPublicKey>> {
    Ok(web::Json(VapidPublicKey {
        public_key: st.svc.vapid_public_key().await?,
    }))
}

/// Registers this browser's push subscription (`PushSubscription.toJSON()`);
/// the same endpoint again replaces its keys.
#[utoipa::path(post, path = "/v1/me/push-subscriptions", tag = "push",
    request_body = NewPushSubscription, security(("session" = [])),
    responses((status = 201, body = PushSubscribed),
              (status = 400, description = "`invalid`: not an https endpoint, a private address, malformed keys", body = ErrorBody),
              (status = 403, description = "`limit_reached`: push.max_subscriptions_per_user", body = ErrorBody)))]
pub async fn subscribe(
    st: web::Data<AppState>,
    me: UserCaller,
    body: web::Json<NewPushSubscription>,
) -> ApiResult<HttpResponse> {
    let id = st
        .svc
        .add_push_subscription(&me.actor, body.into_inner())
        .await?;
    Ok(HttpResponse::Created().json(PushSubscribed { id }))
}

/// Removes one of the user's subscriptions (the browser unsubscribed).
#[utoipa::path(delete, path = "/v1/me/push-subscriptions/{subscription_id}", tag = "push",
    params(("subscription_id" = PushSubscriptionId, Path)), security(("session" = [])),
    responses((status = 204), (status = 404, description = "`not_found`", body = ErrorBody)))]
pub async fn unsubscribe(
    st: web::Data<AppState>,
    me: UserCaller,
    id: web::Path<PushSubscriptionId>,
) -> ApiResult<HttpResponse> {
    st.svc
        .remove_push_subscription(&me.actor, id.into_inner())
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// What the user wants pushed while offline.
#[utoipa::path(get, path = "/v1/me/push-settings", tag = "push", security(("session" = [])),
    responses((status = 200, body = PushSettings)))]
pub async fn settings(
    st: web::Data<AppState>,
    me: UserCaller,
) -> ApiResult<web::Json<PushSettings>> {
    Ok(web::Json(st.svc.push_settings(&me.actor).await?))
}

/// `all`, `mentions` (dialogs, @mentions and missed calls) or `none`.
#[utoipa::path(put, path = "/v1/me/push-settings", tag = "push", request_body = PushSettings,
    security(("session" = [])),
    responses((status = 200, body = PushSettings), (status = 400, description = "`invalid`", body = ErrorBody)))]
pub async fn set_settings(
    st: web::Data<AppState>,
    me: UserCaller,
    body: web::Json<PushSettings>,
) -> ApiResult<web::Json<PushSettings>> {
    Ok(web::Json(
        st.svc
            .set_push_settings(&me.actor, body.into_inner())
            .await?,
    ))
}
