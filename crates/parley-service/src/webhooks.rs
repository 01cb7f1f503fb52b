//! Signed webhooks: an infobase registers endpoints; every feed event of a
//! kind an endpoint wants is POSTed to it, signed, from the PostgreSQL
//! outbox, retried with exponential backoff, in order per endpoint; an
//! endpoint that keeps failing is disabled with the reason.
//!
//! The signing secret is not stored anywhere: it is derived from a server
//! secret, the endpoint's id and its secret version, shown once, and
//! derived again to sign. Rotating bumps the version.

use crate::{Error, Result, Service};
use chrono::Utc;
use parley_core::feed::{
    NewWebhookBody, Webhook, WebhookCreated, WebhookDelivery, WebhookPatch, FEED_KINDS,
};
use parley_core::{crypto, ErrorCode, InfobaseActor, WebhookId};
use parley_outbound::{parse_target, OutboundError};
use parley_store::{Attempt, Claimed, EndpointChange, EndpointRow, NewEndpoint};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// The server secret the webhook secrets are derived from.
const WEBHOOK_SECRET: &str = "webhook-signing";
/// Webhook secrets start with this.
pub const WEBHOOK_SECRET_PREFIX: &str = "whsec_";
/// Longest URL accepted.
const MAX_URL_CHARS: usize = 2000;

impl Service {
    async fn webhook_master(&self) -> Result<&[u8]> {
        self.server_key(&self.webhook_key, WEBHOOK_SECRET).await
    }

    /// The endpoint's current secret (what the receiver holds).
    async fn webhook_secret(&self, e: &EndpointRow) -> Result<String> {
        let raw = crypto::sign(
            self.webhook_master().await?,
            &[&e.webhook.id.to_string(), &e.secret_version.to_string()],
        );
        Ok(format!("{WEBHOOK_SECRET_PREFIX}{}", crypto::b64url(&raw)))
    }

    /// Checks a URL's form, and where it points unless private targets are
    /// allowed (a name that does not resolve yet is accepted; delivery
    /// checks again).
    async fn check_webhook_url(&self, url: &str) -> Result<String> {
        let url = url.trim();
        if url.chars().count() > MAX_URL_CHARS {
            return Err(Error::too_large(format!(
                "url: at most {MAX_URL_CHARS} characters"
            )));
        }
        let t = parse_target(url).map_err(|e| Error::invalid(e.to_string()))?;
        match self.outbound.resolve(&t).await {
            Err(e @ OutboundError::PrivateTarget { .. }) => Err(Error::invalid(format!(
                "url: {e}; refused unless webhooks.allow_private_targets"
            ))),
            _ => Ok(url.to_owned()),
        }
    }

    fn check_kinds(kinds: Vec<String>) -> Result<Vec<String>> {
        let mut out: Vec<String> = Vec::new();
        for k in kinds {
            if !FEED_KINDS.contains(&k.as_str()) {
                return Err(Error::invalid(format!(
                    "kinds: {k:?} is not a feed kind ({})",
                    FEED_KINDS.join(", ")
                )));
            }
            if !out.contains(&k) {
                out.push(k);
            }
        }
        Ok(out)
    }

    pub async fn create_webhook(
        &self,
        me: &InfobaseActor,
        b: NewWebhookBody,
    ) -> Result<WebhookCreated> {
        let url = self.check_webhook_url(&b.url).await?;
        let kinds = Self::check_kinds(b.kinds)?;
        let max = self.cfg.webhooks.max_endpoints;
        let new = NewEndpoint {
            id: WebhookId::new_random(),
            infobase_id: me.id,
            url,
            kinds,
        };
        let row = self
            .store
            .insert_endpoint(&new, i64::from(max))
            .await?
            .ok_or_else(|| {
                Error::new(
                    ErrorCode::LimitReached,
                    format!("this infobase has {max} webhook endpoints (webhooks.max_endpoints)"),
                )
            })?;
        let secret = self.webhook_secret(&row).await?;
        Ok(WebhookCreated {
            webhook: row.webhook,
            secret,
        })
    }

    pub async fn list_webhooks(&self, me: &InfobaseActor) -> Result<Vec<Webhook>> {
        Ok(self
            .store
            .endpoints(me.id)
            .await?
            .into_iter()
            .map(|e| e.webhook)
            .collect())
    }

    pub async fn change_webhook(
        &self,
        me: &InfobaseActor,
        id: WebhookId,
        p: WebhookPatch,
    ) -> Result<Webhook> {
        let url = match p.url {
            Some(u) => Some(self.check_webhook_url(&u).await?),
            None => None,
        };
        let kinds = p.kinds.map(Self::check_kinds).transpose()?;
        let change = EndpointChange {
            url,
            kinds,
            enabled: p.enabled,
            rotate_secret: false,
        };
        Ok(self
            .store
            .change_endpoint(me.id, id, &change)
            .await?
            .webhook)
    }

    /// A new secret for the endpoint, shown once; the old one stops at once.
    pub async fn rotate_webhook_secret(
        &self,
        me: &InfobaseActor,
        id: WebhookId,
    ) -> Result<WebhookCreated> {
        let change = EndpointChange {
            rotate_secret: true,
            ..Default::default()
        };
        let row = self.store.change_endpoint(me.id, id, &change).await?;
        let secret = self.webhook_secret(&row).await?;
        Ok(WebhookCreated {
            webhook: row.webhook,
            secret,
        })
    }

    pub async fn delete_webhook(&self, me: &InfobaseActor, id: WebhookId) -> Result<()> {
        Ok(self.store.delete_endpoint(me.id, id).await?)
    }

