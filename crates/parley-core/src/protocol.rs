//! The WebSocket protocol (`docs/protocol.md` is its description and a test
//! round-trips every example there through these types) and the conversation
//! and message shapes the REST API shares with it.

use crate::calls::{Call, Media, Signal};
use crate::{CallId, ConversationId, ErrorCode, FileId, InfobaseId, MessageId, SessionId, UserId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// WebSocket close codes the server uses.
pub mod close {
    /// Normal closure (the client asked, or the session ended cleanly).
    pub const NORMAL: u16 = 1000;
    /// The node is shutting down: reconnect (to any node) and resume.
    pub const GOING_AWAY: u16 = 1001;
    /// A binary frame or a broken WebSocket frame.
    pub const PROTOCOL: u16 = 1002;
    /// A frame larger than `ws.max_frame_bytes`.
    pub const TOO_BIG: u16 = 1009;
    /// An unexpected server fault.
    pub const INTERNAL: u16 = 1011;
    /// No pong (or other frame) within `ws.heartbeat_timeout_secs`.
    pub const IDLE: u16 = 4000;
    /// No valid `auth` frame within `ws.auth_timeout_secs`.
    pub const UNAUTHENTICATED: u16 = 4001;
    /// The token is unknown, expired or revoked, or the user is locked.
    pub const ACCESS_DENIED: u16 = 4003;
    /// The session's outbound queue overflowed (a slow consumer): reconnect
    /// and resume.
    pub const QUEUE_OVERFLOW: u16 = 4008;
    /// Connection limit of the node or of the user reached.
    pub const TOO_MANY_CONNECTIONS: u16 = 4009;
}

/// Kind of conversation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConversationKind {
    /// Non-contextual, explicit members, a title.
    Group,
    /// Non-contextual, exactly two members, one per pair of users.
    Dialog,
    /// Bound to one object of one infobase; members are granted by it.
    Context,
}

impl ConversationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Group => "group",
            Self::Dialog => "dialog",
            Self::Context => "context",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "group" => Some(Self::Group),
            "dialog" => Some(Self::Dialog),
            "context" => Some(Self::Context),
            _ => None,
        }
    }
}

/// A conversation as one user (or infobase) sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Conversation {
    pub id: ConversationId,
    pub kind: ConversationKind,
    pub title: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// The picture's file (a signed link from `POST /v1/files/{id}/link`
    /// shows it); absent: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub picture: Option<FileId>,
    /// Not shown in conversation lists (system conversations).
    pub hidden: bool,
    /// The infobase's lookup key, unique in that infobase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The infobase that created it (and owns the object of a contextual one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub infobase_id: Option<InfobaseId>,
    /// The object a contextual conversation is bound to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_ref: Option<String>,
    pub created_at: DateTime<Utc>,
    /// `seq` of the newest event.
    pub last_seq: i64,
    pub member_count: i64,
    /// Present in answers about one conversation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub members: Option<Vec<UserId>>,
    /// The caller's read marker and unread messages (absent for infobases).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_seq: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unread: Option<i64>,
    /// Unread messages that mention the user (its own list only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unread_mentions: Option<i64>,
}

/// A button of an application message: `value` is sent back when chosen.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Action {
    pub value: String,
    pub caption: String,
    /// The first click of any single-use button of the message answers it
    /// for everyone (`chosen`); later clicks are `conflict`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub single_use: bool,
}

/// A page of clicks for an infobase.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct InvocationPage {
    pub invocations: Vec<ActionInvocation>,
    /// Pass as `after` for the next page (absent: nothing more now).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<i64>,
}

/// The answer a single-use question got.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ActionChoice {
    pub value: String,
    pub user_id: UserId,
    pub chosen_at: DateTime<Utc>,
}

/// One click of an action button, as its message's author (a bot or an
/// application user) and its infobase receive it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ActionInvocation {
    /// Increasing: the infobase reads them after a cursor.
    pub id: i64,
    pub conversation_id: ConversationId,
    pub message_id: MessageId,
    pub value: String,
    pub user_id: UserId,
    pub created_at: DateTime<Utc>,
}

