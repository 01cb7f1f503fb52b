//! Hold N idle sessions: server memory per session and connect rate.

use crate::cpu;
use crate::report::Res;
use crate::{source, Env};
use serde_json::json;
use std::io::BufRead;
use std::time::{Duration, Instant};

/// Open files a node keeps for other than sessions (parley-server's
/// `open_files::SPARE`; the bench does not build the server's crate).
const NODE_SPARE_FILES: u64 = 1024;

impl Env {
    /// `cli.runs()` runs of each target (node count, and whether it is the
    /// peer), the targets by turns within each round: the machine's pace
    /// drifts over minutes, and the connect rates of the targets are
    /// compared with each other. The headline is the median memory per
    /// session and connect rate of each.
    pub(crate) async fn idle(
        &mut self,
        sessions: usize,
        targets: &[(usize, bool)],
        hold: u64,
    ) -> Res<()> {
        let mut runs = vec![Vec::new(); targets.len()];
        for _ in 0..self.cli.runs() {
            for (i, &(count, peer)) in targets.iter().enumerate() {
                runs[i].push(self.idle_run(sessions, count, hold, peer).await?);
            }
        }
        let out = self.cli.out.clone();
        for (&(count, peer), runs) in targets.iter().zip(runs) {
            self.report.add_runs(
                &out,
                "idle",
                if peer { "peer" } else { "parley" },
                count,
                json!({"sessions": sessions}),
                runs,
                &["kib_per_session", "connect_per_s"],
                &[],
            )?;
        }
        Ok(())
    }

    async fn idle_run(
        &mut self,
        sessions: usize,
        count: usize,
        hold: u64,
        peer: bool,
    ) -> Res<serde_json::Value> {
        const PER_WORKER: usize = 15_000;
        const TENANT_SESSIONS: usize = 2_000;
        let per_node = sessions.div_ceil(count) + 100;
        if let Ok((_, hard)) = rlimit::Resource::NOFILE.get() {
            // A node (which inherits this limit) refuses sessions beyond
            // it: the rate would count refusals.
            if per_node as u64 + NODE_SPARE_FILES > hard {
                return Err(format!(
                    "{per_node} sessions per node need more open files than this machine allows \
                     (hard limit {hard}): use more --nodes"
                ));
            }
        }
        let per_user = 10;
        self.db.fresh().await?;
        let users: Vec<String> = if peer {
            (0..sessions.div_ceil(per_user))
                .map(|i| format!("u{i}"))
                .collect()
        } else {
            // Sessions of many tenants, as on a shared server: one subscriber
            // may hold only ws.max_connections_per_subscriber of a node's.
            let mut tokens = Vec::new();
            let users = sessions.div_ceil(per_user);
            while tokens.len() < users {
                let n = (users - tokens.len()).min(TENANT_SESSIONS / per_user);
                let fx = self.fixture().await?;
                tokens.extend(fx.users(n, "idle").await?.into_iter().map(|(_, t)| t));
            }
            tokens
        };
        let nodes = self.start(count, per_node, peer)?;
        let urls = nodes.urls();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let before: u64 = nodes.rss_kib().iter().sum();
        let metrics0 = super::load::counters(&nodes.metrics());
        let cpu = cpu::Parts::new(&nodes.pids());
        let cpu0 = cpu.sample();
        let started = Instant::now();
        // Each worker process holds up to PER_WORKER sessions (one process
        // may not open 20 000 files here), from its own source address.
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut workers = Vec::new();
        for (w, start) in (0..sessions).step_by(PER_WORKER).enumerate() {
            let end = (start + PER_WORKER).min(sessions);
            let file =
                std::env::temp_dir().join(format!("parley-bench-{}-{w}", std::process::id()));
            let lines: String = (start..end)
                .map(|i| format!("{}\t{}\n", urls[i % urls.len()], users[i / per_user]))
                .collect();
            std::fs::write(&file, lines).map_err(|e| e.to_string())?;
            let child = std::process::Command::new(&exe)
                .args(["--database-url", &self.db.url(), "worker", "--file"])
                .arg(&file)
                .args(["--source", &source(w).to_string()])
                .args(if peer { &["--peer"][..] } else { &[][..] })
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .map_err(|e| e.to_string())?;
            workers.push((child, end - start));
        }
        let mut connected = 0usize;
        let mut failed = 0usize;
        for (child, _) in &mut workers {
            let out = child.stdout.take().ok_or("worker stdout")?;
            for line in std::io::BufReader::new(out).lines() {
                let line = line.map_err(|e| e.to_string())?;
                if let Some(n) = line.strip_prefix("READY ") {
                    let (ok, bad) = n.split_once(' ').unwrap_or((n, "0"));
                    connected += ok.parse::<usize>().unwrap_or(0);
                    failed += bad.parse::<usize>().unwrap_or(0);
                    break;
                }
            }
        }
        let took = started.elapsed().as_secs_f64();
        // What the connects cost each part; the client is the worker
        // processes (they were born after the first sample).
        let mut cpu_s = cpu.seconds(&cpu0, &cpu.sample());
        let workers_s: f64 = workers
            .iter()
            .map(|(c, _)| cpu::process_seconds(c.id()))
            .sum();
        if let Some(c) = cpu_s.get_mut("client") {
            *c = ((*c + workers_s) * 100.0).round() / 100.0;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        // What the connects moved (presence announcements, bus traffic).
        let metrics = super::load::moved(&metrics0, &super::load::counters(&nodes.metrics()));
        let rss = nodes.rss_kib();
        let after: u64 = rss.iter().sum();
        let per_session = if connected > 0 {
            (after.saturating_sub(before)) as f64 / connected as f64
        } else {
            0.0
        };
        tokio::time::sleep(Duration::from_secs(hold)).await;
        for (mut child, _) in workers {
            drop(child.stdin.take());
            let _ = child.wait();
        }
        Ok(json!({
            "connected": connected, "failed": failed,
            "connect_per_s": (connected as f64 / took).round(),
            "connect_cpu_s": cpu_s,
            "server_rss_mib": (after as f64 / 1024.0 * 10.0).round() / 10.0,
            "kib_per_session": (per_session * 100.0).round() / 100.0,
            "metrics": metrics,
        }))
    }
}
