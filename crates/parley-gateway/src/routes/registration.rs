//! Registration of an infobase by a code e-mailed to its subscriber.

use crate::auth::client_ip;
use crate::crypto::{self, code_hash, ct_eq, sha256, INFOBASE_KEY_PREFIX};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::Utc;
use parley_core::api::{CodeRequested, ConfirmRegistration, Registered, RequestCode};
use parley_core::validate::{self, MAX_INFOBASE_NAME_CHARS};
use parley_core::{ErrorBody, ErrorCode, InfobaseId};
use parley_mail::Mail;
use parley_store::{ConfirmOutcome, NewCode, NewInfobase};
use std::time::Duration;

const HOUR: Duration = Duration::from_secs(3600);

fn limit_ip(st: &AppState, req: &HttpRequest, what: &str) -> ApiResult<String> {
    let ip = client_ip(req, &st.http.trusted_proxies)
        .map(|ip| ip.to_string())
        .unwrap_or_default();
    st.limiter
        .check(
            &format!("{what}:{ip}"),
            st.registration.requests_per_ip_per_hour,
            HOUR,
        )
        .map_err(|wait| ApiError::rate_limited("registration requests from this address", wait))?;
    Ok(ip)
}

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
    let ip = limit_ip(&st, &req, "code")?;
    let email = validate::email(&body.email)?;
    let cfg = &st.registration;
    let since = Utc::now() - chrono::Duration::hours(1);
    if st.store.codes_requested_since(&email, since).await?
        >= i64::from(cfg.codes_per_email_per_hour)
    {
        return Err(ApiError::rate_limited(
            "codes for this e-mail (registration.codes_per_email_per_hour)",
            HOUR / cfg.codes_per_email_per_hour.max(1),
        ));
    }
    let code = crypto::numeric_code(cfg.code_length);
    let salt = crypto::random_bytes::<16>().to_vec();
    let ttl = Duration::from_secs(cfg.code_ttl_secs);
    let new = NewCode {
        code_hash: code_hash(&salt, &email, &code),
        salt,
        email: email.clone(),
        expires_at: Utc::now() + ttl,
        client_addr: ip,
    };
    st.store.insert_code(&new).await?;
    let minutes = cfg.code_ttl_secs.div_ceil(60);
    let mail = Mail {
        to: email.clone(),
        subject: format!("Parley registration code: {code}"),
        body: format!(
            "Your Parley registration code is {code}\r\n\r\n\
             Enter it with the name of your infobase to register it. \
             The code is valid for {minutes} min and can be used once.\r\n\
             If you did not ask for it, ignore this message.\r\n"
        ),
    };
    if let Err(e) = st.mailer.send(&mail).await {
        tracing::warn!(error = %e, "registration mail not sent");
        return Err(ApiError::new(
            ErrorCode::Unavailable,
            "the code could not be mailed; retry later",
        ));
    }
    tracing::info!("registration code sent");
    Ok(HttpResponse::Accepted().json(CodeRequested {
        status: "sent".into(),
        expires_in_seconds: cfg.code_ttl_secs,
    }))
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
    limit_ip(&st, &req, "confirm")?;
    let email = validate::email(&body.email)?;
    let code = validate::code(&body.code, st.registration.code_length)?;
    let name = validate::text(
        "infobase_name",
        &body.infobase_name,
        MAX_INFOBASE_NAME_CHARS,
    )?;
    let key = crypto::secret(INFOBASE_KEY_PREFIX);
    let infobase = NewInfobase {
        id: InfobaseId::new_random(),
        name: name.clone(),
        key_hash: sha256(key.as_bytes()),
    };
    let max_attempts = i32::try_from(st.registration.max_attempts).unwrap_or(i32::MAX);
    let verify = |salt: &[u8], hash: &[u8]| ct_eq(&code_hash(salt, &email, &code), hash);
    match st
        .store
        .confirm_code(&email, max_attempts, verify, &infobase)
        .await?
    {
        ConfirmOutcome::Registered {
            subscriber_id,
            infobase_id,
        } => {
            tracing::info!(%infobase_id, %subscriber_id, "infobase registered");
            Ok(HttpResponse::Created().json(Registered {
                infobase_id,
                infobase_key: key,
                subscriber_id,
                name,
            }))
        }
        ConfirmOutcome::Denied(reason) => {
            tracing::info!(?reason, "registration refused");
            Err(ApiError::access_denied(
                "the code is wrong, expired or already used, or too many attempts were made",
            ))
        }
    }
}
