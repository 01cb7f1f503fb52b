//! Configuration sections the API reads. The server composes them into the
//! whole file; `docs/configuration.md` documents every key.

pub use parley_service::config::{check, ConfigValueError};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// `[http]`
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    pub bind: String,
    /// Worker threads; 0 = one per core.
    pub workers: usize,
    pub max_body_bytes: usize,
    /// Peers whose `X-Forwarded-For` is believed (the reverse proxies).
    pub trusted_proxies: Vec<IpAddr>,
    pub request_timeout_secs: u64,
    /// Longest wait for each component's answer in `/readyz`.
    pub readiness_timeout_secs: u64,
    /// PEM certificate chain for the node's own TLS listener; empty = plain
    /// HTTP (TLS ends at a reverse proxy).
    pub tls_cert: String,
    /// PEM private key of `tls_cert`.
    pub tls_key: String,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:8080".into(),
            workers: 0,
            max_body_bytes: 64 * 1024,
            trusted_proxies: Vec::new(),
            request_timeout_secs: 30,
            readiness_timeout_secs: 2,
            tls_cert: String::new(),
            tls_key: String::new(),
        }
    }
}

impl HttpConfig {
    pub fn validate(&self) -> Result<(), ConfigValueError> {
        check(
            self.bind.parse::<std::net::SocketAddr>().is_ok(),
            "http.bind",
            "must be an address:port such as 127.0.0.1:8080",
        )?;
        check(self.workers <= 1024, "http.workers", "must be at most 1024")?;
        check(
            (1024..=64 * 1024 * 1024).contains(&self.max_body_bytes),
            "http.max_body_bytes",
            "must be between 1024 and 67108864",
        )?;
        check(
            (1..=3600).contains(&self.request_timeout_secs),
            "http.request_timeout_secs",
            "must be between 1 and 3600",
        )?;
        check(
            (1..=60).contains(&self.readiness_timeout_secs),
            "http.readiness_timeout_secs",
            "must be between 1 and 60",
        )?;
        check(
            self.tls_cert.is_empty() == self.tls_key.is_empty(),
            "http.tls_cert",
            "http.tls_cert and http.tls_key go together (both PEM file paths, or both empty)",
        )
    }
}

/// `[ws]`
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WsConfig {
    pub path: String,
    pub heartbeat_secs: u64,
    pub heartbeat_timeout_secs: u64,
    pub auth_timeout_secs: u64,
    pub max_frame_bytes: usize,
    pub queue_capacity: usize,
    pub max_connections: usize,
    /// Sessions one subscriber (tenant) may hold on a node, so that one
    /// tenant cannot fill `max_connections` for all.
    pub max_connections_per_subscriber: usize,
    /// Sessions one infobase may hold on a node.
    pub max_connections_per_infobase: usize,
    pub max_connections_per_user: usize,
    pub resume_max_events: u32,
    /// How long a session holds events that follow a gap in `seq` before
    /// it reads the missing ones from PostgreSQL (0: at once). In a cluster
    /// a node's own events reach its sessions before another node's
    /// earlier ones arrive through Redis; the wait saves the read.
    pub gap_wait_ms: u64,
    /// Longest client-chosen request `id`.
    pub max_request_id_bytes: usize,
    /// Longest wait for a close or error frame to leave before the socket is
    /// dropped (a peer that reads nothing must not hold the task).
    pub close_timeout_secs: u64,
    /// Request frames a session may send per second on average…
    pub frames_per_sec: u32,
    /// …and at once after a quiet time (a resume, a burst of sends). Beyond
    /// it a frame is answered `rate_limited`; a session refused `frames_burst`
    /// times in a row is closed with 4009.
    pub frames_burst: u32,
}

impl Default for WsConfig {
    fn default() -> Self {
        Self {
            path: "/ws".into(),
            heartbeat_secs: 25,
            heartbeat_timeout_secs: 60,
            auth_timeout_secs: 10,
            max_frame_bytes: 128 * 1024,
            queue_capacity: 256,
            max_connections: 10_000,
            max_connections_per_subscriber: 5_000,
            max_connections_per_infobase: 5_000,
            max_connections_per_user: 16,
            resume_max_events: 1000,
            gap_wait_ms: 20,
            max_request_id_bytes: 128,
            close_timeout_secs: 2,
            frames_per_sec: 100,
            frames_burst: 1000,
        }
    }
}

