//! Files of conversations. A member announces a file (name, size, type,
//! SHA-256) and gets where to upload it: a presigned URL of the bucket, or
//! this server (streamed, never held whole in memory). The bytes are
//! verified before the file counts as uploaded; attached to a committed
//! message it becomes readable by the conversation's readers.

use crate::{Error, Result, Service};
use chrono::Utc;
use parley_core::api::{FileCreated, NewFileBody, Upload};
use parley_core::protocol::{FileInfo, FileState};
use parley_core::{validate, ErrorCode, FileId, UserActor, UserId};
use parley_files::{ByteStream, Object, Presigned, Stored};
use parley_store::{FileRefusal, FileRow, NewFile};
use std::time::Duration;

/// How a download is answered.
pub enum Download {
    /// To a presigned bucket URL.
    Redirect(String),
    /// The bytes (all, or the range asked for), with the file's metadata.
    Bytes { info: FileInfo, object: Object },
    /// The range asked for lies outside the file of this many bytes.
    RangeNotSatisfiable { total: u64 },
}

/// Where a direct upload lands: never the verified file's own key, so an
/// upload URL (alive until `files.upload_url_ttl_secs`) cannot overwrite a
/// verified file; `complete` copies it over after the checks. The file id in
/// it is fresh for every announced file, so no key is ever used twice.
fn upload_key(storage_key: &str) -> String {
    format!("{UPLOADS}{storage_key}")
}

/// The upload area of the storage: objects here with no pending file are
/// strays (written through an old URL after a delete or a failed check).
const UPLOADS: &str = "uploads/";

/// The file id in an upload key (`uploads/files/<subscriber>/<file id>`).
fn file_of_upload(key: &str) -> Option<FileId> {
    key.rsplit('/').next()?.parse().ok()
}

