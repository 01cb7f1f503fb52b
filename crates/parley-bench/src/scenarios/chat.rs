//! Open-loop chat and fan-out: committed/s, deliveries/s, latency.

use crate::report::{now_ns, Res};
use crate::{conn, source, Env};
use futures_util::StreamExt;
use hdrhistogram::Histogram;
use parley_core::UserId;
use serde_json::json;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

impl Env {
    /// U users, C conversations of K members, R messages/s for D seconds.
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
}
