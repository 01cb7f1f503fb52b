//! The Redis the bus talks to: one address, the master a set of Redis
//! Sentinels names, or a Redis Cluster (whose client follows failovers and
//! slot moves by itself). A connection manager reconnects to the address it was
//! made for; after a failover that address is a dead server or a read-only
//! replica, so when a command fails the link asks the Sentinels again and,
//! if they name another master, moves every later command and the next
//! subscription there. What went missing meanwhile is recovered the usual
//! way: the publisher marks the bus dirty (the other nodes resync) and the
//! new subscription resyncs this node's sessions.

use crate::BusError;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelServerType};
use redis::{Cmd, Pipeline, RedisFuture, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Where the cluster's Redis is.
#[derive(Clone, Debug)]
pub enum RedisTarget {
    /// One Redis at this URL (`redis://…`).
    Single(String),
    /// The master that these Sentinels (`redis://host:26379`) know as
    /// `master`.
    Sentinel {
        sentinels: Vec<String>,
        master: String,
    },
    /// A Redis Cluster reached through any of these nodes (`redis://…`);
    /// the bus uses sharded pub/sub there.
    Cluster(Vec<String>),
}

impl RedisTarget {
    /// What the logs and errors name.
    pub fn describe(&self) -> String {
        match self {
            RedisTarget::Single(url) => url.clone(),
            RedisTarget::Sentinel { master, sentinels } => {
                format!("master {master:?} of Sentinels {}", sentinels.join(", "))
            }
            RedisTarget::Cluster(nodes) => format!("Redis Cluster at {}", nodes.join(", ")),
        }
    }

    pub fn is_cluster(&self) -> bool {
        matches!(self, RedisTarget::Cluster(_))
    }
}

/// A command connection to whichever kind of Redis the bus uses: commands
/// and single-slot pipelines run the same on both.
#[derive(Clone)]
pub(crate) enum Conn {
    One(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::One(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::One(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::One(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// A cluster client: short timeouts so a dead master costs seconds, not
/// minutes, before the client asks the cluster where the slots went.
pub(crate) fn cluster_builder(nodes: &[String]) -> ClusterClientBuilder {
    ClusterClientBuilder::new(nodes.to_vec())
        .connection_timeout(Duration::from_secs(2))
        .response_timeout(Duration::from_secs(2))
        .retries(6)
        .max_retry_wait(1000)
        .min_retry_wait(50)
}

async fn cluster_conn(client: &ClusterClient) -> Result<ClusterConnection, BusError> {
    match tokio::time::timeout(Duration::from_secs(5), client.get_async_connection()).await {
        Ok(r) => r.map_err(err),
        Err(_) => Err(BusError::Unavailable(
            "no Redis Cluster node answered".into(),
        )),
    }
}

fn err(e: redis::RedisError) -> BusError {
    BusError::Unavailable(e.to_string())
}

/// The current server's client and command connection (for a cluster:
/// a connection to all of it; `client` is then unused).
struct Current {
    client: Option<redis::Client>,
    conn: Conn,
    addr: String,
}

pub(crate) struct Link {
    target: RedisTarget,
    current: RwLock<Current>,
    /// A lookup of the master is under way (one at a time).
    asking: AtomicBool,
}

/// The client for the target's current server (for Sentinel: the master
/// they name now, checked to be one).
async fn resolve(target: &RedisTarget) -> Result<redis::Client, BusError> {
    match target {
        RedisTarget::Cluster(_) => Err(BusError::Unavailable(
            "a Redis Cluster has no single server".into(),
        )),
        RedisTarget::Single(url) => redis::Client::open(url.as_str()).map_err(err),
        RedisTarget::Sentinel { sentinels, master } => {
            let mut sentinel = SentinelClient::build(
                sentinels.clone(),
                master.clone(),
                None,
                SentinelServerType::Master,
            )
            .map_err(err)?;
            let ask = sentinel.async_get_client();
            match tokio::time::timeout(Duration::from_secs(3), ask).await {
                Ok(r) => r.map_err(err),
                Err(_) => Err(BusError::Unavailable(format!(
                    "no Sentinel answered for {master:?}"
                ))),
            }
        }
    }
}

async fn manager(client: redis::Client) -> Result<ConnectionManager, BusError> {
    let cfg = ConnectionManagerConfig::new()
        .set_connection_timeout(Duration::from_secs(2))
        .set_response_timeout(Duration::from_secs(2))
        .set_number_of_retries(2)
        .set_max_delay(1000);
    ConnectionManager::new_with_config(client, cfg)
        .await
        .map_err(err)
}

fn addr_of(client: &redis::Client) -> String {
    client.get_connection_info().addr.to_string()
}

impl Link {
    /// Connects now (the server must answer).
    pub(crate) async fn open(target: RedisTarget) -> Result<Arc<Link>, BusError> {
        let current = match &target {
            RedisTarget::Cluster(nodes) => {
                let client = cluster_builder(nodes).build().map_err(err)?;
                Current {
                    client: None,
                    conn: Conn::Cluster(cluster_conn(&client).await?),
                    addr: target.describe(),
                }
            }
            _ => {
                let client = resolve(&target).await?;
                Current {
                    conn: Conn::One(manager(client.clone()).await?),
                    addr: addr_of(&client),
                    client: Some(client),
                }
            }
        };
        Ok(Arc::new(Link {
            target,
            current: RwLock::new(current),
            asking: AtomicBool::new(false),
        }))
    }

    /// Reads the current server under the lock, cloning only what the
    /// caller takes (commands run per publish batch: no more than a handle).
    fn with_current<T>(&self, f: impl FnOnce(&Current) -> T) -> T {
        match self.current.read() {
            Ok(c) => f(&c),
            Err(p) => f(&p.into_inner()),
        }
    }

    /// A connection for commands (cheap: a handle on the shared one).
    pub(crate) fn conn(&self) -> Conn {
        self.with_current(|c| c.conn.clone())
    }

    /// A client for the current server, to open a subscription with (None
    /// for a cluster: its subscriber builds its own cluster client).
    pub(crate) fn client(&self) -> Option<redis::Client> {
        self.with_current(|c| c.client.clone())
    }

    /// A command failed. With Sentinel, asks in the background whether the
    /// master moved (one lookup at a time; the next failure asks again).
    pub(crate) fn failed(self: &Arc<Self>) {
        if !matches!(self.target, RedisTarget::Sentinel { .. })
            || self.asking.swap(true, Ordering::AcqRel)
        {
            return;
        }
        let link = Arc::clone(self);
        tokio::spawn(async move {
            if let Err(e) = link.follow().await {
                tracing::debug!(error = %e, "Redis master lookup failed");
            }
            // Not more than a lookup every half second while Redis is away.
            tokio::time::sleep(Duration::from_millis(500)).await;
            link.asking.store(false, Ordering::Release);
        });
    }

    /// Asks for the current master and moves there when it changed.
    async fn follow(&self) -> Result<(), BusError> {
        let client = resolve(&self.target).await?;
        let addr = addr_of(&client);
        if self.with_current(|c| c.addr == addr) {
            return Ok(());
        }
        let conn = Conn::One(manager(client.clone()).await?);
        tracing::info!(master = %addr, "bus follows the new Redis master");
        let next = Current {
            client: Some(client),
            conn,
            addr,
        };
        match self.current.write() {
            Ok(mut c) => *c = next,
            Err(p) => *p.into_inner() = next,
        }
        Ok(())
    }
}

/// A one-off command connection for tools (`parley admin`).
pub(crate) async fn connect_once(target: &RedisTarget) -> Result<Conn, BusError> {
    match target {
        RedisTarget::Cluster(nodes) => {
            let client = cluster_builder(nodes).build().map_err(err)?;
            Ok(Conn::Cluster(cluster_conn(&client).await?))
        }
        _ => Ok(Conn::One(manager(resolve(target).await?).await?)),
    }
}
