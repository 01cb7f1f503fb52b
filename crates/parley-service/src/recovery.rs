//! Live delivery that does not depend on the bus. Every `recovery.grace_ms`
//! each node reads which conversations changed lately and their last `seq`
//! (one index range scan on `conversations.last_activity`); a `seq` that has
//! not reached this node's hub one grace later — its publisher died between
//! commit and publish, Redis dropped it, the publish queue was full, this
//! node's subscription is deaf — is read back ONCE per node and handed to
//! the local sessions, which order and de-duplicate by `seq` as for any
//! envelope.

use crate::fanout::envelope;
use crate::Service;
use parley_core::protocol::Event;
use parley_core::ConversationId;
use parley_store::{ConversationSeq, StoredEvent};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How far back each poll looks: `last_activity` trails the newest event by
/// up to a second (the group commit rewrites it at most once a second) and
/// is the time its transaction began; a transaction longer than the rest of
/// this window is not seen here (its next event in the conversation, or a
/// reconnect, still brings it).
const LOOK_BACK: Duration = Duration::from_secs(5);

/// Positions forgotten by the hub after two of these without news.
const AGE_POSITIONS_EVERY: Duration = Duration::from_secs(60);

/// What must have reached the hub by when, per conversation: the oldest
/// unchecked notice and the newest one behind it.
#[derive(Default)]
struct Watch {
    due: HashMap<ConversationId, Due>,
    /// The `seq` last checked per conversation: polls repeat what they saw
    /// for a few seconds, and a check is not repeated.
    checked: HashMap<ConversationId, i64>,
}

struct Due {
    seq: i64,
    at: Instant,
    next: Option<(i64, Instant)>,
}

impl Watch {
    fn heard(&mut self, n: ConversationSeq, now: Instant) {
        if self
            .checked
            .get(&n.conversation_id)
            .is_some_and(|s| *s >= n.last_seq)
        {
            return;
        }
        match self.due.get_mut(&n.conversation_id) {
            None => {
                self.due.insert(
                    n.conversation_id,
                    Due {
                        seq: n.last_seq,
                        at: now,
                        next: None,
                    },
                );
            }
            Some(d) => {
                let top = d.next.map_or(d.seq, |(s, _)| s);
                if n.last_seq > top {
                    d.next = Some((n.last_seq, now));
                }
            }
        }
    }

    /// Takes the checks that are due: (conversation, seq).
    fn take_due(&mut self, grace: Duration, now: Instant) -> Vec<(ConversationId, i64)> {
        let mut out = Vec::new();
        self.due.retain(|conv, d| {
            if d.at + grace > now {
                return true;
            }
            out.push((*conv, d.seq));
            self.checked.insert(*conv, d.seq);
            match d.next.take() {
                Some((seq, at)) => {
                    d.seq = seq;
                    d.at = at;
                    true
                }
                None => false,
            }
        });
        out
    }
}

impl Service {
    /// Starts the recovery loop on the current Tokio runtime.
    pub fn start_recovery(self: &Arc<Self>) {
        tokio::spawn(Arc::clone(self).recover_forever());
    }

