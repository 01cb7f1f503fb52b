//! Messages, the event log, history and read markers.

use crate::conversations::{add_members_tx, lock_conversation, members_tx, Committed};
use crate::db::Tx;
use crate::{Result, Store, StoreError};
use parley_core::protocol::{
    Action, Attachment, ConversationKind, Event, ForwardOrigin, ForwardRef, Message, MessageKind,
    MessagePage, ReplyPreview,
};
use parley_core::{ConversationId, FileId, MessageId, SubscriberId, UserId};
use sqlx::postgres::PgRow;
use sqlx::types::Json;
use sqlx::Row;
use uuid::Uuid;

/// An event committed to a conversation's log, ready to fan out.
#[derive(Clone, Debug)]
pub struct StoredEvent {
    pub conversation_id: ConversationId,
    pub seq: i64,
    /// None = every member may see it.
    pub recipients: Option<Vec<UserId>>,
    pub event: Event,
}

/// Appends an event with the conversation's next `seq`. The UPDATE takes the
/// conversation row's lock, so events of one conversation commit in `seq`
/// order; keep the transaction short after calling this.
/// Characters of the original a reply shows.
const PREVIEW_CHARS: i32 = 140;

/// The preview of the message `id` answers, checked: a message of this
/// conversation the author can read; one addressed to some members is
/// answered to them only.
async fn reply_preview(
    tx: &mut Tx,
    conversation: ConversationId,
    id: MessageId,
    m: &NewMessageRow,
) -> Result<ReplyPreview> {
    let row: Option<(Uuid, String, bool, Option<Vec<Uuid>>)> = sqlx::query_as(
        "SELECT author_id, left(text, $3), deleted, recipients FROM messages
         WHERE id = $1 AND conversation_id = $2",
    )
    .bind(id.0)
    .bind(conversation.0)
    .bind(PREVIEW_CHARS)
    .fetch_optional(&mut **tx)
    .await?;
    let bad =
        || StoreError::Invalid("reply_to: not a message of this conversation you can read".into());
    let (author, text, deleted, recipients) = row.ok_or_else(bad)?;
    if let Some(r) = recipients {
        let audience = |u: &Uuid| *u == author || r.contains(u);
        if !audience(&m.author.0) {
            return Err(bad());
        }
        let narrow = m
            .recipients
            .as_ref()
            .is_some_and(|mine| mine.iter().all(|u| audience(&u.0)));
        if !narrow {
            return Err(StoreError::Invalid(
                "recipients: a reply to a message addressed to some members goes to them only"
                    .into(),
            ));
        }
    }
    Ok(ReplyPreview {
        message_id: id,
        author_id: UserId(author),
        text: if deleted { String::new() } else { text },
        deleted,
    })
}

/// What a forward copies: the original's content and its origin.
struct Forwarded {
    text: String,
    data: Option<serde_json::Value>,
    attachments: Vec<Attachment>,
    origin: ForwardOrigin,
    /// The first message of the chain (its attachments' home).
    root: MessageId,
}

/// Reads the message to forward, checked: a message the author can read
/// (member of its conversation, addressed to everyone or to the author),
/// not deleted, not a system line.
async fn forwarded(tx: &mut Tx, f: ForwardRef, author: UserId) -> Result<Forwarded> {
    let row = sqlx::query(
        "SELECT m.author_id, m.text, m.data, m.attachments, m.created_at, m.forwarded,
                m.forwarded_from, c.kind AS conv_kind, c.title
         FROM messages m
         JOIN conversations c ON c.id = m.conversation_id
         JOIN members mb ON mb.conversation_id = m.conversation_id AND mb.user_id = $3
         WHERE m.id = $1 AND m.conversation_id = $2 AND NOT m.deleted AND m.kind = 'text'
           AND (m.recipients IS NULL OR m.author_id = $3 OR $3 = ANY(m.recipients))",
    )
    .bind(f.message_id.0)
    .bind(f.conversation_id.0)
    .bind(author.0)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or_else(|| StoreError::Invalid("forward: not a message you can read".into()))?;
    let data: Option<Json<serde_json::Value>> = row.try_get("data")?;
    let attachments: Json<Vec<Attachment>> = row.try_get("attachments")?;
    let earlier: Option<Json<ForwardOrigin>> = row.try_get("forwarded")?;
    let earlier_root: Option<Uuid> = row.try_get("forwarded_from")?;
    let (origin, root) = match (earlier, earlier_root) {
        // A forward of a forward names the first message.
        (Some(o), Some(root)) => (o.0, MessageId(root)),
        _ => {
            let kind: String = row.try_get("conv_kind")?;
            let title: String = row.try_get("title")?;
            (
                ForwardOrigin {
                    message_id: f.message_id,
                    conversation_id: f.conversation_id,
                    author_id: UserId(row.try_get("author_id")?),
                    created_at: row.try_get("created_at")?,
                    conversation_title: (kind != "dialog" && !title.is_empty()).then_some(title),
                },
                f.message_id,
            )
        }
    };
    Ok(Forwarded {
        text: row.try_get("text")?,
        data: data.map(|d| d.0),
        attachments: attachments.0,
        origin,
        root,
    })
}

