//! Calls a user makes with a session token.

use crate::auth::UserCaller;
use actix_web::web;
use parley_core::api::User;
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
