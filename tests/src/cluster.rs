//! Several real `parley serve` processes over one PostgreSQL database and a
//! Redis of their own (and nginx in front when asked), all on loopback. Nodes
//! can be killed (SIGKILL), stopped (SIGTERM) and Redis restarted.

use crate::TestEnv;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The `parley` binary: `PARLEY_BIN`, else the workspace's debug build.
pub fn parley_bin() -> PathBuf {
    if let Ok(p) = std::env::var("PARLEY_BIN") {
        return PathBuf::from(p);
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("debug/parley")
}

/// A free loopback port (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// HTTP status of `GET path` on 127.0.0.1:port, None when unreachable.
pub async fn http_status(port: u16, path: &str) -> Option<u16> {
    let mut s = tokio::time::timeout(
        Duration::from_secs(2),
        tokio::net::TcpStream::connect(("127.0.0.1", port)),
    )
    .await
    .ok()?
    .ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut buf))
        .await
        .ok()?
        .ok()?;
    let head = String::from_utf8_lossy(&buf);
    head.split_whitespace().nth(1)?.parse().ok()
}

pub struct Node {
    pub port: u16,
    pub child: Option<Child>,
    pub log: PathBuf,
    /// Serves TLS itself (not behind nginx's plain upstream).
    pub tls: bool,
}

impl Node {
    pub fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}/ws", self.port)
    }
}

pub struct Cluster {
    pub dir: PathBuf,
    pub db_url: String,
    pub prefix: String,
    pub redis_port: u16,
    redis: Option<Child>,
    pub nodes: Vec<Node>,
    pub nginx_port: Option<u16>,
    nginx: Option<Child>,
    /// nginx's TLS port, when started with [`Cluster::start_nginx_tls`].
    pub nginx_tls_port: Option<u16>,
    tls: Option<crate::tls::TestCa>,
    extra_env: Vec<(String, String)>,
}

fn which(name: &str, fallbacks: &[&str]) -> String {
    for f in fallbacks {
        if std::path::Path::new(f).exists() {
            return (*f).to_owned();
        }
    }
    name.to_owned()
}