/// Fills the reply previews of messages read from the table (a deleted
/// original shows as deleted).
pub(crate) async fn fill_replies<'e>(
    ex: impl sqlx::PgExecutor<'e>,
    messages: &mut [Message],
) -> Result<()> {
    let ids: Vec<Uuid> = messages
        .iter()
        .filter_map(|m| m.reply_to.as_ref().map(|r| r.message_id.0))
        .collect();
    if ids.is_empty() {
        return Ok(());
    }
    let rows: Vec<(Uuid, Uuid, String, bool)> = sqlx::query_as(
        "SELECT id, author_id, left(text, $2), deleted FROM messages WHERE id = ANY($1)",
    )
    .bind(&ids)
    .bind(PREVIEW_CHARS)
    .fetch_all(ex)
    .await?;
    let by: std::collections::HashMap<Uuid, (Uuid, String, bool)> = rows
        .into_iter()
        .map(|(i, a, t, d)| (i, (a, t, d)))
        .collect();
    for m in messages {
        if let Some(r) = m.reply_to.as_mut() {
            if let Some((a, t, d)) = by.get(&r.message_id.0) {
                r.author_id = UserId(*a);
                r.deleted = *d;
                r.text = if *d { String::new() } else { t.clone() };
            }
        }
    }
    Ok(())
}

pub(crate) async fn append_event(
    tx: &mut Tx,
    conversation: ConversationId,
    recipients: Option<Vec<UserId>>,
    make: impl FnOnce(i64) -> Event,
) -> Result<StoredEvent> {
    let seq: Option<i64> = sqlx::query_scalar(
        "UPDATE conversations SET last_seq = last_seq + 1, last_activity = now()
         WHERE id = $1 RETURNING last_seq",
    )
    .bind(conversation.0)
    .fetch_optional(&mut **tx)
    .await?;
    let seq = seq.ok_or(StoreError::NotFound("conversation"))?;
    let event = make(seq);
    let body = serde_json::to_value(&event).map_err(|e| StoreError::Invalid(e.to_string()))?;
    let rec: Option<Vec<Uuid>> = recipients.as_ref().map(|r| r.iter().map(|u| u.0).collect());
    sqlx::query(
        "INSERT INTO events (conversation_id, seq, recipients, body) VALUES ($1, $2, $3, $4)",
    )
    .bind(conversation.0)
    .bind(seq)
    .bind(rec)
    .bind(Json(&body))
    .execute(&mut **tx)
    .await?;
    Ok(StoredEvent {
        conversation_id: conversation,
        seq,
        recipients,
        event,
    })
}

