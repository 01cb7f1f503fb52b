//! Group commit of members' sends. A send waits in the queue of the worker
//! its conversation hashes to; a worker takes everything waiting (up to
//! `commit.batch_max`) and commits it in one transaction while the next
//! batch gathers. No timer by default: under light load a batch is one
//! send and commits at once; under heavy load the batches grow and the
//! database does a few round trips per batch instead of several per send.
//!
//! `commit.linger_ms` (0 by default) trades latency for PostgreSQL time:
//! while sends keep coming, a batch also waits until its oldest send is
//! that old (or the batch is full). A transaction costs PostgreSQL about as
//! much to start as four sends cost to write (pgbench on the function:
//! ~0.3 ms a call, ~70 µs a send), so at moderate rates the batches of one
//! or two spend most of the database's time starting transactions; with a
//! wait of 1 ms PostgreSQL took ~30 % less CPU at 1 000–2 250 msg/s, and
//! the median send waited 1.5–3 ms longer (docs/benchmarks.md, session 16).
//!
//! A conversation always maps to the same worker, so its sends commit in
//! the order they were queued, and the worker fans each batch out in `seq`
//! order before it answers the senders: the ack follows the commit, and
//! sessions see no gap that a reordering of fan-outs would cause.

use crate::config::CommitConfig;
use crate::fanout;
use crate::push::PushTap;
use crate::{Error, Posted, Result};
use metrics::{Counter, Histogram};
use parley_bus::Bus;
use parley_core::protocol::Event;
use parley_core::{ConversationId, SubscriberId};
use parley_store::{
    BatchedSend, JoinPolicy, NewMessageRow, PostOutcome, Store, StoreError, StoredEvent,
};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

struct Pending {
    send: BatchedSend,
    reply: oneshot::Sender<Result<Posted>>,
    queued: Instant,
}

/// The handles a worker counts with.
#[derive(Clone)]
pub(crate) struct CommitMetrics {
    pub commits: Counter,
    pub retries: Counter,
    pub fanout_targets: Histogram,
    pub batch_size: Histogram,
    pub wait_seconds: Histogram,
    pub commit_seconds: Histogram,
}

/// Fans committed sends out and counts them.
struct Announcer {
    bus: Arc<dyn Bus>,
    push: Arc<PushTap>,
    metrics: CommitMetrics,
}

/// What a worker needs: the store to commit to, the bus to fan out on.
struct Worker {
    store: Store,
    announcer: Arc<Announcer>,
    batch_max: usize,
    linger: Duration,
}

pub(crate) struct GroupCommit {
    queues: Vec<mpsc::Sender<Pending>>,
    announcer: Arc<Announcer>,
}

impl GroupCommit {
    /// Starts the workers on a thread of their own; they stop, and the
    /// thread ends, when the last handle on the queues is dropped.
    pub(crate) fn start(
        cfg: &CommitConfig,
        store: &Store,
        bus: &Arc<dyn Bus>,
        push: &Arc<PushTap>,
        metrics: CommitMetrics,
    ) -> Self {
        let announcer = Arc::new(Announcer {
            bus: Arc::clone(bus),
            push: Arc::clone(push),
            metrics,
        });
        // The workers' connections are their own and opened on their own
        // thread: a connection's I/O is driven by the runtime that opened
        // it, and the HTTP workers' runtimes, busy with sessions, would
        // notice the database's answers late.
        let own = store
            .with_own_pool(cfg.workers as u32)
            .unwrap_or_else(|_| store.clone());
        let mut runs = Vec::new();
        let queues = (0..cfg.workers.max(1))
            .map(|_| {
                let (tx, rx) = mpsc::channel(cfg.queue.max(1));
                let worker = Worker {
                    store: own.clone(),
                    announcer: Arc::clone(&announcer),
                    batch_max: cfg.batch_max.max(1),
                    linger: Duration::from_millis(cfg.linger_ms),
                };
                runs.push(worker.run(rx));
                tx
            })
            .collect();
        let all = futures_util::future::join_all(runs);
        match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => {
                let thread = std::thread::Builder::new()
                    .name("parley-commit".into())
                    .spawn(move || {
                        rt.block_on(all);
                    });
                if let Err(e) = thread {
                    // The queues' receivers went with it: sends answer
                    // `unavailable` rather than wait.
                    tracing::error!(error = %e, "cannot start the commit thread");
                }
            }
            Err(e) => {
                // Still correct on the caller's runtime, only slower.
                tracing::warn!(error = %e, "no commit runtime; committing on the server's");
                tokio::spawn(all);
            }
        }
        Self { queues, announcer }
    }

    /// Fans out and counts a send committed on its own.
    pub(crate) fn announce(&self, outcome: PostOutcome) -> Posted {
        self.announcer.announce(outcome)
    }

    /// Commits a member's send with whatever else is waiting, fans it out,
    /// and answers once both are done.
    pub(crate) async fn send(
        &self,
        conversation: ConversationId,
        subscriber: SubscriberId,
        row: NewMessageRow,
    ) -> Result<Posted> {
        let (_, low) = conversation.0.as_u64_pair();
        let queue = &self.queues[(low % self.queues.len() as u64) as usize];
        let (reply, answer) = oneshot::channel();
        let pending = Pending {
            send: BatchedSend {
                conversation,
                subscriber,
                row,
            },
            reply,
            queued: Instant::now(),
        };
        if queue.send(pending).await.is_err() {
            return Err(Error::unavailable("the node is shutting down"));
        }
        answer
            .await
            .map_err(|_| Error::unavailable("the commit worker stopped"))?
    }
}

