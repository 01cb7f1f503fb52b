//! Group commit: many members' plain sends (no attachments, no joining) in
//! one statement, one round trip and one transaction, whatever the batch's
//! size. The statement is `parley_post_batch` (migration 4): it locks the
//! batch's conversations in id order, then, under the locks, reads their
//! members (the members at commit, as in [`Store::post_message`]), judges
//! each send, numbers the accepted ones in the batch's order and writes
//! `last_seq`, the events and the messages.
//!
//! Each send is judged on its own: one refused send (not a member, a
//! stranger among its recipients) leaves the others of its batch untouched.

use crate::conversations::Committed;
use crate::messages::{fetch_messages, NewMessageRow, PostOutcome, StoredEvent};
use crate::{Result, Store, StoreError};
use parley_core::protocol::{Event, Message};
use parley_core::{ConversationId, MessageId, SubscriberId, UserId};
use sqlx::Row;
use std::collections::HashMap;
use uuid::Uuid;

/// A member's send, validated; it commits in a batch with others.
#[derive(Clone, Debug)]
pub struct BatchedSend {
    pub conversation: ConversationId,
    /// The sender's subscriber: a conversation of another one looks missing.
    pub subscriber: SubscriberId,
    pub row: NewMessageRow,
}

impl BatchedSend {
    /// Sends that may go through a batch: those that only add a message.
    pub fn fits(row: &NewMessageRow) -> bool {
        // Attachments, replies, mentions and forwards are checked by the single-send
        // path (they read other rows under the lock).
        row.attachments.is_empty()
            && row.reply_to.is_none()
            && row.mentions.is_empty()
            && !row.mention_all
            && row.forward.is_none()
    }
}

/// The function's arguments, one entry per send given to it.
#[derive(Default)]
struct Columns {
    conversations: Vec<Uuid>,
    subscribers: Vec<Uuid>,
    authors: Vec<Uuid>,
    ids: Vec<Uuid>,
    texts: Vec<String>,
    data: Vec<Option<String>>,
    actions: Vec<String>,
    recipients: Vec<Option<String>>,
    keys: Vec<Option<String>>,
    created: Vec<chrono::DateTime<chrono::Utc>>,
    bodies: Vec<String>,
}

/// What the batch decided for one send.
enum Verdict {
    /// Given to the function as its `n`-th send (from 1), with this message.
    Judged(i64, Box<Message>),
    /// A retry of a send earlier in this batch (its index in `sends`).
    SameBatch(usize),
}

fn json_text<T: serde::Serialize + ?Sized>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| StoreError::Invalid(e.to_string()))
}

/// `{uuid,uuid}`: a PostgreSQL array literal, cast to `uuid[]` in SQL.
fn uuid_array(users: &[UserId]) -> String {
    let inner: Vec<String> = users.iter().map(|u| u.0.to_string()).collect();
    format!("{{{}}}", inner.join(","))
}

/// One row the function returned for a send.
struct Judgement {
    status: String,
    seq: Option<i64>,
    id: Option<Uuid>,
}

