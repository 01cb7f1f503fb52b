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
        let base = |port: u16| {
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
        };
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
