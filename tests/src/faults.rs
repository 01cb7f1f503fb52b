//! Fault controls for tests, in the manner of Zed's collab `TestServer`: a
//! bus that drops, delays, duplicates and reorders envelopes on their way to
//! the sessions, and a loopback TCP proxy that can refuse new connections,
//! cut one or all, and pause the bytes (in front of the WebSocket listener or
//! of PostgreSQL, to pause the store).

use futures_util::future::BoxFuture;
use parley_bus::{Bus, BusError, Envelope, Hub};
use parley_core::UserId;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What happens to the next envelopes that belong to a history (those with
/// a conversation position; typing, presence and notifications pass).
#[derive(Debug, Default)]
struct Plan {
    drop: usize,
    duplicate: usize,
    /// Hold the next one and deliver it after the one that follows.
    reorder: bool,
    held: Option<Arc<Envelope>>,
    delay: Option<(usize, Duration)>,
    dropped: usize,
    duplicated: usize,
    reordered: usize,
}

/// A bus wrapper with fault controls; everything else goes to the inner bus.
pub struct FaultBus {
    inner: Arc<dyn Bus>,
    plan: Mutex<Plan>,
}

impl FaultBus {
    pub fn new(inner: Arc<dyn Bus>) -> Self {
        Self {
            inner,
            plan: Mutex::new(Plan::default()),
        }
    }

    fn plan(&self) -> MutexGuard<'_, Plan> {
        self.plan.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The next `n` history envelopes vanish (as if Redis lost them).
    pub fn drop_next(&self, n: usize) {
        self.plan().drop += n;
    }

    /// The next `n` history envelopes arrive twice.
    pub fn duplicate_next(&self, n: usize) {
        self.plan().duplicate += n;
    }

    /// The next two history envelopes arrive in the opposite order.
    pub fn reorder_next_pair(&self) {
        self.plan().reorder = true;
    }

    /// The next `n` history envelopes arrive `by` late.
    pub fn delay_next(&self, n: usize, by: Duration) {
        self.plan().delay = Some((n, by));
    }

    /// How many envelopes were dropped, duplicated and reordered so far.
    pub fn faults(&self) -> (usize, usize, usize) {
        let p = self.plan();
        (p.dropped, p.duplicated, p.reordered)
    }
}

impl Bus for FaultBus {
    fn publish(&self, envelope: Arc<Envelope>) {
        if envelope.position.is_none() {
            return self.inner.publish(envelope);
        }
        let mut p = self.plan();
        if p.drop > 0 {
            p.drop -= 1;
            p.dropped += 1;
            return;
        }
        if let Some((n, by)) = p.delay {
            p.delay = (n > 1).then_some((n - 1, by));
            let inner = Arc::clone(&self.inner);
            tokio::spawn(async move {
                tokio::time::sleep(by).await;
                inner.publish(envelope);
            });
            return;
        }
        if p.reorder {
            p.reorder = false;
            p.held = Some(envelope);
            return;
        }
        if let Some(held) = p.held.take() {
            p.reordered += 1;
            drop(p);
            self.inner.publish(envelope);
            self.inner.publish(held);
            return;
        }
        if p.duplicate > 0 {
            p.duplicate -= 1;
            p.duplicated += 1;
            drop(p);
            self.inner.publish(Arc::clone(&envelope));
            self.inner.publish(envelope);
            return;
        }
        drop(p);
        self.inner.publish(envelope);
    }

    fn hub(&self) -> &Hub {
        self.inner.hub()
    }

    fn online(&self, users: Vec<UserId>) -> BoxFuture<'_, Result<Vec<bool>, BusError>> {
        self.inner.online(users)
    }

    fn check(&self) -> BoxFuture<'_, Result<(), BusError>> {
        self.inner.check()
    }

    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn session_opened(&self, user: UserId) -> BoxFuture<'_, bool> {
        self.inner.session_opened(user)
    }

    fn session_closed(&self, user: UserId) -> BoxFuture<'_, bool> {
        self.inner.session_closed(user)
    }

    fn take_departures(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<UserId>> {
        self.inner.take_departures()
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        self.inner.shutdown()
    }
}

struct Link {
    id: u64,
    task: tokio::task::AbortHandle,
    /// Pauses this connection alone.
    paused: watch::Sender<bool>,
}

struct Ctl {
    refuse: AtomicBool,
    paused: watch::Sender<bool>,
    links: Mutex<Vec<Link>>,
    next: AtomicU64,
}

impl Ctl {
    fn links(&self) -> MutexGuard<'_, Vec<Link>> {
        self.links.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A TCP proxy on 127.0.0.1 in front of `target`.
pub struct Proxy {
    pub addr: SocketAddr,
    ctl: Arc<Ctl>,
    accept: tokio::task::AbortHandle,
}

impl Proxy {
    pub async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let ctl = Arc::new(Ctl {
            refuse: AtomicBool::new(false),
            paused: watch::channel(false).0,
            links: Mutex::new(Vec::new()),
            next: AtomicU64::new(0),
        });
        let c = Arc::clone(&ctl);
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if c.refuse.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(target).await else {
                    continue;
                };
                let id = c.next.fetch_add(1, Ordering::SeqCst);
                let all = c.paused.subscribe();
                let (mine, this) = watch::channel(false);
                let task = tokio::spawn(pipe(client, server, [all, this])).abort_handle();
                let mut links = c.links();
                links.retain(|l| !l.task.is_finished());
                links.push(Link {
                    id,
                    task,
                    paused: mine,
                });
            }
        })
        .abort_handle();
        Proxy { addr, ctl, accept }
    }

    /// New connections are closed at once (existing ones stay).
    pub fn refuse_new(&self, refuse: bool) {
        self.ctl.refuse.store(refuse, Ordering::SeqCst);
    }

    /// Bytes stop flowing both ways (connections stay open) until resumed.
    pub fn pause(&self, paused: bool) {
        self.ctl.paused.send_replace(paused);
    }

    /// Bytes stop flowing both ways on one connection (it stays open): a
    /// network that silently lost one peer.
    pub fn pause_one(&self, id: u64, paused: bool) {
        if let Some(l) = self.ctl.links().iter().find(|l| l.id == id) {
            l.paused.send_replace(paused);
        }
    }

    /// Open connections, oldest first (by id).
    pub fn connections(&self) -> Vec<u64> {
        let mut links = self.ctl.links();
        links.retain(|l| !l.task.is_finished());
        links.iter().map(|l| l.id).collect()
    }

    /// Cuts one connection (both sockets close).
    pub fn cut(&self, id: u64) {
        let mut links = self.ctl.links();
        links.retain(|l| {
            if l.id == id {
                l.task.abort();
            }
            l.id != id
        });
    }

    pub fn cut_all(&self) {
        for l in self.ctl.links().drain(..) {
            l.task.abort();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut_all();
    }
}

async fn pipe(a: TcpStream, b: TcpStream, paused: [watch::Receiver<bool>; 2]) {
    let (ar, aw) = a.into_split();
    let (br, bw) = b.into_split();
    tokio::select! {
        _ = copy(ar, bw, paused.clone()) => {}
        _ = copy(br, aw, paused) => {}
    }
}

async fn copy(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut paused: [watch::Receiver<bool>; 2],
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        // Both the proxy-wide and this connection's switch must be off.
        loop {
            let [all, mine] = &mut paused;
            if all.wait_for(|p| !*p).await.is_err() || mine.wait_for(|p| !*p).await.is_err() {
                return;
            }
            if !*all.borrow() {
                break;
            }
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
