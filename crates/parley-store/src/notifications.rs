//! Notifications kept for users who had no session when their infobase
//! pushed them: bounded per user, with expiry, sent at the next connect, then forgotten.

use crate::{Result, Store};
use chrono::{DateTime, Utc};
use parley_core::UserId;
use sqlx::types::Json;
use std::time::Duration;

/// A kept notification.
#[derive(Clone, Debug)]
pub struct StoredNotification {
    pub id: i64,
    pub data: serde_json::Value,
    pub created_at: DateTime<Utc>,
}

impl Store {
    /// Keeps a notification for `ttl`; beyond `max` kept for the user, the
    /// oldest go.
    pub async fn keep_notification(
        &self,
        user: UserId,
        data: &serde_json::Value,
        ttl: Duration,
        max: i64,
    ) -> Result<()> {
        let mut tx = self.db.begin().await?;
        sqlx::query(
            "INSERT INTO stored_notifications (user_id, data, expires_at)
             VALUES ($1, $2, now() + make_interval(secs => $3))",
        )
        .bind(user.0)
        .bind(Json(data))
        .bind(ttl.as_secs_f64())
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "DELETE FROM stored_notifications WHERE user_id = $1 AND id NOT IN (
                 SELECT id FROM stored_notifications WHERE user_id = $1 ORDER BY id DESC LIMIT $2)",
        )
        .bind(user.0)
        .bind(max)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Forgets kept notifications once they were sent.
    pub async fn forget_notifications(&self, user: UserId, upto: i64) -> Result<()> {
        sqlx::query("DELETE FROM stored_notifications WHERE user_id = $1 AND id <= $2")
            .bind(user.0)
            .bind(upto)
            .execute(&self.db)
            .await?;
        Ok(())
    }
}
