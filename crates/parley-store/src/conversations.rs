//! Conversations and their members. Every change that belongs to a
//! conversation's history appends an event with the next `seq` under the
//! conversation row's lock, in the transaction that makes the change.

use crate::db::Tx;
use crate::messages::{append_event, StoredEvent};
use crate::{Result, Store, StoreError};
use chrono::{DateTime, Utc};
use parley_core::protocol::{
    Conversation, ConversationFilter, ConversationKind, ConversationPage, Event,
};
use parley_core::{ConversationId, FileId, InfobaseId, SubscriberId, UserId};
use sqlx::postgres::PgRow;
use sqlx::Row;
use uuid::Uuid;

/// Who looks: a user sees the conversations it is a member of; an infobase
/// those it created and those its users are members of, within its subscriber.
#[derive(Clone, Copy, Debug)]
pub enum Viewer {
    User(UserId),
    Infobase(InfobaseId, SubscriberId),
}

#[derive(Clone, Debug)]
pub struct NewConversation {
    pub subscriber_id: SubscriberId,
    pub kind: ConversationKind,
    pub title: String,
    pub hidden: bool,
    pub infobase_id: Option<InfobaseId>,
    pub key: Option<String>,
    pub object_ref: Option<String>,
    pub created_by: Option<UserId>,
    pub members: Vec<UserId>,
}

/// What a conversation is, without its members: enough to decide who may
/// do what with it.
#[derive(Clone, Copy, Debug)]
pub struct ConversationMeta {
    pub kind: ConversationKind,
    pub subscriber_id: SubscriberId,
    /// The owner: the infobase of a contextual conversation's object, or the
    /// infobase that created a group (directly or through one of its users).
    pub infobase_id: Option<InfobaseId>,
    /// The user who created it (None when an infobase did over REST).
    pub created_by: Option<UserId>,
}

pub(crate) fn meta_from_row(r: &PgRow) -> Result<ConversationMeta> {
    let kind: String = r.try_get("kind")?;
    Ok(ConversationMeta {
        kind: ConversationKind::parse(&kind).ok_or(StoreError::Invalid(kind))?,
        subscriber_id: SubscriberId(r.try_get("subscriber_id")?),
        infobase_id: r.try_get::<Option<Uuid>, _>("infobase_id")?.map(InfobaseId),
        created_by: r.try_get::<Option<Uuid>, _>("created_by")?.map(UserId),
    })
}

/// Events a change committed and the conversation's members at that commit:
/// the fan-out goes to exactly these users.
#[derive(Clone, Debug, Default)]
pub struct Committed {
    pub events: Vec<StoredEvent>,
    pub members: Vec<UserId>,
}

/// The members of a conversation, read inside a transaction that holds the
/// conversation's row lock (so they are the members at commit).
pub(crate) async fn members_tx(tx: &mut Tx, conversation: ConversationId) -> Result<Vec<UserId>> {
    let ids: Vec<Uuid> = sqlx::query_scalar(
        "SELECT user_id FROM members WHERE conversation_id = $1 ORDER BY joined_at, user_id",
    )
    .bind(conversation.0)
    .fetch_all(&mut **tx)
    .await?;
    Ok(ids.into_iter().map(UserId).collect())
}

/// Locks a conversation's row for the rest of the transaction: every change
/// of its members or history takes this lock first, so a reader of members
/// under it sees the members at commit.
pub(crate) async fn lock_conversation(
    tx: &mut Tx,
    conversation: ConversationId,
) -> Result<ConversationMeta> {
    let row = sqlx::query(
        "SELECT kind, subscriber_id, infobase_id, created_by FROM conversations
         WHERE id = $1 FOR UPDATE",
    )
    .bind(conversation.0)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or(StoreError::NotFound("conversation"))?;
    meta_from_row(&row)
}

/// The sequence number a conversation's log has reached.
#[derive(Clone, Copy, Debug)]
pub struct ConversationSeq {
    pub conversation_id: ConversationId,
    pub last_seq: i64,
}

/// A conversation's `seq`, for one of its members.
#[derive(Clone, Copy, Debug)]
pub struct MemberSeq {
    pub user_id: UserId,
    pub seq: ConversationSeq,
}

