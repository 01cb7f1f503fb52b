//! What a WebSocket session needs from the service besides requests: a place
//! in this node's hub, the cluster's presence, and the event log to replay
//! what it missed.

use crate::{Result, Service};
use parley_bus::{HubLimits, Registered, SessionHandle};
use parley_core::protocol::Event;
use parley_core::{ConversationId, SessionId, UserActor, UserId};
use parley_store::{ConversationSeq, EventPage};

/// Where a session starts (see [`Service::session_start`]).
#[derive(Debug)]
pub struct SessionStart {
    pub seqs: Vec<ConversationSeq>,
    /// Kept notifications, oldest first.
    pub kept: Vec<Event>,
    pub kept_upto: i64,
}

impl Service {
    /// Registers a session in this node's hub (refused above the limits).
    pub fn register_session(&self, handle: SessionHandle, limits: HubLimits) -> Registered {
        self.bus.hub().register(handle, limits)
    }

    /// The user's first session on this node opened: true when the user was
    /// offline in the whole cluster before.
    pub async fn session_opened(&self, user: UserId) -> bool {
        self.bus.session_opened(user).await
    }

    /// Removes a session; true when it was the user's last on this node and
    /// no node holds one any more (then the contacts hear "offline").
    pub async fn session_closed(&self, user: UserId, id: SessionId) -> bool {
        let last_here = self.bus.hub().unregister(user, id);
        let last = last_here && self.bus.session_closed(user).await;
        if last {
            self.user_went_offline(user);
        }
        last
    }

    /// Sessions open on this node.
    pub fn session_count(&self) -> usize {
        self.bus.hub().session_count()
    }

    /// What a registered session starts from, in one round trip: the
    /// `seq` of each of the user's conversations, and the notifications
    /// kept while the user had no session (sent after `ready`, then
    /// forgotten up to `kept_upto`).
    pub async fn session_start(&self, me: &UserActor) -> Result<SessionStart> {
        let start = self.store.session_start(me.id()).await?;
        let kept_upto = start.kept.last().map_or(0, |n| n.id);
        let kept = start
            .kept
            .into_iter()
            .map(|n| Event::Notification {
                data: n.data,
                sent_at: Some(n.created_at),
            })
            .collect();
        Ok(SessionStart {
            seqs: start.seqs,
            kept,
            kept_upto,
        })
    }

    /// Whether the user is a member (resume skips conversations it left).
    pub async fn is_member(&self, me: &UserActor, conversation: ConversationId) -> Result<bool> {
        Ok(self.store.is_member(conversation, me.id()).await?)
    }

    /// Logged events of a conversation after `after` (and before `until`)
    /// that the user may see, at most `limit`.
    pub async fn events_after(
        &self,
        me: &UserActor,
        conversation: ConversationId,
        after: i64,
        until: Option<i64>,
        limit: u32,
    ) -> Result<EventPage> {
        Ok(self
            .store
            .events_after(conversation, me.id(), after, until, limit)
            .await?)
    }

    /// Shutdown, first step: every session closes with "going away".
    pub fn going_away(&self) {
        self.bus.hub().going_away();
    }

    /// Shutdown, last step: the node leaves the cluster.
    pub async fn leave_cluster(&self) {
        self.bus.shutdown().await;
    }
}
