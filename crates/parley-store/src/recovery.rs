//! What the recovery reads: the conversations that changed lately, with
//! their last `seq`, and the events one of them is missing.

use crate::{ConversationSeq, Result, Store};
use parley_core::{ConversationId, UserId};
use sqlx::types::Json;
use sqlx::Row;

/// One stored event as the live path would have carried it.
#[derive(Clone, Debug)]
pub struct LoggedEnvelope {
    pub seq: i64,
    pub recipients: Option<Vec<UserId>>,
    /// The event's JSON (`{"event": ..., ...}`).
    pub body: serde_json::Value,
}

impl Store {
    /// Conversations with an event committed within the last `window`
    /// (by `last_activity`, which trails the newest event by at most a
    /// second), with their last `seq`.
    pub async fn recently_active(
        &self,
        window: std::time::Duration,
    ) -> Result<Vec<ConversationSeq>> {
        let rows = sqlx::query(
            "SELECT id, last_seq FROM conversations
             WHERE last_activity > now() - make_interval(secs => $1) AND last_seq > 0",
        )
        .bind(window.as_secs_f64())
        .fetch_all(&self.db)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ConversationSeq {
                    conversation_id: ConversationId(r.try_get("id")?),
                    last_seq: r.try_get("last_seq")?,
                })
            })
            .collect()
    }

    /// Events of a conversation with `after < seq <= upto`, oldest first, at
    /// most `limit` (the newest ones when there are more).
    pub async fn events_between(
        &self,
        conversation: ConversationId,
        after: i64,
        upto: i64,
        limit: u32,
    ) -> Result<Vec<LoggedEnvelope>> {
        let rows = sqlx::query(
            "SELECT seq, recipients, body FROM (
                 SELECT seq, recipients, body FROM events
                 WHERE conversation_id = $1 AND seq > $2 AND seq <= $3
                 ORDER BY seq DESC LIMIT $4
             ) t ORDER BY seq",
        )
        .bind(conversation.0)
        .bind(after)
        .bind(upto)
        .bind(i64::from(limit))
        .fetch_all(&self.db)
        .await?;
        rows.iter()
            .map(|r| {
                let recipients: Option<Vec<uuid::Uuid>> = r.try_get("recipients")?;
                Ok(LoggedEnvelope {
                    seq: r.try_get("seq")?,
                    recipients: recipients.map(|v| v.into_iter().map(UserId).collect()),
                    body: r.try_get::<Json<serde_json::Value>, _>("body")?.0,
                })
            })
            .collect()
    }
}
