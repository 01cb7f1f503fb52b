//! WebSocket sessions: one task per connection that selects over the
//! socket, its bounded queue from the hub, its overflow signal and the
//! heartbeat. See docs/protocol.md.

mod requests;

use crate::auth::authenticate_token;
use crate::chat::{self, frame_text};
use crate::error::ApiError;
use crate::state::AppState;
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use actix_ws::{AggregatedMessage, CloseCode, CloseReason, ProtocolError};
use bytestring::ByteString;
use futures_util::StreamExt;
use parley_bus::{Envelope, Overflow, Registered, SessionHandle};
use parley_core::api::User;
use parley_core::protocol::{close, ClientFrame, Event, Ready, Request, ServerFrame};
use parley_core::{ConversationId, ErrorCode, SessionId, SubscriberId};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tracing::Instrument;

/// Every request `type` (to tell an unknown type from a malformed request).
const KNOWN_TYPES: &[&str] = &[
    "auth",
    "ping",
    "resume",
    "conversations.list",
    "conversation.get",
    "conversation.create",
    "dialog.open",
    "context.get",
    "members.add",
    "members.remove",
    "conversation.leave",
    "message.send",
    "message.edit",
    "message.delete",
    "history",
    "read",
    "typing",
    "presence.get",
    "users.get",
];

/// `GET /ws`: upgrades, then runs the session in its own task.
pub async fn route(
    req: HttpRequest,
    body: web::Payload,
    st: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let token = token_from_request(&req);
    let (res, session, stream) = actix_ws::handle(&req, body).map_err(|e| {
        ApiError::new(
            ErrorCode::Invalid,
            format!("expected a WebSocket upgrade: {e}"),
        )
    })?;
    let stream = stream
        .max_frame_size(st.ws.max_frame_bytes)
        .aggregate_continuations()
        .max_continuation_size(st.ws.max_frame_bytes);
    let id = SessionId::new_random();
    let span = tracing::info_span!("session", id = %id);
    actix_web::rt::spawn(run(st.into_inner(), id, session, stream, token).instrument(span));
    Ok(res)
}

fn token_from_request(req: &HttpRequest) -> Option<String> {
    if let Some(v) = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        if let Some(t) = v.strip_prefix("Bearer ") {
            return Some(t.trim().to_owned());
        }
    }
    // Browsers cannot set headers on a WebSocket; tokens are URL-safe.
    req.query_string()
        .split('&')
        .find_map(|kv| kv.strip_prefix("token="))
        .map(str::to_owned)
}

/// Why a session ends: close code and reason.
struct Stop(u16, String);

impl Stop {
    fn new(code: u16, reason: impl Into<String>) -> Self {
        Self(code, reason.into())
    }
}

type Stream = actix_ws::AggregatedMessageStream;

async fn close_with(ws: actix_ws::Session, code: u16, reason: &str) {
    let reason = CloseReason {
        code: CloseCode::from(code),
        description: Some(reason.to_owned()),
    };
    // A peer that reads nothing must not hold the task.
    let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(Some(reason))).await;
}

async fn send_error(
    ws: &mut actix_ws::Session,
    id: Option<String>,
    code: ErrorCode,
    message: &str,
) {
    let frame = frame_text(&ServerFrame::Error {
        id,
        code,
        message: message.to_owned(),
    });
    let _ = tokio::time::timeout(Duration::from_secs(2), ws.text(frame)).await;
}

/// Waits for the first frame, which must be `auth`.
async fn auth_frame(
    st: &AppState,
    ws: &mut actix_ws::Session,
    stream: &mut Stream,
) -> Result<(User, SubscriberId, Option<String>), Stop> {
    let deadline = tokio::time::sleep(Duration::from_secs(st.ws.auth_timeout_secs));
    tokio::pin!(deadline);
    loop {
        let msg = tokio::select! {
            _ = &mut deadline => return Err(Stop::new(close::UNAUTHENTICATED, "no auth frame in time")),
            m = stream.next() => m,
        };
        let text = match msg {
            None | Some(Ok(AggregatedMessage::Close(_))) => {
                return Err(Stop::new(close::NORMAL, "closed"))
            }
            Some(Ok(AggregatedMessage::Ping(b))) => {
                let _ = ws.pong(&b).await;
                continue;
            }
            Some(Ok(AggregatedMessage::Pong(_))) => continue,
            Some(Ok(AggregatedMessage::Text(t))) => t,
            Some(Ok(AggregatedMessage::Binary(_))) => {
                return Err(Stop::new(
                    close::UNAUTHENTICATED,
                    "the first frame must be auth",
                ))
            }
            Some(Err(e)) => return Err(protocol_stop(e)),
        };
        let frame: ClientFrame = match serde_json::from_str(&text) {
            Ok(f) => f,
            Err(e) => {
                send_error(
                    ws,
                    None,
                    ErrorCode::Unauthenticated,
                    &format!("expected an auth frame: {e}"),
                )
                .await;
                return Err(Stop::new(
                    close::UNAUTHENTICATED,
                    "the first frame must be auth",
                ));
            }
        };
        let Request::Auth { token } = frame.request else {
            send_error(
                ws,
                Some(frame.id),
                ErrorCode::Unauthenticated,
                "authenticate first",
            )
            .await;
            return Err(Stop::new(
                close::UNAUTHENTICATED,
                "the first frame must be auth",
            ));
        };
        return match authenticate_token(st, &token).await {
            Ok((user, sub)) => Ok((user, sub, Some(frame.id))),
            Err(e) => {
                send_error(ws, Some(frame.id), e.code, &e.message).await;
                Err(Stop::new(close_for(e.code), e.message))
            }
        };
    }
}

