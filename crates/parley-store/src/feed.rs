//! The infobase event feed: the pump that fills it (one node at a time),
//! the page a long-poll reads, retention, and what an infobase asked it to
//! carry. Why a single writer: see migrations/…_event_feed.sql.

use crate::{Result, Store};
use chrono::{DateTime, Utc};
use parley_core::feed::FeedEvent;
use parley_core::{ConversationId, InfobaseId};
use sqlx::types::Json;
use sqlx::Row;
use std::time::Duration;

/// The advisory lock that makes one pump at a time (any node may hold it).
const PUMP_LOCK: i64 = 0x7061_726c_6566_6431; // "parlefd1"

/// What one pump moved.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pumped {
    /// Conversation events copied into feeds.
    pub events: u64,
    /// Inbox rows (clicks, missed calls) moved into feeds.
    pub inbox: u64,
    /// Webhook deliveries queued for the new feed events.
    pub deliveries: u64,
}

/// How far one pump reaches.
#[derive(Clone, Copy, Debug)]
pub struct PumpLimits {
    /// Conversations changed this long before the previous pump are looked
    /// at again (their `last_activity` trails their newest event by up to a
    /// second, and a transaction may commit a little after it set it).
    pub lookback: Duration,
    /// Every watched conversation is looked at after this long, whatever
    /// its `last_activity` says (a transaction longer than `lookback`).
    pub full_sweep: Duration,
    /// Most events copied per conversation and infobase in one pump, and
    /// most inbox rows moved.
    pub max_rows: i64,
}

/// A page of an infobase's feed.
#[derive(Clone, Debug)]
pub struct FeedRows {
    pub events: Vec<FeedEvent>,
    /// The highest id retention removed from this infobase's feed.
    pub purged_through: i64,
}

