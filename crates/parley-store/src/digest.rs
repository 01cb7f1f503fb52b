//! E-mail digests: who is due one (offline long enough, with unread
//! messages older than the delay that were not mailed yet), what goes in
//! it, and marking it sent — one node at a time.

use crate::db::Tx;
use crate::{Result, Store};
use parley_core::{ConversationId, InfobaseId, UserId};
use sqlx::Row;
use std::time::Duration;

/// The advisory lock that makes one digest run at a time.
const DIGEST_LOCK: i64 = 0x7061_726c_6564_6731; // "parledg1"

/// One user's digest.
#[derive(Clone, Debug)]
pub struct Digest {
    pub user_id: UserId,
    pub email: String,
    pub name: String,
    pub conversations: Vec<DigestConversation>,
}

#[derive(Clone, Debug)]
pub struct DigestConversation {
    pub conversation_id: ConversationId,
    /// The title, or for a dialog the other member's name.
    pub title: String,
    pub unread: i64,
    /// The newest unread lines not mailed before: author name and text.
    pub lines: Vec<(String, String)>,
    /// Mailed up to here once sent.
    pub upto_seq: i64,
}

/// A digest run holding the lock: the digests due, and [`DigestRun::done`]
/// to mark what was sent.
pub struct DigestRun {
    tx: Tx,
    pub due: Vec<Digest>,
}

impl std::fmt::Debug for DigestRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DigestRun")
            .field("due", &self.due.len())
            .finish()
    }
}

/// A message the user may read, not its own, not deleted, not a timeline
/// line (`x` the message, `u` the user, `m` the membership).
const UNREAD_VISIBLE: &str = "x.author_id <> u.id AND NOT x.deleted AND x.kind = 'text' \
                              AND (x.recipients IS NULL OR u.id = ANY(x.recipients))";

impl Store {
    /// The user's last session closed now.
    pub async fn mark_seen(&self, user: UserId) -> Result<()> {
        sqlx::query("UPDATE users SET last_seen_at = now() WHERE id = $1")
            .bind(user.0)
            .execute(&self.db)
            .await?;
        Ok(())
    }

    pub async fn email_digest(&self, infobase: InfobaseId) -> Result<bool> {
        Ok(sqlx::query_scalar(
            "SELECT s.email_digest FROM subscribers s JOIN infobases i ON i.subscriber_id = s.id
             WHERE i.id = $1",
        )
        .bind(infobase.0)
        .fetch_one(&self.db)
        .await?)
    }

    pub async fn set_email_digest(&self, infobase: InfobaseId, on: bool) -> Result<()> {
        sqlx::query(
            "UPDATE subscribers s SET email_digest = $2 FROM infobases i
             WHERE i.id = $1 AND i.subscriber_id = s.id",
        )
        .bind(infobase.0)
        .bind(on)
        .execute(&self.db)
        .await?;
        Ok(())
    }