#[derive(Clone, Debug)]
pub enum CreateOutcome {
    /// Created now; the events announce the first members.
    Created(ConversationId, Committed),
    /// The dialog of the pair, or the conversation of the object, existed.
    Existing(ConversationId),
}

const CONV_COLUMNS: &str =
    "c.id, c.kind, c.title, c.description, c.picture, c.hidden, c.infobase_id, c.key, c.object_ref, \
     c.created_at, c.last_seq, \
     (SELECT count(*) FROM members mc WHERE mc.conversation_id = c.id) AS member_count";

fn conv_from_row(r: &PgRow, with_read: bool) -> Result<Conversation> {
    let kind: String = r.try_get("kind")?;
    Ok(Conversation {
        id: ConversationId(r.try_get("id")?),
        kind: ConversationKind::parse(&kind)
            .ok_or(StoreError::Invalid(format!("bad kind {kind}")))?,
        title: r.try_get("title")?,
        description: r.try_get("description")?,
        picture: r.try_get::<Option<Uuid>, _>("picture")?.map(FileId),
        hidden: r.try_get("hidden")?,
        key: r.try_get("key")?,
        infobase_id: r.try_get::<Option<Uuid>, _>("infobase_id")?.map(InfobaseId),
        object_ref: r.try_get("object_ref")?,
        created_at: r.try_get("created_at")?,
        last_seq: r.try_get("last_seq")?,
        member_count: r.try_get("member_count")?,
        members: None,
        read_seq: if with_read {
            Some(r.try_get("read_seq")?)
        } else {
            None
        },
        unread: if with_read {
            Some(r.try_get("unread")?)
        } else {
            None
        },
        unread_mentions: if with_read {
            Some(r.try_get("unread_mentions")?)
        } else {
            None
        },
    })
}

fn dialog_pair(a: UserId, b: UserId) -> String {
    let (x, y) = if a.0 <= b.0 { (a, b) } else { (b, a) };
    format!("{x}:{y}")
}

/// All `users` exist, belong to registered infobases of `subscriber`, and
/// are not locked.
/// Every user exists in the subscriber (else `NotFound`, as for another
/// subscriber's); with `members`, none is locked (a locked user cannot
/// become a member).
async fn check_users(
    tx: &mut Tx,
    subscriber: SubscriberId,
    users: &[UserId],
    members: bool,
) -> Result<()> {
    let mut ids: Vec<Uuid> = users.iter().map(|u| u.0).collect();
    ids.sort();
    ids.dedup();
    let row = sqlx::query(
        "SELECT count(*) AS found, count(*) FILTER (WHERE u.locked) AS locked
         FROM users u JOIN infobases i ON i.id = u.infobase_id
         WHERE u.id = ANY($1) AND i.subscriber_id = $2 AND i.unregistered_at IS NULL",
    )
    .bind(&ids)
    .bind(subscriber.0)
    .fetch_one(&mut **tx)
    .await?;
    let found: i64 = row.try_get("found")?;
    let locked: i64 = row.try_get("locked")?;
    if found != ids.len() as i64 {
        // Users of other subscribers look exactly like users that do not exist.
        return Err(StoreError::NotFound("user"));
    }
    if members && locked > 0 {
        return Err(StoreError::Denied(
            "a locked user cannot be made a member".into(),
        ));
    }
    Ok(())
}

/// What `conversation.update` changes (None keeps a field; a picture of
/// Some(None) removes it), and who must have uploaded a new picture.
#[derive(Clone, Copy, Debug, Default)]
pub struct ConversationChange<'a> {
    pub title: Option<&'a str>,
    pub description: Option<&'a str>,
    pub picture: Option<Option<FileId>>,
    pub uploader: Option<UserId>,
}

/// Who made a membership change or a rename shown in the timeline: a user,
/// or the infobase (None).
#[derive(Clone, Copy, Debug)]
pub struct ChangedBy(pub Option<UserId>);

