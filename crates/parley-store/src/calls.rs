//! Calls: their state and participants, changed under the call's row lock
//! (or the conversation's, to start one), and the system message each ended
//! call leaves in the conversation's history with its own `seq`.

use crate::conversations::{lock_conversation, members_tx};
use crate::db::Tx;
use crate::{Committed, Result, Store, StoreError};
use chrono::{DateTime, Utc};
use parley_core::calls::{Call, CallRecord, CallState, Media, Outcome, Participant, Room};
use parley_core::protocol::{Event, Message, MessageKind};
use parley_core::{CallId, ConversationId, MessageId, SessionId, UserId};
use sqlx::postgres::PgRow;
use sqlx::types::Json;
use sqlx::Row;
use std::time::Duration;
use uuid::Uuid;

/// A call and the members of its conversation (who hear about it).
#[derive(Clone, Debug)]
pub struct CallChange {
    pub call: Call,
    pub members: Vec<UserId>,
    /// The system message of a call that ended, to publish.
    pub committed: Option<Committed>,
}

/// What `decline` did.
#[derive(Clone, Debug)]
pub enum Declined {
    /// The call ended (a 1:1 call).
    Ended(CallChange),
    /// Only this user's devices stop ringing (others may still answer).
    ForMe,
}

const CALL_COLUMNS: &str = "id, conversation_id, started_by, media, state, outcome, started_at, \
                            answered_at, ended_at, room IS NOT NULL AS grouped";

fn media(s: &str) -> Media {
    match s {
        "audio" => Media::Audio,
        _ => Media::Video,
    }
}

fn outcome(s: Option<&str>) -> Option<Outcome> {
    Some(match s? {
        "completed" => Outcome::Completed,
        "missed" => Outcome::Missed,
        "declined" => Outcome::Declined,
        "cancelled" => Outcome::Cancelled,
        _ => Outcome::Busy,
    })
}

fn call_from_row(r: &PgRow) -> Result<Call> {
    Ok(Call {
        id: CallId(r.try_get("id")?),
        conversation_id: ConversationId(r.try_get("conversation_id")?),
        started_by: UserId(r.try_get("started_by")?),
        media: media(r.try_get("media")?),
        group: r.try_get("grouped")?,
        state: match r.try_get::<&str, _>("state")? {
            "ringing" => CallState::Ringing,
            "active" => CallState::Active,
            _ => CallState::Ended,
        },
        outcome: outcome(r.try_get("outcome")?),
        started_at: r.try_get("started_at")?,
        answered_at: r.try_get("answered_at")?,
        ended_at: r.try_get("ended_at")?,
        participants: Vec::new(),
    })
}

/// The call with its current participants, read in the transaction.
async fn load(tx: &mut Tx, id: CallId, lock: bool) -> Result<Call> {
    let sql = format!(
        "SELECT {CALL_COLUMNS} FROM calls WHERE id = $1{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    let row = sqlx::query(&sql)
        .bind(id.0)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or(StoreError::NotFound("call"))?;
    let mut call = call_from_row(&row)?;
    call.participants = participants(tx, id).await?;
    Ok(call)
}

async fn participants(tx: &mut Tx, id: CallId) -> Result<Vec<Participant>> {
    let rows: Vec<(Uuid, Uuid, DateTime<Utc>, bool)> = sqlx::query_as(
        "SELECT user_id, session_id, joined_at, screen FROM call_participants
         WHERE call_id = $1 AND left_at IS NULL ORDER BY joined_at, user_id",
    )
    .bind(id.0)
    .fetch_all(&mut **tx)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(u, s, t, screen)| Participant {
            user_id: UserId(u),
            session_id: SessionId(s),
            joined_at: t,
            screen,
        })
        .collect())
}

/// Whether the user takes part in a call that is not over (a "busy" user).
async fn in_a_call(tx: &mut Tx, user: UserId) -> Result<bool> {
    let n: Option<i32> = sqlx::query_scalar(
        "SELECT 1 FROM call_participants p JOIN calls c ON c.id = p.call_id
         WHERE p.user_id = $1 AND p.left_at IS NULL AND c.state <> 'ended' LIMIT 1",
    )
    .bind(user.0)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(n.is_some())
}

