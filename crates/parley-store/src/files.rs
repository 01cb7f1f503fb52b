//! File metadata: announced uploads, verification, attachment, cleanup.

use crate::{Result, Store, StoreError};
use chrono::{DateTime, Utc};
use parley_core::protocol::{FileInfo, FileState};
use parley_core::{ConversationId, FileId, SubscriberId, UserId};
use sqlx::postgres::PgRow;
use sqlx::Row;
use uuid::Uuid;

#[derive(Clone, Debug)]
pub struct NewFile {
    pub id: FileId,
    pub subscriber_id: SubscriberId,
    pub conversation_id: ConversationId,
    pub owner_id: UserId,
    pub name: String,
    pub content_type: String,
    pub size: i64,
    pub sha256: String,
    pub storage_key: String,
    pub expires_at: DateTime<Utc>,
}

/// A file row with what the gateway needs beyond [`FileInfo`].
#[derive(Clone, Debug)]
pub struct FileRow {
    pub info: FileInfo,
    pub subscriber_id: SubscriberId,
    pub storage_key: String,
    pub message_id: Option<Uuid>,
}

fn state(s: &str) -> Result<FileState> {
    Ok(match s {
        "pending" => FileState::Pending,
        "uploaded" => FileState::Uploaded,
        "attached" => FileState::Attached,
        other => return Err(StoreError::Invalid(format!("bad file state {other}"))),
    })
}

const FILE_COLUMNS: &str =
    "id, subscriber_id, conversation_id, owner_id, name, content_type, size, sha256, \
                            storage_key, state, message_id, created_at";

fn file_from_row(r: &PgRow) -> Result<FileRow> {
    let st: String = r.try_get("state")?;
    Ok(FileRow {
        info: FileInfo {
            id: FileId(r.try_get("id")?),
            conversation_id: ConversationId(r.try_get("conversation_id")?),
            owner_id: UserId(r.try_get("owner_id")?),
            name: r.try_get("name")?,
            content_type: r.try_get("content_type")?,
            size: r.try_get("size")?,
            sha256: r.try_get("sha256")?,
            state: state(&st)?,
            created_at: r.try_get("created_at")?,
        },
        subscriber_id: SubscriberId(r.try_get("subscriber_id")?),
        storage_key: r.try_get("storage_key")?,
        message_id: r.try_get("message_id")?,
    })
}

/// Why a new file was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileRefusal {
    Quota { used: i64, quota: i64 },
}

