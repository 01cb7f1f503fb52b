//! Signed webhooks: the endpoints an infobase registered and the outbox of
//! deliveries the feed pump queues. A node delivers by holding the
//! endpoint's row lock (`FOR UPDATE SKIP LOCKED`) for one delivery: no two
//! nodes work on one endpoint at once, so each delivery goes from one node
//! and an endpoint's deliveries go in order.

use crate::db::Tx;
use crate::{Result, Store, StoreError};
use chrono::{DateTime, Utc};
use parley_core::feed::{FeedEvent, Webhook, WebhookDelivery};
use parley_core::{ConversationId, InfobaseId, WebhookId};
use sqlx::types::Json;
use sqlx::Row;
use std::time::Duration;

/// An endpoint with what signing needs.
#[derive(Clone, Debug)]
pub struct EndpointRow {
    pub webhook: Webhook,
    pub infobase_id: InfobaseId,
    pub secret_version: i32,
}

/// A new endpoint to store.
#[derive(Clone, Debug)]
pub struct NewEndpoint {
    pub id: WebhookId,
    pub infobase_id: InfobaseId,
    pub url: String,
    pub kinds: Vec<String>,
}

/// A change to an endpoint (validated by the service).
#[derive(Clone, Debug, Default)]
pub struct EndpointChange {
    pub url: Option<String>,
    pub kinds: Option<Vec<String>>,
    pub enabled: Option<bool>,
    pub rotate_secret: bool,
}

/// The head delivery of an endpoint, claimed: the endpoint's row stays
/// locked until [`Claimed::finish`] (or the drop of this value, which rolls
/// back and leaves the delivery for the next try).
pub struct Claimed {
    tx: Tx,
    pub endpoint: EndpointRow,
    pub delivery_id: i64,
    /// Attempts made before this one.
    pub attempts: i32,
    /// When the delivery was queued (retries stop some time after).
    pub queued_at: DateTime<Utc>,
    pub event: FeedEvent,
}

impl std::fmt::Debug for Claimed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Claimed")
            .field("endpoint", &self.endpoint.webhook.id)
            .field("delivery_id", &self.delivery_id)
            .finish_non_exhaustive()
    }
}

/// How a delivery attempt ended.
#[derive(Clone, Debug)]
pub enum Attempt {
    Delivered {
        status: u16,
    },
    /// Try again after `retry_in`.
    Failed {
        status: Option<u16>,
        error: String,
        retry_in: Duration,
    },
    /// Retried for too long: this delivery fails, the endpoint is disabled
    /// with `reason` and its other pending deliveries are dropped.
    GiveUp {
        status: Option<u16>,
        error: String,
        reason: String,
    },
}

/// Enabled endpoints whose oldest pending delivery is due.
const DUE_ENDPOINTS: &str = "FROM webhook_endpoints ep
     WHERE ep.enabled AND (
         SELECT d.next_attempt_at FROM webhook_deliveries d
         WHERE d.endpoint_id = ep.id AND d.state = 'pending' ORDER BY d.id LIMIT 1
     ) <= now()";

const ENDPOINT_COLUMNS: &str = "ep.id, ep.infobase_id, ep.url, ep.kinds, ep.secret_version, \
                                ep.enabled, ep.disabled_reason, ep.created_at";

fn endpoint_from_row(r: &sqlx::postgres::PgRow) -> Result<EndpointRow> {
    Ok(EndpointRow {
        webhook: Webhook {
            id: WebhookId(r.try_get("id")?),
            url: r.try_get("url")?,
            kinds: r.try_get("kinds")?,
            enabled: r.try_get("enabled")?,
            disabled_reason: r.try_get("disabled_reason")?,
            created_at: r.try_get("created_at")?,
        },
        infobase_id: InfobaseId(r.try_get("infobase_id")?),
        secret_version: r.try_get("secret_version")?,
    })
}

/// Drops the pending deliveries of an endpoint (it was disabled).
async fn drop_pending(c: &mut Tx, endpoint: WebhookId) -> Result<()> {
    sqlx::query(
        "UPDATE webhook_deliveries SET state = 'dropped', finished_at = now()
         WHERE endpoint_id = $1 AND state = 'pending'",
    )
    .bind(endpoint.0)
    .execute(&mut **c)
    .await?;
    Ok(())
}