/// Ends the call: everyone leaves, and the history gets a system message
/// (`kind: system`, `data: {"call": CallRecord}`) with the next `seq`.
async fn end(tx: &mut Tx, call: &mut Call, how: Outcome) -> Result<Committed> {
    let ended_at: DateTime<Utc> = sqlx::query_scalar(
        "UPDATE calls SET state = 'ended', outcome = $2, ended_at = now() WHERE id = $1
         RETURNING ended_at",
    )
    .bind(call.id.0)
    .bind(how.as_str())
    .fetch_one(&mut **tx)
    .await?;
    sqlx::query(
        "UPDATE call_participants SET left_at = now() WHERE call_id = $1 AND left_at IS NULL",
    )
    .bind(call.id.0)
    .execute(&mut **tx)
    .await?;
    call.state = CallState::Ended;
    call.outcome = Some(how);
    call.ended_at = Some(ended_at);
    call.participants.clear();
    let record = CallRecord {
        call_id: call.id,
        media: call.media,
        outcome: how,
        started_by: call.started_by,
        duration_secs: call
            .answered_at
            .map(|a| (ended_at - a).num_seconds().max(0)),
    };
    let ev = system_message(
        tx,
        call.conversation_id,
        call.started_by,
        serde_json::json!({ "call": record }),
    )
    .await?;
    let members = members_tx(tx, call.conversation_id).await?;
    Ok(Committed {
        events: vec![ev],
        members,
    })
}

/// A system message with the next `seq` of the conversation.
async fn system_message(
    tx: &mut Tx,
    conversation: ConversationId,
    author: UserId,
    data: serde_json::Value,
) -> Result<crate::StoredEvent> {
    let seq: i64 = sqlx::query_scalar(
        "UPDATE conversations SET last_seq = last_seq + 1, last_activity = now()
         WHERE id = $1 RETURNING last_seq",
    )
    .bind(conversation.0)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or(StoreError::NotFound("conversation"))?;
    let mut message = Message::plain(
        MessageId(Uuid::now_v7()),
        conversation,
        seq,
        author,
        String::new(),
        Utc::now(),
    );
    message.data = Some(data);
    message.kind = MessageKind::System;
    let event = Event::MessageCreated {
        conversation_id: conversation,
        seq,
        message: message.clone(),
    };
    sqlx::query(
        "INSERT INTO events (conversation_id, seq, recipients, body) VALUES ($1, $2, NULL, $3)",
    )
    .bind(conversation.0)
    .bind(seq)
    .bind(Json(&event))
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "INSERT INTO messages (id, conversation_id, seq, author_id, text, data, created_at, kind)
         VALUES ($1, $2, $3, $4, '', $5, $6, 'system')",
    )
    .bind(message.id.0)
    .bind(conversation.0)
    .bind(seq)
    .bind(author.0)
    .bind(message.data.as_ref().map(Json))
    .bind(message.created_at)
    .execute(&mut **tx)
    .await?;
    Ok(crate::StoredEvent {
        conversation_id: conversation,
        seq,
        recipients: None,
        event,
    })
}

fn not_in_conversation() -> StoreError {
    StoreError::Denied("you are not a member of this conversation".into())
}

/// The call, locked, and whether `user` is a member of its conversation.
async fn locked_for_member(tx: &mut Tx, id: CallId, user: UserId) -> Result<(Call, Vec<UserId>)> {
    let call = load(tx, id, true).await?;
    let members = members_tx(tx, call.conversation_id).await?;
    if !members.contains(&user) {
        // A call of a conversation the user is not in does not exist for it.
        return Err(StoreError::NotFound("call"));
    }
    Ok((call, members))
}

