//! Registration of an infobase by a code e-mailed to its subscriber.

use crate::auth::client_ip;
use crate::error::ApiResult;
use crate::state::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use parley_core::api::{CodeRequested, ConfirmRegistration, Registered, RequestCode};
use parley_core::ErrorBody;

/// Sends a registration code to the e-mail.
#[utoipa::path(
    post, path = "/v1/registration/code", tag = "registration",
    request_body = RequestCode,
    responses(
        (status = 202, description = "A code was sent (the same answer whether or not the e-mail is known)", body = CodeRequested),
        (status = 400, description = "`invalid_json` or `invalid` (bad e-mail)", body = ErrorBody),
        (status = 429, description = "`rate_limited` per e-mail or per client address", body = ErrorBody),
        (status = 503, description = "`unavailable`: database or mail server down", body = ErrorBody),
    )
)]
pub async fn request_code(
    st: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<RequestCode>,
) -> ApiResult<HttpResponse> {
    let client = client_ip(&req, &st.http.trusted_proxies);
    let out = st.svc.request_code(&body.email, client).await?;
    Ok(HttpResponse::Accepted().json(out))
}

/// Confirms `(email, code, infobase name)` and registers a new infobase.
#[utoipa::path(
    post, path = "/v1/registration/confirm", tag = "registration",
    request_body = ConfirmRegistration,
    responses(
        (status = 201, description = "Registered; `infobase_key` is shown only this once", body = Registered),
        (status = 400, description = "`invalid_json` or `invalid` (bad e-mail, code not digits, empty name)", body = ErrorBody),
        (status = 403, description = "`access_denied`: wrong, expired or used code, or too many attempts; nothing was created", body = ErrorBody),
        (status = 429, description = "`rate_limited` per client address", body = ErrorBody),
    )
)]
pub async fn confirm(
    st: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<ConfirmRegistration>,
) -> ApiResult<HttpResponse> {
    let client = client_ip(&req, &st.http.trusted_proxies);
    let out: Registered = st.svc.confirm_registration(&body, client).await?;
    Ok(HttpResponse::Created().json(out))
}
