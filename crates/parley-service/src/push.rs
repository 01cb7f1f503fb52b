//! Web Push to users with no open session: the browser registers a push
//! subscription (through the web client); when a message it should hear of
//! is committed and the user is offline everywhere, the node that committed
//! it encrypts a short notice for each of the user's browsers (RFC 8291)
//! and POSTs it to the browser vendor's push service with a VAPID token
//! (RFC 8292). At most one push per conversation and user per
//! `push.coalesce_secs`.
//!
//! Off the send path: the commit only looks up the members in an in-memory
//! set of users with subscriptions (nothing when nobody subscribed) and
//! hands candidates to a bounded queue; a full queue drops pushes (counted),
//! never slows a send. A node that dies between commit and push loses those
//! pushes: a push is a hint, the history is the truth.

use crate::{Error, Result, Service};
use chrono::Utc;
use parley_core::api::{NewPushSubscription, PushSettings};
use parley_core::protocol::{Event, Message, MessageKind};
use parley_core::{crypto, ConversationId, ErrorCode, PushSubscriptionId, UserActor, UserId};
use parley_outbound::webpush::{self, VapidKey};
use parley_outbound::{parse_target, OutboundError};
use parley_store::{PushSubscription, StoredEvent};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::mpsc;

/// The server secret holding the VAPID key (PKCS#8).
const VAPID_SECRET: &str = "vapid-p256-pkcs8";
/// Longest text in a push (the rest is in the history).
const MAX_PUSH_TEXT_CHARS: usize = 200;

/// One committed message and who may need a push for it.
struct PushJob {
    conversation: ConversationId,
    message: Message,
    candidates: Vec<UserId>,
}

/// The commit side: who has subscriptions, and the queue to the worker.
pub(crate) struct PushTap {
    enabled: bool,
    any: AtomicBool,
    subscribed: RwLock<HashSet<UserId>>,
    tx: mpsc::Sender<PushJob>,
    rx: Mutex<Option<mpsc::Receiver<PushJob>>>,
}

impl PushTap {
    pub(crate) fn new(enabled: bool, queue: usize) -> Arc<Self> {
        let (tx, rx) = mpsc::channel(queue.max(1));
        Arc::new(Self {
            enabled,
            any: AtomicBool::new(false),
            subscribed: RwLock::new(HashSet::new()),
            tx,
            rx: Mutex::new(Some(rx)),
        })
    }

    /// Called for each committed event with the members at commit.
    pub(crate) fn offer(&self, ev: &StoredEvent, members: &[UserId]) {
        if !self.enabled || !self.any.load(Ordering::Relaxed) {
            return;
        }
        let Event::MessageCreated { message, .. } = &ev.event else {
            return;
        };
        let candidates: Vec<UserId> = {
            let Ok(set) = self.subscribed.read() else {
                return;
            };
            members
                .iter()
                .filter(|u| **u != message.author_id && set.contains(u))
                .filter(|u| ev.recipients.as_ref().is_none_or(|r| r.contains(u)))
                .copied()
                .collect()
        };
        if candidates.is_empty() {
            return;
        }
        let job = PushJob {
            conversation: ev.conversation_id,
            message: message.clone(),
            candidates,
        };
        if self.tx.try_send(job).is_err() {
            metrics::counter!("parley_push_dropped_total").increment(1);
        }
    }

    fn replace(&self, users: Vec<UserId>) {
        if let Ok(mut set) = self.subscribed.write() {
            *set = users.into_iter().collect();
            self.any.store(!set.is_empty(), Ordering::Relaxed);
        }
    }

    fn add(&self, user: UserId) {
        if let Ok(mut set) = self.subscribed.write() {
            set.insert(user);
            self.any.store(true, Ordering::Relaxed);
        }
    }
}

fn decode_key(what: &str, b64: &str, len: usize) -> Result<Vec<u8>> {
    match crypto::from_b64url(b64.trim_end_matches('=')) {
        Some(k) if k.len() == len => Ok(k),
        _ => Err(Error::invalid(format!(
            "keys.{what}: {len} bytes, base64url (as PushSubscription.toJSON() gives)"
        ))),
    }
}

