//! Counters that explain the node's work, exported as Prometheus text at
//! `/metrics` (names `parley_…`, documented in docs/operations.md). Hot-path
//! counters are handles registered once; figures the hub and the pool keep
//! anyway are copied in when the metrics are read.

use crate::Service;
use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics::{Counter, Histogram, Unit};

pub(crate) struct Metrics {
    pub sends: Counter,
    pub commits: Counter,
    pub retries: Counter,
    pub fanout_targets: Histogram,
    pub batch_size: Histogram,
    pub commit_wait: Histogram,
    pub commit_time: Histogram,
}

impl Metrics {
    pub(crate) fn new() -> Self {
        describe_counter!(
            "parley_sends_total",
            "Message sends that passed validation (WebSocket and REST)"
        );
        describe_counter!("parley_commits_total", "Messages committed to PostgreSQL");
        describe_counter!(
            "parley_idempotent_retries_total",
            "Sends answered with an earlier message of the same idempotency key"
        );
        describe_histogram!(
            "parley_fanout_targets",
            "Users an event of a history is fanned out to"
        );
        describe_histogram!(
            "parley_commit_batch_size",
            "Sends committed together in one transaction (group commit)"
        );
        describe_histogram!(
            "parley_commit_wait_seconds",
            Unit::Seconds,
            "Time a send waited in its group-commit queue before its transaction began"
        );
        describe_histogram!(
            "parley_commit_seconds",
            Unit::Seconds,
            "Time of one group-commit transaction (BEGIN to COMMIT, pool wait included)"
        );
        describe_gauge!("parley_sessions", "WebSocket sessions open on this node");
        describe_counter!(
            "parley_deliveries_total",
            "Events put in a session's queue on this node"
        );
        describe_counter!(
            "parley_queue_overflows_total",
            "Sessions closed with 4008 because their queue was full"
        );
        describe_counter!(
            "parley_bus_published_total",
            "Events handed to the bus for the other nodes"
        );
        describe_counter!(
            "parley_bus_received_total",
            "Events received from other nodes"
        );
        describe_counter!(
            "parley_bus_received_bytes_total",
            Unit::Bytes,
            "Bytes of bus messages this node read from Redis (what sharded pub/sub saves)"
        );
        describe_counter!(
            "parley_bus_dropped_total",
            "Events the bus could not take (queue full; recovered from PostgreSQL)"
        );
        describe_counter!(
            "parley_recovered_events_total",
            "Committed events the bus did not bring within recovery.grace_ms, read back from PostgreSQL"
        );
        describe_counter!(
            "parley_ws_frames_refused_total",
            "Request frames refused because a session exceeded ws.frames_per_sec"
        );
        describe_gauge!("parley_db_pool_connections", "Open PostgreSQL connections");
        describe_gauge!("parley_db_pool_idle", "Idle PostgreSQL connections");
        describe_histogram!(
            "parley_http_request_seconds",
            Unit::Seconds,
            "REST request latency"
        );
        describe_counter!(
            "parley_http_requests_total",
            "REST requests by status class"
        );
        describe_histogram!(
            "parley_ws_request_seconds",
            Unit::Seconds,
            "WebSocket request latency (frame in to result out)"
        );
        describe_counter!("parley_resumes_total", "resume requests");
        describe_counter!(
            "parley_presence_announced_total",
            "Presence changes announced to contacts, by state"
        );
        describe_counter!(
            "parley_gap_replays_total",
            "Gaps in a session's seq filled from PostgreSQL"
        );
        describe_counter!(
            "parley_resyncs_total",
            "Sessions that compared their seqs with PostgreSQL after the bus may have lost events"
        );
        describe_counter!(
            "parley_resync_reads_total",
            "Reads of PostgreSQL for resyncing sessions (the sessions of a node that ask together share one)"
        );
        describe_histogram!(
            "parley_resync_read_users",
            "Users whose conversations' seqs one resync read asked for"
        );
        describe_histogram!(
            "parley_gap_read_events",
            "Events one gap read brought back (the page every session that asked shares)"
        );
        describe_counter!(
            "parley_gap_reads_total",
            "Reads of PostgreSQL for sessions' gaps (sessions missing the same events share one)"
        );
        Self {
            sends: counter!("parley_sends_total"),
            commits: counter!("parley_commits_total"),
            retries: counter!("parley_idempotent_retries_total"),
            fanout_targets: histogram!("parley_fanout_targets"),
            batch_size: histogram!("parley_commit_batch_size"),
            commit_wait: histogram!("parley_commit_wait_seconds"),
            commit_time: histogram!("parley_commit_seconds"),
        }
    }
}

impl Metrics {
    pub(crate) fn for_commit(&self) -> crate::commit::CommitMetrics {
        crate::commit::CommitMetrics {
            commits: self.commits.clone(),
            retries: self.retries.clone(),
            fanout_targets: self.fanout_targets.clone(),
            batch_size: self.batch_size.clone(),
            wait_seconds: self.commit_wait.clone(),
            commit_seconds: self.commit_time.clone(),
        }
    }
}

impl Service {
    /// Copies the hub's and the pool's figures into the metrics; call
    /// before rendering them.
    pub fn observe(&self) {
        let h = self.bus.hub().stats();
        gauge!("parley_sessions").set(h.sessions as f64);
        counter!("parley_deliveries_total").absolute(h.delivered);
        counter!("parley_queue_overflows_total").absolute(h.overflowed);
        counter!("parley_bus_published_total").absolute(h.bus_published);
        counter!("parley_bus_received_total").absolute(h.bus_received);
        counter!("parley_bus_received_bytes_total").absolute(h.bus_received_bytes);
        counter!("parley_bus_dropped_total").absolute(h.bus_dropped);
        let p = self.store.pool_stats();
        gauge!("parley_db_pool_connections").set(f64::from(p.size));
        gauge!("parley_db_pool_idle").set(f64::from(p.idle));
    }
}