impl Store {
    /// Commits a batch of sends in one statement. The outer error is the
    /// whole batch's (the database failed: nothing committed); the inner
    /// ones are each send's own. Answers come in the order of `sends`.
    pub async fn post_batch(&self, sends: &[BatchedSend]) -> Result<Vec<Result<PostOutcome>>> {
        // Retries of one key within the batch go to the database once.
        let mut first_of_key: HashMap<(Uuid, Uuid, &str), usize> = HashMap::new();
        let mut verdicts = Vec::with_capacity(sends.len());
        let mut cols = Columns::default();
        for (i, s) in sends.iter().enumerate() {
            let m = &s.row;
            if let Some(key) = &m.idempotency_key {
                let k = (s.conversation.0, m.author.0, key.as_str());
                if let Some(first) = first_of_key.get(&k) {
                    verdicts.push(Verdict::SameBatch(*first));
                    continue;
                }
                first_of_key.insert(k, i);
            }
            // Time-ordered ids: the primary key index grows at one end.
            let message = m.message(MessageId(Uuid::now_v7()), s.conversation, Vec::new());
            cols.conversations.push(s.conversation.0);
            cols.subscribers.push(s.subscriber.0);
            cols.authors.push(m.author.0);
            cols.ids.push(message.id.0);
            cols.texts.push(m.text.clone());
            cols.data.push(m.data.as_ref().map(json_text).transpose()?);
            cols.actions.push(json_text(&m.actions)?);
            cols.recipients
                .push(m.recipients.as_deref().map(uuid_array));
            cols.keys.push(m.idempotency_key.clone());
            cols.created.push(message.created_at);
            // The event as sent on the wire; the function fills in `seq`.
            cols.bodies.push(json_text(&Event::MessageCreated {
                conversation_id: s.conversation,
                seq: 0,
                message: message.clone(),
            })?);
            verdicts.push(Verdict::Judged(cols.ids.len() as i64, Box::new(message)));
        }

        let rows = sqlx::query(
            "SELECT kind, idx, status, seq, id, conv, members
             FROM parley_post_batch($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(&cols.conversations)
        .bind(&cols.subscribers)
        .bind(&cols.authors)
        .bind(&cols.ids)
        .bind(&cols.texts)
        .bind(&cols.data)
        .bind(&cols.actions)
        .bind(&cols.recipients)
        .bind(&cols.keys)
        .bind(&cols.created)
        .bind(&cols.bodies)
        .fetch_all(&self.db)
        .await?;
        let mut judged: HashMap<i64, Judgement> = HashMap::with_capacity(cols.ids.len());
        let mut members: HashMap<Uuid, Vec<UserId>> = HashMap::new();
        for r in &rows {
            let kind: String = r.try_get("kind")?;
            if kind == "members" {
                let list: Vec<Uuid> = r.try_get("members")?;
                members.insert(r.try_get("conv")?, list.into_iter().map(UserId).collect());
            } else {
                judged.insert(
                    r.try_get("idx")?,
                    Judgement {
                        status: r.try_get("status")?,
                        seq: r.try_get("seq")?,
                        id: r.try_get("id")?,
                    },
                );
            }
        }

        // Retries of earlier commits are rare: read them after the commit.
        let earlier_ids: Vec<MessageId> = judged
            .values()
            .filter(|j| j.status == "earlier")
            .filter_map(|j| j.id.map(MessageId))
            .collect();
        let found: HashMap<MessageId, Message> = if earlier_ids.is_empty() {
            HashMap::new()
        } else {
            fetch_messages(&self.db, &earlier_ids)
                .await?
                .into_iter()
                .map(|m| (m.id, m))
                .collect()
        };

        let members_of = |conv: ConversationId| -> Vec<UserId> {
            members.get(&conv.0).cloned().unwrap_or_default()
        };
        let mut out: Vec<Result<PostOutcome>> = Vec::with_capacity(sends.len());
        for (i, v) in verdicts.into_iter().enumerate() {
            let s = &sends[i];
            let conv = s.conversation;
            out.push(match v {
                Verdict::Judged(n, message) => {
                    let Some(j) = judged.get(&n) else {
                        return Err(StoreError::Invalid(format!(
                            "parley_post_batch returned no row for send {n}"
                        )));
                    };
                    outcome(s, j, *message, &found, members_of(conv))
                }
                Verdict::SameBatch(first) => match out.get(first) {
                    Some(Ok(o)) => Ok(PostOutcome {
                        message: o.message.clone(),
                        fresh: false,
                        committed: Committed {
                            events: Vec::new(),
                            members: o.committed.members.clone(),
                        },
                    }),
                    Some(Err(e)) => Err(e.same_again()),
                    None => Err(StoreError::Invalid(
                        "idempotency key: no earlier send".into(),
                    )),
                },
            });
        }
        Ok(out)
    }
}

/// A send's answer from the function's judgement.
fn outcome(
    s: &BatchedSend,
    j: &Judgement,
    mut message: Message,
    found: &HashMap<MessageId, Message>,
    members: Vec<UserId>,
) -> Result<PostOutcome> {
    let conv = s.conversation;
    match j.status.as_str() {
        "fresh" => {
            let seq = j
                .seq
                .ok_or_else(|| StoreError::Invalid("a fresh send without seq".into()))?;
            message.seq = seq;
            Ok(PostOutcome {
                committed: Committed {
                    events: vec![StoredEvent {
                        conversation_id: conv,
                        seq,
                        recipients: message.recipients.clone(),
                        event: Event::MessageCreated {
                            conversation_id: conv,
                            seq,
                            message: message.clone(),
                        },
                    }],
                    members,
                },
                message,
                fresh: true,
            })
        }
        "earlier" => match j.id.map(MessageId).and_then(|id| found.get(&id)) {
            Some(earlier) => Ok(PostOutcome {
                message: earlier.clone(),
                fresh: false,
                committed: Committed {
                    events: Vec::new(),
                    members,
                },
            }),
            None => Err(StoreError::NotFound("message")),
        },
        "denied" => Err(StoreError::Denied(
            "you are not a member of this conversation".into(),
        )),
        "stranger" => {
            let stranger = s
                .row
                .recipients
                .iter()
                .flatten()
                .find(|u| !members.contains(u))
                .map_or_else(String::new, |u| u.to_string());
            Err(StoreError::Invalid(format!(
                "recipients: {stranger} is not a member of the conversation"
            )))
        }
        // "missing", "foreign": a conversation of another subscriber looks
        // missing.
        _ => Err(StoreError::NotFound("conversation")),
    }
}