/// Why a message is pushed to a user, if it is.
fn wants(level: &str, dialog: bool, m: &Message, user: UserId) -> bool {
    let missed_call = m.kind == MessageKind::System
        && m.data
            .as_ref()
            .and_then(|d| d.get("call"))
            .and_then(|c| c.get("outcome"))
            .and_then(|o| o.as_str())
            == Some("missed");
    if m.kind == MessageKind::System && !missed_call {
        return false; // timeline lines
    }
    let mentioned = m.mention_all || m.mentions.contains(&user);
    match level {
        "all" => true,
        "mentions" => dialog || mentioned || missed_call,
        _ => false,
    }
}

impl Service {
    async fn vapid(&self) -> Result<&VapidKey> {
        self.vapid
            .get_or_try_init(|| async {
                let fresh =
                    webpush::generate_vapid_pkcs8().map_err(|e| Error::internal(e.to_string()))?;
                let pkcs8 = self.store.server_secret(VAPID_SECRET, &fresh).await?;
                VapidKey::from_pkcs8(&pkcs8).map_err(|e| Error::internal(e.to_string()))
            })
            .await
    }

    /// The VAPID public key, base64url (the browser's
    /// `applicationServerKey`).
    pub async fn vapid_public_key(&self) -> Result<String> {
        Ok(self.vapid().await?.public_key_b64())
    }

    pub async fn add_push_subscription(
        &self,
        me: &UserActor,
        s: NewPushSubscription,
    ) -> Result<PushSubscriptionId> {
        if s.endpoint.chars().count() > 2000 {
            return Err(Error::too_large("endpoint: at most 2000 characters"));
        }
        let t = parse_target(&s.endpoint).map_err(|e| Error::invalid(format!("endpoint: {e}")))?;
        if !t.https && !self.cfg.push.allow_private_targets {
            return Err(Error::invalid("endpoint: push services are https://"));
        }
        if let Err(e @ OutboundError::PrivateTarget { .. }) = self.push_out.resolve(&t).await {
            return Err(Error::invalid(format!(
                "endpoint: {e}; refused unless push.allow_private_targets"
            )));
        }
        let sub = PushSubscription {
            id: PushSubscriptionId::new_random(),
            user_id: me.id(),
            endpoint: s.endpoint,
            p256dh: decode_key("p256dh", &s.keys.p256dh, 65)?,
            auth: decode_key("auth", &s.keys.auth, 16)?,
        };
        let max = self.cfg.push.max_subscriptions_per_user;
        let id = self
            .store
            .add_push_subscription(&sub, i64::from(max))
            .await
            .map_err(|e| match e {
                parley_store::StoreError::Conflict(_) => Error::new(
                    ErrorCode::LimitReached,
                    format!(
                        "this user has {max} push subscriptions (push.max_subscriptions_per_user)"
                    ),
                ),
                other => other.into(),
            })?;
        self.push_tap.add(me.id());
        Ok(id)
    }

    pub async fn remove_push_subscription(
        &self,
        me: &UserActor,
        id: PushSubscriptionId,
    ) -> Result<()> {
        Ok(self.store.remove_push_subscription(me.id(), id).await?)
    }

    pub async fn push_settings(&self, me: &UserActor) -> Result<PushSettings> {
        Ok(PushSettings {
            level: self.store.push_level(me.id()).await?,
        })
    }

    pub async fn set_push_settings(&self, me: &UserActor, s: PushSettings) -> Result<PushSettings> {
        if !["all", "mentions", "none"].contains(&s.level.as_str()) {
            return Err(Error::invalid("level: all, mentions or none"));
        }
        self.store.set_push_level(me.id(), &s.level).await?;
        Ok(s)
    }