impl Cluster {
    /// Starts Redis and `n` nodes on `env`'s database (already migrated),
    /// plus nginx in front when `nginx` is true. `extra` adds `PARLEY_…`
    /// settings for every node.
    pub async fn start(env: &TestEnv, n: usize, nginx: bool, extra: &[(&str, &str)]) -> Cluster {
        let dir =
            std::env::temp_dir().join(format!("parley-cluster-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("cluster dir");
        let mut c = Cluster {
            dir,
            db_url: env.cfg.database.url.clone(),
            prefix: format!("t{}", uuid::Uuid::new_v4().simple()),
            redis_port: free_port(),
            redis: None,
            nodes: Vec::new(),
            nginx_port: None,
            nginx: None,
            nginx_tls_port: None,
            tls: None,
            extra_env: extra
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        c.start_redis().await;
        for _ in 0..n {
            let port = free_port();
            let node = c.spawn_node(port);
            c.nodes.push(node);
        }
        for i in 0..n {
            c.wait_ready(i).await;
        }
        if nginx {
            c.start_nginx().await;
        }
        c
    }

    pub fn redis_url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.redis_port)
    }

    pub async fn start_redis(&mut self) {
        let child = Command::new(which("redis-server", &["/usr/bin/redis-server"]))
            .args([
                "--port",
                &self.redis_port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (install redis-server; scripts/test.sh does)");
        self.redis = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", self.redis_port))
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "redis did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn kill_redis(&mut self) {
        if let Some(mut r) = self.redis.take() {
            let _ = r.kill();
            let _ = r.wait();
        }
    }

    /// Starts one more node with settings of its own on top of the
    /// cluster's (e.g. another Redis address); returns its index.
    pub async fn add_node(&mut self, own: &[(&str, &str)]) -> usize {
        let node = self.spawn_node_with(free_port(), own);
        self.nodes.push(node);
        let i = self.nodes.len() - 1;
        self.wait_ready(i).await;
        i
    }

    fn spawn_node(&self, port: u16) -> Node {
        self.spawn_node_with(port, &[])
    }

    fn spawn_node_with(&self, port: u16, own: &[(&str, &str)]) -> Node {
        let log = self.dir.join(format!("node-{port}.log"));
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let mut cmd = Command::new(parley_bin());
        cmd.arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("PARLEY_DATABASE__URL", &self.db_url)
            .env("PARLEY_DATABASE__MAX_CONNECTIONS", "8")
            .env("PARLEY_DATABASE__MIGRATE_ON_START", "false")
            .env("PARLEY_HTTP__BIND", format!("127.0.0.1:{port}"))
            .env("PARLEY_HTTP__WORKERS", "1")
            .env("PARLEY_BUS__KIND", "redis")
            .env("PARLEY_BUS__REDIS_URL", self.redis_url())
            .env("PARLEY_BUS__PREFIX", &self.prefix)
            .env("PARLEY_BUS__HEARTBEAT_SECS", "1")
            .env("PARLEY_BUS__NODE_TTL_SECS", "3")
            .env("PARLEY_LOG__LEVEL", "info")
            .env("PARLEY_FILES__LOCAL_DIR", self.dir.join("files"))
            .stdout(out)
            .stderr(err);
        for (k, v) in &self.extra_env {
            cmd.env(k, v);
        }
        for (k, v) in own {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", parley_bin().display()));
        Node {
            port,
            child: Some(child),
            log,
            tls: own.iter().any(|(k, _)| *k == "PARLEY_HTTP__TLS_CERT"),
        }
    }

    pub async fn wait_ready(&mut self, i: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if http_status(self.nodes[i].port, "/readyz").await == Some(200) {
                return;
            }
            if let Some(Ok(Some(status))) = self.nodes[i].child.as_mut().map(|c| c.try_wait()) {
                panic!(
                    "node {i} exited with {status}: {}",
                    std::fs::read_to_string(&self.nodes[i].log).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "node {i} not ready: {}",
                std::fs::read_to_string(&self.nodes[i].log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Starts nginx (plain and TLS listeners) with `ca`'s server
    /// certificate.
    pub async fn start_nginx_tls(&mut self, ca: crate::tls::TestCa) {
        self.tls = Some(ca);
        self.nginx_tls_port = Some(free_port());
        self.start_nginx().await;
    }

    /// Stops nginx and starts it again on the same ports: every connection
    /// through it is cut.
    pub async fn restart_nginx(&mut self) {
        if let Some(n) = self.nginx.take() {
            stop_nginx(n);
        }
        self.start_nginx().await;
    }

    /// One more node serving TLS itself (`http.tls_cert`), with the
    /// certificate given to [`Cluster::start_nginx_tls`].
    pub async fn add_tls_node(&mut self) -> usize {
        let ca = self.tls.as_ref().expect("start_nginx_tls first");
        let (cert, key) = (ca.cert.display().to_string(), ca.key.display().to_string());
        let ca_pem = ca.ca_bytes();
        let node = self.spawn_node_with(
            free_port(),
            &[
                ("PARLEY_HTTP__TLS_CERT", &cert),
                ("PARLEY_HTTP__TLS_KEY", &key),
            ],
        );
        self.nodes.push(node);
        let i = self.nodes.len() - 1;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let answer =
                crate::tls::https(self.nodes[i].port, &ca_pem, "GET", "/readyz", &[], b"").await;
            if answer.map(|a| a.0) == Some(200) {
                return i;
            }
            assert!(
                Instant::now() < deadline,
                "TLS node not ready: {}",
                std::fs::read_to_string(&self.nodes[i].log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL: the node vanishes without a word.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then waits for the exit; returns the exit code and how long
    /// it took.
    pub async fn terminate(&mut self, i: usize) -> (Option<i32>, Duration) {
        let Some(mut c) = self.nodes[i].child.take() else {
            return (None, Duration::ZERO);
        };
        let started = Instant::now();
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        loop {
            if let Ok(Some(status)) = c.try_wait() {
                return (status.code(), started.elapsed());
            }
            if started.elapsed() > Duration::from_secs(60) {
                let _ = c.kill();
                return (None, started.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Process id of node `i`.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.nodes[i].child.as_ref().map(|c| c.id())
    }

    /// Resident memory of node `i` in KiB (from /proc).
    pub fn rss_kib(&self, i: usize) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid(i)?)).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    pub fn ws_url(&self) -> String {
        match self.nginx_port {
            Some(p) => format!("ws://127.0.0.1:{p}/ws"),
            None => self.nodes[0].ws_url(),
        }
    }

    async fn start_nginx(&mut self) {
        let port = self.nginx_port.unwrap_or_else(free_port);
        let d = self.dir.join("nginx");
        std::fs::create_dir_all(d.join("tmp")).expect("nginx dir");
        let upstream: String = self
            .nodes
            .iter()
            .filter(|n| !n.tls)
            .map(|n| format!("        server 127.0.0.1:{} max_fails=0;\n", n.port))
            .collect();
        let d_s = d.display();
        // TLS ends here, as in deploy/nginx: uploads of any allowed size
        // stream through unbuffered.
        let tls_server = match (&self.tls, self.nginx_tls_port) {
            (Some(ca), Some(tls_port)) => format!(
                "    server {{\n        listen 127.0.0.1:{tls_port} ssl;\n        ssl_certificate {};\n        ssl_certificate_key {};\n\
                         client_max_body_size 100m;\n        proxy_request_buffering off;\n\
                         location / {{\n            proxy_pass http://parley;\n            proxy_http_version 1.1;\n\
                         proxy_set_header Upgrade $http_upgrade;\n            proxy_set_header Connection $connection_upgrade;\n\
                         proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n            proxy_set_header X-Forwarded-Proto https;\n\
                         proxy_connect_timeout 1s;\n            proxy_read_timeout 120s;\n        }}\n    }}\n",
                ca.cert.display(),
                ca.key.display()
            ),
            _ => String::new(),
        };
        let conf = format!(
            "worker_processes 1;\ndaemon off;\npid {d_s}/nginx.pid;\nerror_log {d_s}/error.log warn;\n\
             events {{ worker_connections 2048; }}\n\
             http {{\n    access_log off;\n    client_body_temp_path {d_s}/tmp/body;\n    proxy_temp_path {d_s}/tmp/proxy;\n\
                 fastcgi_temp_path {d_s}/tmp/fastcgi;\n    uwsgi_temp_path {d_s}/tmp/uwsgi;\n    scgi_temp_path {d_s}/tmp/scgi;\n\
                 map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}\n\
                 upstream parley {{\n{upstream}    }}\n\
                 server {{\n        listen 127.0.0.1:{port};\n        location / {{\n            proxy_pass http://parley;\n\
                         proxy_http_version 1.1;\n            proxy_set_header Upgrade $http_upgrade;\n\
                         proxy_set_header Connection $connection_upgrade;\n            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n\
                         proxy_connect_timeout 1s;\n            proxy_read_timeout 120s;\n            proxy_next_upstream error timeout;\n        }}\n    }}\n{tls_server}}}\n"
        );
        let path = d.join("nginx.conf");
        std::fs::write(&path, conf).expect("nginx.conf");
        let child = Command::new(which("nginx", &["/usr/sbin/nginx"]))
            .args([
                "-p",
                &d.display().to_string(),
                "-c",
                &path.display().to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx (install nginx; scripts/test.sh does)");
        self.nginx = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while http_status(port, "/healthz").await != Some(200) {
            assert!(
                Instant::now() < deadline,
                "nginx did not start: {}",
                std::fs::read_to_string(d.join("error.log")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.nginx_port = Some(port);
    }

    /// Commands Redis has processed so far (`INFO stats`), read with a
    /// plain RESP exchange so no test code shares the bus's client.
    pub async fn redis_commands(&self) -> u64 {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", self.redis_port))
            .await
            .expect("redis");
        s.write_all(b"INFO stats\r\n").await.expect("write");
        let mut buf = Vec::new();
        let mut chunk = vec![0u8; 16384];
        loop {
            let n = s.read(&mut chunk).await.expect("read");
            assert!(n > 0, "redis closed");
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf);
            if let Some((len, rest)) = text.strip_prefix('$').and_then(|t| t.split_once("\r\n")) {
                let len: usize = len.parse().expect("bulk length");
                if rest.len() >= len {
                    return rest
                        .lines()
                        .find_map(|l| l.strip_prefix("total_commands_processed:"))
                        .and_then(|v| v.trim().parse().ok())
                        .expect("total_commands_processed");
                }
            }
        }
    }

    pub fn node_log(&self, i: usize) -> String {
        std::fs::read_to_string(&self.nodes[i].log).unwrap_or_default()
    }
}

/// SIGTERM: the master stops its workers (after a SIGKILL they would live
/// on, holding the port).
fn stop_nginx(mut c: Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &c.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !matches!(c.try_wait(), Ok(Some(_))) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = c.kill();
    let _ = c.wait();
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // A failed test shows what its nodes said (their logs go with the
        // cluster's folder).
        if std::thread::panicking() {
            for (i, n) in self.nodes.iter().enumerate() {
                let log = std::fs::read_to_string(&n.log).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                eprintln!("--- node {i} (port {}), last lines:", n.port);
                for l in tail.into_iter().rev() {
                    eprintln!("{l}");
                }
            }
        }
        for n in &mut self.nodes {
            if let Some(mut c) = n.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        if let Some(c) = self.nginx.take() {
            stop_nginx(c);
        }
        self.kill_redis();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `method path` on 127.0.0.1:port with an optional `Authorization` and
/// JSON body; the status and the JSON answer (Null when none), None when
/// the node did not answer.
pub async fn http_json(
    port: u16,
    method: &str,
    path: &str,
    authorization: Option<&str>,
    body: Option<&serde_json::Value>,
) -> Option<(u16, serde_json::Value)> {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    http_request(port, method, path, authorization, &body).await
}

/// As [`http_json`], with the body as given (which may be malformed).
pub async fn http_request(
    port: u16,
    method: &str,
    path: &str,
    authorization: Option<&str>,
    body: &str,
) -> Option<(u16, serde_json::Value)> {
    let mut s = tokio::time::timeout(
        Duration::from_secs(2),
        tokio::net::TcpStream::connect(("127.0.0.1", port)),
    )
    .await
    .ok()?
    .ok()?;
    let auth = authorization
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.0\r\nHost: x\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.ok()?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), s.read_to_end(&mut buf))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&buf);
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let json = text
        .split_once("\r\n\r\n")
        .and_then(|(_, b)| serde_json::from_str(b).ok())
        .unwrap_or(serde_json::Value::Null);
    Some((status, json))
}
