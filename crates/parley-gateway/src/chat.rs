//! Conversation and message operations shared by the WebSocket and the REST
//! API: checks, the store call, then fan-out of the committed events.

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use bytestring::ByteString;
use parley_bus::Envelope;
use parley_core::protocol::{Action, Event, Message, NewMessage, ServerFrame};
use parley_core::validate;
use parley_core::{ConversationId, ErrorCode, SubscriberId, UserId};
use parley_store::{NewMessageRow, StoredEvent};
use std::sync::Arc;

/// Most files on one message.
pub const MAX_ATTACHMENTS: usize = 20;

/// Longest idempotency key.
pub const MAX_IDEMPOTENCY_KEY: usize = 128;

impl From<parley_bus::BusError> for ApiError {
    fn from(e: parley_bus::BusError) -> Self {
        ApiError::new(ErrorCode::Unavailable, e.to_string())
    }
}

/// Serializes a frame once; every recipient shares the bytes.
pub fn frame_text(frame: &ServerFrame) -> ByteString {
    match serde_json::to_string(frame) {
        Ok(s) => ByteString::from(s),
        Err(e) => {
            tracing::error!(error = %e, "frame serialization failed");
            ByteString::from_static(
                "{\"type\":\"error\",\"code\":\"internal\",\"message\":\"serialization\"}",
            )
        }
    }
}

/// Sends an event that is not part of a history (typing, presence, read,
/// notification) to the sessions of `targets`.
pub fn push(st: &AppState, targets: Vec<UserId>, event: Event) {
    if targets.is_empty() {
        return;
    }
    st.bus.publish(Arc::new(Envelope {
        targets,
        position: None,
        recipients: None,
        author: None,
        frame: frame_text(&ServerFrame::Event(event)),
        resync: false,
    }));
}

/// Announces offline the users of nodes that died (reported by the bus).
pub async fn watch_departures(st: Arc<AppState>) {
    let Some(mut rx) = st.bus.take_departures() else {
        return;
    };
    while let Some(user) = rx.recv().await {
        match st.store.contacts(user).await {
            Ok(contacts) => push(
                &st,
                contacts,
                Event::Presence {
                    user_id: user,
                    online: false,
                },
            ),
            Err(e) => tracing::warn!(error = %e, "departure not announced"),
        }
    }
}

/// Fans out a committed event to the conversation's members (and, for a
/// removal, to the one removed).
pub async fn publish(st: &AppState, ev: StoredEvent) -> ApiResult<()> {
    let members = st.store.member_ids(ev.conversation_id).await?;
    publish_to(st, ev, members);
    Ok(())
}

/// Fans out events of one conversation, reading its members once.
pub async fn publish_all(st: &AppState, events: Vec<StoredEvent>) -> ApiResult<()> {
    let Some(first) = events.first() else {
        return Ok(());
    };
    let members = st.store.member_ids(first.conversation_id).await?;
    for ev in events {
        publish_to(st, ev, members.clone());
    }
    Ok(())
}

fn publish_to(st: &AppState, ev: StoredEvent, mut targets: Vec<UserId>) {
    if let Event::MemberRemoved { user_id, .. } = &ev.event {
        targets.push(*user_id);
    }
    let author = match &ev.event {
        Event::MessageCreated { message, .. } | Event::MessageEdited { message, .. } => {
            Some(message.author_id)
        }
        _ => None,
    };
    st.bus.publish(Arc::new(Envelope {
        targets,
        position: Some((ev.conversation_id, ev.seq)),
        recipients: ev.recipients,
        author,
        frame: frame_text(&ServerFrame::Event(ev.event)),
        resync: false,
    }));
}

/// A user may use a conversation only as a member. Conversations of other
/// subscribers (and missing ones) are `not_found`; those of the same
/// subscriber the user is not in are `access_denied`.
pub async fn require_member(
    st: &AppState,
    conversation: ConversationId,
    user: UserId,
    subscriber: SubscriberId,
) -> ApiResult<()> {
    if st.store.is_member(conversation, user).await? {
        return Ok(());
    }
    match st.store.conversation_meta(conversation).await? {
        Some((_, sub, _, _)) if sub == subscriber => Err(ApiError::access_denied(
            "you are not a member of this conversation",
        )),
        _ => Err(ApiError::not_found("conversation")),
    }
}