impl Store {
    /// Announces an upload, within the subscriber's quota (checked under the
    /// subscriber row's lock, so concurrent uploads cannot both pass).
    pub async fn create_file(
        &self,
        f: &NewFile,
        quota: i64,
    ) -> Result<std::result::Result<FileRow, FileRefusal>> {
        let mut tx = self.db.begin().await?;
        sqlx::query("SELECT 1 FROM subscribers WHERE id = $1 FOR UPDATE")
            .bind(f.subscriber_id.0)
            .execute(&mut *tx)
            .await?;
        let used: i64 = sqlx::query_scalar(
            "SELECT COALESCE(sum(size), 0)::bigint FROM files WHERE subscriber_id = $1",
        )
        .bind(f.subscriber_id.0)
        .fetch_one(&mut *tx)
        .await?;
        if quota > 0 && used + f.size > quota {
            return Ok(Err(FileRefusal::Quota { used, quota }));
        }
        let sql = format!(
            "INSERT INTO files (id, subscriber_id, conversation_id, owner_id, name, content_type, size, sha256,
                                storage_key, state, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'pending', $10)
             RETURNING {FILE_COLUMNS}"
        );
        let row = sqlx::query(&sql)
            .bind(f.id.0)
            .bind(f.subscriber_id.0)
            .bind(f.conversation_id.0)
            .bind(f.owner_id.0)
            .bind(&f.name)
            .bind(&f.content_type)
            .bind(f.size)
            .bind(&f.sha256)
            .bind(&f.storage_key)
            .bind(f.expires_at)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Ok(file_from_row(&row)?))
    }

    pub async fn file(&self, id: FileId) -> Result<Option<FileRow>> {
        let sql = format!("SELECT {FILE_COLUMNS} FROM files WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id.0)
            .fetch_optional(&self.db)
            .await?;
        row.as_ref().map(file_from_row).transpose()
    }

    /// Pending → uploaded once the bytes were verified.
    pub async fn mark_uploaded(&self, id: FileId) -> Result<bool> {
        let n = sqlx::query("UPDATE files SET state = 'uploaded', uploaded_at = now() WHERE id = $1 AND state = 'pending'")
            .bind(id.0)
            .execute(&self.db)
            .await?
            .rows_affected();
        Ok(n == 1)
    }

    pub async fn delete_file_row(&self, id: FileId) -> Result<()> {
        sqlx::query("DELETE FROM files WHERE id = $1")
            .bind(id.0)
            .execute(&self.db)
            .await?;
        Ok(())
    }

    /// Which of the files are still pending (their upload may still come).
    pub async fn pending_files(&self, ids: &[FileId]) -> Result<Vec<FileId>> {
        let ids: Vec<Uuid> =
            sqlx::query_scalar("SELECT id FROM files WHERE id = ANY($1) AND state = 'pending'")
                .bind(ids.iter().map(|f| f.0).collect::<Vec<_>>())
                .fetch_all(&self.db)
                .await?;
        Ok(ids.into_iter().map(FileId).collect())
    }

    /// Pending uploads past their deadline.
    pub async fn abandoned_files(&self, limit: i64) -> Result<Vec<FileRow>> {
        let sql = format!(
            "SELECT {FILE_COLUMNS} FROM files WHERE state = 'pending' AND expires_at < now()
             ORDER BY expires_at LIMIT $1"
        );
        let rows = sqlx::query(&sql).bind(limit).fetch_all(&self.db).await?;
        rows.iter().map(file_from_row).collect()
    }

    /// Files older than the retention period.
    pub async fn retired_files(&self, days: i64, limit: i64) -> Result<Vec<FileRow>> {
        let sql = format!(
            "SELECT {FILE_COLUMNS} FROM files WHERE created_at < now() - make_interval(days => $1::int)
             ORDER BY created_at LIMIT $2"
        );
        let rows = sqlx::query(&sql)
            .bind(days)
            .bind(limit)
            .fetch_all(&self.db)
            .await?;
        rows.iter().map(file_from_row).collect()
    }

    /// Whether `user` may read the attached file: a member of its
    /// conversation who may see the message that carries it.
    pub async fn may_read_file(&self, file: &FileRow, user: UserId) -> Result<bool> {
        let Some(message) = file.message_id else {
            // A conversation's picture: its members see it.
            let ok: Option<i32> = sqlx::query_scalar(
                "SELECT 1 FROM conversations c JOIN members mb ON mb.conversation_id = c.id
                 WHERE c.picture = $1 AND mb.user_id = $2",
            )
            .bind(file.info.id.0)
            .bind(user.0)
            .fetch_optional(&self.db)
            .await?;
            return Ok(ok.is_some());
        };
        // The message that carries it, or a forwarded copy of that message
        // (which names it as `forwarded_from`) the user can read.
        let ok: Option<i32> = sqlx::query_scalar(
            "SELECT 1 FROM members mb JOIN messages m ON m.conversation_id = mb.conversation_id
             WHERE mb.conversation_id = $1 AND mb.user_id = $2 AND m.id = $3 AND NOT m.deleted
               AND (m.recipients IS NULL OR m.author_id = $2 OR $2 = ANY(m.recipients))
             UNION ALL
             SELECT 1 FROM messages f JOIN members mb ON mb.conversation_id = f.conversation_id
             WHERE f.forwarded_from = $3 AND mb.user_id = $2 AND NOT f.deleted
               AND (f.recipients IS NULL OR f.author_id = $2 OR $2 = ANY(f.recipients))
             LIMIT 1",
        )
        .bind(file.info.conversation_id.0)
        .bind(user.0)
        .bind(message)
        .fetch_optional(&self.db)
        .await?;
        Ok(ok.is_some())
    }
}
