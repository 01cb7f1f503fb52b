//! What the recovery reads: the conversations that changed lately, with
//! their last `seq`, and the events a node or its sessions are missing.

use crate::{ConversationSeq, Result, Store};
use parley_core::{ConversationId, UserId};
use sqlx::types::Json;
use sqlx::Row;
use std::collections::HashMap;

/// One stored event as the live path would have carried it.
#[derive(Clone, Debug)]
pub struct LoggedEnvelope {
    pub seq: i64,
    pub recipients: Option<Vec<UserId>>,
    /// The event's JSON (`{"event": ..., ...}`).
    pub body: serde_json::Value,
}

/// A page of a conversation's log as [`Store::events_range`] reads it.
#[derive(Clone, Debug, Default)]
pub struct LoggedPage {
    /// Oldest first.
    pub events: Vec<LoggedEnvelope>,
    /// Events are left before the end of the range.
    pub more: bool,
}

impl Store {
    /// Events of a conversation with `after < seq < until`, oldest first,
    /// at most `limit`, and whether more are left. For every user alike
    /// (each reader filters by `recipients`): the sessions of a node that
    /// miss the same events share one read.
    pub async fn events_range(
        &self,
        conversation: ConversationId,
        after: i64,
        until: i64,
        limit: u32,
    ) -> Result<LoggedPage> {
        let rows = sqlx::query(
            "SELECT seq, recipients, body FROM events
             WHERE conversation_id = $1 AND seq > $2 AND seq < $3
             ORDER BY seq LIMIT $4",
        )
        .bind(conversation.0)
        .bind(after)
        .bind(until)
        .bind(i64::from(limit) + 1)
        .fetch_all(&self.db)
        .await?;
        let (events, more) = crate::page::page(&rows, limit, logged)?;
        Ok(LoggedPage { events, more })
    }

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

    /// For each conversation with `after < seq <= upto` to check, the users
    /// who could want those events: its members, and users removed by one
    /// of them (they must hear of it). One round trip for them all: on a
    /// sharded bus a node never hears of conversations without members of
    /// its own, and asking for each would cost two queries per
    /// conversation per `recovery.grace_ms`.
    pub async fn interested_users(
        &self,
        checks: &[(ConversationId, i64, i64)],
    ) -> Result<HashMap<ConversationId, Vec<UserId>>> {
        let convs: Vec<uuid::Uuid> = checks.iter().map(|c| c.0 .0).collect();
        let after: Vec<i64> = checks.iter().map(|c| c.1).collect();
        let upto: Vec<i64> = checks.iter().map(|c| c.2).collect();
        let rows = sqlx::query(
            "SELECT m.conversation_id AS conv, m.user_id AS user_id
               FROM members m WHERE m.conversation_id = ANY($1)
             UNION
             SELECT d.conv, (e.body->>'user_id')::uuid
               FROM unnest($1::uuid[], $2::bigint[], $3::bigint[]) AS d(conv, after, upto)
               JOIN events e ON e.conversation_id = d.conv AND e.seq > d.after AND e.seq <= d.upto
              WHERE e.body->>'event' = 'member.removed'",
        )
        .bind(&convs)
        .bind(&after)
        .bind(&upto)
        .fetch_all(&self.db)
        .await?;
        let mut out: HashMap<ConversationId, Vec<UserId>> = HashMap::new();
        for r in &rows {
            let conv: uuid::Uuid = r.try_get("conv")?;
            let user: Option<uuid::Uuid> = r.try_get("user_id")?;
            if let Some(user) = user {
                out.entry(ConversationId(conv))
                    .or_default()
                    .push(UserId(user));
            }
        }
        Ok(out)
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
        rows.iter().map(logged).collect()
    }
}

/// A row of `seq, recipients, body` from `events`.
fn logged(r: &sqlx::postgres::PgRow) -> Result<LoggedEnvelope> {
    let recipients: Option<Vec<uuid::Uuid>> = r.try_get("recipients")?;
    Ok(LoggedEnvelope {
        seq: r.try_get("seq")?,
        recipients: recipients.map(|v| v.into_iter().map(UserId).collect()),
        body: r.try_get::<Json<serde_json::Value>, _>("body")?.0,
    })
}
