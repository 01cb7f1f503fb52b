//! The command line of parley-bench.

use clap::{Parser, Subcommand};
use std::net::Ipv4Addr;

#[derive(Parser)]
#[command(name = "parley-bench", about = "Benchmark of Parley on loopback")]
pub struct Cli {
    /// PostgreSQL the nodes use (a database for the bench alone). Each
    /// measured load gets a new database beside it, created and dropped
    /// through this one, so its role needs CREATEDB.
    #[arg(long, env = "PARLEY_BENCH_DATABASE_URL")]
    pub database_url: String,
    /// Redis for runs with more than one node.
    #[arg(
        long,
        env = "PARLEY_BENCH_REDIS_URL",
        default_value = "redis://127.0.0.1:6379"
    )]
    pub redis_url: String,
    /// A Redis Cluster (Redis ≥ 7, comma-separated `redis://` URLs) for
    /// `sharding`; scripts/bench.sh starts one with three masters.
    #[arg(long, env = "PARLEY_BENCH_REDIS_CLUSTER", default_value = "")]
    pub redis_cluster: String,
    /// The parley binary.
    #[arg(long, env = "PARLEY_BIN", default_value = "target/release/parley")]
    pub bin: String,
    /// Where results.jsonl is appended.
    #[arg(long, default_value = "bench/results")]
    pub out: String,
    /// The peer's directory (Node.js socket.io server).
    #[arg(long, default_value = "bench/peers/socketio")]
    pub peer_dir: String,
    /// Runs of each capacity search and idle scenario; the headline figure
    /// is their median, with min and max beside it.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// One run of each (while iterating; the figures are not medians).
    #[arg(long)]
    pub quick: bool,
    #[command(subcommand)]
    pub cmd: Cmd,
}

impl Cli {
    /// Runs per headline figure.
    pub fn runs(&self) -> usize {
        if self.quick {
            1
        } else {
            self.runs.clamp(1, 9)
        }
    }
}

#[derive(Subcommand, Clone)]
pub enum Cmd {
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
    /// 3 nodes behind nginx under faults (node kills, Redis frozen,
    /// PostgreSQL restart) with the Rust client; lost, duplicated and out
    /// of order messages at the end. Needs scripts/bench.sh (it restarts
    /// PostgreSQL and freezes Redis).
    Chaos {
        #[arg(long, default_value_t = 3000)]
        sessions: usize,
        /// Seconds of traffic (faults every 20 s).
        #[arg(long, default_value_t = 120)]
        duration: u64,
        /// Messages per second.
        #[arg(long, default_value_t = 100)]
        rate: u64,
    },
    /// The standard small set: every scenario on 1 and on 2 nodes.
    /// Capacity search of `chat` (1 000 users, 100 conversations of 10) or
    /// `fanout` (one conversation of 1 000): the rate grows ×1.5 per step.
    Capacity {
        #[arg(long, default_value = "chat")]
        workload: String,
        #[arg(long, default_value_t = 1)]
        nodes: usize,
        #[arg(long)]
        peer: bool,
        /// First offered rate, messages per second (default: where the
        /// standard set starts the workload, 1 000 for chat, 20 for
        /// fan-out: each fan-out message is 1 000 deliveries).
        #[arg(long)]
        start: Option<u64>,
        /// Measurement window of each step, seconds.
        #[arg(long, default_value_t = 10)]
        window: u64,
    },
    /// Full-text search over generated messages (Russian and English),
    /// each user in `per_user` conversations; p50/p95 of `search` on one node.
    Search {
        #[arg(long, default_value_t = 1_000_000)]
        messages: usize,
        #[arg(long, default_value_t = 100)]
        per_user: usize,
        #[arg(long, default_value_t = 300)]
        queries: usize,
    },
    /// What sharded pub/sub changes: 3 nodes at one chat rate, once over
    /// one Redis (every node reads every message) and once over a Redis
    /// Cluster (`bus.kind = "cluster"`), for dialogs (conversations of 2)
    /// and groups of 10; bytes each node reads from Redis per message.
    Sharding {
        #[arg(long, default_value_t = 1000)]
        users: usize,
        /// Messages per second.
        #[arg(long, default_value_t = 1000)]
        rate: u64,
        #[arg(long, default_value_t = 10)]
        duration: u64,
        #[arg(long, default_value_t = 3)]
        nodes: usize,
    },
    Standard,
    /// Draws the capacity curves again from the newest capacity line of
    /// each workload, system and node count in results.jsonl.
    Curves,
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
