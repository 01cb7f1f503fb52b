//! What each request frame does: parse, call one service function, answer
//! with its `result` value. The rules live in `parley_service`.

use super::{ReqError, Session};
use parley_core::protocol::{ReadState, Request, Resumed};
use parley_service::{Error, HistoryQuery};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Typing timestamps are pruned once this many conversations are tracked
/// (bookkeeping of one session, not a limit on the client).
const TYPING_PRUNE_AT: usize = 64;

fn to_value<T: serde::Serialize>(v: &T) -> Result<Value, ReqError> {
    serde_json::to_value(v).map_err(|e| ReqError::Api(Error::internal(e.to_string())))
}

impl Session {
    pub(super) async fn dispatch(&mut self, req: Request) -> Result<Value, ReqError> {
        let svc = Arc::clone(&self.st.svc);
        // Cheap handles: `replay` below borrows the session mutably.
        let me = Arc::clone(&self.me);
        let me = &*me;
        match req {
            Request::Auth { .. } => {
                Err(Error::invalid("this session is already authenticated").into())
            }
            Request::Ping => Ok(Value::Null),
            Request::Logout => {
                // The revocation comes back through the hub and closes this
                // session (and any other with the same token) with 4003,
                // after this answer.
                svc.logout(me, self.token_id).await?;
                Ok(json!({ "logged_out": true }))
            }
            Request::Resume { conversations } => {
                metrics::counter!("parley_resumes_total").increment(1);
                if conversations.values().any(|seen| *seen < 0) {
                    return Err(Error::invalid("resume: a seq is never negative").into());
                }
                let mut replayed = 0;
                let mut truncated = Vec::new();
                for (conv, seen) in conversations {
                    if !svc.is_member(me, conv).await? {
                        // Not (or no longer) a member: nothing to replay.
                        self.last.remove(&conv);
                        continue;
                    }
                    let r = match self.replay(conv, seen, None).await {
                        Ok(r) => r,
                        Err(super::Missed::Stop(s)) => return Err(s.into()),
                        Err(super::Missed::Later(e)) => return Err(e.into()),
                    };
                    self.last.insert(conv, r.top);
                    replayed += r.sent;
                    if r.more {
                        truncated.push(conv);
                    }
                }
                to_value(&Resumed {
                    replayed,
                    truncated,
                })
            }
            Request::ListConversations { filter } => {
                to_value(&svc.conversations_of_user(me, filter).await?)
            }
            Request::GetConversation { conversation_id } => {
                to_value(&svc.conversation_for_user(me, conversation_id).await?)
            }
            Request::CreateGroup { title, members } => {
                to_value(&svc.create_group(me, &title, members).await?)
            }
            Request::OpenDialog { user_id } => to_value(&svc.open_dialog(me, user_id).await?),
            Request::GetContext {
                infobase_id,
                object_ref,
            } => to_value(&svc.context_for_user(me, infobase_id, &object_ref).await?),
            Request::AddMembers {
                conversation_id,
                user_ids,
            } => to_value(
                &svc.add_members_by_user(me, conversation_id, &user_ids)
                    .await?,
            ),
            Request::RemoveMember {
                conversation_id,
                user_id,
            } => {
                let removed = svc
                    .remove_member_by_user(me, conversation_id, user_id)
                    .await?;
                Ok(json!({ "removed": removed }))
            }
            Request::Leave { conversation_id } => {
                svc.leave(me, conversation_id).await?;
                Ok(json!({ "left": true }))
            }
            Request::Send {
                conversation_id,
                message,
            } => to_value(
                &svc.send_message(me, conversation_id, message)
                    .await?
                    .message,
            ),
            Request::Edit {
                conversation_id,
                message_id,
                text,
                data,
            } => to_value(
                &svc.edit_message(me, conversation_id, message_id, text, data)
                    .await?,
            ),
            Request::Delete {
                conversation_id,
                message_id,
            } => {
                let seq = svc.delete_message(me, conversation_id, message_id).await?;
                Ok(json!({ "deleted": true, "seq": seq }))
            }
            Request::History {
                conversation_id,
                before,
                after,
                limit,
            } => {
                let q = HistoryQuery {
                    before,
                    after,
                    limit,
                };
                to_value(&svc.history_for_user(me, conversation_id, q).await?)
            }
            Request::Read {
                conversation_id,
                seq,
            } => {
                let state: ReadState = svc.mark_read(me, conversation_id, seq).await?;
                to_value(&state)
            }
            Request::Typing { conversation_id } => {
                let interval = Duration::from_millis(svc.limits().typing_interval_ms);
                let now = Instant::now();
                if self
                    .typing_at
                    .get(&conversation_id)
                    .is_some_and(|t| now.duration_since(*t) < interval)
                {
                    // Repeated within the interval: already announced.
                    return Ok(json!({ "sent": false }));
                }
                svc.typing(me, conversation_id).await?;
                if self.typing_at.len() >= TYPING_PRUNE_AT {
                    self.typing_at
                        .retain(|_, t| now.duration_since(*t) < interval);
                }
                self.typing_at.insert(conversation_id, now);
                Ok(json!({ "sent": true }))
            }
            Request::GetUsers { user_ids } => to_value(&svc.profiles(me, &user_ids).await?),
            Request::Presence { user_ids } => to_value(&svc.presence_for_user(me, user_ids).await?),
            Request::CallStart {
                conversation_id,
                media,
                group,
            } => {
                self.in_calls = true;
                to_value(
                    &svc.start_call(me, self.id, conversation_id, media, group)
                        .await?,
                )
            }
            Request::CallAccept { call_id } => {
                self.in_calls = true;
                to_value(&svc.accept_call(me, self.id, call_id).await?)
            }
            Request::CallJoin { call_id } => {
                self.in_calls = true;
                to_value(&svc.rejoin_call(me, self.id, call_id).await?)
            }
            Request::CallDecline { call_id } => {
                svc.decline_call(me, self.id, call_id).await?;
                Ok(json!({}))
            }
            Request::CallCancel { call_id } => {
                svc.cancel_call(me, call_id).await?;
                Ok(json!({}))
            }
            Request::CallHangup { call_id } => {
                svc.hangup_call(me, call_id).await?;
                Ok(json!({}))
            }
            Request::CallSignal {
                call_id,
                to_session,
                signal,
            } => {
                svc.signal_call(me, self.id, call_id, to_session, signal)
                    .await?;
                Ok(json!({}))
            }
            Request::Search { query } => to_value(&svc.search_for_user(me, query).await?),
            Request::UpdateConversation {
                conversation_id,
                title,
                description,
                picture,
            } => to_value(
                &svc.update_conversation_by_user(
                    me,
                    conversation_id,
                    &parley_service::ConversationUpdate {
                        title,
                        description,
                        picture,
                    },
                )
                .await?,
            ),
            Request::ActionInvoke {
                conversation_id,
                message_id,
                value,
            } => to_value(
                &svc.invoke_action(me, conversation_id, message_id, &value)
                    .await?,
            ),
            Request::SearchUsers {
                query,
                cursor,
                limit,
            } => to_value(
                &svc.search_users(me, &query, cursor.as_deref(), limit)
                    .await?,
            ),
            Request::ReactionAdd {
                conversation_id,
                message_id,
                emoji,
            } => {
                let changed = svc
                    .react(me, conversation_id, message_id, &emoji, true)
                    .await?;
                Ok(json!({ "changed": changed }))
            }
            Request::ReactionRemove {
                conversation_id,
                message_id,
                emoji,
            } => {
                let changed = svc
                    .react(me, conversation_id, message_id, &emoji, false)
                    .await?;
                Ok(json!({ "changed": changed }))
            }
            Request::CallScreen { call_id, sharing } => {
                svc.share_screen(me, self.id, call_id, sharing).await?;
                Ok(json!({}))
            }
        }
    }
}
