//! The bus over a Redis Cluster with sharded pub/sub (Redis 7 `SSUBSCRIBE`
//! / `SPUBLISH`). On one plain channel every node reads every message; here
//! each node listens on its own channel (`PREFIX:node:{ID}`, which the
//! cluster places by the node's id, so the channels spread over the shards)
//! and a publisher sends an envelope only to the nodes that hold sessions of
//! its target users. A node with none of them reads nothing.
//!
//! Who is where: the [`Directory`], this node's copy of user → nodes. A node
//! tells the others through the directory channel `{PREFIX}:dir` when a
//! user's first session opens on it or the last one closes (in the order it
//! happened: one publisher task sends them, and writes the node's
//! `node-users` set in the same pipeline), and every node rebuilds its copy
//! from those sets when it (re)subscribes, when another node lost messages,
//! and every [`REBUILD_EVERY`] heartbeats. A copy that lags a user's arrival
//! by a moment could route a message past the new session; so the node that
//! announced the arrival, [`JOIN_SETTLE`] after Redis took it, asks that
//! user's sessions to compare their `seq`s with PostgreSQL. A copy that lags
//! a departure only costs a message the other node ignores.
//!
//! All keys share the hash tag `{PREFIX}` (one slot: pipelines and the
//! directory channel live on one shard); only the node channels spread.

use crate::link::{cluster_builder, Link};
use crate::redis_bus::{decode, Health, Keys, NodeInfo};
use crate::Hub;
use parley_core::UserId;
use redis::{AsyncCommands, PushInfo, PushKind, Value};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

/// How long after Redis took a user's arrival the node rechecks that user's
/// sessions against PostgreSQL (covers publishers that routed a message by
/// a copy of the directory that had not heard of the arrival yet).
pub(crate) const JOIN_SETTLE: Duration = Duration::from_millis(500);

/// The directory is rebuilt from Redis every this many heartbeats, whatever
/// happened (a repair for any announcement that went astray).
pub(crate) const REBUILD_EVERY: u32 = 6;

/// What a ping on the node's own channel carries (never a valid envelope:
/// envelopes have a header line).
const PING: &[u8] = b"ping";

/// One announcement on the directory channel.
#[derive(Serialize, Deserialize)]
pub(crate) struct Announce {
    /// The node.
    pub n: String,
    pub u: UserId,
    /// The user has sessions on the node (false: not any more).
    pub h: bool,
}

/// This node's copy of which nodes hold sessions of which users.
#[derive(Default)]
pub(crate) struct Directory {
    inner: Mutex<DirInner>,
}

#[derive(Default)]
struct DirInner {
    users: HashMap<UserId, Vec<Arc<str>>>,
    /// Every node known alive (heartbeat fresh at the last rebuild, or heard
    /// announcing since); broadcasts go to each.
    nodes: HashSet<Arc<str>>,
}

impl Directory {
    fn lock(&self) -> std::sync::MutexGuard<'_, DirInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn apply(&self, a: &Announce) {
        let mut d = self.lock();
        let node: Arc<str> = match d.nodes.get(a.n.as_str()) {
            Some(n) => Arc::clone(n),
            None => {
                let n: Arc<str> = Arc::from(a.n.as_str());
                d.nodes.insert(Arc::clone(&n));
                n
            }
        };
        let list = d.users.entry(a.u).or_default();
        let at = list.iter().position(|n| *n == node);
        match (a.h, at) {
            (true, None) => list.push(node),
            (false, Some(i)) => {
                list.swap_remove(i);
                if list.is_empty() {
                    d.users.remove(&a.u);
                }
            }
            _ => {}
        }
    }

    /// Replaces the copy with what Redis holds now.
    fn replace(&self, nodes: Vec<(String, Vec<UserId>)>) {
        let mut fresh = DirInner::default();
        for (id, users) in nodes {
            let node: Arc<str> = Arc::from(id.as_str());
            fresh.nodes.insert(Arc::clone(&node));
            for u in users {
                fresh.users.entry(u).or_default().push(Arc::clone(&node));
            }
        }
        *self.lock() = fresh;
    }

    /// The other nodes holding sessions of any of `targets`.
    pub(crate) fn route(&self, targets: &[UserId], me: &str) -> Vec<Arc<str>> {
        let d = self.lock();
        let mut out: Vec<Arc<str>> = Vec::new();
        for u in targets {
            for n in d.users.get(u).into_iter().flatten() {
                if &**n != me && !out.contains(n) {
                    out.push(Arc::clone(n));
                }
            }
        }
        out
    }

    /// Every other node known alive.
    pub(crate) fn others(&self, me: &str) -> Vec<Arc<str>> {
        self.lock()
            .nodes
            .iter()
            .filter(|n| &***n != me)
            .cloned()
            .collect()
    }
}

