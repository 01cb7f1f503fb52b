//! Answered buttons: a click on an action of a message the user can read
//! is recorded (the infobase reads it back) and, for a single-use question,
//! answers it for everyone with a history event.

use crate::conversations::{lock_conversation, members_tx};
use crate::messages::append_event;
use crate::{Committed, Result, Store, StoreError};
use chrono::{DateTime, Utc};
use parley_core::protocol::{Action, ActionChoice, ActionInvocation, Event};
use parley_core::{ConversationId, InfobaseId, MessageId, UserId};
use sqlx::types::Json;
use uuid::Uuid;

/// What a click did.
#[derive(Clone, Debug)]
pub struct Invoked {
    pub invocation: ActionInvocation,
    /// The message's author, who hears of it.
    pub author: UserId,
    /// `action.chosen` of a single-use question.
    pub committed: Option<Committed>,
}

type MessageForAction = (
    Uuid,
    Option<Vec<Uuid>>,
    Json<Vec<Action>>,
    bool,
    Option<Json<ActionChoice>>,
);

impl Store {
    pub async fn invoke_action(
        &self,
        conversation: ConversationId,
        message: MessageId,
        user: UserId,
        value: &str,
    ) -> Result<Invoked> {
        let mut tx = self.db.begin().await?;
        lock_conversation(&mut tx, conversation).await?;
        let members = members_tx(&mut tx, conversation).await?;
        if !members.contains(&user) {
            return Err(StoreError::Denied(
                "you are not a member of this conversation".into(),
            ));
        }
        let row: Option<MessageForAction> = sqlx::query_as(
            "SELECT author_id, recipients, actions, deleted, chosen FROM messages
             WHERE id = $1 AND conversation_id = $2",
        )
        .bind(message.0)
        .bind(conversation.0)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((author, recipients, actions, deleted, chosen)) = row else {
            return Err(StoreError::NotFound("message"));
        };
        let readable = recipients
            .as_ref()
            .is_none_or(|r| r.contains(&user.0) || author == user.0);
        if deleted || !readable {
            return Err(StoreError::NotFound("message"));
        }
        let Some(action) = actions.0.iter().find(|a| a.value == value) else {
            return Err(StoreError::Invalid(format!(
                "value: the message has no action {value:?}"
            )));
        };
        let mut committed = None;
        if action.single_use {
            if let Some(c) = chosen {
                return Err(StoreError::Conflict(format!(
                    "already answered: {:?}",
                    c.0.value
                )));
            }
            let choice = ActionChoice {
                value: value.to_owned(),
                user_id: user,
                chosen_at: Utc::now(),
            };
            sqlx::query("UPDATE messages SET chosen = $2 WHERE id = $1")
                .bind(message.0)
                .bind(Json(&choice))
                .execute(&mut *tx)
                .await?;
            let audience = recipients.clone().map(|r| {
                let mut r: Vec<UserId> = r.into_iter().map(UserId).collect();
                r.push(UserId(author));
                r
            });
            let ev = append_event(&mut tx, conversation, audience, |seq| Event::ActionChosen {
                conversation_id: conversation,
                seq,
                message_id: message,
                choice,
            })
            .await?;
            committed = Some(Committed {
                events: vec![ev],
                members,
            });
        }
        let (id, created_at): (i64, DateTime<Utc>) = sqlx::query_as(
            "INSERT INTO action_invocations (message_id, conversation_id, user_id, value)
             VALUES ($1, $2, $3, $4) RETURNING id, created_at",
        )
        .bind(message.0)
        .bind(conversation.0)
        .bind(user.0)
        .bind(value)
        .fetch_one(&mut *tx)
        .await?;
        let invocation = ActionInvocation {
            id,
            conversation_id: conversation,
            message_id: message,
            value: value.to_owned(),
            user_id: user,
            created_at,
        };
        // The author's infobase hears of it in its feed (the pump moves it).
        let event = Event::ActionInvoked {
            invocation: invocation.clone(),
        };
        let body = serde_json::to_value(&event).map_err(|e| StoreError::Invalid(e.to_string()))?;
        sqlx::query(
            "INSERT INTO feed_inbox (infobase_id, kind, conversation_id, body)
             SELECT infobase_id, 'action.invoked', $2, $3 FROM users WHERE id = $1",
        )
        .bind(author)
        .bind(conversation.0)
        .bind(Json(&body))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Invoked {
            invocation,
            author: UserId(author),
            committed,
        })
    }

    /// Clicks on buttons of messages written by users of the infobase,
    /// after the `after` id, oldest first.
    pub async fn action_invocations(
        &self,
        infobase: InfobaseId,
        after: i64,
        limit: i64,
    ) -> Result<Vec<ActionInvocation>> {
        let rows: Vec<(i64, Uuid, Uuid, String, Uuid, DateTime<Utc>)> = sqlx::query_as(
            "SELECT a.id, a.conversation_id, a.message_id, a.value, a.user_id, a.created_at
             FROM action_invocations a
             JOIN messages m ON m.id = a.message_id
             JOIN users u ON u.id = m.author_id
             WHERE u.infobase_id = $1 AND a.id > $2
             ORDER BY a.id LIMIT $3",
        )
        .bind(infobase.0)
        .bind(after)
        .bind(limit)
        .fetch_all(&self.db)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, c, m, value, u, at)| ActionInvocation {
                id,
                conversation_id: ConversationId(c),
                message_id: MessageId(m),
                value,
                user_id: UserId(u),
                created_at: at,
            })
            .collect())
    }
}
