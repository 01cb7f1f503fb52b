//! What an infobase's server does with conversations over REST: create
//! them, own contextual ones and grant access to them, post (as a user or an
//! application user), read history, manage members, ask presence, notify.

use crate::auth::InfobaseCaller;
use crate::chat;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use actix_web::{web, HttpResponse};
use parley_core::protocol::{
    ConversationFilter, ConversationKind, ConversationPage, Message, MessagePage, NewMessage,
};
use parley_core::{validate, ConversationId, ErrorBody, ErrorCode, InfobaseId, MessageId, UserId};
use parley_store::{CreateOutcome, NewConversation, Viewer};
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

async fn visible(
    st: &AppState,
    me: &InfobaseCaller,
    id: ConversationId,
) -> ApiResult<parley_core::protocol::Conversation> {
    st.store
        .conversation(id, Viewer::Infobase(me.id, me.subscriber_id))
        .await?
        .ok_or_else(|| ApiError::not_found("conversation"))
}

async fn created(
    st: &AppState,
    me: &InfobaseCaller,
    outcome: CreateOutcome,
) -> ApiResult<HttpResponse> {
    let (id, fresh) = match outcome {
        CreateOutcome::Created(id, events) => {
            chat::publish_all(st, events).await?;
            (id, true)
        }
        CreateOutcome::Existing(id) => (id, false),
    };
    let conv = visible(st, me, id).await?;
    Ok(if fresh {
        HttpResponse::Created()
    } else {
        HttpResponse::Ok()
    }
    .json(conv))
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
    let kind = b.kind.unwrap_or(ConversationKind::Group);
    let title = match kind {
        ConversationKind::Group => validate::text("title", &b.title, st.limits.max_title_chars)?,
        ConversationKind::Dialog => {
            validate::optional_text("title", &b.title, st.limits.max_title_chars)?
        }
        ConversationKind::Context => {
            return Err(ApiError::new(
                ErrorCode::Invalid,
                "kind: contextual conversations are opened with PUT .../contexts",
            ))
        }
    };
    let key = b.key.map(|k| validate::text("key", &k, 256)).transpose()?;
    let new = NewConversation {
        subscriber_id: me.subscriber_id,
        kind,
        title,
        hidden: b.hidden,
        infobase_id: Some(me.id),
        key,
        object_ref: None,
        created_by: None,
        members: b.members,
    };
    let outcome = st
        .store
        .create_conversation(&new, st.limits.max_members)
        .await?;
    created(&st, &me, outcome).await
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
    let object_ref = validate::text(
        "object_ref",
        &body.object_ref,
        st.limits.max_object_ref_chars,
    )?;
    let title = validate::optional_text("title", &body.title, st.limits.max_title_chars)?;
    let new = NewConversation {
        subscriber_id: me.subscriber_id,
        kind: ConversationKind::Context,
        title,
        hidden: body.hidden,
        infobase_id: Some(me.id),
        key: None,
        object_ref: Some(object_ref),
        created_by: None,
        members: Vec::new(),
    };
    let outcome = st
        .store
        .create_conversation(&new, st.limits.max_members)
        .await?;
    created(&st, &me, outcome).await
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
    if !(1..=200).contains(&q.limit.unwrap_or(50)) {
        return Err(ApiError::new(
            ErrorCode::Invalid,
            "limit: must be between 1 and 200",
        ));
    }
    Ok(web::Json(
        st.store
            .list_conversations(Viewer::Infobase(me.id, me.subscriber_id), &q)
            .await?,
    ))
}

#[utoipa::path(get, path = "/v1/infobases/{infobase_id}/conversations/{conversation_id}", tag = "conversations",
    params(("infobase_id" = InfobaseId, Path), ("conversation_id" = ConversationId, Path)), security(("infobase" = [])),
    responses((status = 200, body = parley_core::protocol::Conversation), (status = 404, body = ErrorBody)))]
