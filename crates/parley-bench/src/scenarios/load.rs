//! An open-loop message load on connected sessions, measured one step at a
//! time: U users in C conversations of K members (chat), or one
//! conversation of M members (fan-out), sending at a set rate.
//!
//! Each message carries its number and its *scheduled* send time, so latency
//! is measured from when it should have left (no coordinated omission), and
//! every delivery is counted per message: a frame that never arrives is
//! lost, not merely absent from the histogram. Rates are counted over the
//! measurement window only.

use crate::cpu;
use crate::nodes::Nodes;
use crate::report::{now_ns, Res};
use crate::{conn, source, Env};
use futures_util::StreamExt;
use hdrhistogram::Histogram;
use parley_core::UserId;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedSender;

/// Most messages one load may send (receipts are counted per message).
const MAX_MESSAGES: usize = 8_000_000;

/// The shape of a load.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub users: usize,
    pub convs: usize,
    pub members: usize,
}

/// What the readers of every session share.
struct Shared {
    /// Deliveries per message number.
    receipts: Vec<AtomicU32>,
    /// Latency (µs from the scheduled send) of deliveries of messages at or
    /// after `measured_from`.
    hist: Mutex<Histogram<u64>>,
    measured_from: AtomicU64,
    acks: AtomicU64,
    errors: AtomicU64,
}

/// One step's figures.
#[derive(Clone, Debug)]
pub struct Step {
    pub rate: u64,
    pub sent: u64,
    pub committed_per_s: f64,
    pub deliveries_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub lost: u64,
    pub duplicates: u64,
    pub errors: u64,
    pub cpu_s: BTreeMap<String, f64>,
    /// `parley_…` counters of the nodes that moved during the step.
    pub moved: BTreeMap<String, f64>,
}

impl Step {
    pub fn passes(&self, p99_bound_ms: f64) -> bool {
        self.lost == 0 && self.errors == 0 && self.duplicates == 0 && self.p99_ms <= p99_bound_ms
    }

    pub fn json(&self) -> Value {
        json!({
            "rate": self.rate, "sent": self.sent,
            "committed_per_s": self.committed_per_s.round(),
            "deliveries_per_s": self.deliveries_per_s.round(),
            "p50_ms": self.p50_ms, "p99_ms": self.p99_ms, "max_ms": self.max_ms,
            "lost": self.lost, "duplicates": self.duplicates, "errors": self.errors,
            "cpu_s": self.cpu_s,
        })
    }
}

/// Connected sessions ready to carry a load.
pub struct Load {
    pub nodes: Nodes,
    peer: bool,
    groups: Vec<(String, Vec<usize>)>,
    writers: Vec<UnboundedSender<String>>,
    shared: Arc<Shared>,
    next: u64,
    cpu: cpu::Parts,
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// Sum of each `parley_…` sample (name with its labels) over the nodes.
pub(crate) fn counters(texts: &[String]) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for t in texts {
        for line in t.lines().filter(|l| l.starts_with("parley_")) {
            let Some((name, v)) = line.rsplit_once(' ') else {
                continue;
            };
            if let Ok(v) = v.parse::<f64>() {
                *out.entry(name.to_owned()).or_insert(0.0) += v;
            }
        }
    }
    out
}

/// The samples that changed between two scrapes (histogram buckets left
/// out: their sums and counts say enough).
pub(crate) fn moved(
    before: &BTreeMap<String, f64>,
    after: &BTreeMap<String, f64>,
) -> BTreeMap<String, f64> {
    after
        .iter()
        .filter_map(|(k, v)| {
            let d = v - before.get(k).copied().unwrap_or(0.0);
            (d != 0.0 && !k.contains("_bucket")).then(|| (k.clone(), round2(d)))
        })
        .collect()
}