impl Store {
    /// Copies what is new into the feeds, if no other node is doing it
    /// right now (`None` then). Everything in one transaction: the copied
    /// rows, the watches' progress and the queued webhook deliveries commit
    /// together, so a crash repeats nothing and loses nothing.
    ///
    /// With no watch and no inbox row anywhere (no infobase uses a feed or
    /// webhooks) it is one cheap read: the pump runs on every node every
    /// `feed.pump_ms`, and an idle server should not keep PostgreSQL busy.
    /// A watch or inbox row that commits after the read is seen next time.
    pub async fn pump_feed(&self, lim: PumpLimits) -> Result<Option<Pumped>> {
        let work: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM feed_watches) OR EXISTS (SELECT 1 FROM feed_inbox)",
        )
        .fetch_one(&self.db)
        .await?;
        if !work {
            return Ok(Some(Pumped::default()));
        }
        let mut tx = self.db.begin().await?;
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
            .bind(PUMP_LOCK)
            .fetch_one(&mut *tx)
            .await?;
        if !locked {
            tx.rollback().await?;
            return Ok(None);
        }
        let state = sqlx::query(
            "SELECT last_run - make_interval(secs => $1) AS since,
                    last_sweep < now() - make_interval(secs => $2) AS sweep,
                    (SELECT COALESCE(max(id), 0) FROM feed_events) AS before
             FROM feed_pump",
        )
        .bind(lim.lookback.as_secs_f64())
        .bind(lim.full_sweep.as_secs_f64())
        .fetch_one(&mut *tx)
        .await?;
        let sweep: bool = state.try_get("sweep")?;
        let since: Option<DateTime<Utc>> = if sweep {
            None
        } else {
            Some(state.try_get("since")?)
        };
        let before: i64 = state.try_get("before")?;

        // Conversation events: per watch, from where it stopped up to the
        // conversation's last seq (or the watch's end), at most max_rows.
        // An event addressed to some members only goes to an infobase one
        // of whose users is among them.
        let events = sqlx::query(
            "WITH cand AS (
                 SELECT w.conversation_id, w.infobase_id, w.pumped_seq,
                        least(c.last_seq, COALESCE(w.until_seq, c.last_seq), w.pumped_seq + $2) AS upto
                 FROM conversations c JOIN feed_watches w ON w.conversation_id = c.id
                 WHERE ($1::timestamptz IS NULL OR c.last_activity > $1)
                   AND c.last_seq > w.pumped_seq
                   AND (w.until_seq IS NULL OR w.pumped_seq < w.until_seq)
             ), ins AS (
                 INSERT INTO feed_events (infobase_id, kind, conversation_id, seq, body)
                 SELECT w.infobase_id, e.body->>'event', e.conversation_id, e.seq, e.body
                 FROM cand w JOIN events e
                   ON e.conversation_id = w.conversation_id AND e.seq > w.pumped_seq AND e.seq <= w.upto
                 WHERE e.recipients IS NULL OR EXISTS (
                     SELECT 1 FROM users u WHERE u.id = ANY(e.recipients) AND u.infobase_id = w.infobase_id)
                 ORDER BY e.created_at, e.conversation_id, e.seq
                 RETURNING 1
             ), moved AS (
                 UPDATE feed_watches fw SET pumped_seq = cand.upto FROM cand
                 WHERE fw.conversation_id = cand.conversation_id AND fw.infobase_id = cand.infobase_id
                 RETURNING 1
             )
             SELECT (SELECT count(*) FROM ins) AS events, (SELECT count(*) FROM moved) AS watches",
        )
        .bind(since)
        .bind(lim.max_rows)
        .fetch_one(&mut *tx)
        .await?
        .try_get::<i64, _>("events")?;
        sqlx::query(
            "DELETE FROM feed_watches
             WHERE until_seq IS NOT NULL AND pumped_seq >= until_seq AND bots = 0 AND NOT contextual",
        )
        .execute(&mut *tx)
        .await?;

        let inbox = sqlx::query(
            "WITH moved AS (
                 DELETE FROM feed_inbox WHERE id IN (SELECT id FROM feed_inbox ORDER BY id LIMIT $1)
                 RETURNING id, infobase_id, kind, conversation_id, body
             )
             INSERT INTO feed_events (infobase_id, kind, conversation_id, body)
             SELECT infobase_id, kind, conversation_id, body FROM moved ORDER BY id",
        )
        .bind(lim.max_rows)
        .execute(&mut *tx)
        .await?
        .rows_affected();

        // Every new feed event for every enabled endpoint that wants it. The
        // lock makes this pump the only writer, so the new rows are exactly
        // those above `before`.
        let deliveries = sqlx::query(
            "INSERT INTO webhook_deliveries (endpoint_id, feed_id)
             SELECT ep.id, f.id FROM feed_events f
             JOIN webhook_endpoints ep ON ep.infobase_id = f.infobase_id AND ep.enabled
                  AND (cardinality(ep.kinds) = 0 OR f.kind = ANY(ep.kinds))
             WHERE f.id > $1 ORDER BY f.id, ep.id",
        )
        .bind(before)
        .execute(&mut *tx)
        .await?
        .rows_affected();

        sqlx::query(
            "UPDATE feed_pump SET last_run = now(),
                    last_sweep = CASE WHEN $1 THEN now() ELSE last_sweep END",
        )
        .bind(sweep)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(Pumped {
            events: events.max(0) as u64,
            inbox,
            deliveries,
        }))
    }

    /// The newest feed id of all infobases (0 when empty): what long-polls
    /// wait to see move.
    pub async fn feed_head(&self) -> Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT COALESCE(max(id), 0) FROM feed_events")
                .fetch_one(&self.db)
                .await?,
        )
    }

    /// The infobase's feed after `after`, oldest first.
    pub async fn feed_page(
        &self,
        infobase: InfobaseId,
        after: i64,
        limit: i64,
    ) -> Result<FeedRows> {
        let rows = sqlx::query(
            "SELECT id, kind, conversation_id, seq, body, created_at FROM feed_events
             WHERE infobase_id = $1 AND id > $2 ORDER BY id LIMIT $3",
        )
        .bind(infobase.0)
        .bind(after)
        .bind(limit)
        .fetch_all(&self.db)
        .await?;
        let purged_through: Option<i64> =
            sqlx::query_scalar("SELECT purged_through FROM feed_settings WHERE infobase_id = $1")
                .bind(infobase.0)
                .fetch_optional(&self.db)
                .await?;
        let events = rows
            .iter()
            .map(|r| {
                Ok(FeedEvent {
                    id: r.try_get("id")?,
                    kind: r.try_get("kind")?,
                    conversation_id: r
                        .try_get::<Option<uuid::Uuid>, _>("conversation_id")?
                        .map(ConversationId),
                    seq: r.try_get("seq")?,
                    created_at: r.try_get("created_at")?,
                    event: r.try_get::<Json<serde_json::Value>, _>("body")?.0,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(FeedRows {
            events,
            purged_through: purged_through.unwrap_or(0),
        })
    }

    /// Removes feed events older than `keep` and remembers, per infobase,
    /// the highest id removed (a cursor below it has lost events).
    pub async fn purge_feed(&self, keep: Duration) -> Result<u64> {
        let rows = sqlx::query(
            "WITH gone AS (
                 DELETE FROM feed_events WHERE created_at < now() - make_interval(secs => $1)
                 RETURNING infobase_id, id
             ), per AS (
                 SELECT infobase_id, max(id) AS upto, count(*) AS n FROM gone GROUP BY infobase_id
             ), noted AS (
                 INSERT INTO feed_settings (infobase_id, purged_through)
                 SELECT infobase_id, upto FROM per
                 ON CONFLICT (infobase_id) DO UPDATE
                 SET purged_through = greatest(feed_settings.purged_through, EXCLUDED.purged_through)
             )
             SELECT COALESCE(sum(n), 0)::bigint AS n FROM per",
        )
        .bind(keep.as_secs_f64())
        .fetch_one(&self.db)
        .await?;
        Ok(rows.try_get::<i64, _>("n")?.max(0) as u64)
    }

    /// What the infobase's feed carries beyond its bots' conversations:
    /// (contextual activity, presence changes).
    pub async fn feed_options(&self, infobase: InfobaseId) -> Result<(bool, bool)> {
        let row: Option<(bool, bool)> =
            sqlx::query_as("SELECT contextual, presence FROM feed_settings WHERE infobase_id = $1")
                .bind(infobase.0)
                .fetch_optional(&self.db)
                .await?;
        Ok(row.unwrap_or((false, false)))
    }

    pub async fn set_feed_presence(&self, infobase: InfobaseId, on: bool) -> Result<()> {
        sqlx::query(
            "INSERT INTO feed_settings (infobase_id, presence) VALUES ($1, $2)
             ON CONFLICT (infobase_id) DO UPDATE SET presence = $2, updated_at = now()",
        )
        .bind(infobase.0)
        .bind(on)
        .execute(&self.db)
        .await?;
        Ok(())
    }

    /// Infobases whose feed carries presence changes.
    pub async fn feed_presence_infobases(&self) -> Result<Vec<InfobaseId>> {
        let ids: Vec<uuid::Uuid> =
            sqlx::query_scalar("SELECT infobase_id FROM feed_settings WHERE presence")
                .fetch_all(&self.db)
                .await?;
        Ok(ids.into_iter().map(InfobaseId).collect())
    }

    /// A user came online or went offline: its infobase's feed hears it
    /// when it asked to (nothing is written otherwise).
    pub async fn feed_presence(&self, user: parley_core::UserId, online: bool) -> Result<()> {
        sqlx::query(
            "INSERT INTO feed_inbox (infobase_id, kind, body)
             SELECT u.infobase_id, 'presence',
                    jsonb_build_object('event', 'presence', 'user_id', u.id, 'online', $2)
             FROM users u JOIN feed_settings s ON s.infobase_id = u.infobase_id AND s.presence
             WHERE u.id = $1",
        )
        .bind(user.0)
        .bind(online)
        .execute(&self.db)
        .await?;
        Ok(())
    }

    /// Turns the contextual activity on or off. On: every contextual
    /// conversation of the infobase is watched from its current last seq
    /// (new ones by the trigger). Off: they stop after what is committed.
    pub async fn set_feed_contextual(&self, infobase: InfobaseId, on: bool) -> Result<()> {
        let mut tx = self.db.begin().await?;
        sqlx::query(
            "INSERT INTO feed_settings (infobase_id, contextual) VALUES ($1, $2)
             ON CONFLICT (infobase_id) DO UPDATE SET contextual = $2, updated_at = now()",
        )
        .bind(infobase.0)
        .bind(on)
        .execute(&mut *tx)
        .await?;
        if on {
            sqlx::query(
                "INSERT INTO feed_watches (conversation_id, infobase_id, pumped_seq, contextual)
                 SELECT c.id, c.infobase_id, c.last_seq, true FROM conversations c
                 WHERE c.infobase_id = $1 AND c.kind = 'context'
                 ON CONFLICT (conversation_id, infobase_id)
                 DO UPDATE SET contextual = true, until_seq = NULL",
            )
            .bind(infobase.0)
            .execute(&mut *tx)
            .await?;
        } else {
            sqlx::query(
                "UPDATE feed_watches w SET contextual = false,
                        until_seq = CASE WHEN w.bots = 0
                                         THEN (SELECT c.last_seq FROM conversations c WHERE c.id = w.conversation_id)
                                         ELSE w.until_seq END
                 WHERE w.infobase_id = $1 AND w.contextual",
            )
            .bind(infobase.0)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
