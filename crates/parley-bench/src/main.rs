//! parley-bench: drives real `parley` nodes on loopback, bounded in count
//! and time, and reports a table plus one JSON line per scenario appended to
//! `bench/results/results.jsonl`.
//!
//! Scenarios: `idle` (hold N sessions; server memory per session, connect
//! rate), `chat` (U users in C conversations of K members, open-loop rate R
//! for D seconds; committed/s, deliveries/s, latency), `fanout` (one
//! conversation of M members), `storm` (all sessions drop and resume at once;
//! time until live, messages lost). `standard` runs a small set of all four
//! on 1 node and on 2 nodes behind Redis.

mod conn;
mod nodes;
mod setup;

use clap::{Parser, Subcommand};
use futures_util::StreamExt;
use hdrhistogram::Histogram;
use nodes::{NodeOptions, Nodes};
use parley_core::{ConversationId, UserId};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Parser)]
#[command(name = "parley-bench", about = "Benchmark of Parley on loopback")]
struct Cli {
    /// PostgreSQL the nodes use (a database for the bench alone).
    #[arg(long, env = "PARLEY_BENCH_DATABASE_URL")]
    database_url: String,
    /// Redis for runs with more than one node.
    #[arg(
        long,
        env = "PARLEY_BENCH_REDIS_URL",
        default_value = "redis://127.0.0.1:6379"
    )]
    redis_url: String,
    /// The parley binary.
    #[arg(long, env = "PARLEY_BIN", default_value = "target/release/parley")]
    bin: String,
    /// Where results.jsonl is appended.
    #[arg(long, default_value = "bench/results")]
    out: String,
    /// The peer's directory (Node.js socket.io server).
    #[arg(long, default_value = "bench/peers/socketio")]
    peer_dir: String,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Clone)]
enum Cmd {
    Idle {
        #[arg(long, default_value_t = 10_000)]
        sessions: usize,
        #[arg(long, default_value_t = 1)]
        nodes: usize,
        /// Seconds to hold the sessions after all are connected.
        #[arg(long, default_value_t = 5)]
        hold: u64,
        /// Measure the socket.io peer instead of Parley.
        #[arg(long)]
        peer: bool,
    },
    Chat {
        #[arg(long, default_value_t = 1000)]
        users: usize,
        #[arg(long, default_value_t = 100)]
        conversations: usize,
        #[arg(long, default_value_t = 10)]
        members: usize,
        /// Messages per second, open loop.
        #[arg(long, default_value_t = 1000)]
        rate: u64,
        #[arg(long, default_value_t = 10)]
        duration: u64,
        #[arg(long, default_value_t = 1)]
        nodes: usize,
        #[arg(long)]
        peer: bool,
    },
    Fanout {
        #[arg(long, default_value_t = 1000)]
        members: usize,
        #[arg(long, default_value_t = 100)]
        rate: u64,
        #[arg(long, default_value_t = 10)]
        duration: u64,
        #[arg(long, default_value_t = 1)]
        nodes: usize,
        #[arg(long)]
        peer: bool,
    },
    Storm {
        #[arg(long, default_value_t = 2000)]
        sessions: usize,
        #[arg(long, default_value_t = 100)]
        conversations: usize,
        #[arg(long, default_value_t = 1)]
        nodes: usize,
    },
    /// The standard small set: every scenario on 1 and on 2 nodes.
    Standard,
    /// Internal: holds a slice of idle sessions for `idle`.
    #[command(hide = true)]
    Worker {
        #[arg(long)]
        file: String,
        #[arg(long)]
        source: Ipv4Addr,
        #[arg(long)]
        peer: bool,
    },
}

type Res<T> = Result<T, String>;

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn commit() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".into())
}

struct Report {
    rows: Vec<Value>,
}

impl Report {
    fn add(
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

    fn table(&self) {
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
                q["target"] == "peer" && q["scenario"] == p["scenario"] && q["nodes"] == p["nodes"]
            };
            let Some(q) = self.rows.iter().find(same) else {
                continue;
            };
            if !header {
                println!("\nParley / peer (rates: higher is better; latency and memory: lower is better)");
                header = true;
            }
            let keys = [
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
                "{:<8} {:>5}  {}",
                p["scenario"].as_str().unwrap_or(""),
                p["nodes"],
                parts.join("  ")
            );
        }
    }
}