impl Env {
    /// Creates the users and conversations, starts the nodes and connects
    /// every user.
    pub(crate) async fn load(
        &mut self,
        name: &str,
        shape: Shape,
        count: usize,
        peer: bool,
    ) -> Res<Load> {
        let Shape {
            users,
            convs,
            members: k,
        } = shape;
        self.db.fresh().await?;
        // Parley: users with tokens and stored conversations. The peer:
        // user names and rooms "c0", "c1", … with the same membership.
        let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
        let people: Vec<String> = if peer {
            for c in 0..convs {
                let idx: Vec<usize> = (0..k.min(users)).map(|j| (c * k + j) % users).collect();
                groups.push((format!("c{c}"), idx));
            }
            (0..users).map(|i| format!("u{i}")).collect()
        } else {
            let fx = self.fixture().await?;
            let people = fx.users(users, name).await?;
            for c in 0..convs {
                let idx: Vec<usize> = (0..k.min(users)).map(|j| (c * k + j) % users).collect();
                let ids: Vec<UserId> = idx.iter().map(|i| people[*i].0).collect();
                groups.push((fx.group(&ids, k.max(2)).await?.to_string(), idx));
            }
            people.into_iter().map(|(_, t)| t).collect()
        };
        let mut rooms_of: Vec<Vec<String>> = vec![Vec::new(); users];
        for (room, idx) in &groups {
            for i in idx {
                rooms_of[*i].push(room.clone());
            }
        }
        let nodes = self.start(count, users + 100, peer)?;
        let urls = nodes.urls();
        let shared = Arc::new(Shared {
            receipts: (0..MAX_MESSAGES).map(|_| AtomicU32::new(0)).collect(),
            hist: Mutex::new(
                Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).map_err(|e| e.to_string())?,
            ),
            measured_from: AtomicU64::new(u64::MAX),
            acks: AtomicU64::new(0),
            errors: AtomicU64::new(0),
        });
        let opened: Vec<_> = futures_util::stream::iter(people.iter().enumerate())
            .map(|(i, who)| {
                let url = urls[i % urls.len()].clone();
                let who = who.clone();
                let rooms = rooms_of[i].clone();
                async move {
                    if peer {
                        conn::open_peer(&url, &who, &rooms, Some(source(i / 20_000))).await
                    } else {
                        conn::open(&url, &who, Some(source(i / 20_000))).await
                    }
                }
            })
            .buffered(64)
            .collect()
            .await;
        let mut writers = Vec::new();
        for ws in opened {
            let ws = ws?;
            let sh = Arc::clone(&shared);
            writers.push(conn::run(ws, move |t| on_frame(&sh, t)));
        }
        let cpu = cpu::Parts::new(&nodes.pids());
        Ok(Load {
            nodes,
            peer,
            groups,
            writers,
            shared,
            next: 0,
            cpu,
        })
    }
}

/// Counts one received frame.
fn on_frame(sh: &Shared, t: &str) {
    if t.contains("\"message.created\"") || t.starts_with("42[\"message\"") {
        // "t:<scheduled ns>:<number>:x"
        let mut it = t.split("\"text\":\"t:").nth(1).unwrap_or("").split(':');
        let sched = it.next().and_then(|n| n.parse::<u64>().ok());
        let n = it.next().and_then(|n| n.parse::<u64>().ok());
        if let (Some(sched), Some(n)) = (sched, n) {
            if let Some(r) = sh.receipts.get(n as usize) {
                r.fetch_add(1, Ordering::Relaxed);
            }
            if n >= sh.measured_from.load(Ordering::Relaxed) {
                let us = now_ns().saturating_sub(sched) / 1000;
                if let Ok(mut h) = sh.hist.lock() {
                    let _ = h.record(us.max(1));
                }
            }
        }
    } else if t.starts_with("{\"type\":\"result\"")
        || (t.starts_with("43") && !t.contains("\"error\""))
    {
        sh.acks.fetch_add(1, Ordering::Relaxed);
    } else if t.starts_with("{\"type\":\"error\"") || t.starts_with("43") {
        sh.errors.fetch_add(1, Ordering::Relaxed);
    }
}

