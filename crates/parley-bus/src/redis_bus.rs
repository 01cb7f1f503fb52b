//! The Redis bus of a cluster. On one Redis (or one behind Sentinels) every
//! node holds ONE pub/sub connection to one channel and publishes each
//! envelope once, whatever the number of recipients; on a Redis Cluster
//! (`sharded.rs`) each node has a channel of its own and an envelope goes to
//! the nodes holding its users only. Either way the envelope names its
//! target users and each node delivers to the sessions it holds. Commands
//! go through a connection manager that reconnects by itself; the
//! subscription is re-established by hand (with backoff) and followed by a
//! resync of every session, so what Redis dropped is recovered from
//! PostgreSQL.
//!
//! Presence: `PREFIX:presence:USER` is a hash node → last heartbeat (ms). A
//! node refreshes its users every heartbeat; a field older than the node TTL
//! means nothing, so a dead node's users go offline by themselves, and the
//! first live node to notice announces them offline.

use crate::link::{connect_once, Conn, Link, RedisTarget};
use crate::sharded::{self, Announce, Directory, JOIN_SETTLE};
use crate::{Bus, BusError, Envelope, Hub};
use bytestring::ByteString;
use chrono::{DateTime, Utc};
use futures_util::future::{join_all, BoxFuture};
use futures_util::StreamExt;
use parley_core::{ConversationId, SessionId, UserId};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

/// How a node joins the cluster.
#[derive(Clone, Debug)]
pub struct RedisOptions {
    pub target: RedisTarget,
    /// Prefix of every key and channel (several clusters may share a Redis).
    pub prefix: String,
    pub node_id: String,
    /// The address the node serves on (shown by `parley admin nodes`).
    pub advertise: String,
    pub heartbeat: Duration,
    /// A node (and its users' presence) counts as gone after this long
    /// without a heartbeat.
    pub node_ttl: Duration,
    /// Envelopes waiting to be published; beyond it they are dropped (and
    /// recovered from PostgreSQL by the other nodes).
    pub publish_queue: usize,
}

/// A row of `parley admin nodes`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NodeInfo {
    pub id: String,
    pub addr: String,
    pub sessions: usize,
    pub users: usize,
    pub started_at: DateTime<Utc>,
    pub heartbeat_at: DateTime<Utc>,
    pub ttl_ms: u64,
}

impl NodeInfo {
    pub fn alive(&self, now: DateTime<Utc>) -> bool {
        (now - self.heartbeat_at).num_milliseconds() <= self.ttl_ms as i64
    }
}

/// The header of an envelope on the wire; the frame follows after a newline.
#[derive(Serialize, Deserialize)]
struct Header {
    /// Publishing node (it delivered locally already).
    n: String,
    t: Vec<UserId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    p: Option<(ConversationId, i64)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    r: Option<Vec<UserId>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    a: Option<UserId>,
    /// Resync: every node's sessions check PostgreSQL.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    s: bool,
    /// Revocation: the targets' sessions close.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    v: Option<crate::Revoke>,
    /// Only this session of the targets (call signaling).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    o: Option<SessionId>,
}

/// Names of the keys and channels. On a Redis Cluster every key carries
/// the hash tag `{PREFIX}` (one slot, so pipelines work); the node channels
/// are tagged by node id instead, to spread over the shards.
pub(crate) struct Keys {
    pub(crate) channel: String,
    pub(crate) nodes: String,
    pub(crate) dir_channel: String,
    /// The configured prefix, or `{prefix}` on a cluster.
    keys: String,
    prefix: String,
}

impl Keys {
    pub(crate) fn new(prefix: &str, cluster: bool) -> Self {
        let keys = if cluster {
            format!("{{{prefix}}}")
        } else {
            prefix.to_owned()
        };
        Self {
            channel: format!("{prefix}:events"),
            nodes: format!("{keys}:nodes"),
            dir_channel: format!("{keys}:dir"),
            keys,
            prefix: prefix.to_owned(),
        }
    }
    fn presence(&self, user: UserId) -> String {
        format!("{}:presence:{user}", self.keys)
    }
    pub(crate) fn node_users(&self, node: &str) -> String {
        format!("{}:node-users:{node}", self.keys)
    }
    fn reap(&self, node: &str) -> String {
        format!("{}:reap:{node}", self.keys)
    }
    /// A node's own channel (sharded pub/sub).
    pub(crate) fn node_channel(&self, node: &str) -> String {
        format!("{}:node:{{{node}}}", self.prefix)
    }
}

