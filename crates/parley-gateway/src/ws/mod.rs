//! WebSocket sessions: one task per connection that selects over the
//! socket, its bounded queue from the hub, its overflow signal and the
//! heartbeat. See docs/protocol.md.

mod requests;
pub mod socket;

use crate::auth::{query_value, token_from_headers};
use crate::error::ApiError;
use crate::state::AppState;
use actix_codec::Framed;
use actix_http::h1;
use actix_http::ws::{CloseCode, CloseReason, ProtocolError};
use actix_web::web::{self, BytesMut};
use bytestring::ByteString;
use futures_util::StreamExt;
use parley_bus::{Envelope, HubLimits, Overflow, Registered, Revoke, SessionHandle, Tenant};
use parley_core::protocol::{close, ClientFrame, Event, Ready, Request, ServerFrame};
use parley_core::ErrorBody;
use parley_core::{ConversationId, ErrorCode, SessionId, TokenId, UserActor};
use parley_service::ratelimit::Budget;
use parley_service::TokenSession;
use parley_service::{frame_text, Error};
use serde_json::Value;
use socket::AggregatedMessage;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tracing::Instrument;

/// `GET /ws` without an upgrade: upgrades never reach actix-web's routes
/// (see [`upgrade`]).
pub async fn route() -> ApiError {
    ApiError::new(
        ErrorCode::Invalid,
        "expected a WebSocket upgrade: no Upgrade: websocket header",
    )
}

/// Every upgrade request the HTTP server reads: `GET /ws` becomes a
/// session served over the connection itself ([`socket`]), anything else
/// gets the error it would have had.
pub async fn upgrade<T: socket::Io>(
    st: web::Data<AppState>,
    req: actix_http::Request,
    framed: Framed<T, h1::Codec>,
) {
    let head = req.head();
    let parts = framed.into_parts();
    let mut io = parts.io;
    let refused = if head.uri.path() != st.ws.path {
        Some(ApiError::new(ErrorCode::NotFound, "no such route"))
    } else if st.draining.load(std::sync::atomic::Ordering::Relaxed) {
        Some(ApiError::new(
            ErrorCode::Unavailable,
            "the node is shutting down; connect to another",
        ))
    } else if st.session_tasks.running() >= st.ws.max_connections.saturating_mul(2) {
        // Sessions are capped when they authenticate; this bounds the
        // connections still authenticating (`ws.auth_timeout_secs` each).
        Some(ApiError::new(
            ErrorCode::Unavailable,
            "this node holds twice ws.max_connections connections; connect to another",
        ))
    } else if head.method != actix_http::Method::GET {
        Some(ApiError::new(
            ErrorCode::MethodNotAllowed,
            "this route does not take that method",
        ))
    } else {
        actix_http::ws::verify_handshake(head).err().map(|e| {
            ApiError::new(
                ErrorCode::Invalid,
                format!("expected a WebSocket upgrade: {e}"),
            )
        })
    };
    let key = head
        .headers
        .get(actix_http::header::SEC_WEBSOCKET_KEY)
        .map(|k| actix_http::ws::hash_key(k.as_bytes()));
    let (Some(key), None) = (key, &refused) else {
        let e =
            refused.unwrap_or_else(|| ApiError::new(ErrorCode::Invalid, "no Sec-WebSocket-Key"));
        let _ = io.write_all(&http_error(&e)).await;
        let _ = io.shutdown().await;
        return;
    };
    // A malformed Authorization header falls back to the auth frame. A
    // browser (no headers on a WebSocket) brings a single-use ticket.
    let credential = match (
        token_from_headers(&head.headers).ok().flatten(),
        head.uri.query().and_then(|q| query_value(q, "ticket")),
    ) {
        (Some(t), _) => Some(Credential::Token(t)),
        (None, Some(t)) => Some(Credential::Ticket(t.to_owned())),
        (None, None) => None,
    };
    let mut answer = Vec::with_capacity(160);
    answer.extend_from_slice(
        b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: ",
    );
    answer.extend_from_slice(&key);
    answer.extend_from_slice(b"\r\n\r\n");
    if io.write_all(&answer).await.is_err() {
        return;
    }
    // What the client sent right behind its request (often its first
    // frame) is in actix-http's read buffer; keep those bytes, not the
    // buffer.
    let early = BytesMut::from(&parts.read_buf[..]);
    drop(parts.read_buf);
    drop(parts.write_buf);
    let (session, stream) = socket::split(Box::new(io), early, st.ws.max_frame_bytes);
    let id = SessionId::new_random();
    let span = tracing::info_span!("session", id = %id);
    actix_web::rt::spawn(run(st.into_inner(), id, session, stream, credential).instrument(span));
}