impl Store {
    /// Starts a call in a conversation the user is a member of: ringing,
    /// with the caller in it; or, when the only other member is in another
    /// call, ended at once as busy (with its system message).
    pub async fn start_call(
        &self,
        conversation: ConversationId,
        user: UserId,
        session: SessionId,
        media: Media,
        room: Option<&Room>,
    ) -> Result<CallChange> {
        let mut tx = self.db.begin().await?;
        lock_conversation(&mut tx, conversation).await?;
        let members = members_tx(&mut tx, conversation).await?;
        if !members.contains(&user) {
            return Err(not_in_conversation());
        }
        if members.len() < 2 {
            return Err(StoreError::Invalid(
                "nobody else is in this conversation to call".into(),
            ));
        }
        let live: Option<Uuid> = sqlx::query_scalar(
            "SELECT id FROM calls WHERE conversation_id = $1 AND state <> 'ended'",
        )
        .bind(conversation.0)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(id) = live {
            return Err(StoreError::Conflict(format!(
                "a call is already going on in this conversation ({id})"
            )));
        }
        if in_a_call(&mut tx, user).await? {
            return Err(StoreError::Conflict(
                "you are in another call: hang it up first".into(),
            ));
        }
        let id = CallId(Uuid::now_v7());
        let others: Vec<UserId> = members.iter().copied().filter(|m| *m != user).collect();
        let busy = room.is_none() && others.len() == 1 && in_a_call(&mut tx, others[0]).await?;
        let sql = format!(
            "INSERT INTO calls (id, conversation_id, started_by, media, state, room)
             VALUES ($1, $2, $3, $4, 'ringing', $5) RETURNING {CALL_COLUMNS}"
        );
        let row = sqlx::query(&sql)
            .bind(id.0)
            .bind(conversation.0)
            .bind(user.0)
            .bind(media.as_str())
            .bind(room.map(Json))
            .fetch_one(&mut *tx)
            .await?;
        let mut call = call_from_row(&row)?;
        sqlx::query(
            "INSERT INTO call_participants (call_id, user_id, session_id) VALUES ($1, $2, $3)",
        )
        .bind(id.0)
        .bind(user.0)
        .bind(session.0)
        .execute(&mut *tx)
        .await?;
        call.participants = participants(&mut tx, id).await?;
        let committed = if busy {
            Some(end(&mut tx, &mut call, Outcome::Busy).await?)
        } else {
            None
        };
        tx.commit().await?;
        Ok(CallChange {
            call,
            members,
            committed,
        })
    }

    /// Answers a ringing (or joins an active) call from `session`, within
    /// `max_participants`.
    pub async fn accept_call(
        &self,
        id: CallId,
        user: UserId,
        session: SessionId,
        max_p2p: usize,
        max_group: usize,
    ) -> Result<CallChange> {
        let mut tx = self.db.begin().await?;
        let (mut call, members) = locked_for_member(&mut tx, id, user).await?;
        let max_participants = if call.group { max_group } else { max_p2p };
        if call.state == CallState::Ended {
            return Err(StoreError::Conflict("the call is over".into()));
        }
        if let Some(p) = call.participants.iter().find(|p| p.user_id == user) {
            if p.session_id == session {
                tx.rollback().await?;
                return Ok(CallChange {
                    call,
                    members,
                    committed: None,
                });
            }
            return Err(StoreError::Conflict(
                "you are in this call on another device".into(),
            ));
        }
        if call.participants.len() >= max_participants {
            return Err(StoreError::Conflict(format!(
                "the call is full ({max_participants} participants)"
            )));
        }
        if in_a_call(&mut tx, user).await? {
            return Err(StoreError::Conflict(
                "you are in another call: hang it up first".into(),
            ));
        }
        sqlx::query(
            "INSERT INTO call_participants (call_id, user_id, session_id) VALUES ($1, $2, $3)
             ON CONFLICT (call_id, user_id) DO UPDATE
             SET session_id = $3, joined_at = now(), dropped_at = NULL, left_at = NULL",
        )
        .bind(id.0)
        .bind(user.0)
        .bind(session.0)
        .execute(&mut *tx)
        .await?;
        let answered: Option<DateTime<Utc>> = sqlx::query_scalar(
            "UPDATE calls SET state = 'active', answered_at = COALESCE(answered_at, now())
             WHERE id = $1 RETURNING answered_at",
        )
        .bind(id.0)
        .fetch_one(&mut *tx)
        .await?;
        call.state = CallState::Active;
        call.answered_at = answered;
        call.participants = participants(&mut tx, id).await?;
        tx.commit().await?;
        Ok(CallChange {
            call,
            members,
            committed: None,
        })
    }

    /// A participant comes back on `session` (its connection dropped).
    pub async fn rejoin_call(
        &self,
        id: CallId,
        user: UserId,
        session: SessionId,
    ) -> Result<CallChange> {
        let mut tx = self.db.begin().await?;
        let (mut call, members) = locked_for_member(&mut tx, id, user).await?;
        if call.state == CallState::Ended {
            return Err(StoreError::Conflict("the call is over".into()));
        }
        let n = sqlx::query(
            "UPDATE call_participants SET session_id = $3, dropped_at = NULL
             WHERE call_id = $1 AND user_id = $2 AND left_at IS NULL",
        )
        .bind(id.0)
        .bind(user.0)
        .bind(session.0)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n == 0 {
            return Err(StoreError::Denied(
                "you are not in this call: accept it instead".into(),
            ));
        }
        call.participants = participants(&mut tx, id).await?;
        tx.commit().await?;
        Ok(CallChange {
            call,
            members,
            committed: None,
        })
    }

