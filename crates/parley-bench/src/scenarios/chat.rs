//! Fixed-rate chat and fan-out (one step of a load), and the capacity
//! search: the offered rate grows ×1.5 per step until a step loses a
//! message, errs, or its p99 from the scheduled send exceeds the bound.

use super::load::{Load, Shape, Step};
use crate::report::Res;
use crate::Env;
use serde_json::{json, Value};
use std::time::Duration;

const WARMUP: Duration = Duration::from_secs(2);
const DRAIN: Duration = Duration::from_secs(3);
/// How long a later run's fresh load runs below its first step (after the
/// warm-up, unmeasured).
const RAMP: Duration = Duration::from_secs(5);
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
    /// the bound) on the grid `start` ×1.5 per step, `cli.runs()` times for
    /// each of `targets` (node count, and whether it is the peer); the
    /// headline of each is the median.
    ///
    /// The targets take turns: run 1 of each, then run 2 of each, and so on.
    /// This machine's pace drifts by a quarter within minutes, and the
    /// targets' figures are compared with each other (Parley with the peer,
    /// 2 nodes with 1), so each comparison is between runs minutes apart,
    /// not a quarter of an hour.
    ///
    /// Run 1 of a target climbs from the bottom of the grid until a step
    /// fails. The runs after it start at run 1's figure: from there they
    /// climb while steps pass, or step down while they fail — the same
    /// highest passing grid rate, without repeating the low steps run 1
    /// showed passing. The curve and the low-rate latency come from run 1,
    /// the only one with every step.
    pub(crate) async fn capacity(
        &mut self,
        workload: &str,
        targets: &[(usize, bool)],
        start: u64,
        window: u64,
    ) -> Res<()> {
        let (shape, bound_ms) = capacity_shape(workload);
        let searches: Vec<Search> = targets
            .iter()
            .map(|&(count, peer)| Search {
                workload,
                count,
                peer,
                start,
                window,
            })
            .collect();
        let mut runs = vec![Vec::new(); searches.len()];
        // Where run 1 of each target ended: the grid index later runs start at.
        let mut from: Vec<Option<usize>> = vec![None; searches.len()];
        for run in 1..=self.cli.runs() {
            for (i, search) in searches.iter().enumerate() {
                println!(
                    "capacity {workload} {} {}n, run {run}",
                    target(search.peer),
                    search.count
                );
                let found = match from[i] {
                    None => self.climb(search).await?,
                    Some(index) => self.probe(search, index).await?,
                };
                if run == 1 {
                    from[i] = Some(found.best.as_ref().map_or(0, |(index, _)| *index));
                }
                runs[i].push(found.figures());
            }
        }
        let out = self.cli.out.clone();
        for (search, runs) in searches.iter().zip(runs) {
            self.report.add_runs(
                &out,
                "capacity",
                target(search.peer),
                search.count,
                json!({"workload": workload, "users": shape.users, "conversations": shape.convs,
                       "members": shape.members, "p99_bound_ms": bound_ms, "window_s": window}),
                runs,
                &["max_rate", "deliveries_per_s"],
                &["steps"],
            )?;
        }
        Ok(())
    }

    /// Climbs the grid from its bottom on a fresh load while steps pass.
    async fn climb(&mut self, s: &Search<'_>) -> Res<Found> {
        let mut load = self.load(s.workload, s.shape(), s.count, s.peer).await?;
        let mut found = Found {
            best: None,
            steps: Vec::new(),
        };
        s.climb_on(&mut load, 0, &mut found).await?;
        Ok(found)
    }

    /// Starts at grid step `index`: climbs on if it passes; if not, steps
    /// down until one passes, each on a fresh load (a failed step may leave
    /// a backlog or dropped sessions behind).
    async fn probe(&mut self, s: &Search<'_>, index: usize) -> Res<Found> {
        let mut load = self.warm_load(s, index).await?;
        let step = s.step(&mut load, index).await?;
        let mut found = Found {
            best: None,
            steps: Vec::new(),
        };
        if found.record(s, index, step) {
            s.climb_on(&mut load, index + 1, &mut found).await?;
            return Ok(found);
        }
        for index in (0..index).rev() {
            drop(load);
            println!("  the step failed: one step down, on a fresh load");
            load = self.warm_load(s, index).await?;
            let step = s.step(&mut load, index).await?;
            if found.record(s, index, step) {
                break;
            }
        }
        Ok(found)
    }

    /// A fresh load that has run for a few seconds, unmeasured, at the grid
    /// step below `index`. Run 1 meets each step after minutes of the lower
    /// ones; without this, a later run met its first step on nodes that had
    /// served nothing yet and failed it more often than run 1 had passed it
    /// (Parley's fan-out in the standard set at 3366112: all four such
    /// steps; with the warm-up none, docs/benchmarks.md).
    async fn warm_load(&mut self, s: &Search<'_>, index: usize) -> Res<Load> {
        let mut load = self.load(s.workload, s.shape(), s.count, s.peer).await?;
        if let Some(below) = index.checked_sub(1) {
            println!("  warming at {}/s (not measured)", grid(s.start, below));
            load.step(grid(s.start, below), WARMUP, RAMP, DRAIN).await?;
        }
        Ok(load)
    }
}

/// One capacity search's parameters.
struct Search<'a> {
    workload: &'a str,
    count: usize,
    peer: bool,
    start: u64,
    window: u64,
}

impl Search<'_> {
    fn shape(&self) -> Shape {
        capacity_shape(self.workload).0
    }

    /// Runs the grid's steps from `index` up on `load` while they pass.
    async fn climb_on(&self, load: &mut Load, index: usize, found: &mut Found) -> Res<()> {
        for index in index..MAX_STEPS {
            let step = self.step(load, index).await?;
            if !found.record(self, index, step) {
                break;
            }
        }
        Ok(())
    }

    /// One step at grid step `index`, printed.
    async fn step(&self, load: &mut Load, index: usize) -> Res<Step> {
        let rate = grid(self.start, index);
        let step = load
            .step(rate, WARMUP, Duration::from_secs(self.window), DRAIN)
            .await?;
        println!(
            "  {} {} {}n rate {rate}/s: p50 {} ms p99 {} ms lost {} errors {} cpu {:?}",
            self.workload,
            target(self.peer),
            self.count,
            step.p50_ms,
            step.p99_ms,
            step.lost,
            step.errors,
            step.cpu_s
        );
        if !step.moved.is_empty() {
            println!("    moved: {:?}", step.moved);
        }
        Ok(step)
    }
}

/// What one capacity search found: every step it ran, in order, and the
/// highest passing one with its grid index.
struct Found {
    best: Option<(usize, Step)>,
    steps: Vec<Value>,
}

impl Found {
    /// Adds a step; whether it passed (and became the best if higher).
    fn record(&mut self, s: &Search<'_>, index: usize, step: Step) -> bool {
        let ok = step.passes(capacity_shape(s.workload).1);
        self.steps.push(step.json());
        if ok && self.best.as_ref().is_none_or(|(i, _)| index > *i) {
            self.best = Some((index, step));
        }
        ok
    }

    fn figures(&self) -> Value {
        match &self.best {
            Some((_, s)) => json!({
                "max_rate": s.rate, "deliveries_per_s": s.deliveries_per_s.round(),
                "p50_ms": s.p50_ms, "p99_ms": s.p99_ms, "cpu_s": s.cpu_s, "steps": self.steps,
            }),
            None => json!({"max_rate": 0, "deliveries_per_s": 0, "steps": self.steps}),
        }
    }
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
