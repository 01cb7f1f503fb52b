//! What a WebSocket session reads once it is registered, in one round trip:
//! the `seq` of every conversation the user is a member of (its resume
//! base) and the notifications kept while the user had no session. A
//! connect storm pays one statement per session here instead of two.

use crate::conversations::ConversationSeq;
use crate::notifications::StoredNotification;
use crate::{Result, Store};
use chrono::{DateTime, Utc};
use parley_core::{ConversationId, UserId};
use sqlx::types::Json;
use sqlx::Row;

/// The start of a session.
#[derive(Clone, Debug, Default)]
pub struct SessionStart {
    pub seqs: Vec<ConversationSeq>,
    /// Oldest first.
    pub kept: Vec<StoredNotification>,
}

impl Store {
    pub async fn session_start(&self, user: UserId) -> Result<SessionStart> {
        // Two row shapes in one result: a membership row has `conv`, a kept
        // notification has `kept_id`.
        let rows = sqlx::query(
            "SELECT c.id AS conv, c.last_seq AS seq,
                    NULL::bigint AS kept_id, NULL::jsonb AS data, NULL::timestamptz AS created_at
             FROM members m JOIN conversations c ON c.id = m.conversation_id
             WHERE m.user_id = $1
             UNION ALL
             SELECT NULL, NULL, n.id, n.data, n.created_at FROM stored_notifications n
             WHERE n.user_id = $1 AND n.expires_at > now()",
        )
        .bind(user.0)
        .fetch_all(&self.db)
        .await?;
        let mut start = SessionStart::default();
        for row in rows {
            if let Some(conv) = row.try_get::<Option<uuid::Uuid>, _>("conv")? {
                start.seqs.push(ConversationSeq {
                    conversation_id: ConversationId(conv),
                    last_seq: row.try_get("seq")?,
                });
            } else if let Some(id) = row.try_get::<Option<i64>, _>("kept_id")? {
                let data: Json<serde_json::Value> = row.try_get("data")?;
                let created_at: DateTime<Utc> = row.try_get("created_at")?;
                start.kept.push(StoredNotification {
                    id,
                    data: data.0,
                    created_at,
                });
            }
        }
        start.kept.sort_by_key(|n| n.id);
        Ok(start)
    }
}