fn close_for(code: ErrorCode) -> u16 {
    match code {
        ErrorCode::AccessDenied => close::ACCESS_DENIED,
        ErrorCode::Unauthenticated => close::UNAUTHENTICATED,
        _ => close::INTERNAL,
    }
}

/// Why the hub ended the session.
fn kicked(o: &Overflow) -> Stop {
    if o.going_away() {
        Stop::new(
            close::GOING_AWAY,
            "the node is shutting down; reconnect and resume",
        )
    } else {
        Stop::new(
            close::QUEUE_OVERFLOW,
            "outbound queue full; reconnect and resume",
        )
    }
}

fn protocol_stop(e: ProtocolError) -> Stop {
    match e {
        ProtocolError::Overflow => {
            Stop::new(close::TOO_BIG, "frame larger than ws.max_frame_bytes")
        }
        other => Stop::new(close::PROTOCOL, other.to_string()),
    }
}

async fn run(
    st: Arc<AppState>,
    id: SessionId,
    mut ws: actix_ws::Session,
    mut stream: Stream,
    token: Option<String>,
) {
    let authed = match token {
        Some(t) => match authenticate_token(&st, &t).await {
            Ok((u, s)) => Ok((u, s, None)),
            Err(e) => {
                send_error(&mut ws, None, e.code, &e.message).await;
                Err(Stop::new(close_for(e.code), e.message))
            }
        },
        None => auth_frame(&st, &mut ws, &mut stream).await,
    };
    let (user, subscriber, auth_id) = match authed {
        Ok(a) => a,
        Err(Stop(code, reason)) => {
            tracing::info!(code, %reason, "session refused");
            close_with(ws, code, &reason).await;
            return;
        }
    };
    let (tx, rx) = mpsc::channel(st.ws.queue_capacity);
    let overflow = Arc::new(Overflow::default());
    let handle = SessionHandle {
        id,
        user: user.id,
        tx,
        overflow: Arc::clone(&overflow),
    };
    let limits = parley_bus::HubLimits {
        max_sessions: st.ws.max_connections,
        max_sessions_per_user: st.ws.max_connections_per_user,
    };
    let first_here = match st.bus.hub().register(handle, limits) {
        Registered::First => true,
        Registered::More => false,
        refused => {
            let which = if refused == Registered::NodeFull {
                "this node holds ws.max_connections sessions"
            } else {
                "this user holds ws.max_connections_per_user sessions on this node"
            };
            send_error(&mut ws, auth_id, ErrorCode::RateLimited, which).await;
            close_with(ws, close::TOO_MANY_CONNECTIONS, which).await;
            return;
        }
    };
    tracing::info!(user = %user.id, "session open");
    let first = first_here && st.bus.session_opened(user.id).await;
    let mut s = Session {
        st: Arc::clone(&st),
        ws,
        user: user.clone(),
        subscriber,
        id,
        overflow,
        last: HashMap::new(),
        typing_at: HashMap::new(),
    };
    let stop = s.serve(stream, rx, auth_id, first).await;
    let last_here = st.bus.hub().unregister(user.id, id);
    if last_here && st.bus.session_closed(user.id).await {
        s.announce_presence(false).await;
    }
    let Stop(code, reason) = stop;
    tracing::info!(code, %reason, "session closed");
    close_with(s.ws, code, &reason).await;
}

struct Session {
    st: Arc<AppState>,
    ws: actix_ws::Session,
    user: User,
    subscriber: SubscriberId,
    id: SessionId,
    overflow: Arc<Overflow>,
    /// Highest `seq` delivered per conversation: live events at or below it
    /// are duplicates, above it + 1 reveal a gap filled from PostgreSQL.
    last: HashMap<ConversationId, i64>,
    typing_at: HashMap<ConversationId, Instant>,
}

