//! File storage behind one trait: an S3-compatible bucket (AWS, MinIO,
//! Garage, …) through aws-sdk-s3, or a local directory. Bytes stream through
//! in bounded pieces: nothing here holds a whole file in memory.

mod config;
mod local;
mod s3;

pub use config::{FilesConfig, StorageKind};
pub use local::LocalStorage;
pub use s3::S3Storage;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;

pub type ByteStream = BoxStream<'static, Result<Bytes, FilesError>>;

#[derive(Debug, Clone, thiserror::Error)]
pub enum FilesError {
    #[error("no such object")]
    NotFound,
    /// The storage cannot be reached or refuses us; the message explains.
    #[error("file storage unavailable: {0}")]
    Unavailable(String),
    #[error("larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("{0}")]
    Invalid(String),
}

/// A stored object: its size and SHA-256 (hex).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    pub size: u64,
    pub sha256: String,
}

/// A request the client makes itself (presigned URL).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Presigned {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
}

/// Bytes of an object, whole or a range.
pub struct Object {
    /// Size of the whole object.
    pub total: u64,
    /// First and last byte sent (inclusive) when a range was asked.
    pub range: Option<(u64, u64)>,
    pub stream: ByteStream,
}

pub trait Storage: Send + Sync + 'static {
    fn name(&self) -> &'static str;

    /// Streams `body` into `key`, refusing more than `max` bytes. Returns the
    /// size and checksum; on any failure nothing is left behind.
    fn put<'a>(
        &'a self,
        key: &'a str,
        content_type: &'a str,
        body: ByteStream,
        max: u64,
    ) -> BoxFuture<'a, Result<Stored, FilesError>>;

    /// A URL the client uploads to directly, or None when the backend has
    /// none (upload through Parley then).
    fn presign_put<'a>(
        &'a self,
        key: &'a str,
        content_type: &'a str,
        size: u64,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Option<Presigned>, FilesError>>;

    /// A URL the client downloads from directly, or None.
    fn presign_get<'a>(
        &'a self,
        key: &'a str,
        filename: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Option<Presigned>, FilesError>>;

    /// Size of the object, None when absent.
    fn head<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<u64>, FilesError>>;

    /// The object, or bytes `start..=end` of it (`end` None = to the end).
    fn get<'a>(
        &'a self,
        key: &'a str,
        range: Option<(u64, Option<u64>)>,
    ) -> BoxFuture<'a, Result<Object, FilesError>>;

    /// Removes the object (absent is fine).
    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), FilesError>>;

    /// Copies an object inside the storage (server-side for a bucket):
    /// a verified file is taken out of reach of its upload URL this way.
    fn copy<'a>(&'a self, from: &'a str, to: &'a str) -> BoxFuture<'a, Result<(), FilesError>>;

    /// Up to `limit` keys under `prefix` that sort after `after`, in key
    /// order.
    fn list<'a>(
        &'a self,
        prefix: &'a str,
        after: Option<&'a str>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<String>, FilesError>>;

    /// Verifies that the storage is reachable and writable; the error says
    /// what is wrong (credentials, bucket, network).
    fn check(&self) -> BoxFuture<'_, Result<(), FilesError>>;

    /// A cheap readiness probe for `/readyz`.
    fn ready(&self) -> BoxFuture<'_, Result<(), FilesError>>;
}

/// Streams an object back to measure and hash it (after a direct upload).
pub async fn digest(storage: &dyn Storage, key: &str) -> Result<Stored, FilesError> {
    let mut obj = storage.get(key, None).await?;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    while let Some(chunk) = obj.stream.next().await {
        let chunk = chunk?;
        size += chunk.len() as u64;
        hasher.update(&chunk);
    }
    Ok(Stored {
        size,
        sha256: hex(&hasher.finalize()),
    })
}

pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}

/// The storage the configuration asks for.
pub async fn open(cfg: &FilesConfig) -> Result<Arc<dyn Storage>, FilesError> {
    Ok(match cfg.backend {
        StorageKind::Local => Arc::new(LocalStorage::new(cfg.local_dir.clone().into())),
        StorageKind::S3 => Arc::new(S3Storage::new(cfg)),
    })
}
