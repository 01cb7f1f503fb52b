//! JSON bodies of the REST API (`/v1/...`). Requests refuse unknown fields so
//! a typo in an integration is an error, not a silently ignored value.

use crate::{ConversationId, HookId, InfobaseId, SubscriberId, TokenId, UserId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// `POST /v1/registration/code`
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestCode {
    /// The subscriber's e-mail; the code is sent there.
    #[schema(example = "owner@example.com")]
    pub email: String,
}

/// The same answer whether or not the e-mail is known.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct CodeRequested {
    /// Always `"sent"`.
    pub status: String,
    /// Seconds the code stays valid.
    pub expires_in_seconds: u64,
}

/// `POST /v1/registration/confirm`
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfirmRegistration {
    pub email: String,
    /// The numeric code from the e-mail.
    #[schema(example = "042917")]
    pub code: String,
    /// Free text, any characters.
    #[schema(example = "Trade Management (main office)")]
    pub infobase_name: String,
}

/// A new infobase with its key. The key is shown only in this answer.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Registered {
    pub infobase_id: InfobaseId,
    pub infobase_key: String,
    pub subscriber_id: SubscriberId,
    pub name: String,
}

/// An infobase as the infobase itself sees it.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Infobase {
    pub id: InfobaseId,
    pub subscriber_id: SubscriberId,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

/// `POST /v1/infobases/{id}/users`: create, or update by `external_id`.
/// On update, a field left out keeps its stored value.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpsertUser {
    /// The infobase's own id of the user (any text, unique in the infobase).
    pub external_id: String,
    /// Short display name.
    pub name: String,
    #[serde(default)]
    pub full_name: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub phone: Option<String>,
    /// Picture URL.
    #[serde(default)]
    pub picture: Option<String>,
    /// An application user (bot) rather than a person.
    #[serde(default)]
    pub bot: Option<bool>,
    /// A locked user cannot get tokens; locking revokes the ones issued.
    #[serde(default)]
    pub locked: Option<bool>,
}

/// A user as stored by Parley.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct User {
    pub id: UserId,
    pub infobase_id: InfobaseId,
    pub external_id: String,
    pub name: String,
    pub full_name: String,
    pub email: String,
    pub phone: String,
    pub picture: String,
    pub bot: bool,
    pub locked: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Answer of an upsert: the user and whether it was just created.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct UpsertedUser {
    pub created: bool,
    pub user: User,
}

/// A page of users, ordered by id; pass `next_cursor` as `after` for the next.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct UserPage {
    pub users: Vec<User>,
    pub next_cursor: Option<UserId>,
}

/// `POST /v1/infobases/{id}/users/{user_id}/tokens`
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IssueToken {
    /// Lifetime in seconds; the configured default when absent, capped by the
    /// configured maximum.
    #[serde(default)]
    pub ttl_seconds: Option<u64>,
}

/// A session token for one user. Shown only in this answer.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct SessionToken {
    pub token: String,
    /// Names the token to revoke it (`DELETE …/tokens/{token_id}`).
    pub token_id: TokenId,
    pub user_id: UserId,
    pub expires_at: DateTime<Utc>,
}

/// `POST /v1/ws-tickets`: opens one WebSocket as `GET /ws?ticket=…`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct WsTicket {
    /// Single use; useless after `expires_at` (`auth.ticket_ttl_secs`).
    pub ticket: String,
    pub expires_at: DateTime<Utc>,
}

/// `POST /v1/files/{file_id}/link`: a download URL that needs no header
/// (`<img src>`, `<a href>`), for this user only and for a short time.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct FileLink {
    /// Relative to the server (`/v1/files/{id}/content?link=…`).
    pub url: String,
    pub expires_at: DateTime<Utc>,
}

/// `GET /healthz`
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Health {
    pub status: String,
    pub version: String,
}

/// State of one component in `/readyz`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ComponentStatus {
    /// `"ready"` or `"unavailable"`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// `GET /readyz`: 200 when every component is ready, 503 otherwise.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Readiness {
    pub status: String,
    pub components: BTreeMap<String, ComponentStatus>,
}

/// `POST /v1/files`: a file a member is about to upload to a conversation.
#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewFileBody {
    pub conversation_id: crate::ConversationId,
    pub name: String,
    pub size: u64,
    pub content_type: String,
    /// SHA-256 of the bytes, lower-case hex.
    pub sha256: String,
}

/// Where and how to upload.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Upload {
    /// `PUT`.
    pub method: String,
    /// A presigned bucket URL (direct), or this server's
    /// `/v1/files/{id}/content` (through Parley, with the session token).
    pub url: String,
    pub headers: Vec<(String, String)>,
    /// true: upload to the bucket, then call `POST /v1/files/{id}/complete`.
    pub direct: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct FileCreated {
    pub file: crate::protocol::FileInfo,
    pub upload: Upload,
}

/// `POST /v1/infobases/{id}/incoming-webhooks`
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewHookBody {
    /// Where its messages go (a conversation the infobase may post in).
    pub conversation_id: ConversationId,
    /// The author of its messages: a bot user of this infobase.
    pub author_id: UserId,
    /// What it is for (shown in the list), optional.
    #[serde(default)]
    pub name: Option<String>,
}

/// An incoming webhook as its infobase sees it (never its token).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct IncomingHook {
    pub id: HookId,
    pub conversation_id: ConversationId,
    pub author_id: UserId,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub revoked: bool,
}

/// A created webhook: the token and URL are shown this once.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct HookCreated {
    pub webhook: IncomingHook,
    /// `phk_…`; only its hash is kept.
    pub token: String,
    /// Path to POST messages to (`{"text", "data"}`), relative to the server.
    pub url: String,
}

/// `GET /v1/infobases/{id}/incoming-webhooks`
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct HookList {
    pub webhooks: Vec<IncomingHook>,
}

/// `POST /v1/hooks/{token}`: what a webhook may post.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HookMessage {
    #[serde(default)]
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub data: Option<serde_json::Value>,
    /// A retry with the same key posts nothing new.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

/// `POST /v1/me/push-subscriptions`: what `PushSubscription.toJSON()` gives.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct NewPushSubscription {
    pub endpoint: String,
    pub keys: PushKeys,
    /// `expirationTime` of the browser's object (ignored).
    #[serde(default, rename = "expirationTime")]
    #[schema(value_type = Option<f64>)]
    pub expiration_time: Option<serde_json::Value>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PushKeys {
    /// The browser's P-256 public key, base64url.
    pub p256dh: String,
    /// The 16-byte auth secret, base64url.
    pub auth: String,
}

/// What a user wants pushed when offline.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PushSettings {
    /// `all` (every message), `mentions` (dialogs, @mentions, missed
    /// calls; the default) or `none`.
    pub level: String,
}

/// `POST /v1/me/push-subscriptions` answer.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct PushSubscribed {
    pub id: crate::PushSubscriptionId,
}

/// `GET /v1/push/vapid-key`
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct VapidPublicKey {
    /// The application server key for `pushManager.subscribe`, base64url.
    pub public_key: String,
}

/// `GET|PUT /v1/infobases/{id}/email-digest`: digests for the subscriber's
/// users who stay offline (off by default).
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailDigestSettings {
    pub enabled: bool,
}