/// Marks the author's uploaded files of this conversation as attached;
/// refuses (and so rolls back the message) when one is not.
async fn attach_files(
    tx: &mut Tx,
    conversation: ConversationId,
    author: UserId,
    _message: MessageId,
    files: &[FileId],
) -> Result<Vec<Attachment>> {
    if files.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = files.iter().map(|f| f.0).collect();
    let rows = sqlx::query(
        "UPDATE files SET state = 'attached'
         WHERE id = ANY($1) AND conversation_id = $2 AND owner_id = $3 AND state = 'uploaded'
         RETURNING id, name, size, content_type",
    )
    .bind(&ids)
    .bind(conversation.0)
    .bind(author.0)
    .fetch_all(&mut **tx)
    .await?;
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    if rows.len() != unique.len() {
        return Err(StoreError::Invalid(
            "attachments: each must be a file you uploaded to this conversation and not attached yet".into(),
        ));
    }
    let mut by_id: std::collections::HashMap<Uuid, Attachment> = std::collections::HashMap::new();
    for r in rows {
        let id: Uuid = r.try_get("id")?;
        by_id.insert(
            id,
            Attachment {
                id: FileId(id),
                name: r.try_get("name")?,
                size: r.try_get("size")?,
                content_type: r.try_get("content_type")?,
            },
        );
    }
    Ok(unique.iter().filter_map(|id| by_id.remove(id)).collect())
}

/// A validated message to store.
#[derive(Clone, Debug)]
pub struct NewMessageRow {
    pub author: UserId,
    pub text: String,
    pub data: Option<serde_json::Value>,
    pub actions: Vec<Action>,
    pub recipients: Option<Vec<UserId>>,
    pub attachments: Vec<FileId>,
    pub idempotency_key: Option<String>,
    pub reply_to: Option<MessageId>,
    pub mentions: Vec<UserId>,
    pub mention_all: bool,
    pub forward: Option<ForwardRef>,
}

impl NewMessageRow {
    /// The message this row makes, before its `seq` is known (0).
    pub(crate) fn message(
        &self,
        id: MessageId,
        conversation: ConversationId,
        attachments: Vec<Attachment>,
    ) -> Message {
        Message {
            data: self.data.clone(),
            actions: self.actions.clone(),
            recipients: self.recipients.clone(),
            attachments,
            mentions: self.mentions.clone(),
            mention_all: self.mention_all,
            ..Message::plain(
                id,
                conversation,
                0,
                self.author,
                self.text.clone(),
                chrono::Utc::now(),
            )
        }
    }
}

#[derive(Clone, Debug)]
pub struct PostOutcome {
    pub message: Message,
    /// False when the idempotency key matched an earlier message.
    pub fresh: bool,
    /// What the post committed (a joining author's `member.added`, then
    /// `message.created`; nothing for a retry) and the members at commit.
    pub committed: Committed,
}

/// What happens when the author of a post is not a member.
#[derive(Clone, Copy, Debug)]
pub enum JoinPolicy {
    /// Refused (a user posting over WebSocket). Conversations of other
    /// subscribers look missing; those of the user's own are `Denied`.
    MemberOnly { subscriber: SubscriberId },
    /// The author joins in the same transaction (an infobase posting as one
    /// of its users), except in a dialog.
    Join { max_members: usize },
}

/// One row of a conversation's event log, as sent on the wire.
#[derive(Clone, Debug)]
pub struct LoggedEvent {
    pub seq: i64,
    pub body: serde_json::Value,
}

/// A page of the event log.
#[derive(Clone, Debug, Default)]
pub struct EventPage {
    pub events: Vec<LoggedEvent>,
    /// The limit cut the page short: more events follow the last one.
    pub more: bool,
}

/// A member's read marker and what is left unread after it.
#[derive(Clone, Copy, Debug)]
pub struct ReadMarker {
    pub read_seq: i64,
    pub unread: i64,
}

pub(crate) const MSG_COLUMNS: &str =
    "id, conversation_id, seq, author_id, text, data, actions, recipients, \
                           attachments, created_at, edited_at, deleted, kind, reply_to, mentions, chosen, \
                           mention_all, forwarded";