impl Session {
    async fn serve(
        &mut self,
        mut stream: Stream,
        mut rx: mpsc::Receiver<Arc<Envelope>>,
        auth_id: Option<String>,
        first: bool,
    ) -> Stop {
        match self.st.store.member_seqs(self.user.id).await {
            Ok(seqs) => self.last.extend(seqs),
            Err(e) => return Stop::new(close::INTERNAL, format!("database: {e}")),
        }
        let ready = Ready {
            session_id: self.id,
            user_id: self.user.id,
            heartbeat_secs: self.st.ws.heartbeat_secs,
            max_frame_bytes: self.st.ws.max_frame_bytes,
            max_text_bytes: self.st.limits.max_text_bytes,
        };
        if let Some(id) = auth_id {
            let result = serde_json::to_value(&ready).unwrap_or(Value::Null);
            if let Err(s) = self
                .send(frame_text(&ServerFrame::Result { id, result }))
                .await
            {
                return s;
            }
        }
        if let Err(s) = self.send(frame_text(&ServerFrame::Ready(ready))).await {
            return s;
        }
        if first {
            self.announce_presence(true).await;
        }
        let hb = Duration::from_secs(self.st.ws.heartbeat_secs);
        let timeout = Duration::from_secs(self.st.ws.heartbeat_timeout_secs);
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + hb, hb);
        let mut last_seen = Instant::now();
        let overflow = Arc::clone(&self.overflow);
        loop {
            let step = tokio::select! {
                biased;
                _ = overflow.wait() => Err(kicked(&overflow)),
                msg = stream.next() => {
                    last_seen = Instant::now();
                    self.on_message(msg).await
                }
                env = rx.recv() => match env {
                    Some(env) => self.deliver(env).await,
                    None => Err(Stop::new(close::INTERNAL, "queue closed")),
                },
                _ = ticker.tick() => {
                    if last_seen.elapsed() > timeout {
                        Err(Stop::new(close::IDLE, "no pong within ws.heartbeat_timeout_secs"))
                    } else {
                        self.guard(|ws| Box::pin(async move { ws.ping(b"").await })).await
                    }
                }
            };
            if let Err(stop) = step {
                return stop;
            }
        }
    }

    async fn on_message(
        &mut self,
        msg: Option<Result<AggregatedMessage, ProtocolError>>,
    ) -> Result<(), Stop> {
        match msg {
            None => Err(Stop::new(close::NORMAL, "connection closed")),
            Some(Ok(AggregatedMessage::Close(_))) => {
                Err(Stop::new(close::NORMAL, "closed by the client"))
            }
            Some(Ok(AggregatedMessage::Ping(b))) => {
                self.guard(|ws| Box::pin(async move { ws.pong(&b).await }))
                    .await
            }
            Some(Ok(AggregatedMessage::Pong(_))) => Ok(()),
            Some(Ok(AggregatedMessage::Binary(_))) => {
                self.send_error(
                    None,
                    ErrorCode::Invalid,
                    "binary frames are not supported; send JSON text",
                )
                .await
            }
            Some(Ok(AggregatedMessage::Text(text))) => self.on_text(&text).await,
            Some(Err(e)) => Err(protocol_stop(e)),
        }
    }

    async fn on_text(&mut self, text: &str) -> Result<(), Stop> {
        let value: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                return self
                    .send_error(None, ErrorCode::InvalidJson, &format!("invalid JSON: {e}"))
                    .await
            }
        };
        let Some(id) = value.get("id").and_then(Value::as_str).map(str::to_owned) else {
            return self
                .send_error(None, ErrorCode::InvalidJson, "id: a string is required")
                .await;
        };
        if id.len() > 128 {
            return self
                .send_error(None, ErrorCode::TooLarge, "id: longer than 128 bytes")
                .await;
        }
        let ty = value
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let request: Request = match serde_json::from_value(value) {
            Ok(r) => r,
            Err(e) if KNOWN_TYPES.contains(&ty.as_str()) => {
                return self
                    .send_error(Some(id), ErrorCode::InvalidJson, &format!("{ty}: {e}"))
                    .await
            }
            Err(_) => {
                return self
                    .send_error(
                        Some(id),
                        ErrorCode::UnknownFrame,
                        &format!("unknown frame type `{ty}`"),
                    )
                    .await
            }
        };
        if matches!(request, Request::Ping) {
            return self.send(frame_text(&ServerFrame::Pong { id })).await;
        }
        match self.dispatch(request).await {
            Ok(result) => {
                self.send(frame_text(&ServerFrame::Result { id, result }))
                    .await
            }
            Err(ReqError::Api(e)) => self.send_error(Some(id), e.code, &e.message).await,
            Err(ReqError::Stop(s)) => Err(s),
        }
    }

    async fn send_error(
        &mut self,
        id: Option<String>,
        code: ErrorCode,
        message: &str,
    ) -> Result<(), Stop> {
        let frame = frame_text(&ServerFrame::Error {
            id,
            code,
            message: message.to_owned(),
        });
        self.send(frame).await
    }

    /// Sends a frame; a peer that does not read makes this wait, so it also
    /// gives up on overflow or after the heartbeat timeout.
    async fn send(&mut self, text: ByteString) -> Result<(), Stop> {
        self.guard(move |ws| Box::pin(async move { ws.text(text).await }))
            .await
    }

    async fn guard<F>(&mut self, op: F) -> Result<(), Stop>
    where
        F: for<'a> FnOnce(
            &'a mut actix_ws::Session,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<(), actix_ws::Closed>> + 'a>,
        >,
    {
        let overflow = Arc::clone(&self.overflow);
        let limit = Duration::from_secs(self.st.ws.heartbeat_timeout_secs);
        tokio::select! {
            r = op(&mut self.ws) => r.map_err(|_| Stop::new(close::NORMAL, "connection closed")),
            _ = overflow.wait() => Err(kicked(&overflow)),
            _ = tokio::time::sleep(limit) => Err(Stop::new(close::IDLE, "the client does not read")),
        }
    }

    /// Delivers a live envelope in `seq` order, dropping duplicates and
    /// filling gaps from PostgreSQL.
    async fn deliver(&mut self, env: Arc<Envelope>) -> Result<(), Stop> {
        if env.resync {
            return self.resync().await;
        }
        if let Some((conv, seq)) = env.position {
            match self.last.get(&conv).copied() {
                Some(last) if seq <= last => return Ok(()),
                Some(last) if seq > last + 1 => {
                    self.replay(conv, last, Some(seq)).await.map(|_| ())?
                }
                _ => {}
            }
            self.last.insert(conv, seq);
            if !env.visible_to(self.user.id) {
                return Ok(());
            }
        }
        self.send(env.frame.clone()).await
    }

    /// Sends the stored events of `conv` after `after` (and before `until`)
    /// that this user may see. Returns how many, whether the limit cut them
    /// short, and the highest `seq` sent (`after` if none).
    async fn replay(
        &mut self,
        conv: ConversationId,
        after: i64,
        until: Option<i64>,
    ) -> Result<(u64, bool, i64), Stop> {
        let limit = self.st.ws.resume_max_events;
        let (events, more) = self
            .st
            .store
            .events_after(conv, self.user.id, after, until, limit)
            .await
            .map_err(|e| Stop::new(close::INTERNAL, format!("database: {e}")))?;
        let mut n = 0;
        let mut top = after;
        for (seq, mut body) in events {
            if let Value::Object(map) = &mut body {
                map.insert("type".into(), Value::String("event".into()));
            }
            self.send(ByteString::from(body.to_string())).await?;
            top = seq;
            n += 1;
        }
        Ok((n, more, top))
    }

    /// The bus may have lost events: replay whatever PostgreSQL has beyond
    /// what this session delivered.
    async fn resync(&mut self) -> Result<(), Stop> {
        let seqs = self
            .st
            .store
            .member_seqs(self.user.id)
            .await
            .map_err(|e| Stop::new(close::INTERNAL, format!("database: {e}")))?;
        for (conv, db_seq) in seqs {
            match self.last.get(&conv).copied() {
                Some(last) if db_seq > last => {
                    let (_, _, top) = self.replay(conv, last, Some(db_seq + 1)).await?;
                    self.last.insert(conv, top.max(db_seq));
                }
                Some(_) => {}
                None => {
                    self.last.insert(conv, db_seq);
                }
            }
        }
        Ok(())
    }

    async fn announce_presence(&self, online: bool) {
        // A session of the same user may have opened (or closed) meanwhile.
        let here = self.st.bus.hub().sessions_of(self.user.id);
        if (online && here == 0) || (!online && here > 0) {
            return;
        }
        match self.st.store.contacts(self.user.id).await {
            Ok(contacts) => chat::push(
                &self.st,
                contacts,
                Event::Presence {
                    user_id: self.user.id,
                    online,
                },
            ),
            Err(e) => tracing::warn!(error = %e, "presence not announced"),
        }
    }
}

/// A request either fails with an error frame or ends the session.
enum ReqError {
    Api(ApiError),
    Stop(Stop),
}

impl From<ApiError> for ReqError {
    fn from(e: ApiError) -> Self {
        ReqError::Api(e)
    }
}

impl From<parley_store::StoreError> for ReqError {
    fn from(e: parley_store::StoreError) -> Self {
        ReqError::Api(e.into())
    }
}

impl From<Stop> for ReqError {
    fn from(s: Stop) -> Self {
        ReqError::Stop(s)
    }
}
