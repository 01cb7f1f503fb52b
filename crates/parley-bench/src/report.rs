//! The results: the printed table and one JSON line per scenario in
//! `bench/results/results.jsonl`.

use serde_json::{json, Value};
use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

pub type Res<T> = Result<T, String>;

pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

pub fn commit() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".into())
}

pub struct Report {
    pub rows: Vec<Value>,
}

impl Report {
    pub fn add(
        &mut self,
        out: &str,
        name: &str,
        target: &str,
        nodes: usize,
        params: Value,
        figures: Value,
    ) -> Res<()> {
        let line = json!({
            "target": target,
            "scenario": name, "nodes": nodes, "params": params, "figures": figures,
            "commit": commit(), "at": chrono::Utc::now().to_rfc3339(),
        });
        std::fs::create_dir_all(out).map_err(|e| e.to_string())?;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(format!("{out}/results.jsonl"))
            .map_err(|e| e.to_string())?;
        writeln!(f, "{line}").map_err(|e| e.to_string())?;
        println!("{line}");
        self.rows.push(line);
        Ok(())
    }

    pub fn table(&self) {
        println!(
            "\n{:<8} {:<7} {:>5}  figures",
            "scenario", "target", "nodes"
        );
        for r in &self.rows {
            let figs = r["figures"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join("  ")
                })
                .unwrap_or_default();
            let (sc, tg) = (
                r["scenario"].as_str().unwrap_or(""),
                r["target"].as_str().unwrap_or(""),
            );
            println!("{sc:<8} {tg:<7} {:>5}  {figs}", r["nodes"]);
        }
        // Parley / peer, where both ran.
        let mut header = false;
        for p in self.rows.iter().filter(|r| r["target"] == "parley") {
            let same = |q: &&Value| {
                // Capacity rows of chat and fan-out differ by workload.
                q["target"] == "peer"
                    && q["scenario"] == p["scenario"]
                    && q["nodes"] == p["nodes"]
                    && q["params"]["workload"] == p["params"]["workload"]
            };
            let Some(q) = self.rows.iter().find(same) else {
                continue;
            };
            if !header {
                println!("\nParley / peer (rates: higher is better; latency and memory: lower is better)");
                header = true;
            }
            let keys = [
                "max_rate",
                "connect_per_s",
                "kib_per_session",
                "committed_per_s",
                "deliveries_per_s",
                "p50_ms",
                "p99_ms",
            ];
            let parts: Vec<String> = keys
                .iter()
                .filter_map(
                    |k| match (p["figures"][k].as_f64(), q["figures"][k].as_f64()) {
                        (Some(a), Some(b)) if b > 0.0 => Some(format!("{k} {:.2}", a / b)),
                        _ => None,
                    },
                )
                .collect();
            println!(
                "{:<8} {:<6} {:>5}  {}",
                p["scenario"].as_str().unwrap_or(""),
                p["params"]["workload"].as_str().unwrap_or(""),
                p["nodes"],
                parts.join("  ")
            );
        }
    }
}
