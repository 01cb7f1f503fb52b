//! Calls between the members of a conversation (docs/calls.md). PostgreSQL
//! holds each call's state, so any node can take the next step; the
//! `call.*` events travel over the bus like every live event, and signaling
//! goes only to the sessions in the call.

use crate::{Error, Result, Service};
use chrono::Utc;
use parley_core::calls::{Call, IceServer, Joined, Media, Signal};
use parley_core::protocol::{Event, RingingStopped};
use parley_core::{crypto, CallId, ConversationId, SessionId, UserActor, UserId};
use parley_store::{CallChange, Declined};
use std::time::Duration;

impl Service {
    /// STUN servers, and TURN servers with credentials for this user that
    /// expire after `calls.turn_ttl_secs`.
    pub fn ice_servers(&self, user: UserId) -> Vec<IceServer> {
        let cfg = &self.cfg.calls;
        let mut out = Vec::new();
        if !cfg.stun_urls.is_empty() {
            out.push(IceServer {
                urls: cfg.stun_urls.clone(),
                username: None,
                credential: None,
            });
        }
        if !cfg.turn_urls.is_empty() {
            let expiry = Utc::now().timestamp() + cfg.turn_ttl_secs as i64;
            let username = format!("{expiry}:{user}");
            out.push(IceServer {
                urls: cfg.turn_urls.clone(),
                credential: Some(crypto::turn_credential(
                    cfg.turn_secret.as_bytes(),
                    &username,
                )),
                username: Some(username),
            });
        }
        out
    }

    async fn joined(&self, me: &UserActor, call: Call) -> Result<Joined> {
        let room = match call.group {
            true => self.store.call_room(call.id).await?,
            false => None,
        };
        Ok(Joined {
            call,
            ice_servers: self.ice_servers(me.id()),
            room,
        })
    }

    /// Tells the conversation's members what changed, and publishes the
    /// system message of a call that ended.
    fn announce_call(&self, change: CallChange) {
        let CallChange {
            call,
            members,
            committed,
        } = change;
        if let Some(c) = committed {
            self.publish(c);
        }
        if call.group && call.outcome.is_some() {
            self.destroy_room(call.id);
        }
        let ev = match call.outcome {
            Some(_) => Event::CallEnded { call },
            None => Event::CallUpdated { call },
        };
        self.push(members, ev);
    }

