//! Group calls go through an SFU, never a home-made one: Janus's VideoRoom
//! plugin. Parley creates a room per group call over Janus's HTTP API
//! (room creation is guarded by the VideoRoom `admin_key`), gives the
//! participants its id and pin, and destroys it when the call ends. Several
//! Janus servers are used round-robin.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

#[derive(Debug, Clone, thiserror::Error)]
pub enum MediaError {
    /// No Janus is configured: group calls are not offered.
    #[error("group calls need a media server (calls.janus_urls)")]
    NotConfigured,
    #[error("media server unavailable: {0}")]
    Unavailable(String),
}

pub use parley_core::calls::Room;

/// Cheap to clone (shared state inside).
#[derive(Clone)]
pub struct Janus {
    inner: std::sync::Arc<Inner>,
}

struct Inner {
    urls: Vec<String>,
    admin_key: String,
    next: AtomicUsize,
    client: Client<HttpConnector, Full<Bytes>>,
    timeout: Duration,
}

fn transaction() -> String {
    format!("p{:016x}", rand_u64())
}

fn rand_u64() -> u64 {
    u64::from_le_bytes(parley_core::crypto::random_bytes::<8>())
}

impl Janus {
    pub fn new(urls: Vec<String>, admin_key: String, timeout: Duration) -> Self {
        Self {
            inner: std::sync::Arc::new(Inner {
                urls,
                admin_key,
                next: AtomicUsize::new(0),
                client: Client::builder(TokioExecutor::new()).build_http(),
                timeout,
            }),
        }
    }

    pub fn configured(&self) -> bool {
        !self.inner.urls.is_empty()
    }

    async fn post(&self, url: &str, body: Value) -> Result<Value, MediaError> {
        let req = hyper::Request::post(url)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(|e| MediaError::Unavailable(e.to_string()))?;
        let call = async {
            let res = self
                .inner
                .client
                .request(req)
                .await
                .map_err(|e| MediaError::Unavailable(format!("{url}: {e}")))?;
            let bytes = res
                .into_body()
                .collect()
                .await
                .map_err(|e| MediaError::Unavailable(format!("{url}: {e}")))?
                .to_bytes();
            serde_json::from_slice::<Value>(&bytes)
                .map_err(|e| MediaError::Unavailable(format!("{url}: not JSON: {e}")))
        };
        let v = tokio::time::timeout(self.inner.timeout, call)
            .await
            .map_err(|_| MediaError::Unavailable(format!("{url}: no answer in time")))??;
        if v["janus"] == "error" {
            return Err(MediaError::Unavailable(format!(
                "{url}: {}",
                v["error"]["reason"].as_str().unwrap_or("error")
            )));
        }
        Ok(v)
    }

    /// Runs one VideoRoom request in a session of its own.
    async fn videoroom(&self, base: &str, body: Value) -> Result<Value, MediaError> {
        let s = self
            .post(
                base,
                json!({"janus": "create", "transaction": transaction()}),
            )
            .await?;
        let session = s["data"]["id"]
            .as_u64()
            .ok_or_else(|| MediaError::Unavailable(format!("{base}: no session id")))?;
        let surl = format!("{base}/{session}");
        let out = async {
            let h = self
                .post(
                    &surl,
                    json!({"janus": "attach", "plugin": "janus.plugin.videoroom", "transaction": transaction()}),
                )
                .await?;
            let handle = h["data"]["id"]
                .as_u64()
                .ok_or_else(|| MediaError::Unavailable(format!("{base}: no handle id")))?;
            let r = self
                .post(
                    &format!("{surl}/{handle}"),
                    json!({"janus": "message", "transaction": transaction(), "body": body}),
                )
                .await?;
            let data = r["plugindata"]["data"].clone();
            if let Some(e) = data["error"].as_str() {
                return Err(MediaError::Unavailable(format!("{base}: videoroom: {e}")));
            }
            Ok(data)
        }
        .await;
        let _ = self
            .post(
                &surl,
                json!({"janus": "destroy", "transaction": transaction()}),
            )
            .await;
        out
    }

    /// Creates a room for up to `publishers` participants, on the next
    /// server in turn (the next one if it fails).
    pub async fn create_room(&self, pin: &str, publishers: usize) -> Result<Room, MediaError> {
        if self.inner.urls.is_empty() {
            return Err(MediaError::NotConfigured);
        }
        let mut last = MediaError::NotConfigured;
        for _ in 0..self.inner.urls.len() {
            let i = self.inner.next.fetch_add(1, Ordering::Relaxed) % self.inner.urls.len();
            let base = self.inner.urls[i].trim_end_matches('/');
            // Janus room ids are JSON numbers: stay below 2^53.
            let room = rand_u64() >> 11;
            let mut body = json!({
                "request": "create", "room": room, "pin": pin, "is_private": true,
                "publishers": publishers, "permanent": false,
                "description": "parley call",
            });
            if !self.inner.admin_key.is_empty() {
                body["admin_key"] = json!(self.inner.admin_key);
            }
            match self.videoroom(base, body).await {
                Ok(_) => {
                    return Ok(Room {
                        server: base.to_owned(),
                        room,
                        pin: pin.to_owned(),
                    })
                }
                Err(e) => {
                    tracing::warn!(server = base, error = %e, "room not created");
                    last = e;
                }
            }
        }
        Err(last)
    }

    /// Destroys a room (absent is fine).
    pub async fn destroy_room(&self, room: &Room) -> Result<(), MediaError> {
        let body = json!({"request": "destroy", "room": room.room});
        match self.videoroom(&room.server, body).await {
            Ok(_) => Ok(()),
            Err(MediaError::Unavailable(m)) if m.contains("No such room") => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Whether a room exists (tests, `parley admin`).
    pub async fn room_exists(&self, room: &Room) -> Result<bool, MediaError> {
        let body = json!({"request": "exists", "room": room.room});
        let data = self.videoroom(&room.server, body).await?;
        Ok(data["exists"].as_bool().unwrap_or(false))
    }

    /// Every configured server answers `GET …/info` (readiness).
    pub async fn check(&self) -> Result<(), MediaError> {
        for u in &self.inner.urls {
            let url = format!("{}/info", u.trim_end_matches('/'));
            let req = hyper::Request::get(&url)
                .body(Full::new(Bytes::new()))
                .map_err(|e| MediaError::Unavailable(e.to_string()))?;
            let res = tokio::time::timeout(self.inner.timeout, self.inner.client.request(req))
                .await
                .map_err(|_| MediaError::Unavailable(format!("{url}: no answer in time")))?
                .map_err(|e| MediaError::Unavailable(format!("{url}: {e}")))?;
            if !res.status().is_success() {
                return Err(MediaError::Unavailable(format!(
                    "{url}: HTTP {}",
                    res.status()
                )));
            }
        }
        Ok(())
    }
}