    /// Starts a digest run unless another node is in one (`None`): at most
    /// `max_users` users due a digest, with at most `max_conversations`
    /// conversations of `lines` lines each.
    pub async fn start_digest(
        &self,
        delay: Duration,
        max_users: i64,
        max_conversations: i64,
        lines: i64,
    ) -> Result<Option<DigestRun>> {
        let mut tx = self.db.begin().await?;
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
            .bind(DIGEST_LOCK)
            .fetch_one(&mut *tx)
            .await?;
        if !locked {
            return Ok(None);
        }
        let delay = delay.as_secs_f64();
        let users = sqlx::query(&format!(
            "SELECT u.id, u.email, u.name FROM users u
             JOIN infobases i ON i.id = u.infobase_id
             JOIN subscribers s ON s.id = i.subscriber_id
             WHERE s.email_digest AND u.email <> '' AND NOT u.locked AND NOT u.bot
               AND u.deleted_at IS NULL
               AND (u.last_seen_at IS NULL OR u.last_seen_at < now() - make_interval(secs => $1))
               AND EXISTS (
                   SELECT 1 FROM members m JOIN conversations c ON c.id = m.conversation_id
                   WHERE m.user_id = u.id AND c.last_seq > greatest(m.read_seq, m.digest_seq)
                     AND EXISTS (
                         SELECT 1 FROM messages x
                         WHERE x.conversation_id = m.conversation_id
                           AND x.seq > greatest(m.read_seq, m.digest_seq)
                           AND x.created_at < now() - make_interval(secs => $1)
                           AND {UNREAD_VISIBLE}))
             ORDER BY u.id LIMIT $2"
        ))
        .bind(delay)
        .bind(max_users)
        .fetch_all(&mut *tx)
        .await?;
        let mut due = Vec::new();
        for u in users {
            let user = UserId(u.try_get("id")?);
            let convs = sqlx::query(&format!(
                "SELECT c.id, c.last_seq,
                        CASE WHEN c.kind = 'dialog' THEN COALESCE((
                            SELECT o.name FROM members om JOIN users o ON o.id = om.user_id
                            WHERE om.conversation_id = c.id AND om.user_id <> u.id LIMIT 1), '')
                        ELSE c.title END AS title,
                        (SELECT count(*) FROM messages x
                         WHERE x.conversation_id = c.id AND x.seq > m.read_seq AND {UNREAD_VISIBLE}) AS unread,
                        greatest(m.read_seq, m.digest_seq) AS from_seq
                 FROM members m JOIN conversations c ON c.id = m.conversation_id
                 JOIN users u ON u.id = m.user_id
                 WHERE m.user_id = $1 AND c.last_seq > greatest(m.read_seq, m.digest_seq)
                 ORDER BY c.last_activity DESC LIMIT $2"
            ))
            .bind(user.0)
            .bind(max_conversations)
            .fetch_all(&mut *tx)
            .await?;
            let mut conversations = Vec::new();
            for c in convs {
                let id = ConversationId(c.try_get("id")?);
                let from: i64 = c.try_get("from_seq")?;
                let rows = sqlx::query(&format!(
                    "SELECT a.name, x.text FROM messages x JOIN users u ON u.id = $2
                     LEFT JOIN users a ON a.id = x.author_id
                     WHERE x.conversation_id = $1 AND x.seq > $3 AND {UNREAD_VISIBLE}
                     ORDER BY x.seq DESC LIMIT $4"
                ))
                .bind(id.0)
                .bind(user.0)
                .bind(from)
                .bind(lines)
                .fetch_all(&mut *tx)
                .await?;
                let mut lines: Vec<(String, String)> = rows
                    .iter()
                    .map(|r| {
                        Ok((
                            r.try_get::<Option<String>, _>("name")?.unwrap_or_default(),
                            r.try_get("text")?,
                        ))
                    })
                    .collect::<Result<_>>()?;
                lines.reverse();
                let unread: i64 = c.try_get("unread")?;
                if lines.is_empty() || unread == 0 {
                    continue;
                }
                conversations.push(DigestConversation {
                    conversation_id: id,
                    title: c.try_get("title")?,
                    unread,
                    lines,
                    upto_seq: c.try_get("last_seq")?,
                });
            }
            if conversations.is_empty() {
                continue;
            }
            due.push(Digest {
                user_id: user,
                email: u.try_get("email")?,
                name: u.try_get("name")?,
                conversations,
            });
        }
        Ok(Some(DigestRun { tx, due }))
    }
}

impl DigestRun {
    /// Marks a user's digest as mailed (up to what it showed).
    pub async fn mailed(&mut self, d: &Digest) -> Result<()> {
        for c in &d.conversations {
            sqlx::query(
                "UPDATE members SET digest_seq = greatest(digest_seq, $3)
                 WHERE conversation_id = $1 AND user_id = $2",
            )
            .bind(c.conversation_id.0)
            .bind(d.user_id.0)
            .bind(c.upto_seq)
            .execute(&mut *self.tx)
            .await?;
        }
        Ok(())
    }

    pub async fn finish(self) -> Result<()> {
        self.tx.commit().await?;
        Ok(())
    }
}