/// A message. `seq` orders it in its conversation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Message {
    pub id: MessageId,
    pub conversation_id: ConversationId,
    pub seq: i64,
    pub author_id: UserId,
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub data: Option<Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<Action>,
    /// Only these members (and the author) see the message; absent = all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipients: Option<Vec<UserId>>,
    /// Files attached (uploaded before the message was sent).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<Attachment>,
    pub created_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edited_at: Option<DateTime<Utc>>,
    pub deleted: bool,
    /// `system` for what the server writes into the history (a call, …),
    /// with structured `data` a client renders in its own language; absent
    /// for an ordinary message.
    #[serde(default, skip_serializing_if = "MessageKind::is_text")]
    pub kind: MessageKind,
    /// Reactions by emoji, in `history` (live changes come as
    /// `reaction.added` / `reaction.removed` events).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reactions: Vec<Reaction>,
    /// The message this one answers, as a short preview.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<ReplyPreview>,
    /// The answer of a single-use question.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chosen: Option<ActionChoice>,
    /// Members named with @; a client shows the message as mentioning its
    /// user when its id is here.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mentions: Vec<UserId>,
    /// @all: the message mentions every member who reads it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub mention_all: bool,
    /// Where a forwarded message comes from (text, data and attachments
    /// are the original's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forwarded: Option<ForwardOrigin>,
}

impl Message {
    /// A message with only these set: no data, buttons, recipients, files,
    /// reactions, reply, mentions or origin; not edited, not deleted.
    pub fn plain(
        id: MessageId,
        conversation_id: ConversationId,
        seq: i64,
        author_id: UserId,
        text: String,
        created_at: DateTime<Utc>,
    ) -> Self {
        Message {
            id,
            conversation_id,
            seq,
            author_id,
            text,
            data: None,
            actions: Vec::new(),
            recipients: None,
            attachments: Vec::new(),
            created_at,
            edited_at: None,
            deleted: false,
            kind: MessageKind::Text,
            reactions: Vec::new(),
            reply_to: None,
            mentions: Vec::new(),
            chosen: None,
            mention_all: false,
            forwarded: None,
        }
    }
}

/// The origin of a forwarded message: the first message of a chain of
/// forwards, whoever forwarded it since.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ForwardOrigin {
    pub message_id: MessageId,
    pub conversation_id: ConversationId,
    pub author_id: UserId,
    pub created_at: DateTime<Utc>,
    /// The title of a group or contextual conversation it came from;
    /// absent for a dialog (its title would tell who talked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation_title: Option<String>,
}

/// Which message to forward.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ForwardRef {
    pub conversation_id: ConversationId,
    pub message_id: MessageId,
}

/// What a reply shows of the message it answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReplyPreview {
    pub message_id: MessageId,
    pub author_id: UserId,
    /// The first characters of its text (empty once deleted).
    pub text: String,
    pub deleted: bool,
}

/// The reactions of one emoji on a message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Reaction {
    pub emoji: String,
    pub count: i64,
    /// The reader is one of them.
    pub mine: bool,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    #[default]
    Text,
    System,
}

impl MessageKind {
    pub fn is_text(&self) -> bool {
        *self == MessageKind::Text
    }

    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::Text => "text",
            MessageKind::System => "system",
        }
    }
}

/// A file as attached to a message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Attachment {
    pub id: FileId,
    pub name: String,
    pub size: i64,
    pub content_type: String,
}

/// State of a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FileState {
    /// Announced; the bytes are not (verified) there yet.
    Pending,
    /// Bytes verified; not yet on a message (only the owner sees it).
    Uploaded,
    /// On a committed message: readable by the conversation's readers.
    Attached,
}

/// A file's metadata.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FileInfo {
    pub id: FileId,
    pub conversation_id: ConversationId,
    pub owner_id: UserId,
    pub name: String,
    pub content_type: String,
    pub size: i64,
    pub sha256: String,
    pub state: FileState,
    pub created_at: DateTime<Utc>,
}

