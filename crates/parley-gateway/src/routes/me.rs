//! Calls a user makes with a session token.

use crate::auth::{SessionCaller, UserCaller};
use crate::error::ApiResult;
use crate::state::AppState;
use actix_web::{web, HttpResponse};
use parley_core::api::{User, WsTicket};
use parley_core::ErrorBody;

/// The user the session token belongs to; a quick way to check a token.
#[utoipa::path(
    get, path = "/v1/me", tag = "users",
    security(("session" = [])),
    responses(
        (status = 200, body = User),
        (status = 401, description = "`unauthenticated`", body = ErrorBody),
        (status = 403, description = "`access_denied`: token unknown, expired or revoked", body = ErrorBody),
    )
)]
pub async fn me(user: UserCaller) -> web::Json<User> {
    web::Json(user.actor.user)
}

/// A single-use ticket, valid `auth.ticket_ttl_secs` (30 s), that opens one
/// WebSocket session for the token's user as `GET /ws?ticket=…`: a browser
/// cannot set headers on a WebSocket, and the session token (valid for
/// hours or days) must not travel in a URL. The session ends with the token.
#[utoipa::path(
    post, path = "/v1/ws-tickets", tag = "users",
    security(("session" = [])),
    responses(
        (status = 201, body = WsTicket),
        (status = 401, description = "`unauthenticated`", body = ErrorBody),
        (status = 403, description = "`access_denied`: token unknown, expired or revoked", body = ErrorBody),
    )
)]
pub async fn ws_ticket(st: web::Data<AppState>, me: SessionCaller) -> ApiResult<HttpResponse> {
    let ticket: WsTicket = st.svc.issue_ws_ticket(&me.session).await?;
    Ok(HttpResponse::Created().json(ticket))
}
