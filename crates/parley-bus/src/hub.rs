//! The sessions of this node, by user, and delivery into their bounded queues.

use crate::Envelope;
use parley_core::{ConversationId, InfobaseId, SessionId, SubscriberId, UserId};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::{mpsc, Notify};

/// Set when a session must end: its queue overflowed, or the node is going
/// away. The session closes itself with the matching code.
#[derive(Debug, Default)]
pub struct Overflow {
    flag: AtomicBool,
    going_away: AtomicBool,
    notify: Notify,
}

impl Overflow {
    pub fn trip(&self) {
        if !self.flag.swap(true, Ordering::AcqRel) {
            self.notify.notify_one();
        }
    }

    /// The node shuts down: close with "going away".
    pub fn trip_going_away(&self) {
        self.going_away.store(true, Ordering::Release);
        self.trip();
    }

    pub fn going_away(&self) -> bool {
        self.going_away.load(Ordering::Acquire)
    }

    pub fn tripped(&self) -> bool {
        self.flag.load(Ordering::Acquire)
    }

    /// Completes once tripped (at once if it already was).
    pub async fn wait(&self) {
        if self.tripped() {
            return;
        }
        self.notify.notified().await;
    }
}

/// How the hub reaches one session.
#[derive(Clone, Debug)]
pub struct SessionHandle {
    pub id: SessionId,
    pub user: UserId,
    pub tenant: Tenant,
    pub tx: mpsc::Sender<Arc<Envelope>>,
    pub overflow: Arc<Overflow>,
}

/// Whose session it is, for the per-tenant limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tenant {
    pub subscriber: SubscriberId,
    pub infobase: InfobaseId,
}

#[derive(Clone, Copy, Debug)]
pub struct HubLimits {
    pub max_sessions: usize,
    pub max_sessions_per_subscriber: usize,
    pub max_sessions_per_infobase: usize,
    pub max_sessions_per_user: usize,
}

/// Sessions of each subscriber and infobase on this node.
#[derive(Debug, Default)]
struct TenantCounts {
    subscribers: HashMap<SubscriberId, usize>,
    infobases: HashMap<InfobaseId, usize>,
}

impl TenantCounts {
    fn add(&mut self, t: Tenant) {
        *self.subscribers.entry(t.subscriber).or_default() += 1;
        *self.infobases.entry(t.infobase).or_default() += 1;
    }

    fn remove(&mut self, t: Tenant) {
        fn dec<K: std::hash::Hash + Eq>(m: &mut HashMap<K, usize>, k: K) {
            if let Some(n) = m.get_mut(&k) {
                *n -= 1;
                if *n == 0 {
                    m.remove(&k);
                }
            }
        }
        dec(&mut self.subscribers, t.subscriber);
        dec(&mut self.infobases, t.infobase);
    }
}

/// Result of registering a session.
#[derive(Debug, PartialEq, Eq)]
pub enum Registered {
    /// The user's first session on this node.
    First,
    More,
    /// Refused: the node is full.
    NodeFull,
    /// Refused: the user has too many sessions on this node.
    UserFull,
    /// Refused: the user's subscriber has too many sessions on this node.
    SubscriberFull,
    /// Refused: the user's infobase has too many sessions on this node.
    InfobaseFull,
}

#[derive(Debug, Default)]
pub struct Hub {
    sessions: RwLock<HashMap<UserId, Vec<SessionHandle>>>,
    /// Changed only under the `sessions` write lock (so in step with it).
    tenants: Mutex<TenantCounts>,
    /// The highest `seq` of each conversation that reached this hub (from
    /// this node or over the bus), whoever it was for: what the recovery
    /// compares with the conversations PostgreSQL says changed lately.
    seen: Mutex<Seen>,
    count: AtomicUsize,
    delivered: AtomicU64,
    overflowed: AtomicU64,
    published: AtomicU64,
    received: AtomicU64,
    received_bytes: AtomicU64,
    dropped: AtomicU64,
    duplicates: AtomicU64,
}

/// Counters of a node's delivery since it started (exported at `/metrics`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HubStats {
    pub sessions: u64,
    /// Envelopes put in a session's queue.
    pub delivered: u64,
    /// Sessions cut off because their queue was full (closed with 4008).
    pub overflowed: u64,
    /// Envelopes handed to the bus for the other nodes.
    pub bus_published: u64,
    /// Envelopes that came from other nodes.
    pub bus_received: u64,
    /// Bytes of bus messages this node read from Redis (its own included
    /// on a plain channel, where every node reads every message).
    pub bus_received_bytes: u64,
    /// Envelopes the bus could not take (its queue was full).
    pub bus_dropped: u64,
}

