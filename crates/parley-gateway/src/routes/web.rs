//! The web client, embedded in the binary, and the development sign-in.

use crate::error::ApiResult;
use crate::state::AppState;
use actix_web::http::header;
use actix_web::{web, HttpResponse};
use serde::Deserialize;

const INDEX: &str = include_str!("../../web/index.html");
const APP_JS: &str = include_str!("../../web/app.js");
const APP_CSS: &str = include_str!("../../web/app.css");
const I18N_JS: &str = include_str!("../../web/i18n.js");
const SW_JS: &str = include_str!("../../web/sw.js");

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
pub async fn index(st: web::Data<AppState>) -> HttpResponse {
    let mut res = asset(INDEX, "text/html; charset=utf-8");
    if let Ok(v) = header::HeaderValue::from_str(
        &st.web
            .content_security_policy(&st.svc.config().calls.janus_urls),
    ) {
        res.headers_mut().insert(header::CONTENT_SECURITY_POLICY, v);
    }
    res
}

pub async fn app_js() -> HttpResponse {
    asset(APP_JS, "text/javascript; charset=utf-8")
}

/// The UI's words, one catalog per language.
pub async fn i18n_js() -> HttpResponse {
    asset(I18N_JS, "text/javascript; charset=utf-8")
}

/// The service worker that shows Web Push notices (served from the root so
/// its scope is the whole client).
pub async fn sw_js() -> HttpResponse {
    asset(SW_JS, "text/javascript; charset=utf-8")
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
    Ok(HttpResponse::Ok().json(st.svc.dev_signin(&body.name).await?))
}