/// Body of a new message (WebSocket `message.send`; REST adds the author).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NewMessage {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub data: Option<Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<Action>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipients: Option<Vec<UserId>>,
    /// Files uploaded by the author to this conversation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<FileId>,
    /// Client-chosen; a retried send with the same key returns the first
    /// message instead of storing a second one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// The message of this conversation this one answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<MessageId>,
    /// Members named with @ (each must be able to read the message).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mentions: Vec<UserId>,
    /// @all: mentions every member (groups and contextual conversations;
    /// who may use it is `limits.mention_all`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub mention_all: bool,
    /// Forwards a message the sender can read to this conversation: text,
    /// data and attachments are the original's (`text` and `data` must be
    /// absent), `forwarded` tells where it came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward: Option<ForwardRef>,
}

/// Filters of a conversation list.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ConversationFilter {
    /// `group`, `dialog` or `context`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<ConversationKind>,
    /// true = contextual only, false = non-contextual only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contextual: Option<bool>,
    /// true = displayed only (the default for users), false = hidden only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub displayed: Option<bool>,
    /// Only conversations this user is a member of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<UserId>,
    /// Only the contextual conversation of this object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_ref: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// `next_cursor` of the previous page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// 1..=200, default 50.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// A page of conversations, most recently active first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ConversationPage {
    pub conversations: Vec<Conversation>,
    pub next_cursor: Option<String>,
}

/// A page of history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MessagePage {
    /// Always in ascending `seq`.
    pub messages: Vec<Message>,
    /// More messages exist beyond this page in the requested direction.
    pub has_more: bool,
}

/// A request frame from the client: `{"id": "...", "type": "...", ...}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClientFrame {
    /// Chosen by the client; echoed in the `result` or `error`.
    pub id: String,
    #[serde(flatten)]
    pub request: Request,
}

impl Request {
    /// Every request `type` (tells an unknown type from a malformed request);
    /// a test checks it against the serde tags below.
    pub const TYPES: &'static [&'static str] = &[
        "auth",
        "ping",
        "resume",
        "conversations.list",
        "conversation.get",
        "conversation.create",
        "dialog.open",
        "context.get",
        "members.add",
        "members.remove",
        "conversation.leave",
        "message.send",
        "message.edit",
        "message.delete",
        "history",
        "read",
        "typing",
        "presence.get",
        "users.get",
        "logout",
        "call.start",
        "call.accept",
        "call.join",
        "call.decline",
        "call.cancel",
        "call.hangup",
        "call.signal",
        "call.screen",
        "search",
        "reaction.add",
        "reaction.remove",
        "users.search",
        "action.invoke",
        "conversation.update",
    ];
}

