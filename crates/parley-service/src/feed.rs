//! The infobase event feed: what an ERP server that cannot accept inbound
//! HTTP long-polls. The store fills it (one node at a time, see
//! parley-store feed.rs); this module serves pages, waits for new events,
//! runs the pump and the retention on every node.

use crate::{Error, Result, Service};
use parley_core::feed::{FeedPage, FeedSettings};
use parley_core::{ErrorCode, InfobaseActor, UserId};
use parley_store::PumpLimits;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

impl Service {
    /// The feed after `after` (from the oldest kept event when absent); when
    /// nothing is there, waits up to `wait` seconds for something to come.
    pub async fn feed(
        &self,
        me: &InfobaseActor,
        after: Option<i64>,
        wait: Option<u64>,
        limit: Option<u32>,
    ) -> Result<FeedPage> {
        let cfg = &self.cfg.feed;
        let limit = limit.unwrap_or(cfg.default_page);
        if !(1..=cfg.max_page).contains(&limit) {
            return Err(Error::invalid(format!(
                "limit: must be between 1 and {} (feed.max_page)",
                cfg.max_page
            )));
        }
        let wait = wait.unwrap_or(0);
        if wait > cfg.max_wait_secs {
            return Err(Error::invalid(format!(
                "wait: at most {} seconds (feed.max_wait_secs)",
                cfg.max_wait_secs
            )));
        }
        if after.is_some_and(|a| a < 0) {
            return Err(Error::invalid(
                "after: a cursor from an earlier page (0 or more)",
            ));
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(wait);
        let mut head = self.feed_head.subscribe();
        loop {
            // Marked before the read: a pump that lands between the read
            // and the wait still wakes this loop.
            head.borrow_and_update();
            let rows = self
                .store
                .feed_page(me.id, after.unwrap_or(0), i64::from(limit))
                .await?;
            if let Some(a) = after {
                if a < rows.purged_through {
                    return Err(Error::new(
                        ErrorCode::CursorExpired,
                        format!(
                            "events after {a} are older than feed.retention_hours ({} h) and gone; \
                             read what you need from history, then read the feed without `after`",
                            cfg.retention_hours
                        ),
                    ));
                }
            }
            if !rows.events.is_empty() || tokio::time::Instant::now() >= deadline {
                let cursor = rows.events.last().map(|e| e.id).or(after).unwrap_or(0);
                return Ok(FeedPage {
                    events: rows.events,
                    cursor,
                });
            }
            // Woken when any feed moves (then read again), or at the end.
            match tokio::time::timeout_at(deadline, head.changed()).await {
                Ok(Ok(())) | Err(_) => {}
                // No sender left (shutting down): nothing will wake it.
                Ok(Err(_)) => tokio::time::sleep_until(deadline).await,
            }
        }
    }

    pub async fn feed_settings(&self, me: &InfobaseActor) -> Result<FeedSettings> {
        let (contextual, presence) = self.store.feed_options(me.id).await?;
        Ok(FeedSettings {
            contextual,
            presence,
        })
    }

    pub async fn set_feed_settings(
        &self,
        me: &InfobaseActor,
        s: FeedSettings,
    ) -> Result<FeedSettings> {
        self.store.set_feed_contextual(me.id, s.contextual).await?;
        self.store.set_feed_presence(me.id, s.presence).await?;
        if s.presence {
            self.presence_feeds.store(true, Ordering::Relaxed);
        }
        Ok(s)
    }

    /// Tells the feeds that asked for presence (nothing is written when no
    /// infobase anywhere asked: the flag is re-read every few seconds).
    pub(crate) async fn feed_presence(&self, user: UserId, online: bool) {
        if !self.presence_feeds.load(Ordering::Relaxed) {
            return;
        }
        if let Err(e) = self.store.feed_presence(user, online).await {
            tracing::debug!(error = %e, "presence not written to the feed");
        }
    }

    /// Starts the pump, the head watch that wakes long-polls, the retention
    /// of the feed and the webhook delivery workers.
    pub fn start_feed(self: &Arc<Self>) {
        let svc = Arc::clone(self);
        tokio::spawn(async move {
            let cfg = svc.cfg.feed.clone();
            let lim = PumpLimits {
                lookback: Duration::from_secs(cfg.lookback_secs),
                full_sweep: Duration::from_secs(cfg.full_sweep_secs),
                max_rows: i64::from(cfg.pump_max_rows),
            };
            let mut tick = tokio::time::interval(Duration::from_millis(cfg.pump_ms));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match svc.store.pump_feed(lim).await {
                    Ok(Some(p)) if p.events + p.inbox > 0 => {
                        metrics::counter!("parley_feed_events_total").increment(p.events + p.inbox);
                        metrics::counter!("parley_webhook_deliveries_queued_total")
                            .increment(p.deliveries);
                        tracing::debug!(
                            events = p.events,
                            inbox = p.inbox,
                            deliveries = p.deliveries,
                            "feed pumped"
                        );
                        if p.deliveries > 0 {
                            svc.webhook_wake.notify_one();
                        }
                        svc.refresh_feed_head().await;
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "feed pump failed"),
                }
            }
        });
        let svc = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(svc.cfg.feed.poll_ms));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                // Only while someone waits: the pump on another node moved it.
                if svc.feed_head.receiver_count() > 0 {
                    svc.refresh_feed_head().await;
                }
            }
        });
        let svc = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick =
                tokio::time::interval(Duration::from_secs(svc.cfg.feed.presence_refresh_secs));
            loop {
                tick.tick().await;
                match svc.store.feed_presence_infobases().await {
                    Ok(ids) => svc.presence_feeds.store(!ids.is_empty(), Ordering::Relaxed),
                    Err(e) => tracing::debug!(error = %e, "presence feeds unknown"),
                }
            }
        });
        let svc = Arc::clone(self);
        tokio::spawn(async move {
            let keep = Duration::from_secs(svc.cfg.feed.retention_hours * 3600);
            let mut tick =
                tokio::time::interval(Duration::from_secs(svc.cfg.maintenance.purge_every_secs));
            loop {
                tick.tick().await;
                match svc.store.purge_feed(keep).await {
                    Ok(n) if n > 0 => {
                        tracing::info!(events = n, "feed events past retention removed")
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "feed retention failed"),
                }
            }
        });
        self.start_webhook_workers();
    }

    async fn refresh_feed_head(&self) {
        match self.store.feed_head().await {
            Ok(h) => {
                self.feed_head.send_if_modified(|cur| {
                    let moved = *cur != h;
                    *cur = h;
                    moved
                });
            }
            Err(e) => tracing::debug!(error = %e, "feed head unknown"),
        }
    }
}