    /// Refuses a ringing call: a call between two ends as declined; in a
    /// group only this user's devices stop ringing.
    pub async fn decline_call(&self, id: CallId, user: UserId) -> Result<Declined> {
        let mut tx = self.db.begin().await?;
        let (mut call, members) = locked_for_member(&mut tx, id, user).await?;
        if call.state != CallState::Ringing || call.started_by == user {
            return Err(StoreError::Conflict(
                "the call is not ringing for you".into(),
            ));
        }
        if call.group || members.len() > 2 {
            return Ok(Declined::ForMe);
        }
        let committed = end(&mut tx, &mut call, Outcome::Declined).await?;
        tx.commit().await?;
        Ok(Declined::Ended(CallChange {
            call,
            members,
            committed: Some(committed),
        }))
    }

    /// The caller gives up before anyone answered.
    pub async fn cancel_call(&self, id: CallId, user: UserId) -> Result<CallChange> {
        let mut tx = self.db.begin().await?;
        let (mut call, members) = locked_for_member(&mut tx, id, user).await?;
        if call.started_by != user {
            return Err(StoreError::Denied("only the caller cancels a call".into()));
        }
        if call.state != CallState::Ringing {
            return Err(StoreError::Conflict(
                "the call was answered or is over: hang up instead".into(),
            ));
        }
        let committed = end(&mut tx, &mut call, Outcome::Cancelled).await?;
        tx.commit().await?;
        Ok(CallChange {
            call,
            members,
            committed: Some(committed),
        })
    }

    /// A participant leaves. A call ends when fewer than two are left in it
    /// (completed when it was answered, else cancelled).
    pub async fn hangup_call(&self, id: CallId, user: UserId) -> Result<CallChange> {
        let mut tx = self.db.begin().await?;
        let (mut call, members) = locked_for_member(&mut tx, id, user).await?;
        if call.state == CallState::Ended {
            return Err(StoreError::Conflict("the call is over".into()));
        }
        if !call.participants.iter().any(|p| p.user_id == user) {
            return Err(StoreError::Denied("you are not in this call".into()));
        }
        let committed = leave(&mut tx, &mut call, user).await?;
        tx.commit().await?;
        Ok(CallChange {
            call,
            members,
            committed,
        })
    }

    /// The sessions of the call's participants (for signaling), with the
    /// call's conversation; None when the call is over or unknown.
    pub async fn live_call(&self, id: CallId) -> Result<Option<Call>> {
        let mut tx = self.db.begin().await?;
        let call = match load(&mut tx, id, false).await {
            Ok(c) if c.state != CallState::Ended => Some(c),
            Ok(_) | Err(StoreError::NotFound(_)) => None,
            Err(e) => return Err(e),
        };
        tx.rollback().await?;
        Ok(call)
    }

    /// A participant's session starts or stops sharing a screen.
    pub async fn share_screen(
        &self,
        id: CallId,
        user: UserId,
        session: SessionId,
        sharing: bool,
    ) -> Result<CallChange> {
        let mut tx = self.db.begin().await?;
        let (mut call, members) = locked_for_member(&mut tx, id, user).await?;
        let n = sqlx::query(
            "UPDATE call_participants SET screen = $4
             WHERE call_id = $1 AND user_id = $2 AND session_id = $3 AND left_at IS NULL",
        )
        .bind(id.0)
        .bind(user.0)
        .bind(session.0)
        .bind(sharing)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n == 0 || call.state == CallState::Ended {
            return Err(StoreError::Denied("this session is not in the call".into()));
        }
        call.participants = participants(&mut tx, id).await?;
        tx.commit().await?;
        Ok(CallChange {
            call,
            members,
            committed: None,
        })
    }

    /// The room of a group call (with its pin).
    pub async fn call_room(&self, id: CallId) -> Result<Option<Room>> {
        let room: Option<Option<Json<Room>>> =
            sqlx::query_scalar("SELECT room FROM calls WHERE id = $1")
                .bind(id.0)
                .fetch_optional(&self.db)
                .await?;
        Ok(room.flatten().map(|r| r.0))
    }

