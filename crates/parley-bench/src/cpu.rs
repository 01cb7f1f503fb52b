//! CPU seconds per process from `/proc`, so a reader sees what each part of
//! the run (nodes, PostgreSQL, Redis, the bench client itself) took on the
//! shared cores.

use std::collections::BTreeMap;

/// Clock ticks per second of `/proc/*/stat` (USER_HZ; 100 on Linux).
const TICKS_PER_S: f64 = 100.0;

fn ticks(pid: u32) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    // The command name may hold spaces: fields start after the last ')'.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return 0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line (11, 12 here).
    let get = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    get(11) + get(12)
}

/// CPU seconds a process has used since it started (0 once it is gone).
pub fn process_seconds(pid: u32) -> f64 {
    ticks(pid) as f64 / TICKS_PER_S
}

fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

fn pids_named(name: &str) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| comm(*pid) == name)
        .collect()
}

/// Where a part's processes come from.
#[derive(Clone, Debug)]
enum Source {
    Pids(Vec<u32>),
    /// Every process of this name at each sample: PostgreSQL starts a
    /// backend per new connection, and those count from their start.
    Named(&'static str),
}

/// Ticks of every process of each part at one moment.
pub type Sample = Vec<BTreeMap<u32, u64>>;

/// The processes of a run, by part.
#[derive(Clone, Debug)]
pub struct Parts {
    parts: Vec<(String, Source)>,
}

impl Parts {
    /// The nodes (by pid), every `postgres` and `redis-server` process of the
    /// machine (the bench script runs its own), and this process.
    pub fn new(nodes: &[u32]) -> Self {
        let mut parts = Vec::new();
        for (i, pid) in nodes.iter().enumerate() {
            parts.push((format!("node{}", i + 1), Source::Pids(vec![*pid])));
        }
        parts.push(("postgres".into(), Source::Named("postgres")));
        parts.push(("redis".into(), Source::Named("redis-server")));
        parts.push(("client".into(), Source::Pids(vec![std::process::id()])));
        Self { parts }
    }

    /// Ticks of each part's processes now.
    pub fn sample(&self) -> Sample {
        self.parts
            .iter()
            .map(|(_, source)| {
                let pids = match source {
                    Source::Pids(p) => p.clone(),
                    Source::Named(n) => pids_named(n),
                };
                pids.into_iter().map(|p| (p, ticks(p))).collect()
            })
            .collect()
    }

    /// CPU seconds of each part between two samples; a process born in
    /// between counts from its start.
    pub fn seconds(&self, before: &Sample, after: &Sample) -> BTreeMap<String, f64> {
        self.parts
            .iter()
            .zip(before.iter().zip(after))
            .map(|((name, _), (b, a))| {
                let t: u64 = a
                    .iter()
                    .map(|(pid, t)| t.saturating_sub(b.get(pid).copied().unwrap_or(0)))
                    .sum();
                let s = t as f64 / TICKS_PER_S;
                (name.clone(), (s * 100.0).round() / 100.0)
            })
            .collect()
    }
}
