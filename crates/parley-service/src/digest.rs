//! E-mail digests for users who stay offline: what they missed, mailed
//! once through the configured mail transport. Off unless the subscriber
//! turns it on; one node at a time does a run.

use crate::{Result, Service};
use parley_core::api::EmailDigestSettings;
use parley_core::InfobaseActor;
use parley_mail::Mail;
use parley_store::Digest;
use std::fmt::Write;
use std::sync::Arc;
use std::time::Duration;

/// Longest line of a message shown in a digest.
const MAX_LINE_CHARS: usize = 160;

fn compose(d: &Digest) -> Mail {
    let unread: i64 = d.conversations.iter().map(|c| c.unread).sum();
    let mut body = format!("Hello {},\r\n\r\nWhile you were away:\r\n", d.name);
    for c in &d.conversations {
        let title = if c.title.is_empty() {
            "(untitled)"
        } else {
            &c.title
        };
        let _ = write!(body, "\r\n{title} - {} unread\r\n", c.unread);
        for (author, text) in &c.lines {
            let mut line: String = text
                .chars()
                .filter(|ch| !ch.is_control())
                .take(MAX_LINE_CHARS)
                .collect();
            if text.chars().count() > MAX_LINE_CHARS {
                line.push_str("...");
            }
            let _ = write!(body, "  {author}: {line}\r\n");
        }
    }
    body.push_str("\r\nOpen Parley in your application to read and answer.\r\n");
    Mail {
        to: d.email.clone(),
        subject: format!(
            "Parley: {unread} unread message{} in {} conversation{}",
            if unread == 1 { "" } else { "s" },
            d.conversations.len(),
            if d.conversations.len() == 1 { "" } else { "s" },
        ),
        body,
    }
}

impl Service {
    pub async fn email_digest_settings(&self, me: &InfobaseActor) -> Result<EmailDigestSettings> {
        Ok(EmailDigestSettings {
            enabled: self.store.email_digest(me.id).await?,
        })
    }

    /// Turns digests on or off for the infobase's whole subscriber.
    pub async fn set_email_digest_settings(
        &self,
        me: &InfobaseActor,
        s: EmailDigestSettings,
    ) -> Result<EmailDigestSettings> {
        self.store.set_email_digest(me.id, s.enabled).await?;
        Ok(s)
    }

    /// One run: the users due a digest who are not online anywhere now get
    /// one mail each; what it showed is not mailed again.
    async fn digest_run(&self) -> Result<usize> {
        let cfg = &self.cfg.digest;
        let Some(mut run) = self
            .store
            .start_digest(
                Duration::from_secs(cfg.delay_secs),
                i64::from(cfg.max_users_per_run),
                i64::from(cfg.max_conversations),
                i64::from(cfg.lines_per_conversation),
            )
            .await?
        else {
            return Ok(0);
        };
        let due = std::mem::take(&mut run.due);
        let online = self
            .bus
            .online(due.iter().map(|d| d.user_id).collect())
            .await?;
        let mut sent = 0;
        for (d, on) in due.iter().zip(online) {
            if on {
                continue;
            }
            match self.mailer.send(&compose(d)).await {
                Ok(()) => {
                    run.mailed(d).await?;
                    sent += 1;
                }
                Err(e) => tracing::warn!(error = %e, user = %d.user_id, "digest not mailed"),
            }
        }
        run.finish().await?;
        metrics::counter!("parley_digests_mailed_total").increment(sent as u64);
        Ok(sent)
    }

    pub fn start_digests(self: &Arc<Self>) {
        let svc = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(svc.cfg.digest.every_secs));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match svc.digest_run().await {
                    Ok(n) if n > 0 => tracing::info!(digests = n, "e-mail digests mailed"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e.message, "digest run failed"),
                }
            }
        });
    }

    /// The user's last session anywhere closed: remember when (the digest
    /// waits `digest.delay_secs` from then). Written aside: the close and
    /// its offline announcement do not wait for it.
    pub(crate) fn user_went_offline(&self, user: parley_core::UserId) {
        let store = self.store.clone();
        tokio::spawn(async move {
            if let Err(e) = store.mark_seen(user).await {
                tracing::debug!(error = %e, "last seen not recorded");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::compose;
    use parley_core::{ConversationId, UserId};
    use parley_store::{Digest, DigestConversation};

    #[test]
    fn a_digest_lists_conversations_and_their_newest_lines() {
        let d = Digest {
            user_id: UserId::new_random(),
            email: "carol@example.test".into(),
            name: "carol".into(),
            conversations: vec![DigestConversation {
                conversation_id: ConversationId::new_random(),
                title: "Orders".into(),
                unread: 2,
                lines: vec![
                    ("alice".into(), "first\u{7}".into()),
                    ("bob".into(), "x".repeat(200)),
                ],
                upto_seq: 9,
            }],
        };
        let m = compose(&d);
        assert_eq!(m.subject, "Parley: 2 unread messages in 1 conversation");
        assert!(m.body.contains("Orders - 2 unread"));
        assert!(
            m.body.contains("  alice: first\r\n"),
            "control characters dropped"
        );
        assert!(m.body.contains(&format!("  bob: {}...", "x".repeat(160))));
    }
}