impl WsConfig {
    pub fn validate(&self) -> Result<(), ConfigValueError> {
        check(
            self.path.starts_with('/') && !self.path.starts_with("/v1") && self.path.len() > 1,
            "ws.path",
            "must start with / and not be under /v1",
        )?;
        check(
            self.heartbeat_secs >= 1,
            "ws.heartbeat_secs",
            "must be at least 1",
        )?;
        check(
            self.heartbeat_timeout_secs > self.heartbeat_secs,
            "ws.heartbeat_timeout_secs",
            "must be greater than ws.heartbeat_secs",
        )?;
        check(
            self.auth_timeout_secs >= 1,
            "ws.auth_timeout_secs",
            "must be at least 1",
        )?;
        check(
            (1024..=16 * 1024 * 1024).contains(&self.max_frame_bytes),
            "ws.max_frame_bytes",
            "must be between 1024 and 16777216",
        )?;
        check(
            (4..=65536).contains(&self.queue_capacity),
            "ws.queue_capacity",
            "must be between 4 and 65536",
        )?;
        check(
            self.max_connections >= 1,
            "ws.max_connections",
            "must be at least 1",
        )?;
        check(
            self.max_connections_per_subscriber >= 1,
            "ws.max_connections_per_subscriber",
            "must be at least 1",
        )?;
        check(
            self.max_connections_per_infobase >= 1,
            "ws.max_connections_per_infobase",
            "must be at least 1",
        )?;
        check(
            self.max_connections_per_user >= 1,
            "ws.max_connections_per_user",
            "must be at least 1",
        )?;
        check(
            (1..=100_000).contains(&self.frames_per_sec),
            "ws.frames_per_sec",
            "must be between 1 and 100000",
        )?;
        check(
            (1..=100_000).contains(&self.frames_burst),
            "ws.frames_burst",
            "must be between 1 and 100000",
        )?;
        check(
            self.gap_wait_ms <= 10_000,
            "ws.gap_wait_ms",
            "must be at most 10000",
        )?;
        check(
            (1..=100_000).contains(&self.resume_max_events),
            "ws.resume_max_events",
            "must be between 1 and 100000",
        )?;
        check(
            (1..=4096).contains(&self.max_request_id_bytes),
            "ws.max_request_id_bytes",
            "must be between 1 and 4096",
        )?;
        check(
            (1..=60).contains(&self.close_timeout_secs),
            "ws.close_timeout_secs",
            "must be between 1 and 60",
        )
    }
}

/// `[web]`
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebConfig {
    /// `POST /v1/dev/signin` signs anyone in by name into a development
    /// infobase. Only for the embedded default on a developer's machine.
    pub dev_signin: bool,
    /// Origins (e.g. `https://erp.example.com`) whose pages may embed the
    /// web client in a frame (`/embed/context`); none by default: only
    /// Parley's own pages.
    pub frame_ancestors: Vec<String>,
}

impl WebConfig {
    /// The Content-Security-Policy of the web client's pages: its own
    /// scripts and styles only, WebSocket and API calls to this origin,
    /// pictures from here or any https address (users' avatars), framed
    /// only by `frame_ancestors`.
    /// The pages' policy; `connect` adds the origins of URLs the client
    /// fetches besides this server (the media servers of group calls).
    pub fn content_security_policy(&self, connect: &[String]) -> String {
        let mut ancestors = String::from("'self'");
        for o in &self.frame_ancestors {
            ancestors.push(' ');
            ancestors.push_str(o);
        }
        let mut connect_src = String::from("'self'");
        for url in connect {
            // scheme://host[:port] of the URL, nothing that could break out.
            let origin: String = match url.find("://") {
                Some(i) => {
                    let rest = &url[i + 3..];
                    let host = rest.split('/').next().unwrap_or("");
                    format!("{}{}", &url[..i + 3], host)
                }
                None => continue,
            };
            if !origin.contains([' ', ';', ',', '\'', '"']) {
                connect_src.push(' ');
                connect_src.push_str(&origin);
            }
        }
        format!(
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src {connect_src}; \
             img-src 'self' data: blob: https:; media-src 'self' blob:; base-uri 'none'; \
             form-action 'none'; frame-ancestors {ancestors}"
        )
    }

    pub fn validate(&self) -> Result<(), ConfigValueError> {
        let ok = self.frame_ancestors.iter().all(|o| {
            (o.starts_with("https://") || o.starts_with("http://"))
                && o.len() <= 256
                && !o.contains([' ', ';', ',', '\'', '"'])
        });
        check(
            ok,
            "web.frame_ancestors",
            "each must be an origin such as https://erp.example.com",
        )
    }
}
