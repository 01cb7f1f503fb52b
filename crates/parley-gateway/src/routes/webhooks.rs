//! Signed webhooks: the endpoints an infobase registers and what was
//! delivered to them.

use crate::auth::InfobaseCaller;
use crate::error::ApiResult;
use crate::state::AppState;
use actix_web::{web, HttpResponse};
use parley_core::feed::{
    NewWebhookBody, Webhook, WebhookCreated, WebhookDeliveries, WebhookList, WebhookPatch,
};
use parley_core::{ErrorBody, InfobaseId, WebhookId};
use serde::Deserialize;
use utoipa::IntoParams;

/// Registers an endpoint; its secret is shown this once.
#[utoipa::path(post, path = "/v1/infobases/{infobase_id}/webhooks", tag = "webhooks",
    params(("infobase_id" = InfobaseId, Path)), request_body = NewWebhookBody, security(("infobase" = [])),
    responses((status = 201, body = WebhookCreated),
              (status = 400, description = "`invalid`: not an http(s) URL, a private target, an unknown kind", body = ErrorBody),
              (status = 403, description = "`limit_reached`: webhooks.max_endpoints", body = ErrorBody)))]
pub async fn create(
    st: web::Data<AppState>,
    me: InfobaseCaller,
    body: web::Json<NewWebhookBody>,
) -> ApiResult<HttpResponse> {
    let created = st.svc.create_webhook(&me.actor, body.into_inner()).await?;
    Ok(HttpResponse::Created().json(created))
}

/// The infobase's endpoints (never their secrets).
#[utoipa::path(get, path = "/v1/infobases/{infobase_id}/webhooks", tag = "webhooks",
    params(("infobase_id" = InfobaseId, Path)), security(("infobase" = [])),
    responses((status = 200, body = WebhookList)))]
pub async fn list(
    st: web::Data<AppState>,
    me: InfobaseCaller,
) -> ApiResult<web::Json<WebhookList>> {
    Ok(web::Json(WebhookList {
        webhooks: st.svc.list_webhooks(&me.actor).await?,
    }))
}

/// Changes an endpoint: URL, kinds, enabled (disabling drops what is
/// pending; enabling resumes with new events).
#[utoipa::path(patch, path = "/v1/infobases/{infobase_id}/webhooks/{webhook_id}", tag = "webhooks",
    params(("infobase_id" = InfobaseId, Path), ("webhook_id" = WebhookId, Path)),
    request_body = WebhookPatch, security(("infobase" = [])),
    responses((status = 200, body = Webhook), (status = 404, description = "`not_found`", body = ErrorBody)))]
pub async fn change(
    st: web::Data<AppState>,
    me: InfobaseCaller,
    path: web::Path<(InfobaseId, WebhookId)>,
    body: web::Json<WebhookPatch>,
) -> ApiResult<web::Json<Webhook>> {
    Ok(web::Json(
        st.svc
            .change_webhook(&me.actor, path.1, body.into_inner())
            .await?,
    ))
}

/// Removes an endpoint and its deliveries.
#[utoipa::path(delete, path = "/v1/infobases/{infobase_id}/webhooks/{webhook_id}", tag = "webhooks",
    params(("infobase_id" = InfobaseId, Path), ("webhook_id" = WebhookId, Path)), security(("infobase" = [])),
    responses((status = 204), (status = 404, description = "`not_found`", body = ErrorBody)))]
pub async fn delete(
    st: web::Data<AppState>,
    me: InfobaseCaller,
    path: web::Path<(InfobaseId, WebhookId)>,
) -> ApiResult<HttpResponse> {
    st.svc.delete_webhook(&me.actor, path.1).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// A new secret for the endpoint, shown this once; the old one stops
/// signing at once.
#[utoipa::path(post, path = "/v1/infobases/{infobase_id}/webhooks/{webhook_id}/rotate-secret", tag = "webhooks",
    params(("infobase_id" = InfobaseId, Path), ("webhook_id" = WebhookId, Path)), security(("infobase" = [])),
    responses((status = 200, body = WebhookCreated), (status = 404, description = "`not_found`", body = ErrorBody)))]
pub async fn rotate(
    st: web::Data<AppState>,
    me: InfobaseCaller,
    path: web::Path<(InfobaseId, WebhookId)>,
) -> ApiResult<web::Json<WebhookCreated>> {
    Ok(web::Json(
        st.svc.rotate_webhook_secret(&me.actor, path.1).await?,
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DeliveriesQuery {
    /// 1..=`feed.max_page` (default `feed.default_page`).
    pub limit: Option<u32>,
}

/// The endpoint's latest deliveries, newest first, with their state.
#[utoipa::path(get, path = "/v1/infobases/{infobase_id}/webhooks/{webhook_id}/deliveries", tag = "webhooks",
    params(("infobase_id" = InfobaseId, Path), ("webhook_id" = WebhookId, Path), DeliveriesQuery),
    security(("infobase" = [])),
    responses((status = 200, body = WebhookDeliveries), (status = 404, description = "`not_found`", body = ErrorBody)))]
pub async fn deliveries(
    st: web::Data<AppState>,
    me: InfobaseCaller,
    path: web::Path<(InfobaseId, WebhookId)>,
    q: web::Query<DeliveriesQuery>,
) -> ApiResult<web::Json<WebhookDeliveries>> {
    Ok(web::Json(WebhookDeliveries {
        deliveries: st
            .svc
            .webhook_deliveries(&me.actor, path.1, q.limit)
            .await?,
    }))
}
