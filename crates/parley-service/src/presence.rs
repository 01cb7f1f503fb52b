//! Presence (who is online, cluster-wide), user profiles and notifications.

use crate::{Error, Result, Service};
use parley_core::protocol::{Event, PresenceState, UserProfiles};
use parley_core::{InfobaseActor, UserActor, UserId};
use std::sync::Arc;
use std::time::Duration;

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
        Ok(UserProfiles {
            users,
            next_cursor: None,
        })
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
        // A user with no session anywhere gets it at the next connect.
        let online = self
            .bus
            .online(vec![user.id])
            .await
            .map_err(Error::from)?
            .first()
            .copied()
            .unwrap_or(false);
        let lim = &self.cfg.limits;
        if !online && lim.max_stored_notifications > 0 {
            self.store
                .keep_notification(
                    user.id,
                    &data,
                    Duration::from_secs(lim.stored_notification_ttl_secs),
                    i64::from(lim.max_stored_notifications),
                )
                .await?;
            return Ok(());
        }
        self.push(
            vec![user.id],
            Event::Notification {
                data,
                sent_at: None,
            },
        );
        Ok(())
    }

    pub async fn sent_stored_notifications(&self, user: UserId, upto: i64) -> Result<()> {
        Ok(self.store.forget_notifications(user, upto).await?)
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
        let state = if online { "online" } else { "offline" };
        metrics::counter!("parley_presence_announced_total", "state" => state).increment(1);
        self.feed_presence(user, online).await;
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

    /// The people directory of the caller's subscriber (locked and deleted
    /// users left out), a page at a time.
    pub async fn search_users(
        &self,
        me: &UserActor,
        query: &str,
        cursor: Option<&str>,
        limit: Option<u32>,
    ) -> Result<UserProfiles> {
        let lim = &self.cfg.limits;
        let query = parley_core::validate::text("query", query, lim.max_search_query_chars)?;
        let limit = limit.unwrap_or(lim.default_search_page);
        if !(1..=lim.max_search_page).contains(&limit) {
            return Err(Error::invalid(format!(
                "limit: must be between 1 and {} (limits.max_search_page)",
                lim.max_search_page
            )));
        }
        let after = match cursor {
            None => None,
            Some(c) => {
                let (id, name) = c
                    .split_once('_')
                    .ok_or_else(|| Error::invalid("cursor: not a cursor of this search"))?;
                let id: UserId = id
                    .parse()
                    .map_err(|_| Error::invalid("cursor: not a cursor of this search"))?;
                Some((name.to_owned(), id))
            }
        };
        let mut users = self
            .store
            .search_users(
                me.subscriber_id,
                &query,
                after.as_ref().map(|(n, i)| (n.as_str(), *i)),
                i64::from(limit) + 1,
            )
            .await?;
        let more = users.len() > limit as usize;
        users.truncate(limit as usize);
        let next_cursor = match (more, users.last()) {
            (true, Some(u)) => Some(format!("{}_{}", u.id, u.name)),
            _ => None,
        };
        Ok(UserProfiles { users, next_cursor })
    }
}