    /// The room of an ended group call goes (in the background: the call is
    /// over whatever Janus answers; a room left behind is logged).
    fn destroy_room(&self, id: CallId) {
        let store = self.store.clone();
        let media = self.media.clone();
        tokio::spawn(async move {
            let room = match store.call_room(id).await {
                Ok(Some(r)) => r,
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(error = %e, call_id = %id, "room of an ended call unknown");
                    return;
                }
            };
            if let Err(e) = media.destroy_room(&room).await {
                tracing::warn!(error = %e, call_id = %id, room = room.room, "room not destroyed");
            }
        });
    }

    /// Starts a call; the other members' devices ring (`call.ringing`). In a
    /// conversation of more than two it is a group call in a room of the
    /// media server.
    pub async fn start_call(
        &self,
        me: &UserActor,
        session: SessionId,
        conversation: ConversationId,
        media: Media,
        group: bool,
    ) -> Result<Joined> {
        self.require_member(me, conversation).await?;
        let members = self.store.member_ids(conversation).await?;
        let room = if group || members.len() > self.cfg.calls.p2p_max_participants {
            if !self.media.configured() {
                return Err(Error::unavailable(
                    "group calls need a media server (calls.janus_urls)",
                ));
            }
            let pin = crypto::secret("");
            Some(
                self.media
                    .create_room(&pin, self.cfg.calls.group_max_participants)
                    .await
                    .map_err(|e| {
                        tracing::warn!(error = %e, "group call room not created");
                        Error::unavailable("the media server did not create the room; retry later")
                    })?,
            )
        } else {
            None
        };
        let change = match self
            .store
            .start_call(conversation, me.id(), session, media, room.as_ref())
            .await
        {
            Ok(c) => c,
            Err(e) => {
                if let Some(r) = room {
                    let media = self.media.clone();
                    tokio::spawn(async move {
                        let _ = media.destroy_room(&r).await;
                    });
                }
                return Err(e.into());
            }
        };
        let call = change.call.clone();
        if call.outcome.is_some() {
            // Busy: over before it rang.
            self.announce_call(change);
        } else {
            let others: Vec<UserId> = change
                .members
                .iter()
                .copied()
                .filter(|m| *m != me.id())
                .collect();
            self.push(others, Event::CallRinging { call: call.clone() });
        }
        self.joined(me, call).await
    }

    /// Answers from this session; the user's other devices stop ringing.
    pub async fn accept_call(
        &self,
        me: &UserActor,
        session: SessionId,
        id: CallId,
    ) -> Result<Joined> {
        let change = self
            .store
            .accept_call(
                id,
                me.id(),
                session,
                self.cfg.calls.p2p_max_participants,
                self.cfg.calls.group_max_participants,
            )
            .await?;
        let call = change.call.clone();
        self.push(
            vec![me.id()],
            Event::CallRingingStopped {
                call_id: id,
                session_id: session,
                reason: RingingStopped::AnsweredElsewhere,
            },
        );
        self.announce_call(change);
        self.joined(me, call).await
    }

    /// Comes back to a call after a dropped connection.
    pub async fn rejoin_call(
        &self,
        me: &UserActor,
        session: SessionId,
        id: CallId,
    ) -> Result<Joined> {
        let change = self.store.rejoin_call(id, me.id(), session).await?;
        let call = change.call.clone();
        self.announce_call(change);
        self.joined(me, call).await
    }

    pub async fn decline_call(&self, me: &UserActor, session: SessionId, id: CallId) -> Result<()> {
        let declined = self.store.decline_call(id, me.id()).await?;
        self.push(
            vec![me.id()],
            Event::CallRingingStopped {
                call_id: id,
                session_id: session,
                reason: RingingStopped::DeclinedElsewhere,
            },
        );
        if let Declined::Ended(change) = declined {
            self.announce_call(change);
        }
        Ok(())
    }

    pub async fn cancel_call(&self, me: &UserActor, id: CallId) -> Result<()> {
        let change = self.store.cancel_call(id, me.id()).await?;
        self.announce_call(change);
        Ok(())
    }

    pub async fn hangup_call(&self, me: &UserActor, id: CallId) -> Result<()> {
        let change = self.store.hangup_call(id, me.id()).await?;
        self.announce_call(change);
        Ok(())
    }

    /// Relays signaling from this session to another session in the call
    /// (`to`), or to every other one. Only sessions in the call send and
    /// receive it.
    pub async fn signal_call(
        &self,
        me: &UserActor,
        session: SessionId,
        id: CallId,
        to: Option<SessionId>,
        signal: Signal,
    ) -> Result<()> {
        if signal.sdp.is_some() == signal.candidate.is_some() {
            return Err(Error::invalid("give sdp or candidate (one of them)"));
        }
        let size = serde_json::to_vec(&signal)
            .map(|v| v.len())
            .unwrap_or(usize::MAX);
        let max = self.cfg.calls.max_signal_bytes;
        if size > max {
            return Err(Error::too_large(format!(
                "signal: larger than {max} bytes (calls.max_signal_bytes)"
            )));
        }
        let call = self
            .store
            .live_call(id)
            .await?
            .ok_or_else(|| Error::not_found("call"))?;
        if !call
            .participants
            .iter()
            .any(|p| p.user_id == me.id() && p.session_id == session)
        {
            return Err(Error::access_denied(
                "this session is not in the call (accept or join it first)",
            ));
        }
        let targets: Vec<_> = call
            .participants
            .iter()
            .filter(|p| p.session_id != session)
            .filter(|p| to.is_none_or(|t| t == p.session_id))
            .collect();
        if targets.is_empty() {
            return Err(match to {
                Some(_) => Error::access_denied("to_session: not a session in this call"),
                None => Error::new(
                    parley_core::ErrorCode::Conflict,
                    "nobody else is in the call yet",
                ),
            });
        }
        for p in targets {
            self.push_to_session(
                p.user_id,
                p.session_id,
                Event::CallSignal {
                    call_id: id,
                    from_user: me.id(),
                    from_session: session,
                    signal: signal.clone(),
                },
            );
        }
        Ok(())
    }

    /// This session shares a screen, or stops; the members are told.
    pub async fn share_screen(
        &self,
        me: &UserActor,
        session: SessionId,
        id: CallId,
        sharing: bool,
    ) -> Result<()> {
        let change = self
            .store
            .share_screen(id, me.id(), session, sharing)
            .await?;
        self.announce_call(change);
        Ok(())
    }

    /// A session closed: its calls see it dropped (it may come back within
    /// `calls.rejoin_grace_secs`).
    pub async fn call_session_closed(&self, user: UserId, session: SessionId) {
        match self.store.call_session_closed(user, session).await {
            Ok(changes) => changes.into_iter().for_each(|c| self.announce_call(c)),
            Err(e) => tracing::warn!(error = %e, "calls of a closed session not updated"),
        }
    }

    /// Spawns the loop that ends timed-out calls (once a second).
    pub fn start_call_sweeper(self: &std::sync::Arc<Self>) {
        let svc = std::sync::Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                if let Err(e) = svc.sweep_calls().await {
                    tracing::warn!(error = %e, "call sweep failed");
                }
            }
        });
    }

    /// Ends calls nobody answered in time and drops participants that did
    /// not come back (every node runs it; each call is ended once).
    pub async fn sweep_calls(&self) -> Result<usize> {
        let cfg = &self.cfg.calls;
        let changes = self
            .store
            .sweep_calls(
                Duration::from_secs(cfg.ring_timeout_secs),
                Duration::from_secs(cfg.rejoin_grace_secs),
            )
            .await?;
        let n = changes.len();
        changes.into_iter().for_each(|c| self.announce_call(c));
        Ok(n)
    }
}
