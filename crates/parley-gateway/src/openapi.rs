//! The OpenAPI document, generated from the handlers' annotations.

use crate::routes::{
    conversations, feed as feed_routes, files, health, hooks, infobases, me, push, registration,
    webhooks,
};
use parley_core::{api, feed, protocol};
use parley_core::{ErrorBody, ErrorCode};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "infobase",
            SecurityScheme::Http(
                Http::builder()
                    .scheme(HttpAuthScheme::Basic)
                    .description(Some("user name = infobase id, password = infobase key"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::Http(
                Http::builder()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("a session token issued for a user"))
                    .build(),
            ),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Parley API", description = "REST API of the Parley collaboration server. Every error is `{\"code\", \"message\"}`; see docs/api.md for the code table."),
    paths(
        health::healthz, health::readyz,
        registration::request_code, registration::confirm,
        infobases::get_infobase, infobases::unregister,
        infobases::upsert_user, infobases::list_users, infobases::get_user, infobases::delete_user, infobases::issue_token,
        infobases::revoke_token, infobases::revoke_user_tokens,
        me::me, me::ws_ticket,
        conversations::create, conversations::open_context, conversations::list, conversations::get,
        conversations::add_members, conversations::remove_member, conversations::post_message,
        conversations::history, conversations::delete_message, conversations::presence, conversations::notify, conversations::search,
        conversations::action_invocations, conversations::update,
        hooks::create, hooks::list, hooks::revoke, hooks::post,
        feed_routes::events, feed_routes::settings, feed_routes::set_settings,
        feed_routes::email_digest, feed_routes::set_email_digest,
        push::vapid_key, push::subscribe, push::unsubscribe, push::settings, push::set_settings,
        webhooks::create, webhooks::list, webhooks::change, webhooks::delete, webhooks::rotate, webhooks::deliveries,
        files::create, files::upload, files::complete, files::link, files::info, files::download, files::delete,
    ),
    components(schemas(
        ErrorBody, ErrorCode,
        api::RequestCode, api::CodeRequested, api::ConfirmRegistration, api::Registered,
        api::Infobase, api::UpsertUser, api::User, api::UpsertedUser, api::UserPage,
        api::IssueToken, api::SessionToken, api::Health, api::Readiness, api::ComponentStatus,
        protocol::Conversation, protocol::ConversationKind, protocol::ConversationPage, protocol::Message,
        protocol::MessagePage, protocol::NewMessage, protocol::Action, protocol::ConversationFilter,
        conversations::CreateConversation, conversations::OpenContext, conversations::MembersBody,
        conversations::PostMessage, conversations::NotificationBody, conversations::Presence,
        protocol::FileInfo, protocol::FileState, protocol::Attachment,
        parley_core::api::NewFileBody, parley_core::api::Upload, parley_core::api::FileCreated,
        api::WsTicket, api::FileLink, protocol::SearchPage, protocol::SearchHit, protocol::SearchQuery,
        protocol::ActionInvocation, protocol::ActionChoice, protocol::InvocationPage,
        conversations::UpdateConversation,
        api::NewHookBody, api::IncomingHook, api::HookCreated, api::HookList, api::HookMessage,
        api::EmailDigestSettings, api::NewPushSubscription, api::PushKeys, api::PushSettings, api::PushSubscribed, api::VapidPublicKey,
        feed::FeedEvent, feed::FeedPage, feed::FeedSettings, feed::NewWebhookBody, feed::WebhookPatch,
        feed::Webhook, feed::WebhookCreated, feed::WebhookList, feed::WebhookDelivery, feed::WebhookDeliveries,
    )),
    modifiers(&Security),
)]
struct ApiDoc;

pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

#[cfg(test)]
mod tests {
    /// Every REST route the app registers (`resource("/v1/…")` with its
    /// `.route(web::METHOD()…)` in lib.rs) is in the OpenAPI document with
    /// that method.
    #[test]
    fn every_rest_route_is_documented() {
        // Without whitespace: a path on a line of its own reads the same.
        let src: String = include_str!("lib.rs")
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        let doc = serde_json::to_value(super::document()).expect("document");
        let paths = doc["paths"].as_object().expect("paths");
        let mut missing = Vec::new();
        let mut seen = 0;
        for chunk in src.split("resource(\"").skip(1) {
            let Some((path, rest)) = chunk.split_once('"') else {
                continue;
            };
            if !path.starts_with("/v1/") || path.starts_with("/v1/dev/") {
                continue;
            }
            let until = rest.find("resource(\"").unwrap_or(rest.len());
            for m in rest[..until].split(".route(web::").skip(1) {
                let method = m.split('(').next().unwrap_or("");
                seen += 1;
                if paths.get(path).and_then(|p| p.get(method)).is_none() {
                    missing.push(format!("{} {path}", method.to_uppercase()));
                }
            }
        }
        assert!(seen > 40, "the route scan found only {seen} routes");
        assert!(missing.is_empty(), "not in OpenAPI: {missing:#?}");
    }
}
