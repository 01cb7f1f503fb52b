//! What an infobase's server does with conversations over REST: create
//! them, own contextual ones and grant access to them, post (as a user or an
//! application user), read history, manage members, ask presence, notify.

use crate::auth::InfobaseCaller;
use crate::error::ApiResult;
use crate::state::AppState;
use actix_web::{web, HttpResponse};
use parley_core::protocol::{
    Conversation, ConversationFilter, ConversationKind, ConversationPage, InvocationPage, Message,
    MessagePage, NewMessage, SearchPage, SearchQuery,
};
use parley_core::{ConversationId, ErrorBody, InfobaseId, MessageId, UserId};
use parley_service::{HistoryQuery as Page, NewByInfobase, Opened, Posted};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::{IntoParams, ToSchema};

/// `POST /v1/infobases/{id}/conversations`
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateConversation {
    /// `group` (default) or `dialog`.
    #[serde(default)]
    pub kind: Option<ConversationKind>,
    #[serde(default)]
    pub title: String,
    pub members: Vec<UserId>,
    #[serde(default)]
    pub hidden: bool,
    /// Unique within this infobase; find the conversation by it later.
    #[serde(default)]
    pub key: Option<String>,
}

/// `PUT /v1/infobases/{id}/contexts`
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenContext {
    /// The infobase's reference of the object (opaque text).
    pub object_ref: String,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub hidden: bool,
}

#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MembersBody {
    pub user_ids: Vec<UserId>,
}

/// `POST .../messages`: a message by `author_id` (a user of this infobase).
#[derive(Clone, Debug, Deserialize, ToSchema)]
pub struct PostMessage {
    pub author_id: UserId,
    #[serde(flatten)]
    pub message: NewMessage,
}

#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NotificationBody {
    #[schema(value_type = Object)]
    pub data: Value,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Presence {
    pub online: bool,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    pub before: Option<i64>,
    pub after: Option<i64>,
    pub limit: Option<u32>,
}

fn opened(o: Opened) -> HttpResponse {
    if o.created {
        HttpResponse::Created()
    } else {
        HttpResponse::Ok()
    }
    .json(o.conversation)
}

/// Creates a group conversation or opens the dialog of two users.
#[utoipa::path(post, path = "/v1/infobases/{infobase_id}/conversations", tag = "conversations",
    params(("infobase_id" = InfobaseId, Path)), request_body = CreateConversation, security(("infobase" = [])),
    responses((status = 201, body = parley_core::protocol::Conversation),
              (status = 200, description = "The dialog existed", body = parley_core::protocol::Conversation),
              (status = 409, description = "`conflict`: key taken", body = ErrorBody)))]
pub async fn create(
    st: web::Data<AppState>,
    me: InfobaseCaller,
    body: web::Json<CreateConversation>,
) -> ApiResult<HttpResponse> {
    let b = body.into_inner();
    let new = NewByInfobase {
        kind: b.kind.unwrap_or(ConversationKind::Group),
        title: b.title,
        members: b.members,
        hidden: b.hidden,
        key: b.key,
    };
    Ok(opened(st.svc.create_by_infobase(&me.actor, new).await?))
}

/// Gets or creates the one contextual conversation of an object; safe to call
/// concurrently.
#[utoipa::path(put, path = "/v1/infobases/{infobase_id}/contexts", tag = "conversations",
    params(("infobase_id" = InfobaseId, Path)), request_body = OpenContext, security(("infobase" = [])),
    responses((status = 201, body = parley_core::protocol::Conversation), (status = 200, body = parley_core::protocol::Conversation)))]
pub async fn open_context(
    st: web::Data<AppState>,
    me: InfobaseCaller,
    body: web::Json<OpenContext>,
) -> ApiResult<HttpResponse> {
    let o = st
        .svc
        .open_context(&me.actor, &body.object_ref, &body.title, body.hidden)
        .await?;
    Ok(opened(o))
}

/// Conversations this infobase created or its users are in.
#[utoipa::path(get, path = "/v1/infobases/{infobase_id}/conversations", tag = "conversations",
    params(("infobase_id" = InfobaseId, Path)), security(("infobase" = [])),
    responses((status = 200, body = ConversationPage)))]
pub async fn list(
    st: web::Data<AppState>,
    me: InfobaseCaller,
    q: web::Query<ConversationFilter>,
) -> ApiResult<web::Json<ConversationPage>> {
    let page = st
        .svc
        .conversations_of_infobase(&me.actor, q.into_inner())
        .await?;
    Ok(web::Json(page))
}

#[utoipa::path(get, path = "/v1/infobases/{infobase_id}/conversations/{conversation_id}", tag = "conversations",
    params(("infobase_id" = InfobaseId, Path), ("conversation_id" = ConversationId, Path)), security(("infobase" = [])),
    responses((status = 200, body = parley_core::protocol::Conversation), (status = 404, body = ErrorBody)))]