/// A line of the timeline for a change: a `kind: system` message at the
/// change event's own `seq` (the event stays what clients apply; history
/// shows the line). Its author is the acting user, or the nil UUID when the
/// infobase acted; the words are the client's, from `data`.
pub(crate) async fn timeline_line(
    tx: &mut Tx,
    conversation: ConversationId,
    seq: i64,
    by: ChangedBy,
    data: serde_json::Value,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO messages (id, conversation_id, seq, author_id, text, data, kind)
         VALUES ($1, $2, $3, $4, '', $5, 'system')",
    )
    .bind(Uuid::now_v7())
    .bind(conversation.0)
    .bind(seq)
    .bind(by.0.map_or(Uuid::nil(), |u| u.0))
    .bind(sqlx::types::Json(data))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The `data` of a membership line: `change` is added, removed or left.
pub(crate) fn member_line(change: &str, user: UserId, by: ChangedBy) -> serde_json::Value {
    let mut member = serde_json::json!({ "change": change, "user_id": user });
    if let Some(b) = by.0 {
        member["by"] = serde_json::json!(b);
    }
    serde_json::json!({ "member": member })
}

/// Adds members that are not members yet; one `member.added` event each,
/// and a timeline line each when `line` says who added them (not for the
/// members a conversation is created with, nor an author joining by posting:
/// their message shows it).
pub(crate) async fn add_members_tx(
    tx: &mut Tx,
    conversation: ConversationId,
    users: &[UserId],
    line: Option<ChangedBy>,
) -> Result<Vec<StoredEvent>> {
    let mut events = Vec::new();
    for user in users {
        let added = sqlx::query(
            "INSERT INTO members (conversation_id, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(conversation.0)
        .bind(user.0)
        .execute(&mut **tx)
        .await?
        .rows_affected()
            == 1;
        if added {
            let user_id = *user;
            let ev = append_event(tx, conversation, None, |seq| Event::MemberAdded {
                conversation_id: conversation,
                seq,
                user_id,
                by: line.and_then(|b| b.0),
            })
            .await?;
            if let Some(by) = line {
                timeline_line(
                    tx,
                    conversation,
                    ev.seq,
                    by,
                    member_line("added", user_id, by),
                )
                .await?;
            }
            events.push(ev);
        }
    }
    Ok(events)
}

impl Store {
    /// Creates a conversation; dialogs (per pair) and contextual ones (per
    /// object) are get-or-create, safe under concurrent calls.
    pub async fn create_conversation(
        &self,
        c: &NewConversation,
        max_members: usize,
    ) -> Result<CreateOutcome> {
        let mut members = c.members.clone();
        members.sort();
        members.dedup();
        if members.len() > max_members {
            return Err(StoreError::Invalid(format!(
                "members: more than the limit of {max_members} (limits.max_members)"
            )));
        }
        let pair = match c.kind {
            ConversationKind::Dialog => match members.as_slice() {
                [a, b] => Some(dialog_pair(*a, *b)),
                _ => {
                    return Err(StoreError::Invalid(
                        "a dialog has exactly two different users".into(),
                    ))
                }
            },
            _ => None,
        };
        let mut tx = self.db.begin().await?;
        check_users(&mut tx, c.subscriber_id, &members, true).await?;
        let id = ConversationId::new_random();
        let inserted: Option<Uuid> = sqlx::query_scalar(
            "INSERT INTO conversations (id, subscriber_id, kind, title, hidden, infobase_id, key,
                                        object_ref, dialog_pair, created_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
             ON CONFLICT DO NOTHING RETURNING id",
        )
        .bind(id.0)
        .bind(c.subscriber_id.0)
        .bind(c.kind.as_str())
        .bind(&c.title)
        .bind(c.hidden)
        .bind(c.infobase_id.map(|i| i.0))
        .bind(&c.key)
        .bind(&c.object_ref)
        .bind(&pair)
        .bind(c.created_by.map(|u| u.0))
        .fetch_optional(&mut *tx)
        .await?;
        if inserted.is_none() {
            tx.rollback().await?;
            let existing: Option<Uuid> = sqlx::query_scalar(
                "SELECT id FROM conversations
                 WHERE ($1::text IS NOT NULL AND dialog_pair = $1)
                    OR ($2::text IS NOT NULL AND infobase_id = $3 AND object_ref = $2)",
            )
            .bind(&pair)
            .bind(&c.object_ref)
            .bind(c.infobase_id.map(|i| i.0))
            .fetch_optional(&self.db)
            .await?;
            return match existing {
                Some(e) => Ok(CreateOutcome::Existing(ConversationId(e))),
                None => Err(StoreError::Conflict(
                    "key: a conversation of this infobase already has this key".into(),
                )),
            };
        }
        let events = add_members_tx(&mut tx, id, &members, None).await?;
        tx.commit().await?;
        Ok(CreateOutcome::Created(id, Committed { events, members }))
    }

    /// One conversation as `viewer` sees it, with its members; None when it
    /// does not exist or is not visible.
    pub async fn conversation(
        &self,
        id: ConversationId,
        viewer: Viewer,
    ) -> Result<Option<Conversation>> {
        let row = match viewer {
            Viewer::User(user) => {
                let sql = format!(
                    "SELECT {CONV_COLUMNS}, m.read_seq, {UNREAD} AS unread, {UNREAD_MENTIONS} AS unread_mentions
                     FROM conversations c JOIN members m ON m.conversation_id = c.id AND m.user_id = $2
                     WHERE c.id = $1"
                );
                sqlx::query(&sql)
                    .bind(id.0)
                    .bind(user.0)
                    .fetch_optional(&self.db)
                    .await?
            }
            Viewer::Infobase(ib, sub) => {
                let sql = format!(
                    "SELECT {CONV_COLUMNS} FROM conversations c
                     WHERE c.id = $1 AND c.subscriber_id = $3 AND {IB_VISIBLE}"
                );
                sqlx::query(&sql)
                    .bind(id.0)
                    .bind(ib.0)
                    .bind(sub.0)
                    .fetch_optional(&self.db)
                    .await?
            }
        };
        let Some(row) = row else { return Ok(None) };
        let mut conv = conv_from_row(&row, matches!(viewer, Viewer::User(_)))?;
        conv.members = Some(self.member_ids(id).await?);
        Ok(Some(conv))
    }

    pub async fn member_ids(&self, id: ConversationId) -> Result<Vec<UserId>> {
        let ids: Vec<Uuid> = sqlx::query_scalar(
            "SELECT user_id FROM members WHERE conversation_id = $1 ORDER BY joined_at, user_id",
        )
        .bind(id.0)
        .fetch_all(&self.db)
        .await?;
        Ok(ids.into_iter().map(UserId).collect())
    }

    /// Changes title, description and/or picture (None keeps each; a
    /// picture of Some(None) is removed); the change is a
    /// `conversation.updated` event with the next `seq`. A new picture is an
    /// image uploaded to this conversation (by `uploader` when given) and
    /// not attached yet; it becomes attached to the conversation.
    pub async fn update_conversation(
        &self,
        id: ConversationId,
        change: &ConversationChange<'_>,
        by: Option<UserId>,
    ) -> Result<Committed> {
        let mut tx = self.db.begin().await?;
        lock_conversation(&mut tx, id).await?;
        if let Some(Some(file)) = change.picture {
            let taken = sqlx::query(
                "UPDATE files SET state = 'attached'
                 WHERE id = $1 AND conversation_id = $2 AND state = 'uploaded'
                   AND content_type LIKE 'image/%' AND ($3::uuid IS NULL OR owner_id = $3)",
            )
            .bind(file.0)
            .bind(id.0)
            .bind(change.uploader.map(|u| u.0))
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if taken != 1 {
                return Err(StoreError::Invalid(
                    "picture: an image uploaded to this conversation (by you) and not attached yet"
                        .into(),
                ));
            }
        }
        let (title, description, picture): (String, String, Option<Uuid>) = sqlx::query_as(
            "UPDATE conversations SET title = COALESCE($2, title),
                    description = COALESCE($3, description),
                    picture = CASE WHEN $4 THEN $5 ELSE picture END
             WHERE id = $1 RETURNING title, description, picture",
        )
        .bind(id.0)
        .bind(change.title)
        .bind(change.description)
        .bind(change.picture.is_some())
        .bind(change.picture.flatten().map(|f| f.0))
        .fetch_one(&mut *tx)
        .await?;
        let picture = picture.map(FileId);
        // What was asked to change, so the line can say it.
        let changed: Vec<&str> = [
            ("title", change.title.is_some()),
            ("description", change.description.is_some()),
            ("picture", change.picture.is_some()),
        ]
        .into_iter()
        .filter_map(|(k, on)| on.then_some(k))
        .collect();
        let line = serde_json::json!({
            "conversation": { "title": &title, "description": &description, "picture": picture,
                              "changed": changed, "by": by }
        });
        let ev = append_event(&mut tx, id, None, |seq| Event::ConversationUpdated {
            conversation_id: id,
            seq,
            title,
            description,
            picture,
            by,
        })
        .await?;
        timeline_line(&mut tx, id, ev.seq, ChangedBy(by), line).await?;
        let members = members_tx(&mut tx, id).await?;
        tx.commit().await?;
        Ok(Committed {
            events: vec![ev],
            members,
        })
    }

    /// The members of a conversation that are users of `infobase`.
    pub async fn members_of_infobase(
        &self,
        id: ConversationId,
        infobase: InfobaseId,
    ) -> Result<Vec<UserId>> {
        let ids: Vec<Uuid> = sqlx::query_scalar(
            "SELECT m.user_id FROM members m JOIN users u ON u.id = m.user_id
             WHERE m.conversation_id = $1 AND u.infobase_id = $2 ORDER BY m.user_id",
        )
        .bind(id.0)
        .bind(infobase.0)
        .fetch_all(&self.db)
        .await?;
        Ok(ids.into_iter().map(UserId).collect())
    }

    /// Which of `ids` are users of `infobase`.
    pub async fn users_of_infobase(
        &self,
        infobase: InfobaseId,
        ids: &[UserId],
    ) -> Result<Vec<UserId>> {
        let ids: Vec<Uuid> = sqlx::query_scalar(
            "SELECT id FROM users WHERE id = ANY($1) AND infobase_id = $2 ORDER BY id",
        )
        .bind(ids.iter().map(|u| u.0).collect::<Vec<_>>())
        .bind(infobase.0)
        .fetch_all(&self.db)
        .await?;
        Ok(ids.into_iter().map(UserId).collect())
    }

    pub async fn is_member(&self, id: ConversationId, user: UserId) -> Result<bool> {
        let n: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM members WHERE conversation_id = $1 AND user_id = $2")
                .bind(id.0)
                .bind(user.0)
                .fetch_optional(&self.db)
                .await?;
        Ok(n.is_some())
    }

    /// Kind, subscriber, owning infobase and creator of a conversation.
    pub async fn conversation_meta(&self, id: ConversationId) -> Result<Option<ConversationMeta>> {
        let row = sqlx::query(
            "SELECT kind, subscriber_id, infobase_id, created_by FROM conversations WHERE id = $1",
        )
        .bind(id.0)
        .fetch_optional(&self.db)
        .await?;
        row.as_ref().map(meta_from_row).transpose()
    }

    /// Conversations visible to `viewer`, most recently active first.
    pub async fn list_conversations(
        &self,
        viewer: Viewer,
        f: &ConversationFilter,
    ) -> Result<ConversationPage> {
        let limit = i64::from(f.limit.unwrap_or(50));
        let cursor = match f.cursor.as_deref() {
            None => None,
            Some(c) => Some(parse_cursor(c).ok_or(StoreError::Invalid(
                "cursor: not a cursor of this list".into(),
            ))?),
        };
        let filters = "($3::text IS NULL OR c.kind = $3)
             AND ($4::bool IS NULL OR (c.kind = 'context') = $4)
             AND ($5::bool IS NULL OR c.hidden = NOT $5)
             AND ($6::uuid IS NULL OR EXISTS (SELECT 1 FROM members fm WHERE fm.conversation_id = c.id AND fm.user_id = $6))
             AND ($7::text IS NULL OR c.object_ref = $7)
             AND ($8::text IS NULL OR c.key = $8)
             AND ($9::timestamptz IS NULL OR (c.last_activity, c.id) < ($9, $10))";
        let (sql, a, b) = match viewer {
            Viewer::User(user) => (
                format!(
                    "SELECT {CONV_COLUMNS}, c.last_activity, m.read_seq, {UNREAD} AS unread, {UNREAD_MENTIONS} AS unread_mentions
                     FROM conversations c JOIN members m ON m.conversation_id = c.id AND m.user_id = $1
                     WHERE $2::uuid IS NULL AND {filters}
                     ORDER BY c.last_activity DESC, c.id DESC LIMIT $11"
                ),
                user.0,
                None,
            ),
            Viewer::Infobase(ib, sub) => (
                format!(
                    "SELECT {CONV_COLUMNS}, c.last_activity FROM conversations c
                     WHERE c.subscriber_id = $2 AND {IB_VISIBLE_1} AND {filters}
                     ORDER BY c.last_activity DESC, c.id DESC LIMIT $11"
                ),
                ib.0,
                Some(sub.0),
            ),
        };
        let rows = sqlx::query(&sql)
            .bind(a)
            .bind(b)
            .bind(f.kind.map(|k| k.as_str()))
            .bind(f.contextual)
            .bind(f.displayed)
            .bind(f.member.map(|m| m.0))
            .bind(&f.object_ref)
            .bind(&f.key)
            .bind(cursor.map(|c| c.0))
            .bind(cursor.map(|c| c.1))
            .bind(limit + 1)
            .fetch_all(&self.db)
            .await?;
        let with_read = matches!(viewer, Viewer::User(_));
        let mut conversations = Vec::with_capacity(rows.len());
        let mut last: Option<(DateTime<Utc>, Uuid)> = None;
        for r in rows.iter().take(limit as usize) {
            conversations.push(conv_from_row(r, with_read)?);
            last = Some((r.try_get("last_activity")?, r.try_get("id")?));
        }
        let next_cursor = if rows.len() as i64 > limit {
            last.map(|(t, id)| format!("{}_{id}", t.timestamp_micros()))
        } else {
            None
        };
        Ok(ConversationPage {
            conversations,
            next_cursor,
        })
    }

    /// Adds members (same subscriber only); returns the events of those added.
    pub async fn add_members(
        &self,
        id: ConversationId,
        subscriber: SubscriberId,
        users: &[UserId],
        max_members: usize,
        by: ChangedBy,
    ) -> Result<Committed> {
        let mut tx = self.db.begin().await?;
        // Lock the conversation first so the member count check holds.
        lock_conversation(&mut tx, id).await?;
        check_users(&mut tx, subscriber, users, true).await?;
        let mut new: Vec<UserId> = users.to_vec();
        new.sort();
        new.dedup();
        let current: i64 =
            sqlx::query_scalar("SELECT count(*) FROM members WHERE conversation_id = $1")
                .bind(id.0)
                .fetch_one(&mut *tx)
                .await?;
        let already: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM members WHERE conversation_id = $1 AND user_id = ANY($2)",
        )
        .bind(id.0)
        .bind(new.iter().map(|u| u.0).collect::<Vec<_>>())
        .fetch_one(&mut *tx)
        .await?;
        if (current + new.len() as i64 - already) as usize > max_members {
            return Err(StoreError::Invalid(format!(
                "members: more than the limit of {max_members} (limits.max_members)"
            )));
        }
        let events = add_members_tx(&mut tx, id, &new, Some(by)).await?;
        let members = members_tx(&mut tx, id).await?;
        tx.commit().await?;
        Ok(Committed { events, members })
    }

    /// Removes a member; None when it was not a member.
    pub async fn remove_member(
        &self,
        id: ConversationId,
        user: UserId,
        by: ChangedBy,
    ) -> Result<Option<Committed>> {
        let mut tx = self.db.begin().await?;
        lock_conversation(&mut tx, id).await?;
        let removed =
            sqlx::query("DELETE FROM members WHERE conversation_id = $1 AND user_id = $2")
                .bind(id.0)
                .bind(user.0)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                == 1;
        if !removed {
            return Ok(None);
        }
        let ev = append_event(&mut tx, id, None, |seq| Event::MemberRemoved {
            conversation_id: id,
            seq,
            user_id: user,
            by: by.0,
        })
        .await?;
        let change = if by.0 == Some(user) {
            "left"
        } else {
            "removed"
        };
        timeline_line(&mut tx, id, ev.seq, by, member_line(change, user, by)).await?;
        let mut members = members_tx(&mut tx, id).await?;
        tx.commit().await?;
        // The one removed learns of it too.
        members.push(user);
        Ok(Some(Committed {
            events: vec![ev],
            members,
        }))
    }

    /// The `last_seq` of every conversation the user is a member of.
    pub async fn member_seqs(&self, user: UserId) -> Result<Vec<ConversationSeq>> {
        Ok(self
            .members_seqs(&[user])
            .await?
            .into_iter()
            .map(|m| m.seq)
            .collect())
    }

    /// The `last_seq` of every conversation of each of `users`, in one query.
    pub async fn members_seqs(&self, users: &[UserId]) -> Result<Vec<MemberSeq>> {
        let ids: Vec<Uuid> = users.iter().map(|u| u.0).collect();
        let rows: Vec<(Uuid, Uuid, i64)> = sqlx::query_as(
            "SELECT m.user_id, c.id, c.last_seq FROM members m
             JOIN conversations c ON c.id = m.conversation_id
             WHERE m.user_id = ANY($1)",
        )
        .bind(&ids)
        .fetch_all(&self.db)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(u, c, s)| MemberSeq {
                user_id: UserId(u),
                seq: ConversationSeq {
                    conversation_id: ConversationId(c),
                    last_seq: s,
                },
            })
            .collect())
    }

    /// The contextual conversation of an object, if it exists.
    pub async fn context_id(
        &self,
        infobase: InfobaseId,
        object_ref: &str,
    ) -> Result<Option<ConversationId>> {
        let id: Option<Uuid> = sqlx::query_scalar(
            "SELECT id FROM conversations WHERE infobase_id = $1 AND object_ref = $2",
        )
        .bind(infobase.0)
        .bind(object_ref)
        .fetch_optional(&self.db)
        .await?;
        Ok(id.map(ConversationId))
    }

    /// Users who share at least one conversation with `user` (presence goes
    /// to them).
    pub async fn contacts(&self, user: UserId) -> Result<Vec<UserId>> {
        let ids: Vec<Uuid> = sqlx::query_scalar(
            "SELECT DISTINCT m2.user_id FROM members m1
             JOIN members m2 ON m2.conversation_id = m1.conversation_id
             WHERE m1.user_id = $1 AND m2.user_id <> $1",
        )
        .bind(user.0)
        .fetch_all(&self.db)
        .await?;
        Ok(ids.into_iter().map(UserId).collect())
    }

    /// Whether every user in `others` shares the subscriber of `user`.
    pub async fn same_subscriber(
        &self,
        subscriber: SubscriberId,
        users: &[UserId],
    ) -> Result<bool> {
        let mut tx = self.db.begin().await?;
        let ok = check_users(&mut tx, subscriber, users, false).await.is_ok();
        tx.rollback().await?;
        Ok(ok)
    }
}