/// Every request a client can make.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Request {
    #[serde(rename = "auth")]
    Auth { token: String },
    #[serde(rename = "ping")]
    Ping,
    /// Revokes the session's token: this session, and any other opened with
    /// the same token, close with 4003 after the answer.
    #[serde(rename = "logout")]
    Logout,
    /// Replay what was missed: conversation id → last `seq` seen.
    #[serde(rename = "resume")]
    Resume {
        conversations: BTreeMap<ConversationId, i64>,
    },
    #[serde(rename = "conversations.list")]
    ListConversations {
        #[serde(flatten)]
        filter: ConversationFilter,
    },
    #[serde(rename = "conversation.get")]
    GetConversation { conversation_id: ConversationId },
    /// A group conversation with the caller and `members`.
    #[serde(rename = "conversation.create")]
    CreateGroup {
        title: String,
        #[serde(default)]
        members: Vec<UserId>,
    },
    /// The dialog with `user_id`, created on first use.
    #[serde(rename = "dialog.open")]
    OpenDialog { user_id: UserId },
    /// The contextual conversation of an object, if the caller was granted it.
    #[serde(rename = "context.get")]
    GetContext {
        infobase_id: InfobaseId,
        object_ref: String,
    },
    #[serde(rename = "members.add")]
    AddMembers {
        conversation_id: ConversationId,
        user_ids: Vec<UserId>,
    },
    #[serde(rename = "members.remove")]
    RemoveMember {
        conversation_id: ConversationId,
        user_id: UserId,
    },
    #[serde(rename = "conversation.leave")]
    Leave { conversation_id: ConversationId },
    #[serde(rename = "message.send")]
    Send {
        conversation_id: ConversationId,
        #[serde(flatten)]
        message: NewMessage,
    },
    #[serde(rename = "message.edit")]
    Edit {
        conversation_id: ConversationId,
        message_id: MessageId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        text: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        data: Option<Value>,
    },
    #[serde(rename = "message.delete")]
    Delete {
        conversation_id: ConversationId,
        message_id: MessageId,
    },
    /// Messages before or after a `seq` (neither: the newest).
    #[serde(rename = "history")]
    History {
        conversation_id: ConversationId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        before: Option<i64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<i64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
    },
    /// Moves the caller's read marker forward to `seq`.
    #[serde(rename = "read")]
    Read {
        conversation_id: ConversationId,
        seq: i64,
    },
    #[serde(rename = "typing")]
    Typing { conversation_id: ConversationId },
    #[serde(rename = "presence.get")]
    Presence { user_ids: Vec<UserId> },
    /// Names and pictures of users of the caller's subscriber.
    #[serde(rename = "users.get")]
    GetUsers { user_ids: Vec<UserId> },
    /// Starts a call in a conversation; the other members' devices ring.
    /// Answer: [`crate::calls::Joined`].
    #[serde(rename = "call.start")]
    CallStart {
        conversation_id: ConversationId,
        media: Media,
        /// Through the media server even between two (more can join);
        /// a conversation of more than two always gets a group call.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        group: bool,
    },
    /// Answers a ringing call from this device.
    #[serde(rename = "call.accept")]
    CallAccept { call_id: CallId },
    /// Comes back to a call this user was in (after a dropped connection,
    /// within `calls.rejoin_grace_secs`).
    #[serde(rename = "call.join")]
    CallJoin { call_id: CallId },
    /// Refuses a ringing call (a 1:1 call then ends as declined).
    #[serde(rename = "call.decline")]
    CallDecline { call_id: CallId },
    /// The caller gives up before anyone answered.
    #[serde(rename = "call.cancel")]
    CallCancel { call_id: CallId },
    /// Leaves the call (a 1:1 call then ends).
    #[serde(rename = "call.hangup")]
    CallHangup { call_id: CallId },
    /// Relays an SDP description or ICE candidate to another session in the
    /// call (`to_session`), or to every other one.
    #[serde(rename = "call.signal")]
    CallSignal {
        call_id: CallId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to_session: Option<SessionId>,
        #[serde(flatten)]
        signal: Signal,
    },
    /// This session starts (`sharing: true`) or stops sharing a screen; the
    /// members see it on the participant in `call.updated`.
    #[serde(rename = "call.screen")]
    CallScreen { call_id: CallId, sharing: bool },
    /// Adds the caller's reaction (one per emoji) to a message it can read.
    #[serde(rename = "reaction.add")]
    ReactionAdd {
        conversation_id: ConversationId,
        message_id: MessageId,
        emoji: String,
    },
    #[serde(rename = "reaction.remove")]
    ReactionRemove {
        conversation_id: ConversationId,
        message_id: MessageId,
        emoji: String,
    },
    /// Renames a group or changes its description (its creator; the owner
    /// infobase over REST). Absent fields stay.
    #[serde(rename = "conversation.update")]
    UpdateConversation {
        conversation_id: ConversationId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        title: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        description: Option<String>,
        /// An image the caller uploaded to this conversation (state
        /// `uploaded`); `null` removes the picture.
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            deserialize_with = "present"
        )]
        picture: Option<Option<FileId>>,
    },
    /// Clicks an action button of a message the caller can read; its author
    /// hears of it (`action.invoked`).
    #[serde(rename = "action.invoke")]
    ActionInvoke {
        conversation_id: ConversationId,
        message_id: MessageId,
        value: String,
    },
    /// The people directory: users of the caller's subscriber whose name
    /// or full name contains `query` (case- and ё-insensitive), by name.
    #[serde(rename = "users.search")]
    SearchUsers {
        query: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cursor: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
    },
    /// Full-text search of the messages the caller may read.
    #[serde(rename = "search")]
    Search {
        #[serde(flatten)]
        query: SearchQuery,
    },
}