/// An HTTP error answer written on a connection actix-web no longer
/// serves: the same status and body as [`ApiError`]'s.
fn http_error(e: &ApiError) -> Vec<u8> {
    let status = actix_web::http::StatusCode::from_u16(e.code.http_status())
        .unwrap_or(actix_web::http::StatusCode::BAD_REQUEST);
    let body = serde_json::to_vec(&ErrorBody::new(e.code, e.message.clone())).unwrap_or_default();
    let mut out = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    out
}

/// What a session was opened with, when not with an `auth` frame.
enum Credential {
    Token(String),
    Ticket(String),
}

/// Why a session ends: close code and reason.
struct Stop(u16, String);

impl Stop {
    fn new(code: u16, reason: impl Into<String>) -> Self {
        Self(code, reason.into())
    }
}

type Stream = socket::MessageStream;

async fn close_with(st: &AppState, ws: socket::Session, code: u16, reason: &str) {
    let reason = CloseReason {
        code: CloseCode::from(code),
        description: Some(reason.to_owned()),
    };
    // A peer that reads nothing must not hold the task.
    let limit = Duration::from_secs(st.ws.close_timeout_secs);
    let _ = tokio::time::timeout(limit, ws.close(Some(reason))).await;
}

/// An `error` frame.
fn error_frame(id: Option<String>, code: ErrorCode, message: &str) -> ByteString {
    frame_text(&ServerFrame::Error {
        id,
        code,
        message: message.to_owned(),
    })
}

async fn send_error(
    st: &AppState,
    ws: &mut socket::Session,
    id: Option<String>,
    code: ErrorCode,
    message: &str,
) {
    let frame = error_frame(id, code, message);
    let limit = Duration::from_secs(st.ws.close_timeout_secs);
    let _ = tokio::time::timeout(limit, ws.text(frame)).await;
}