impl Store {
    /// Stores an endpoint unless the infobase already has `max`.
    pub async fn insert_endpoint(&self, e: &NewEndpoint, max: i64) -> Result<Option<EndpointRow>> {
        let sql = format!(
            "INSERT INTO webhook_endpoints AS ep (id, infobase_id, url, kinds)
             SELECT $1, $2, $3, $4
             WHERE (SELECT count(*) FROM webhook_endpoints WHERE infobase_id = $2) < $5
             RETURNING {ENDPOINT_COLUMNS}"
        );
        let row = sqlx::query(&sql)
            .bind(e.id.0)
            .bind(e.infobase_id.0)
            .bind(&e.url)
            .bind(&e.kinds)
            .bind(max)
            .fetch_optional(&self.db)
            .await?;
        row.as_ref().map(endpoint_from_row).transpose()
    }

    pub async fn endpoints(&self, infobase: InfobaseId) -> Result<Vec<EndpointRow>> {
        let sql = format!(
            "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints ep
             WHERE ep.infobase_id = $1 ORDER BY ep.created_at, ep.id"
        );
        let rows = sqlx::query(&sql)
            .bind(infobase.0)
            .fetch_all(&self.db)
            .await?;
        rows.iter().map(endpoint_from_row).collect()
    }

    pub async fn endpoint(&self, infobase: InfobaseId, id: WebhookId) -> Result<EndpointRow> {
        let sql = format!(
            "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints ep WHERE ep.id = $1 AND ep.infobase_id = $2"
        );
        let row = sqlx::query(&sql)
            .bind(id.0)
            .bind(infobase.0)
            .fetch_optional(&self.db)
            .await?;
        row.as_ref()
            .map(endpoint_from_row)
            .transpose()?
            .ok_or(StoreError::NotFound("webhook"))
    }

    /// Changes an endpoint. Disabling drops its pending deliveries;
    /// enabling clears the reason it was disabled for.
    pub async fn change_endpoint(
        &self,
        infobase: InfobaseId,
        id: WebhookId,
        c: &EndpointChange,
    ) -> Result<EndpointRow> {
        let mut tx = self.db.begin().await?;
        let sql = format!(
            "UPDATE webhook_endpoints ep SET
                 url = COALESCE($3, ep.url),
                 kinds = COALESCE($4, ep.kinds),
                 enabled = COALESCE($5, ep.enabled),
                 disabled_reason = CASE WHEN $5 IS NULL THEN ep.disabled_reason ELSE NULL END,
                 secret_version = ep.secret_version + CASE WHEN $6 THEN 1 ELSE 0 END,
                 updated_at = now()
             WHERE ep.id = $1 AND ep.infobase_id = $2
             RETURNING {ENDPOINT_COLUMNS}"
        );
        let row = sqlx::query(&sql)
            .bind(id.0)
            .bind(infobase.0)
            .bind(&c.url)
            .bind(&c.kinds)
            .bind(c.enabled)
            .bind(c.rotate_secret)
            .fetch_optional(&mut *tx)
            .await?;
        let row = row
            .as_ref()
            .map(endpoint_from_row)
            .transpose()?
            .ok_or(StoreError::NotFound("webhook"))?;
        if c.enabled == Some(false) {
            drop_pending(&mut tx, id).await?;
        }
        tx.commit().await?;
        Ok(row)
    }

    pub async fn delete_endpoint(&self, infobase: InfobaseId, id: WebhookId) -> Result<()> {
        let n = sqlx::query("DELETE FROM webhook_endpoints WHERE id = $1 AND infobase_id = $2")
            .bind(id.0)
            .bind(infobase.0)
            .execute(&self.db)
            .await?
            .rows_affected();
        if n == 0 {
            return Err(StoreError::NotFound("webhook"));
        }
        Ok(())
    }

    /// The newest deliveries of an endpoint.
    pub async fn deliveries(
        &self,
        infobase: InfobaseId,
        id: WebhookId,
        limit: i64,
    ) -> Result<Vec<WebhookDelivery>> {
        self.endpoint(infobase, id).await?;
        let rows = sqlx::query(
            "SELECT d.id, d.feed_id, f.kind, d.state, d.attempts, d.last_status, d.last_error,
                    d.created_at, d.next_attempt_at, d.finished_at
             FROM webhook_deliveries d JOIN feed_events f ON f.id = d.feed_id
             WHERE d.endpoint_id = $1 ORDER BY d.id DESC LIMIT $2",
        )
        .bind(id.0)
        .bind(limit)
        .fetch_all(&self.db)
        .await?;
        rows.iter()
            .map(|r| {
                let state: String = r.try_get("state")?;
                let pending = state == "pending";
                Ok(WebhookDelivery {
                    id: r.try_get("id")?,
                    event_id: r.try_get("feed_id")?,
                    kind: r.try_get("kind")?,
                    state,
                    attempts: r.try_get("attempts")?,
                    last_status: r.try_get("last_status")?,
                    last_error: r.try_get("last_error")?,
                    created_at: r.try_get("created_at")?,
                    next_attempt_at: if pending {
                        Some(r.try_get("next_attempt_at")?)
                    } else {
                        None
                    },
                    finished_at: r.try_get("finished_at")?,
                })
            })
            .collect()
    }