/// What the publisher task sends.
pub(crate) enum Outgoing {
    /// An encoded envelope. On a cluster it goes to the nodes holding the
    /// envelope's users, or with `None` to every node.
    Envelope {
        payload: Vec<u8>,
        route: Option<Arc<Envelope>>,
    },
    /// Cluster: a user's first session opened or last one closed here.
    Announce(Announce),
}

/// What the publisher and subscriber tasks tell the rest of the node.
#[derive(Debug, Default)]
pub(crate) struct Health {
    /// The subscription is established and answered its last ping.
    pub(crate) listening: AtomicBool,
    /// Envelopes were lost on the way out (queue full, Redis error or
    /// timeout): the other nodes must resync once Redis answers.
    pub(crate) dirty: AtomicBool,
}

pub struct RedisBus {
    opts: RedisOptions,
    keys: Arc<Keys>,
    hub: Arc<Hub>,
    link: Arc<Link>,
    publish: mpsc::Sender<Outgoing>,
    health: Arc<Health>,
    /// Cluster only: who is where.
    dir: Option<Arc<Directory>>,
    /// Cluster only: a user's presence here is read and queued for
    /// announcement under this lock, so announcements leave in the order
    /// the sessions came and went.
    announcing: Mutex<()>,
    departures: Mutex<Option<mpsc::UnboundedReceiver<UserId>>>,
    /// Set by shutdown so no heartbeat re-registers the node afterwards.
    stopped: Arc<AtomicBool>,
}