/// Reads every live node's users from Redis into the directory.
pub(crate) async fn rebuild(link: &Link, keys: &Keys, dir: &Directory) -> redis::RedisResult<()> {
    let mut conn = link.conn();
    let raw: HashMap<String, String> = conn.hgetall(&keys.nodes).await?;
    let now = chrono::Utc::now();
    let live: Vec<String> = raw
        .into_iter()
        .filter(|(_, json)| {
            serde_json::from_str::<NodeInfo>(json).is_ok_and(|info| info.alive(now))
        })
        .map(|(id, _)| id)
        .collect();
    let mut pipe = redis::pipe();
    for id in &live {
        pipe.cmd("SMEMBERS").arg(keys.node_users(id));
    }
    let sets: Vec<Vec<String>> = if live.is_empty() {
        Vec::new()
    } else {
        pipe.query_async(&mut conn).await?
    };
    dir.replace(
        live.into_iter()
            .zip(sets)
            .map(|(id, users)| {
                let users = users.iter().filter_map(|u| u.parse().ok()).collect();
                (id, users)
            })
            .collect(),
    );
    Ok(())
}

/// Why a subscription was given up.
type Lost = &'static str;

/// What the node's subscriber works with.
pub(crate) struct Listener {
    pub(crate) link: Arc<Link>,
    pub(crate) keys: Arc<Keys>,
    pub(crate) me: String,
    pub(crate) hub: Arc<Hub>,
    pub(crate) health: Arc<Health>,
    pub(crate) dir: Arc<Directory>,
    /// Ping period (the heartbeat).
    pub(crate) every: Duration,
}

