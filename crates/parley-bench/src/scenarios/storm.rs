//! Every session drops and resumes at once: time until live, messages lost.

use crate::report::{now_ns, Res};
use crate::{conn, source, Env};
use futures_util::StreamExt;
use parley_core::ConversationId;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

impl Env {
    pub(crate) async fn storm(&mut self, sessions: usize, convs: usize, count: usize) -> Res<()> {
        self.db.fresh().await?;
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