/// A search: words (Russian and English, any word form; `"exact phrase"`,
/// `-excluded`, `or`), with optional filters; a page of results.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchQuery {
    pub query: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<ConversationId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author_id: Option<UserId>,
    /// Messages created at or after this time…
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<DateTime<Utc>>,
    /// …and before this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<DateTime<Utc>>,
    /// The `next_cursor` of the previous page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// One found message, best matches first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SearchHit {
    pub message: Message,
    /// A short excerpt around the matches, as plain text…
    pub snippet: String,
    /// …and the matched words in it: `[start, end)` in characters.
    pub highlights: Vec<[usize; 2]>,
    pub rank: f32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SearchPage {
    pub hits: Vec<SearchHit>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Sent once the session is authenticated.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Ready {
    pub session_id: SessionId,
    pub user_id: UserId,
    pub heartbeat_secs: u64,
    pub max_frame_bytes: usize,
    pub max_text_bytes: usize,
}

/// Answer to `resume`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Resumed {
    /// Events replayed before this answer.
    pub replayed: u64,
    /// Conversations with more missed events than `ws.resume_max_events`:
    /// the client reads them with `history` instead.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub truncated: Vec<ConversationId>,
}

/// Answer to `read`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReadState {
    pub conversation_id: ConversationId,
    pub read_seq: i64,
    pub unread: i64,
}

/// A user as other users see them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UserProfile {
    pub id: UserId,
    pub name: String,
    pub full_name: String,
    pub picture: String,
    pub bot: bool,
}

/// Answer to `users.get` (unknown ids and users of other subscribers are
/// left out) and to `users.search` (with `next_cursor` when more match).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UserProfiles {
    pub users: Vec<UserProfile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Answer to `presence.get`: user id → online.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PresenceState {
    pub users: BTreeMap<UserId, bool>,
}

