//! Parley's domain vocabulary: typed ids, error codes, validation rules and the
//! JSON shapes of the REST API. No I/O lives here.

pub mod actor;
pub mod api;
pub mod calls;
pub mod crypto;
pub mod error;
pub mod feed;
pub mod ids;
pub mod protocol;
pub mod validate;

pub use actor::{InfobaseActor, UserActor};
pub use error::{ErrorBody, ErrorCode};
pub use ids::{
    CallId, ConversationId, FileId, HookId, InfobaseId, MessageId, PushSubscriptionId, SessionId,
    SubscriberId, TokenId, UserId, WebhookId,
};
