//! Bulk import of a conversation's past messages (history brought from
//! another system, and the search benchmark's million messages): one
//! statement per batch instead of one send per message, with the same rows a
//! send writes (the message, its `message.created` event, `last_seq`).

use crate::{Result, Store, StoreError};
use chrono::{DateTime, Utc};
use parley_core::protocol::{Event, Message};
use parley_core::{ConversationId, MessageId, UserId};
use uuid::Uuid;

/// One message to import, oldest first.
#[derive(Clone, Debug)]
pub struct ImportedMessage {
    pub author: UserId,
    pub text: String,
    pub created_at: DateTime<Utc>,
}

impl Store {
    /// Appends the messages to the conversation with the next `seq`s, under
    /// its lock; returns how many were stored. Authors are not checked: the
    /// caller imports what the conversation already said elsewhere.
    pub async fn import_messages(
        &self,
        conversation: ConversationId,
        msgs: &[ImportedMessage],
    ) -> Result<u64> {
        if msgs.is_empty() {
            return Ok(0);
        }
        let mut tx = self.db.begin().await?;
        let first: i64 = sqlx::query_scalar(
            "UPDATE conversations SET last_seq = last_seq + $2, last_activity = now()
             WHERE id = $1 RETURNING last_seq - $2 + 1",
        )
        .bind(conversation.0)
        .bind(msgs.len() as i64)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(StoreError::NotFound("conversation"))?;
        let mut ids = Vec::with_capacity(msgs.len());
        let mut seqs = Vec::with_capacity(msgs.len());
        let mut authors = Vec::with_capacity(msgs.len());
        let mut texts = Vec::with_capacity(msgs.len());
        let mut times = Vec::with_capacity(msgs.len());
        let mut bodies = Vec::with_capacity(msgs.len());
        for (i, m) in msgs.iter().enumerate() {
            let seq = first + i as i64;
            // Time-ordered by when it was said, like the ids of messages
            // sent here (search takes the newest by id).
            let ts = uuid::Timestamp::from_unix(
                uuid::NoContext,
                m.created_at.timestamp().max(0) as u64,
                m.created_at.timestamp_subsec_nanos(),
            );
            let id = MessageId(Uuid::new_v7(ts));
            let message = Message::plain(
                id,
                conversation,
                seq,
                m.author,
                m.text.clone(),
                m.created_at,
            );
            let body = serde_json::to_string(&Event::MessageCreated {
                conversation_id: conversation,
                seq,
                message,
            })
            .map_err(|e| StoreError::Invalid(e.to_string()))?;
            ids.push(id.0);
            seqs.push(seq);
            authors.push(m.author.0);
            texts.push(m.text.clone());
            times.push(m.created_at);
            bodies.push(body);
        }
        sqlx::query(
            "WITH e AS (
                 INSERT INTO events (conversation_id, seq, body, created_at)
                 SELECT $1, s, b::jsonb, t FROM unnest($3::bigint[], $6::text[], $5::timestamptz[])
                     AS x(s, b, t)
             )
             INSERT INTO messages (id, conversation_id, seq, author_id, text, created_at)
             SELECT i, $1, s, a, tx, t
             FROM unnest($2::uuid[], $3::bigint[], $4::uuid[], $7::text[], $5::timestamptz[])
                 AS x(i, s, a, tx, t)",
        )
        .bind(conversation.0)
        .bind(&ids)
        .bind(&seqs)
        .bind(&authors)
        .bind(&times)
        .bind(&bodies)
        .bind(&texts)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(msgs.len() as u64)
    }

    /// Refreshes the planner's statistics of the message tables after a
    /// large import (search chooses its plan by how common each word is;
    /// autovacuum would get there, later).
    pub async fn analyze_messages(&self) -> Result<()> {
        sqlx::query("ANALYZE messages, events")
            .execute(&self.db)
            .await?;
        Ok(())
    }
}
