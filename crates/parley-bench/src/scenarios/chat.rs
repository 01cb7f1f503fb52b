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
    /// the bound), searched on the grid `start` ×1.5 per step,
    /// `cli.runs()` times; the headline is the median.
    ///
    /// Run 1 climbs from the bottom of the grid; runs 2 and after start two
    /// steps below run 1's figure (their own first steps would only repeat
    /// what run 1 showed passing) and fall back to the bottom when that
    /// first step fails. The curve and the low-rate latency come from run 1,
    /// the only one with every step.
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
        let mut first_step = 0;
        for run in 1..=self.cli.runs() {
            println!("capacity {workload} {} {count}n, run {run}", target(peer));
            let found = self
                .capacity_run(workload, count, peer, start, first_step, window)
                .await?;
            if run == 1 {
                first_step = found.best.map_or(0, |best| best.saturating_sub(2));
            }
            runs.push(found.figures);
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
            &["steps"],
        )
    }

    /// One capacity search from grid step `first`; its figures. If the
    /// first step fails above the bottom, the search starts again from the
    /// bottom, below it.
    async fn capacity_run(
        &mut self,
        workload: &str,
        count: usize,
        peer: bool,
        start: u64,
        first: usize,
        window: u64,
    ) -> Res<Search> {
        let (shape, bound_ms) = capacity_shape(workload);
        let mut load = self.load(workload, shape, count, peer).await?;
        let mut best: Option<(usize, Step)> = None;
        let mut steps = Vec::new();
        let mut index = first;
        let mut last = MAX_STEPS;
        while index < last {
            let rate = grid(start, index);
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
            if ok {
                best = Some((index, step));
                index += 1;
            } else if best.is_none() && index > 0 && index == first {
                println!("  the first step failed: from the bottom again");
                last = index;
                index = 0;
            } else {
                break;
            }
        }
        Ok(Search {
            best: best.as_ref().map(|(i, _)| *i),
            figures: match &best {
                Some((_, s)) => json!({
                    "max_rate": s.rate, "deliveries_per_s": s.deliveries_per_s.round(),
                    "p50_ms": s.p50_ms, "p99_ms": s.p99_ms, "cpu_s": s.cpu_s, "steps": steps,
                }),
                None => json!({"max_rate": 0, "deliveries_per_s": 0, "steps": steps}),
            },
        })
    }
}

/// What one capacity search found: the grid index of the highest passing
/// step, and the figures reported.
struct Search {
    best: Option<usize>,
    figures: serde_json::Value,
}

/// The offered rate at grid step `index`: `start` ×1.5 per step, rounded
/// at each step as the search always has (1 000, 1 500, 2 250, 3 375,
/// 5 063, 7 595, …).
fn grid(start: u64, index: usize) -> u64 {
    let mut rate = start.max(1);
    for _ in 0..index {
        rate = (rate as f64 * 1.5).round() as u64;
    }
    rate
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

#[cfg(test)]
mod tests {
    use super::grid;

    #[test]
    fn the_grid_is_the_one_the_search_always_climbed() {
        let rates: Vec<u64> = (0..7).map(|i| grid(1000, i)).collect();
        assert_eq!(rates, [1000, 1500, 2250, 3375, 5063, 7595, 11393]);
        assert_eq!(grid(20, 3), 68);
        assert_eq!(grid(0, 1), 2, "a zero start is taken as 1");
    }
}