    pub async fn webhook_deliveries(
        &self,
        me: &InfobaseActor,
        id: WebhookId,
        limit: Option<u32>,
    ) -> Result<Vec<WebhookDelivery>> {
        let max = self.cfg.feed.max_page;
        let limit = limit.unwrap_or(self.cfg.feed.default_page);
        if !(1..=max).contains(&limit) {
            return Err(Error::invalid(format!(
                "limit: must be between 1 and {max} (feed.max_page)"
            )));
        }
        Ok(self.store.deliveries(me.id, id, i64::from(limit)).await?)
    }

    /// `webhooks.workers` loops on this node, each delivering one endpoint's
    /// head at a time while there is due work. When none is due, one idle
    /// worker looks again after `poll_ms` and the others sleep until a
    /// worker that found work (or a pump that queued some) wakes one: an
    /// idle node asks PostgreSQL once per `poll_ms`, not once per worker.
    pub(crate) fn start_webhook_workers(self: &Arc<Self>) {
        for _ in 0..self.cfg.webhooks.workers {
            let svc = Arc::clone(self);
            tokio::spawn(async move {
                let idle = Duration::from_millis(svc.cfg.webhooks.poll_ms);
                loop {
                    match svc.store.claim_delivery().await {
                        Ok(Some(claim)) => {
                            // More may be due, and while this one works
                            // another must be the one that looks.
                            svc.webhook_wake.notify_one();
                            if let Err(e) = svc.deliver(claim).await {
                                tracing::warn!(error = %e, "webhook delivery not recorded");
                                tokio::time::sleep(idle).await;
                            }
                        }
                        Ok(None) => svc.webhook_idle(idle).await,
                        Err(e) => {
                            tracing::warn!(error = %e, "webhook outbox unreadable");
                            tokio::time::sleep(idle).await;
                        }
                    }
                }
            });
        }
    }

    /// An idle worker's wait: until woken; the one that looks (none does
    /// yet) also `poll_ms` at most, for retries falling due with nobody to
    /// wake a worker.
    async fn webhook_idle(&self, idle: Duration) {
        if self.webhook_polling.swap(true, Ordering::AcqRel) {
            self.webhook_wake.notified().await;
        } else {
            let _ = tokio::time::timeout(idle, self.webhook_wake.notified()).await;
            self.webhook_polling.store(false, Ordering::Release);
        }
    }

    /// One attempt of the claimed delivery, and its outcome recorded.
    async fn deliver(&self, claim: Claimed) -> Result<()> {
        let cfg = &self.cfg.webhooks;
        let secret = self.webhook_secret(&claim.endpoint).await?;
        let payload = serde_json::json!({
            "delivery_id": claim.delivery_id,
            "infobase_id": claim.endpoint.infobase_id,
            "webhook_id": claim.endpoint.webhook.id,
            "event": claim.event,
        });
        let body = serde_json::to_vec(&payload).map_err(|e| Error::internal(e.to_string()))?;
        let ts = Utc::now().timestamp();
        let headers = [
            ("X-Parley-Delivery", claim.delivery_id.to_string()),
            ("X-Parley-Event", claim.event.kind.clone()),
            ("X-Parley-Timestamp", ts.to_string()),
            (
                "X-Parley-Signature",
                crypto::webhook_signature(secret.as_bytes(), ts, &body),
            ),
        ];
        let started = std::time::Instant::now();
        let result = self
            .outbound
            .post_json(&claim.endpoint.webhook.url, &headers, body)
            .await;
        metrics::histogram!("parley_webhook_attempt_seconds").record(started.elapsed());
        let (status, error) = match result {
            Ok(a) if (200..300).contains(&a.status) => {
                metrics::counter!("parley_webhook_deliveries_total", "outcome" => "delivered")
                    .increment(1);
                return Ok(claim
                    .finish(Attempt::Delivered { status: a.status })
                    .await?);
            }
            Ok(a) => (
                Some(a.status),
                format!(
                    "answered {} {}",
                    a.status,
                    String::from_utf8_lossy(&a.body[..a.body.len().min(200)])
                ),
            ),
            Err(e) => (None, e.to_string()),
        };
        let waited = (Utc::now() - claim.queued_at).num_seconds().max(0) as u64;
        let attempt = if waited >= cfg.retry_for_secs {
            metrics::counter!("parley_webhook_deliveries_total", "outcome" => "failed")
                .increment(1);
            tracing::warn!(webhook = %claim.endpoint.webhook.id, error = %error, "webhook endpoint disabled");
            Attempt::GiveUp {
                status,
                reason: format!(
                    "delivery {} failed for {waited} s (webhooks.retry_for_secs): {error}",
                    claim.delivery_id
                ),
                error,
            }
        } else {
            metrics::counter!("parley_webhook_deliveries_total", "outcome" => "retry").increment(1);
            Attempt::Failed {
                status,
                error,
                retry_in: backoff(cfg.backoff_initial_ms, cfg.backoff_max_secs, claim.attempts),
            }
        };
        Ok(claim.finish(attempt).await?)
    }
}

/// The wait before the next attempt after `attempts` earlier ones failed
/// (this one included): initial × 2^attempts, at most max.
fn backoff(initial_ms: u64, max_secs: u64, attempts: i32) -> Duration {
    let exp = attempts.clamp(0, 30) as u32;
    let ms = initial_ms.saturating_mul(1u64 << exp);
    Duration::from_millis(ms.min(max_secs.saturating_mul(1000)))
}

#[cfg(test)]
mod tests {
    use super::backoff;
    use std::time::Duration;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        assert_eq!(backoff(1000, 3600, 0), Duration::from_secs(1));
        assert_eq!(backoff(1000, 3600, 3), Duration::from_secs(8));
        assert_eq!(backoff(1000, 3600, 30), Duration::from_secs(3600));
        assert_eq!(backoff(1000, 3600, -1), Duration::from_secs(1));
    }
}