pub async fn get(
    st: web::Data<AppState>,
    me: InfobaseCaller,
    path: web::Path<(InfobaseId, ConversationId)>,
) -> ApiResult<HttpResponse> {
    let conv = st.svc.conversation_for_infobase(&me.actor, path.1).await?;
    Ok(HttpResponse::Ok().json(conv))
}

/// Adds members; for a contextual conversation this is the grant that lets a
/// user read and write it.
#[utoipa::path(post, path = "/v1/infobases/{infobase_id}/conversations/{conversation_id}/members", tag = "conversations",
    params(("infobase_id" = InfobaseId, Path), ("conversation_id" = ConversationId, Path)), request_body = MembersBody,
    security(("infobase" = [])), responses((status = 200, body = parley_core::protocol::Conversation)))]
pub async fn add_members(
    st: web::Data<AppState>,
    me: InfobaseCaller,
    path: web::Path<(InfobaseId, ConversationId)>,
    body: web::Json<MembersBody>,
) -> ApiResult<HttpResponse> {
    let conv = st
        .svc
        .add_members_by_infobase(&me.actor, path.1, &body.user_ids)
        .await?;
    Ok(HttpResponse::Ok().json(conv))
}

/// Removes a member (revokes a grant).
#[utoipa::path(delete, path = "/v1/infobases/{infobase_id}/conversations/{conversation_id}/members/{user_id}", tag = "conversations",
    params(("infobase_id" = InfobaseId, Path), ("conversation_id" = ConversationId, Path), ("user_id" = UserId, Path)),
    security(("infobase" = [])), responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn remove_member(
    st: web::Data<AppState>,
    me: InfobaseCaller,
    path: web::Path<(InfobaseId, ConversationId, UserId)>,
) -> ApiResult<HttpResponse> {
    st.svc
        .remove_member_by_infobase(&me.actor, path.1, path.2)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Posts a message as one of this infobase's users (a person or an
/// application user); the author becomes a member if it was not.
#[utoipa::path(post, path = "/v1/infobases/{infobase_id}/conversations/{conversation_id}/messages", tag = "conversations",
    params(("infobase_id" = InfobaseId, Path), ("conversation_id" = ConversationId, Path)), request_body = PostMessage,
    security(("infobase" = [])), responses((status = 201, body = Message), (status = 200, description = "Idempotent retry", body = Message)))]
pub async fn post_message(
    st: web::Data<AppState>,
    me: InfobaseCaller,
    path: web::Path<(InfobaseId, ConversationId)>,
    body: web::Json<PostMessage>,
) -> ApiResult<HttpResponse> {
    let b = body.into_inner();
    let Posted { message, fresh } = st
        .svc
        .post_as_infobase(&me.actor, path.1, b.author_id, b.message)
        .await?;
    Ok(if fresh {
        HttpResponse::Created()
    } else {
        HttpResponse::Ok()
    }
    .json(message))
}

/// History, ascending `seq`; everything, whatever `recipients` says.
#[utoipa::path(get, path = "/v1/infobases/{infobase_id}/conversations/{conversation_id}/messages", tag = "conversations",
    params(("infobase_id" = InfobaseId, Path), ("conversation_id" = ConversationId, Path), HistoryQuery),
    security(("infobase" = [])), responses((status = 200, body = MessagePage)))]
pub async fn history(
    st: web::Data<AppState>,
    me: InfobaseCaller,
    path: web::Path<(InfobaseId, ConversationId)>,
    q: web::Query<HistoryQuery>,
) -> ApiResult<web::Json<MessagePage>> {
    let page = Page {
        before: q.before,
        after: q.after,
        limit: q.limit,
    };
    Ok(web::Json(
        st.svc.history_for_infobase(&me.actor, path.1, page).await?,
    ))
}

/// Deletes any message of a visible conversation.
#[utoipa::path(delete, path = "/v1/infobases/{infobase_id}/conversations/{conversation_id}/messages/{message_id}", tag = "conversations",
    params(("infobase_id" = InfobaseId, Path), ("conversation_id" = ConversationId, Path), ("message_id" = MessageId, Path)),
    security(("infobase" = [])), responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete_message(
    st: web::Data<AppState>,
    me: InfobaseCaller,
    path: web::Path<(InfobaseId, ConversationId, MessageId)>,
) -> ApiResult<HttpResponse> {
    st.svc
        .delete_message_by_infobase(&me.actor, path.1, path.2)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Is the user connected now (on any node)?
#[utoipa::path(get, path = "/v1/infobases/{infobase_id}/users/{user_id}/presence", tag = "users",
    params(("infobase_id" = InfobaseId, Path), ("user_id" = UserId, Path)), security(("infobase" = [])),
    responses((status = 200, body = Presence), (status = 404, body = ErrorBody)))]
