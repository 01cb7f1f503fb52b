//! Full-text search of messages (migration 13): PostgreSQL's `russian`
//! configuration (Russian stems for Cyrillic words, English for Latin
//! ones) over text with ё folded to е; ranked, with a snippet, and only
//! what the reader may read.

use crate::messages::{msg_from_row, MSG_COLUMNS};
use crate::{Result, Store, StoreError};
use chrono::{DateTime, Utc};
use parley_core::protocol::{SearchHit, SearchPage};
use parley_core::{ConversationId, InfobaseId, UserId};
use sqlx::Row;
use uuid::Uuid;

/// Whose reading rights a search has.
#[derive(Clone, Copy, Debug)]
pub enum Reader {
    /// A user: conversations it is a member of, `recipients` applied.
    User(UserId),
    /// An infobase over REST: everything in conversations it owns; in the
    /// others, what its member users may read.
    Infobase(InfobaseId),
}

/// Validated search parameters.
#[derive(Clone, Debug)]
pub struct SearchParams {
    pub query: String,
    pub conversation: Option<ConversationId>,
    pub author: Option<UserId>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub cursor: Option<String>,
    pub limit: u32,
    /// The newest matches that are ranked (by id: UUIDv7, time-ordered).
    pub candidates: u32,
}

/// Marks around matched words in `ts_headline`'s output: characters that
/// validated message text never holds.
const START: char = '\u{1}';
const STOP: char = '\u{2}';

/// The snippet as plain text and the `[start, end)` character ranges of
/// the matched words.
fn split_marks(raw: &str) -> (String, Vec<[usize; 2]>) {
    let mut text = String::with_capacity(raw.len());
    let mut marks = Vec::new();
    let (mut n, mut open) = (0usize, None);
    for ch in raw.chars() {
        match ch {
            START => open = Some(n),
            STOP => {
                if let Some(s) = open.take() {
                    marks.push([s, n]);
                }
            }
            c => {
                text.push(c);
                n += 1;
            }
        }
    }
    (text, marks)
}

/// `rank_createdmicros_id`
fn parse_cursor(c: &str) -> Option<(f32, DateTime<Utc>, Uuid)> {
    let mut it = c.split('_');
    let rank: f32 = it.next()?.parse().ok()?;
    let micros: i64 = it.next()?.parse().ok()?;
    let id: Uuid = it.next()?.parse().ok()?;
    Some((rank, DateTime::from_timestamp_micros(micros)?, id))
}

impl Store {
    pub async fn search(&self, reader: Reader, p: &SearchParams) -> Result<SearchPage> {
        let cursor = match p.cursor.as_deref() {
            None => None,
            Some(c) => Some(parse_cursor(c).ok_or_else(|| {
                StoreError::Invalid("cursor: not a cursor of this search".into())
            })?),
        };
        let (who, visible) = match reader {
            Reader::User(u) => (
                u.0,
                "EXISTS (SELECT 1 FROM members mb WHERE mb.conversation_id = m.conversation_id AND mb.user_id = $2)
                 AND (m.recipients IS NULL OR m.author_id = $2 OR $2 = ANY(m.recipients))",
            ),
            Reader::Infobase(ib) => (
                ib.0,
                "(EXISTS (SELECT 1 FROM conversations c WHERE c.id = m.conversation_id AND c.infobase_id = $2)
                  OR (EXISTS (SELECT 1 FROM members mb JOIN users u ON u.id = mb.user_id
                              WHERE mb.conversation_id = m.conversation_id AND u.infobase_id = $2)
                      AND (m.recipients IS NULL OR EXISTS (
                           SELECT 1 FROM users ru WHERE ru.infobase_id = $2
                             AND (ru.id = m.author_id OR ru.id = ANY(m.recipients))))))",
            ),
        };
        let cols = MSG_COLUMNS
            .split(", ")
            .map(|c| format!("m.{}", c.trim()))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "WITH q AS (SELECT websearch_to_tsquery('russian', translate($1, 'ёЁ', 'еЕ')) AS q),
             candidates AS (
                 SELECT {cols}, m.search, q.q AS tsq
                 FROM q, messages m
                 WHERE m.search @@ q.q AND NOT m.deleted AND {visible}
                   AND ($3::uuid IS NULL OR m.conversation_id = $3)
                   AND ($4::uuid IS NULL OR m.author_id = $4)
                   AND ($5::timestamptz IS NULL OR m.created_at >= $5)
                   AND ($6::timestamptz IS NULL OR m.created_at < $6)
                 ORDER BY m.id DESC
                 LIMIT $12
             ), hits AS (
                 SELECT c.*, ts_rank_cd(c.search, c.tsq)::real AS rank FROM candidates c
             )
             SELECT {MSG_COLUMNS}, rank, ts_headline('russian', translate(text, 'ёЁ', 'еЕ'), tsq, $10) AS snippet
             FROM hits
             WHERE $7::real IS NULL OR (rank, created_at, id) < ($7, $8, $9)
             ORDER BY rank DESC, created_at DESC, id DESC
             LIMIT $11"
        );
        let options =
            format!("StartSel={START}, StopSel={STOP}, MaxWords=24, MinWords=8, MaxFragments=2");
        let rows = sqlx::query(&sql)
            .bind(&p.query)
            .bind(who)
            .bind(p.conversation.map(|c| c.0))
            .bind(p.author.map(|a| a.0))
            .bind(p.from)
            .bind(p.to)
            .bind(cursor.map(|c| c.0))
            .bind(cursor.map(|c| c.1))
            .bind(cursor.map(|c| c.2))
            .bind(options)
            .bind(i64::from(p.limit) + 1)
            .bind(i64::from(p.candidates))
            // Planned with this query's words each time (an unnamed
            // statement): a common word is best found by walking the newest
            // messages, a rare one through the index; one cached generic
            // plan would choose the same for both.
            .persistent(false)
            .fetch_all(self.reader())
            .await?;
        let more = rows.len() > p.limit as usize;
        let mut hits = Vec::with_capacity(rows.len().min(p.limit as usize));
        for r in rows.iter().take(p.limit as usize) {
            let raw: String = r.try_get("snippet")?;
            let (snippet, highlights) = split_marks(&raw);
            hits.push(SearchHit {
                message: msg_from_row(r)?,
                snippet,
                highlights,
                rank: r.try_get("rank")?,
            });
        }
        let mut messages: Vec<_> = hits.iter().map(|h| h.message.clone()).collect();
        crate::messages::fill_replies(self.reader(), &mut messages).await?;
        for (h, m) in hits.iter_mut().zip(messages) {
            h.message = m;
        }
        let next_cursor = match (more, hits.last()) {
            (true, Some(h)) => Some(format!(
                "{}_{}_{}",
                h.rank,
                h.message.created_at.timestamp_micros(),
                h.message.id
            )),
            _ => None,
        };
        Ok(SearchPage { hits, next_cursor })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_become_character_ranges() {
        let (t, m) = split_marks("один \u{1}счет\u{2} и \u{1}два\u{2}");
        assert_eq!(t, "один счет и два");
        assert_eq!(m, vec![[5, 9], [12, 15]]);
    }
}