/// 127.0.0.2, 127.0.0.3, …: each source address has its own ephemeral ports.
fn source(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, (i / 250) as u8, (2 + i % 250) as u8))
}

struct Env {
    cli: Cli,
    report: Report,
}

impl Env {
    async fn fixture(&self) -> Res<setup::Fixture> {
        let store = parley_store::Store::connect_lazy(&parley_store::StoreOptions {
            url: self.cli.database_url.clone(),
            max_connections: 32,
            acquire_timeout: Duration::from_secs(30),
        })
        .map_err(|e| e.to_string())?;
        store.migrate().await.map_err(|e| e.to_string())?;
        setup::fixture(store).await
    }

    fn start(&self, count: usize, max_sessions: usize, peer: bool) -> Res<Nodes> {
        if peer {
            let redis = if count > 1 {
                Some(self.cli.redis_url.as_str())
            } else {
                None
            };
            return Nodes::start_peer(&self.cli.peer_dir, &self.cli.database_url, redis, count);
        }
        self.nodes(count, max_sessions)
    }

    fn nodes(&self, count: usize, max_sessions: usize) -> Res<Nodes> {
        Nodes::start(&NodeOptions {
            bin: &self.cli.bin,
            database_url: &self.cli.database_url,
            redis_url: if count > 1 {
                Some(&self.cli.redis_url)
            } else {
                None
            },
            count,
            max_sessions,
        })
    }

    async fn idle(&mut self, sessions: usize, count: usize, hold: u64, peer: bool) -> Res<()> {
        const PER_WORKER: usize = 15_000;
        let per_user = 10;
        let users: Vec<String> = if peer {
            (0..sessions.div_ceil(per_user))
                .map(|i| format!("u{i}"))
                .collect()
        } else {
            let fx = self.fixture().await?;
            fx.users(sessions.div_ceil(per_user), "idle")
                .await?
                .into_iter()
                .map(|(_, t)| t)
                .collect()
        };
        let per_node = sessions.div_ceil(count) + 100;
        let nodes = self.start(count, per_node, peer)?;
        let urls = nodes.urls();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let before: u64 = nodes.rss_kib().iter().sum();
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
                .args(["--database-url", &self.cli.database_url, "worker", "--file"])
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
        tokio::time::sleep(Duration::from_secs(2)).await;
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
        self.report.add(
            &self.cli.out,
            "idle",
            if peer { "peer" } else { "parley" },
            count,
            json!({"sessions": sessions}),
            json!({
                "connected": connected, "failed": failed,
                "connect_per_s": (connected as f64 / took).round(),
                "server_rss_mib": (after as f64 / 1024.0 * 10.0).round() / 10.0,
                "kib_per_session": (per_session * 100.0).round() / 100.0,
            }),
        )
    }