/// Two generations of positions, so that forgetting quiet conversations
/// costs nothing per delivery: [`Hub::age_positions`] drops the older one.
#[derive(Debug, Default)]
struct Seen {
    current: HashMap<ConversationId, Window>,
    older: HashMap<ConversationId, Window>,
}

/// The highest `seq` of a conversation that reached the hub, and which of
/// the 128 below it did too.
#[derive(Debug, Clone, Copy)]
struct Window {
    max: i64,
    /// Bit i: `max - i` arrived.
    bits: u128,
}

impl Window {
    fn new(seq: i64) -> Self {
        Self { max: seq, bits: 1 }
    }

    /// Records `seq`; false when it arrived before (a duplicate).
    fn note(&mut self, seq: i64) -> bool {
        if seq > self.max {
            let shift = seq - self.max;
            self.bits = if shift >= 128 { 0 } else { self.bits << shift };
            self.bits |= 1;
            self.max = seq;
            return true;
        }
        let back = self.max - seq;
        if back >= 128 {
            // Too old to tell: let the sessions judge.
            return true;
        }
        let bit = 1u128 << back;
        let new = self.bits & bit == 0;
        self.bits |= bit;
        new
    }
}

impl Hub {
    pub fn new() -> Self {
        Self::default()
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The highest `seq` of the conversation that reached this hub lately,
    /// None when nothing did.
    pub fn seen_seq(&self, conversation: ConversationId) -> Option<i64> {
        let seen = self.seen();
        let a = seen.current.get(&conversation).map(|w| w.max);
        let b = seen.older.get(&conversation).map(|w| w.max);
        a.max(b)
    }

    /// Forgets conversations not heard of since the previous call.
    pub fn age_positions(&self) {
        let mut seen = self.seen();
        let current = std::mem::take(&mut seen.current);
        seen.older = current;
    }

    /// Records a position; false when this very event reached the hub before
    /// (a copy from the recovery or a duplicate from the bus). Every session
    /// that could want it got the first copy, or started later and read its
    /// `seq`s from PostgreSQL, where the event already was.
    fn note_position(&self, conversation: ConversationId, seq: i64) -> bool {
        let mut seen = self.seen();
        if let Some(w) = seen.current.get_mut(&conversation) {
            return w.note(seq);
        }
        // Not heard of in this generation: go on from the older one.
        match seen.older.get(&conversation).copied() {
            Some(mut w) => {
                let new = w.note(seq);
                seen.current.insert(conversation, w);
                new
            }
            None => {
                seen.current.insert(conversation, Window::new(seq));
                true
            }
        }
    }

    pub fn register(&self, handle: SessionHandle, limits: HubLimits) -> Registered {
        let mut map = match self.sessions.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if self.count.load(Ordering::Relaxed) >= limits.max_sessions {
            return Registered::NodeFull;
        }
        let mut tenants = self.tenants.lock().unwrap_or_else(|p| p.into_inner());
        let t = handle.tenant;
        if tenants.subscribers.get(&t.subscriber).copied().unwrap_or(0)
            >= limits.max_sessions_per_subscriber
        {
            return Registered::SubscriberFull;
        }
        if tenants.infobases.get(&t.infobase).copied().unwrap_or(0)
            >= limits.max_sessions_per_infobase
        {
            return Registered::InfobaseFull;
        }
        let list = map.entry(handle.user).or_default();
        if list.len() >= limits.max_sessions_per_user {
            return Registered::UserFull;
        }
        list.push(handle);
        tenants.add(t);
        self.count.fetch_add(1, Ordering::Relaxed);
        if list.len() == 1 {
            Registered::First
        } else {
            Registered::More
        }
    }

    /// Removes the session; true when it was the user's last on this node.
    pub fn unregister(&self, user: UserId, session: SessionId) -> bool {
        let mut map = match self.sessions.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let Some(list) = map.get_mut(&user) else {
            return false;
        };
        let before = list.len();
        if let Some(i) = list.iter().position(|h| h.id == session) {
            let gone = list.remove(i);
            self.tenants
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(gone.tenant);
            self.count.fetch_sub(1, Ordering::Relaxed);
        }
        if list.is_empty() {
            map.remove(&user);
            before > 0
        } else {
            false
        }
    }

    /// Puts the envelope in the queue of every session of its targets. A full
    /// queue trips the session's overflow instead of waiting.
    pub fn deliver(&self, env: &Arc<Envelope>) {
        if let Some((conversation, seq)) = env.position {
            if !self.note_position(conversation, seq) {
                self.duplicates.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        let map = match self.sessions.read() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        for user in &env.targets {
            let Some(list) = map.get(user) else { continue };
            for h in list {
                if env.session.is_some_and(|s| s != h.id) {
                    continue;
                }
                match h.tx.try_send(Arc::clone(env)) {
                    Ok(()) => {
                        self.delivered.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        self.overflowed.fetch_add(1, Ordering::Relaxed);
                        h.overflow.trip();
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => {}
                }
            }
        }
    }

    /// Users with at least one session here.
    pub fn users(&self) -> Vec<UserId> {
        match self.sessions.read() {
            Ok(g) => g.keys().copied().collect(),
            Err(p) => p.into_inner().keys().copied().collect(),
        }
    }

    /// Asks every session to compare what it delivered with PostgreSQL and
    /// replay what it missed (after the bus lost events).
    pub fn resync_all(&self) {
        self.resync_users(self.users());
    }

    /// Asks the sessions of these users to compare what they delivered with
    /// PostgreSQL (events may have missed them on their way here).
    pub fn resync_users(&self, users: Vec<UserId>) {
        if users.is_empty() {
            return;
        }
        let env = Arc::new(Envelope {
            targets: users,
            position: None,
            recipients: None,
            author: None,
            frame: bytestring::ByteString::new(),
            resync: true,
            revoke: None,
            session: None,
        });
        self.deliver(&env);
    }

    /// Closes every session with "going away".
    pub fn going_away(&self) {
        for h in self.all() {
            h.overflow.trip_going_away();
        }
    }

    /// Whether any of `users` has a session on this node.
    pub fn holds_any(&self, users: &[UserId]) -> bool {
        let map = match self.sessions.read() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        users.iter().any(|u| map.contains_key(u))
    }

    pub fn sessions_of(&self, user: UserId) -> usize {
        match self.sessions.read() {
            Ok(g) => g.get(&user).map_or(0, Vec::len),
            Err(p) => p.into_inner().get(&user).map_or(0, Vec::len),
        }
    }

    pub fn session_count(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// Envelopes queued to sessions and queues found full, since start.
    pub fn stats(&self) -> HubStats {
        HubStats {
            sessions: self.count.load(Ordering::Relaxed) as u64,
            delivered: self.delivered.load(Ordering::Relaxed),
            overflowed: self.overflowed.load(Ordering::Relaxed),
            bus_published: self.published.load(Ordering::Relaxed),
            bus_received: self.received.load(Ordering::Relaxed),
            bus_received_bytes: self.received_bytes.load(Ordering::Relaxed),
            bus_dropped: self.dropped.load(Ordering::Relaxed),
        }
    }

    /// An envelope went to the bus (to the other nodes).
    pub fn note_published(&self) {
        self.published.fetch_add(1, Ordering::Relaxed);
    }

    /// An envelope arrived from another node.
    pub fn note_received(&self) {
        self.received.fetch_add(1, Ordering::Relaxed);
    }

    /// A bus message of `bytes` reached this node (whoever sent it).
    pub fn note_received_bytes(&self, bytes: usize) {
        self.received_bytes
            .fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// An envelope could not be handed to the bus (its queue was full).
    pub fn note_dropped(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// Every session handle (for shutdown).
    pub fn all(&self) -> Vec<SessionHandle> {
        match self.sessions.read() {
            Ok(g) => g.values().flatten().cloned().collect(),
            Err(p) => p.into_inner().values().flatten().cloned().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytestring::ByteString;

    fn handle(user: UserId, cap: usize) -> (SessionHandle, mpsc::Receiver<Arc<Envelope>>) {
        handle_of(user, cap, tenant())
    }

    fn tenant() -> Tenant {
        Tenant {
            subscriber: SubscriberId::new_random(),
            infobase: InfobaseId::new_random(),
        }
    }

    fn handle_of(
        user: UserId,
        cap: usize,
        tenant: Tenant,
    ) -> (SessionHandle, mpsc::Receiver<Arc<Envelope>>) {
        let (tx, rx) = mpsc::channel(cap);
        (
            SessionHandle {
                id: SessionId::new_random(),
                user,
                tenant,
                tx,
                overflow: Arc::new(Overflow::default()),
            },
            rx,
        )
    }

    fn env(targets: Vec<UserId>) -> Arc<Envelope> {
        Arc::new(Envelope {
            targets,
            position: None,
            recipients: None,
            author: None,
            frame: ByteString::from_static("{}"),
            resync: false,
            revoke: None,
            session: None,
        })
    }

    const LIMITS: HubLimits = HubLimits {
        max_sessions: 3,
        max_sessions_per_subscriber: 3,
        max_sessions_per_infobase: 3,
        max_sessions_per_user: 2,
    };

    #[test]
    fn a_tenant_cannot_take_the_whole_node() {
        let hub = Hub::new();
        let limits = HubLimits {
            max_sessions: 10,
            max_sessions_per_subscriber: 4,
            max_sessions_per_infobase: 3,
            max_sessions_per_user: 10,
        };
        let greedy = tenant();
        let sibling = Tenant {
            infobase: InfobaseId::new_random(),
            ..greedy
        };
        let mut held = Vec::new();
        for _ in 0..3 {
            let (h, r) = handle_of(UserId::new_random(), 4, greedy);
            assert_ne!(hub.register(h.clone(), limits), Registered::InfobaseFull);
            held.push((h, r));
        }
        let (h, _r) = handle_of(UserId::new_random(), 4, greedy);
        assert_eq!(hub.register(h, limits), Registered::InfobaseFull);
        let (h, _r) = handle_of(UserId::new_random(), 4, sibling);
        assert_eq!(hub.register(h, limits), Registered::First);
        let (h, _r) = handle_of(UserId::new_random(), 4, sibling);
        assert_eq!(hub.register(h, limits), Registered::SubscriberFull);
        // Another subscriber still gets in.
        let (h, _r) = handle_of(UserId::new_random(), 4, tenant());
        assert_eq!(hub.register(h, limits), Registered::First);
        // A closed session frees its place.
        let (gone, _) = held.pop().expect("held");
        assert!(hub.unregister(gone.user, gone.id));
        let (h, _r) = handle_of(UserId::new_random(), 4, greedy);
        assert_eq!(hub.register(h, limits), Registered::First);
    }

    #[test]
    fn limits_and_presence_transitions() {
        let hub = Hub::new();
        let a = UserId::new_random();
        let b = UserId::new_random();
        let (h1, _r1) = handle(a, 4);
        let (h2, _r2) = handle(a, 4);
        let (h3, _r3) = handle(a, 4);
        assert_eq!(hub.register(h1.clone(), LIMITS), Registered::First);
        assert_eq!(hub.register(h2.clone(), LIMITS), Registered::More);
        assert_eq!(hub.register(h3, LIMITS), Registered::UserFull);
        let (h4, _r4) = handle(b, 4);
        assert_eq!(hub.register(h4, LIMITS), Registered::First);
        let (h5, _r5) = handle(UserId::new_random(), 4);
        assert_eq!(hub.register(h5, LIMITS), Registered::NodeFull);
        assert!(!hub.unregister(a, h1.id));
        assert!(hub.unregister(a, h2.id));
        assert_eq!(hub.session_count(), 1);
    }

    #[test]
    fn a_window_knows_what_arrived_before() {
        let mut w = Window::new(10);
        assert!(!w.note(10));
        assert!(w.note(12));
        assert!(w.note(11), "late but new");
        assert!(!w.note(11));
        assert!(w.note(500));
        assert!(!w.note(500));
        assert!(w.note(300), "beyond the window: the sessions judge");
    }

    #[test]
    fn a_second_copy_of_an_event_is_not_delivered_again() {
        let hub = Hub::new();
        let u = UserId::new_random();
        let (h, mut rx) = handle(u, 16);
        let limits = HubLimits {
            max_sessions: 10,
            max_sessions_per_subscriber: 10,
            max_sessions_per_infobase: 10,
            max_sessions_per_user: 10,
        };
        hub.register(h, limits);
        let conv = ConversationId::new_random();
        let at = |seq| {
            Arc::new(Envelope {
                targets: vec![u],
                position: Some((conv, seq)),
                recipients: None,
                author: None,
                frame: ByteString::from_static("{}"),
                resync: false,
                revoke: None,
                session: None,
            })
        };
        for seq in [1, 2, 2, 1, 3] {
            hub.deliver(&at(seq));
        }
        let mut got = Vec::new();
        while let Ok(e) = rx.try_recv() {
            got.push(e.position.map(|p| p.1));
        }
        assert_eq!(got, vec![Some(1), Some(2), Some(3)]);
    }

    #[test]
    fn a_full_queue_trips_overflow_without_blocking_others() {
        let hub = Hub::new();
        let slow = UserId::new_random();
        let fast = UserId::new_random();
        let (hs, _rs) = handle(slow, 2);
        let (hf, mut rf) = handle(fast, 16);
        let overflow = Arc::clone(&hs.overflow);
        let limits = HubLimits {
            max_sessions: 10,
            max_sessions_per_subscriber: 10,
            max_sessions_per_infobase: 10,
            max_sessions_per_user: 10,
        };
        hub.register(hs, limits);
        hub.register(hf, limits);
        for _ in 0..5 {
            hub.deliver(&env(vec![slow, fast]));
        }
        assert!(overflow.tripped());
        let mut got = 0;
        while rf.try_recv().is_ok() {
            got += 1;
        }
        assert_eq!(got, 5);
        let st = hub.stats();
        assert_eq!((st.delivered, st.overflowed), (7, 3));
    }
}
