//! The infobase event feed (long-poll) and its settings.

use crate::auth::InfobaseCaller;
use crate::error::ApiResult;
use crate::state::AppState;
use actix_web::web;
use parley_core::api::EmailDigestSettings;
use parley_core::feed::{FeedPage, FeedSettings};
use parley_core::{ErrorBody, InfobaseId};
use serde::Deserialize;
use utoipa::IntoParams;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct FeedQuery {
    /// The `cursor` of the previous page; absent: from the oldest event kept.
    pub after: Option<i64>,
    /// Seconds to wait when nothing is there yet (0..=`feed.max_wait_secs`,
    /// default 0: answer at once).
    pub wait: Option<u64>,
    /// Events per page, 1..=`feed.max_page` (default `feed.default_page`).
    pub limit: Option<u32>,
}

/// The infobase's events after a cursor, oldest first: messages in
/// conversations where one of its bot users is a member (dialogs with its
/// bots included), clicks on its users' buttons, calls its users missed,
/// and, when asked for, activity in the contextual conversations of its
/// objects. At least once and in order: read, handle, then ask again with
/// the page's `cursor`.
#[utoipa::path(get, path = "/v1/infobases/{infobase_id}/events", tag = "feed",
    params(("infobase_id" = InfobaseId, Path), FeedQuery), security(("infobase" = [])),
    responses((status = 200, body = FeedPage),
              (status = 400, description = "`invalid`: wait or limit out of range", body = ErrorBody),
              (status = 410, description = "`cursor_expired`: the cursor is older than feed.retention_hours", body = ErrorBody)))]
pub async fn events(
    st: web::Data<AppState>,
    me: InfobaseCaller,
    q: web::Query<FeedQuery>,
) -> ApiResult<web::Json<FeedPage>> {
    Ok(web::Json(
        st.svc.feed(&me.actor, q.after, q.wait, q.limit).await?,
    ))
}

/// What the feed carries beyond the bots' conversations.
#[utoipa::path(get, path = "/v1/infobases/{infobase_id}/feed-settings", tag = "feed",
    params(("infobase_id" = InfobaseId, Path)), security(("infobase" = [])),
    responses((status = 200, body = FeedSettings)))]
pub async fn settings(
    st: web::Data<AppState>,
    me: InfobaseCaller,
) -> ApiResult<web::Json<FeedSettings>> {
    Ok(web::Json(st.svc.feed_settings(&me.actor).await?))
}

/// Changes what the feed carries (from the next event on).
#[utoipa::path(put, path = "/v1/infobases/{infobase_id}/feed-settings", tag = "feed",
    params(("infobase_id" = InfobaseId, Path)), request_body = FeedSettings, security(("infobase" = [])),
    responses((status = 200, body = FeedSettings)))]
pub async fn set_settings(
    st: web::Data<AppState>,
    me: InfobaseCaller,
    body: web::Json<FeedSettings>,
) -> ApiResult<web::Json<FeedSettings>> {
    Ok(web::Json(
        st.svc
            .set_feed_settings(&me.actor, body.into_inner())
            .await?,
    ))
}

/// Whether the infobase's subscriber mails digests to users who stay
/// offline (`digest.delay_secs`) with unread messages; off by default.
#[utoipa::path(get, path = "/v1/infobases/{infobase_id}/email-digest", tag = "feed",
    params(("infobase_id" = InfobaseId, Path)), security(("infobase" = [])),
    responses((status = 200, body = EmailDigestSettings)))]
pub async fn email_digest(
    st: web::Data<AppState>,
    me: InfobaseCaller,
) -> ApiResult<web::Json<EmailDigestSettings>> {
    Ok(web::Json(st.svc.email_digest_settings(&me.actor).await?))
}

/// Turns the digests on or off for the whole subscriber (every infobase of
/// it).
#[utoipa::path(put, path = "/v1/infobases/{infobase_id}/email-digest", tag = "feed",
    params(("infobase_id" = InfobaseId, Path)), request_body = EmailDigestSettings,
    security(("infobase" = [])), responses((status = 200, body = EmailDigestSettings)))]
pub async fn set_email_digest(
    st: web::Data<AppState>,
    me: InfobaseCaller,
    body: web::Json<EmailDigestSettings>,
) -> ApiResult<web::Json<EmailDigestSettings>> {
    Ok(web::Json(
        st.svc
            .set_email_digest_settings(&me.actor, body.into_inner())
            .await?,
    ))
}
