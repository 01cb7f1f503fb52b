//! Chaos: 3 nodes behind nginx, thousands of sessions of the Rust client
//! (which reconnects and resumes by itself), steady traffic in groups and
//! dialogs, while a node is SIGKILLed and restarted every 20 s, Redis is
//! frozen for 5 s (SIGSTOP/SIGCONT) and PostgreSQL restarts once. At the end
//! every session's messages are compared with PostgreSQL: lost, duplicated,
//! out of order; and, per fault, how long until every session was live again
//! and the slowest delivery of what was sent in its window.

use crate::nodes::Nginx;
use crate::report::{now_ns, Res};
use crate::Env;
use futures_util::stream::{self, StreamExt};
use parley_client::{Client, Options, State};
use parley_core::protocol::{Event, NewMessage};
use parley_core::{ConversationId, UserId};
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One message as a session received it.
#[derive(Clone, Copy)]
struct Got {
    conv: ConversationId,
    seq: i64,
    sent_ns: u64,
    recv_ns: u64,
}

/// A fault and when it happened (seconds since the start of the traffic).
struct Fault {
    kind: String,
    at: f64,
    /// Seconds from its start until every session was live again (None: not
    /// before the next fault).
    live_again: Option<f64>,
}

/// Restart PostgreSQL: a shell command given by scripts/bench.sh.
const PG_RESTART_ENV: &str = "PARLEY_BENCH_PG_RESTART";
/// The pid file of the bench's Redis.
const REDIS_PID_ENV: &str = "PARLEY_BENCH_REDIS_PID_FILE";

fn signal(pid: &str, sig: &str) -> Res<()> {
    let ok = std::process::Command::new("kill")
        .args([sig, pid])
        .status()
        .map_err(|e| e.to_string())?
        .success();
    if ok {
        Ok(())
    } else {
        Err(format!("kill {sig} {pid} failed"))
    }
}