fn err(e: redis::RedisError) -> BusError {
    BusError::Unavailable(e.to_string())
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

impl RedisBus {
    /// Connects (Redis must answer now), then runs the subscriber, publisher
    /// and heartbeat tasks for as long as the process lives.
    pub async fn start(opts: RedisOptions) -> Result<Arc<RedisBus>, BusError> {
        let link = Link::open(opts.target.clone()).await?;
        let cluster = opts.target.is_cluster();
        let keys = Arc::new(Keys::new(&opts.prefix, cluster));
        let dir = cluster.then(|| Arc::new(Directory::default()));
        let hub = Arc::new(Hub::new());
        let (ptx, prx) = mpsc::channel(opts.publish_queue.max(16));
        let (dtx, drx) = mpsc::unbounded_channel();
        let stopped = Arc::new(AtomicBool::new(false));
        let health = Arc::new(Health::default());
        let bus = Arc::new(RedisBus {
            opts: opts.clone(),
            keys: Arc::clone(&keys),
            hub: Arc::clone(&hub),
            link: Arc::clone(&link),
            publish: ptx,
            health: Arc::clone(&health),
            dir: dir.clone(),
            announcing: Mutex::new(()),
            departures: Mutex::new(Some(drx)),
            stopped: Arc::clone(&stopped),
        });
        match (&opts.target, &dir) {
            (RedisTarget::Cluster(nodes), Some(dir)) => {
                let listener = sharded::Listener {
                    link: Arc::clone(&link),
                    keys: Arc::clone(&keys),
                    me: opts.node_id.clone(),
                    hub: Arc::clone(&hub),
                    health: Arc::clone(&health),
                    dir: Arc::clone(dir),
                    every: opts.heartbeat,
                };
                tokio::spawn(listener.run(nodes.clone(), opts.publish_queue));
            }
            _ => {
                tokio::spawn(subscriber(
                    Arc::clone(&link),
                    Arc::clone(&keys),
                    opts.node_id.clone(),
                    Arc::clone(&hub),
                    Arc::clone(&health),
                    opts.heartbeat,
                ));
            }
        }
        tokio::spawn(publisher(
            Arc::clone(&link),
            Arc::clone(&keys),
            opts.node_id.clone(),
            prx,
            Arc::clone(&health),
            Arc::clone(&hub),
            dir,
        ));
        tokio::spawn(heartbeat(link, keys, opts, hub, Utc::now(), dtx, stopped));
        Ok(bus)
    }

    /// A command failed: the error for the caller, and the link asked to
    /// check where the master is.
    fn failed(&self, e: redis::RedisError) -> BusError {
        self.link.failed();
        err(e)
    }

    /// Runs a presence pipeline whose one unignored command reads the
    /// user's presence hash: true when no other node holds the user (also
    /// when Redis failed: better one "online" too many than none).
    async fn alone(&self, pipe: redis::Pipeline, failure: &str) -> bool {
        match pipe
            .query_async::<(HashMap<String, i64>,)>(&mut self.link.conn())
            .await
        {
            Ok((fields,)) => self.others_fresh(&fields) == 0,
            Err(e) => {
                tracing::warn!(error = %e, "{failure}");
                self.link.failed();
                true
            }
        }
    }

    /// Nodes among a presence hash's fields whose heartbeat is fresh,
    /// other than this one.
    fn others_fresh(&self, fields: &HashMap<String, i64>) -> usize {
        let horizon = now_ms() - self.opts.node_ttl.as_millis() as i64;
        fields
            .iter()
            .filter(|(n, ts)| **ts >= horizon && **n != self.opts.node_id)
            .count()
    }

    /// Cluster: queues the announcement of whether `user` has sessions
    /// here now (read under the lock: announcements leave in order, and
    /// the last one tells the current state).
    fn announce(&self, user: UserId) {
        if self.dir.is_none() {
            return;
        }
        let _order = self.announcing.lock().unwrap_or_else(|p| p.into_inner());
        let a = Announce {
            n: self.opts.node_id.clone(),
            u: user,
            h: self.hub.sessions_of(user) > 0,
        };
        if self.publish.try_send(Outgoing::Announce(a)).is_err()
            && !self.health.dirty.swap(true, Ordering::AcqRel)
        {
            tracing::warn!("bus publish queue full; other nodes will resync");
        }
    }
}

pub(crate) fn encode(node: &str, env: &Envelope) -> Vec<u8> {
    let header = Header {
        n: node.to_owned(),
        t: env.targets.clone(),
        p: env.position,
        r: env.recipients.clone(),
        a: env.author,
        s: env.resync,
        v: env.revoke,
        o: env.session,
    };
    let mut out = serde_json::to_vec(&header).unwrap_or_default();
    out.push(b'\n');
    out.extend_from_slice(env.frame.as_bytes());
    out
}

/// How every envelope `node` publishes begins (`n` is the header's first
/// field; the closing quote keeps `n1` from matching `n10`).
fn published_by(node: &str) -> Vec<u8> {
    let mut prefix = b"{\"n\":".to_vec();
    // A string always serializes.
    let _ = serde_json::to_writer(&mut prefix, node);
    prefix.push(b',');
    prefix
}

pub(crate) fn decode(payload: &[u8]) -> Option<(String, Envelope)> {
    let split = payload.iter().position(|b| *b == b'\n')?;
    let header: Header = serde_json::from_slice(&payload[..split]).ok()?;
    let frame = std::str::from_utf8(&payload[split + 1..]).ok()?;
    Some((
        header.n,
        Envelope {
            targets: header.t,
            position: header.p,
            recipients: header.r,
            author: header.a,
            frame: ByteString::from(frame),
            resync: header.s,
            revoke: header.v,
            session: header.o,
        },
    ))
}

/// One subscription, re-established after any failure. A connection can
/// die without closing (a cut network, a frozen Redis): the subscriber pings
/// over it every `every` and gives it up when no answer comes within the
/// same time, so the node is never deaf for long while looking alive.
async fn subscriber(
    link: Arc<Link>,
    keys: Arc<Keys>,
    me: String,
    hub: Arc<Hub>,
    health: Arc<Health>,
    every: Duration,
) {
    let mut backoff = Duration::from_millis(100);
    let mut first = true;
    loop {
        let client = link.client();
        let connect = async {
            let Some(client) = client else {
                return Err(redis::RedisError::from((
                    redis::ErrorKind::ClientError,
                    "a cluster's bus subscribes in sharded mode",
                )));
            };
            let mut ps = client.get_async_pubsub().await?;
            ps.subscribe(&keys.channel).await?;
            Ok::<_, redis::RedisError>(ps)
        };
        match tokio::time::timeout(every.max(Duration::from_secs(1)), connect).await {
            Ok(Ok(ps)) => {
                backoff = Duration::from_millis(100);
                health.listening.store(true, Ordering::Release);
                if !first {
                    tracing::info!("bus subscription restored; resyncing sessions");
                    hub.resync_all();
                }
                let why = listen(ps, &me, &hub, every).await;
                health.listening.store(false, Ordering::Release);
                tracing::warn!(reason = why, "bus subscription lost");
                link.failed();
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "bus subscribe failed");
                link.failed();
            }
            Err(_) => {
                tracing::warn!("bus subscribe timed out");
                link.failed();
            }
        }
        first = false;
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

/// Delivers what the subscription brings until it ends or stops answering.
async fn listen(ps: redis::aio::PubSub, me: &str, hub: &Hub, every: Duration) -> &'static str {
    let (mut sink, mut stream) = ps.split();
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    // On one Redis every node hears its own envelopes too (half of what it
    // reads on two nodes): known by their first bytes, they are not decoded.
    let mine = published_by(me);
    loop {
        tokio::select! {
            msg = stream.next() => {
                let Some(msg) = msg else { return "closed" };
                hub.note_received_bytes(msg.get_payload_bytes().len());
                if msg.get_payload_bytes().starts_with(&mine) {
                    continue;
                }
                match decode(msg.get_payload_bytes()) {
                    Some((node, env)) if env.resync => {
                        if node != me {
                            hub.resync_all();
                        }
                    }
                    Some((node, env)) if node != me => {
                        hub.note_received();
                        hub.deliver(&Arc::new(env))
                    }
                    Some(_) => {}
                    None => tracing::warn!("undecodable bus message"),
                }
            }
            _ = tick.tick() => {
                match tokio::time::timeout(every, sink.ping::<redis::Value>()).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(_)) => return "ping failed",
                    Err(_) => return "no answer to ping",
                }
            }
        }
    }
}

