//! Configuration sections the API reads. The server composes them into the
//! whole file; `docs/configuration.md` documents every key.

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
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:8080".into(),
            workers: 0,
            max_body_bytes: 64 * 1024,
            trusted_proxies: Vec::new(),
            request_timeout_secs: 30,
        }
    }
}

/// `[registration]`
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistrationConfig {
    pub code_length: usize,
    pub code_ttl_secs: u64,
    pub max_attempts: u32,
    pub codes_per_email_per_hour: u32,
    pub requests_per_ip_per_hour: u32,
}

impl Default for RegistrationConfig {
    fn default() -> Self {
        Self {
            code_length: 6,
            code_ttl_secs: 600,
            max_attempts: 5,
            codes_per_email_per_hour: 5,
            requests_per_ip_per_hour: 60,
        }
    }
}

/// `[auth]`
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    pub token_ttl_secs: u64,
    pub max_token_ttl_secs: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            token_ttl_secs: 24 * 3600,
            max_token_ttl_secs: 30 * 24 * 3600,
        }
    }
}

/// A value out of range; names the key.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {message}")]
pub struct ConfigValueError {
    pub key: &'static str,
    pub message: String,
}

fn check(ok: bool, key: &'static str, message: &str) -> Result<(), ConfigValueError> {
    if ok {
        Ok(())
    } else {
        Err(ConfigValueError {
            key,
            message: message.into(),
        })
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
        )
    }
}

impl RegistrationConfig {
    pub fn validate(&self) -> Result<(), ConfigValueError> {
        check(
            (4..=10).contains(&self.code_length),
            "registration.code_length",
            "must be between 4 and 10",
        )?;
        check(
            (30..=86400).contains(&self.code_ttl_secs),
            "registration.code_ttl_secs",
            "must be between 30 and 86400",
        )?;
        check(
            (1..=100).contains(&self.max_attempts),
            "registration.max_attempts",
            "must be between 1 and 100",
        )?;
        check(
            self.codes_per_email_per_hour >= 1,
            "registration.codes_per_email_per_hour",
            "must be at least 1",
        )?;
        check(
            self.requests_per_ip_per_hour >= 1,
            "registration.requests_per_ip_per_hour",
            "must be at least 1",
        )
    }
}

impl AuthConfig {
    pub fn validate(&self) -> Result<(), ConfigValueError> {
        check(
            self.token_ttl_secs >= 60,
            "auth.token_ttl_secs",
            "must be at least 60",
        )?;
        check(
            self.max_token_ttl_secs >= self.token_ttl_secs
                && self.max_token_ttl_secs <= 366 * 24 * 3600,
            "auth.max_token_ttl_secs",
            "must be at least auth.token_ttl_secs and at most 31622400 (366 days)",
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
    pub max_connections_per_user: usize,
    pub resume_max_events: u32,
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
            max_connections_per_user: 16,
            resume_max_events: 1000,
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
            self.max_connections_per_user >= 1,
            "ws.max_connections_per_user",
            "must be at least 1",
        )?;
        check(
            (1..=100_000).contains(&self.resume_max_events),
            "ws.resume_max_events",
            "must be between 1 and 100000",
        )
    }
}

/// `[limits]`
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    pub max_text_bytes: usize,
    pub max_data_bytes: usize,
    pub max_actions: usize,
    pub max_members: usize,
    pub max_title_chars: usize,
    pub max_object_ref_chars: usize,
    pub max_history_page: u32,
    pub typing_interval_ms: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_text_bytes: 32 * 1024,
            max_data_bytes: 64 * 1024,
            max_actions: 20,
            max_members: 1000,
            max_title_chars: 256,
            max_object_ref_chars: 1024,
            max_history_page: 200,
            typing_interval_ms: 2000,
        }
    }
}

impl LimitsConfig {
    pub fn validate(&self) -> Result<(), ConfigValueError> {
        check(
            self.max_text_bytes >= 1,
            "limits.max_text_bytes",
            "must be at least 1",
        )?;
        check(
            self.max_data_bytes >= 2,
            "limits.max_data_bytes",
            "must be at least 2",
        )?;
        check(
            self.max_members >= 2,
            "limits.max_members",
            "must be at least 2",
        )?;
        check(
            self.max_title_chars >= 1,
            "limits.max_title_chars",
            "must be at least 1",
        )?;
        check(
            self.max_object_ref_chars >= 1,
            "limits.max_object_ref_chars",
            "must be at least 1",
        )?;
        check(
            (1..=10_000).contains(&self.max_history_page),
            "limits.max_history_page",
            "must be between 1 and 10000",
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
}