impl Env {
    pub(crate) async fn chaos(&mut self, sessions: usize, duration: u64, rate: u64) -> Res<()> {
        let redis_pid = std::env::var(REDIS_PID_ENV)
            .ok()
            .and_then(|f| std::fs::read_to_string(f).ok())
            .map(|p| p.trim().to_owned())
            .ok_or(format!(
                "{REDIS_PID_ENV} is not set: run scripts/bench.sh chaos"
            ))?;
        let pg_restart =
            std::env::var(PG_RESTART_ENV).map_err(|_| format!("{PG_RESTART_ENV} is not set"))?;
        self.db.fresh().await?;
        let fx = self.fixture().await?;
        let people = fx.users(sessions, "chaos").await?;
        // Half the users in groups of 10, the other half in dialogs.
        let mut convs: Vec<(ConversationId, Vec<usize>)> = Vec::new();
        let half = sessions / 2;
        for chunk in (0..half).collect::<Vec<_>>().chunks(10) {
            let ids: Vec<UserId> = chunk.iter().map(|i| people[*i].0).collect();
            convs.push((fx.group(&ids, 10).await?, chunk.to_vec()));
        }
        for pair in (half..sessions).collect::<Vec<_>>().chunks(2) {
            if let [a, b] = pair {
                convs.push((fx.dialog(people[*a].0, people[*b].0).await?, vec![*a, *b]));
            }
        }
        let mut nodes = self.nodes(3, sessions + 100)?;
        let nginx = Nginx::start(&nodes.ports)?;
        let url = nginx.ws_url();

        let mut conv_of: Vec<Vec<ConversationId>> = vec![Vec::new(); sessions];
        for (id, members) in &convs {
            for m in members {
                conv_of[*m].push(*id);
            }
        }
        let clients: Vec<Client> = stream::iter(people.iter().map(|(_, t)| t.clone()))
            .map(|token| {
                let url = url.clone();
                async move {
                    let mut o = Options::new(url, token);
                    o.max_backoff = Duration::from_secs(2);
                    Client::connect(o).await.map_err(|e| e.to_string())
                }
            })
            .buffered(64)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Res<_>>()?;
        // Resume covers the conversations from their state at the start.
        for (i, c) in clients.iter().enumerate() {
            for conv in &conv_of[i] {
                c.track(*conv, 0);
            }
        }
        let got: Arc<Vec<Mutex<Vec<Got>>>> =
            Arc::new((0..sessions).map(|_| Mutex::new(Vec::new())).collect());
        let (stop_tx, _) = tokio::sync::broadcast::channel::<()>(1);
        let mut readers = Vec::new();
        for (i, c) in clients.iter().enumerate() {
            let (c, got, mut stop) = (c.clone(), got.clone(), stop_tx.subscribe());
            readers.push(tokio::spawn(async move {
                loop {
                    tokio::select! {
                        ev = c.next_event(Duration::from_secs(3600)) => {
                            if let Some(Event::MessageCreated { conversation_id, seq, message }) = ev {
                                let sent_ns = message.text.strip_prefix("c:").and_then(|t| t.parse().ok()).unwrap_or(0);
                                if let Ok(mut g) = got[i].lock() {
                                    g.push(Got { conv: conversation_id, seq, sent_ns, recv_ns: now_ns() });
                                }
                            }
                        }
                        _ = stop.recv() => return,
                    }
                }
            }));
        }

        // Faults on a timeline, in their own task.
        let t0 = Instant::now();
        let faults: Arc<Mutex<Vec<Fault>>> = Arc::new(Mutex::new(Vec::new()));
        // Sessions not live, sampled every 100 ms for the whole run:
        // (seconds since the start, count).
        let not_live: Arc<Mutex<Vec<(f64, usize)>>> = Arc::new(Mutex::new(Vec::new()));
        let sampler = {
            let (states, not_live, mut stop) =
                (clients.clone(), not_live.clone(), stop_tx.subscribe());
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(100));
                loop {
                    tokio::select! {
                        _ = tick.tick() => {
                            let n = states.iter().filter(|c| c.state() != State::Live).count();
                            if let Ok(mut v) = not_live.lock() {
                                v.push((t0.elapsed().as_secs_f64(), n));
                            }
                        }
                        _ = stop.recv() => return,
                    }
                }
            })
        };
        let states: Vec<Client> = clients.clone();
        let all_live = move || states.iter().all(|c| c.state() == State::Live);
        let traffic = {
            let clients = clients.clone();
            let convs = convs.clone();
            let people_n = people.len();
            tokio::spawn(async move {
                let sem = Arc::new(tokio::sync::Semaphore::new(512));
                let mut tick =
                    tokio::time::interval(Duration::from_micros(1_000_000 / rate.max(1)));
                let mut sends = Vec::new();
                let mut n = 0usize;
                while t0.elapsed() < Duration::from_secs(duration) {
                    tick.tick().await;
                    let (conv, members) = &convs[n % convs.len()];
                    let who = members[(n / convs.len()) % members.len()];
                    let c = clients[who % people_n].clone();
                    let conv = *conv;
                    let Ok(permit) = Arc::clone(&sem).acquire_owned().await else {
                        break;
                    };
                    sends.push(tokio::spawn(async move {
                        let m = NewMessage {
                            text: format!("c:{}", now_ns()),
                            idempotency_key: Some(format!("k{n}")),
                            ..Default::default()
                        };
                        let r = c.send_reliably(conv, m, Duration::from_secs(90)).await.ok();
                        drop(permit);
                        r
                    }));
                    n += 1;
                }
                let mut acked = Vec::new();
                let mut unsent = 0;
                for s in sends {
                    match s.await {
                        Ok(Some(m)) => acked.push(m),
                        _ => unsent += 1,
                    }
                }
                (n, acked, unsent)
            })
        };
        // A node killed every 20 s; Redis frozen at 50 s, PostgreSQL
        // restarted at 70 s (between kills).
        let mut plan: Vec<(u64, &str)> = (1..)
            .map(|i| i * 20)
            .take_while(|t| *t < duration)
            .map(|t| (t, "kill"))
            .collect();
        if duration > 55 {
            plan.push((50, "redis"));
        }
        if duration > 75 {
            plan.push((70, "postgres"));
        }
        plan.sort();
        let mut k = 0usize;
        for (n, (at, what)) in plan.iter().enumerate() {
            tokio::time::sleep_until((t0 + Duration::from_secs(*at)).into()).await;
            let start = t0.elapsed().as_secs_f64();
            let kind = match *what {
                "redis" => {
                    signal(&redis_pid, "-STOP")?;
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    signal(&redis_pid, "-CONT")?;
                    "redis frozen 5 s".to_owned()
                }
                "postgres" => {
                    let cmd = pg_restart.clone();
                    tokio::task::spawn_blocking(move || {
                        std::process::Command::new("sh").args(["-c", &cmd]).status()
                    })
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| e.to_string())?;
                    "postgresql restart".to_owned()
                }
                _ => {
                    let i = k % 3;
                    k += 1;
                    nodes.kill(i);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    nodes.respawn(i)?;
                    let port = nodes.ports[i];
                    let ready = tokio::task::spawn_blocking(move || crate::nodes::wait_ready(port))
                        .await
                        .map_err(|e| e.to_string())?;
                    if let Err(e) = ready {
                        eprintln!("chaos: restarted node {i}: {e}");
                    }
                    format!("node {i} SIGKILL + restart 1 s later")
                }
            };
            eprintln!("chaos: {kind} at {start:.1} s");
            faults.lock().map_err(|_| "lock")?.push(Fault {
                kind,
                at: start,
                live_again: None,
            });
            // Until the next fault: when was any session last not live?
            let next = plan
                .get(n + 1)
                .map_or(t0 + Duration::from_secs(duration + 30), |(t, _)| {
                    t0 + Duration::from_secs(*t)
                });
            // Wait for calm (all live for 3 s) or the next fault.
            let mut calm_since = None;
            while Instant::now() < next {
                if !all_live() {
                    calm_since = None;
                } else if calm_since.get_or_insert_with(Instant::now).elapsed()
                    > Duration::from_secs(3)
                {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let mut down: HashMap<String, usize> = HashMap::new();
            for c in clients.iter().filter(|c| c.state() != State::Live) {
                let why = format!(
                    "{:?} after close {:?}: {:?}",
                    c.state(),
                    c.close_codes().last(),
                    c.last_error().map(|e| e.to_string())
                );
                *down.entry(why).or_default() += 1;
            }
            if !down.is_empty() {
                eprintln!("chaos: sessions not live before the next fault: {down:?}");
                // What a new client meets, through nginx and at each node.
                let token = people[0].1.clone();
                let mut targets = vec![url.clone()];
                targets.extend(nodes.urls());
                for u in targets {
                    let mut o = Options::new(u.clone(), token.clone());
                    o.request_timeout = Duration::from_secs(5);
                    let r = Client::connect(o).await;
                    eprintln!(
                        "chaos: probe {u}: {:?}",
                        r.as_ref().map(|_| "live").map_err(|e| e.to_string())
                    );
                    if let Ok(c) = r {
                        c.close();
                    }
                }
            }
        }
        let (sent, acked, unsent) = traffic.await.map_err(|e| e.to_string())?;
        eprintln!(
            "chaos: traffic over: {sent} sent, {} acknowledged",
            acked.len()
        );

        // PostgreSQL's truth: each conversation's messages (retried: the
        // bench's own connections died with the restart).
        let mut truth: HashMap<ConversationId, Vec<i64>> = HashMap::new();
        for (conv, _) in &convs {
            let mut tries = 0;
            let events = loop {
                match fx.store.events_between(*conv, 0, i64::MAX, 1_000_000).await {
                    Ok(e) => break e,
                    Err(e) if tries < 20 => {
                        tries += 1;
                        eprintln!("chaos: reading history: {e}; again");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                    Err(e) => return Err(e.to_string()),
                }
            };
            truth.insert(
                *conv,
                events
                    .into_iter()
                    .filter(|e| e.body["event"] == "message.created")
                    .map(|e| e.seq)
                    .collect(),
            );
        }
        let stored: HashSet<(ConversationId, i64)> = truth
            .iter()
            .flat_map(|(c, seqs)| seqs.iter().map(move |s| (*c, *s)))
            .collect();
        let acked_not_stored = acked
            .iter()
            .filter(|m| !stored.contains(&(m.conversation_id, m.seq)))
            .count();
        // Let the last deliveries arrive: until every session has as many
        // messages as it should, 30 s at most.
        let expected: usize = (0..sessions)
            .map(|i| {
                conv_of[i]
                    .iter()
                    .map(|c| truth.get(c).map_or(0, Vec::len))
                    .sum::<usize>()
            })
            .sum();
        let drain = Instant::now();
        loop {
            let have: usize = got
                .iter()
                .map(|g| g.lock().map(|g| g.len()).unwrap_or(0))
                .sum();
            if have >= expected || drain.elapsed() > Duration::from_secs(30) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let _ = stop_tx.send(());
        for r in readers {
            let _ = r.await;
        }
        let _ = sampler.await;
        {
            // Per fault: the last sample before the next fault with a
            // session not live; None when some were still down then.
            let samples = not_live.lock().map_err(|_| "lock")?.clone();
            let mut f = faults.lock().map_err(|_| "lock")?;
            let starts: Vec<f64> = f.iter().map(|x| x.at).collect();
            for (n, x) in f.iter_mut().enumerate() {
                let end = starts.get(n + 1).copied().unwrap_or(f64::MAX);
                let window: Vec<&(f64, usize)> = samples
                    .iter()
                    .filter(|(t, _)| *t >= x.at && *t < end)
                    .collect();
                x.live_again = match window.last() {
                    Some((_, n)) if *n > 0 => None,
                    _ => Some(
                        window
                            .iter()
                            .filter(|(_, n)| *n > 0)
                            .map(|(t, _)| t - x.at + 0.1)
                            .fold(0.0, f64::max),
                    ),
                };
            }
        }

        let (mut lost, mut duplicated, mut out_of_order) = (0usize, 0usize, 0usize);
        let mut reconnects = 0u64;
        for (i, c) in clients.iter().enumerate() {
            reconnects += c.connects().saturating_sub(1);
            let g = got[i].lock().map_err(|_| "lock")?;
            for conv in &conv_of[i] {
                let mine: Vec<i64> = g
                    .iter()
                    .filter(|x| x.conv == *conv)
                    .map(|x| x.seq)
                    .collect();
                let set: HashSet<i64> = mine.iter().copied().collect();
                duplicated += mine.len() - set.len();
                out_of_order += mine.windows(2).filter(|w| w[1] <= w[0]).count();
                lost += truth
                    .get(conv)
                    .map_or(0, |t| t.iter().filter(|s| !set.contains(s)).count());
            }
        }
        // Per fault: the slowest delivery of what was sent from its start
        // to the next fault (or the end).
        let all: Vec<Got> = got
            .iter()
            .flat_map(|g| g.lock().map(|g| g.clone()).unwrap_or_default())
            .collect();
        let start_ns = now_ns().saturating_sub(t0.elapsed().as_nanos() as u64);
        let fault_rows: Vec<serde_json::Value> = {
            let f = faults.lock().map_err(|_| "lock")?;
            f.iter()
                .enumerate()
                .map(|(n, x)| {
                    let from = start_ns + (x.at * 1e9) as u64;
                    let to = f
                        .get(n + 1)
                        .map_or(u64::MAX, |y| start_ns + (y.at * 1e9) as u64);
                    let slowest = all
                        .iter()
                        .filter(|g| g.sent_ns >= from && g.sent_ns < to)
                        .map(|g| g.recv_ns.saturating_sub(g.sent_ns))
                        .max()
                        .unwrap_or(0);
                    json!({
                        "fault": x.kind,
                        "at_s": (x.at * 10.0).round() / 10.0,
                        "all_live_after_s": x.live_again.map(|s| (s * 100.0).round() / 100.0),
                        "slowest_delivery_s": (slowest as f64 / 1e7).round() / 100.0,
                    })
                })
                .collect()
        };
        for r in &fault_rows {
            eprintln!("chaos: {r}");
        }
        if std::env::var_os("PARLEY_BENCH_KEEP_NGINX_LOG").is_some() {
            let log =
                std::env::temp_dir().join(format!("parley-bench-nginx-{}/error.log", nginx.port));
            let _ = std::fs::copy(
                &log,
                std::env::temp_dir().join("parley-bench-nginx-error.log"),
            );
        }
        drop(nginx);
        drop(nodes);
        self.report.add(
            &self.cli.out,
            "chaos",
            "parley",
            3,
            json!({"sessions": sessions, "duration_s": duration, "rate": rate,
                   "groups_of_10": half / 10, "dialogs": (sessions - half) / 2}),
            json!({
                "sent": sent, "acked": acked.len(), "unacked": unsent,
                "acked_not_stored": acked_not_stored,
                "delivered": all.len(), "expected": expected,
                "lost": lost, "duplicated": duplicated, "out_of_order": out_of_order,
                "reconnects": reconnects, "faults": fault_rows,
            }),
        )
    }
}