    /// Starts this node's push worker and the refresh of who subscribed.
    pub fn start_push(self: &Arc<Self>) {
        let Some(mut rx) = self.push_tap.rx.lock().ok().and_then(|mut r| r.take()) else {
            return;
        };
        let svc = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(svc.cfg.push.refresh_secs));
            loop {
                tick.tick().await;
                match svc.store.push_subscribers().await {
                    Ok(users) => svc.push_tap.replace(users),
                    Err(e) => tracing::debug!(error = %e, "push subscribers unknown"),
                }
            }
        });
        let svc = Arc::clone(self);
        tokio::spawn(async move {
            while let Some(job) = rx.recv().await {
                if let Err(e) = svc.push_job(job).await {
                    tracing::warn!(error = %e.message, "push not sent");
                }
            }
        });
    }

    async fn push_job(&self, job: PushJob) -> Result<()> {
        let cfg = &self.cfg.push;
        let (kind, title, levels) = self
            .store
            .push_targets(job.conversation, &job.candidates)
            .await?;
        let dialog = kind == "dialog";
        let wanted: Vec<UserId> = levels
            .into_iter()
            .filter(|(u, level)| wants(level, dialog, &job.message, *u))
            .map(|(u, _)| u)
            .collect();
        if wanted.is_empty() {
            return Ok(());
        }
        let online = self.bus.online(wanted.clone()).await?;
        let offline: Vec<UserId> = wanted
            .into_iter()
            .zip(online)
            .filter(|(_, on)| !on)
            .map(|(u, _)| u)
            .collect();
        if offline.is_empty() {
            return Ok(());
        }
        let due = self
            .store
            .push_coalesce(
                job.conversation,
                &offline,
                Duration::from_secs(cfg.coalesce_secs),
            )
            .await?;
        if due.is_empty() {
            return Ok(());
        }
        let subs = self.store.push_subscriptions_of(&due).await?;
        let m = &job.message;
        let text: String = m.text.chars().take(MAX_PUSH_TEXT_CHARS).collect();
        for sub in subs {
            let payload = serde_json::json!({
                "type": if m.kind == MessageKind::System { "call.missed" } else { "message" },
                "conversation_id": job.conversation,
                "conversation_kind": kind,
                "title": title,
                "message_id": m.id,
                "seq": m.seq,
                "author_id": m.author_id,
                "text": text,
                "mentioned": m.mention_all || m.mentions.contains(&sub.user_id),
            });
            self.push_one(&sub, payload.to_string().as_bytes()).await;
        }
        Ok(())
    }

    /// Sends one push; a subscription the push service says is gone is
    /// removed.
    async fn push_one(&self, sub: &PushSubscription, payload: &[u8]) {
        let outcome = async {
            let body =
                webpush::encrypt(&sub.p256dh, &sub.auth, payload).map_err(|e| e.to_string())?;
            let vapid = self.vapid().await.map_err(|e| e.message)?;
            let auth = vapid
                .authorization(
                    &sub.endpoint,
                    &self.cfg.push.subject,
                    Utc::now().timestamp(),
                    12 * 3600,
                )
                .map_err(|e| e.to_string())?;
            let headers = [
                ("Authorization", auth),
                ("Content-Encoding", "aes128gcm".to_owned()),
                ("TTL", self.cfg.push.ttl_secs.to_string()),
                ("Urgency", "high".to_owned()),
            ];
            self.push_out
                .post(&sub.endpoint, "application/octet-stream", &headers, body)
                .await
                .map_err(|e| e.to_string())
        }
        .await;
        match outcome {
            Ok(a) if (200..300).contains(&a.status) => {
                metrics::counter!("parley_push_sent_total", "outcome" => "sent").increment(1);
            }
            Ok(a) if a.status == 404 || a.status == 410 => {
                metrics::counter!("parley_push_sent_total", "outcome" => "gone").increment(1);
                if let Err(e) = self.store.drop_push_subscription(sub.id).await {
                    tracing::debug!(error = %e, "expired push subscription not removed");
                }
            }
            Ok(a) => {
                metrics::counter!("parley_push_sent_total", "outcome" => "failed").increment(1);
                tracing::info!(status = a.status, "push service refused a push");
            }
            Err(e) => {
                metrics::counter!("parley_push_sent_total", "outcome" => "failed").increment(1);
                tracing::info!(error = %e, "push not delivered");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::wants;
    use chrono::Utc;
    use parley_core::protocol::{Message, MessageKind};
    use parley_core::{ConversationId, MessageId, UserId};

    fn msg() -> Message {
        Message::plain(
            MessageId::new_random(),
            ConversationId::new_random(),
            1,
            UserId::new_random(),
            "hi".into(),
            Utc::now(),
        )
    }

    #[test]
    fn levels_choose_what_is_pushed() {
        let me = UserId::new_random();
        let m = msg();
        assert!(wants("all", false, &m, me));
        assert!(!wants("mentions", false, &m, me));
        assert!(wants("mentions", true, &m, me), "a dialog");
        let mut at = msg();
        at.mentions = vec![me];
        assert!(wants("mentions", false, &at, me));
        assert!(!wants("none", true, &at, me));
        let mut line = msg();
        line.kind = MessageKind::System;
        line.data = Some(serde_json::json!({"member": {"change": "added"}}));
        assert!(
            !wants("all", true, &line, me),
            "timeline lines are not pushed"
        );
        line.data = Some(serde_json::json!({"call": {"outcome": "missed"}}));
        assert!(wants("mentions", false, &line, me));
    }
}
