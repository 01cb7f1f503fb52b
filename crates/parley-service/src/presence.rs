//! Presence (who is online, cluster-wide), user profiles and notifications.

use crate::{Error, Result, Service};
use parley_core::protocol::{Event, PresenceState, UserProfiles};
use parley_core::{InfobaseActor, UserActor, UserId};
use std::sync::Arc;

impl Service {
    fn check_batch(&self, n: usize) -> Result<()> {
        let max = self.cfg.limits.max_users_per_request;
        if n > max {
            return Err(Error::invalid(format!(
                "user_ids: at most {max} (limits.max_users_per_request)"
            )));
        }
        Ok(())
    }

    /// Names of users of the caller's subscriber (others are left out).
    pub async fn profiles(&self, me: &UserActor, ids: &[UserId]) -> Result<UserProfiles> {
        self.check_batch(ids.len())?;
        let users = self.store.profiles(me.subscriber_id, ids).await?;
        Ok(UserProfiles { users })
    }

    /// Online state of users of the caller's subscriber.
    pub async fn presence_for_user(
        &self,
        me: &UserActor,
        ids: Vec<UserId>,
    ) -> Result<PresenceState> {
        self.check_batch(ids.len())?;
        if !self.store.same_subscriber(me.subscriber_id, &ids).await? {
            return Err(Error::not_found("user"));
        }
        let online = self.bus.online(ids.clone()).await?;
        Ok(PresenceState {
            users: ids.into_iter().zip(online).collect(),
        })
    }

    /// Is a user of the infobase connected now (on any node)?
    pub async fn presence_for_infobase(&self, me: &InfobaseActor, user: UserId) -> Result<bool> {
        let user = self.user_of(me, user).await?;
        let online = self.bus.online(vec![user.id]).await?;
        Ok(online.first().copied().unwrap_or(false))
    }

    /// Pushes a `notification` event to a user's open sessions.
    pub async fn notify(
        &self,
        me: &InfobaseActor,
        user: UserId,
        data: serde_json::Value,
    ) -> Result<()> {
        let user = self.user_of(me, user).await?;
        let size = serde_json::to_vec(&data)
            .map(|v| v.len())
            .unwrap_or(usize::MAX);
        if size > self.cfg.limits.max_data_bytes {
            return Err(Error::too_large("data: larger than limits.max_data_bytes"));
        }
        self.push(vec![user.id], Event::Notification { data });
        Ok(())
    }

    /// Tells a user's contacts that it came online or went offline, unless a
    /// session of the same user opened (or closed) meanwhile on this node.
    pub async fn announce_presence(&self, user: UserId, online: bool) {
        let here = self.bus.hub().sessions_of(user);
        if (online && here == 0) || (!online && here > 0) {
            return;
        }
        self.announce(user, online).await;
    }

    async fn announce(&self, user: UserId, online: bool) {
        match self.store.contacts(user).await {
            Ok(contacts) => self.push(
                contacts,
                Event::Presence {
                    user_id: user,
                    online,
                },
            ),
            Err(e) => tracing::warn!(error = %e, "presence not announced"),
        }
    }

    /// Announces offline the users of nodes that died (reported by the bus).
    pub(crate) async fn watch_departures(self: Arc<Self>) {
        let Some(mut rx) = self.bus.take_departures() else {
            return;
        };
        while let Some(user) = rx.recv().await {
            self.announce(user, false).await;
        }
    }
}
