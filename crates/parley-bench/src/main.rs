//! parley-bench: drives real `parley` nodes on loopback, bounded in count
//! and time, and reports a table plus one JSON line per scenario appended to
//! `bench/results/results.jsonl`.
//!
//! Scenarios: `idle` (hold N sessions; server memory per session, connect
//! rate), `chat` (U users in C conversations of K members, open-loop rate R
//! for D seconds; committed/s, deliveries/s, latency), `fanout` (one
//! conversation of M members), `storm` (all sessions drop and resume at once;
//! time until live, messages lost). `standard` runs a small set of all four
//! on 1 node and on 2 nodes behind Redis. `chaos` kills nodes, freezes Redis
//! and restarts PostgreSQL under traffic, then counts what was lost.

mod cli;
mod conn;
mod cpu;
mod curves;
mod database;
mod nodes;
mod pace;
mod report;
mod scenarios;
mod setup;

use clap::Parser;
use cli::{Cli, Cmd};
use nodes::{NodeOptions, Nodes};
use report::{Report, Res};
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

/// First offered rate of the capacity searches, messages per second: chat
/// (10 deliveries each) and fan-out (1 000 deliveries each).
const CHAT_START: u64 = 1000;
const FANOUT_START: u64 = 20;

/// 127.0.0.2, 127.0.0.3, …: each source address has its own ephemeral ports.
fn source(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, (i / 250) as u8, (2 + i % 250) as u8))
}

struct Env {
    cli: Cli,
    report: Report,
    /// Nodes meet over the Redis Cluster (`--redis-cluster`) instead of
    /// the one Redis.
    sharded: bool,
    /// The database of the load being measured (one per load).
    db: database::Databases,
}

impl Env {
    /// A tenant on the current database (migrated by
    /// [`database::Databases::fresh`]).
    async fn fixture(&self) -> Res<setup::Fixture> {
        let store = setup::store(&self.db.url(), 32)?;
        setup::fixture(store).await
    }

    fn start(&self, count: usize, max_sessions: usize, peer: bool) -> Res<Nodes> {
        if peer {
            let redis = if count > 1 {
                Some(self.cli.redis_url.as_str())
            } else {
                None
            };
            return Nodes::start_peer(&self.cli.peer_dir, &self.db.url(), redis, count);
        }
        self.nodes(count, max_sessions)
    }

    fn nodes(&self, count: usize, max_sessions: usize) -> Res<Nodes> {
        let database_url = self.db.url();
        Nodes::start(&NodeOptions {
            bin: &self.cli.bin,
            database_url: &database_url,
            redis_url: if count > 1 {
                Some(&self.cli.redis_url)
            } else {
                None
            },
            redis_cluster: (count > 1 && self.sharded).then_some(self.cli.redis_cluster.as_str()),
            count,
            max_sessions,
        })
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
    // 256 handshakes in flight, each its own task: on all the runtime's
    // threads, not polled one after another inside one task (which made
    // the client's one thread the pace of the connects).
    let in_flight = Arc::new(tokio::sync::Semaphore::new(256));
    let tasks: Vec<_> = pairs
        .into_iter()
        .map(|(url, who)| {
            let in_flight = Arc::clone(&in_flight);
            tokio::spawn(async move {
                let _slot = in_flight.acquire_owned().await;
                let src = Some(IpAddr::V4(source));
                if peer {
                    conn::open_peer(&url, &who, &[], src).await
                } else {
                    conn::open(&url, &who, src).await
                }
            })
        })
        .collect();
    let mut results = Vec::with_capacity(tasks.len());
    for t in tasks {
        results.push(t.await.map_err(|e| e.to_string()).and_then(|r| r));
    }
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
    let database = match cmd {
        // Draws what results.jsonl holds; no database needed.
        Cmd::Curves => serde_json::Value::Null,
        _ => report::database_settings(&cli.database_url).await,
    };
    let mut env = Env {
        db: database::Databases::new(cli.database_url.clone()),
        cli,
        report: Report {
            rows: Vec::new(),
            database,
            pace: pace::Pace::default(),
        },
        sharded: false,
    };
    let result = match cmd {
        Cmd::Idle {
            sessions,
            nodes,
            hold,
            peer,
        } => env.idle(sessions, &[(nodes, peer)], hold).await,
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
        Cmd::Capacity {
            workload,
            nodes,
            peer,
            start,
            window,
        } => {
            let start = start.unwrap_or(if workload == "fanout" {
                FANOUT_START
            } else {
                CHAT_START
            });
            env.capacity(&workload, &[(nodes, peer)], start, window)
                .await
        }
        Cmd::Chaos {
            sessions,
            duration,
            rate,
        } => env.chaos(sessions, duration, rate).await,
        Cmd::Search {
            messages,
            per_user,
            queries,
        } => env.search_bench(messages, per_user, queries).await,
        Cmd::Sharding {
            users,
            rate,
            duration,
            nodes,
        } => env.sharding(users, rate, duration, nodes).await,
        Cmd::Standard => standard(&mut env).await,
        Cmd::Curves => curves::latest(&env.cli.out).map(|rows| env.report.rows = rows),
        Cmd::Worker { .. } => Ok(()),
    };
    if let Err(e) = env.db.drop_current().await {
        eprintln!("parley-bench: {e}");
    }
    env.report.table();
    match curves::draw(&env.report.rows, &env.cli.out) {
        Ok(files) => {
            for f in files {
                println!("curve: {f}");
            }
        }
        Err(e) => eprintln!("parley-bench: curves not drawn: {e}"),
    }
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("parley-bench: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn standard(env: &mut Env) -> Res<()> {
    // Every scenario's four targets by turns (see `idle` and `capacity`).
    let targets = [(1, false), (2, false), (1, true), (2, true)];
    env.idle(10_000, &targets, 2).await?;
    env.capacity("chat", &targets, CHAT_START, 10).await?;
    env.capacity("fanout", &targets, FANOUT_START, 10).await?;
    for nodes in [1, 2] {
        env.storm(2000, 100, nodes).await?;
    }
    Ok(())
}