/// Publishes queued envelopes, several per round trip. After a failure it
/// tells the other nodes to resync once Redis answers again.
async fn publisher(
    link: Arc<Link>,
    keys: Arc<Keys>,
    me: String,
    mut rx: mpsc::Receiver<Outgoing>,
    health: Arc<Health>,
    hub: Arc<Hub>,
    dir: Option<Arc<Directory>>,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        let mut batch = Vec::new();
        tokio::select! {
            m = rx.recv() => match m {
                Some(m) => batch.push(m),
                None => return,
            },
            _ = tick.tick() => {}
        }
        while batch.len() < 128 {
            match rx.try_recv() {
                Ok(m) => batch.push(m),
                Err(_) => break,
            }
        }
        let dirty = health.dirty.swap(false, Ordering::AcqRel);
        if dirty {
            let resync = Envelope {
                targets: Vec::new(),
                position: None,
                recipients: None,
                author: None,
                frame: ByteString::new(),
                resync: true,
                revoke: None,
                session: None,
            };
            batch.push(Outgoing::Envelope {
                payload: encode(&me, &resync),
                route: None,
            });
        }
        if batch.is_empty() {
            continue;
        }
        let sent = match &dir {
            None => send_plain(&link, &keys, &batch).await,
            Some(dir) => send_sharded(&link, &keys, &me, dir, &hub, &batch).await,
        };
        match sent {
            Ok(()) => {
                if dirty {
                    tracing::info!("bus publishing restored; other nodes resync");
                }
            }
            Err(e) => {
                if !dirty {
                    tracing::warn!(error = %e, dropped = batch.len(), "bus publish failed; other nodes will resync");
                }
                health.dirty.store(true, Ordering::Release);
                link.failed();
            }
        }
    }
}