pub async fn presence(
    st: web::Data<AppState>,
    me: InfobaseCaller,
    path: web::Path<(InfobaseId, UserId)>,
) -> ApiResult<web::Json<Presence>> {
    let online = st.svc.presence_for_infobase(&me.actor, path.1).await?;
    Ok(web::Json(Presence { online }))
}

/// Pushes a `notification` event to the user's open sessions.
#[utoipa::path(post, path = "/v1/infobases/{infobase_id}/users/{user_id}/notifications", tag = "users",
    params(("infobase_id" = InfobaseId, Path), ("user_id" = UserId, Path)), request_body = NotificationBody,
    security(("infobase" = [])), responses((status = 202), (status = 404, body = ErrorBody)))]
pub async fn notify(
    st: web::Data<AppState>,
    me: InfobaseCaller,
    path: web::Path<(InfobaseId, UserId)>,
    body: web::Json<NotificationBody>,
) -> ApiResult<HttpResponse> {
    st.svc
        .notify(&me.actor, path.1, body.into_inner().data)
        .await?;
    Ok(HttpResponse::Accepted().json(json!({ "queued": true })))
}

/// Full-text search (Russian and English word forms) of what the infobase
/// may read: its own conversations whole, in others what its member users
/// may read. Best matches first, cursor-paged.
#[utoipa::path(get, path = "/v1/infobases/{infobase_id}/search", tag = "conversations",
    params(("infobase_id" = InfobaseId, Path),
           ("query" = String, Query, description = "Words; \"phrase\", -excluded, or"),
           ("conversation_id" = Option<ConversationId>, Query), ("author_id" = Option<UserId>, Query),
           ("from" = Option<String>, Query, description = "RFC 3339"), ("to" = Option<String>, Query),
           ("cursor" = Option<String>, Query), ("limit" = Option<u32>, Query)),
    security(("infobase" = [])),
    responses((status = 200, body = SearchPage), (status = 400, description = "`invalid`", body = ErrorBody)))]
pub async fn search(
    st: web::Data<AppState>,
    me: InfobaseCaller,
    q: web::Query<SearchQuery>,
) -> ApiResult<web::Json<SearchPage>> {
    Ok(web::Json(
        st.svc
            .search_for_infobase(&me.actor, q.into_inner())
            .await?,
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct InvocationsQuery {
    /// The `next_cursor` of the previous page (0 or absent: from the start).
    pub after: Option<i64>,
    pub limit: Option<u32>,
}

/// Clicks on action buttons of messages written by the infobase's users
/// (bots, application users), oldest first, after a cursor: how an
/// application that cannot receive webhooks hears the answers.
#[utoipa::path(get, path = "/v1/infobases/{infobase_id}/action-invocations", tag = "conversations",
    params(("infobase_id" = InfobaseId, Path), InvocationsQuery),
    security(("infobase" = [])),
    responses((status = 200, body = InvocationPage)))]
pub async fn action_invocations(
    st: web::Data<AppState>,
    me: InfobaseCaller,
    q: web::Query<InvocationsQuery>,
) -> ApiResult<web::Json<InvocationPage>> {
    Ok(web::Json(
        st.svc
            .action_invocations(&me.actor, q.after, q.limit)
            .await?,
    ))
}

/// `PATCH .../conversations/{id}`: what changes (absent fields stay).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateConversation {
    pub title: Option<String>,
    pub description: Option<String>,
    /// An image file uploaded to this conversation; `null` removes the
    /// picture.
    #[serde(default, deserialize_with = "parley_core::protocol::present")]
    #[schema(value_type = Option<parley_core::FileId>)]
    pub picture: Option<Option<parley_core::FileId>>,
}

/// Changes the title, description or picture of a conversation the infobase owns;
/// members get `conversation.updated` (with `seq`).
#[utoipa::path(patch, path = "/v1/infobases/{infobase_id}/conversations/{conversation_id}", tag = "conversations",
    params(("infobase_id" = InfobaseId, Path), ("conversation_id" = ConversationId, Path)),
    request_body = UpdateConversation, security(("infobase" = [])),
    responses((status = 200, body = Conversation),
              (status = 403, description = "`access_denied`: not the owner infobase", body = ErrorBody)))]
pub async fn update(
    st: web::Data<AppState>,
    me: InfobaseCaller,
    path: web::Path<(InfobaseId, ConversationId)>,
    body: web::Json<UpdateConversation>,
) -> ApiResult<web::Json<Conversation>> {
    let b = body.into_inner();
    Ok(web::Json(
        st.svc
            .update_conversation_by_infobase(
                &me.actor,
                path.1,
                &parley_service::ConversationUpdate {
                    title: b.title,
                    description: b.description,
                    picture: b.picture,
                },
            )
            .await?,
    ))
}