    /// U users, C conversations of K members, R messages/s for D seconds.
    #[allow(clippy::too_many_arguments)]
    async fn chat(
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
        let hist = Arc::new(Mutex::new(
            Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).map_err(|e| e.to_string())?,
        ));
        let delivered = Arc::new(AtomicU64::new(0));
        let committed = Arc::new(AtomicU64::new(0));
        let errors = Arc::new(AtomicU64::new(0));
        let mut writers = Vec::new();
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
        for ws in opened {
            let ws = ws?;
            let (hist, delivered, committed, errors) = (
                hist.clone(),
                delivered.clone(),
                committed.clone(),
                errors.clone(),
            );
            writers.push(conn::run(ws, move |t| {
                if t.contains("\"message.created\"") || t.starts_with("42[\"message\"") {
                    if let Some(ts) = t
                        .split("\"text\":\"t:")
                        .nth(1)
                        .and_then(|r| r.split(':').next())
                        .and_then(|n| n.parse::<u64>().ok())
                    {
                        let us = now_ns().saturating_sub(ts) / 1000;
                        if let Ok(mut h) = hist.lock() {
                            let _ = h.record(us.max(1));
                        }
                        delivered.fetch_add(1, Ordering::Relaxed);
                    }
                } else if t.starts_with("{\"type\":\"result\"")
                    || (t.starts_with("43") && !t.contains("\"error\""))
                {
                    committed.fetch_add(1, Ordering::Relaxed);
                } else if t.starts_with("{\"type\":\"error\"") || t.starts_with("43") {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
        // Open loop: a tick every 1/R s sends one message, whatever the
        // answers to the previous ones.
        let mut tick = tokio::time::interval(Duration::from_nanos(1_000_000_000 / rate.max(1)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let started = Instant::now();
        let mut sent = 0u64;
        while started.elapsed() < Duration::from_secs(secs) {
            tick.tick().await;
            let (conv, members) = &groups[(sent as usize) % groups.len()];
            let who = members[(sent as usize / groups.len()) % members.len()];
            let frame = if peer {
                format!(
                    "421[\"send\",{{\"room\":\"{conv}\",\"text\":\"t:{}:x\"}}]",
                    now_ns()
                )
            } else {
                format!(
                    "{{\"id\":\"{sent}\",\"type\":\"message.send\",\"conversation_id\":\"{conv}\",\"text\":\"t:{}:x\"}}",
                    now_ns()
                )
            };
            let _ = writers[who].send(frame);
            sent += 1;
        }
        let elapsed = started.elapsed().as_secs_f64();
        tokio::time::sleep(Duration::from_secs(3)).await;
        let h = hist.lock().map_err(|_| "histogram")?.clone();
        let ms = |q: f64| (h.value_at_quantile(q) as f64 / 1000.0 * 100.0).round() / 100.0;
        drop(writers);
        self.report.add(
            &self.cli.out,
            name,
            if peer { "peer" } else { "parley" },
            count,
            json!({"users": users, "conversations": convs, "members": k, "rate": rate, "duration_s": secs}),
            json!({
                "sent": sent,
                "committed_per_s": (committed.load(Ordering::Relaxed) as f64 / elapsed).round(),
                "deliveries_per_s": (delivered.load(Ordering::Relaxed) as f64 / elapsed).round(),
                "p50_ms": ms(0.5), "p95_ms": ms(0.95), "p99_ms": ms(0.99),
                "max_ms": (h.max() as f64 / 1000.0 * 100.0).round() / 100.0,
                "errors": errors.load(Ordering::Relaxed),
            }),
        )
    }

    async fn storm(&mut self, sessions: usize, convs: usize, count: usize) -> Res<()> {
        let fx = self.fixture().await?;
        let people = fx.users(sessions, "storm").await?;
        let per = sessions.div_ceil(convs).max(2);
        let mut conv_of = vec![ConversationId::new_random(); sessions];
        let mut convs_list = Vec::new();
        for c in 0..convs {
            let idx: Vec<usize> = (c * per..((c + 1) * per).min(sessions)).collect();
            if idx.is_empty() {
                break;
            }
            let id = fx
                .group(
                    &idx.iter().map(|i| people[*i].0).collect::<Vec<_>>(),
                    per.max(2),
                )
                .await?;
            for i in &idx {
                conv_of[*i] = id;
            }
            convs_list.push((id, idx));
        }
        let mut base = HashMap::new();
        for (id, idx) in &convs_list {
            let seqs = fx
                .store
                .member_seqs(people[idx[0]].0)
                .await
                .map_err(|e| e.to_string())?;
            base.insert(
                *id,
                seqs.into_iter()
                    .find(|s| s.conversation_id == *id)
                    .map(|s| s.last_seq)
                    .unwrap_or(0),
            );
        }
        let nodes = self.nodes(count, sessions + 100)?;
        let urls = nodes.urls();
        let (storm_tx, _) = tokio::sync::broadcast::channel::<()>(1);
        let (stop_tx, _) = tokio::sync::broadcast::channel::<()>(1);
        let seen: Arc<Vec<Mutex<HashSet<i64>>>> =
            Arc::new((0..sessions).map(|_| Mutex::new(HashSet::new())).collect());
        let live_again: Arc<Mutex<Vec<f64>>> = Arc::new(Mutex::new(Vec::new()));
        let storm_at = Arc::new(Mutex::new(Instant::now()));
        let mut tasks = Vec::new();
        for (i, (_, token)) in people.iter().enumerate() {
            let url = urls[i % urls.len()].clone();
            let token = token.clone();
            let conv = conv_of[i];
            let first = base.get(&conv).copied().unwrap_or(0);
            let (mut storm_rx, mut stop_rx) = (storm_tx.subscribe(), stop_tx.subscribe());
            let (seen, live_again, storm_at) = (seen.clone(), live_again.clone(), storm_at.clone());
            tasks.push(tokio::spawn(async move {
                let src = Some(source(i / 20_000));
                let mut ws = conn::open(&url, &token, src).await?;
                let record = |t: &str| {
                    if t.contains("\"message.created\"") {
                        if let Ok(v) = serde_json::from_str::<Value>(t) {
                            if let Some(s) = v["seq"].as_i64() {
                                if let Ok(mut set) = seen[i].lock() {
                                    set.insert(s);
                                }
                            }
                        }
                    }
                };
                let mut stormed = false;
                loop {
                    tokio::select! {
                        m = ws.next() => match m {
                            Some(Ok(tokio_tungstenite::tungstenite::Message::Text(t))) => record(&t),
                            Some(Ok(_)) => {}
                            _ => return Err::<(), String>("connection lost".into()),
                        },
                        _ = storm_rx.recv(), if !stormed => {
                            stormed = true;
                            drop(ws);
                            ws = conn::open(&url, &token, src).await?;
                            let last = seen[i].lock().map(|s| s.iter().copied().max().unwrap_or(first)).unwrap_or(first);
                            let frame = format!("{{\"id\":\"r\",\"type\":\"resume\",\"conversations\":{{\"{conv}\":{last}}}}}");
                            futures_util::SinkExt::send(&mut ws, tokio_tungstenite::tungstenite::Message::text(frame)).await.map_err(|e| e.to_string())?;
                            loop {
                                match ws.next().await {
                                    Some(Ok(tokio_tungstenite::tungstenite::Message::Text(t))) => {
                                        if t.starts_with("{\"type\":\"result\"") { break; }
                                        record(&t);
                                    }
                                    Some(Ok(_)) => {}
                                    _ => return Err("lost during resume".into()),
                                }
                            }
                            let at = *storm_at.lock().map_err(|_| "lock")?;
                            live_again.lock().map_err(|_| "lock")?.push(at.elapsed().as_secs_f64());
                        }
                        _ = stop_rx.recv() => return Ok(()),
                    }
                }
            }));
        }
        // A sender (one member per conversation, round robin) at 100/s.
        let mut sender_ws = Vec::new();
        for (_, idx) in &convs_list {
            sender_ws.push(conn::run(
                conn::open(&urls[0], &people[idx[0]].1, Some(source(200))).await?,
                |_| {},
            ));
        }
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        let mut n = 0u64;
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(6) {
            tick.tick().await;
            if n == 200 {
                *storm_at.lock().map_err(|_| "lock")? = Instant::now();
                let _ = storm_tx.send(());
            }
            let c = (n as usize) % convs_list.len();
            let frame = format!("{{\"id\":\"{n}\",\"type\":\"message.send\",\"conversation_id\":\"{}\",\"text\":\"t:{}:s\"}}", convs_list[c].0, now_ns());
            let _ = sender_ws[c].send(frame);
            n += 1;
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        let _ = stop_tx.send(());
        let mut failures = 0;
        for t in tasks {
            if !matches!(t.await, Ok(Ok(()))) {
                failures += 1;
            }
        }
        // Every message committed after the start must have reached every
        // member exactly once (sets hold unique seqs).
        let mut finals = HashMap::new();
        for (id, idx) in &convs_list {
            let seqs = fx
                .store
                .member_seqs(people[idx[0]].0)
                .await
                .map_err(|e| e.to_string())?;
            finals.insert(
                *id,
                seqs.into_iter()
                    .find(|s| s.conversation_id == *id)
                    .map(|s| s.last_seq)
                    .unwrap_or(0),
            );
        }
        let mut lost = 0i64;
        for i in 0..sessions {
            let conv = conv_of[i];
            let expected =
                finals.get(&conv).copied().unwrap_or(0) - base.get(&conv).copied().unwrap_or(0);
            let got = seen[i].lock().map(|s| s.len() as i64).unwrap_or(0);
            lost += (expected - got).max(0);
        }
        let times = live_again.lock().map_err(|_| "lock")?.clone();
        let all_live = times.iter().copied().fold(0.0, f64::max);
        self.report.add(
            &self.cli.out,
            "storm",
            "parley",
            count,
            json!({"sessions": sessions, "conversations": convs_list.len()}),
            json!({
                "resumed": times.len(), "failed": failures,
                "all_live_after_s": (all_live * 100.0).round() / 100.0,
                "messages_sent": n, "lost": lost,
            }),
        )
    }
}

/// Worker process for `idle`: opens its slice, reports, holds until stdin
/// closes.
async fn worker(file: &str, source: Ipv4Addr, peer: bool) -> Res<()> {
    let text = std::fs::read_to_string(file).map_err(|e| e.to_string())?;
    let pairs: Vec<(String, String)> = text
        .lines()
        .filter_map(|l| {
            l.split_once('\t')
                .map(|(a, b)| (a.to_owned(), b.to_owned()))
        })
        .collect();
    let results: Vec<_> = futures_util::stream::iter(pairs)
        .map(|(url, who)| async move {
            let src = Some(IpAddr::V4(source));
            if peer {
                conn::open_peer(&url, &who, &[], src).await
            } else {
                conn::open(&url, &who, src).await
            }
        })
        .buffer_unordered(256)
        .collect()
        .await;
    let mut held = Vec::new();
    let mut failed = 0;
    for r in results {
        match r {
            Ok(ws) => held.push(conn::run(ws, |_| {})),
            Err(e) => {
                if failed == 0 {
                    eprintln!("worker: {e}");
                }
                failed += 1;
            }
        }
    }
    println!("READY {} {failed}", held.len());
    let _ = std::io::stdout().flush();
    let _ = std::fs::remove_file(file);
    tokio::task::spawn_blocking(|| {
        let mut s = String::new();
        while std::io::stdin()
            .read_line(&mut s)
            .map(|n| n > 0)
            .unwrap_or(false)
        {}
    })
    .await
    .map_err(|e| e.to_string())?;
    drop(held);
    Ok(())
}

fn raise_fd_limit() {
    if let Ok((_, hard)) = rlimit::Resource::NOFILE.get() {
        let _ = rlimit::Resource::NOFILE.set(hard, hard);
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    raise_fd_limit();
    let cli = Cli::parse();
    let cmd = cli.cmd.clone();
    if let Cmd::Worker { file, source, peer } = &cmd {
        return match worker(file, *source, *peer).await {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("worker: {e}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    let mut env = Env {
        cli,
        report: Report { rows: Vec::new() },
    };
    let result = match cmd {
        Cmd::Idle {
            sessions,
            nodes,
            hold,
            peer,
        } => env.idle(sessions, nodes, hold, peer).await,
        Cmd::Chat {
            users,
            conversations,
            members,
            rate,
            duration,
            nodes,
            peer,
        } => {
            env.chat(
                "chat",
                users,
                conversations,
                members,
                rate,
                duration,
                nodes,
                peer,
            )
            .await
        }
        Cmd::Fanout {
            members,
            rate,
            duration,
            nodes,
            peer,
        } => {
            env.chat("fanout", members, 1, members, rate, duration, nodes, peer)
                .await
        }
        Cmd::Storm {
            sessions,
            conversations,
            nodes,
        } => env.storm(sessions, conversations, nodes).await,
        Cmd::Standard => standard(&mut env).await,
        Cmd::Worker { .. } => Ok(()),
    };
    env.report.table();
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("parley-bench: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn standard(env: &mut Env) -> Res<()> {
    for nodes in [1, 2] {
        for peer in [false, true] {
            env.idle(10_000, nodes, 2, peer).await?;
            env.chat("chat", 1000, 100, 10, 1000, 10, nodes, peer)
                .await?;
            env.chat("fanout", 1000, 1, 1000, 100, 10, nodes, peer)
                .await?;
        }
        env.storm(2000, 100, nodes).await?;
    }
    Ok(())
}