    /// A session closed: its participations are marked dropped (the user
    /// may come back within the grace period). Returns the calls touched.
    pub async fn call_session_closed(
        &self,
        user: UserId,
        session: SessionId,
    ) -> Result<Vec<CallChange>> {
        let ids: Vec<Uuid> = sqlx::query_scalar(
            "UPDATE call_participants SET dropped_at = now()
             WHERE user_id = $1 AND session_id = $2 AND left_at IS NULL AND dropped_at IS NULL
             RETURNING call_id",
        )
        .bind(user.0)
        .bind(session.0)
        .fetch_all(&self.db)
        .await?;
        let mut out = Vec::new();
        for id in ids {
            let mut tx = self.db.begin().await?;
            let call = load(&mut tx, CallId(id), false).await?;
            let members = members_tx(&mut tx, call.conversation_id).await?;
            tx.rollback().await?;
            out.push(CallChange {
                call,
                members,
                committed: None,
            });
        }
        Ok(out)
    }

    /// Ends what timed out, whichever node notices first (rows locked with
    /// SKIP LOCKED): calls ringing longer than `ring_timeout` (missed), and
    /// participants dropped longer than `grace` (they leave; a call left
    /// with fewer than two ends).
    pub async fn sweep_calls(
        &self,
        ring_timeout: Duration,
        grace: Duration,
    ) -> Result<Vec<CallChange>> {
        let mut out = Vec::new();
        let rung: Vec<Uuid> = sqlx::query_scalar(
            "SELECT id FROM calls WHERE state = 'ringing'
               AND started_at < now() - make_interval(secs => $1) LIMIT 100",
        )
        .bind(ring_timeout.as_secs_f64())
        .fetch_all(&self.db)
        .await?;
        for id in rung {
            let mut tx = self.db.begin().await?;
            let locked: Option<Uuid> = sqlx::query_scalar(
                "SELECT id FROM calls WHERE id = $1 AND state = 'ringing' FOR UPDATE SKIP LOCKED",
            )
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
            if locked.is_none() {
                continue;
            }
            let mut call = load(&mut tx, CallId(id), false).await?;
            let committed = end(&mut tx, &mut call, Outcome::Missed).await?;
            tx.commit().await?;
            out.push(CallChange {
                call,
                members: committed.members.clone(),
                committed: Some(committed),
            });
        }
        let dropped: Vec<(Uuid, Uuid)> = sqlx::query_as(
            "SELECT p.call_id, p.user_id FROM call_participants p JOIN calls c ON c.id = p.call_id
             WHERE p.left_at IS NULL AND c.state <> 'ended'
               AND p.dropped_at < now() - make_interval(secs => $1) LIMIT 100",
        )
        .bind(grace.as_secs_f64())
        .fetch_all(&self.db)
        .await?;
        for (id, user) in dropped {
            let mut tx = self.db.begin().await?;
            let locked: Option<Uuid> = sqlx::query_scalar(
                "SELECT id FROM calls WHERE id = $1 AND state <> 'ended' FOR UPDATE SKIP LOCKED",
            )
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
            if locked.is_none() {
                continue;
            }
            let mut call = load(&mut tx, CallId(id), false).await?;
            let committed = leave(&mut tx, &mut call, UserId(user)).await?;
            let members = members_tx(&mut tx, call.conversation_id).await?;
            tx.commit().await?;
            out.push(CallChange {
                call,
                members,
                committed,
            });
        }
        Ok(out)
    }
}

/// `user` leaves the (locked) call; the call ends when fewer than two are
/// left in it.
async fn leave(tx: &mut Tx, call: &mut Call, user: UserId) -> Result<Option<Committed>> {
    sqlx::query("UPDATE call_participants SET left_at = now() WHERE call_id = $1 AND user_id = $2")
        .bind(call.id.0)
        .bind(user.0)
        .execute(&mut **tx)
        .await?;
    call.participants.retain(|p| p.user_id != user);
    // While it rings, the caller's leaving is a cancel (a group call goes
    // on while others are in it); once answered, a call between two ends
    // when one leaves, a group call when the last one does.
    let left = call.participants.len();
    let how = match call.state {
        CallState::Ringing if call.started_by == user && (!call.group || left == 0) => {
            Some(Outcome::Cancelled)
        }
        CallState::Active if !call.group && left < 2 => Some(Outcome::Completed),
        CallState::Active if call.group && left == 0 => Some(Outcome::Completed),
        _ => None,
    };
    match how {
        Some(how) => Ok(Some(end(tx, call, how).await?)),
        None => Ok(None),
    }
}
