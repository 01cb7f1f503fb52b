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

/// The processes of a run, by part.
#[derive(Clone, Debug)]
pub struct Parts {
    parts: Vec<(String, Vec<u32>)>,
}

impl Parts {
    /// The nodes (by pid), every `postgres` and `redis-server` process of the
    /// machine (the bench script runs its own), and this process.
    pub fn new(nodes: &[u32]) -> Self {
        let mut parts = Vec::new();
        for (i, pid) in nodes.iter().enumerate() {
            parts.push((format!("node{}", i + 1), vec![*pid]));
        }
        parts.push(("postgres".into(), pids_named("postgres")));
        parts.push(("redis".into(), pids_named("redis-server")));
        parts.push(("client".into(), vec![std::process::id()]));
        Self { parts }
    }

    /// Ticks of each part now.
    pub fn sample(&self) -> Vec<u64> {
        self.parts
            .iter()
            .map(|(_, pids)| pids.iter().map(|p| ticks(*p)).sum())
            .collect()
    }

    /// CPU seconds of each part between two samples.
    pub fn seconds(&self, before: &[u64], after: &[u64]) -> BTreeMap<String, f64> {
        self.parts
            .iter()
            .zip(before.iter().zip(after))
            .map(|((name, _), (b, a))| {
                let s = a.saturating_sub(*b) as f64 / TICKS_PER_S;
                (name.clone(), (s * 100.0).round() / 100.0)
            })
            .collect()
    }
}
