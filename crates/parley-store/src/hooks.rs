//! Incoming webhooks: rows keyed by the SHA-256 of their token.

use crate::{Result, Store};
use chrono::{DateTime, Utc};
use parley_core::{ConversationId, HookId, InfobaseId, SubscriberId, UserId};
use sqlx::Row;

/// A webhook as its infobase sees it (never the token).
#[derive(Clone, Debug)]
pub struct HookRow {
    pub id: HookId,
    pub infobase_id: InfobaseId,
    pub conversation_id: ConversationId,
    pub author_id: UserId,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A live webhook found by its token, with what posting needs.
#[derive(Clone, Debug)]
pub struct HookTarget {
    pub hook: HookRow,
    pub subscriber_id: SubscriberId,
}

/// A new webhook to store.
#[derive(Clone, Debug)]
pub struct NewHook {
    pub id: HookId,
    pub infobase_id: InfobaseId,
    pub conversation_id: ConversationId,
    pub author_id: UserId,
    pub name: String,
    pub token_hash: Vec<u8>,
}

const HOOK_COLUMNS: &str =
    "h.id, h.infobase_id, h.conversation_id, h.author_id, h.name, h.created_at, h.revoked_at";

fn hook_from_row(r: &sqlx::postgres::PgRow) -> Result<HookRow> {
    Ok(HookRow {
        id: HookId(r.try_get("id")?),
        infobase_id: InfobaseId(r.try_get("infobase_id")?),
        conversation_id: ConversationId(r.try_get("conversation_id")?),
        author_id: UserId(r.try_get("author_id")?),
        name: r.try_get("name")?,
        created_at: r.try_get("created_at")?,
        revoked_at: r.try_get("revoked_at")?,
    })
}

impl Store {
    /// Stores a webhook unless the infobase already has `max` live ones;
    /// false when it has.
    pub async fn insert_hook(&self, h: &NewHook, max: i64) -> Result<Option<HookRow>> {
        let sql = format!(
            "INSERT INTO incoming_webhooks AS h (id, infobase_id, conversation_id, author_id, name, token_hash)
             SELECT $1, $2, $3, $4, $5, $6
             WHERE (SELECT count(*) FROM incoming_webhooks
                    WHERE infobase_id = $2 AND revoked_at IS NULL) < $7
             RETURNING {HOOK_COLUMNS}"
        );
        let row = sqlx::query(&sql)
            .bind(h.id.0)
            .bind(h.infobase_id.0)
            .bind(h.conversation_id.0)
            .bind(h.author_id.0)
            .bind(&h.name)
            .bind(&h.token_hash)
            .bind(max)
            .fetch_optional(&self.db)
            .await?;
        row.as_ref().map(hook_from_row).transpose()
    }

    /// The infobase's webhooks, newest first (revoked ones too).
    pub async fn hooks_of(&self, infobase: InfobaseId) -> Result<Vec<HookRow>> {
        let sql = format!(
            "SELECT {HOOK_COLUMNS} FROM incoming_webhooks h WHERE h.infobase_id = $1
             ORDER BY h.created_at DESC, h.id DESC"
        );
        let rows = sqlx::query(&sql)
            .bind(infobase.0)
            .fetch_all(&self.db)
            .await?;
        rows.iter().map(hook_from_row).collect()
    }

    /// Revokes a live webhook of the infobase; false when there is none.
    pub async fn revoke_hook(&self, infobase: InfobaseId, id: HookId) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE incoming_webhooks SET revoked_at = now()
             WHERE id = $1 AND infobase_id = $2 AND revoked_at IS NULL",
        )
        .bind(id.0)
        .bind(infobase.0)
        .execute(&self.db)
        .await?
        .rows_affected();
        Ok(done == 1)
    }

    /// The live webhook with this token hash, of a registered infobase.
    pub async fn hook_by_token(&self, token_hash: &[u8]) -> Result<Option<HookTarget>> {
        let sql = format!(
            "SELECT {HOOK_COLUMNS}, i.subscriber_id FROM incoming_webhooks h
             JOIN infobases i ON i.id = h.infobase_id
             WHERE h.token_hash = $1 AND h.revoked_at IS NULL AND i.unregistered_at IS NULL"
        );
        let row = sqlx::query(&sql)
            .bind(token_hash)
            .fetch_optional(&self.db)
            .await?;
        match row {
            None => Ok(None),
            Some(r) => Ok(Some(HookTarget {
                hook: hook_from_row(&r)?,
                subscriber_id: SubscriberId(r.try_get("subscriber_id")?),
            })),
        }
    }
}
