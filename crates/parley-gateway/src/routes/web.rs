//! The web client, embedded in the binary, and the development sign-in.

use crate::crypto::{self, sha256, SESSION_TOKEN_PREFIX};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use actix_web::http::header;
use actix_web::{web, HttpResponse};
use chrono::Utc;
use parley_core::api::SessionToken;
use parley_core::{validate, ErrorCode, TokenId};
use parley_store::{NewToken, UserFields};
use serde::Deserialize;
use std::time::Duration;

const INDEX: &str = include_str!("../../web/index.html");
const APP_JS: &str = include_str!("../../web/app.js");
const APP_CSS: &str = include_str!("../../web/app.css");

fn asset(body: &'static str, content_type: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, content_type))
        // Tokens travel in the fragment; no page may leak them as a referrer.
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(body)
}

/// `/` and `/embed/context`: the client (it reads its mode from the path).
pub async fn index() -> HttpResponse {
    asset(INDEX, "text/html; charset=utf-8")
}

pub async fn app_js() -> HttpResponse {
    asset(APP_JS, "text/javascript; charset=utf-8")
}

pub async fn app_css() -> HttpResponse {
    asset(APP_CSS, "text/css; charset=utf-8")
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevSignin {
    pub name: String,
}

/// Development sign-in (only with `web.dev_signin = true`): a user of the
/// "Development" infobase by name, and a token for it.
pub async fn dev_signin(
    st: web::Data<AppState>,
    body: web::Json<DevSignin>,
) -> ApiResult<HttpResponse> {
    if !st.web.dev_signin {
        return Err(ApiError::not_found("route"));
    }
    let name = validate::text("name", &body.name, 64)?;
    let infobase = st
        .store
        .ensure_infobase(
            "dev@parley.localhost",
            "Development",
            &sha256(&crypto::random_bytes::<32>()),
        )
        .await?;
    let fields = UserFields {
        external_id: name.to_lowercase(),
        name,
        ..Default::default()
    };
    let (user, _) = st.store.upsert_user(infobase, &fields).await?;
    let token = crypto::secret(SESSION_TOKEN_PREFIX);
    let expires_at = Utc::now() + Duration::from_secs(st.auth.token_ttl_secs);
    let stored = st
        .store
        .insert_token(&NewToken {
            id: TokenId::new_random(),
            token_hash: sha256(token.as_bytes()),
            user_id: user.id,
            infobase_id: infobase,
            expires_at,
        })
        .await?;
    if !stored {
        return Err(ApiError::new(ErrorCode::AccessDenied, "the user is locked"));
    }
    Ok(HttpResponse::Ok().json(SessionToken {
        token,
        user_id: user.id,
        expires_at,
    }))
}