/// Unread messages of member row `m` in conversation `c`.
const UNREAD: &str = "(SELECT count(*) FROM messages um
      WHERE um.conversation_id = c.id AND um.seq > m.read_seq AND NOT um.deleted
        AND um.author_id <> m.user_id
        AND (um.recipients IS NULL OR m.user_id = ANY(um.recipients))
        -- Lines of the timeline (membership, renames) are not news to read.
        AND NOT (um.kind = 'system' AND um.data ?| array['member', 'conversation']))";

/// Unread messages naming the member ($user of `m`) in their mentions.
const UNREAD_MENTIONS: &str = "(SELECT count(*) FROM messages um
      WHERE um.conversation_id = c.id AND um.seq > m.read_seq AND NOT um.deleted
        AND um.author_id <> m.user_id AND (m.user_id = ANY(um.mentions) OR um.mention_all)
        AND (um.recipients IS NULL OR m.user_id = ANY(um.recipients)))";

/// An infobase ($2) sees what it created and what its users are members of.
const IB_VISIBLE: &str =
    "(c.infobase_id = $2 OR EXISTS (SELECT 1 FROM members vm JOIN users vu ON vu.id = vm.user_id
      WHERE vm.conversation_id = c.id AND vu.infobase_id = $2))";
/// The same with the infobase as $1.
const IB_VISIBLE_1: &str =
    "(c.infobase_id = $1 OR EXISTS (SELECT 1 FROM members vm JOIN users vu ON vu.id = vm.user_id
      WHERE vm.conversation_id = c.id AND vu.infobase_id = $1))";

fn parse_cursor(c: &str) -> Option<(DateTime<Utc>, Uuid)> {
    let (t, id) = c.split_once('_')?;
    let micros: i64 = t.parse().ok()?;
    Some((
        DateTime::from_timestamp_micros(micros)?,
        Uuid::parse_str(id).ok()?,
    ))
}
