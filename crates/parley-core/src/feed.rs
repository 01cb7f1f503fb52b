//! What an infobase hears back: the event feed it long-polls and the signed
//! webhooks Parley POSTs to it (docs/integrations.md). Both carry the same
//! [`FeedEvent`].

use crate::{ConversationId, WebhookId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Every kind the feed carries. The conversation events are those of the
/// WebSocket protocol (stored in the conversation's log); `action.invoked`
/// (a click on a button of one of the infobase's users' messages),
/// `call.missed` (one of its users did not answer) and `presence` (one of
/// its users came online or went offline; opt-in) are the feed's own.
pub const FEED_KINDS: &[&str] = &[
    "message.created",
    "message.edited",
    "message.deleted",
    "member.added",
    "member.removed",
    "conversation.updated",
    "reaction.added",
    "reaction.removed",
    "action.chosen",
    "action.invoked",
    "call.missed",
    "presence",
];

/// One event of an infobase's feed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FeedEvent {
    /// Unique, increasing in the order the feed was written: the cursor.
    pub id: i64,
    /// One of [`FEED_KINDS`].
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<ConversationId>,
    /// The event's `seq` in its conversation, for conversation events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<i64>,
    /// When it entered the feed.
    pub created_at: DateTime<Utc>,
    /// The event as the WebSocket protocol carries it (`{"event": kind, …}`).
    #[schema(value_type = Object)]
    pub event: serde_json::Value,
}

/// `GET /v1/infobases/{id}/events`
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct FeedPage {
    pub events: Vec<FeedEvent>,
    /// Pass as `after` next time: the last event's id, or the `after` given
    /// when nothing came.
    pub cursor: i64,
}

/// `GET|PUT /v1/infobases/{id}/feed-settings`
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FeedSettings {
    /// Also carry the activity of the contextual conversations of this
    /// infobase's objects (bots or not).
    #[serde(default)]
    pub contextual: bool,
    /// Also carry its users' presence changes (`presence`: online when the
    /// first session opens anywhere, offline when the last closes).
    #[serde(default)]
    pub presence: bool,
}

/// `POST /v1/infobases/{id}/webhooks`
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewWebhookBody {
    /// `https://…` (or `http://`); private and loopback addresses are
    /// refused unless `webhooks.allow_private_targets`.
    pub url: String,
    /// Kinds to deliver ([`FEED_KINDS`]); empty or absent = every kind.
    #[serde(default)]
    pub kinds: Vec<String>,
}

/// `PATCH /v1/infobases/{id}/webhooks/{webhook_id}`: what to change.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookPatch {
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub kinds: Option<Vec<String>>,
    /// `true` re-enables an endpoint disabled after failures (deliveries
    /// resume with events that arrive from then on).
    #[serde(default)]
    pub enabled: Option<bool>,
}

/// A webhook endpoint as its infobase sees it (never its secret).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Webhook {
    pub id: WebhookId,
    pub url: String,
    pub kinds: Vec<String>,
    pub enabled: bool,
    /// Why Parley disabled it, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled_reason: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// A created endpoint, or one whose secret was rotated: the secret is shown
/// this once.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct WebhookCreated {
    pub webhook: Webhook,
    /// `whsec_…`: the HMAC-SHA256 key of `X-Parley-Signature`.
    pub secret: String,
}

/// `GET /v1/infobases/{id}/webhooks`
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct WebhookList {
    pub webhooks: Vec<Webhook>,
}

/// One delivery of one event to one endpoint.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct WebhookDelivery {
    /// Sent as `X-Parley-Delivery`; the same on every retry.
    pub id: i64,
    /// The feed event delivered.
    pub event_id: i64,
    pub kind: String,
    /// `pending`, `delivered`, `failed` (given up; the endpoint was
    /// disabled) or `dropped` (the endpoint was disabled before it went).
    pub state: String,
    pub attempts: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_status: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
}

/// `GET /v1/infobases/{id}/webhooks/{webhook_id}/deliveries`
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct WebhookDeliveries {
    /// Newest first.
    pub deliveries: Vec<WebhookDelivery>,
}