/// One Redis: every envelope on the one channel, in one pipeline.
async fn send_plain(link: &Link, keys: &Keys, batch: &[Outgoing]) -> redis::RedisResult<()> {
    let mut pipe = redis::pipe();
    for m in batch {
        if let Outgoing::Envelope { payload, .. } = m {
            pipe.cmd("PUBLISH").arg(&keys.channel).arg(payload).ignore();
        }
    }
    pipe.query_async::<()>(&mut link.conn()).await
}

/// A cluster: each envelope to the channels of the nodes holding its users
/// (one pipeline per node, all at once: the channels live on different
/// shards), announcements with the node's user set in one more.
async fn send_sharded(
    link: &Link,
    keys: &Keys,
    me: &str,
    dir: &Directory,
    hub: &Arc<Hub>,
    batch: &[Outgoing],
) -> redis::RedisResult<()> {
    // Per destination node: its channel (named once per batch) and pipeline.
    let mut per_node: HashMap<Arc<str>, (String, redis::Pipeline)> = HashMap::new();
    let mut announce = redis::pipe();
    let mut arrived = Vec::new();
    for m in batch {
        match m {
            Outgoing::Envelope { payload, route } => {
                let nodes = match route {
                    Some(env) => dir.route(&env.targets, me),
                    None => dir.others(me),
                };
                for n in nodes {
                    let (channel, pipe) = per_node
                        .entry(n)
                        .or_insert_with_key(|n| (keys.node_channel(n), redis::pipe()));
                    pipe.cmd("SPUBLISH").arg(&*channel).arg(payload).ignore();
                }
            }
            Outgoing::Announce(a) => {
                let set = keys.node_users(me);
                let cmd = if a.h { "SADD" } else { "SREM" };
                announce.cmd(cmd).arg(set).arg(a.u.to_string()).ignore();
                let json = serde_json::to_vec(a).unwrap_or_default();
                announce
                    .cmd("SPUBLISH")
                    .arg(&keys.dir_channel)
                    .arg(json)
                    .ignore();
                if a.h {
                    arrived.push(a.u);
                }
            }
        }
    }
    let mut pipes: Vec<redis::Pipeline> = per_node.into_values().map(|(_, p)| p).collect();
    if announce.cmd_iter().next().is_some() {
        pipes.push(announce);
    }
    let results = join_all(pipes.iter().map(|p| {
        let mut conn = link.conn();
        async move { p.query_async::<()>(&mut conn).await }
    }))
    .await;
    if !arrived.is_empty() && results.iter().all(Result::is_ok) {
        // A node whose copy of the directory had not heard of the arrival
        // yet may have routed a message past it: look again shortly.
        let hub = Arc::clone(hub);
        tokio::spawn(async move {
            tokio::time::sleep(JOIN_SETTLE).await;
            hub.resync_users(arrived);
        });
    }
    results.into_iter().collect()
}

/// Announces the node and its users every heartbeat, and reaps dead nodes.
async fn heartbeat(
    link: Arc<Link>,
    keys: Arc<Keys>,
    opts: RedisOptions,
    hub: Arc<Hub>,
    started_at: DateTime<Utc>,
    departures: mpsc::UnboundedSender<UserId>,
    stopped: Arc<AtomicBool>,
) {
    let mut tick = tokio::time::interval(opts.heartbeat);
    let keep = (opts.node_ttl * 4).as_millis() as i64;
    loop {
        tick.tick().await;
        if stopped.load(Ordering::Acquire) {
            return;
        }
        let users = hub.users();
        let info = NodeInfo {
            id: opts.node_id.clone(),
            addr: opts.advertise.clone(),
            sessions: hub.session_count(),
            users: users.len(),
            started_at,
            heartbeat_at: Utc::now(),
            ttl_ms: opts.node_ttl.as_millis() as u64,
        };
        let now = now_ms();
        let mut pipe = redis::pipe();
        pipe.cmd("HSET")
            .arg(&keys.nodes)
            .arg(&opts.node_id)
            .arg(serde_json::to_string(&info).unwrap_or_default())
            .ignore();
        let node_users = keys.node_users(&opts.node_id);
        for u in &users {
            let k = keys.presence(*u);
            pipe.cmd("HSET")
                .arg(&k)
                .arg(&opts.node_id)
                .arg(now)
                .ignore();
            pipe.cmd("PEXPIRE").arg(&k).arg(keep).ignore();
            pipe.cmd("SADD")
                .arg(&node_users)
                .arg(u.to_string())
                .ignore();
        }
        pipe.cmd("PEXPIRE").arg(&node_users).arg(keep).ignore();
        let mut conn = link.conn();
        if let Err(e) = pipe.query_async::<()>(&mut conn).await {
            tracing::warn!(error = %e, "bus heartbeat failed");
            link.failed();
            continue;
        }
        if let Err(e) = reap(&mut conn, &keys, &opts, &departures).await {
            tracing::warn!(error = %e, "reaping dead nodes failed");
        }
    }
}

