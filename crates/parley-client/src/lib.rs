//! A client of Parley's WebSocket protocol (`docs/protocol.md`).
//!
//! [`Client::connect`] starts a task that owns the connection. Requests get
//! their `result` through [`Client::request`]; events arrive in order through
//! [`Client::next_event`], de-duplicated by `(conversation, seq)`. When the
//! connection drops (network, node restart, queue overflow) the task
//! reconnects with backoff and sends `resume` with the last `seq` it saw of
//! every conversation, so nothing is missed and nothing is shown twice.
//! When the server reports more missed than it replays (a `truncated`
//! resume, a `gap` event), the task reads those messages with `history` and
//! passes them on as `message.created`, in order, before what follows.

use futures_util::{SinkExt, StreamExt};
use parley_core::protocol::{
    ClientFrame, Event, Message, MessagePage, NewMessage, Ready, Request, Resumed, ServerFrame,
};
use parley_core::{ConversationId, ErrorCode};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message as WsMessage;

#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error frame.
    #[error("{code}: {message}")]
    Server { code: ErrorCode, message: String },
    /// The connection dropped before the answer came; retry (with the same
    /// idempotency key for sends).
    #[error("disconnected before the answer")]
    Disconnected,
    /// The client was closed, or the server refused the session for good
    /// (bad token: close code in the message).
    #[error("closed: {0}")]
    Closed(String),
    #[error("connect: {0}")]
    Connect(String),
    #[error("unexpected answer: {0}")]
    Decode(String),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

impl ClientError {
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Server { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// Connection state as seen by the application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    Connecting,
    /// Authenticated and resumed: live.
    Live,
    /// Dropped; reconnecting after a pause.
    Reconnecting,
    /// Stopped for good (closed, or the server refused the token).
    Closed(String),
}

enum Cmd {
    // Boxed: a request frame (a message with its fields) dwarfs the others.
    Request(
        Box<ClientFrame>,
        oneshot::Sender<Result<Value, ClientError>>,
    ),
    /// Drop the connection; reconnect only when asked.
    Disconnect(oneshot::Sender<()>),
    Reconnect,
    Close,
}

#[derive(Default)]
struct Shared {
    /// Highest `seq` seen per conversation.
    last: HashMap<ConversationId, i64>,
    /// Close codes received from the server, oldest first.
    closes: Vec<u16>,
    ready: Option<Ready>,
    /// Sessions established so far (1 + reconnects).
    connects: u64,
    /// Why the last attempt to connect failed.
    last_error: Option<ClientError>,
}

/// A handle on one user's connection; clone it freely.
#[derive(Clone)]
pub struct Client {
    cmd: mpsc::UnboundedSender<Cmd>,
    events: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Event>>>,
    shared: Arc<Mutex<Shared>>,
    state: watch::Receiver<State>,
    next_id: Arc<AtomicU64>,
}

/// How to reach the server.
#[derive(Clone, Debug)]
pub struct Options {
    /// `ws://host:port/ws`, or `wss://` (TLS, checked against the public
    /// roots and `extra_ca_pem`)
    pub url: String,
    pub token: String,
    /// Time one request may take.
    pub request_timeout: Duration,
    /// Longest pause between reconnect attempts.
    pub max_backoff: Duration,
    /// PEM certificates of more authorities to trust for `wss://` (a
    /// company's own CA), besides the public ones.
    pub extra_ca_pem: Option<Vec<u8>>,
}

impl Options {
    pub fn new(url: impl Into<String>, token: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            token: token.into(),
            request_timeout: Duration::from_secs(30),
            max_backoff: Duration::from_secs(5),
            extra_ca_pem: None,
        }
    }
}

