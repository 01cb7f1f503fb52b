//! Web Push subscriptions, each user's push level, and the per
//! conversation coalescing of pushes.

use crate::{Result, Store, StoreError};
use parley_core::{ConversationId, PushSubscriptionId, UserId};
use sqlx::Row;
use std::time::Duration;
use uuid::Uuid;

/// A browser's push subscription.
#[derive(Clone, Debug)]
pub struct PushSubscription {
    pub id: PushSubscriptionId,
    pub user_id: UserId,
    pub endpoint: String,
    pub p256dh: Vec<u8>,
    pub auth: Vec<u8>,
}

impl Store {
    /// Stores a subscription (the same endpoint again replaces its keys)
    /// unless the user has `max` others; its id.
    pub async fn add_push_subscription(
        &self,
        s: &PushSubscription,
        max: i64,
    ) -> Result<PushSubscriptionId> {
        let id: Option<Uuid> = sqlx::query_scalar(
            "INSERT INTO push_subscriptions (id, user_id, endpoint, p256dh, auth)
             SELECT $1, $2, $3, $4, $5
             WHERE (SELECT count(*) FROM push_subscriptions
                    WHERE user_id = $2 AND endpoint <> $3) < $6
             ON CONFLICT (user_id, endpoint) DO UPDATE SET p256dh = $4, auth = $5
             RETURNING id",
        )
        .bind(s.id.0)
        .bind(s.user_id.0)
        .bind(&s.endpoint)
        .bind(&s.p256dh)
        .bind(&s.auth)
        .bind(max)
        .fetch_optional(&self.db)
        .await?;
        id.map(PushSubscriptionId)
            .ok_or_else(|| StoreError::Conflict("limit".into()))
    }

    pub async fn remove_push_subscription(
        &self,
        user: UserId,
        id: PushSubscriptionId,
    ) -> Result<()> {
        let n = sqlx::query("DELETE FROM push_subscriptions WHERE id = $1 AND user_id = $2")
            .bind(id.0)
            .bind(user.0)
            .execute(&self.db)
            .await?
            .rows_affected();
        if n == 0 {
            return Err(StoreError::NotFound("push subscription"));
        }
        Ok(())
    }

    /// A subscription the push service said is gone (404/410).
    pub async fn drop_push_subscription(&self, id: PushSubscriptionId) -> Result<()> {
        sqlx::query("DELETE FROM push_subscriptions WHERE id = $1")
            .bind(id.0)
            .execute(&self.db)
            .await?;
        Ok(())
    }

    /// Users with at least one subscription.
    pub async fn push_subscribers(&self) -> Result<Vec<UserId>> {
        let ids: Vec<Uuid> = sqlx::query_scalar("SELECT DISTINCT user_id FROM push_subscriptions")
            .fetch_all(&self.db)
            .await?;
        Ok(ids.into_iter().map(UserId).collect())
    }

    pub async fn push_subscriptions_of(&self, users: &[UserId]) -> Result<Vec<PushSubscription>> {
        let ids: Vec<Uuid> = users.iter().map(|u| u.0).collect();
        let rows = sqlx::query(
            "SELECT id, user_id, endpoint, p256dh, auth FROM push_subscriptions
             WHERE user_id = ANY($1) ORDER BY created_at",
        )
        .bind(&ids)
        .fetch_all(&self.db)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(PushSubscription {
                    id: PushSubscriptionId(r.try_get("id")?),
                    user_id: UserId(r.try_get("user_id")?),
                    endpoint: r.try_get("endpoint")?,
                    p256dh: r.try_get("p256dh")?,
                    auth: r.try_get("auth")?,
                })
            })
            .collect()
    }

    pub async fn push_level(&self, user: UserId) -> Result<String> {
        let level: Option<String> =
            sqlx::query_scalar("SELECT push_level FROM users WHERE id = $1")
                .bind(user.0)
                .fetch_optional(&self.db)
                .await?;
        level.ok_or(StoreError::NotFound("user"))
    }

    pub async fn set_push_level(&self, user: UserId, level: &str) -> Result<()> {
        sqlx::query("UPDATE users SET push_level = $2 WHERE id = $1")
            .bind(user.0)
            .bind(level)
            .execute(&self.db)
            .await?;
        Ok(())
    }

    /// The push levels of some users, and the conversation's kind.
    pub async fn push_targets(
        &self,
        conversation: ConversationId,
        users: &[UserId],
    ) -> Result<(String, String, Vec<(UserId, String)>)> {
        let (kind, title): (String, String) =
            sqlx::query_as("SELECT kind, title FROM conversations WHERE id = $1")
                .bind(conversation.0)
                .fetch_optional(&self.db)
                .await?
                .ok_or(StoreError::NotFound("conversation"))?;
        let ids: Vec<Uuid> = users.iter().map(|u| u.0).collect();
        let rows: Vec<(Uuid, String)> =
            sqlx::query_as("SELECT id, push_level FROM users WHERE id = ANY($1) AND NOT locked")
                .bind(&ids)
                .fetch_all(&self.db)
                .await?;
        Ok((
            kind,
            title,
            rows.into_iter().map(|(u, l)| (UserId(u), l)).collect(),
        ))
    }

    /// Of `users`, those this conversation has not pushed to within
    /// `window`; they are marked as pushed now.
    pub async fn push_coalesce(
        &self,
        conversation: ConversationId,
        users: &[UserId],
        window: Duration,
    ) -> Result<Vec<UserId>> {
        let ids: Vec<Uuid> = users.iter().map(|u| u.0).collect();
        let due: Vec<Uuid> = sqlx::query_scalar(
            "INSERT INTO push_coalesce (user_id, conversation_id, last_sent_at)
             SELECT u, $2, now() FROM unnest($1::uuid[]) u
             ON CONFLICT (user_id, conversation_id) DO UPDATE SET last_sent_at = now()
             WHERE push_coalesce.last_sent_at < now() - make_interval(secs => $3)
             RETURNING user_id",
        )
        .bind(&ids)
        .bind(conversation.0)
        .bind(window.as_secs_f64())
        .fetch_all(&self.db)
        .await?;
        Ok(due.into_iter().map(UserId).collect())
    }
}
