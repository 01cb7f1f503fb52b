//! Redis the way companies run it, started by a test on loopback: a master,
//! a replica of it and a Sentinel watching them (Debian's redis-server,
//! which is also the Sentinel with `--sentinel`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const MASTER_NAME: &str = "mymaster";

pub struct SentinelSet {
    pub master_port: u16,
    pub replica_port: u16,
    pub sentinel_port: u16,
    master: Option<Child>,
    others: Vec<Child>,
    dir: PathBuf,
}

fn redis_server(args: &[String]) -> Child {
    Command::new("redis-server")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server (install redis-server; scripts/test.sh does)")
}

/// A throwaway server on loopback: no persistence, files in `dir`.
fn server_args(port: u16, dir: &Path) -> Vec<String> {
    vec![
        "--port".to_owned(),
        port.to_string(),
        "--bind".into(),
        "127.0.0.1".into(),
        "--save".into(),
        String::new(),
        "--appendonly".into(),
        "no".into(),
        "--dir".into(),
        dir.display().to_string(),
        "--dbfilename".into(),
        format!("dump-{port}.rdb"),
    ]
}

/// `redis-cli -p PORT args…`, its output; empty when it could not ask.
pub fn cli(port: u16, args: &[&str]) -> String {
    Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

async fn until(what: &str, within: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !ok() {
        assert!(Instant::now() < deadline, "{what} within {within:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

impl SentinelSet {
    /// Master and replica in sync, and a Sentinel that sees both.
    pub async fn start(dir: &Path) -> SentinelSet {
        std::fs::create_dir_all(dir).expect("redis dir");
        let (m, r, s) = (
            crate::cluster::free_port(),
            crate::cluster::free_port(),
            crate::cluster::free_port(),
        );
        let base = |port: u16| server_args(port, dir);
        let master = redis_server(&base(m));
        let mut replica_args = base(r);
        replica_args.extend(["--replicaof".into(), "127.0.0.1".into(), m.to_string()]);
        let replica = redis_server(&replica_args);
        // The Sentinel rewrites its file: it must be writable and its own.
        let conf = dir.join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {s}\nbind 127.0.0.1\ndir {}\n\
                 sentinel monitor {MASTER_NAME} 127.0.0.1 {m} 1\n\
                 sentinel down-after-milliseconds {MASTER_NAME} 1000\n\
                 sentinel failover-timeout {MASTER_NAME} 5000\n\
                 sentinel parallel-syncs {MASTER_NAME} 1\n",
                dir.display()
            ),
        )
        .expect("sentinel.conf");
        let sentinel = redis_server(&[conf.display().to_string(), "--sentinel".into()]);
        let set = SentinelSet {
            master_port: m,
            replica_port: r,
            sentinel_port: s,
            master: Some(master),
            others: vec![replica, sentinel],
            dir: dir.to_path_buf(),
        };
        until("the replica in sync", Duration::from_secs(20), || {
            cli(r, &["INFO", "replication"]).contains("master_link_status:up")
        })
        .await;
        until(
            "the Sentinel to see the replica",
            Duration::from_secs(30),
            || cli(s, &["SENTINEL", "replicas", MASTER_NAME]).contains(&r.to_string()),
        )
        .await;
        set
    }

    pub fn sentinel_url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.sentinel_port)
    }

    /// The port of the master the Sentinel names now.
    pub fn master_named(&self) -> Option<u16> {
        let out = cli(
            self.sentinel_port,
            &["SENTINEL", "get-master-addr-by-name", MASTER_NAME],
        );
        out.lines().nth(1).and_then(|p| p.trim().parse().ok())
    }

    /// SIGKILL of the master: no goodbye to anyone.
    pub fn kill_master(&mut self) {
        if let Some(mut c) = self.master.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Waits until the Sentinel has promoted the replica.
    pub async fn wait_failover(&self) {
        let r = self.replica_port;
        until(
            "the Sentinel to promote the replica",
            Duration::from_secs(30),
            || self.master_named() == Some(r) && cli(r, &["ROLE"]).starts_with("master"),
        )
        .await;
    }
}

impl Drop for SentinelSet {
    fn drop(&mut self) {
        self.kill_master();
        for c in &mut self.others {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A Redis Cluster started by a test: three masters, each with a replica
/// (`redis-server --cluster-enabled yes`, joined by `redis-cli --cluster
/// create`), on loopback.
pub struct RedisCluster {
    /// Ports of the six servers; which are masters changes with failovers.
    pub ports: Vec<u16>,
    servers: Vec<Option<Child>>,
    dir: PathBuf,
}

impl RedisCluster {
    pub async fn start(dir: &Path) -> RedisCluster {
        std::fs::create_dir_all(dir).expect("redis dir");
        // Twelve distinct ports, held together while chosen: a data port and
        // a cluster bus port per server (the bus port defaults to port +
        // 10 000, which for a free high port is past 65 535 or taken).
        let held: Vec<std::net::TcpListener> = (0..12)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("free port"))
            .collect();
        let all: Vec<u16> = held
            .iter()
            .map(|l| l.local_addr().expect("port").port())
            .collect();
        drop(held);
        let ports: Vec<u16> = all[..6].to_vec();
        let servers = ports
            .iter()
            .zip(&all[6..])
            .map(|(p, bus)| {
                let mut args = server_args(*p, dir);
                args.extend([
                    "--cluster-port".into(),
                    bus.to_string(),
                    "--cluster-enabled".into(),
                    "yes".into(),
                    "--cluster-config-file".into(),
                    format!("nodes-{p}.conf"),
                    // A master silent for 1 s is failed over.
                    "--cluster-node-timeout".into(),
                    "1000".into(),
                    "--logfile".into(),
                    format!("redis-{p}.log"),
                ]);
                Some(redis_server(&args))
            })
            .collect();
        let set = RedisCluster {
            ports: ports.clone(),
            servers,
            dir: dir.to_path_buf(),
        };
        for p in &ports {
            until(
                "a cluster server to answer",
                Duration::from_secs(20),
                || cli(*p, &["PING"]).starts_with("PONG"),
            )
            .await;
        }
        let addrs: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .expect("redis-cli --cluster create");
        assert!(
            out.status.success(),
            "cluster create: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        set.wait_ok().await;
        set
    }

    /// Every live server says the cluster is whole (all slots served) and
    /// every replica finished its sync (a replica that never synced cannot
    /// take over: Redis waits 5 s before a diskless first sync).
    pub async fn wait_ok(&self) {
        let deadline = Instant::now() + Duration::from_secs(40);
        while !(self.live().all(|p| {
            cli(p, &["CLUSTER", "INFO"]).contains("cluster_state:ok") && {
                let repl = cli(p, &["INFO", "replication"]);
                repl.contains("role:master") || repl.contains("master_link_status:up")
            }
        }) && self.masters().len() == 3)
        {
            let seen = self
                .live()
                .map(|p| format!("{p}:\n{}", cli(p, &["CLUSTER", "NODES"])))
                .collect::<Vec<_>>();
            assert!(
                Instant::now() < deadline,
                "the Redis Cluster to be whole within 40 s: {seen:#?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn live(&self) -> impl Iterator<Item = u16> + '_ {
        self.ports
            .iter()
            .zip(&self.servers)
            .filter(|(_, s)| s.is_some())
            .map(|(p, _)| *p)
    }

    /// `redis://…` of every server, comma-separated (for
    /// `PARLEY_BUS__REDIS_CLUSTER`).
    pub fn urls(&self) -> String {
        self.ports
            .iter()
            .map(|p| format!("redis://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Ports of the live masters, as a live server sees them.
    pub fn masters(&self) -> Vec<u16> {
        let Some(asked) = self.live().next() else {
            return Vec::new();
        };
        let nodes = cli(asked, &["CLUSTER", "NODES"]);
        let live: Vec<u16> = self.live().collect();
        nodes
            .lines()
            .filter(|l| l.contains("master") && !l.contains("fail"))
            .filter_map(|l| {
                let addr = l.split_whitespace().nth(1)?;
                let port: u16 = addr.split([':', '@']).nth(1)?.parse().ok()?;
                live.contains(&port).then_some(port)
            })
            .collect()
    }

    /// The port of the master serving the slot of `key` now.
    pub fn master_of(&self, key: &str) -> Option<u16> {
        let asked = self.live().next()?;
        let slot: u16 = cli(asked, &["CLUSTER", "KEYSLOT", key])
            .trim()
            .parse()
            .ok()?;
        self.masters()
            .into_iter()
            .find(|m| owns(&cli(*m, &["CLUSTER", "NODES"]), slot))
    }

    /// SIGKILL of one server.
    pub fn kill(&mut self, port: u16) {
        if let Some(i) = self.ports.iter().position(|p| *p == port) {
            if let Some(mut c) = self.servers[i].take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }

    /// Subscribers of the sharded `channel` on its shard now (`PUBSUB SHARDNUMSUB`).
    pub fn shard_subscribers(&self, channel: &str) -> u64 {
        let Some(m) = self.master_of(channel) else {
            return 0;
        };
        cli(m, &["PUBSUB", "SHARDNUMSUB", channel])
            .lines()
            .nth(1)
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0)
    }
}

/// Whether the `CLUSTER NODES` line marked `myself` serves `slot`.
fn owns(nodes: &str, slot: u16) -> bool {
    let Some(me) = nodes.lines().find(|l| l.contains("myself")) else {
        return false;
    };
    me.split_whitespace().skip(8).any(|range| {
        let mut ends = range.split('-').filter_map(|n| n.parse::<u16>().ok());
        match (ends.next(), ends.next()) {
            (Some(a), Some(b)) => (a..=b).contains(&slot),
            (Some(a), None) => a == slot,
            _ => false,
        }
    })
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for c in self.servers.iter_mut().flatten() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
