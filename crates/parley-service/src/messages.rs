//! Messages: validation, posting (one transaction that checks membership,
//! assigns `seq` and names the fan-out targets), edits, deletes, history,
//! read markers and typing.

use crate::{Error, Result, Service};
use parley_core::protocol::{Action, Event, Message, MessagePage, NewMessage, ReadState};
use parley_core::{validate, ConversationId, InfobaseActor, MessageId, UserActor, UserId};
use parley_store::{BatchedSend, JoinPolicy, NewMessageRow};
use std::time::Duration;

/// A posted message and whether it is new (false: an idempotent retry).
#[derive(Clone, Debug)]
pub struct Posted {
    pub message: Message,
    pub fresh: bool,
}

/// Which page of history.
#[derive(Clone, Copy, Debug, Default)]
pub struct HistoryQuery {
    pub before: Option<i64>,
    pub after: Option<i64>,
    pub limit: Option<u32>,
}

impl Service {
    /// Checks a new message against the limits; nothing is touched yet.
    pub fn validate_message(&self, m: NewMessage, author: UserId) -> Result<NewMessageRow> {
        let lim = &self.cfg.limits;
        if m.text.len() > lim.max_text_bytes {
            return Err(Error::too_large(format!(
                "text: longer than the limit of {} bytes (limits.max_text_bytes)",
                lim.max_text_bytes
            )));
        }
        if m.text.contains('\0') {
            return Err(Error::invalid("text: must not contain NUL"));
        }
        if m.forward.is_some() {
            // The copy is the original: a comment is a message of its own.
            if !m.text.is_empty() || m.data.is_some() || !m.attachments.is_empty() {
                return Err(Error::invalid(
                    "forward: text, data and attachments are the original's; send a comment as its own message",
                ));
            }
        } else if m.text.trim().is_empty() && m.data.is_none() {
            return Err(Error::invalid("text: must not be empty (or send data)"));
        }
        if let Some(d) = &m.data {
            let size = serde_json::to_vec(d).map(|v| v.len()).unwrap_or(usize::MAX);
            if size > lim.max_data_bytes {
                return Err(Error::too_large(format!(
                    "data: larger than the limit of {} bytes (limits.max_data_bytes)",
                    lim.max_data_bytes
                )));
            }
            if d.to_string().contains("\\u0000") {
                return Err(Error::invalid("data: must not contain NUL"));
            }
        }
        if m.actions.len() > lim.max_actions {
            return Err(Error::too_large(format!(
                "actions: more than the limit of {} (limits.max_actions)",
                lim.max_actions
            )));
        }
        let actions = m
            .actions
            .into_iter()
            .map(|a| {
                Ok(Action {
                    value: validate::text("actions.value", &a.value, lim.max_action_chars)?,
                    caption: validate::text("actions.caption", &a.caption, lim.max_action_chars)?,
                    single_use: a.single_use,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        if let Some(r) = &m.recipients {
            if r.is_empty() {
                return Err(Error::invalid("recipients: must not be empty when present"));
            }
            if r.len() > lim.max_members {
                return Err(Error::too_large("recipients: more than limits.max_members"));
            }
        }
        let key = match m.idempotency_key {
            None => None,
            Some(k) => Some(validate::text(
                "idempotency_key",
                &k,
                lim.max_idempotency_key_chars,
            )?),
        };
        if m.attachments.len() > lim.max_attachments {
            return Err(Error::too_large(format!(
                "attachments: more than {} (limits.max_attachments)",
                lim.max_attachments
            )));
        }
        let mut mentions = m.mentions;
        mentions.sort();
        mentions.dedup();
        if mentions.len() > lim.max_users_per_request {
            return Err(Error::too_large(format!(
                "mentions: more than {} (limits.max_users_per_request)",
                lim.max_users_per_request
            )));
        }
        Ok(NewMessageRow {
            author,
            text: m.text,
            data: m.data,
            actions,
            recipients: m.recipients,
            attachments: m.attachments,
            idempotency_key: key,
            reply_to: m.reply_to,
            mentions,
            mention_all: m.mention_all,
            forward: m.forward,
        })
    }

    /// Stores and fans out a validated message: a member's plain send
    /// commits with others (group commit), the rest on its own.
    async fn post(
        &self,
        conversation: ConversationId,
        row: NewMessageRow,
        join: JoinPolicy,
    ) -> Result<Posted> {
        self.metrics.sends.increment(1);
        if let JoinPolicy::MemberOnly { subscriber } = join {
            if BatchedSend::fits(&row) {
                return self.commit.send(conversation, subscriber, row).await;
            }
        }
        let outcome = self.store.post_message(conversation, &row, join).await?;
        Ok(self.commit.announce(outcome))
    }

    /// At most `limits.messages_per_minute` posts by one author (per node).
    fn limit_messages(&self, author: UserId) -> Result<()> {
        self.limiter
            .check(
                &format!("msg:{author}"),
                self.cfg.limits.messages_per_minute,
                Duration::from_secs(60),
            )
            .map_err(|wait| {
                Error::rate_limited("messages from this user (limits.messages_per_minute)", wait)
            })
    }

    /// Whether @all is allowed (`limits.mention_all`); `creator`: the
    /// group's creator or the owner infobase.
    fn may_mention_all(&self, creator: bool) -> Result<()> {
        match self.cfg.limits.mention_all.as_str() {
            "members" => Ok(()),
            "creator" if creator => Ok(()),
            "creator" => Err(Error::access_denied(
                "mention_all: only the conversation's creator (limits.mention_all)",
            )),
            _ => Err(Error::access_denied(
                "mention_all: turned off on this server (limits.mention_all)",
            )),
        }
    }

    /// A member sends a message.
    pub async fn send_message(
        &self,
        me: &UserActor,
        conversation: ConversationId,
        m: NewMessage,
    ) -> Result<Posted> {
        self.limit_messages(me.id())?;
        let row = self.validate_message(m, me.id())?;
        if row.mention_all {
            let meta = self.member_meta(me, conversation).await?;
            self.may_mention_all(meta.created_by == Some(me.id()))?;
        }
        let join = JoinPolicy::MemberOnly {
            subscriber: me.subscriber_id,
        };
        self.post(conversation, row, join).await
    }

    /// An infobase posts as one of its users (a person or an application
    /// user). In a conversation it owns, the author joins a group or
    /// contextual conversation in the same transaction, so a refused post
    /// changes no membership; elsewhere the author must be a member already.
    pub async fn post_as_infobase(
        &self,
        me: &InfobaseActor,
        conversation: ConversationId,
        author: UserId,
        m: NewMessage,
    ) -> Result<Posted> {
        let view = self.infobase_view(me, conversation).await?;
        let author = self.user_of(me, author).await?;
        if author.locked {
            return Err(Error::access_denied("the author is locked"));
        }
        self.limit_messages(author.id)?;
        let row = self.validate_message(m, author.id)?;
        if row.mention_all {
            self.may_mention_all(view.owner)?;
        }
        let join = if view.owner {
            JoinPolicy::Join {
                max_members: self.cfg.limits.max_members,
            }
        } else {
            JoinPolicy::MemberOnly {
                subscriber: me.subscriber_id,
            }
        };
        self.post(view.conversation.id, row, join).await
    }

    /// The author edits a message.
    pub async fn edit_message(
        &self,
        me: &UserActor,
        conversation: ConversationId,
        message: MessageId,
        text: Option<String>,
        data: Option<serde_json::Value>,
    ) -> Result<Message> {
        if text.is_none() && data.is_none() {
            return Err(Error::invalid("give text or data to change"));
        }
        let probe = NewMessage {
            text: text.clone().unwrap_or_else(|| "-".into()),
            data: data.clone(),
            ..Default::default()
        };
        self.validate_message(probe, me.id())?;
        self.require_member(me, conversation).await?;
        let committed = self
            .store
            .edit_message(
                conversation,
                message,
                Some(me.id()),
                text.as_deref(),
                data.as_ref(),
            )
            .await?;
        let edited = committed.events.iter().find_map(|e| match &e.event {
            Event::MessageEdited { message, .. } => Some(message.clone()),
            _ => None,
        });
        self.publish(committed);
        edited.ok_or_else(|| Error::internal("the edit produced no event"))
    }

    /// The author deletes a message; returns the `seq` of the deletion.
    pub async fn delete_message(
        &self,
        me: &UserActor,
        conversation: ConversationId,
        message: MessageId,
    ) -> Result<i64> {
        self.require_member(me, conversation).await?;
        let committed = self
            .store
            .delete_message(conversation, message, Some(&[me.id()]))
            .await?;
        let seq = committed.events.last().map(|e| e.seq).unwrap_or_default();
        self.publish(committed);
        Ok(seq)
    }

    /// The owner infobase deletes any message of its conversation; another
    /// infobase only messages written by its own users.
    pub async fn delete_message_by_infobase(
        &self,
        me: &InfobaseActor,
        conversation: ConversationId,
        message: MessageId,
    ) -> Result<()> {
        let view = self.infobase_view(me, conversation).await?;
        let id = view.conversation.id;
        let committed = if view.owner {
            self.store.delete_message(id, message, None).await?
        } else {
            let authors = self.store.members_of_infobase(id, me.id).await?;
            self.store
                .delete_message(id, message, Some(&authors))
                .await
                .map_err(|e| match e {
                    parley_store::StoreError::Denied(_) => Error::access_denied(
                        "another infobase's conversation: only messages of your own users",
                    ),
                    e => e.into(),
                })?
        };
        self.publish(committed);
        Ok(())
    }

    fn check_history(&self, q: &HistoryQuery) -> Result<u32> {
        let max = self.cfg.limits.max_history_page;
        let limit = q.limit.unwrap_or(self.cfg.limits.default_history_page);
        if !(1..=max).contains(&limit) {
            return Err(Error::invalid(format!(
                "limit: must be between 1 and {max} (limits.max_history_page)"
            )));
        }
        if q.before.is_some() && q.after.is_some() {
            return Err(Error::invalid("give before or after, not both"));
        }
        Ok(limit)
    }

    /// History as a member sees it (`recipients` apply).
    pub async fn history_for_user(
        &self,
        me: &UserActor,
        conversation: ConversationId,
        q: HistoryQuery,
    ) -> Result<MessagePage> {
        self.require_member(me, conversation).await?;
        let limit = self.check_history(&q)?;
        Ok(self
            .store
            .history(conversation, Some(&[me.id()]), q.before, q.after, limit)
            .await?)
    }

    /// History as the infobase sees it: everything in a conversation it
    /// owns; elsewhere what its member users may read (`recipients` apply).
    pub async fn history_for_infobase(
        &self,
        me: &InfobaseActor,
        conversation: ConversationId,
        q: HistoryQuery,
    ) -> Result<MessagePage> {
        let view = self.infobase_view(me, conversation).await?;
        let limit = self.check_history(&q)?;
        let id = view.conversation.id;
        let readers = match view.owner {
            true => None,
            false => Some(self.store.members_of_infobase(id, me.id).await?),
        };
        Ok(self
            .store
            .history(id, readers.as_deref(), q.before, q.after, limit)
            .await?)
    }

    /// Adds or removes the user's reaction to a message it can read; the
    /// change is an event with its own `seq`. Returns whether it changed.
    pub async fn react(
        &self,
        me: &UserActor,
        conversation: ConversationId,
        message: MessageId,
        emoji: &str,
        add: bool,
    ) -> Result<bool> {
        let max = self.cfg.limits.max_reaction_bytes;
        if emoji.is_empty() || emoji.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(Error::invalid("emoji: one emoji, without spaces"));
        }
        if emoji.len() > max || emoji.chars().count() > 16 {
            return Err(Error::too_large(format!(
                "emoji: longer than {max} bytes (limits.max_reaction_bytes)"
            )));
        }
        self.require_member(me, conversation).await?;
        let committed = self
            .store
            .react(
                conversation,
                message,
                me.id(),
                emoji,
                add,
                i64::from(self.cfg.limits.max_reactions_per_message),
            )
            .await?;
        Ok(match committed {
            Some(c) => {
                self.publish(c);
                true
            }
            None => false,
        })
    }

    /// Moves the user's read marker and tells the other members.
    pub async fn mark_read(
        &self,
        me: &UserActor,
        conversation: ConversationId,
        seq: i64,
    ) -> Result<ReadState> {
        let Some(marker) = self.store.mark_read(conversation, me.id(), seq).await? else {
            self.require_member(me, conversation).await?;
            return Err(Error::not_found("conversation"));
        };
        let members = self.store.member_ids(conversation).await?;
        self.push(
            members,
            Event::Read {
                conversation_id: conversation,
                user_id: me.id(),
                read_seq: marker.read_seq,
            },
        );
        Ok(ReadState {
            conversation_id: conversation,
            read_seq: marker.read_seq,
            unread: marker.unread,
        })
    }

    /// Tells the other members that the user types (the session throttles
    /// repeats within `limits.typing_interval_ms`).
    pub async fn typing(&self, me: &UserActor, conversation: ConversationId) -> Result<()> {
        self.require_member(me, conversation).await?;
        let others: Vec<UserId> = self
            .store
            .member_ids(conversation)
            .await?
            .into_iter()
            .filter(|u| *u != me.id())
            .collect();
        self.push(
            others,
            Event::Typing {
                conversation_id: conversation,
                user_id: me.id(),
            },
        );
        Ok(())
    }
}