/// Waits for the first frame, which must be `auth`.
async fn auth_frame(
    st: &AppState,
    ws: &mut socket::Session,
    stream: &mut Stream,
) -> Result<(TokenSession, Option<String>), Stop> {
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
                    st,
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
                st,
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
        return match st.svc.authenticate_session(&token).await {
            Ok(t) => Ok((t, Some(frame.id))),
            Err(e) => {
                send_error(st, ws, Some(frame.id), e.code, &e.message).await;
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
    mut ws: socket::Session,
    mut stream: Stream,
    credential: Option<Credential>,
) {
    let _task = st.session_tasks.enter();
    let checked = match credential {
        Some(Credential::Token(t)) => Some(Box::pin(st.svc.authenticate_session(&t)).await),
        Some(Credential::Ticket(t)) => Some(Box::pin(st.svc.authenticate_ticket(&t)).await),
        None => None,
    };
    let authed = match checked {
        Some(Ok(t)) => Ok((t, None)),
        Some(Err(e)) => {
            Box::pin(send_error(&st, &mut ws, None, e.code, &e.message)).await;
            Err(Stop::new(close_for(e.code), e.message))
        }
        None => Box::pin(auth_frame(&st, &mut ws, &mut stream)).await,
    };
    let (
        TokenSession {
            actor,
            token_id,
            expires_at,
        },
        auth_id,
    ) = match authed {
        Ok(a) => a,
        Err(Stop(code, reason)) => {
            tracing::info!(code, %reason, "session refused");
            Box::pin(close_with(&st, ws, code, &reason)).await;
            return;
        }
    };
    let user = actor.id();
    let (tx, rx) = mpsc::channel(st.ws.queue_capacity);
    let overflow = Arc::new(Overflow::default());
    let handle = SessionHandle {
        id,
        user,
        tenant: Tenant {
            subscriber: actor.subscriber_id,
            infobase: actor.user.infobase_id,
        },
        tx,
        overflow: Arc::clone(&overflow),
    };
    let limits = HubLimits {
        max_sessions: st.ws.max_connections,
        max_sessions_per_subscriber: st.ws.max_connections_per_subscriber,
        max_sessions_per_infobase: st.ws.max_connections_per_infobase,
        max_sessions_per_user: st.ws.max_connections_per_user,
    };
    let first_here = match st.svc.register_session(handle, limits) {
        Registered::First => true,
        Registered::More => false,
        refused => {
            let which = match refused {
                Registered::NodeFull => "this node holds ws.max_connections sessions",
                Registered::SubscriberFull => {
                    "your subscriber holds ws.max_connections_per_subscriber sessions on this node"
                }
                Registered::InfobaseFull => {
                    "your infobase holds ws.max_connections_per_infobase sessions on this node"
                }
                _ => "this user holds ws.max_connections_per_user sessions on this node",
            };
            Box::pin(send_error(
                &st,
                &mut ws,
                auth_id,
                ErrorCode::RateLimited,
                which,
            ))
            .await;
            Box::pin(close_with(&st, ws, close::TOO_MANY_CONNECTIONS, which)).await;
            return;
        }
    };
    tracing::info!(%user, "session open");
    let first = first_here && Box::pin(st.svc.session_opened(user)).await;
    let mut s = Session {
        st: Arc::clone(&st),
        ws,
        me: Arc::new(actor),
        id,
        overflow,
        last: HashMap::new(),
        held: HashMap::new(),
        typing_at: HashMap::new(),
        resync_due: None,
        token_id,
        frames: Budget::new(st.ws.frames_per_sec, st.ws.frames_burst),
        refused_in_a_row: 0,
        in_calls: false,
        batching: false,
        token_expires: Instant::now()
            + (expires_at - chrono::Utc::now())
                .to_std()
                .unwrap_or(Duration::ZERO),
    };
    let stop = s.serve(stream, rx, auth_id, first).await;
    // Boxed, as every await of a session's life but the serving loop: the
    // task's future is as large as its largest await, for its whole life.
    if s.in_calls {
        Box::pin(st.svc.call_session_closed(user, id)).await;
    }
    if Box::pin(st.svc.session_closed(user, id)).await {
        Box::pin(st.svc.announce_presence(user, false)).await;
    }
    let Stop(code, reason) = stop;
    tracing::info!(code, %reason, "session closed");
    Box::pin(close_with(&st, s.ws, code, &reason)).await;
}

struct Session {
    st: Arc<AppState>,
    ws: socket::Session,
    /// Shared so a request handler can hold it while it borrows the session.
    me: Arc<UserActor>,
    id: SessionId,
    overflow: Arc<Overflow>,
    /// Highest `seq` delivered per conversation: live events at or below it
    /// are duplicates, above it + 1 reveal a gap filled from PostgreSQL.
    last: HashMap<ConversationId, i64>,
    /// Live events past a gap, waiting `ws.gap_wait_ms` for the missing
    /// ones (empty, and so unallocated, almost always).
    held: HashMap<ConversationId, Held>,
    typing_at: HashMap<ConversationId, Instant>,
    /// A resync PostgreSQL could not answer, to be tried again then.
    resync_due: Option<Instant>,
    /// The token the session was opened with: it ends with it (expiry,
    /// revocation).
    token_id: TokenId,
    token_expires: Instant,
    /// Request frames this session may still send (`ws.frames_per_sec`).
    frames: Budget,
    refused_in_a_row: u32,
    /// This session asked to start, accept or join a call: when it closes,
    /// its participations are marked dropped (one UPDATE, spared to the
    /// sessions — nearly all — that never took part in a call).
    in_calls: bool,
    /// Frames are queued, not written, while a backlog is delivered.
    batching: bool,
}

/// Envelopes delivered per batch of writes at most.
const MAX_BATCH: usize = 64;

/// Events of one conversation held behind a gap.
struct Held {
    /// When the gap was seen.
    since: Instant,
    events: BTreeMap<i64, Arc<Envelope>>,
}

impl Session {
    async fn serve(
        &mut self,
        mut stream: Stream,
        mut rx: mpsc::Receiver<Arc<Envelope>>,
        auth_id: Option<String>,
        first: bool,
    ) -> Stop {
        let start = match Box::pin(self.st.svc.session_start(&self.me)).await {
            Ok(start) => start,
            Err(e) => return Stop::new(close::INTERNAL, e.message),
        };
        self.last.extend(
            start
                .seqs
                .into_iter()
                .map(|s| (s.conversation_id, s.last_seq)),
        );
        let ready = Ready {
            session_id: self.id,
            user_id: self.me.id(),
            heartbeat_secs: self.st.ws.heartbeat_secs,
            max_frame_bytes: self.st.ws.max_frame_bytes,
            max_text_bytes: self.st.svc.limits().max_text_bytes,
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
            Box::pin(self.st.svc.announce_presence(self.me.id(), true)).await;
        }
        if let Err(s) = Box::pin(self.send_kept(start.kept, start.kept_upto)).await {
            return s;
        }
        let hb = Duration::from_secs(self.st.ws.heartbeat_secs);
        let timeout = Duration::from_secs(self.st.ws.heartbeat_timeout_secs);
        // One timer for the heartbeat and the token's expiry, whichever
        // comes first: a `sleep_until(token_expires)` made in the loop was
        // registered with the runtime's timer and removed again at every
        // turn, i.e. for every frame read and every delivery.
        let mut next_beat = Instant::now() + hb;
        let clock = tokio::time::sleep_until(next_beat.min(self.token_expires).into());
        tokio::pin!(clock);
        let mut last_seen = Instant::now();
        let overflow = Arc::clone(&self.overflow);
        loop {
            let step = tokio::select! {
                biased;
                _ = overflow.wait() => Err(kicked(&overflow)),
                // Each branch's work is boxed: an idle session's future
                // then holds pointers, not the state of its largest
                // request, all its life (a debug build's session task went
                // from 7 256 to 3 280 bytes); a box lives only while its
                // work runs.
                msg = stream.next() => {
                    last_seen = Instant::now();
                    Box::pin(self.on_message_answered(msg, &mut rx)).await
                }
                env = rx.recv() => match env {
                    Some(env) => Box::pin(self.deliver_queued(env, &mut rx)).await,
                    None => Err(Stop::new(close::INTERNAL, "queue closed")),
                },
                _ = tokio::time::sleep_until(self.gap_deadline().into()), if !self.held.is_empty() => {
                    Box::pin(self.fill_gaps()).await
                }
                _ = tokio::time::sleep_until(self.resync_due.unwrap_or_else(Instant::now).into()), if self.resync_due.is_some() => {
                    Box::pin(self.resync_or_later()).await
                }
                () = &mut clock => {
                    let now = Instant::now();
                    if now >= self.token_expires {
                        Err(Stop::new(close::ACCESS_DENIED, "the session token expired"))
                    } else if last_seen.elapsed() > timeout {
                        Err(Stop::new(close::IDLE, "no pong within ws.heartbeat_timeout_secs"))
                    } else {
                        next_beat = now + hb;
                        clock.as_mut().reset(next_beat.min(self.token_expires).into());
                        self.guard(|ws| Box::pin(async move { ws.ping(b"").await })).await
                    }
                }
            };
            if let Err(stop) = step {
                return stop;
            }
        }
    }

    /// What the user's infobase pushed while it had no session (read with
    /// the session's start); forgotten once written here (a session that
    /// dies first leaves them for the next one).
    async fn send_kept(&mut self, kept: Vec<Event>, upto: i64) -> Result<(), Stop> {
        if kept.is_empty() {
            return Ok(());
        }
        for ev in kept {
            self.send(frame_text(&ServerFrame::Event(ev))).await?;
        }
        let user = self.me.id();
        if let Err(e) = self.st.svc.sent_stored_notifications(user, upto).await {
            tracing::warn!(error = %e.message, "kept notifications not forgotten");
        }
        Ok(())
    }

    /// Handles a client frame, and writes a request's answer together with
    /// what reached the session's queue while the request ran: for a send,
    /// the session's own copy of the message, fanned out just before the
    /// answer came back — one write instead of two, the answer first.
    async fn on_message_answered(
        &mut self,
        msg: Option<Result<AggregatedMessage, ProtocolError>>,
        rx: &mut mpsc::Receiver<Arc<Envelope>>,
    ) -> Result<(), Stop> {
        let Some(answer) = self.on_message(msg).await? else {
            return Ok(());
        };
        if rx.is_empty() {
            return self.send(answer).await;
        }
        self.batching = true;
        let step = self.send(answer).await;
        self.write_with_queued(step, rx).await
    }

    /// Handles a client frame; a request's answer comes back to be written.
    async fn on_message(
        &mut self,
        msg: Option<Result<AggregatedMessage, ProtocolError>>,
    ) -> Result<Option<ByteString>, Stop> {
        match msg {
            None => Err(Stop::new(close::NORMAL, "connection closed")),
            Some(Ok(AggregatedMessage::Close(_))) => {
                Err(Stop::new(close::NORMAL, "closed by the client"))
            }
            Some(Ok(AggregatedMessage::Ping(b))) => self
                .guard(|ws| Box::pin(async move { ws.pong(&b).await }))
                .await
                .map(|()| None),
            Some(Ok(AggregatedMessage::Pong(_))) => Ok(None),
            Some(Ok(AggregatedMessage::Binary(_))) => self
                .send_error(
                    None,
                    ErrorCode::Invalid,
                    "binary frames are not supported; send JSON text",
                )
                .await
                .map(|()| None),
            Some(Ok(AggregatedMessage::Text(text))) => self.on_text(&text).await,
            Some(Err(e)) => Err(protocol_stop(e)),
        }
    }

    /// A request: its answer (result or error) comes back to be written;
    /// a refused frame is answered here.
    async fn on_text(&mut self, text: &str) -> Result<Option<ByteString>, Stop> {
        // The common case parses once; only a refused frame is parsed again
        // to say precisely what is wrong with it.
        let (id, request) = match serde_json::from_str::<ClientFrame>(text) {
            Ok(f) => (f.id, f.request),
            Err(e) => return self.refuse_frame(text, e).await.map(|()| None),
        };
        if id.len() > self.st.ws.max_request_id_bytes {
            return self.refuse_long_id().await.map(|()| None);
        }
        if !self.frames.take() {
            self.refused_in_a_row += 1;
            metrics::counter!("parley_ws_frames_refused_total").increment(1);
            if self.refused_in_a_row >= self.st.ws.frames_burst {
                return Err(Stop::new(
                    close::TOO_MANY_CONNECTIONS,
                    "too many frames: ws.frames_per_sec exceeded persistently",
                ));
            }
            let msg = format!(
                "too many frames: at most {} a second (ws.frames_per_sec)",
                self.st.ws.frames_per_sec
            );
            return Ok(Some(error_frame(Some(id), ErrorCode::RateLimited, &msg)));
        }
        self.refused_in_a_row = 0;
        if matches!(request, Request::Ping) {
            return Ok(Some(frame_text(&ServerFrame::Pong { id })));
        }
        let started = Instant::now();
        let answer = self.dispatch(request).await;
        metrics::histogram!("parley_ws_request_seconds").record(started.elapsed().as_secs_f64());
        match answer {
            Ok(result) => Ok(Some(frame_text(&ServerFrame::Result { id, result }))),
            Err(ReqError::Api(e)) => Ok(Some(error_frame(Some(id), e.code, &e.message))),
            Err(ReqError::Stop(s)) => Err(s),
        }
    }

    /// An `id` too long to echo: the error goes without one.
    async fn refuse_long_id(&mut self) -> Result<(), Stop> {
        let max_id = self.st.ws.max_request_id_bytes;
        let msg = format!("id: longer than {max_id} bytes (ws.max_request_id_bytes)");
        self.send_error(None, ErrorCode::TooLarge, &msg).await
    }

    /// Answers a frame that is not a valid request: bad JSON, no `id`, an
    /// unknown `type`, or a known type with a bad shape.
    async fn refuse_frame(&mut self, text: &str, err: serde_json::Error) -> Result<(), Stop> {
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
        if id.len() > self.st.ws.max_request_id_bytes {
            return self.refuse_long_id().await;
        }
        let ty = value.get("type").and_then(Value::as_str).unwrap_or("");
        if Request::TYPES.contains(&ty) {
            let msg = format!("{ty}: {err}");
            self.send_error(Some(id), ErrorCode::InvalidJson, &msg)
                .await
        } else {
            let msg = format!("unknown frame type `{ty}`");
            self.send_error(Some(id), ErrorCode::UnknownFrame, &msg)
                .await
        }
    }

    async fn send_error(
        &mut self,
        id: Option<String>,
        code: ErrorCode,
        message: &str,
    ) -> Result<(), Stop> {
        self.send(error_frame(id, code, message)).await
    }

    /// Sends a frame; a peer that does not read makes this wait, so it also
    /// gives up on overflow or after the heartbeat timeout.
    async fn send(&mut self, text: ByteString) -> Result<(), Stop> {
        if self.batching {
            self.ws.queue(text);
            return Ok(());
        }
        self.guard(move |ws| Box::pin(async move { ws.text(text).await }))
            .await
    }

    async fn guard<F>(&mut self, op: F) -> Result<(), Stop>
    where
        F: for<'a> FnOnce(
            &'a mut socket::Session,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<(), socket::Closed>> + 'a>,
        >,
    {
        let overflow = Arc::clone(&self.overflow);
        let limit = Duration::from_secs(self.st.ws.heartbeat_timeout_secs);
        let mut write = op(&mut self.ws);
        // Usually the frame goes straight into the connection's queue: no
        // timer and no overflow watch for that (one of each per delivery
        // cost more than the write itself at a few thousand frames a second).
        if let Some(r) = futures_util::FutureExt::now_or_never(&mut write) {
            return r.map_err(|_| Stop::new(close::NORMAL, "connection closed"));
        }
        tokio::select! {
            r = write => r.map_err(|_| Stop::new(close::NORMAL, "connection closed")),
            _ = overflow.wait() => Err(kicked(&overflow)),
            _ = tokio::time::sleep(limit) => Err(Stop::new(close::IDLE, "the client does not read")),
        }
    }

    /// Delivers `env` and what else is waiting in the queue (at most
    /// [`MAX_BATCH`] envelopes), their frames written together: one system
    /// call for a backlog instead of one per frame.
    async fn deliver_queued(
        &mut self,
        env: Arc<Envelope>,
        rx: &mut mpsc::Receiver<Arc<Envelope>>,
    ) -> Result<(), Stop> {
        // No backlog (the usual case): written at once, without the queue's
        // allocations.
        if rx.is_empty() {
            return self.deliver(env).await;
        }
        self.batching = true;
        let step = self.deliver(env).await;
        self.write_with_queued(step, rx).await
    }

    /// With `batching` on and `step` the outcome of what was queued so far:
    /// adds what else waits in `rx` (up to [`MAX_BATCH`] frames in all) and
    /// writes everything at once.
    async fn write_with_queued(
        &mut self,
        mut step: Result<(), Stop>,
        rx: &mut mpsc::Receiver<Arc<Envelope>>,
    ) -> Result<(), Stop> {
        for _ in 1..MAX_BATCH {
            if step.is_err() {
                break;
            }
            match rx.try_recv() {
                Ok(env) => step = self.deliver(env).await,
                Err(_) => break,
            }
        }
        self.batching = false;
        // On a stop, the close frame writes what was queued before it.
        step?;
        self.guard(|ws| Box::pin(async move { ws.flush().await }))
            .await
    }

    /// Delivers a live envelope in `seq` order, dropping duplicates and
    /// holding what follows a gap until the gap fills or `ws.gap_wait_ms`
    /// passes (then the missing events are read from PostgreSQL).
    async fn deliver(&mut self, env: Arc<Envelope>) -> Result<(), Stop> {
        if env.resync {
            return self.resync_or_later().await;
        }
        match env.revoke {
            Some(Revoke::Users) => {
                return Err(Stop::new(
                    close::ACCESS_DENIED,
                    "access revoked: the user is locked or gone, or the infobase unregistered",
                ))
            }
            Some(Revoke::Token(t)) if t == self.token_id => {
                return Err(Stop::new(
                    close::ACCESS_DENIED,
                    "access revoked: the session token was revoked",
                ))
            }
            Some(Revoke::Token(_)) => return Ok(()),
            None => {}
        }
        let Some((conv, seq)) = env.position else {
            return self.send(env.frame.clone()).await;
        };
        match self.last.get(&conv).copied() {
            Some(last) if seq <= last => return Ok(()),
            Some(last) if seq > last + 1 => {
                if self.st.ws.gap_wait_ms > 0 {
                    self.held
                        .entry(conv)
                        .or_insert_with(|| Held {
                            since: Instant::now(),
                            events: BTreeMap::new(),
                        })
                        .events
                        .insert(seq, env);
                    return Ok(());
                }
                metrics::counter!("parley_gap_replays_total").increment(1);
                match self.fill(conv, seq).await {
                    Ok(()) => {}
                    Err(Missed::Stop(s)) => return Err(s),
                    Err(Missed::Later(_)) => {
                        // Held until PostgreSQL answers.
                        self.held
                            .entry(conv)
                            .or_insert_with(|| Held {
                                since: Instant::now() + RETRY_STORE,
                                events: BTreeMap::new(),
                            })
                            .events
                            .insert(seq, env);
                        return Ok(());
                    }
                }
            }
            _ => {}
        }
        self.deliver_next(conv, seq, &env).await?;
        self.release(conv).await
    }

    /// Delivers the event that follows the conversation's last one.
    async fn deliver_next(
        &mut self,
        conv: ConversationId,
        seq: i64,
        env: &Envelope,
    ) -> Result<(), Stop> {
        self.last.insert(conv, seq);
        if env.visible_to(self.me.id()) {
            self.send(env.frame.clone()).await?;
        }
        Ok(())
    }

    /// Delivers the held events of `conv` that now follow without a gap.
    async fn release(&mut self, conv: ConversationId) -> Result<(), Stop> {
        loop {
            let Some(held) = self.held.get_mut(&conv) else {
                return Ok(());
            };
            let last = self.last.get(&conv).copied().unwrap_or(0);
            let Some(entry) = held.events.first_entry() else {
                self.held.remove(&conv);
                return Ok(());
            };
            let seq = *entry.key();
            if seq > last + 1 {
                return Ok(());
            }
            let env = entry.remove();
            if seq == last + 1 {
                self.deliver_next(conv, seq, &env).await?;
            }
        }
    }

    /// When the oldest gap stops waiting.
    fn gap_deadline(&self) -> Instant {
        let wait = Duration::from_millis(self.st.ws.gap_wait_ms);
        self.held
            .values()
            .map(|h| h.since + wait)
            .min()
            .unwrap_or_else(|| Instant::now() + wait)
    }

    /// Reads from PostgreSQL the missing events of every gap that waited
    /// long enough, then delivers what was held behind it.
    async fn fill_gaps(&mut self) -> Result<(), Stop> {
        let wait = Duration::from_millis(self.st.ws.gap_wait_ms);
        let due: Vec<(ConversationId, i64)> = self
            .held
            .iter()
            .filter(|(_, h)| h.since + wait <= Instant::now())
            .filter_map(|(c, h)| h.events.keys().next().map(|s| (*c, *s)))
            .collect();
        for (conv, first_held) in due {
            let last = self.last.get(&conv).copied().unwrap_or(0);
            if first_held > last + 1 {
                metrics::counter!("parley_gap_replays_total").increment(1);
                match self.fill(conv, first_held).await {
                    Ok(()) => {}
                    Err(Missed::Stop(s)) => return Err(s),
                    Err(Missed::Later(e)) => {
                        tracing::warn!(error = %e.message, "gap fill postponed");
                        // Every gap waits; the store is down for all.
                        let later = Instant::now() + RETRY_STORE;
                        for h in self.held.values_mut() {
                            h.since = later;
                        }
                        return Ok(());
                    }
                }
            }
            self.release(conv).await?;
            if let Some(h) = self.held.get_mut(&conv) {
                // A later gap behind the first: it waits from now.
                h.since = Instant::now();
            }
        }
        Ok(())
    }

    /// Sends what `conv` misses between the session's last `seq` and
    /// `until` (exclusive) from PostgreSQL — one read for every session of
    /// this node missing the same range (`Service::missed_events`). When
    /// more is missing than one replay may send, the rest is reported with
    /// a `gap` event: the session never moves past a `seq` it neither
    /// delivered nor reported.
    async fn fill(&mut self, conv: ConversationId, until: i64) -> Result<(), Missed> {
        let last = self.last.get(&conv).copied().unwrap_or(0);
        let limit = self.st.ws.resume_max_events;
        let missed = self.st.svc.missed_events(conv, last, until, limit).await?;
        for env in &missed.envelopes {
            if let Some((_, seq)) = env.position {
                self.deliver_next(conv, seq, env).await?;
            }
        }
        if missed.more {
            metrics::counter!("parley_gaps_reported_total").increment(1);
            let gap = Event::Gap {
                conversation_id: conv,
                after_seq: missed.top,
                before_seq: until,
            };
            self.send(frame_text(&ServerFrame::Event(gap))).await?;
        }
        // Everything before `until` was sent, reported, or is not this
        // user's to see.
        self.last.insert(conv, until - 1);
        Ok(())
    }

    /// Sends the stored events of `conv` after `after` (and before `until`)
    /// that this user may see, at most `ws.resume_max_events`.
    async fn replay(
        &mut self,
        conv: ConversationId,
        after: i64,
        until: Option<i64>,
    ) -> Result<Replayed, Missed> {
        let limit = self.st.ws.resume_max_events;
        let page = self
            .st
            .svc
            .events_after(&self.me, conv, after, until, limit)
            .await?;
        let mut out = Replayed {
            sent: 0,
            more: page.more,
            top: after,
        };
        for ev in page.events {
            let mut body = ev.body;
            if let Value::Object(map) = &mut body {
                map.insert("type".into(), Value::String("event".into()));
            }
            self.send(ByteString::from(body.to_string())).await?;
            out.top = ev.seq;
            out.sent += 1;
        }
        Ok(out)
    }

    /// The bus may have lost events: replay whatever PostgreSQL has beyond
    /// what this session delivered.
    /// Resyncs now; when PostgreSQL does not answer, again later (the
    /// session stays open).
    async fn resync_or_later(&mut self) -> Result<(), Stop> {
        match self.resync().await {
            Ok(()) => {
                self.resync_due = None;
                Ok(())
            }
            Err(Missed::Later(e)) => {
                tracing::warn!(error = %e.message, "resync postponed");
                self.resync_due = Some(Instant::now() + RETRY_STORE);
                Ok(())
            }
            Err(Missed::Stop(s)) => Err(s),
        }
    }

    async fn resync(&mut self) -> Result<(), Missed> {
        metrics::counter!("parley_resyncs_total").increment(1);
        let seqs = self.st.svc.member_seqs(&self.me).await?;
        for s in seqs {
            let (conv, db_seq) = (s.conversation_id, s.last_seq);
            match self.last.get(&conv).copied() {
                Some(last) if db_seq > last => self.fill(conv, db_seq + 1).await?,
                Some(_) => {}
                None => {
                    self.last.insert(conv, db_seq);
                }
            }
        }
        // What was held behind a gap the replay filled goes out now.
        let held: Vec<ConversationId> = self.held.keys().copied().collect();
        for conv in held {
            self.release(conv).await?;
        }
        Ok(())
    }
}

/// Why missed events were not sent.
enum Missed {
    /// The session must end.
    Stop(Stop),
    /// PostgreSQL did not answer: the session stays open and asks again
    /// after [`RETRY_STORE`].
    Later(Error),
}

impl From<Stop> for Missed {
    fn from(s: Stop) -> Self {
        Missed::Stop(s)
    }
}

impl From<Error> for Missed {
    fn from(e: Error) -> Self {
        if e.code == ErrorCode::Unavailable {
            Missed::Later(e)
        } else {
            Missed::Stop(Stop::new(close::INTERNAL, e.message))
        }
    }
}

/// Pause before a session asks a PostgreSQL that did not answer again (for
/// a gap or a resync; sends are answered `unavailable` meanwhile).
const RETRY_STORE: Duration = Duration::from_secs(1);

/// What a replay sent.
struct Replayed {
    /// Events sent.
    sent: u64,
    /// The limit cut it short: more events follow `top`.
    more: bool,
    /// The highest `seq` sent (`after` when none).
    top: i64,
}

/// A request either fails with an error frame or ends the session.
enum ReqError {
    Api(Error),
    Stop(Stop),
}

impl From<Error> for ReqError {
    fn from(e: Error) -> Self {
        ReqError::Api(e)
    }
}

impl From<Stop> for ReqError {
    fn from(s: Stop) -> Self {
        ReqError::Stop(s)
    }
}
