//! Emoji reactions on messages: one per user per emoji, each change an
//! event with its own `seq` (so resume replays it), seen by whoever sees
//! the message (its `recipients`).

use crate::conversations::{lock_conversation, members_tx};
use crate::messages::append_event;
use crate::{Committed, Result, Store, StoreError};
use parley_core::protocol::{Event, Message, Reaction};
use parley_core::{ConversationId, MessageId, UserId};
use std::collections::HashMap;
use uuid::Uuid;

/// Fills `reactions` of the messages (`mine` for any of `readers`).
pub(crate) async fn fill(
    pool: &crate::db::Db,
    messages: &mut [Message],
    readers: Option<&[UserId]>,
) -> Result<()> {
    if messages.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = messages.iter().map(|m| m.id.0).collect();
    let readers: Vec<Uuid> = readers.unwrap_or(&[]).iter().map(|u| u.0).collect();
    let rows: Vec<(Uuid, String, i64, bool)> = sqlx::query_as(
        "SELECT message_id, emoji, count(*), bool_or(user_id = ANY($2))
         FROM reactions WHERE message_id = ANY($1)
         GROUP BY message_id, emoji ORDER BY message_id, min(created_at), emoji",
    )
    .bind(&ids)
    .bind(&readers)
    .fetch_all(pool)
    .await?;
    let mut by: HashMap<Uuid, Vec<Reaction>> = HashMap::new();
    for (m, emoji, count, mine) in rows {
        by.entry(m)
            .or_default()
            .push(Reaction { emoji, count, mine });
    }
    for m in messages {
        if let Some(r) = by.remove(&m.id.0) {
            m.reactions = r;
        }
    }
    Ok(())
}

impl Store {
    /// Adds (`add`) or removes the user's reaction. None when nothing
    /// changed (already there, or not there). The message must be one the
    /// user can read; at most `max_kinds` different emoji per message.
    pub async fn react(
        &self,
        conversation: ConversationId,
        message: MessageId,
        user: UserId,
        emoji: &str,
        add: bool,
        max_kinds: i64,
    ) -> Result<Option<Committed>> {
        let mut tx = self.db.begin().await?;
        lock_conversation(&mut tx, conversation).await?;
        let members = members_tx(&mut tx, conversation).await?;
        if !members.contains(&user) {
            return Err(StoreError::Denied(
                "you are not a member of this conversation".into(),
            ));
        }
        let row: Option<(Option<Vec<Uuid>>, Uuid, bool)> = sqlx::query_as(
            "SELECT recipients, author_id, deleted FROM messages WHERE id = $1 AND conversation_id = $2",
        )
        .bind(message.0)
        .bind(conversation.0)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((recipients, author, deleted)) = row else {
            return Err(StoreError::NotFound("message"));
        };
        let visible = recipients
            .as_ref()
            .is_none_or(|r| r.contains(&user.0) || author == user.0);
        if deleted || !visible {
            // A message the user cannot read does not exist for it.
            return Err(StoreError::NotFound("message"));
        }
        let changed = if add {
            let kinds: i64 = sqlx::query_scalar(
                "SELECT count(DISTINCT emoji) FROM reactions WHERE message_id = $1 AND emoji <> $2",
            )
            .bind(message.0)
            .bind(emoji)
            .fetch_one(&mut *tx)
            .await?;
            if kinds >= max_kinds {
                return Err(StoreError::Invalid(format!(
                    "emoji: the message has {max_kinds} different reactions (limits.max_reactions_per_message)"
                )));
            }
            sqlx::query(
                "INSERT INTO reactions (message_id, user_id, emoji) VALUES ($1, $2, $3)
                 ON CONFLICT DO NOTHING",
            )
        } else {
            sqlx::query("DELETE FROM reactions WHERE message_id = $1 AND user_id = $2 AND emoji = $3")
        }
        .bind(message.0)
        .bind(user.0)
        .bind(emoji)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !changed {
            return Ok(None);
        }
        let recipients = recipients.map(|r| {
            let mut r: Vec<UserId> = r.into_iter().map(UserId).collect();
            r.push(UserId(author));
            r
        });
        let emoji = emoji.to_owned();
        let ev = append_event(&mut tx, conversation, recipients, |seq| match add {
            true => Event::ReactionAdded {
                conversation_id: conversation,
                seq,
                message_id: message,
                user_id: user,
                emoji,
            },
            false => Event::ReactionRemoved {
                conversation_id: conversation,
                seq,
                message_id: message,
                user_id: user,
                emoji,
            },
        })
        .await?;
        tx.commit().await?;
        Ok(Some(Committed {
            events: vec![ev],
            members,
        }))
    }
}