/// Checks a new message against the limits.
pub fn validate_message(st: &AppState, m: NewMessage, author: UserId) -> ApiResult<NewMessageRow> {
    let lim = &st.limits;
    if m.text.len() > lim.max_text_bytes {
        return Err(ApiError::new(
            ErrorCode::TooLarge,
            format!(
                "text: longer than the limit of {} bytes (limits.max_text_bytes)",
                lim.max_text_bytes
            ),
        ));
    }
    if m.text.contains('\0') {
        return Err(ApiError::new(
            ErrorCode::Invalid,
            "text: must not contain NUL",
        ));
    }
    if m.text.trim().is_empty() && m.data.is_none() {
        return Err(ApiError::new(
            ErrorCode::Invalid,
            "text: must not be empty (or send data)",
        ));
    }
    if let Some(d) = &m.data {
        let size = serde_json::to_vec(d).map(|v| v.len()).unwrap_or(usize::MAX);
        if size > lim.max_data_bytes {
            return Err(ApiError::new(
                ErrorCode::TooLarge,
                format!(
                    "data: larger than the limit of {} bytes (limits.max_data_bytes)",
                    lim.max_data_bytes
                ),
            ));
        }
        if d.to_string().contains("\\u0000") {
            return Err(ApiError::new(
                ErrorCode::Invalid,
                "data: must not contain NUL",
            ));
        }
    }
    if m.actions.len() > lim.max_actions {
        return Err(ApiError::new(
            ErrorCode::TooLarge,
            format!(
                "actions: more than the limit of {} (limits.max_actions)",
                lim.max_actions
            ),
        ));
    }
    let actions = m
        .actions
        .into_iter()
        .map(|a| {
            Ok(Action {
                value: validate::text("actions.value", &a.value, 256)?,
                caption: validate::text("actions.caption", &a.caption, 256)?,
            })
        })
        .collect::<ApiResult<Vec<_>>>()?;
    if let Some(r) = &m.recipients {
        if r.is_empty() {
            return Err(ApiError::new(
                ErrorCode::Invalid,
                "recipients: must not be empty when present",
            ));
        }
        if r.len() > lim.max_members {
            return Err(ApiError::new(
                ErrorCode::TooLarge,
                "recipients: more than limits.max_members",
            ));
        }
    }
    let key = match m.idempotency_key {
        None => None,
        Some(k) => Some(validate::text("idempotency_key", &k, MAX_IDEMPOTENCY_KEY)?),
    };
    if m.attachments.len() > MAX_ATTACHMENTS {
        return Err(ApiError::new(
            ErrorCode::TooLarge,
            format!("attachments: more than {MAX_ATTACHMENTS}"),
        ));
    }
    Ok(NewMessageRow {
        author,
        text: m.text,
        data: m.data,
        actions,
        recipients: m.recipients,
        attachments: m.attachments,
        idempotency_key: key,
    })
}

/// Stores a message (after the caller checked the author may post) and fans
/// it out; a retried idempotency key returns the first message (and false).
pub async fn send(
    st: &AppState,
    conversation: ConversationId,
    row: NewMessageRow,
) -> ApiResult<(Message, bool)> {
    // One read of the members serves the recipients check and the fan-out.
    let members = st.store.member_ids(conversation).await?;
    if let Some(r) = &row.recipients {
        if let Some(stranger) = r.iter().find(|u| !members.contains(u)) {
            return Err(ApiError::new(
                ErrorCode::Invalid,
                format!("recipients: {stranger} is not a member of the conversation"),
            ));
        }
    }
    let out = st.store.post_message(conversation, &row).await?;
    let fresh = out.event.is_some();
    // A retry may follow a node that died between commit and fan-out:
    // publish again; sessions drop what they already have by `seq`.
    let ev = out.event.unwrap_or_else(|| StoredEvent {
        conversation_id: conversation,
        seq: out.message.seq,
        recipients: out.message.recipients.clone(),
        event: Event::MessageCreated {
            conversation_id: conversation,
            seq: out.message.seq,
            message: out.message.clone(),
        },
    });
    publish_to(st, ev, members);
    Ok((out.message, fresh))
}