impl Load {
    /// Sends at `rate` for `warmup`, then measures `window`, then waits up to
    /// `drain` for the deliveries of the measured messages.
    pub async fn step(
        &mut self,
        rate: u64,
        warmup: Duration,
        window: Duration,
        drain: Duration,
    ) -> Res<Step> {
        let rate = rate.max(1);
        let total = (rate as f64 * (warmup + window).as_secs_f64()).ceil() as u64;
        if self.next + total >= MAX_MESSAGES as u64 {
            return Err("the load sent its most messages; start a new one".into());
        }
        let warm = (rate as f64 * warmup.as_secs_f64()).ceil() as u64;
        let first = self.next;
        let measured = first + warm;
        let last = first + total;
        let errors0 = self.shared.errors.load(Ordering::Relaxed);
        let mut cpu0 = Vec::new();
        let mut metrics0 = None;
        self.shared.measured_from.store(measured, Ordering::Relaxed);
        if let Ok(mut h) = self.shared.hist.lock() {
            h.reset();
        }
        let period_ns = 1_000_000_000f64 / rate as f64;
        let t0 = now_ns();
        let i0 = Instant::now();
        let mut window_start = i0;
        let mut acks_at_window = self.shared.acks.load(Ordering::Relaxed);
        for n in first..last {
            let k = n - first;
            if n == measured {
                window_start = Instant::now();
                acks_at_window = self.shared.acks.load(Ordering::Relaxed);
                cpu0 = self.cpu.sample();
                // Scraped on another thread: a blocking read here would
                // hold the sends that are due (and the peer never answers).
                let (ports, served) = self.nodes.scraper();
                metrics0 = Some(tokio::task::spawn_blocking(move || {
                    crate::nodes::scrape(&ports, served)
                }));
            }
            let offset = (k as f64 * period_ns) as u64;
            let due = i0 + Duration::from_nanos(offset);
            tokio::time::sleep_until(due.into()).await;
            let sched = t0 + offset;
            let (conv, members) = &self.groups[(n as usize) % self.groups.len()];
            let who = members[(n as usize / self.groups.len()) % members.len()];
            let frame = if self.peer {
                format!("421[\"send\",{{\"room\":\"{conv}\",\"text\":\"t:{sched}:{n}:x\"}}]")
            } else {
                format!(
                    "{{\"id\":\"{n}\",\"type\":\"message.send\",\"conversation_id\":\"{conv}\",\"text\":\"t:{sched}:{n}:x\"}}"
                )
            };
            let _ = self.writers[who].send(frame);
        }
        // The window ends when its last message is due.
        let window_end = i0 + Duration::from_nanos((total as f64 * period_ns) as u64);
        tokio::time::sleep_until(window_end.into()).await;
        let secs = window_end
            .duration_since(window_start)
            .as_secs_f64()
            .max(1e-3);
        let acks = self.shared.acks.load(Ordering::Relaxed) - acks_at_window;
        let cpu1 = self.cpu.sample();
        let metrics1 = counters(&self.nodes.metrics());
        let metrics0 = match metrics0 {
            Some(task) => counters(&task.await.unwrap_or_default()),
            None => BTreeMap::new(),
        };
        // Deliveries of the measured messages may still be on their way.
        let expect = |n: u64| self.groups[(n as usize) % self.groups.len()].1.len() as u64;
        let deadline = Instant::now() + drain;
        let (mut got, mut lost, mut dup);
        loop {
            got = 0;
            lost = 0;
            dup = 0;
            for n in measured..last {
                let r = u64::from(self.shared.receipts[n as usize].load(Ordering::Relaxed));
                let e = expect(n);
                got += r.min(e);
                lost += e.saturating_sub(r);
                dup += r.saturating_sub(e);
            }
            if lost == 0 || Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.next = last;
        let h = self.shared.hist.lock().map_err(|_| "histogram")?.clone();
        let ms = |v: u64| round2(v as f64 / 1000.0);
        // A lost frame is slower than any delivered one.
        let p99 = if lost > 0 {
            f64::INFINITY
        } else {
            ms(h.value_at_quantile(0.99))
        };
        let moved = moved(&metrics0, &metrics1);
        Ok(Step {
            rate,
            sent: last - measured,
            committed_per_s: acks as f64 / secs,
            deliveries_per_s: got as f64 / secs,
            p50_ms: ms(h.value_at_quantile(0.5)),
            p99_ms: p99,
            max_ms: ms(h.max()),
            lost,
            duplicates: dup,
            errors: self.shared.errors.load(Ordering::Relaxed) - errors0,
            cpu_s: self.cpu.seconds(&cpu0, &cpu1),
            moved,
        })
    }
}