pub(crate) fn msg_from_row(r: &PgRow) -> Result<Message> {
    let data: Option<Json<serde_json::Value>> = r.try_get("data")?;
    let actions: Json<Vec<Action>> = r.try_get("actions")?;
    let recipients: Option<Vec<Uuid>> = r.try_get("recipients")?;
    let attachments: Json<Vec<Attachment>> = r.try_get("attachments")?;
    let deleted: bool = r.try_get("deleted")?;
    Ok(Message {
        id: MessageId(r.try_get("id")?),
        conversation_id: ConversationId(r.try_get("conversation_id")?),
        seq: r.try_get("seq")?,
        author_id: UserId(r.try_get("author_id")?),
        // A deleted message keeps its place in the history, not its content.
        text: if deleted {
            String::new()
        } else {
            r.try_get("text")?
        },
        data: if deleted { None } else { data.map(|d| d.0) },
        actions: if deleted { Vec::new() } else { actions.0 },
        recipients: recipients.map(|v| v.into_iter().map(UserId).collect()),
        attachments: if deleted { Vec::new() } else { attachments.0 },
        created_at: r.try_get("created_at")?,
        edited_at: r.try_get("edited_at")?,
        deleted,
        kind: match r.try_get::<&str, _>("kind")? {
            "system" => MessageKind::System,
            _ => MessageKind::Text,
        },
        reactions: Vec::new(),
        // A placeholder until `fill_replies` reads the original.
        reply_to: r
            .try_get::<Option<Uuid>, _>("reply_to")?
            .map(|id| ReplyPreview {
                message_id: MessageId(id),
                author_id: UserId(Uuid::nil()),
                text: String::new(),
                deleted: true,
            }),
        mentions: r
            .try_get::<Option<Vec<Uuid>>, _>("mentions")?
            .unwrap_or_default()
            .into_iter()
            .map(UserId)
            .collect(),
        chosen: r
            .try_get::<Option<Json<parley_core::protocol::ActionChoice>>, _>("chosen")?
            .map(|c| c.0),
        mention_all: r.try_get("mention_all")?,
        forwarded: if deleted {
            None
        } else {
            r.try_get::<Option<Json<ForwardOrigin>>, _>("forwarded")?
                .map(|f| f.0)
        },
    })
}

/// Messages by id, in no particular order (missing ids are left out).
pub(crate) async fn fetch_messages(
    pool: &crate::db::Db,
    ids: &[MessageId],
) -> Result<Vec<Message>> {
    let sql = format!("SELECT {MSG_COLUMNS} FROM messages WHERE id = ANY($1)");
    let ids: Vec<Uuid> = ids.iter().map(|m| m.0).collect();
    let rows = sqlx::query(&sql).bind(&ids).fetch_all(pool).await?;
    rows.iter().map(msg_from_row).collect()
}

/// Visibility of a message row to user $2 (recipients restrict it).
/// What the readers `$2` (NULL = everything) may see: messages to everyone,
/// their own, and those addressed to one of them.
const VISIBLE_TO: &str =
    "($2::uuid[] IS NULL OR recipients IS NULL OR author_id = ANY($2) OR recipients && $2)";