fn hex_ok(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// `bytes=START-END` / `bytes=START-` / `bytes=-SUFFIX`.
fn parse_range(v: &str, total: u64) -> Option<(u64, Option<u64>)> {
    let spec = v.strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (s, e) = spec.split_once('-')?;
    if s.is_empty() {
        let n: u64 = e.parse().ok()?;
        return Some((total.saturating_sub(n), None));
    }
    let start: u64 = s.parse().ok()?;
    let end = if e.is_empty() {
        None
    } else {
        Some(e.parse().ok()?)
    };
    Some((start, end))
}

impl Service {
    /// Announces a file of a conversation the caller is a member of.
    pub async fn create_file(&self, me: &UserActor, b: NewFileBody) -> Result<FileCreated> {
        let lim = &self.cfg.limits;
        let cfg = &self.cfg.files;
        let name = validate::text("name", &b.name, lim.max_file_name_chars)?;
        if name.contains('/') || name.contains('\\') {
            return Err(Error::invalid("name: must not contain / or \\"));
        }
        let content_type =
            validate::text("content_type", &b.content_type, lim.max_content_type_chars)?
                .to_ascii_lowercase();
        if !content_type.contains('/') {
            return Err(Error::invalid("content_type: not a media type"));
        }
        if !cfg.type_allowed(&content_type) {
            return Err(Error::new(
                ErrorCode::UnsupportedType,
                format!("content_type: {content_type} is not accepted"),
            ));
        }
        let max = cfg.max_file_bytes;
        if b.size > max {
            return Err(Error::too_large(format!(
                "size: larger than files.max_file_bytes ({max})"
            )));
        }
        let sha256 = b.sha256.to_ascii_lowercase();
        if !hex_ok(&sha256) {
            return Err(Error::invalid("sha256: 64 hex digits"));
        }
        self.require_member(me, b.conversation_id).await?;
        let id = FileId::new_random();
        let new = NewFile {
            id,
            subscriber_id: me.subscriber_id,
            conversation_id: b.conversation_id,
            owner_id: me.id(),
            name,
            content_type: content_type.clone(),
            size: b.size as i64,
            sha256,
            storage_key: format!("files/{}/{id}", me.subscriber_id),
            expires_at: Utc::now() + Duration::from_secs(cfg.upload_ttl_secs),
        };
        // Ask the storage first: an unreachable bucket must not leave a row.
        let ttl = Duration::from_secs(cfg.upload_url_ttl_secs);
        let presigned = self
            .files
            .presign_put(&upload_key(&new.storage_key), &content_type, b.size, ttl)
            .await?;
        let quota = i64::try_from(cfg.quota_bytes_per_subscriber).unwrap_or(i64::MAX);
        let row = match self.store.create_file(&new, quota).await? {
            Ok(row) => row,
            Err(FileRefusal::Quota { used, quota }) => {
                return Err(Error::new(
                    ErrorCode::QuotaExceeded,
                    format!("{used} of {quota} bytes used (files.quota_bytes_per_subscriber)"),
                ))
            }
        };
        let upload = match presigned {
            Some(Presigned {
                method,
                url,
                headers,
            }) => Upload {
                method,
                url,
                headers,
                direct: true,
            },
            None => Upload {
                method: "PUT".into(),
                url: format!("/v1/files/{id}/content"),
                headers: vec![("content-type".into(), content_type)],
                direct: false,
            },
        };
        Ok(FileCreated {
            file: row.info,
            upload,
        })
    }

    /// The caller's own pending file.
    async fn own_pending(&self, id: FileId, user: UserId) -> Result<FileRow> {
        let row = self
            .store
            .file(id)
            .await?
            .ok_or_else(|| Error::not_found("file"))?;
        if row.info.owner_id != user {
            return Err(Error::not_found("file"));
        }
        if row.info.state != FileState::Pending {
            return Err(Error::new(
                ErrorCode::Conflict,
                "the file is uploaded already",
            ));
        }
        Ok(row)
    }

    /// Checks what was stored against what was declared; on mismatch removes
    /// both the object and the row.
    async fn settle(&self, row: &FileRow, stored: Stored) -> Result<FileInfo> {
        if stored.size != row.info.size as u64 || stored.sha256 != row.info.sha256 {
            let _ = self.files.delete(&row.storage_key).await;
            let _ = self.files.delete(&upload_key(&row.storage_key)).await;
            self.store.delete_file_row(row.info.id).await?;
            return Err(Error::new(
                ErrorCode::ChecksumMismatch,
                format!(
                    "got {} bytes with SHA-256 {}, declared {} bytes with {}; the upload was discarded",
                    stored.size, stored.sha256, row.info.size, row.info.sha256
                ),
            ));
        }
        self.store.mark_uploaded(row.info.id).await?;
        let mut info = row.info.clone();
        info.state = FileState::Uploaded;
        Ok(info)
    }

    /// Stores the bytes of an own pending file streamed through this node.
    pub async fn upload_file(
        &self,
        me: &UserActor,
        id: FileId,
        body: ByteStream,
    ) -> Result<FileInfo> {
        let row = self.own_pending(id, me.id()).await?;
        let declared = row.info.size as u64;
        let stored = match self
            .files
            .put(&row.storage_key, &row.info.content_type, body, declared)
            .await
        {
            Ok(s) => s,
            Err(e) => {
                // Nothing half-written: the storage removed its part; the row goes.
                self.store.delete_file_row(row.info.id).await?;
                return Err(e.into());
            }
        };
        self.settle(&row, stored).await
    }

    /// After a direct upload to the bucket: copies the upload to the file's
    /// own key (out of the upload URL's reach) and verifies size and SHA-256
    /// of that copy, so what was checked is what is kept.
    pub async fn complete_file(&self, me: &UserActor, id: FileId) -> Result<FileInfo> {
        let row = self.own_pending(id, me.id()).await?;
        let upload = upload_key(&row.storage_key);
        let stored = match self.files.head(&upload).await? {
            None => return Err(Error::new(ErrorCode::Conflict, "nothing was uploaded yet")),
            // A wrong size is refused without reading the bytes.
            Some(size) if size != row.info.size as u64 => Stored {
                size,
                sha256: String::new(),
            },
            Some(_) => {
                self.files.copy(&upload, &row.storage_key).await?;
                parley_files::digest(self.files.as_ref(), &row.storage_key).await?
            }
        };
        let info = self.settle(&row, stored).await?;
        // A leftover is a stray for the sweep, not an error of this call.
        if let Err(e) = self.files.delete(&upload).await {
            tracing::warn!(error = %e, file_id = %id, "upload object not removed");
        }
        Ok(info)
    }

    /// A file the caller may see: its own, or one on a message it may read.
    pub async fn readable_file(&self, me: &UserActor, id: FileId) -> Result<FileRow> {
        let row = self
            .store
            .file(id)
            .await?
            .ok_or_else(|| Error::not_found("file"))?;
        if row.subscriber_id != me.subscriber_id {
            return Err(Error::not_found("file"));
        }
        if row.info.owner_id == me.id() || self.store.may_read_file(&row, me.id()).await? {
            return Ok(row);
        }
        Err(Error::access_denied("you may not read this file"))
    }

    /// The bytes of a readable file: a redirect to a presigned bucket URL
    /// (unless `stream` asks for the bytes through this node), or a stream
    /// of all bytes or of the `range` (an HTTP `Range` value).
    pub async fn download_file(
        &self,
        me: &UserActor,
        id: FileId,
        stream: bool,
        range: Option<&str>,
    ) -> Result<Download> {
        let row = self.readable_file(me, id).await?;
        if row.info.state == FileState::Pending {
            return Err(Error::not_found("file content"));
        }
        if !stream {
            let ttl = Duration::from_secs(self.cfg.files.presign_ttl_secs);
            if let Some(p) = self
                .files
                .presign_get(&row.storage_key, &row.info.name, ttl)
                .await?
            {
                return Ok(Download::Redirect(p.url));
            }
        }
        let total = row.info.size as u64;
        let range = match range {
            Some(v) => match parse_range(v, total) {
                Some(r) if r.0 < total => Some(r),
                _ => return Ok(Download::RangeNotSatisfiable { total }),
            },
            None => None,
        };
        let object = self.files.get(&row.storage_key, range).await?;
        Ok(Download::Bytes {
            info: row.info,
            object,
        })
    }

    /// Removes an own file that is not attached to a message.
    pub async fn delete_file(&self, me: &UserActor, id: FileId) -> Result<()> {
        let row = self
            .store
            .file(id)
            .await?
            .ok_or_else(|| Error::not_found("file"))?;
        if row.info.owner_id != me.id() {
            return Err(Error::not_found("file"));
        }
        if row.info.state == FileState::Attached {
            return Err(Error::new(
                ErrorCode::Conflict,
                "the file is on a message; delete the message",
            ));
        }
        self.files.delete(&row.storage_key).await?;
        self.files.delete(&upload_key(&row.storage_key)).await?;
        self.store.delete_file_row(row.info.id).await?;
        Ok(())
    }

    /// Removes abandoned uploads and files past retention, object and row
    /// together. Returns how many went.
    pub async fn file_housekeeping(&self) -> Result<usize> {
        // A bounded batch per sweep keeps one sweep short.
        let batch = i64::from(self.cfg.maintenance.files_sweep_batch);
        let mut gone = 0;
        let mut doomed = self.store.abandoned_files(batch).await?;
        if self.cfg.files.retention_days > 0 {
            let days = i64::try_from(self.cfg.files.retention_days).unwrap_or(i64::MAX);
            doomed.extend(self.store.retired_files(days, batch).await?);
        }
        for row in doomed {
            self.files.delete(&row.storage_key).await?;
            self.files.delete(&upload_key(&row.storage_key)).await?;
            self.store.delete_file_row(row.info.id).await?;
            gone += 1;
        }
        let strays = self.sweep_stray_uploads(batch).await?;
        if strays > 0 {
            tracing::info!(strays, "stray upload objects removed");
        }
        Ok(gone)
    }

    /// Removes objects of the upload area whose file is no longer pending:
    /// bytes sent through an upload URL after the file was deleted, failed
    /// its check, or was completed. One page per call; the next call goes
    /// on from where this one stopped, then starts over.
    pub async fn sweep_stray_uploads(&self, batch: i64) -> Result<usize> {
        let limit = usize::try_from(batch).unwrap_or(1000).clamp(1, 1000);
        let after = self
            .stray_cursor
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let keys = self.files.list(UPLOADS, after.as_deref(), limit).await?;
        *self.stray_cursor.lock().unwrap_or_else(|p| p.into_inner()) = if keys.len() < limit {
            None
        } else {
            keys.last().cloned()
        };
        let ids: Vec<FileId> = keys.iter().filter_map(|k| file_of_upload(k)).collect();
        let pending = self.store.pending_files(&ids).await?;
        let mut removed = 0;
        for key in &keys {
            if file_of_upload(key).is_some_and(|id| pending.contains(&id)) {
                continue;
            }
            self.files.delete(key).await?;
            removed += 1;
        }
        Ok(removed)
    }
}
