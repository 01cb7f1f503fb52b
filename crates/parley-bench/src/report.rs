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
    /// The database settings that change what the figures mean (see
    /// [`database_settings`]), written into every line.
    pub database: Value,
    /// The machine's pace, written into every line (`machine.pace_ms`).
    pub pace: crate::pace::Pace,
}

/// What every result line records of the database: `synchronous_commit`
/// (`scripts/bench.sh` starts PostgreSQL with it `off` unless
/// `PARLEY_BENCH_SYNCHRONOUS_COMMIT=on`): with it off a commit, and so
/// Parley's ack, returns before the commit's WAL is on disk, and the
/// figures of the two settings are not comparable.
pub async fn database_settings(url: &str) -> Value {
    let read = async {
        crate::setup::store(url, 1)?
            .setting("synchronous_commit")
            .await
            .map_err(|e| e.to_string())
    };
    match read.await {
        Ok(value) => json!({ "synchronous_commit": value }),
        Err(e) => {
            eprintln!("parley-bench: cannot read the database's settings: {e}");
            json!({ "synchronous_commit": "unknown" })
        }
    }
}

/// A result line's `synchronous_commit`; lines from before it was recorded
/// ran with it `off` (scripts/bench.sh has always started PostgreSQL so).
pub fn synchronous_commit(row: &Value) -> &str {
    row["database"]["synchronous_commit"]
        .as_str()
        .unwrap_or("off")
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
            "database": self.database,
            "machine": {"pace_ms": self.pace.probe_ms()},
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

    /// Adds one line per run (`<name>-run`, with its index) and the
    /// summary line `<name>`: the figures of the median run by `key` (ties
    /// by `tie`), each of `keys` replaced by its median over the runs with
    /// `<key>_min` and `<key>_max` beside it, and `runs`; each of
    /// `from_first` is run 1's (a figure only the first run measures whole).
    #[allow(clippy::too_many_arguments)]
    pub fn add_runs(
        &mut self,
        out: &str,
        name: &str,
        target: &str,
        nodes: usize,
        params: Value,
        runs: Vec<Value>,
        keys: &[&str],
        from_first: &[&str],
    ) -> Res<()> {
        for (i, figures) in runs.iter().enumerate() {
            let mut p = params.clone();
            p["run"] = json!(i + 1);
            self.add(
                out,
                &format!("{name}-run"),
                target,
                nodes,
                p,
                figures.clone(),
            )?;
        }
        let mut summary = summarize(&runs, keys);
        if let Some(first) = runs.first() {
            for key in from_first {
                summary[*key] = first[*key].clone();
            }
        }
        self.add(out, name, target, nodes, params, summary)
    }

    pub fn table(&self) {
        if let Some(sync) = self.database["synchronous_commit"].as_str() {
            println!("\nPostgreSQL synchronous_commit={sync}");
        }
        let paces: Vec<f64> = self
            .rows
            .iter()
            .filter_map(|r| r["machine"]["pace_ms"].as_f64())
            .collect();
        if let (Some(lo), Some(hi)) = (
            paces.iter().copied().reduce(f64::min),
            paces.iter().copied().reduce(f64::max),
        ) {
            println!("machine pace {lo} … {hi} ms (a fixed one-core workload; lower is faster)");
        }
        println!(
            "\n{:<8} {:<7} {:>5}  figures",
            "scenario", "target", "nodes"
        );
        for r in self.rows.iter().filter(|r| !is_run(r)) {
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
        for p in self
            .rows
            .iter()
            .filter(|r| r["target"] == "parley" && !is_run(r))
        {
            let same = |q: &&Value| {
                // Capacity rows of chat and fan-out differ by workload.
                !is_run(q)
                    && q["target"] == "peer"
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

/// A line of one run behind a median.
fn is_run(r: &Value) -> bool {
    r["scenario"].as_str().is_some_and(|s| s.ends_with("-run"))
}

fn num(v: &Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or(0.0)
}

/// The median run's figures by the first key, every key's median with its
/// min and max, and the number of runs.
pub fn summarize(runs: &[Value], keys: &[&str]) -> Value {
    let Some(first) = keys.first() else {
        return json!({});
    };
    let mut order: Vec<&Value> = runs.iter().collect();
    order.sort_by(|a, b| num(a, first).total_cmp(&num(b, first)));
    let mut out = order
        .get(order.len() / 2)
        .map(|v| (*v).clone())
        .unwrap_or_else(|| json!({}));
    for key in keys {
        let mut vals: Vec<f64> = runs.iter().map(|r| num(r, key)).collect();
        vals.sort_by(f64::total_cmp);
        if let (Some(lo), Some(hi)) = (vals.first(), vals.last()) {
            out[*key] = json!(vals[vals.len() / 2]);
            out[format!("{key}_min")] = json!(lo);
            out[format!("{key}_max")] = json!(hi);
        }
    }
    out["runs"] = json!(runs.len());
    out
}

#[cfg(test)]
mod tests {
    use super::summarize;
    use serde_json::json;

    #[test]
    fn the_summary_is_the_median_with_its_range() {
        let runs = [
            json!({"max_rate": 3000, "p99_ms": 20.0, "steps": [1]}),
            json!({"max_rate": 2250, "p99_ms": 30.0, "steps": [2]}),
            json!({"max_rate": 3375, "p99_ms": 10.0, "steps": [3]}),
        ];
        let s = summarize(&runs, &["max_rate"]);
        assert_eq!(s["max_rate"], 3000.0);
        assert_eq!(
            (s["max_rate_min"].clone(), s["max_rate_max"].clone()),
            (json!(2250.0), json!(3375.0))
        );
        assert_eq!(s["steps"], json!([1]), "the median run's own figures");
        assert_eq!(s["runs"], 3);
    }
}
