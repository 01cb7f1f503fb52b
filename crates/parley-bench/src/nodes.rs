//! Real `parley serve` processes on loopback ports, and their memory.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `ws.max_connections` by default.
const DEFAULT_MAX_SESSIONS: usize = 10_000;

pub struct Nodes {
    children: Vec<Child>,
    pub ports: Vec<u16>,
    /// The nodes serve `GET /metrics` (Parley does, the peer does not: it
    /// leaves the request unanswered).
    metrics: bool,
    /// How each node was started, to start it again after a kill.
    commands: Vec<Command>,
}

fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}

fn ready(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /readyz HTTP/1.0\r\n\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 16];
    matches!(s.read(&mut buf), Ok(n) if n >= 12 && &buf[9..12] == b"200")
}

/// The node's log (warnings and errors), appended across restarts:
/// `$TMPDIR/parley-bench-node-PORT.log`.
fn log_file(port: u16) -> Result<std::fs::File, String> {
    let path = std::env::temp_dir().join(format!("parley-bench-node-{port}.log"));
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Waits until the node on `port` answers `/readyz` with 200 (a minute
/// at most).
pub fn wait_ready(port: u16) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready(port) {
        if Instant::now() > deadline {
            return Err(format!("node on port {port} not ready"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

pub struct NodeOptions<'a> {
    pub bin: &'a str,
    pub database_url: &'a str,
    /// Redis for more than one node.
    pub redis_url: Option<&'a str>,
    /// A Redis Cluster instead (comma-separated URLs): sharded pub/sub.
    pub redis_cluster: Option<&'a str>,
    pub count: usize,
    pub max_sessions: usize,
}

impl Nodes {
    pub fn start(o: &NodeOptions<'_>) -> Result<Nodes, String> {
        let prefix = format!("bench{}", uuid::Uuid::new_v4().simple());
        let mut nodes = Nodes {
            children: Vec::new(),
            ports: Vec::new(),
            metrics: true,
            commands: Vec::new(),
        };
        for i in 0..o.count {
            let port = free_port()?;
            let mut cmd = Command::new(o.bin);
            cmd.arg("serve")
                .env("PARLEY_DATABASE__URL", o.database_url)
                .env(
                    "PARLEY_DATABASE__MIGRATE_ON_START",
                    if i == 0 { "true" } else { "false" },
                )
                .env("PARLEY_HTTP__BIND", format!("127.0.0.1:{port}"))
                .env("PARLEY_LOG__LEVEL", "warn")
                .env(
                    "PARLEY_FILES__LOCAL_DIR",
                    std::env::temp_dir().join("parley-bench-files"),
                )
                .stdout(log_file(port)?)
                .stderr(Stdio::inherit());
            // Defaults everywhere else: the only setting an admin of a big
            // node would change is the session cap, when it is exceeded.
            if o.max_sessions > DEFAULT_MAX_SESSIONS {
                cmd.env("PARLEY_WS__MAX_CONNECTIONS", o.max_sessions.to_string());
            }
            if let Some(r) = o.redis_cluster {
                cmd.env("PARLEY_BUS__KIND", "cluster")
                    .env("PARLEY_BUS__REDIS_CLUSTER", r)
                    .env("PARLEY_BUS__PREFIX", &prefix);
            } else if let Some(r) = o.redis_url {
                cmd.env("PARLEY_BUS__KIND", "redis")
                    .env("PARLEY_BUS__REDIS_URL", r)
                    .env("PARLEY_BUS__PREFIX", &prefix);
            }
            let child = cmd.spawn().map_err(|e| format!("start {}: {e}", o.bin))?;
            nodes.children.push(child);
            nodes.ports.push(port);
            nodes.commands.push(cmd);
            // The first node migrates; the others start after it.
            wait_ready(port)?;
        }
        Ok(nodes)
    }

    /// SIGKILL to node `i`: it vanishes without a word.
    pub fn kill(&mut self, i: usize) {
        if let Some(c) = self.children.get_mut(i) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts node `i` again as it was started (same port), without
    /// waiting for it to be ready.
    pub fn respawn(&mut self, i: usize) -> Result<(), String> {
        let cmd = self.commands.get_mut(i).ok_or("no such node")?;
        let child = cmd.spawn().map_err(|e| format!("restart node {i}: {e}"))?;
        self.children[i] = child;
        Ok(())
    }

    /// Peer nodes: `node server.js` of bench/peers/socketio.
    pub fn start_peer(
        dir: &str,
        database_url: &str,
        redis_url: Option<&str>,
        count: usize,
    ) -> Result<Nodes, String> {
        let prefix = format!("peer{}", uuid::Uuid::new_v4().simple());
        let mut nodes = Nodes {
            children: Vec::new(),
            ports: Vec::new(),
            metrics: false,
            commands: Vec::new(),
        };
        for _ in 0..count {
            let port = free_port()?;
            let mut cmd = Command::new("node");
            cmd.arg("server.js")
                .current_dir(dir)
                .env("PORT", port.to_string())
                .env("DATABASE_URL", database_url)
                .env("REDIS_PREFIX", &prefix)
                .stdout(Stdio::null())
                .stderr(Stdio::inherit());
            if let Some(r) = redis_url {
                cmd.env("REDIS_URL", r);
            }
            nodes
                .children
                .push(cmd.spawn().map_err(|e| format!("start node: {e}"))?);
            nodes.ports.push(port);
            let deadline = Instant::now() + Duration::from_secs(30);
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                if Instant::now() > deadline {
                    return Err(format!("peer on port {port} not listening"));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(nodes)
    }

    pub fn urls(&self) -> Vec<String> {
        self.ports
            .iter()
            .map(|p| format!("ws://127.0.0.1:{p}/ws"))
            .collect()
    }

    pub fn pids(&self) -> Vec<u32> {
        self.children.iter().map(|c| c.id()).collect()
    }

    /// The `/metrics` text of each node (blocking: keep it off the task
    /// that sends on schedule); nothing for the peer, which has none.
    pub fn metrics(&self) -> Vec<String> {
        scrape(&self.ports, self.metrics)
    }

    /// What [`scrape`] needs, to scrape from another thread.
    pub fn scraper(&self) -> (Vec<u16>, bool) {
        (self.ports.clone(), self.metrics)
    }

    /// Resident memory of each node, KiB.
    pub fn rss_kib(&self) -> Vec<u64> {
        self.children
            .iter()
            .map(|c| {
                std::fs::read_to_string(format!("/proc/{}/status", c.id()))
                    .ok()
                    .and_then(|s| {
                        s.lines()
                            .find_map(|l| l.strip_prefix("VmRSS:"))
                            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                    })
                    .unwrap_or(0)
            })
            .collect()
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
        }
        for c in &mut self.children {
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `GET /metrics` of each port (blocking); nothing when the nodes do not
/// serve it.
pub fn scrape(ports: &[u16], served: bool) -> Vec<String> {
    use std::io::{Read, Write};
    if !served {
        return Vec::new();
    }
    ports
        .iter()
        .map(|port| {
            let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", *port)) else {
                return String::new();
            };
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            if s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").is_err() {
                return String::new();
            }
            let mut out = String::new();
            let _ = s.read_to_string(&mut out);
            match out.split_once("\r\n\r\n") {
                Some((head, body)) if head.contains(" 200 ") => body.to_owned(),
                _ => String::new(),
            }
        })
        .collect()
}

/// nginx in front of the nodes (round robin; a node that refuses is skipped
/// for that request), as in deploy/nginx.
pub struct Nginx {
    child: Child,
    pub port: u16,
    dir: std::path::PathBuf,
}

impl Nginx {
    pub fn start(ports: &[u16]) -> Result<Nginx, String> {
        let port = free_port()?;
        let dir = std::env::temp_dir().join(format!("parley-bench-nginx-{port}"));
        std::fs::create_dir_all(dir.join("tmp")).map_err(|e| e.to_string())?;
        let d = dir.display();
        let upstream: String = ports
            .iter()
            // As deploy/nginx: max_fails=0 (see the comment there).
            .map(|p| format!("server 127.0.0.1:{p} max_fails=0; "))
            .collect();
        let conf = format!(
            "worker_processes 1; worker_rlimit_nofile 65536; daemon off; pid {d}/nginx.pid; error_log {d}/error.log warn;\n\
             events {{ worker_connections 32768; }}\n\
             http {{ access_log off; client_body_temp_path {d}/tmp/b; proxy_temp_path {d}/tmp/p; fastcgi_temp_path {d}/tmp/f; uwsgi_temp_path {d}/tmp/u; scgi_temp_path {d}/tmp/s;\n\
             map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}\n\
             upstream parley {{ {upstream} }}\n\
             server {{ listen 127.0.0.1:{port} backlog=4096; location / {{ proxy_pass http://parley; proxy_http_version 1.1;\n\
             proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection $connection_upgrade;\n\
             proxy_connect_timeout 1s; proxy_read_timeout 300s; proxy_next_upstream error timeout; }} }} }}\n"
        );
        let path = dir.join("nginx.conf");
        std::fs::write(&path, conf).map_err(|e| e.to_string())?;
        let bin = ["/usr/sbin/nginx", "nginx"]
            .into_iter()
            .find(|b| std::path::Path::new(b).exists())
            .unwrap_or("nginx");
        let child = Command::new(bin)
            .args([
                "-p",
                &dir.display().to_string(),
                "-c",
                &path.display().to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("start nginx (install it; scripts/bench.sh does): {e}"))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return Err("nginx did not start".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Nginx { child, port, dir })
    }

    pub fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}/ws", self.port)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM: the master stops its workers (after a SIGKILL they would
        // live on, holding the port).
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !matches!(self.child.try_wait(), Ok(Some(_))) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