/// A committed batch on its way to the fan-out: each send's outcome and
/// the sender waiting for it.
struct Done {
    outcomes: Vec<Result<PostOutcome>>,
    replies: Vec<oneshot::Sender<Result<Posted>>>,
}

impl Worker {
    /// Commits batches and, alongside, fans out the previous one: the next
    /// statement is under way while the last batch's frames are built.
    /// One fan-out loop per worker keeps its batches in commit order.
    async fn run(self, rx: mpsc::Receiver<Pending>) {
        let (done_tx, done_rx) = mpsc::channel::<Done>(4);
        let announcer = Arc::clone(&self.announcer);
        futures_util::future::join(
            self.commit_loop(rx, done_tx),
            announce_loop(announcer, done_rx),
        )
        .await;
    }

    async fn commit_loop(&self, mut rx: mpsc::Receiver<Pending>, done: mpsc::Sender<Done>) {
        let mut batch = Vec::with_capacity(self.batch_max);
        let mut last_end: Option<Instant> = None;
        while rx.recv_many(&mut batch, self.batch_max).await > 0 {
            self.gather(&mut rx, &mut batch, last_end).await;
            let m = &self.announcer.metrics;
            m.batch_size.record(batch.len() as f64);
            let started = Instant::now();
            for p in &batch {
                m.wait_seconds
                    .record(started.duration_since(p.queued).as_secs_f64());
            }
            let (sends, replies): (Vec<BatchedSend>, Vec<_>) =
                batch.drain(..).map(|p| (p.send, p.reply)).unzip();
            let result = self.store.post_batch(&sends).await;
            let ended = Instant::now();
            last_end = Some(ended);
            m.commit_seconds
                .record(ended.duration_since(started).as_secs_f64());
            let outcomes = match result {
                Ok(outcomes) => outcomes
                    .into_iter()
                    .map(|o| o.map_err(Error::from))
                    .collect(),
                Err(StoreError::Unavailable(why)) => sends
                    .iter()
                    .map(|_| Err(Error::from(StoreError::Unavailable(why.clone()))))
                    .collect(),
                // Nothing committed; a statement failed for one send or for
                // all. Each one alone gets its own answer.
                Err(e) => {
                    tracing::warn!(error = %e, sends = sends.len(), "batch failed; committing its sends one by one");
                    let mut outcomes = Vec::with_capacity(sends.len());
                    for s in &sends {
                        let join = JoinPolicy::MemberOnly {
                            subscriber: s.subscriber,
                        };
                        let outcome = self.store.post_message(s.conversation, &s.row, join).await;
                        outcomes.push(outcome.map_err(Error::from));
                    }
                    outcomes
                }
            };
            if done.send(Done { outcomes, replies }).await.is_err() {
                break;
            }
        }
    }
}

impl Worker {
    /// Lets a batch fill while sends keep coming: until its oldest send has
    /// waited `linger` or it holds `batch_max`. After a quiet spell (the
    /// previous batch ended `linger` ago or more) it returns at once, so a
    /// lone send never waits. Sends that queued during the previous commit
    /// are old enough already and do not wait again.
    async fn gather(
        &self,
        rx: &mut mpsc::Receiver<Pending>,
        batch: &mut Vec<Pending>,
        last_end: Option<Instant>,
    ) {
        // Without a linger (the default) nothing waits: not even the clock
        // is read.
        if self.linger.is_zero() {
            return;
        }
        let steady = last_end.is_some_and(|end| end.elapsed() < self.linger);
        if !steady {
            return;
        }
        let Some(oldest) = batch.first().map(|p| p.queued) else {
            return;
        };
        let deadline = tokio::time::Instant::from_std(oldest + self.linger);
        while batch.len() < self.batch_max {
            let room = self.batch_max - batch.len();
            tokio::select! {
                got = rx.recv_many(batch, room) => if got == 0 { return },
                _ = tokio::time::sleep_until(deadline) => return,
            }
        }
    }
}

/// Fans out committed batches in order and answers their senders.
async fn announce_loop(announcer: Arc<Announcer>, mut done: mpsc::Receiver<Done>) {
    while let Some(Done { outcomes, replies }) = done.recv().await {
        for (reply, outcome) in replies.into_iter().zip(outcomes) {
            // A sender that went away (its session closed) learns of its
            // message on resume.
            let _ = reply.send(outcome.map(|o| announcer.announce(o)));
        }
    }
}

impl Announcer {
    /// Fans out one committed send (again, for a retry: the node that
    /// committed it may have died before its fan-out) and counts it.
    fn announce(&self, outcome: PostOutcome) -> Posted {
        let PostOutcome {
            message,
            fresh,
            committed,
        } = outcome;
        self.metrics
            .fanout_targets
            .record(committed.members.len() as f64);
        if fresh {
            self.metrics.commits.increment(1);
            fanout::publish(self.bus.as_ref(), &self.push, committed);
        } else {
            self.metrics.retries.increment(1);
            let ev = StoredEvent {
                conversation_id: message.conversation_id,
                seq: message.seq,
                recipients: message.recipients.clone(),
                event: Event::MessageCreated {
                    conversation_id: message.conversation_id,
                    seq: message.seq,
                    message: message.clone(),
                },
            };
            fanout::publish_event(self.bus.as_ref(), ev, committed.members);
        }
        Posted { message, fresh }
    }
}