/// Finds nodes whose heartbeat stopped; one live node (by a lock) takes
/// each, drops its presence and reports its users that are now offline.
async fn reap(
    conn: &mut Conn,
    keys: &Keys,
    opts: &RedisOptions,
    departures: &mpsc::UnboundedSender<UserId>,
) -> redis::RedisResult<()> {
    let nodes: HashMap<String, String> = redis::cmd("HGETALL")
        .arg(&keys.nodes)
        .query_async(conn)
        .await?;
    let now = Utc::now();
    for (id, json) in nodes {
        if id == opts.node_id {
            continue;
        }
        let dead = match serde_json::from_str::<NodeInfo>(&json) {
            Ok(info) => !info.alive(now),
            Err(_) => true,
        };
        if !dead {
            continue;
        }
        let got: Option<String> = redis::cmd("SET")
            .arg(keys.reap(&id))
            .arg(&opts.node_id)
            .arg("NX")
            .arg("PX")
            .arg(60_000)
            .query_async(conn)
            .await?;
        if got.is_none() {
            continue;
        }
        let users: Vec<String> = redis::cmd("SMEMBERS")
            .arg(keys.node_users(&id))
            .query_async(conn)
            .await?;
        let horizon = now_ms() - opts.node_ttl.as_millis() as i64;
        for u in users {
            let Ok(user) = u.parse::<UserId>() else {
                continue;
            };
            let k = keys.presence(user);
            let _: () = redis::cmd("HDEL")
                .arg(&k)
                .arg(&id)
                .query_async(conn)
                .await?;
            let rest: HashMap<String, i64> =
                redis::cmd("HGETALL").arg(&k).query_async(conn).await?;
            if !rest.values().any(|ts| *ts >= horizon) {
                let _ = departures.send(user);
            }
        }
        let _: () = redis::cmd("DEL")
            .arg(keys.node_users(&id))
            .query_async(conn)
            .await?;
        let _: () = redis::cmd("HDEL")
            .arg(&keys.nodes)
            .arg(&id)
            .query_async(conn)
            .await?;
        tracing::info!(node = %id, "dead node reaped");
    }
    Ok(())
}

impl Bus for RedisBus {
    fn publish(&self, envelope: Arc<Envelope>) {
        self.hub.deliver(&envelope);
        if envelope.targets.is_empty() {
            return;
        }
        let payload = encode(&self.opts.node_id, &envelope);
        let route = self.dir.is_some().then(|| Arc::clone(&envelope));
        if self
            .publish
            .try_send(Outgoing::Envelope { payload, route })
            .is_err()
        {
            self.hub.note_dropped();
            if !self.health.dirty.swap(true, Ordering::AcqRel) {
                tracing::warn!("bus publish queue full; other nodes will resync");
            }
        } else {
            self.hub.note_published();
        }
    }

    fn hub(&self) -> &Hub {
        &self.hub
    }