    /// Claims the head delivery of some endpoint whose head is due and that
    /// no other node is working on; `None` when there is none.
    ///
    /// Idle workers ask often, and mostly nothing is due: that answer is
    /// one statement outside any transaction (a head that falls due or an
    /// endpoint freed meanwhile is found by the next ask).
    pub async fn claim_delivery(&self) -> Result<Option<Claimed>> {
        let due: bool = sqlx::query_scalar(&format!("SELECT EXISTS (SELECT 1 {DUE_ENDPOINTS})"))
            .fetch_one(&self.db)
            .await?;
        if !due {
            return Ok(None);
        }
        let mut tx = self.db.begin().await?;
        let sql = format!(
            "SELECT {ENDPOINT_COLUMNS} {DUE_ENDPOINTS} ORDER BY ep.updated_at
             LIMIT 1 FOR UPDATE OF ep SKIP LOCKED"
        );
        let Some(row) = sqlx::query(&sql).fetch_optional(&mut *tx).await? else {
            tx.rollback().await?;
            return Ok(None);
        };
        let endpoint = endpoint_from_row(&row)?;
        let d = sqlx::query(
            "SELECT d.id AS delivery_id, d.attempts, d.created_at AS queued_at,
                    f.id, f.kind, f.conversation_id, f.seq, f.body, f.created_at
             FROM webhook_deliveries d JOIN feed_events f ON f.id = d.feed_id
             WHERE d.endpoint_id = $1 AND d.state = 'pending' ORDER BY d.id LIMIT 1",
        )
        .bind(endpoint.webhook.id.0)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(d) = d else {
            tx.rollback().await?;
            return Ok(None);
        };
        Ok(Some(Claimed {
            endpoint,
            delivery_id: d.try_get("delivery_id")?,
            attempts: d.try_get("attempts")?,
            queued_at: d.try_get("queued_at")?,
            event: FeedEvent {
                id: d.try_get("id")?,
                kind: d.try_get("kind")?,
                conversation_id: d
                    .try_get::<Option<uuid::Uuid>, _>("conversation_id")?
                    .map(ConversationId),
                seq: d.try_get("seq")?,
                created_at: d.try_get("created_at")?,
                event: d.try_get::<Json<serde_json::Value>, _>("body")?.0,
            },
            tx,
        }))
    }
}

impl Claimed {
    /// Records how the attempt went and releases the endpoint.
    pub async fn finish(mut self, a: Attempt) -> Result<()> {
        let id = self.delivery_id;
        match a {
            Attempt::Delivered { status } => {
                sqlx::query(
                    "UPDATE webhook_deliveries SET state = 'delivered', attempts = attempts + 1,
                         last_status = $2, last_error = NULL, finished_at = now()
                     WHERE id = $1",
                )
                .bind(id)
                .bind(i32::from(status))
                .execute(&mut *self.tx)
                .await?;
            }
            Attempt::Failed {
                status,
                error,
                retry_in,
            } => {
                sqlx::query(
                    "UPDATE webhook_deliveries SET attempts = attempts + 1, last_status = $2,
                         last_error = $3, next_attempt_at = now() + make_interval(secs => $4)
                     WHERE id = $1",
                )
                .bind(id)
                .bind(status.map(i32::from))
                .bind(&error)
                .bind(retry_in.as_secs_f64())
                .execute(&mut *self.tx)
                .await?;
            }
            Attempt::GiveUp {
                status,
                error,
                reason,
            } => {
                sqlx::query(
                    "UPDATE webhook_deliveries SET state = 'failed', attempts = attempts + 1,
                         last_status = $2, last_error = $3, finished_at = now()
                     WHERE id = $1",
                )
                .bind(id)
                .bind(status.map(i32::from))
                .bind(&error)
                .execute(&mut *self.tx)
                .await?;
                sqlx::query(
                    "UPDATE webhook_endpoints SET enabled = false, disabled_reason = $2,
                         updated_at = now() WHERE id = $1",
                )
                .bind(self.endpoint.webhook.id.0)
                .bind(&reason)
                .execute(&mut *self.tx)
                .await?;
                drop_pending(&mut self.tx, self.endpoint.webhook.id).await?;
            }
        }
        // Round-robin between endpoints with work: the one just served goes
        // to the back of the queue.
        sqlx::query("UPDATE webhook_endpoints SET updated_at = now() WHERE id = $1")
            .bind(self.endpoint.webhook.id.0)
            .execute(&mut *self.tx)
            .await?;
        self.tx.commit().await?;
        Ok(())
    }
}