/// The TLS client configuration for `wss://`: the public roots plus the
/// options' own authorities.
fn tls_config(extra_ca_pem: Option<&[u8]>) -> Result<Arc<rustls::ClientConfig>, ClientError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(pem) = extra_ca_pem {
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| ClientError::Connect(format!("extra CA: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| ClientError::Connect(format!("extra CA: {e}")))?;
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Connect(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

fn lock(m: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

impl Client {
    /// Connects, authenticates and waits until the session is live.
    pub async fn connect(opts: Options) -> Result<Client, ClientError> {
        // Once for every reconnect; a bad extra CA fails here, at once.
        let tls = if opts.url.starts_with("wss://") {
            Some(tls_config(opts.extra_ca_pem.as_deref())?)
        } else {
            None
        };
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        let (state_tx, state_rx) = watch::channel(State::Connecting);
        let shared = Arc::new(Mutex::new(Shared::default()));
        let task = Task {
            opts: opts.clone(),
            tls,
            cmd: cmd_rx,
            events: ev_tx,
            shared: Arc::clone(&shared),
            state: state_tx,
            pending: HashMap::new(),
        };
        tokio::spawn(task.run());
        let client = Client {
            cmd: cmd_tx,
            events: Arc::new(tokio::sync::Mutex::new(ev_rx)),
            shared,
            state: state_rx,
            next_id: Arc::new(AtomicU64::new(1)),
        };
        if let Err(e) = client.wait_live(opts.request_timeout).await {
            // Kept retrying until the time ran out: why it could not
            // connect (a refused certificate, a closed port) says more.
            let last = lock(&client.shared).last_error.take();
            return Err(match (e, last) {
                (ClientError::Timeout(_), Some(last)) => last,
                (e, _) => e,
            });
        }
        Ok(client)
    }

    /// Waits until the state is `Live`.
    pub async fn wait_live(&self, timeout: Duration) -> Result<(), ClientError> {
        let mut st = self.state.clone();
        let wait = async {
            loop {
                match &*st.borrow_and_update() {
                    State::Live => return Ok(()),
                    State::Closed(why) => return Err(ClientError::Closed(why.clone())),
                    _ => {}
                }
                if st.changed().await.is_err() {
                    return Err(ClientError::Closed("client task ended".into()));
                }
            }
        };
        tokio::time::timeout(timeout, wait)
            .await
            .map_err(|_| ClientError::Timeout(timeout))?
    }

    pub fn state(&self) -> State {
        self.state.borrow().clone()
    }

    /// The `ready` frame of the current session.
    pub fn ready(&self) -> Option<Ready> {
        lock(&self.shared).ready.clone()
    }

    /// Close codes the server sent, oldest first.
    pub fn close_codes(&self) -> Vec<u16> {
        lock(&self.shared).closes.clone()
    }

    /// Sessions established so far: 1 plus the reconnects.
    /// Why the last attempt to (re)connect failed, if one did.
    pub fn last_error(&self) -> Option<ClientError> {
        lock(&self.shared).last_error.clone()
    }

    pub fn connects(&self) -> u64 {
        lock(&self.shared).connects
    }

    /// Highest `seq` seen in a conversation.
    pub fn last_seq(&self, conversation: ConversationId) -> Option<i64> {
        lock(&self.shared).last.get(&conversation).copied()
    }

    /// Declares what the application already has (e.g. from its own storage)
    /// so the next resume starts there.
    pub fn track(&self, conversation: ConversationId, seq: i64) {
        let mut s = lock(&self.shared);
        let e = s.last.entry(conversation).or_insert(seq);
        *e = (*e).max(seq);
    }

    /// Sends a request and waits for its `result`.
    pub async fn request(&self, request: Request) -> Result<Value, ClientError> {
        let id = format!("c{}", self.next_id.fetch_add(1, Ordering::Relaxed));
        let (tx, rx) = oneshot::channel();
        self.cmd
            .send(Cmd::Request(Box::new(ClientFrame { id, request }), tx))
            .map_err(|_| ClientError::Closed("client task ended".into()))?;
        rx.await.map_err(|_| ClientError::Disconnected)?
    }

    /// Like [`Client::request`], decoding the result.
    pub async fn call<T: DeserializeOwned>(&self, request: Request) -> Result<T, ClientError> {
        let v = self.request(request).await?;
        serde_json::from_value(v).map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// Sends a message and waits for its acknowledgement across disconnects,
    /// node failures and `unavailable` answers, retrying with one
    /// idempotency key (the message's own, or a new one) so that it is
    /// stored once, until `give_up` has passed. Other refusals are returned
    /// at once.
    pub async fn send_reliably(
        &self,
        conversation: ConversationId,
        mut message: NewMessage,
        give_up: Duration,
    ) -> Result<Message, ClientError> {
        if message.idempotency_key.is_none() {
            message.idempotency_key = Some(uuid::Uuid::new_v4().simple().to_string());
        }
        let deadline = tokio::time::Instant::now() + give_up;
        loop {
            let r = self
                .call::<Message>(Request::Send {
                    conversation_id: conversation,
                    message: message.clone(),
                })
                .await;
            let retry = match &r {
                Ok(_) => false,
                Err(ClientError::Server { code, .. }) => {
                    matches!(code, ErrorCode::Unavailable | ErrorCode::RateLimited)
                }
                Err(ClientError::Disconnected | ClientError::Timeout(_)) => true,
                Err(ClientError::Closed(_)) => !matches!(self.state(), State::Closed(_)),
                Err(_) => false,
            };
            if !retry || tokio::time::Instant::now() >= deadline {
                return r;
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let _ = self.wait_live(left.min(Duration::from_secs(10))).await;
            tokio::time::sleep(Duration::from_millis(100).min(left)).await;
        }
    }

    /// The next event, or None after `timeout`.
    pub async fn next_event(&self, timeout: Duration) -> Option<Event> {
        let mut rx = self.events.lock().await;
        tokio::time::timeout(timeout, rx.recv())
            .await
            .ok()
            .flatten()
    }

    /// Events already received, without waiting.
    pub async fn drain_events(&self) -> Vec<Event> {
        let mut rx = self.events.lock().await;
        let mut out = Vec::new();
        while let Ok(e) = rx.try_recv() {
            out.push(e);
        }
        out
    }

    /// Drops the connection and stays offline until [`Client::reconnect`].
    pub async fn disconnect(&self) {
        let (tx, rx) = oneshot::channel();
        if self.cmd.send(Cmd::Disconnect(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    /// Reconnects (with resume) after [`Client::disconnect`] and waits until
    /// live.
    pub async fn reconnect(&self) -> Result<(), ClientError> {
        let _ = self.cmd.send(Cmd::Reconnect);
        // The state may still read Live from before; wait for the change.
        let mut st = self.state.clone();
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            while *st.borrow_and_update() == State::Live {
                if st.changed().await.is_err() {
                    break;
                }
            }
        })
        .await;
        self.wait_live(Duration::from_secs(30)).await
    }

    pub fn close(&self) {
        let _ = self.cmd.send(Cmd::Close);
    }
}

struct Task {
    opts: Options,
    /// For `wss://` URLs.
    tls: Option<Arc<rustls::ClientConfig>>,
    cmd: mpsc::UnboundedReceiver<Cmd>,
    events: mpsc::UnboundedSender<Event>,
    shared: Arc<Mutex<Shared>>,
    state: watch::Sender<State>,
    pending: HashMap<String, oneshot::Sender<Result<Value, ClientError>>>,
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// What ended one connection.
enum End {
    /// Reconnect after a pause.
    Dropped,
    /// Wait for `Reconnect`.
    Paused,
    /// Stop for good.
    Stop(String),
}

const RESUME_ID: &str = "resume";

/// Messages per `history` page when catching up (within the server's
/// default `limits.max_history_page`).
const CATCH_UP_PAGE: u32 = 100;

impl Task {
    async fn run(mut self) {
        let mut backoff = Duration::from_millis(50);
        let mut paused = false;
        loop {
            if paused {
                match self.cmd.recv().await {
                    Some(Cmd::Reconnect) => paused = false,
                    Some(Cmd::Close) | None => return self.finish("closed by the application"),
                    Some(Cmd::Disconnect(done)) => {
                        let _ = done.send(());
                        continue;
                    }
                    Some(Cmd::Request(_, reply)) => {
                        let _ = reply.send(Err(ClientError::Disconnected));
                        continue;
                    }
                }
            }
            let _ = self.state.send(State::Connecting);
            match self.connect().await {
                Ok(ws) => {
                    backoff = Duration::from_millis(50);
                    match self.serve(ws).await {
                        End::Dropped => {}
                        End::Paused => {
                            paused = true;
                            continue;
                        }
                        End::Stop(why) => return self.finish(&why),
                    }
                }
                Err(ClientError::Closed(why)) => return self.finish(&why),
                Err(e) => {
                    tracing::debug!(error = %e, "connect failed");
                    lock(&self.shared).last_error = Some(e);
                }
            }
            self.fail_pending();
            let _ = self.state.send(State::Reconnecting);
            // Commands that come in the pause are answered, not lost.
            let pause = tokio::time::sleep(backoff);
            tokio::pin!(pause);
            loop {
                tokio::select! {
                    _ = &mut pause => break,
                    c = self.cmd.recv() => match c {
                        Some(Cmd::Close) | None => return self.finish("closed by the application"),
                        Some(Cmd::Disconnect(done)) => { let _ = done.send(()); paused = true; break; }
                        Some(Cmd::Reconnect) => break,
                        Some(Cmd::Request(_, reply)) => { let _ = reply.send(Err(ClientError::Disconnected)); }
                    }
                }
            }
            backoff = (backoff * 2).min(self.opts.max_backoff);
        }
    }

    fn finish(&mut self, why: &str) {
        self.fail_pending();
        let _ = self.state.send(State::Closed(why.to_owned()));
    }

    fn fail_pending(&mut self) {
        for (_, reply) in self.pending.drain() {
            let _ = reply.send(Err(ClientError::Disconnected));
        }
    }

    /// Opens the socket, waits for `ready`, resumes.
    async fn connect(&mut self) -> Result<Ws, ClientError> {
        let mut req = self
            .opts
            .url
            .as_str()
            .into_client_request()
            .map_err(|e| ClientError::Connect(e.to_string()))?;
        let auth = format!("Bearer {}", self.opts.token)
            .parse()
            .map_err(|_| ClientError::Connect("token is not a valid header value".into()))?;
        req.headers_mut().insert("authorization", auth);
        // tungstenite zero-fills its whole read buffer (128 KiB by default)
        // before every read; chat frames are small, so a small buffer saves
        // most of a busy client's CPU (it grows for larger frames).
        let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
            .read_buffer_size(8 * 1024);
        let connector = self
            .tls
            .as_ref()
            .map(|tls| tokio_tungstenite::Connector::Rustls(Arc::clone(tls)));
        let (mut ws, _) =
            tokio_tungstenite::connect_async_tls_with_config(req, Some(config), false, connector)
                .await
                .map_err(|e| ClientError::Connect(e.to_string()))?;
        // The first frame is `ready`, or an error followed by a close.
        loop {
            let msg = tokio::time::timeout(self.opts.request_timeout, ws.next())
                .await
                .map_err(|_| ClientError::Timeout(self.opts.request_timeout))?;
            match msg {
                Some(Ok(WsMessage::Text(t))) => match serde_json::from_str::<ServerFrame>(&t) {
                    Ok(ServerFrame::Ready(r)) => {
                        lock(&self.shared).ready = Some(r);
                        break;
                    }
                    Ok(ServerFrame::Error { code, message, .. }) => {
                        if matches!(code, ErrorCode::AccessDenied | ErrorCode::Unauthenticated) {
                            return Err(ClientError::Closed(format!("{code}: {message}")));
                        }
                        return Err(ClientError::Server { code, message });
                    }
                    _ => continue,
                },
                Some(Ok(WsMessage::Close(frame))) => return Err(self.closed(frame)),
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(ClientError::Connect(e.to_string())),
                None => return Err(ClientError::Connect("closed before ready".into())),
            }
        }
        let since: BTreeMap<ConversationId, i64> = lock(&self.shared)
            .last
            .iter()
            .map(|(k, v)| (*k, *v))
            .collect();
        if !since.is_empty() {
            let frame = ClientFrame {
                id: RESUME_ID.into(),
                request: Request::Resume {
                    conversations: since,
                },
            };
            let text =
                serde_json::to_string(&frame).map_err(|e| ClientError::Decode(e.to_string()))?;
            ws.send(WsMessage::text(text))
                .await
                .map_err(|e| ClientError::Connect(e.to_string()))?;
            // Replayed events come before the result, but live events may
            // come before the replayed ones: hold everything until the
            // result, then apply in `seq` order so de-duplication keeps all.
            let mut held: Vec<Event> = Vec::new();
            let mut truncated = Vec::new();
            loop {
                let msg = tokio::time::timeout(self.opts.request_timeout, ws.next())
                    .await
                    .map_err(|_| ClientError::Timeout(self.opts.request_timeout))?;
                match msg {
                    Some(Ok(WsMessage::Text(t))) => match serde_json::from_str::<ServerFrame>(&t) {
                        Ok(ServerFrame::Event(ev)) => held.push(ev),
                        Ok(ServerFrame::Result { id, result }) if id == RESUME_ID => {
                            if let Ok(r) = serde_json::from_value::<Resumed>(result) {
                                truncated = r.truncated;
                            }
                            break;
                        }
                        // Not resumed (e.g. the server's database is down):
                        // going live now would skip what was missed, so
                        // reconnect and resume again after a pause.
                        Ok(ServerFrame::Error {
                            id: Some(id),
                            code,
                            message,
                        }) if id == RESUME_ID => {
                            return Err(ClientError::Server { code, message });
                        }
                        _ => {}
                    },
                    Some(Ok(WsMessage::Close(frame))) => return Err(self.closed(frame)),
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(ClientError::Connect(e.to_string())),
                    None => return Err(ClientError::Connect("closed during resume".into())),
                }
            }
            // Per conversation in `seq` order; typing and presence first.
            held.sort_by_key(|e| e.position().map(|(_, seq)| seq).unwrap_or(i64::MIN));
            for ev in held {
                self.event(ev);
            }
            // More was missed than the server replays: read it as history.
            for conv in truncated {
                let after = lock(&self.shared).last.get(&conv).copied().unwrap_or(0);
                self.catch_up(&mut ws, conv, after, None).await?;
            }
        }
        lock(&self.shared).connects += 1;
        let _ = self.state.send(State::Live);
        Ok(ws)
    }

    /// Records a close frame received while connecting.
    fn closed(
        &self,
        frame: Option<tokio_tungstenite::tungstenite::protocol::CloseFrame>,
    ) -> ClientError {
        let code = frame.as_ref().map(|f| u16::from(f.code)).unwrap_or(1005);
        lock(&self.shared).closes.push(code);
        ClientError::Connect(format!("closed with {code}"))
    }

    /// Passes an event on unless it was seen already.
    fn event(&mut self, ev: Event) {
        if let Some((conv, seq)) = ev.position() {
            let mut s = lock(&self.shared);
            let last = s.last.entry(conv).or_insert(0);
            if seq <= *last {
                return;
            }
            *last = seq;
        }
        let _ = self.events.send(ev);
    }

    /// Reads with `history` the messages of `conv` after `after` (and before
    /// `before`) that the server reported it could not replay, and passes
    /// each on as `message.created`, in order; events that arrive meanwhile
    /// follow, in `seq` order. Answers to the application's requests that
    /// arrive meanwhile are delivered as usual.
    async fn catch_up(
        &mut self,
        ws: &mut Ws,
        conv: ConversationId,
        mut after: i64,
        before: Option<i64>,
    ) -> Result<(), ClientError> {
        let from = after;
        let mut held: Vec<Event> = Vec::new();
        let mut page_no = 0u64;
        loop {
            page_no += 1;
            let id = format!("catch-up-{page_no}");
            let frame = ClientFrame {
                id: id.clone(),
                request: Request::History {
                    conversation_id: conv,
                    before: None,
                    after: Some(after),
                    limit: Some(CATCH_UP_PAGE),
                },
            };
            let text =
                serde_json::to_string(&frame).map_err(|e| ClientError::Decode(e.to_string()))?;
            ws.send(WsMessage::text(text))
                .await
                .map_err(|e| ClientError::Connect(e.to_string()))?;
            let page = loop {
                let msg = tokio::time::timeout(self.opts.request_timeout, ws.next())
                    .await
                    .map_err(|_| ClientError::Timeout(self.opts.request_timeout))?;
                let text = match msg {
                    Some(Ok(WsMessage::Text(t))) => t,
                    Some(Ok(WsMessage::Close(frame))) => return Err(self.closed(frame)),
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => return Err(ClientError::Connect(e.to_string())),
                    None => return Err(ClientError::Connect("closed while catching up".into())),
                };
                match serde_json::from_str::<ServerFrame>(&text) {
                    Ok(ServerFrame::Event(ev)) => held.push(ev),
                    Ok(ServerFrame::Result { id: rid, result }) if rid == id => {
                        break serde_json::from_value::<MessagePage>(result)
                            .map_err(|e| ClientError::Decode(e.to_string()))?;
                    }
                    Ok(ServerFrame::Error {
                        id: Some(rid),
                        code,
                        message,
                    }) if rid == id => {
                        return Err(ClientError::Server { code, message });
                    }
                    Ok(other) => self.answer(other),
                    Err(e) => tracing::warn!(error = %e, "undecodable frame"),
                }
            };
            let mut reached = !page.has_more || page.messages.is_empty();
            for m in page.messages {
                if before.is_some_and(|b| m.seq >= b) {
                    reached = true;
                    break;
                }
                after = m.seq;
                self.event(Event::MessageCreated {
                    conversation_id: conv,
                    seq: m.seq,
                    message: m,
                });
            }
            if reached {
                break;
            }
        }
        if let Some(b) = before {
            {
                let mut s = lock(&self.shared);
                let last = s.last.entry(conv).or_insert(0);
                *last = (*last).max(b - 1);
            }
            // Passed on for information, after the messages it names.
            let _ = self.events.send(Event::Gap {
                conversation_id: conv,
                after_seq: from,
                before_seq: b,
            });
        }
        held.sort_by_key(|e| e.position().map(|(_, seq)| seq).unwrap_or(i64::MIN));
        for ev in held {
            self.event(ev);
        }
        Ok(())
    }

    /// Answers a pending request from a frame that is not an event.
    fn answer(&mut self, frame: ServerFrame) {
        match frame {
            ServerFrame::Result { id, result } => {
                if let Some(r) = self.pending.remove(&id) {
                    let _ = r.send(Ok(result));
                }
            }
            ServerFrame::Pong { id } => {
                if let Some(r) = self.pending.remove(&id) {
                    let _ = r.send(Ok(Value::Null));
                }
            }
            ServerFrame::Error {
                id: Some(id),
                code,
                message,
            } => {
                if let Some(r) = self.pending.remove(&id) {
                    let _ = r.send(Err(ClientError::Server { code, message }));
                }
            }
            ServerFrame::Error {
                id: None,
                code,
                message,
            } => {
                tracing::warn!(%code, %message, "server error without id");
            }
            ServerFrame::Ready(r) => lock(&self.shared).ready = Some(r),
            ServerFrame::Event(ev) => self.event(ev),
        }
    }

    async fn serve(&mut self, mut ws: Ws) -> End {
        loop {
            tokio::select! {
                cmd = self.cmd.recv() => match cmd {
                    None | Some(Cmd::Close) => {
                        let _ = ws.close(None).await;
                        return End::Stop("closed by the application".into());
                    }
                    Some(Cmd::Disconnect(done)) => {
                        let _ = ws.close(None).await;
                        self.fail_pending();
                        let _ = done.send(());
                        return End::Paused;
                    }
                    Some(Cmd::Reconnect) => {}
                    Some(Cmd::Request(frame, reply)) => {
                        let text = match serde_json::to_string(&frame) {
                            Ok(t) => t,
                            Err(e) => { let _ = reply.send(Err(ClientError::Decode(e.to_string()))); continue; }
                        };
                        if ws.send(WsMessage::text(text)).await.is_err() {
                            let _ = reply.send(Err(ClientError::Disconnected));
                            return End::Dropped;
                        }
                        self.pending.insert(frame.id, reply);
                    }
                },
                msg = ws.next() => match msg {
                    Some(Ok(WsMessage::Text(t))) => match serde_json::from_str::<ServerFrame>(&t) {
                        Ok(ServerFrame::Event(Event::Gap { conversation_id, after_seq, before_seq })) => {
                            if let Err(e) = self.catch_up(&mut ws, conversation_id, after_seq, Some(before_seq)).await {
                                tracing::debug!(error = %e, "catching up a gap failed");
                                return End::Dropped;
                            }

                        }
                        Ok(other) => self.answer(other),
                        Err(e) => tracing::warn!(error = %e, "undecodable frame"),
                    },
                    Some(Ok(WsMessage::Close(frame))) => {
                        let code = frame.as_ref().map(|f| f.code).unwrap_or(CloseCode::Status);
                        lock(&self.shared).closes.push(u16::from(code));
                        return match u16::from(code) {
                            4001 | 4003 => End::Stop(format!("refused by the server ({})", u16::from(code))),
                            _ => End::Dropped,
                        };
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => return End::Dropped,
                },
            }
        }
    }
}