impl Store {
    /// Stores a message with the next `seq`, or returns the earlier message
    /// with the same idempotency key. Membership is read once, under the
    /// conversation's lock: the author's right to post, the recipients and the
    /// fan-out targets all come from the members at commit.
    pub async fn post_message(
        &self,
        conversation: ConversationId,
        m: &NewMessageRow,
        join: JoinPolicy,
    ) -> Result<PostOutcome> {
        let mut tx = self.db.begin().await?;
        // The lock comes first: concurrent retries with one key then see each
        // other, and no membership change can slip between read and commit.
        let meta = lock_conversation(&mut tx, conversation).await?;
        let mut members = members_tx(&mut tx, conversation).await?;
        let mut events = Vec::new();
        if !members.contains(&m.author) {
            match join {
                JoinPolicy::MemberOnly { subscriber } if subscriber == meta.subscriber_id => {
                    return Err(StoreError::Denied(
                        "you are not a member of this conversation".into(),
                    ))
                }
                JoinPolicy::MemberOnly { .. } => return Err(StoreError::NotFound("conversation")),
                JoinPolicy::Join { .. } if meta.kind == ConversationKind::Dialog => {
                    return Err(StoreError::Denied(
                        "only the two users of a dialog post in it".into(),
                    ))
                }
                JoinPolicy::Join { max_members } if members.len() >= max_members => {
                    return Err(StoreError::Invalid(format!(
                        "members: more than the limit of {max_members} (limits.max_members)"
                    )))
                }
                JoinPolicy::Join { .. } => {
                    events.extend(add_members_tx(&mut tx, conversation, &[m.author], None).await?);
                    members.push(m.author);
                }
            }
        }
        if let Some(r) = &m.recipients {
            if let Some(stranger) = r.iter().find(|u| !members.contains(u)) {
                return Err(StoreError::Invalid(format!(
                    "recipients: {stranger} is not a member of the conversation"
                )));
            }
        }
        // Mentions name members who can read the message.
        let reads =
            |u: &UserId| *u == m.author || m.recipients.as_ref().is_none_or(|r| r.contains(u));
        if let Some(x) = m
            .mentions
            .iter()
            .find(|u| !members.contains(u) || !reads(u))
        {
            return Err(StoreError::Invalid(format!(
                "mentions: {x} is not a member who can read this message"
            )));
        }
        let reply = match m.reply_to {
            None => None,
            Some(id) => Some(reply_preview(&mut tx, conversation, id, m).await?),
        };
        if let Some(key) = &m.idempotency_key {
            let sql = format!(
                "SELECT {MSG_COLUMNS} FROM messages
                 WHERE conversation_id = $1 AND author_id = $2 AND idempotency_key = $3"
            );
            let row = sqlx::query(&sql)
                .bind(conversation.0)
                .bind(m.author.0)
                .bind(key)
                .fetch_optional(&mut *tx)
                .await?;
            if let Some(row) = row {
                tx.rollback().await?;
                return Ok(PostOutcome {
                    message: msg_from_row(&row)?,
                    fresh: false,
                    committed: Committed {
                        events: Vec::new(),
                        members,
                    },
                });
            }
        }
        // Time-ordered ids: the primary key index grows at one end.
        let id = MessageId(Uuid::now_v7());
        let attachments = attach_files(&mut tx, conversation, m.author, id, &m.attachments).await?;
        let mut message = m.message(id, conversation, attachments);
        message.reply_to = reply;
        let mut root = None;
        if let Some(f) = m.forward {
            let copy = forwarded(&mut tx, f, m.author).await?;
            message.text = copy.text;
            message.data = copy.data;
            message.attachments = copy.attachments;
            message.forwarded = Some(copy.origin);
            root = Some(copy.root.0);
        }
        if m.mention_all && meta.kind == ConversationKind::Dialog {
            return Err(StoreError::Invalid(
                "mention_all: only in groups and contextual conversations".into(),
            ));
        }
        // The event as sent on the wire, with its `seq` filled in by the
        // statement that assigns it.
        let body = serde_json::to_value(Event::MessageCreated {
            conversation_id: conversation,
            seq: 0,
            message: message.clone(),
        })
        .map_err(|e| StoreError::Invalid(e.to_string()))?;
        let recipients: Option<Vec<Uuid>> = m
            .recipients
            .as_ref()
            .map(|r| r.iter().map(|u| u.0).collect());
        // One round trip: the next `seq` (under the lock taken above), the
        // event row and the message row.
        let seq: i64 = sqlx::query_scalar(
            "WITH s AS (
                 UPDATE conversations SET last_seq = last_seq + 1, last_activity = now()
                 WHERE id = $1 RETURNING last_seq
             ), e AS (
                 INSERT INTO events (conversation_id, seq, recipients, body)
                 SELECT $1, s.last_seq, $3,
                        jsonb_set(jsonb_set($4::jsonb, '{seq}', to_jsonb(s.last_seq)),
                                  '{message,seq}', to_jsonb(s.last_seq))
                 FROM s
             )
             INSERT INTO messages (id, conversation_id, seq, author_id, text, data, actions,
                                   recipients, idempotency_key, created_at, attachments,
                                   reply_to, mentions, mention_all, forwarded, forwarded_from)
             SELECT $2, $1, s.last_seq, $5, $6, $7, $8, $3, $9, $10, $11, $12, $13, $14, $15, $16
             FROM s
             RETURNING seq",
        )
        .bind(conversation.0)
        .bind(id.0)
        .bind(&recipients)
        .bind(Json(&body))
        .bind(m.author.0)
        .bind(&message.text)
        .bind(message.data.as_ref().map(Json))
        .bind(Json(&m.actions))
        .bind(&m.idempotency_key)
        .bind(message.created_at)
        .bind(Json(&message.attachments))
        .bind(m.reply_to.map(|r| r.0))
        .bind((!m.mentions.is_empty()).then(|| m.mentions.iter().map(|u| u.0).collect::<Vec<_>>()))
        .bind(m.mention_all)
        .bind(message.forwarded.as_ref().map(Json))
        .bind(root)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(StoreError::NotFound("conversation"))?;
        message.seq = seq;
        let attachments = &message.attachments;
        let ev = StoredEvent {
            conversation_id: conversation,
            seq,
            recipients: m.recipients.clone(),
            event: Event::MessageCreated {
                conversation_id: conversation,
                seq,
                message: message.clone(),
            },
        };
        // The files point at the message only now that it exists (a
        // forward's stay with the original: readers reach them through it).
        if !attachments.is_empty() && m.forward.is_none() {
            sqlx::query("UPDATE files SET message_id = $1 WHERE id = ANY($2)")
                .bind(id.0)
                .bind(attachments.iter().map(|a| a.id.0).collect::<Vec<_>>())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        events.push(ev);
        Ok(PostOutcome {
            message,
            fresh: true,
            committed: Committed { events, members },
        })
    }

