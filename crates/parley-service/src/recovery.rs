//! Live delivery that does not depend on the bus. PostgreSQL announces every
//! committed event (a trigger NOTIFYs "conversation:seq" at commit); each
//! node listens, and an announced event that has not reached this node's hub
//! `recovery.grace_ms` later — its publisher died between commit and
//! publish, Redis dropped it, the publish queue was full, this node's
//! subscription is deaf — is read back ONCE per node and handed to the
//! local sessions, which order and de-duplicate by `seq` as for any
//! envelope. A lost LISTEN connection makes every session resync, since
//! the notices sent meanwhile are gone.

use crate::fanout::envelope;
use crate::Service;
use parley_core::protocol::Event;
use parley_core::ConversationId;
use parley_store::{CommitNotice, Heard, StoredEvent};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Positions forgotten by the hub after two of these without news.
const AGE_POSITIONS_EVERY: Duration = Duration::from_secs(60);

/// What must have reached the hub by when, per conversation: the oldest
/// unchecked notice and the newest one behind it.
#[derive(Default)]
struct Watch {
    due: HashMap<ConversationId, Due>,
}

struct Due {
    seq: i64,
    at: Instant,
    next: Option<(i64, Instant)>,
}

impl Watch {
    fn heard(&mut self, n: CommitNotice, now: Instant) {
        match self.due.get_mut(&n.conversation) {
            None => {
                self.due.insert(
                    n.conversation,
                    Due {
                        seq: n.seq,
                        at: now,
                        next: None,
                    },
                );
            }
            Some(d) => {
                let top = d.next.map_or(d.seq, |(s, _)| s);
                if n.seq > top {
                    d.next = Some((n.seq, now));
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
    /// Starts listening for commit notices on the current Tokio runtime.
    pub fn start_recovery(self: &Arc<Self>) {
        tokio::spawn(Arc::clone(self).recover_forever());
    }

    async fn recover_forever(self: Arc<Self>) {
        let grace = Duration::from_millis(self.cfg.recovery.grace_ms);
        let mut backoff = Duration::from_millis(100);
        let mut first = true;
        let mut age = tokio::time::interval(AGE_POSITIONS_EVERY);
        loop {
            let mut listener = match self.store.listen_commits().await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "listening for commits failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                    continue;
                }
            };
            backoff = Duration::from_millis(100);
            if !first {
                tracing::info!("listening for commits again; resyncing sessions");
                self.bus.hub().resync_all();
            }
            first = false;
            let mut watch = Watch::default();
            let mut tick = tokio::time::interval((grace / 4).max(Duration::from_millis(20)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    heard = listener.next() => match heard {
                        Ok(Heard::Notices(list)) => {
                            let now = Instant::now();
                            for n in list {
                                watch.heard(n, now);
                            }
                        }
                        Ok(Heard::Reconnected) => {
                            tracing::info!("commit notices were interrupted; resyncing sessions");
                            metrics::counter!("parley_recovery_resyncs_total").increment(1);
                            self.bus.hub().resync_all();
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "commit notices lost");
                            break;
                        }
                    },
                    _ = tick.tick() => {
                        for (conv, seq) in watch.take_due(grace, Instant::now()) {
                            self.check_delivered(conv, seq).await;
                        }
                    }
                    _ = age.tick() => self.bus.hub().age_positions(),
                }
            }
            tokio::time::sleep(backoff).await;
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
            CommitNotice {
                conversation: c,
                seq: 1,
            },
            t0,
        );
        w.heard(
            CommitNotice {
                conversation: c,
                seq: 5,
            },
            t0 + Duration::from_millis(50),
        );
        w.heard(
            CommitNotice {
                conversation: c,
                seq: 9,
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