pub async fn get(
    st: web::Data<AppState>,
    me: InfobaseCaller,
    path: web::Path<(InfobaseId, ConversationId)>,
) -> ApiResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(visible(&st, &me, path.1).await?))
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
    let conv = visible(&st, &me, path.1).await?;
    if conv.kind == ConversationKind::Dialog {
        return Err(ApiError::new(
            ErrorCode::Invalid,
            "a dialog has exactly two members",
        ));
    }
    let events = st
        .store
        .add_members(
            conv.id,
            me.subscriber_id,
            &body.user_ids,
            st.limits.max_members,
        )
        .await?;
    chat::publish_all(&st, events).await?;
    Ok(HttpResponse::Ok().json(visible(&st, &me, conv.id).await?))
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
    let conv = visible(&st, &me, path.1).await?;
    if conv.kind == ConversationKind::Dialog {
        return Err(ApiError::new(ErrorCode::Invalid, "nobody leaves a dialog"));
    }
    match st.store.remove_member(conv.id, path.2).await? {
        Some(ev) => {
            chat::publish(&st, ev).await?;
            Ok(HttpResponse::NoContent().finish())
        }
        None => Err(ApiError::not_found("member")),
    }
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
    let conv = visible(&st, &me, path.1).await?;
    let b = body.into_inner();
    let author = st
        .store
        .user(me.id, b.author_id)
        .await?
        .ok_or_else(|| ApiError::not_found("user"))?;
    if author.locked {
        return Err(ApiError::access_denied("the author is locked"));
    }
    if !conv
        .members
        .as_ref()
        .is_some_and(|m| m.contains(&author.id))
    {
        if conv.kind == ConversationKind::Dialog {
            return Err(ApiError::access_denied(
                "only the two users of a dialog post in it",
            ));
        }
        let events = st
            .store
            .add_members(
                conv.id,
                me.subscriber_id,
                &[author.id],
                st.limits.max_members,
            )
            .await?;
        chat::publish_all(&st, events).await?;
    }
    let row = chat::validate_message(&st, b.message, author.id)?;
    let (msg, fresh) = chat::send(&st, conv.id, row).await?;
    Ok(if fresh {
        HttpResponse::Created()
    } else {
        HttpResponse::Ok()
    }
    .json(msg))
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
    let conv = visible(&st, &me, path.1).await?;
    let max = st.limits.max_history_page;
    let limit = q.limit.unwrap_or(50);
    if !(1..=max).contains(&limit) || (q.before.is_some() && q.after.is_some()) {
        return Err(ApiError::new(
            ErrorCode::Invalid,
            format!("limit must be between 1 and {max}; give before or after, not both"),
        ));
    }
    Ok(web::Json(
        st.store
            .history(conv.id, None, q.before, q.after, limit)
            .await?,
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
    let conv = visible(&st, &me, path.1).await?;
    let ev = st.store.delete_message(conv.id, path.2, None).await?;
    chat::publish(&st, ev).await?;
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
    let user = st
        .store
        .user(me.id, path.1)
        .await?
        .ok_or_else(|| ApiError::not_found("user"))?;
    let online = st.bus.online(vec![user.id]).await?;
    Ok(web::Json(Presence {
        online: online.first().copied().unwrap_or(false),
    }))
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
    let user = st
        .store
        .user(me.id, path.1)
        .await?
        .ok_or_else(|| ApiError::not_found("user"))?;
    let size = serde_json::to_vec(&body.data)
        .map(|v| v.len())
        .unwrap_or(usize::MAX);
    if size > st.limits.max_data_bytes {
        return Err(ApiError::new(
            ErrorCode::TooLarge,
            "data: larger than limits.max_data_bytes",
        ));
    }
    chat::push(
        &st,
        vec![user.id],
        parley_core::protocol::Event::Notification {
            data: body.into_inner().data,
        },
    );
    Ok(HttpResponse::Accepted().json(json!({ "queued": true })))
}