    fn online(&self, users: Vec<UserId>) -> BoxFuture<'_, Result<Vec<bool>, BusError>> {
        Box::pin(async move {
            let mut conn = self.link.conn();
            let mut pipe = redis::pipe();
            for u in &users {
                pipe.cmd("HGETALL").arg(self.keys.presence(*u));
            }
            let all: Vec<HashMap<String, i64>> = pipe
                .query_async(&mut conn)
                .await
                .map_err(|e| self.failed(e))?;
            let horizon = now_ms() - self.opts.node_ttl.as_millis() as i64;
            Ok(all
                .iter()
                .map(|f| f.values().any(|ts| *ts >= horizon))
                .collect())
        })
    }

    fn check(&self) -> BoxFuture<'_, Result<(), BusError>> {
        Box::pin(async move {
            if !self.health.listening.load(Ordering::Acquire) {
                return Err(BusError::Unavailable(
                    "not subscribed: this node hears nothing from the other nodes".into(),
                ));
            }
            let mut conn = self.link.conn();
            redis::cmd("PING")
                .query_async::<String>(&mut conn)
                .await
                .map_err(|e| self.failed(e))?;
            Ok(())
        })
    }

    fn name(&self) -> &'static str {
        if self.dir.is_some() {
            "redis-cluster"
        } else {
            "redis"
        }
    }

    fn session_opened(&self, user: UserId) -> BoxFuture<'_, bool> {
        Box::pin(async move {
            // First: the sooner the others route to this node, the better.
            self.announce(user);
            // One round trip: who else holds the user (read before this
            // node's own field is written), then this node's presence. A
            // transaction, so that when the user's first sessions open on
            // two nodes at once exactly one of them finds itself alone and
            // announces "online" (each would, had both reads run before
            // either write). All keys share one slot on a Redis Cluster.
            let mut pipe = redis::pipe();
            pipe.atomic();
            let k = self.keys.presence(user);
            pipe.cmd("HGETALL").arg(&k);
            pipe.cmd("HSET")
                .arg(&k)
                .arg(&self.opts.node_id)
                .arg(now_ms())
                .ignore();
            pipe.cmd("PEXPIRE")
                .arg(&k)
                .arg((self.opts.node_ttl * 4).as_millis() as i64)
                .ignore();
            pipe.cmd("SADD")
                .arg(self.keys.node_users(&self.opts.node_id))
                .arg(user.to_string())
                .ignore();
            self.alone(pipe, "presence not recorded").await
        })
    }

    fn session_closed(&self, user: UserId) -> BoxFuture<'_, bool> {
        Box::pin(async move {
            // A transaction too: of two nodes whose last sessions close at
            // once, only the later one finds the hash empty.
            let mut pipe = redis::pipe();
            pipe.atomic();
            pipe.cmd("HDEL")
                .arg(self.keys.presence(user))
                .arg(&self.opts.node_id)
                .ignore();
            if self.dir.is_some() {
                // The publisher removes the user from the node's set, in
                // order with the announcements.
                self.announce(user);
            } else {
                pipe.cmd("SREM")
                    .arg(self.keys.node_users(&self.opts.node_id))
                    .arg(user.to_string())
                    .ignore();
            }
            // In the same round trip: who holds the user now.
            pipe.cmd("HGETALL").arg(self.keys.presence(user));
            self.alone(pipe, "presence not cleared").await
        })
    }

    fn take_departures(&self) -> Option<mpsc::UnboundedReceiver<UserId>> {
        match self.departures.lock() {
            Ok(mut g) => g.take(),
            Err(p) => p.into_inner().take(),
        }
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.stopped.store(true, Ordering::Release);
            let mut conn = self.link.conn();
            let mut pipe = redis::pipe();
            for u in self.hub.users() {
                pipe.cmd("HDEL")
                    .arg(self.keys.presence(u))
                    .arg(&self.opts.node_id)
                    .ignore();
            }
            pipe.cmd("DEL")
                .arg(self.keys.node_users(&self.opts.node_id))
                .ignore();
            pipe.cmd("HDEL")
                .arg(&self.keys.nodes)
                .arg(&self.opts.node_id)
                .ignore();
            if let Err(e) = pipe.query_async::<()>(&mut conn).await {
                tracing::warn!(error = %e, "node not deregistered");
            }
        })
    }
}