    /// Edits a message. `editor` None = the infobase (any message); Some =
    /// only the author.
    pub async fn edit_message(
        &self,
        conversation: ConversationId,
        id: MessageId,
        editor: Option<UserId>,
        text: Option<&str>,
        data: Option<&serde_json::Value>,
    ) -> Result<Committed> {
        let mut tx = self.db.begin().await?;
        let current = self
            .message_for_change(
                &mut tx,
                conversation,
                id,
                editor.as_ref().map(std::slice::from_ref),
            )
            .await?;
        let mut current = current;
        fill_replies(&mut *tx, std::slice::from_mut(&mut current)).await?;
        let recipients = current.recipients.clone();
        let mut updated = None;
        let ev = append_event(&mut tx, conversation, recipients, |seq| {
            let mut msg = current.clone();
            if let Some(t) = text {
                msg.text = t.to_owned();
            }
            if let Some(d) = data {
                msg.data = Some(d.clone());
            }
            msg.edited_at = Some(chrono::Utc::now());
            updated = Some(msg.clone());
            Event::MessageEdited {
                conversation_id: conversation,
                seq,
                message: msg,
            }
        })
        .await?;
        let msg = updated.ok_or(StoreError::Invalid("message not built".into()))?;
        sqlx::query("UPDATE messages SET text = $2, data = $3, edited_at = $4 WHERE id = $1")
            .bind(id.0)
            .bind(&msg.text)
            .bind(msg.data.as_ref().map(Json))
            .bind(msg.edited_at)
            .execute(&mut *tx)
            .await?;
        let members = members_tx(&mut tx, conversation).await?;
        tx.commit().await?;
        Ok(Committed {
            events: vec![ev],
            members,
        })
    }

    /// Deletes a message (keeps its `seq`, drops its content).
    /// Marks a message deleted; `by` = the authors allowed (None = any).
    pub async fn delete_message(
        &self,
        conversation: ConversationId,
        id: MessageId,
        by: Option<&[UserId]>,
    ) -> Result<Committed> {
        let mut tx = self.db.begin().await?;
        let current = self
            .message_for_change(&mut tx, conversation, id, by)
            .await?;
        let ev = append_event(&mut tx, conversation, current.recipients.clone(), |seq| {
            Event::MessageDeleted {
                conversation_id: conversation,
                seq,
                message_id: id,
            }
        })
        .await?;
        sqlx::query("UPDATE messages SET deleted = true, text = '', data = NULL, actions = '[]' WHERE id = $1")
            .bind(id.0)
            .execute(&mut *tx)
            .await?;
        let members = members_tx(&mut tx, conversation).await?;
        tx.commit().await?;
        Ok(Committed {
            events: vec![ev],
            members,
        })
    }

    async fn message_for_change(
        &self,
        tx: &mut Tx,
        conversation: ConversationId,
        id: MessageId,
        by: Option<&[UserId]>,
    ) -> Result<Message> {
        let sql = format!(
            "SELECT {MSG_COLUMNS} FROM messages WHERE id = $1 AND conversation_id = $2 FOR UPDATE"
        );
        let row = sqlx::query(&sql)
            .bind(id.0)
            .bind(conversation.0)
            .fetch_optional(&mut **tx)
            .await?
            .ok_or(StoreError::NotFound("message"))?;
        let msg = msg_from_row(&row)?;
        if let Some(authors) = by {
            if !authors.contains(&msg.author_id) {
                return Err(StoreError::Denied(
                    "only the author may change this message".into(),
                ));
            }
        }
        if msg.deleted {
            return Err(StoreError::NotFound("message"));
        }
        Ok(msg)
    }

