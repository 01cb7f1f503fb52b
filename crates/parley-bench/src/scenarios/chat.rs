//! Fixed-rate chat and fan-out (one step of a load), and the capacity
//! search: the offered rate grows ×1.5 per step until a step loses a
//! message, errs, or its p99 from the scheduled send exceeds the bound.

use super::load::{Shape, Step};
use crate::report::Res;
use crate::Env;
use serde_json::json;
use std::time::Duration;

const WARMUP: Duration = Duration::from_secs(2);
const DRAIN: Duration = Duration::from_secs(3);
/// Steps of one capacity search at most.
const MAX_STEPS: usize = 12;

fn target(peer: bool) -> &'static str {
    if peer {
        "peer"
    } else {
        "parley"
    }
}

impl Env {
    /// One step at a fixed rate for `secs` seconds.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn chat(
        &mut self,
        name: &str,
        users: usize,
        convs: usize,
        k: usize,
        rate: u64,
        secs: u64,
        count: usize,
        peer: bool,
    ) -> Res<()> {
        let shape = Shape {
            users,
            convs,
            members: k,
        };
        let mut load = self.load(name, shape, count, peer).await?;
        let step = load
            .step(rate, WARMUP, Duration::from_secs(secs), DRAIN)
            .await?;
        self.report.add(
            &self.cli.out,
            name,
            target(peer),
            count,
            json!({"users": users, "conversations": convs, "members": k, "rate": rate, "duration_s": secs}),
            step.json(),
        )
    }

    /// The highest rate whose step passes (0 lost, 0 errors, p99 within
    /// the bound), searched from `start` ×1.5 per step, `cli.runs()` times;
    /// the headline is the median.
    pub(crate) async fn capacity(
        &mut self,
        workload: &str,
        count: usize,
        peer: bool,
        start: u64,
        window: u64,
    ) -> Res<()> {
        let (shape, bound_ms) = capacity_shape(workload);
        let mut runs = Vec::new();
        for run in 1..=self.cli.runs() {
            println!("capacity {workload} {} {count}n, run {run}", target(peer));
            runs.push(
                self.capacity_run(workload, count, peer, start, window)
                    .await?,
            );
        }
        let out = self.cli.out.clone();
        self.report.add_runs(
            &out,
            "capacity",
            target(peer),
            count,
            json!({"workload": workload, "users": shape.users, "conversations": shape.convs,
                   "members": shape.members, "p99_bound_ms": bound_ms, "window_s": window}),
            runs,
            &["max_rate", "deliveries_per_s"],
        )
    }

    /// One capacity search; its figures.
    async fn capacity_run(
        &mut self,
        workload: &str,
        count: usize,
        peer: bool,
        start: u64,
        window: u64,
    ) -> Res<serde_json::Value> {
        let (shape, bound_ms) = capacity_shape(workload);
        let mut load = self.load(workload, shape, count, peer).await?;
        let mut rate = start.max(1);
        let mut best: Option<Step> = None;
        let mut steps = Vec::new();
        for _ in 0..MAX_STEPS {
            let step = load
                .step(rate, WARMUP, Duration::from_secs(window), DRAIN)
                .await?;
            println!(
                "  {workload} {} {count}n rate {rate}/s: p50 {} ms p99 {} ms lost {} errors {} cpu {:?}",
                target(peer),
                step.p50_ms,
                step.p99_ms,
                step.lost,
                step.errors,
                step.cpu_s
            );
            if !step.moved.is_empty() {
                println!("    moved: {:?}", step.moved);
            }
            let ok = step.passes(bound_ms);
            steps.push(step.json());
            if !ok {
                break;
            }
            best = Some(step);
            rate = (rate as f64 * 1.5).round() as u64;
        }
        Ok(match &best {
            Some(s) => json!({
                "max_rate": s.rate, "deliveries_per_s": s.deliveries_per_s.round(),
                "p50_ms": s.p50_ms, "p99_ms": s.p99_ms, "cpu_s": s.cpu_s, "steps": steps,
            }),
            None => json!({"max_rate": 0, "deliveries_per_s": 0, "steps": steps}),
        })
    }
}

/// The shape of a capacity workload and its p99 bound.
fn capacity_shape(workload: &str) -> (Shape, f64) {
    match workload {
        "chat" => (
            Shape {
                users: 1000,
                convs: 100,
                members: 10,
            },
            50.0,
        ),
        _ => (
            Shape {
                users: 1000,
                convs: 1,
                members: 1000,
            },
            100.0,
        ),
    }
}
