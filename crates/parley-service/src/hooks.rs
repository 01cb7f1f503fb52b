//! Incoming webhooks: an infobase creates a URL bound to one conversation
//! and one of its bot users; whoever holds the URL posts messages there as
//! that bot. The token is shown once; only its hash is stored, and a lookup
//! by hash is the only comparison made.

use crate::messages::Posted;
use crate::{Error, Result, Service};
use parley_core::api::{HookCreated, IncomingHook, NewHookBody};
use parley_core::protocol::NewMessage;
use parley_core::{crypto, ErrorCode, HookId, InfobaseActor};
use parley_store::{HookRow, NewHook};
use std::time::Duration;

/// Incoming webhook tokens start with this (easy to spot in a leak scan).
pub const HOOK_TOKEN_PREFIX: &str = "phk_";

fn hook_view(h: HookRow) -> IncomingHook {
    IncomingHook {
        id: h.id,
        conversation_id: h.conversation_id,
        author_id: h.author_id,
        name: h.name,
        created_at: h.created_at,
        revoked: h.revoked_at.is_some(),
    }
}

impl Service {
    /// Creates a webhook: the author must be a bot user of this infobase
    /// (not locked), the conversation one the infobase may post in.
    pub async fn create_hook(&self, me: &InfobaseActor, b: NewHookBody) -> Result<HookCreated> {
        let name = parley_core::validate::optional_text(
            "name",
            b.name.as_deref().unwrap_or(""),
            self.cfg.limits.max_title_chars,
        )?;
        let view = self.infobase_view(me, b.conversation_id).await?;
        let author = self.user_of(me, b.author_id).await?;
        if !author.bot {
            return Err(Error::invalid(
                "author_id: a bot user of this infobase (users with \"bot\": true)",
            ));
        }
        if author.locked {
            return Err(Error::access_denied("the author is locked"));
        }
        let token = crypto::secret(HOOK_TOKEN_PREFIX);
        let new = NewHook {
            id: HookId::new_random(),
            infobase_id: me.id,
            conversation_id: view.conversation.id,
            author_id: author.id,
            name,
            token_hash: crypto::sha256(token.as_bytes()),
        };
        let max = self.cfg.limits.max_incoming_webhooks;
        let row = self
            .store
            .insert_hook(&new, max as i64)
            .await?
            .ok_or_else(|| {
                Error::new(
                    ErrorCode::LimitReached,
                    format!("this infobase has {max} live incoming webhooks (limits.max_incoming_webhooks)"),
                )
            })?;
        Ok(HookCreated {
            url: format!("/v1/hooks/{token}"),
            token,
            webhook: hook_view(row),
        })
    }

    /// The infobase's webhooks (revoked ones marked), newest first.
    pub async fn list_hooks(&self, me: &InfobaseActor) -> Result<Vec<IncomingHook>> {
        Ok(self
            .store
            .hooks_of(me.id)
            .await?
            .into_iter()
            .map(hook_view)
            .collect())
    }

    /// Revokes a webhook at once: its URL answers `not_found` from then on.
    pub async fn revoke_hook(&self, me: &InfobaseActor, id: HookId) -> Result<()> {
        if self.store.revoke_hook(me.id, id).await? {
            Ok(())
        } else {
            Err(Error::not_found("webhook"))
        }
    }

    /// Posts through a webhook's URL. An unknown, revoked or malformed token
    /// and an unregistered infobase all answer `not_found` (nothing tells
    /// them apart). At most `limits.hook_messages_per_minute` per webhook,
    /// besides the author's own rate.
    pub async fn post_by_hook(&self, token: &str, m: NewMessage) -> Result<Posted> {
        if !token.starts_with(HOOK_TOKEN_PREFIX) || token.len() > 128 {
            return Err(Error::not_found("webhook"));
        }
        let target = self
            .store
            .hook_by_token(&crypto::sha256(token.as_bytes()))
            .await?
            .ok_or_else(|| Error::not_found("webhook"))?;
        self.limiter
            .check(
                &format!("hook:{}", target.hook.id),
                self.cfg.limits.hook_messages_per_minute,
                Duration::from_secs(60),
            )
            .map_err(|wait| {
                Error::rate_limited(
                    "messages through this webhook (limits.hook_messages_per_minute)",
                    wait,
                )
            })?;
        let me = InfobaseActor {
            id: target.hook.infobase_id,
            subscriber_id: target.subscriber_id,
        };
        self.post_as_infobase(&me, target.hook.conversation_id, target.hook.author_id, m)
            .await
    }
}
