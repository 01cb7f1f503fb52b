//! What sharded pub/sub changes. The same chat load on the same nodes, once
//! over one Redis (one channel: every node reads every message, its own
//! included) and once over a Redis Cluster (`bus.kind = "cluster"`: each
//! node reads only the messages for users it holds), for dialogs and for
//! groups of 10. Users are spread over the nodes round robin, so a dialog's
//! two members sit on two nodes of three, and a group of 10 on all three:
//! the saving shows in the first and not in the second.

use super::load::Shape;
use crate::report::Res;
use crate::Env;
use serde_json::json;
use std::time::Duration;

const WARMUP: Duration = Duration::from_secs(2);
const DRAIN: Duration = Duration::from_secs(3);

impl Env {
    pub(crate) async fn sharding(
        &mut self,
        users: usize,
        rate: u64,
        secs: u64,
        count: usize,
    ) -> Res<()> {
        if self.cli.redis_cluster.is_empty() {
            return Err(
                "sharding needs --redis-cluster (scripts/bench.sh sharding starts one)".into(),
            );
        }
        let count = count.max(2);
        for members in [2, 10] {
            for sharded in [false, true] {
                self.sharded = sharded;
                let bus = if sharded { "cluster" } else { "redis" };
                let shape = Shape {
                    users,
                    convs: (users / members).max(1),
                    members,
                };
                println!(
                    "sharding: {count} nodes, bus {bus}, conversations of {members}, {rate} msg/s"
                );
                let mut load = self.load("sharding", shape, count, false).await?;
                let step = load
                    .step(rate, WARMUP, Duration::from_secs(secs), DRAIN)
                    .await?;
                drop(load);
                self.sharded = false;
                let per = |name: &str| {
                    let total = step.moved.get(name).copied().unwrap_or(0.0);
                    let each = total / step.sent.max(1) as f64 / count as f64;
                    (each * 10.0).round() / 10.0
                };
                let published = step
                    .moved
                    .get("parley_bus_published_total")
                    .copied()
                    .unwrap_or(0.0);
                let published = (published / step.sent.max(1) as f64 * 100.0).round() / 100.0;
                let figures = json!({
                    "bytes_per_message_per_node": per("parley_bus_received_bytes_total"),
                    "envelopes_per_message_per_node": per("parley_bus_received_total"),
                    "published_per_message": published,
                    "sent": step.sent,
                    "lost": step.lost,
                    "p50_ms": step.p50_ms,
                    "p99_ms": step.p99_ms,
                    "cpu_s": step.cpu_s,
                });
                let out = self.cli.out.clone();
                self.report.add(
                    &out,
                    "sharding",
                    "parley",
                    count,
                    json!({"bus": bus, "members": members, "users": users, "rate": rate, "duration_s": secs}),
                    figures,
                )?;
            }
        }
        Ok(())
    }
}
