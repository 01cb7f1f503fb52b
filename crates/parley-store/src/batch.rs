//! Group commit: many members' plain sends (no attachments, no joining) in
//! one transaction of four round trips, whatever the batch's size.
//!
//! 1. `BEGIN`.
//! 2. Lock the batch's conversations in id order (so two batches, on this
//!    node or another, never deadlock) and read each one's `last_seq`.
//! 3. Read their members and the earlier messages of the batch's
//!    idempotency keys. This statement starts after the locks are held, so
//!    the members are the members at commit, as in [`Store::post_message`].
//! 4. Assign `seq`s in the batch's order and write every conversation's new
//!    `last_seq`, every event and every message in one statement; `COMMIT`.
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
use std::sync::Arc;
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
        row.attachments.is_empty()
    }
}

struct Locked {
    subscriber_id: SubscriberId,
    last_seq: i64,
    members: Arc<Vec<UserId>>,
}

/// What the batch decided for one send.
enum Verdict {
    Refused(StoreError),
    /// A retry of a message committed earlier (its id).
    Earlier(MessageId),
    /// A retry of a send earlier in this batch (its index).
    SameBatch(usize),
    Fresh(Box<Message>),
}

/// The columns of the write statement, one entry per fresh message.
#[derive(Default)]
struct Rows {
    ids: Vec<Uuid>,
    conversations: Vec<Uuid>,
    seqs: Vec<i64>,
    authors: Vec<Uuid>,
    texts: Vec<String>,
    data: Vec<Option<String>>,
    actions: Vec<String>,
    recipients: Vec<Option<String>>,
    keys: Vec<Option<String>>,
    created: Vec<chrono::DateTime<chrono::Utc>>,
    bodies: Vec<String>,
}

fn json_text<T: serde::Serialize + ?Sized>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| StoreError::Invalid(e.to_string()))
}

/// `{uuid,uuid}`: a PostgreSQL array literal, cast to `uuid[]` in SQL.
fn uuid_array(users: &[UserId]) -> String {
    let inner: Vec<String> = users.iter().map(|u| u.0.to_string()).collect();
    format!("{{{}}}", inner.join(","))
}

