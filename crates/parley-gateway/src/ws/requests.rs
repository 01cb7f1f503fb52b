//! What each request frame does. Every answer is the `result` value.

use super::{ReqError, Session};
use crate::chat;
use crate::error::ApiError;
use parley_core::protocol::{ConversationKind, Event, PresenceState, ReadState, Request, Resumed};
use parley_core::validate;
use parley_core::{ConversationId, ErrorCode, UserId};
use parley_store::{CreateOutcome, NewConversation, Viewer};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// Most users one `presence.get` may ask about.
const MAX_PRESENCE_QUERY: usize = 1000;

fn to_value<T: serde::Serialize>(v: &T) -> Result<Value, ReqError> {
    serde_json::to_value(v)
        .map_err(|e| ReqError::Api(ApiError::new(ErrorCode::Internal, e.to_string())))
}

fn invalid(msg: impl Into<String>) -> ReqError {
    ReqError::Api(ApiError::new(ErrorCode::Invalid, msg))
}

impl Session {
    pub(super) async fn dispatch(&mut self, req: Request) -> Result<Value, ReqError> {
        let me = self.user.id;
        match req {
            Request::Auth { .. } => Err(invalid("this session is already authenticated")),
            Request::Ping => Ok(Value::Null),
            Request::Resume { conversations } => {
                let mut replayed = 0;
                let mut truncated = Vec::new();
                for (conv, seen) in conversations {
                    if seen < 0 {
                        return Err(invalid("resume: a seq is never negative"));
                    }
                    if !self.st.store.is_member(conv, me).await? {
                        // Not (or no longer) a member: nothing to replay.
                        self.last.remove(&conv);
                        continue;
                    }
                    let (n, more, top) = self.replay(conv, seen, None).await?;
                    self.last.insert(conv, top);
                    replayed += n;
                    if more {
                        truncated.push(conv);
                    }
                }
                to_value(&Resumed {
                    replayed,
                    truncated,
                })
            }
            Request::ListConversations { filter } => {
                if !(1..=200).contains(&filter.limit.unwrap_or(50)) {
                    return Err(invalid("limit: must be between 1 and 200"));
                }
                let page = self
                    .st
                    .store
                    .list_conversations(Viewer::User(me), &filter)
                    .await?;
                to_value(&page)
            }
            Request::GetConversation { conversation_id } => {
                self.conversation(conversation_id).await
            }
            Request::CreateGroup { title, mut members } => {
                let title = validate::text("title", &title, self.st.limits.max_title_chars)
                    .map_err(ApiError::from)?;
                members.push(me);
                let new = NewConversation {
                    subscriber_id: self.subscriber,
                    kind: ConversationKind::Group,
                    title,
                    hidden: false,
                    infobase_id: Some(self.user.infobase_id),
                    key: None,
                    object_ref: None,
                    created_by: Some(me),
                    members,
                };
                self.create(new).await
            }
            Request::OpenDialog { user_id } => {
                if user_id == me {
                    return Err(invalid("user_id: a dialog is with another user"));
                }
                let new = NewConversation {
                    subscriber_id: self.subscriber,
                    kind: ConversationKind::Dialog,
                    title: String::new(),
                    hidden: false,
                    infobase_id: Some(self.user.infobase_id),
                    key: None,
                    object_ref: None,
                    created_by: Some(me),
                    members: vec![me, user_id],
                };
                self.create(new).await
            }
            Request::GetContext {
                infobase_id,
                object_ref,
            } => {
                let id = self
                    .st
                    .store
                    .context_id(infobase_id, &object_ref)
                    .await?
                    .ok_or_else(|| ApiError::not_found("conversation"))?;
                chat::require_member(&self.st, id, me, self.subscriber).await?;
                self.conversation(id).await
            }
            Request::AddMembers {
                conversation_id,
                user_ids,
            } => {
                let kind = self.member_kind(conversation_id).await?;
                match kind {
                    ConversationKind::Group => {}
                    ConversationKind::Dialog => {
                        return Err(invalid("a dialog has exactly two members"))
                    }
                    ConversationKind::Context => {
                        return Err(ApiError::access_denied(
                            "members of a contextual conversation are granted by its infobase",
                        )
                        .into())
                    }
                }
                let events = self
                    .st
                    .store
                    .add_members(
                        conversation_id,
                        self.subscriber,
                        &user_ids,
                        self.st.limits.max_members,
                    )
                    .await?;
                chat::publish_all(&self.st, events).await?;
                self.conversation(conversation_id).await
            }
            Request::RemoveMember {
                conversation_id,
                user_id,
            } => {
                let kind = self.member_kind(conversation_id).await?;
                if user_id != me {
                    let creator = self
                        .st
                        .store
                        .conversation_meta(conversation_id)
                        .await?
                        .and_then(|m| m.3);
                    if kind != ConversationKind::Group || creator != Some(me) {
                        return Err(ApiError::access_denied(
                            "only the creator of a group removes other members",
                        )
                        .into());
                    }
                } else if kind == ConversationKind::Dialog {
                    return Err(invalid("nobody leaves a dialog"));
                }
                let removed = self
                    .st
                    .store
                    .remove_member(conversation_id, user_id)
                    .await?;
                let done = removed.is_some();
                if let Some(ev) = removed {
                    chat::publish(&self.st, ev).await?;
                }
                Ok(json!({ "removed": done }))
            }
            Request::Leave { conversation_id } => {
                let kind = self.member_kind(conversation_id).await?;
                if kind == ConversationKind::Dialog {
                    return Err(invalid("nobody leaves a dialog"));
                }
                if let Some(ev) = self.st.store.remove_member(conversation_id, me).await? {
                    chat::publish(&self.st, ev).await?;
                }
                Ok(json!({ "left": true }))
            }
            Request::Send {
                conversation_id,
                message,
            } => {
                chat::require_member(&self.st, conversation_id, me, self.subscriber).await?;
                let row = chat::validate_message(&self.st, message, me)?;
                let (msg, _) = chat::send(&self.st, conversation_id, row).await?;
                to_value(&msg)
            }
            Request::Edit {
                conversation_id,
                message_id,
                text,
                data,
            } => {
                chat::require_member(&self.st, conversation_id, me, self.subscriber).await?;
                if text.is_none() && data.is_none() {
                    return Err(invalid("give text or data to change"));
                }
                let probe = parley_core::protocol::NewMessage {
                    text: text.clone().unwrap_or_else(|| "-".into()),
                    data: data.clone(),
                    ..Default::default()
                };
                chat::validate_message(&self.st, probe, me)?;
                let ev = self
                    .st
                    .store
                    .edit_message(
                        conversation_id,
                        message_id,
                        Some(me),
                        text.as_deref(),
                        data.as_ref(),
                    )
                    .await?;
                let out = match &ev.event {
                    Event::MessageEdited { message, .. } => to_value(message)?,
                    _ => Value::Null,
                };
                chat::publish(&self.st, ev).await?;
                Ok(out)
            }
            Request::Delete {
                conversation_id,
                message_id,
            } => {
                chat::require_member(&self.st, conversation_id, me, self.subscriber).await?;
                let ev = self
                    .st
                    .store
                    .delete_message(conversation_id, message_id, Some(me))
                    .await?;
                let seq = ev.seq;
                chat::publish(&self.st, ev).await?;
                Ok(json!({ "deleted": true, "seq": seq }))
            }
            Request::History {
                conversation_id,
                before,
                after,
                limit,
            } => {
                chat::require_member(&self.st, conversation_id, me, self.subscriber).await?;
                let max = self.st.limits.max_history_page;
                let limit = limit.unwrap_or(50);
                if !(1..=max).contains(&limit) {
                    return Err(invalid(format!(
                        "limit: must be between 1 and {max} (limits.max_history_page)"
                    )));
                }
                if before.is_some() && after.is_some() {
                    return Err(invalid("give before or after, not both"));
                }
                let page = self
                    .st
                    .store
                    .history(conversation_id, Some(me), before, after, limit)
                    .await?;
                to_value(&page)
            }
            Request::Read {
                conversation_id,
                seq,
            } => {
                let Some((read_seq, unread)) =
                    self.st.store.mark_read(conversation_id, me, seq).await?
                else {
                    chat::require_member(&self.st, conversation_id, me, self.subscriber).await?;
                    return Err(ApiError::not_found("conversation").into());
                };
                let members = self.st.store.member_ids(conversation_id).await?;
                chat::push(
                    &self.st,
                    members,
                    Event::Read {
                        conversation_id,
                        user_id: me,
                        read_seq,
                    },
                );
                to_value(&ReadState {
                    conversation_id,
                    read_seq,
                    unread,
                })
            }
            Request::Typing { conversation_id } => {
                let interval = Duration::from_millis(self.st.limits.typing_interval_ms);
                let now = Instant::now();
                if self
                    .typing_at
                    .get(&conversation_id)
                    .is_some_and(|t| now.duration_since(*t) < interval)
                {
                    // Repeated within the interval: already announced.
                    return Ok(json!({ "sent": false }));
                }
                chat::require_member(&self.st, conversation_id, me, self.subscriber).await?;
                if self.typing_at.len() > 1000 {
                    self.typing_at
                        .retain(|_, t| now.duration_since(*t) < interval);
                }
                self.typing_at.insert(conversation_id, now);
                let others: Vec<UserId> = self
                    .st
                    .store
                    .member_ids(conversation_id)
                    .await?
                    .into_iter()
                    .filter(|u| *u != me)
                    .collect();
                chat::push(
                    &self.st,
                    others,
                    Event::Typing {
                        conversation_id,
                        user_id: me,
                    },
                );
                Ok(json!({ "sent": true }))
            }
            Request::GetUsers { user_ids } => {
                if user_ids.len() > MAX_PRESENCE_QUERY {
                    return Err(invalid(format!("user_ids: at most {MAX_PRESENCE_QUERY}")));
                }
                let users = self.st.store.profiles(self.subscriber, &user_ids).await?;
                to_value(&parley_core::protocol::UserProfiles { users })
            }
            Request::Presence { user_ids } => {
                if user_ids.len() > MAX_PRESENCE_QUERY {
                    return Err(invalid(format!("user_ids: at most {MAX_PRESENCE_QUERY}")));
                }
                if !self
                    .st
                    .store
                    .same_subscriber(self.subscriber, &user_ids)
                    .await?
                {
                    return Err(ApiError::not_found("user").into());
                }
                let online = self
                    .st
                    .bus
                    .online(user_ids.clone())
                    .await
                    .map_err(ApiError::from)?;
                to_value(&PresenceState {
                    users: user_ids.into_iter().zip(online).collect(),
                })
            }
        }
    }

    async fn conversation(&self, id: ConversationId) -> Result<Value, ReqError> {
        match self
            .st
            .store
            .conversation(id, Viewer::User(self.user.id))
            .await?
        {
            Some(c) => to_value(&c),
            None => {
                chat::require_member(&self.st, id, self.user.id, self.subscriber).await?;
                Err(ApiError::not_found("conversation").into())
            }
        }
    }

    /// The kind of a conversation the caller is a member of.
    async fn member_kind(&self, id: ConversationId) -> Result<ConversationKind, ReqError> {
        chat::require_member(&self.st, id, self.user.id, self.subscriber).await?;
        let meta = self.st.store.conversation_meta(id).await?;
        Ok(meta.ok_or_else(|| ApiError::not_found("conversation"))?.0)
    }

    async fn create(&mut self, new: NewConversation) -> Result<Value, ReqError> {
        let id = match self
            .st
            .store
            .create_conversation(&new, self.st.limits.max_members)
            .await?
        {
            CreateOutcome::Created(id, events) => {
                chat::publish_all(&self.st, events).await?;
                id
            }
            CreateOutcome::Existing(id) => id,
        };
        self.conversation(id).await
    }
}
