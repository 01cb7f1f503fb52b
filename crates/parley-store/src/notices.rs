//! PostgreSQL's own announcement of committed events (migration 5's trigger
//! on `events`), heard over a dedicated LISTEN connection, and what the
//! recovery reads back for one conversation.

use crate::{Result, Store};
use parley_core::{ConversationId, UserId};
use sqlx::postgres::PgListener;
use sqlx::types::Json;
use sqlx::Row;

const CHANNEL: &str = "parley_events";

/// A conversation whose events up to `seq` are committed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommitNotice {
    pub conversation: ConversationId,
    pub seq: i64,
}

/// What a notice listener heard.
#[derive(Debug)]
pub enum Heard {
    Notices(Vec<CommitNotice>),
    /// The connection dropped and was re-established: notices sent in
    /// between are lost, so whoever listens must check everything.
    Reconnected,
}

/// A LISTEN connection on the commit notices; reconnects by itself.
pub struct NoticeListener {
    inner: PgListener,
}

/// One stored event as the live path would have carried it.
#[derive(Clone, Debug)]
pub struct LoggedEnvelope {
    pub seq: i64,
    pub recipients: Option<Vec<UserId>>,
    /// The event's JSON (`{"event": ..., ...}`).
    pub body: serde_json::Value,
}

impl Store {
    /// Opens the LISTEN connection (not from the pool: it is held for good).
    pub async fn listen_commits(&self) -> Result<NoticeListener> {
        let mut inner = PgListener::connect_with(&self.pool).await?;
        inner.listen(CHANNEL).await?;
        Ok(NoticeListener { inner })
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
        .fetch_all(&self.pool)
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

impl NoticeListener {
    /// Waits for the next notice. An error means the connection could not be
    /// re-established yet; call again after a pause.
    pub async fn next(&mut self) -> Result<Heard> {
        match self.inner.try_recv().await? {
            None => Ok(Heard::Reconnected),
            Some(n) => Ok(Heard::Notices(parse(n.payload()))),
        }
    }
}

/// "conversation:seq,conversation:seq" → notices; malformed parts are
/// skipped (the payload comes from our own trigger).
fn parse(payload: &str) -> Vec<CommitNotice> {
    payload
        .split(',')
        .filter_map(|part| {
            let (c, s) = part.split_once(':')?;
            Some(CommitNotice {
                conversation: ConversationId(c.parse().ok()?),
                seq: s.parse().ok()?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_parse() {
        let a = uuid::Uuid::new_v4();
        let b = uuid::Uuid::new_v4();
        let got = parse(&format!("{a}:7,{b}:12,junk,{a}:x"));
        assert_eq!(
            got,
            vec![
                CommitNotice {
                    conversation: ConversationId(a),
                    seq: 7
                },
                CommitNotice {
                    conversation: ConversationId(b),
                    seq: 12
                },
            ]
        );
    }
}