impl Store {
    /// Commits a batch of sends in one transaction. The outer error is the
    /// whole batch's (the database failed: nothing committed); the inner
    /// ones are each send's own. Answers come in the order of `sends`.
    pub async fn post_batch(&self, sends: &[BatchedSend]) -> Result<Vec<Result<PostOutcome>>> {
        let mut conv_ids: Vec<Uuid> = sends.iter().map(|s| s.conversation.0).collect();
        conv_ids.sort_unstable();
        conv_ids.dedup();

        let mut tx = self.pool.begin().await?;
        let rows = sqlx::query(
            "SELECT id, subscriber_id, last_seq FROM conversations
             WHERE id = ANY($1) ORDER BY id FOR UPDATE",
        )
        .bind(&conv_ids)
        .fetch_all(&mut *tx)
        .await?;
        let mut locked: HashMap<Uuid, Locked> = HashMap::with_capacity(rows.len());
        for r in &rows {
            locked.insert(
                r.try_get("id")?,
                Locked {
                    subscriber_id: SubscriberId(r.try_get("subscriber_id")?),
                    last_seq: r.try_get("last_seq")?,
                    members: Arc::new(Vec::new()),
                },
            );
        }

        // Members (key IS NULL) and earlier messages of the batch's keys.
        let (mut probe_convs, mut probe_authors, mut probe_keys) = (vec![], vec![], vec![]);
        for s in sends {
            if let Some(k) = &s.row.idempotency_key {
                probe_convs.push(s.conversation.0);
                probe_authors.push(s.row.author.0);
                probe_keys.push(k.clone());
            }
        }
        let rows = sqlx::query(
            "SELECT conversation_id, user_id, NULL::uuid AS message_id, NULL::text AS key
             FROM members WHERE conversation_id = ANY($1)
             UNION ALL
             SELECT m.conversation_id, m.author_id, m.id, m.idempotency_key
             FROM messages m
             JOIN unnest($2::uuid[], $3::uuid[], $4::text[]) AS k(c, a, key)
               ON m.conversation_id = k.c AND m.author_id = k.a AND m.idempotency_key = k.key",
        )
        .bind(&conv_ids)
        .bind(&probe_convs)
        .bind(&probe_authors)
        .bind(&probe_keys)
        .fetch_all(&mut *tx)
        .await?;
        let mut members: HashMap<Uuid, Vec<UserId>> = HashMap::new();
        let mut earlier: HashMap<(Uuid, Uuid, String), MessageId> = HashMap::new();
        for r in &rows {
            let conv: Uuid = r.try_get("conversation_id")?;
            let user: Uuid = r.try_get("user_id")?;
            match r.try_get::<Option<Uuid>, _>("message_id")? {
                None => members.entry(conv).or_default().push(UserId(user)),
                Some(id) => {
                    let key: Option<String> = r.try_get("key")?;
                    earlier.insert((conv, user, key.unwrap_or_default()), MessageId(id));
                }
            }
        }
        for (conv, m) in members {
            if let Some(l) = locked.get_mut(&conv) {
                l.members = Arc::new(m);
            }
        }

        // Judge each send in order; fresh ones take the next `seq`.
        let mut verdicts = Vec::with_capacity(sends.len());
        let mut keys_in_batch: HashMap<(Uuid, Uuid, &str), usize> = HashMap::new();
        let mut rows = Rows::default();
        let mut last_seqs: HashMap<Uuid, i64> = HashMap::new();
        for (i, s) in sends.iter().enumerate() {
            let conv = s.conversation.0;
            let m = &s.row;
            let Some(l) = locked.get_mut(&conv) else {
                verdicts.push(Verdict::Refused(StoreError::NotFound("conversation")));
                continue;
            };
            if !l.members.contains(&m.author) {
                verdicts.push(Verdict::Refused(if l.subscriber_id == s.subscriber {
                    StoreError::Denied("you are not a member of this conversation".into())
                } else {
                    StoreError::NotFound("conversation")
                }));
                continue;
            }
            if let Some(stranger) = m
                .recipients
                .iter()
                .flatten()
                .find(|u| !l.members.contains(u))
            {
                verdicts.push(Verdict::Refused(StoreError::Invalid(format!(
                    "recipients: {stranger} is not a member of the conversation"
                ))));
                continue;
            }
            if let Some(key) = &m.idempotency_key {
                if let Some(id) = earlier.get(&(conv, m.author.0, key.clone())) {
                    verdicts.push(Verdict::Earlier(*id));
                    continue;
                }
                if let Some(first) = keys_in_batch.get(&(conv, m.author.0, key.as_str())) {
                    verdicts.push(Verdict::SameBatch(*first));
                    continue;
                }
                keys_in_batch.insert((conv, m.author.0, key.as_str()), i);
            }
            l.last_seq += 1;
            last_seqs.insert(conv, l.last_seq);
            let message = Message {
                // Time-ordered ids: the primary key index grows at one end.
                id: MessageId(Uuid::now_v7()),
                conversation_id: s.conversation,
                seq: l.last_seq,
                author_id: m.author,
                text: m.text.clone(),
                data: m.data.clone(),
                actions: m.actions.clone(),
                recipients: m.recipients.clone(),
                attachments: Vec::new(),
                created_at: chrono::Utc::now(),
                edited_at: None,
                deleted: false,
            };
            rows.ids.push(message.id.0);
            rows.conversations.push(conv);
            rows.seqs.push(message.seq);
            rows.authors.push(m.author.0);
            rows.texts.push(m.text.clone());
            rows.data.push(m.data.as_ref().map(json_text).transpose()?);
            rows.actions.push(json_text(&m.actions)?);
            rows.recipients
                .push(m.recipients.as_deref().map(uuid_array));
            rows.keys.push(m.idempotency_key.clone());
            rows.created.push(message.created_at);
            rows.bodies.push(json_text(&Event::MessageCreated {
                conversation_id: s.conversation,
                seq: message.seq,
                message: message.clone(),
            })?);
            verdicts.push(Verdict::Fresh(Box::new(message)));
        }

        if !rows.ids.is_empty() {
            let (seq_convs, seq_values): (Vec<Uuid>, Vec<i64>) = last_seqs.into_iter().unzip();
            sqlx::query(
                "WITH c AS (
                     UPDATE conversations SET last_seq = x.last_seq, last_activity = now()
                     FROM unnest($1::uuid[], $2::bigint[]) AS x(id, last_seq)
                     WHERE conversations.id = x.id
                 ), e AS (
                     INSERT INTO events (conversation_id, seq, recipients, body)
                     SELECT conv, seq, recipients::uuid[], body::jsonb
                     FROM unnest($4::uuid[], $5::bigint[], $10::text[], $13::text[])
                          AS t(conv, seq, recipients, body)
                 )
                 INSERT INTO messages (id, conversation_id, seq, author_id, text, data, actions,
                                       recipients, idempotency_key, created_at)
                 SELECT id, conv, seq, author, text, data::jsonb, actions::jsonb,
                        recipients::uuid[], key, created
                 FROM unnest($3::uuid[], $4::uuid[], $5::bigint[], $6::uuid[], $7::text[],
                             $8::text[], $9::text[], $10::text[], $11::text[], $12::timestamptz[])
                      AS t(id, conv, seq, author, text, data, actions, recipients, key, created)",
            )
            .bind(&seq_convs)
            .bind(&seq_values)
            .bind(&rows.ids)
            .bind(&rows.conversations)
            .bind(&rows.seqs)
            .bind(&rows.authors)
            .bind(&rows.texts)
            .bind(&rows.data)
            .bind(&rows.actions)
            .bind(&rows.recipients)
            .bind(&rows.keys)
            .bind(&rows.created)
            .bind(&rows.bodies)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;

        // Retries of earlier commits are rare: read them after the commit.
        let earlier_ids: Vec<MessageId> = verdicts
            .iter()
            .filter_map(|v| match v {
                Verdict::Earlier(id) => Some(*id),
                _ => None,
            })
            .collect();
        let found: HashMap<MessageId, Message> = if earlier_ids.is_empty() {
            HashMap::new()
        } else {
            fetch_messages(&self.pool, &earlier_ids)
                .await?
                .into_iter()
                .map(|m| (m.id, m))
                .collect()
        };

        let members_of = |conv: ConversationId| -> Vec<UserId> {
            locked
                .get(&conv.0)
                .map(|l| l.members.as_ref().clone())
                .unwrap_or_default()
        };
        let mut out: Vec<Result<PostOutcome>> = Vec::with_capacity(sends.len());
        for (i, v) in verdicts.into_iter().enumerate() {
            let conv = sends[i].conversation;
            out.push(match v {
                Verdict::Refused(e) => Err(e),
                Verdict::Fresh(message) => {
                    let message = *message;
                    Ok(PostOutcome {
                        committed: Committed {
                            events: vec![StoredEvent {
                                conversation_id: conv,
                                seq: message.seq,
                                recipients: message.recipients.clone(),
                                event: Event::MessageCreated {
                                    conversation_id: conv,
                                    seq: message.seq,
                                    message: message.clone(),
                                },
                            }],
                            members: members_of(conv),
                        },
                        message,
                        fresh: true,
                    })
                }
                Verdict::Earlier(id) => match found.get(&id) {
                    Some(message) => Ok(PostOutcome {
                        message: message.clone(),
                        fresh: false,
                        committed: Committed {
                            events: Vec::new(),
                            members: members_of(conv),
                        },
                    }),
                    None => Err(StoreError::NotFound("message")),
                },
                Verdict::SameBatch(first) => match out.get(first) {
                    Some(Ok(o)) => Ok(PostOutcome {
                        message: o.message.clone(),
                        fresh: false,
                        committed: Committed {
                            events: Vec::new(),
                            members: o.committed.members.clone(),
                        },
                    }),
                    _ => Err(StoreError::Invalid(
                        "idempotency key: earlier send failed".into(),
                    )),
                },
            });
        }
        Ok(out)
    }
}