    /// Messages of a conversation in ascending `seq`: the newest `limit`, or
    /// those before / after a `seq`, as the `readers` together see them
    /// (None = no recipients filter).
    pub async fn history(
        &self,
        conversation: ConversationId,
        readers: Option<&[UserId]>,
        before: Option<i64>,
        after: Option<i64>,
        limit: u32,
    ) -> Result<MessagePage> {
        let lim = i64::from(limit);
        let (cond, order) = match (before, after) {
            (_, Some(_)) => ("seq > $3", "ASC"),
            (Some(_), None) => ("seq < $3", "DESC"),
            (None, None) => ("$3::bigint IS NULL OR true", "DESC"),
        };
        let sql = format!(
            "SELECT {MSG_COLUMNS} FROM messages
             WHERE conversation_id = $1 AND {VISIBLE_TO} AND ({cond})
             ORDER BY seq {order} LIMIT $4"
        );
        let rows = sqlx::query(&sql)
            .bind(conversation.0)
            .bind(readers.map(|r| r.iter().map(|u| u.0).collect::<Vec<_>>()))
            .bind(after.or(before))
            .bind(lim + 1)
            .fetch_all(&self.db)
            .await?;
        let (mut messages, has_more) = crate::page::page(&rows, limit, msg_from_row)?;
        messages.sort_by_key(|m| m.seq);
        crate::reactions::fill(&self.db, &mut messages, readers).await?;
        fill_replies(&self.db, &mut messages).await?;
        Ok(MessagePage { messages, has_more })
    }

    /// Events after `after_seq` that `user` may see, in order, at most
    /// `limit`, and whether more are left.
    pub async fn events_after(
        &self,
        conversation: ConversationId,
        user: UserId,
        after_seq: i64,
        until_seq: Option<i64>,
        limit: u32,
    ) -> Result<EventPage> {
        let rows = sqlx::query(
            "SELECT seq, body FROM events
             WHERE conversation_id = $1 AND seq > $3 AND ($4::bigint IS NULL OR seq < $4)
               AND (recipients IS NULL OR $2 = ANY(recipients) OR (body->'message'->>'author_id')::uuid = $2)
             ORDER BY seq LIMIT $5",
        )
        .bind(conversation.0)
        .bind(user.0)
        .bind(after_seq)
        .bind(until_seq)
        .bind(i64::from(limit) + 1)
        .fetch_all(&self.db)
        .await?;
        let (events, more) = crate::page::page(&rows, limit, |r| {
            Ok(LoggedEvent {
                seq: r.try_get("seq")?,
                body: r.try_get::<Json<serde_json::Value>, _>("body")?.0,
            })
        })?;
        Ok(EventPage { events, more })
    }

    /// Moves the member's read marker forward (never back, never past the
    /// last event); returns the marker and the unread count, None when not a
    /// member.
    pub async fn mark_read(
        &self,
        conversation: ConversationId,
        user: UserId,
        seq: i64,
    ) -> Result<Option<ReadMarker>> {
        let row = sqlx::query(
            "UPDATE members m SET read_seq = GREATEST(m.read_seq, LEAST($3, c.last_seq))
             FROM conversations c
             WHERE m.conversation_id = $1 AND m.user_id = $2 AND c.id = m.conversation_id
             RETURNING m.read_seq",
        )
        .bind(conversation.0)
        .bind(user.0)
        .bind(seq)
        .fetch_optional(&self.db)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let read_seq: i64 = row.try_get(0)?;
        let unread: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM messages
             WHERE conversation_id = $1 AND seq > $3 AND NOT deleted AND author_id <> $2
               AND (recipients IS NULL OR $2 = ANY(recipients))
               AND NOT (kind = 'system' AND data ?| array['member', 'conversation'])",
        )
        .bind(conversation.0)
        .bind(user.0)
        .bind(read_seq)
        .fetch_one(&self.db)
        .await?;
        Ok(Some(ReadMarker { read_seq, unread }))
    }
}