/// Something that happened, pushed to the sessions concerned.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event")]
pub enum Event {
    #[serde(rename = "message.created")]
    MessageCreated {
        conversation_id: ConversationId,
        seq: i64,
        message: Message,
    },
    #[serde(rename = "message.edited")]
    MessageEdited {
        conversation_id: ConversationId,
        seq: i64,
        message: Message,
    },
    #[serde(rename = "message.deleted")]
    MessageDeleted {
        conversation_id: ConversationId,
        seq: i64,
        message_id: MessageId,
    },
    #[serde(rename = "member.added")]
    MemberAdded {
        conversation_id: ConversationId,
        seq: i64,
        user_id: UserId,
        /// Who made the change (absent: the infobase, or the conversation's
        /// creation, or an author joining by posting). The history has a
        /// `kind: system` line at the same `seq` when this is a change of an
        /// existing conversation.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<UserId>,
    },
    #[serde(rename = "member.removed")]
    MemberRemoved {
        conversation_id: ConversationId,
        seq: i64,
        user_id: UserId,
        /// Who made the change (absent: the infobase, or the conversation's
        /// creation, or an author joining by posting). The history has a
        /// `kind: system` line at the same `seq` when this is a change of an
        /// existing conversation.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<UserId>,
    },
    /// Title or description changed (history, with `seq`).
    #[serde(rename = "conversation.updated")]
    ConversationUpdated {
        conversation_id: ConversationId,
        seq: i64,
        title: String,
        description: String,
        /// The picture's file (absent: none).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        picture: Option<FileId>,
        /// Who changed it (absent: its infobase).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<UserId>,
    },
    /// A single-use question was answered (history: everyone who sees the
    /// message sees the choice).
    #[serde(rename = "action.chosen")]
    ActionChosen {
        conversation_id: ConversationId,
        seq: i64,
        message_id: MessageId,
        choice: ActionChoice,
    },
    /// Someone clicked a button of your message (live, to its author).
    #[serde(rename = "action.invoked")]
    ActionInvoked { invocation: ActionInvocation },
    #[serde(rename = "reaction.added")]
    ReactionAdded {
        conversation_id: ConversationId,
        seq: i64,
        message_id: MessageId,
        user_id: UserId,
        emoji: String,
    },
    #[serde(rename = "reaction.removed")]
    ReactionRemoved {
        conversation_id: ConversationId,
        seq: i64,
        message_id: MessageId,
        user_id: UserId,
        emoji: String,
    },
    /// A member's read marker moved (no `seq`: not part of the history).
    #[serde(rename = "read")]
    Read {
        conversation_id: ConversationId,
        user_id: UserId,
        read_seq: i64,
    },
    #[serde(rename = "typing")]
    Typing {
        conversation_id: ConversationId,
        user_id: UserId,
    },
    #[serde(rename = "presence")]
    Presence { user_id: UserId, online: bool },
    /// Pushed by the user's infobase. `sent_at` is set when it was kept
    /// while the user had no session and is delivered at this connect.
    #[serde(rename = "notification")]
    Notification {
        data: Value,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sent_at: Option<DateTime<Utc>>,
    },
    /// Events of the conversation after `after_seq` and before `before_seq`
    /// were not sent to this session (more were missing than
    /// `ws.resume_max_events`): read them with `history` (`after` =
    /// `after_seq`). Live events continue with `before_seq`. No `seq`: not
    /// part of the history.
    #[serde(rename = "gap")]
    Gap {
        conversation_id: ConversationId,
        after_seq: i64,
        before_seq: i64,
    },
    /// A member started a call: every device of the other members rings.
    #[serde(rename = "call.ringing")]
    CallRinging { call: Call },
    /// Someone joined or left the call (to every member of the
    /// conversation, so that clients show who is in it).
    #[serde(rename = "call.updated")]
    CallUpdated { call: Call },
    /// The call is over (`call.outcome` says how); ringing stops.
    #[serde(rename = "call.ended")]
    CallEnded { call: Call },
    /// The user answered or declined on another device (`session_id`):
    /// this one stops ringing.
    #[serde(rename = "call.ringing_stopped")]
    CallRingingStopped {
        call_id: CallId,
        session_id: SessionId,
        reason: RingingStopped,
    },
    /// Signaling from another session in the call.
    #[serde(rename = "call.signal")]
    CallSignal {
        call_id: CallId,
        from_user: UserId,
        from_session: SessionId,
        #[serde(flatten)]
        signal: Signal,
    },
}

/// Why a device stopped ringing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RingingStopped {
    AnsweredElsewhere,
    DeclinedElsewhere,
}

impl Event {
    /// Conversation and `seq` of events that belong to a conversation's history.
    pub fn position(&self) -> Option<(ConversationId, i64)> {
        match self {
            Event::MessageCreated {
                conversation_id,
                seq,
                ..
            }
            | Event::MessageEdited {
                conversation_id,
                seq,
                ..
            }
            | Event::MessageDeleted {
                conversation_id,
                seq,
                ..
            }
            | Event::MemberAdded {
                conversation_id,
                seq,
                ..
            }
            | Event::MemberRemoved {
                conversation_id,
                seq,
                ..
            }
            | Event::ReactionAdded {
                conversation_id,
                seq,
                ..
            }
            | Event::ActionChosen {
                conversation_id,
                seq,
                ..
            }
            | Event::ConversationUpdated {
                conversation_id,
                seq,
                ..
            }
            | Event::ReactionRemoved {
                conversation_id,
                seq,
                ..
            } => Some((*conversation_id, *seq)),
            _ => None,
        }
    }
}

