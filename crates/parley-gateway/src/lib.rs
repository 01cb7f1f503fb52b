//! Parley's HTTP face: the REST API under `/v1`, health endpoints and the
//! OpenAPI document, as one actix-web `App` that the server binary and the
//! tests build the same way.

pub mod auth;
pub mod config;
pub mod error;
pub mod openapi;
pub mod routes;
pub mod server;
pub mod state;
pub mod ws;

pub use state::AppState;

use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::{web, App};
use error::ApiError;
use parley_core::ErrorCode;
use routes::{
    conversations, feed, files, health, hooks, infobases, me, push, registration, web as webui,
    webhooks,
};
use tracing::Instrument;

/// Path of the OpenAPI document.
pub const OPENAPI_PATH: &str = "/v1/openapi.json";

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        "this route does not take that method",
    )
}

fn resource(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(method_not_allowed))
}

/// Builds the application: routes, body limits, the one error shape and a
/// tracing span per request.
pub fn app(
    state: web::Data<AppState>,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let limit = state.http.max_body_bytes;
    let ws_path = state.ws.path.clone();
    App::new()
        // Browsers must take every answer for what its Content-Type says.
        .wrap(
            actix_web::middleware::DefaultHeaders::new()
                .add((actix_web::http::header::X_CONTENT_TYPE_OPTIONS, "nosniff")),
        )
        .app_data(state)
        .app_data(
            web::JsonConfig::default()
                .limit(limit)
                .content_type_required(false)
                .error_handler(error::json_error),
        )
        .app_data(web::PayloadConfig::default().limit(limit))
        .app_data(web::QueryConfig::default().error_handler(error::query_error))
        .app_data(web::PathConfig::default().error_handler(error::path_error))
        .service(resource("/healthz").route(web::get().to(health::healthz)))
        .service(resource("/readyz").route(web::get().to(health::readyz)))
        .service(resource("/metrics").route(web::get().to(health::metrics)))
        .service(resource(OPENAPI_PATH).route(web::get().to(health::openapi)))
        .service(
            resource("/v1/registration/code").route(web::post().to(registration::request_code)),
        )
        .service(resource("/v1/registration/confirm").route(web::post().to(registration::confirm)))
        .service(
            resource("/v1/infobases/{infobase_id}")
                .route(web::get().to(infobases::get_infobase))
                .route(web::delete().to(infobases::unregister)),
        )
        .service(
            resource("/v1/infobases/{infobase_id}/users")
                .route(web::post().to(infobases::upsert_user))
                .route(web::get().to(infobases::list_users)),
        )
        .service(
            resource("/v1/infobases/{infobase_id}/users/{user_id}")
                .route(web::get().to(infobases::get_user))
                .route(web::delete().to(infobases::delete_user)),
        )
        .service(
            resource("/v1/infobases/{infobase_id}/users/{user_id}/tokens")
                .route(web::post().to(infobases::issue_token))
                .route(web::delete().to(infobases::revoke_user_tokens)),
        )
        .service(
            resource("/v1/infobases/{infobase_id}/users/{user_id}/tokens/{token_id}")
                .route(web::delete().to(infobases::revoke_token)),
        )
        .service(
            resource("/v1/infobases/{infobase_id}/conversations")
                .route(web::post().to(conversations::create))
                .route(web::get().to(conversations::list)),
        )
        .service(
            resource("/v1/infobases/{infobase_id}/contexts")
                .route(web::put().to(conversations::open_context)),
        )
        .service(
            resource("/v1/infobases/{infobase_id}/conversations/{conversation_id}")
                .route(web::get().to(conversations::get))
                .route(web::patch().to(conversations::update)),
        )
        .service(
            resource("/v1/infobases/{infobase_id}/conversations/{conversation_id}/members")
                .route(web::post().to(conversations::add_members)),
        )
        .service(
            resource(
                "/v1/infobases/{infobase_id}/conversations/{conversation_id}/members/{user_id}",
            )
            .route(web::delete().to(conversations::remove_member)),
        )
        .service(
            resource("/v1/infobases/{infobase_id}/conversations/{conversation_id}/messages")
                .route(web::post().to(conversations::post_message))
                .route(web::get().to(conversations::history)),
        )
        .service(
            resource(
                "/v1/infobases/{infobase_id}/conversations/{conversation_id}/messages/{message_id}",
            )
            .route(web::delete().to(conversations::delete_message)),
        )
        .service(
            resource("/v1/infobases/{infobase_id}/users/{user_id}/presence")
                .route(web::get().to(conversations::presence)),
        )
        .service(
            resource("/v1/infobases/{infobase_id}/users/{user_id}/notifications")
                .route(web::post().to(conversations::notify)),
        )
        .service(
            resource("/v1/infobases/{infobase_id}/search")
                .route(web::get().to(conversations::search)),
        )
        .service(
            resource("/v1/infobases/{infobase_id}/action-invocations")
                .route(web::get().to(conversations::action_invocations)),
        )
        .service(
            resource("/v1/infobases/{infobase_id}/incoming-webhooks")
                .route(web::post().to(hooks::create))
                .route(web::get().to(hooks::list)),
        )
        .service(
            resource("/v1/infobases/{infobase_id}/incoming-webhooks/{hook_id}")
                .route(web::delete().to(hooks::revoke)),
        )
        .service(resource("/v1/hooks/{token}").route(web::post().to(hooks::post)))
        .service(resource("/v1/infobases/{infobase_id}/events").route(web::get().to(feed::events)))
        .service(
            resource("/v1/infobases/{infobase_id}/feed-settings")
                .route(web::get().to(feed::settings))
                .route(web::put().to(feed::set_settings)),
        )
        .service(
            resource("/v1/infobases/{infobase_id}/email-digest")
                .route(web::get().to(feed::email_digest))
                .route(web::put().to(feed::set_email_digest)),
        )
        .service(
            resource("/v1/infobases/{infobase_id}/webhooks")
                .route(web::post().to(webhooks::create))
                .route(web::get().to(webhooks::list)),
        )
        .service(
            resource("/v1/infobases/{infobase_id}/webhooks/{webhook_id}")
                .route(web::patch().to(webhooks::change))
                .route(web::delete().to(webhooks::delete)),
        )
        .service(
            resource("/v1/infobases/{infobase_id}/webhooks/{webhook_id}/rotate-secret")
                .route(web::post().to(webhooks::rotate)),
        )
        .service(
            resource("/v1/infobases/{infobase_id}/webhooks/{webhook_id}/deliveries")
                .route(web::get().to(webhooks::deliveries)),
        )
        .service(resource("/v1/files").route(web::post().to(files::create)))
        .service(
            resource("/v1/files/{file_id}")
                .route(web::get().to(files::info))
                .route(web::delete().to(files::delete)),
        )
        .service(
            resource("/v1/files/{file_id}/content")
                .route(web::put().to(files::upload))
                .route(web::get().to(files::download)),
        )
        .service(resource("/v1/files/{file_id}/complete").route(web::post().to(files::complete)))
        .service(resource("/v1/files/{file_id}/link").route(web::post().to(files::link)))
        .service(resource("/v1/me").route(web::get().to(me::me)))
        .service(resource("/v1/push/vapid-key").route(web::get().to(push::vapid_key)))
        .service(resource("/v1/me/push-subscriptions").route(web::post().to(push::subscribe)))
        .service(
            resource("/v1/me/push-subscriptions/{subscription_id}")
                .route(web::delete().to(push::unsubscribe)),
        )
        .service(
            resource("/v1/me/push-settings")
                .route(web::get().to(push::settings))
                .route(web::put().to(push::set_settings)),
        )
        .service(resource("/v1/ws-tickets").route(web::post().to(me::ws_ticket)))
        .service(resource("/v1/dev/signin").route(web::post().to(webui::dev_signin)))
        .service(resource("/").route(web::get().to(webui::index)))
        .service(resource("/embed/context").route(web::get().to(webui::index)))
        .service(resource("/app.js").route(web::get().to(webui::app_js)))
        .service(resource("/app.css").route(web::get().to(webui::app_css)))
        .service(resource("/i18n.js").route(web::get().to(webui::i18n_js)))
        .service(resource("/sw.js").route(web::get().to(webui::sw_js)))
        .service(resource(&ws_path).route(web::get().to(ws::route)))
        .default_service(web::to(error::no_route))
        .wrap_fn(|req, srv| {
            let request_id = uuid::Uuid::new_v4().simple().to_string();
            // The path only: query strings may carry secrets; so does an
            // incoming webhook's path (its token), which is cut off.
            let path = match req.path().strip_prefix("/v1/hooks/") {
                Some(_) => "/v1/hooks/…",
                None => req.path(),
            };
            let span = tracing::info_span!(
                "request",
                id = %&request_id[..12],
                method = %req.method(),
                path = %path,
            );
            let fut = srv.call(req);
            async move {
                let started = std::time::Instant::now();
                let mut res = fut.await?;
                let status = res.status().as_u16();
                let secs = started.elapsed().as_secs_f64();
                let ms = secs * 1000.0;
                metrics::histogram!("parley_http_request_seconds").record(secs);
                let class = match status {
                    100..=299 => "2xx",
                    300..=399 => "3xx",
                    400..=499 => "4xx",
                    _ => "5xx",
                };
                metrics::counter!("parley_http_requests_total", "status" => class).increment(1);
                if status >= 500 {
                    tracing::warn!(status, ms, "request failed");
                } else {
                    tracing::debug!(status, ms, "request done");
                }
                if let Ok(v) = HeaderValue::from_str(&request_id[..12]) {
                    res.headers_mut()
                        .insert(HeaderName::from_static("x-request-id"), v);
                }
                Ok(res)
            }
            .instrument(span)
        })
}