impl Listener {
    /// The node's subscriptions (its own channel and the directory
    /// channel), re-established after any failure, each time followed by a
    /// rebuild of the directory and (after the first) a resync of every
    /// session. A shard can die without a word: the subscriber publishes a
    /// ping on its own channel every `every` and gives the subscription up
    /// when the ping has not come back by the next.
    pub(crate) async fn run(self, nodes: Vec<String>, queue: usize) {
        let mut backoff = Duration::from_millis(100);
        let mut first = true;
        let own = self.keys.node_channel(&self.me);
        loop {
            let (tx, rx) = mpsc::channel::<PushInfo>(queue.max(16));
            let overflow = Arc::new(AtomicBool::new(false));
            let full = Arc::clone(&overflow);
            // The cluster client hands pushes over without waiting: a full
            // queue is noted (and answered with a resync), never waited for.
            let sender = move |p: PushInfo| -> Result<(), ()> {
                if tx.try_send(p).is_err() {
                    full.store(true, Ordering::Release);
                }
                Ok(())
            };
            let connect = async {
                let client = cluster_builder(&nodes)
                    .use_protocol(redis::ProtocolVersion::RESP3)
                    .push_sender(sender)
                    .build()?;
                let mut conn = client.get_async_connection().await?;
                // One channel per call: they live in different slots.
                conn.ssubscribe(&own).await?;
                conn.ssubscribe(&self.keys.dir_channel).await?;
                // Subscribed first, read second: an announcement made
                // between the two is both in the sets and in the queue
                // (applying it twice changes nothing).
                rebuild(&self.link, &self.keys, &self.dir).await?;
                Ok::<_, redis::RedisError>(conn)
            };
            match tokio::time::timeout(self.every.max(Duration::from_secs(2)), connect).await {
                Ok(Ok(conn)) => {
                    backoff = Duration::from_millis(100);
                    self.health.listening.store(true, Ordering::Release);
                    if !first {
                        tracing::info!("bus subscription restored; resyncing sessions");
                        self.hub.resync_all();
                    }
                    let why = self.listen(conn, rx, &overflow, &own).await;
                    self.health.listening.store(false, Ordering::Release);
                    tracing::warn!(reason = why, "bus subscription lost");
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "bus subscribe failed"),
                Err(_) => tracing::warn!("bus subscribe timed out"),
            }
            first = false;
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }

    async fn rebuild(&self) {
        if let Err(e) = rebuild(&self.link, &self.keys, &self.dir).await {
            tracing::warn!(error = %e, "directory rebuild failed");
        }
    }

    /// Delivers what the subscriptions bring until they fail.
    async fn listen(
        &self,
        mut conn: redis::cluster_async::ClusterConnection,
        mut rx: mpsc::Receiver<PushInfo>,
        overflow: &AtomicBool,
        own: &str,
    ) -> Lost {
        let every = self.every;
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        // A ping is out and has not come back yet.
        let mut ping_out = false;
        let mut ticks = 0u32;
        loop {
            if overflow.swap(false, Ordering::AcqRel) {
                tracing::warn!("bus receive queue overflowed; resyncing sessions");
                self.hub.resync_all();
            }
            tokio::select! {
                push = rx.recv() => {
                    let Some(push) = push else { return "closed" };
                    match push.kind {
                        PushKind::SMessage => {}
                        PushKind::Disconnection => return "a cluster connection closed",
                        PushKind::SUnsubscribe => {
                            return "the cluster unsubscribed the node (slot moved)"
                        }
                        _ => continue,
                    }
                    if let (Some(Value::BulkString(channel)), Some(Value::BulkString(payload))) =
                        (push.data.first(), push.data.get(1))
                    {
                        if payload.as_slice() == PING {
                            ping_out = false;
                        } else {
                            self.received(channel, payload).await;
                        }
                    }
                }
                _ = tick.tick() => {
                    if ping_out {
                        return "own ping did not come back";
                    }
                    ticks += 1;
                    if ticks % REBUILD_EVERY == 0 {
                        self.rebuild().await;
                    }
                    let mut ping = redis::cmd("SPUBLISH");
                    ping.arg(own).arg(PING);
                    match tokio::time::timeout(every, ping.query_async::<i64>(&mut conn)).await {
                        Ok(Ok(n)) if n > 0 => ping_out = true,
                        Ok(Ok(_)) => return "not subscribed on the shard of its channel",
                        Ok(Err(_)) => return "ping failed",
                        Err(_) => return "no answer to ping",
                    }
                }
            }
        }
    }

    /// One message from the node's channel or the directory channel.
    async fn received(&self, channel: &[u8], payload: &[u8]) {
        self.hub.note_received_bytes(payload.len());
        if channel == self.keys.dir_channel.as_bytes() {
            match serde_json::from_slice::<Announce>(payload) {
                Ok(a) if a.n != self.me => self.dir.apply(&a),
                Ok(_) => {}
                Err(_) => tracing::warn!("undecodable directory announcement"),
            }
            return;
        }
        match decode(payload) {
            Some((node, env)) if env.resync => {
                if node != self.me {
                    self.hub.resync_all();
                    // Its announcements may have been lost too.
                    self.rebuild().await;
                }
            }
            Some((node, env)) if node != self.me => {
                self.hub.note_received();
                self.hub.deliver(&Arc::new(env))
            }
            Some(_) => {}
            None => tracing::warn!("undecodable bus message"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn announce(n: &str, u: UserId, h: bool) -> Announce {
        Announce { n: n.into(), u, h }
    }

    #[test]
    fn the_directory_routes_to_the_nodes_holding_the_targets() {
        let dir = Directory::default();
        let (a, b, c) = (
            UserId::new_random(),
            UserId::new_random(),
            UserId::new_random(),
        );
        dir.replace(vec![
            ("n1".into(), vec![a]),
            ("n2".into(), vec![b, a]),
            ("n3".into(), vec![]),
        ]);
        let mut to = dir.route(&[a, c], "n1");
        to.sort();
        assert_eq!(to, vec![Arc::<str>::from("n2")], "n1 itself is left out");
        assert!(dir.route(&[c], "n1").is_empty(), "nobody holds c");
        dir.apply(&announce("n3", c, true));
        assert_eq!(dir.route(&[c], "n1"), vec![Arc::<str>::from("n3")]);
        dir.apply(&announce("n3", c, true));
        assert_eq!(dir.route(&[c], "n1").len(), 1, "twice is once");
        dir.apply(&announce("n3", c, false));
        assert!(dir.route(&[c], "n1").is_empty());
        dir.apply(&announce("n3", c, false));
        let mut all = dir.others("n1");
        all.sort();
        assert_eq!(all, vec![Arc::<str>::from("n2"), Arc::<str>::from("n3")]);
        // A node heard of only by its announcement counts as alive.
        dir.apply(&announce("n4", b, true));
        assert_eq!(dir.others("n1").len(), 3);
        let mut to = dir.route(&[b], "n2");
        to.sort();
        assert_eq!(to, vec![Arc::<str>::from("n4")]);
    }

    #[test]
    fn node_channels_spread_and_keys_share_one_slot() {
        let keys = Keys::new("parley", true);
        assert_eq!(keys.node_channel("ab12"), "parley:node:{ab12}");
        assert_eq!(keys.nodes, "{parley}:nodes");
        assert_eq!(keys.dir_channel, "{parley}:dir");
        assert!(keys.node_users("ab12").starts_with("{parley}:"));
        let plain = Keys::new("parley", false);
        assert_eq!(plain.nodes, "parley:nodes");
        assert_eq!(plain.channel, "parley:events");
    }
}