/// Every frame the server sends.
// An event frame is built once per event and serialized at once; boxing
// the large variant would only add an allocation to every delivery.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum ServerFrame {
    #[serde(rename = "ready")]
    Ready(Ready),
    #[serde(rename = "result")]
    Result { id: String, result: Value },
    #[serde(rename = "error")]
    Error {
        /// The request's id; absent when the frame could not be read at all.
        #[serde(default)]
        id: Option<String>,
        code: ErrorCode,
        message: String,
    },
    #[serde(rename = "pong")]
    Pong { id: String },
    #[serde(rename = "event")]
    Event(Event),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every example in docs/protocol.md parses into the protocol types and
    /// serializes back to the same JSON.
    #[test]
    fn protocol_doc_examples_round_trip() {
        let doc = include_str!("../../../docs/protocol.md");
        let mut counted = (0, 0);
        let mut lines = doc.lines();
        while let Some(line) = lines.next() {
            let side = match line.trim() {
                "```json client" => "client",
                "```json server" => "server",
                _ => continue,
            };
            let body: String = lines
                .by_ref()
                .take_while(|l| l.trim() != "```")
                .collect::<Vec<_>>()
                .join("\n");
            let original: Value =
                serde_json::from_str(&body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
            let back = if side == "client" {
                counted.0 += 1;
                let f: ClientFrame = serde_json::from_str(&body)
                    .unwrap_or_else(|e| panic!("client frame {e}: {body}"));
                serde_json::to_value(&f).expect("serialize")
            } else {
                counted.1 += 1;
                let f: ServerFrame = serde_json::from_str(&body)
                    .unwrap_or_else(|e| panic!("server frame {e}: {body}"));
                serde_json::to_value(&f).expect("serialize")
            };
            assert_eq!(back, original, "round trip changed {body}");
        }
        assert!(
            counted.0 >= 15 && counted.1 >= 12,
            "examples found: {counted:?}"
        );
    }

    /// Every close code the server uses is documented.
    #[test]
    fn close_codes_are_documented() {
        let doc = include_str!("../../../docs/protocol.md");
        for code in [
            close::NORMAL,
            close::GOING_AWAY,
            close::PROTOCOL,
            close::TOO_BIG,
            close::INTERNAL,
            close::IDLE,
            close::UNAUTHENTICATED,
            close::ACCESS_DENIED,
            close::QUEUE_OVERFLOW,
            close::TOO_MANY_CONNECTIONS,
        ] {
            assert!(
                doc.contains(&format!("| {code} |")),
                "close code {code} is not in docs/protocol.md"
            );
        }
        for code in ErrorCode::ALL {
            assert!(
                doc.contains(&format!("| `{}` |", code.as_str())),
                "{code} is not in docs/protocol.md"
            );
        }
    }
}

#[cfg(test)]
mod request_types {
    use super::Request;

    /// serde names every variant in its "unknown variant" error: the list
    /// there and `Request::TYPES` must be the same set.
    #[test]
    fn types_match_the_serde_tags() {
        let err = serde_json::from_str::<Request>(r#"{"type": "no.such.type"}"#)
            .expect_err("an unknown type is refused")
            .to_string();
        let listed = err
            .split("expected one of ")
            .nth(1)
            .expect("serde lists the variants");
        let mut from_serde: Vec<&str> = listed
            .split(", ")
            .map(|t| t.trim_matches(|c: char| c == '`' || c.is_whitespace()))
            .map(|t| t.split('`').next().unwrap_or(t))
            .collect();
        from_serde.sort_unstable();
        let mut ours = Request::TYPES.to_vec();
        ours.sort_unstable();
        assert_eq!(ours, from_serde, "serde said: {err}");
    }
}

/// Deserializes a field that is present (possibly `null`) as `Some`: with
/// `Option<Option<T>>`, absent = None, null = Some(None), value = Some(Some).
pub fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}