    async fn recover_forever(self: Arc<Self>) {
        let grace = Duration::from_millis(self.cfg.recovery.grace_ms);
        let mut watch = Watch::default();
        let mut tick = tokio::time::interval(grace);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut age = tokio::time::interval(AGE_POSITIONS_EVERY);
        let mut first = true;
        let mut failing = false;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = age.tick() => {
                    self.bus.hub().age_positions();
                    watch.checked.clear();
                    continue;
                }
            }
            let now = Instant::now();
            match self.store.recently_active(LOOK_BACK).await {
                Ok(list) => {
                    if failing {
                        tracing::info!("recovery reads PostgreSQL again");
                        failing = false;
                    }
                    for n in list {
                        if first {
                            // What committed before this node started is
                            // its sessions' to read at connect.
                            watch.checked.insert(n.conversation_id, n.last_seq);
                        } else {
                            watch.heard(n, now);
                        }
                    }
                    first = false;
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!(error = %e, "recovery cannot read PostgreSQL");
                        failing = true;
                    }
                }
            }
            let due = watch.take_due(grace, now);
            for (conv, seq) in self.worth_checking(due).await {
                self.check_delivered(conv, seq).await;
            }
        }
    }

    /// The due checks whose events did not reach the hub and concern a
    /// user with a session here. A sharded bus brings a node only what its
    /// users get, so most conversations it never hears of are none of its
    /// business: one query for all of them sorts them out.
    async fn worth_checking(&self, due: Vec<(ConversationId, i64)>) -> Vec<(ConversationId, i64)> {
        let hub = self.bus.hub();
        let max = i64::from(self.cfg.recovery.max_events);
        let missing: Vec<(ConversationId, i64, i64)> = due
            .into_iter()
            .filter_map(|(conv, seq)| {
                let seen = hub.seen_seq(conv);
                if seen.is_some_and(|s| s >= seq) {
                    return None;
                }
                Some((conv, seen.unwrap_or(0).max(seq - max), seq))
            })
            .collect();
        if missing.is_empty() {
            return Vec::new();
        }
        match self.store.interested_users(&missing).await {
            Ok(users) => missing
                .into_iter()
                .filter(|(conv, _, _)| users.get(conv).is_some_and(|u| hub.holds_any(u)))
                .map(|(conv, _, seq)| (conv, seq))
                .collect(),
            Err(e) => {
                tracing::warn!(error = %e, "recovery: members unreadable; checking each");
                missing
                    .into_iter()
                    .map(|(conv, _, seq)| (conv, seq))
                    .collect()
            }
        }
    }

    /// Delivers from PostgreSQL what of `conv` up to `seq` never reached
    /// this node, if anyone here may want it.
    async fn check_delivered(&self, conv: ConversationId, seq: i64) {
        let hub = self.bus.hub();
        let seen = hub.seen_seq(conv);
        if seen.is_some_and(|s| s >= seq) {
            return;
        }
        let members = match self.store.member_ids(conv).await {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, conversation = %conv, "recovery: members unreadable");
                return;
            }
        };
        let max = self.cfg.recovery.max_events;
        let after = seen.unwrap_or(0).max(seq - i64::from(max));
        let logged = match self.store.events_between(conv, after, seq, max).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, conversation = %conv, "recovery: events unreadable");
                return;
            }
        };
        let mut delivered = 0u64;
        for l in logged {
            let event: Event = match serde_json::from_value(l.body) {
                Ok(e) => e,
                Err(e) => {
                    tracing::warn!(error = %e, seq = l.seq, "recovery: stored event unreadable");
                    continue;
                }
            };
            // A member removed by the missing event is no longer listed but
            // must hear of it.
            let mut targets = members.clone();
            if let Event::MemberRemoved { user_id, .. } = &event {
                if !targets.contains(user_id) {
                    targets.push(*user_id);
                }
            }
            if !hub.holds_any(&targets) {
                continue;
            }
            let ev = StoredEvent {
                conversation_id: conv,
                seq: l.seq,
                recipients: l.recipients,
                event,
            };
            hub.deliver(&Arc::new(envelope(ev, targets)));
            delivered += 1;
        }
        if delivered > 0 {
            metrics::counter!("parley_recovered_events_total").increment(delivered);
            tracing::info!(conversation = %conv, seq, delivered, "events the bus did not bring delivered from PostgreSQL");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_conversation_is_checked_once_per_grace_at_the_older_notice() {
        let mut w = Watch::default();
        let c = ConversationId::new_random();
        let t0 = Instant::now();
        let grace = Duration::from_millis(100);
        w.heard(
            ConversationSeq {
                conversation_id: c,
                last_seq: 1,
            },
            t0,
        );
        w.heard(
            ConversationSeq {
                conversation_id: c,
                last_seq: 5,
            },
            t0 + Duration::from_millis(50),
        );
        w.heard(
            ConversationSeq {
                conversation_id: c,
                last_seq: 9,
            },
            t0 + Duration::from_millis(90),
        );
        assert!(w.take_due(grace, t0 + Duration::from_millis(99)).is_empty());
        assert_eq!(
            w.take_due(grace, t0 + Duration::from_millis(100)),
            vec![(c, 1)]
        );
        // The newest notice is checked once it is old enough itself.
        assert!(w
            .take_due(grace, t0 + Duration::from_millis(150))
            .is_empty());
        assert_eq!(
            w.take_due(grace, t0 + Duration::from_millis(190)),
            vec![(c, 9)]
        );
        assert!(w.due.is_empty());
    }
}
