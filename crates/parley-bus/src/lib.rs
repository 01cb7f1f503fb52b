//! Live delivery. The [`Hub`] holds this node's sessions, each with a bounded
//! queue; a [`Bus`] carries envelopes to the hubs of every node (in-process:
//! this node only; Redis: all nodes). Nothing here is durable: a session that
//! misses an envelope recovers it from PostgreSQL by `seq`.

mod hub;
mod link;
mod local;
mod redis_bus;
mod sharded;

pub use hub::{Hub, HubLimits, HubStats, Overflow, Registered, SessionHandle, Tenant};
pub use link::RedisTarget;
pub use local::LocalBus;
pub use redis_bus::{list_nodes, publish_once, NodeInfo, RedisBus, RedisOptions};

use bytestring::ByteString;
use futures_util::future::BoxFuture;
use parley_core::{ConversationId, SessionId, TokenId, UserId};
use std::sync::Arc;

/// One event on its way to the sessions of some users, serialized once.
#[derive(Debug)]
pub struct Envelope {
    /// Users whose sessions get it.
    pub targets: Vec<UserId>,
    /// Conversation and `seq` when the event belongs to a history.
    pub position: Option<(ConversationId, i64)>,
    /// When set, only these users (and `author`) may see the frame; the
    /// other targets' sessions only advance their `seq`.
    pub recipients: Option<Vec<UserId>>,
    pub author: Option<UserId>,
    /// The complete server frame (JSON text).
    pub frame: ByteString,
    /// Not a frame: the sessions compare their `seq`s with PostgreSQL.
    pub resync: bool,
    /// Not a frame: the targets' sessions (or those of one token) lost
    /// their access and must close.
    pub revoke: Option<Revoke>,
    /// Only this session of the targets gets it (call signaling).
    pub session: Option<SessionId>,
}

/// Whose sessions a revocation ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Revoke {
    /// Every session of the target users (locked, deleted, infobase gone).
    Users,
    /// The sessions opened with this token only (revoked, logged out).
    Token(TokenId),
}

impl Envelope {
    /// A live frame (not part of a history) for the sessions of `targets`,
    /// or only for `session` among them.
    pub fn live(targets: Vec<UserId>, frame: ByteString, session: Option<SessionId>) -> Self {
        Envelope {
            targets,
            position: None,
            recipients: None,
            author: None,
            frame,
            resync: false,
            revoke: None,
            session,
        }
    }

    /// A revocation for the sessions of `targets`.
    pub fn revocation(targets: Vec<UserId>, revoke: Revoke) -> Self {
        Envelope {
            targets,
            position: None,
            recipients: None,
            author: None,
            frame: ByteString::new(),
            resync: false,
            revoke: Some(revoke),
            session: None,
        }
    }
}

impl Envelope {
    pub fn visible_to(&self, user: UserId) -> bool {
        match &self.recipients {
            None => true,
            Some(r) => self.author == Some(user) || r.contains(&user),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("bus unavailable: {0}")]
    Unavailable(String),
}

/// Carries envelopes to every node's hub and answers presence for the
/// cluster. Implementations: [`LocalBus`] (one node); Redis (cluster).
pub trait Bus: Send + Sync + 'static {
    /// Hands the envelope over for delivery; never blocks on slow sessions.
    fn publish(&self, envelope: Arc<Envelope>);
    /// This node's sessions.
    fn hub(&self) -> &Hub;
    /// Online state of each user, cluster-wide.
    fn online(&self, users: Vec<UserId>) -> BoxFuture<'_, Result<Vec<bool>, BusError>>;
    /// Readiness of the bus itself.
    fn check(&self) -> BoxFuture<'_, Result<(), BusError>>;
    /// Name shown in `/readyz`.
    fn name(&self) -> &'static str;
    /// A user's first session on this node opened; true when the user was
    /// offline in the whole cluster before (announce "online").
    fn session_opened(&self, user: UserId) -> BoxFuture<'_, bool>;
    /// A user's last session on this node closed; true when no node holds
    /// one any more (announce "offline").
    fn session_closed(&self, user: UserId) -> BoxFuture<'_, bool>;
    /// Users whose node died without saying goodbye, to be announced
    /// offline; taken once by the gateway.
    fn take_departures(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<UserId>>;
    /// Leaves the cluster (deregisters the node and its presence).
    fn shutdown(&self) -> BoxFuture<'_, ()>;
}
