//! The `seq`s a resyncing session compares with, read from PostgreSQL for
//! all the sessions of a node that ask together.
//!
//! When the bus may have lost events (its subscription came back, another
//! node could not publish), every session of the node resyncs at once and
//! asks for the latest `seq` of each of its user's conversations: ten
//! thousand sessions were ten thousand queries against a database that had
//! just been through the same outage. Here one read runs at a time per
//! node, for every user whose session asked before it started (up to
//! [`USERS_PER_READ`]); who asks while it runs is answered by the next.
//!
//! A shared answer is as fresh as the session's own would have been: each
//! asker's read starts after it asked.

use crate::{Error, Result, Service};
use parley_core::{actor::UserActor, UserId};
use parley_store::{ConversationSeq, MemberSeq, Store};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::oneshot;

/// Most users one read asks for (their memberships come back as rows);
/// the others wait for the next read.
const USERS_PER_READ: usize = 500;

type Answer = oneshot::Sender<Result<Vec<ConversationSeq>>>;

/// The askers waiting for a read, and whether one runs.
#[derive(Default)]
pub(crate) struct SeqReads {
    queue: Arc<Mutex<Queue>>,
}

#[derive(Default)]
struct Queue {
    waiting: Vec<(UserId, Answer)>,
    reading: bool,
}

fn lock(queue: &Mutex<Queue>) -> MutexGuard<'_, Queue> {
    // The queue stays consistent under any panic (a push or a drain).
    queue
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Service {
    /// The `last_seq` of every conversation the user is a member of, read
    /// with those of the other sessions of this node that ask meanwhile.
    pub async fn member_seqs(&self, me: &UserActor) -> Result<Vec<ConversationSeq>> {
        let (answer, answered) = oneshot::channel();
        let lead = {
            let mut q = lock(&self.seq_reads.queue);
            q.waiting.push((me.id(), answer));
            !std::mem::replace(&mut q.reading, true)
        };
        if lead {
            let reader = Reader {
                queue: Arc::clone(&self.seq_reads.queue),
                finished: false,
            };
            tokio::spawn(reader.run(self.store.clone()));
        }
        answered
            .await
            .map_err(|_| Error::unavailable("the read of conversations' seqs stopped"))?
    }
}

/// Reads for the waiting askers until none is left. Dropped before that
/// (its runtime stopped), it lets the next asker start a reader, and the
/// askers it leaves get `unavailable` (a session tries again later).
struct Reader {
    queue: Arc<Mutex<Queue>>,
    /// Ended with nobody waiting (and said so under the queue's lock).
    finished: bool,
}

impl Reader {
    async fn run(mut self, store: Store) {
        loop {
            let batch: Vec<(UserId, Answer)> = {
                let mut q = lock(&self.queue);
                if q.waiting.is_empty() {
                    q.reading = false;
                    self.finished = true;
                    return;
                }
                let n = q.waiting.len().min(USERS_PER_READ);
                q.waiting.drain(..n).collect()
            };
            metrics::counter!("parley_resync_reads_total").increment(1);
            let mut users: Vec<UserId> = batch.iter().map(|(u, _)| *u).collect();
            users.sort_unstable();
            users.dedup();
            metrics::histogram!("parley_resync_read_users").record(users.len() as f64);
            match store.members_seqs(&users).await {
                Ok(rows) => {
                    let by_user = by_user(rows);
                    for (user, answer) in batch {
                        let seqs = by_user.get(&user).cloned().unwrap_or_default();
                        let _ = answer.send(Ok(seqs));
                    }
                }
                Err(e) => {
                    let e = Error::from(e);
                    for (_, answer) in batch {
                        let _ = answer.send(Err(e.clone()));
                    }
                }
            }
        }
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let mut q = lock(&self.queue);
        q.reading = false;
        q.waiting.clear();
    }
}

fn by_user(rows: Vec<MemberSeq>) -> HashMap<UserId, Vec<ConversationSeq>> {
    let mut out: HashMap<UserId, Vec<ConversationSeq>> = HashMap::new();
    for r in rows {
        out.entry(r.user_id).or_default().push(r.seq);
    }
    out
}