/// The nodes registered under `prefix` (for `parley admin nodes`).
pub async fn list_nodes(target: &RedisTarget, prefix: &str) -> Result<Vec<NodeInfo>, BusError> {
    let mut conn = connect_once(target).await?;
    let raw: HashMap<String, String> = redis::cmd("HGETALL")
        .arg(Keys::new(prefix, target.is_cluster()).nodes)
        .query_async(&mut conn)
        .await
        .map_err(err)?;
    let mut nodes: Vec<NodeInfo> = raw
        .values()
        .filter_map(|j| serde_json::from_str(j).ok())
        .collect();
    nodes.sort_by_key(|n| n.started_at);
    Ok(nodes)
}

/// Publishes one envelope to every node under `prefix` from outside the
/// cluster (`parley admin`: an infobase unregistered from the command line
/// closes its users' open sessions too). Returns how many nodes listened.
pub async fn publish_once(
    target: &RedisTarget,
    prefix: &str,
    env: &Envelope,
) -> Result<u64, BusError> {
    let mut conn = connect_once(target).await?;
    let keys = Keys::new(prefix, target.is_cluster());
    let payload = encode("admin", env);
    if !target.is_cluster() {
        return redis::cmd("PUBLISH")
            .arg(&keys.channel)
            .arg(payload)
            .query_async(&mut conn)
            .await
            .map_err(err);
    }
    // A cluster: to every live node's own channel. Nobody listening on a
    // live node's channel means a shard is failing over or that node is
    // subscribing again: asked again, with a fresh view of the cluster, a
    // few times before the node is counted out.
    let now = Utc::now();
    let mut heard = 0;
    for node in list_nodes(target, prefix).await? {
        if !node.alive(now) {
            continue;
        }
        let channel = keys.node_channel(&node.id);
        for attempt in 0..ADMIN_PUBLISH_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(ADMIN_PUBLISH_RETRY).await;
                conn = connect_once(target).await?;
            }
            let n: u64 = redis::cmd("SPUBLISH")
                .arg(&channel)
                .arg(&payload)
                .query_async(&mut conn)
                .await
                .map_err(err)?;
            if n > 0 {
                heard += n;
                break;
            }
        }
    }
    Ok(heard)
}

/// How often `publish_once` tries a live node's channel nobody listens on,
/// and how long it waits between tries (a failover settles within the
/// cluster's node timeout, a resubscription within a heartbeat).
const ADMIN_PUBLISH_ATTEMPTS: u32 = 10;
const ADMIN_PUBLISH_RETRY: Duration = Duration::from_millis(300);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_survive_the_wire() {
        let env = Envelope {
            targets: vec![UserId::new_random(), UserId::new_random()],
            position: Some((ConversationId::new_random(), 7)),
            recipients: None,
            author: Some(UserId::new_random()),
            frame: ByteString::from("{\"type\":\"event\",\"text\":\"a\\nb\"}"),
            resync: false,
            revoke: None,
            session: None,
        };
        let (node, back) = decode(&encode("n1", &env)).expect("decode");
        assert_eq!(node, "n1");
        assert_eq!(back.targets, env.targets);
        assert_eq!(back.position, env.position);
        assert_eq!(back.author, env.author);
        assert_eq!(back.frame, env.frame);
        assert!(decode(b"garbage").is_none());
    }

    #[test]
    fn a_node_knows_its_own_envelopes_by_their_first_bytes() {
        let env = Envelope {
            targets: vec![UserId::new_random()],
            position: None,
            recipients: None,
            author: None,
            frame: ByteString::from("{}"),
            resync: true,
            revoke: None,
            session: None,
        };
        let wire = encode("n1", &env);
        assert!(wire.starts_with(&published_by("n1")));
        assert!(!wire.starts_with(&published_by("n")));
        assert!(!encode("n10", &env).starts_with(&published_by("n1")));
        assert!(!encode("n\"1", &env).starts_with(&published_by("n")));
    }
}
