//! What a node's sessions miss behind a gap in `seq`, read from PostgreSQL
//! once per node.
//!
//! In a cluster a node's own commit can reach its sessions before another
//! node's earlier one arrives through Redis. When that one is late or lost,
//! every session here with a member of the conversation meets the same gap
//! at about the same moment and, `ws.gap_wait_ms` later, reads the same
//! events: a thousand members on a node were a thousand identical queries
//! against a database that is likely busy already. Here the first session
//! to ask starts the read, and every session asking for the same range
//! while it runs, or within [`SHARE_FOR`] after, gets that one answer. The
//! page holds every event of the range, framed once; each session keeps
//! those its user may see.
//!
//! Sharing a finished page is safe because a range's events are final once
//! a session can ask for it: `until` is a `seq` the session received, and
//! a `seq` is taken under the conversation's row lock, held to the commit,
//! so every lower one committed before it. The log is only appended to.

use crate::{Error, Result, Service};
use bytestring::ByteString;
use futures_util::future::{BoxFuture, FutureExt, Shared};
use parley_bus::Envelope;
use parley_core::{ConversationId, UserId};
use parley_store::{LoggedEnvelope, LoggedPage, Store};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Events of a conversation after a session's last `seq`, as the live path
/// carries them.
#[derive(Debug, Default)]
pub struct MissedEvents {
    /// Oldest first; each with its `position`, recipients and author, so
    /// that `Envelope::visible_to` decides as for a live one.
    pub envelopes: Vec<Arc<Envelope>>,
    /// Events are left before the end of the range.
    pub more: bool,
    /// The last `seq` of the page (visible to the reader or not), or the
    /// range's start when it is empty.
    pub top: i64,
}

/// One read of a range: a conversation, after, until (exclusive), and the
/// most events a page holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Range {
    conversation: ConversationId,
    after: i64,
    until: i64,
    limit: u32,
}

type Flight = Shared<BoxFuture<'static, Result<Arc<MissedEvents>>>>;

/// How long a finished read answers later askers of its range: the
/// sessions that met one gap ask within `ws.gap_wait_ms` of each other,
/// a little later on a loaded node.
const SHARE_FOR: Duration = Duration::from_secs(1);

/// The reads under way on this node.
#[derive(Default)]
pub(crate) struct GapReads {
    flights: Arc<Mutex<HashMap<Range, Flight>>>,
}

impl Service {
    /// The events of `conversation` with `after < seq < until`, oldest
    /// first, at most `limit` — read once for every session of this node
    /// that asks for the same range while the read runs or within
    /// `SHARE_FOR` after it.
    pub async fn missed_events(
        &self,
        conversation: ConversationId,
        after: i64,
        until: i64,
        limit: u32,
    ) -> Result<Arc<MissedEvents>> {
        let range = Range {
            conversation,
            after,
            until,
            limit,
        };
        let flight = {
            let mut flights = self
                .gap_reads
                .flights
                .lock()
                .map_err(|_| Error::internal("gap reads poisoned"))?;
            flights
                .entry(range)
                .or_insert_with(|| read(&self.store, &self.gap_reads.flights, range))
                .clone()
        };
        flight.await
    }
}

/// Starts the read of `range` on a task of its own — it finishes, and
/// leaves `flights`, even when every session that waited for it is gone —
/// and returns the answer every asker shares.
fn read(store: &Store, flights: &Arc<Mutex<HashMap<Range, Flight>>>, range: Range) -> Flight {
    metrics::counter!("parley_gap_reads_total").increment(1);
    let store = store.clone();
    let flights = Arc::clone(flights);
    let task = tokio::spawn(async move {
        let page = store
            .events_range(range.conversation, range.after, range.until, range.limit)
            .await;
        if let Ok(p) = &page {
            metrics::histogram!("parley_gap_read_events").record(p.events.len() as f64);
        }
        // A failure is not shared beyond those who waited for it: the next
        // asker tries again.
        let keep = if page.is_ok() {
            SHARE_FOR
        } else {
            Duration::ZERO
        };
        tokio::spawn(async move {
            tokio::time::sleep(keep).await;
            if let Ok(mut f) = flights.lock() {
                f.remove(&range);
            }
        });
        Ok(Arc::new(framed(range, page.map_err(Error::from)?)))
    });
    task.map(|joined| match joined {
        Ok(answer) => answer,
        Err(e) => Err(Error::internal(format!("gap read stopped: {e}"))),
    })
    .boxed()
    .shared()
}

/// The page as envelopes: each frame is the stored event as a server frame
/// (what a replay sends), built once for every session.
fn framed(range: Range, page: LoggedPage) -> MissedEvents {
    let top = page.events.last().map_or(range.after, |e| e.seq);
    let envelopes = page
        .events
        .into_iter()
        .map(|e| Arc::new(envelope(range.conversation, e)))
        .collect();
    MissedEvents {
        envelopes,
        more: page.more,
        top,
    }
}

fn envelope(conversation: ConversationId, logged: LoggedEnvelope) -> Envelope {
    let LoggedEnvelope {
        seq,
        recipients,
        mut body,
    } = logged;
    // Who may see a message meant for some members only: its recipients
    // and its author (as `Store::events_after` decides for one user).
    let author = body
        .pointer("/message/author_id")
        .and_then(Value::as_str)
        .and_then(|s| s.parse::<UserId>().ok());
    if let Value::Object(map) = &mut body {
        map.insert("type".into(), Value::String("event".into()));
    }
    Envelope {
        targets: Vec::new(),
        position: Some((conversation, seq)),
        recipients,
        author,
        frame: ByteString::from(body.to_string()),
        resync: false,
        revoke: None,
        session: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logged(seq: i64, body: Value, recipients: Option<Vec<UserId>>) -> LoggedEnvelope {
        LoggedEnvelope {
            seq,
            recipients,
            body,
        }
    }

    #[test]
    fn a_page_is_framed_as_a_replay_and_keeps_who_may_see_each_event() {
        let conv = ConversationId::new_random();
        let author = UserId::new_random();
        let reader = UserId::new_random();
        let stranger = UserId::new_random();
        let page = LoggedPage {
            events: vec![
                logged(
                    4,
                    serde_json::json!({"event": "message.created", "seq": 4,
                                       "message": {"author_id": author.0.to_string()}}),
                    Some(vec![reader]),
                ),
                logged(
                    5,
                    serde_json::json!({"event": "member.added", "seq": 5}),
                    None,
                ),
            ],
            more: true,
        };
        let range = Range {
            conversation: conv,
            after: 3,
            until: 9,
            limit: 2,
        };
        let missed = framed(range, page);
        assert!(missed.more);
        assert_eq!(missed.top, 5);
        let first = &missed.envelopes[0];
        assert_eq!(first.position, Some((conv, 4)));
        assert!(first.visible_to(reader) && first.visible_to(author));
        assert!(!first.visible_to(stranger));
        assert!(missed.envelopes[1].visible_to(stranger));
        let frame: Value = serde_json::from_str(&first.frame).expect("json");
        assert_eq!(frame["type"], "event");
        assert_eq!(frame["event"], "message.created");
    }

    #[test]
    fn an_empty_page_ends_where_it_began() {
        let range = Range {
            conversation: ConversationId::new_random(),
            after: 7,
            until: 9,
            limit: 10,
        };
        let missed = framed(range, LoggedPage::default());
        assert_eq!((missed.top, missed.more), (7, false));
        assert!(missed.envelopes.is_empty());
    }
}
