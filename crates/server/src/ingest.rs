//! Group commit for ingestion. Requests hand their events to one writer task and wait; the writer
//! takes everything queued, commits it in one transaction, then answers each request. Under load a
//! batch fills while the previous one commits, so one fsync covers many events; no request is
//! answered before its batch is committed.
//!
//! A batch is bounded in events and in deliveries: a request that fans out to many deliveries
//! commits alone (and no request may create more than `max_deliveries_per_request`, see
//! `api::events`), so no transaction, and no other workspace's wait for it, grows without bound.

use crate::dispatch::intake::Intake;
use crate::error::ApiError;
use crate::learn::EventTypeLearner;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use switchyard_store::{IngestOutcome, NewEvent, Store};
use tokio::sync::{mpsc, oneshot, Notify};

struct Job {
    events: Vec<NewEvent>,
    /// The deliveries of all its events, counted once when submitted.
    deliveries: usize,
    reply: oneshot::Sender<Result<Vec<IngestOutcome>, ()>>,
}

#[derive(Clone)]
pub struct IngestQueue {
    tx: mpsc::Sender<Job>,
    stats: Arc<IngestStats>,
}

/// What the writer has committed so far.
#[derive(Debug, Default)]
pub struct IngestStats {
    /// Transactions committed.
    pub batches: AtomicU64,
    /// Events (new or idempotent repeats) in those transactions.
    pub events: AtomicU64,
}

/// The most one transaction takes: events, and deliveries. The first request waiting is always
/// taken whole.
#[derive(Debug, Clone, Copy)]
pub struct BatchLimits {
    pub events: usize,
    pub deliveries: usize,
}

impl IngestQueue {
    /// Starts the writer. It stops once every queue handle is dropped and the queue is drained.
    pub fn start(
        store: Arc<dyn Store>,
        window_ms: i64,
        limits: BatchLimits,
        wake: Arc<Notify>,
        learner: Arc<EventTypeLearner>,
        intake: Arc<Intake>,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(4096);
        let stats = Arc::new(IngestStats::default());
        let handle = tokio::spawn(writer(rx, store, window_ms, limits, Wakes { dispatcher: wake, intake }, stats.clone(), learner));
        (Self { tx, stats }, handle)
    }

    pub fn stats(&self) -> &IngestStats {
        &self.stats
    }

    /// Stores events durably; returns once their transaction has committed.
    pub async fn submit(&self, events: Vec<NewEvent>) -> Result<Vec<IngestOutcome>, ApiError> {
        let (reply, answer) = oneshot::channel();
        let deliveries = events.iter().map(|e| e.deliveries.len()).sum();
        self.tx.send(Job { events, deliveries, reply }).await.map_err(|_| ApiError::unavailable("the server is shutting down"))?;
        match answer.await {
            Ok(Ok(outcomes)) => Ok(outcomes),
            _ => Err(ApiError::unavailable("the event could not be stored; retry shortly")),
        }
    }
}

/// The next transaction's requests. The oldest always goes in; then, in order, every other that
/// still fits. A big fan-out thus commits alone while the small requests behind it go with the
/// next batch, and it never waits behind more than one batch of them. What is not taken stays in
/// `pending`, in order.
fn take_batch(pending: &mut VecDeque<Job>, limits: BatchLimits) -> Vec<Job> {
    let Some(first) = pending.pop_front() else { return Vec::new() };
    let (mut events, mut deliveries) = (first.events.len(), first.deliveries);
    let mut jobs = vec![first];
    let mut i = 0;
    while i < pending.len() && events < limits.events && deliveries < limits.deliveries {
        let job = &pending[i];
        if events + job.events.len() <= limits.events && deliveries + job.deliveries <= limits.deliveries {
            events += job.events.len();
            deliveries += job.deliveries;
            jobs.extend(pending.remove(i));
        } else {
            i += 1;
        }
    }
    jobs
}

/// Whom the writer tells about the deliveries it stored.
struct Wakes {
    /// Claims pending deliveries.
    dispatcher: Arc<Notify>,
    /// Takes fresh deliveries leased as they are stored (see [`Intake`]).
    intake: Arc<Intake>,
}

async fn writer(
    mut rx: mpsc::Receiver<Job>,
    store: Arc<dyn Store>,
    window_ms: i64,
    limits: BatchLimits,
    wakes: Wakes,
    stats: Arc<IngestStats>,
    learner: Arc<EventTypeLearner>,
) {
    // Requests taken from the channel and not yet committed, oldest first.
    let mut pending: VecDeque<Job> = VecDeque::new();
    loop {
        if pending.is_empty() {
            match rx.recv().await {
                Some(job) => pending.push_back(job),
                None => break,
            }
        }
        while pending.len() < 4096 {
            match rx.try_recv() {
                Ok(job) => pending.push_back(job),
                Err(_) => break,
            }
        }
        let mut jobs = take_batch(&mut pending, limits);
        let sizes: Vec<usize> = jobs.iter().map(|j| j.events.len()).collect();
        let mut batch: Vec<NewEvent> = jobs.iter_mut().flat_map(|j| std::mem::take(&mut j.events)).collect();
        let now = switchyard_core::now_millis();
        let handed = wakes.intake.lease(&mut batch, now).await;
        let result = store.ingest(&batch, now, window_ms).await;
        match result {
            Ok(outcomes) => {
                stats.batches.fetch_add(1, Ordering::Relaxed);
                stats.events.fetch_add(batch.len() as u64, Ordering::Relaxed);
                let created = outcomes.iter().filter(|o| matches!(o, IngestOutcome::Created)).count();
                metrics::counter!("switchyard_events_ingested_total").increment(created as u64);
                metrics::histogram!("switchyard_ingest_batch_events").record(batch.len() as f64);
                // Deliveries stored pending are claimed; those leased are handed over at once.
                // The batch counts as committed (in the lanes) before the claim it wakes begins.
                handed.deliver(&batch, &outcomes).await;
                let pending = |e: &NewEvent| e.deliveries.iter().any(|d| d.lease.is_none());
                if batch.iter().zip(&outcomes).any(|(e, o)| matches!(o, IngestOutcome::Created) && pending(e)) {
                    wakes.dispatcher.notify_one();
                }
                let created: Vec<bool> = outcomes.iter().map(|o| matches!(o, IngestOutcome::Created)).collect();
                let mut outcomes = outcomes.into_iter();
                for (job, size) in jobs.into_iter().zip(sizes) {
                    let _ = job.reply.send(Ok(outcomes.by_ref().take(size).collect()));
                }
                // After the answers: learning event types never delays one.
                learner.note(&batch, &created);
            }
            Err(e) => {
                drop(handed);
                tracing::error!(error = %e, events = batch.len(), "ingest batch failed; nothing in it was acknowledged");
                for job in jobs {
                    let _ = job.reply.send(Err(()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_core::ids::*;
    use switchyard_core::model::{Event, EventStatus};

    fn event(ws: &WorkspaceId, key: Option<&str>) -> NewEvent {
        NewEvent {
            event: Event {
                id: EventId::generate(),
                workspace_id: ws.clone(),
                event: "load.test".into(),
                resource: None,
                resource_id: None,
                payload: "{}".into(),
                occurred_at: None,
                received_at: switchyard_core::now_millis(),
                status: EventStatus::Completed,
                test: false,
            },
            idempotency_key: key.map(str::to_owned),
            monthly_cap: None,
            deliveries: Vec::new(),
        }
    }

    /// A job of `n` events with `d` deliveries in all (only the counts matter to batching).
    fn job(n: usize, d: usize) -> Job {
        let ws = WorkspaceId::generate();
        Job { events: (0..n).map(|_| event(&ws, None)).collect(), deliveries: d, reply: oneshot::channel().0 }
    }

    #[test]
    fn a_large_fan_out_commits_alone_and_small_requests_behind_it_go_first() {
        let limits = BatchLimits { events: 100, deliveries: 1_000 };
        // Small, large, small, small: the large one does not fit beside the first small one.
        let mut pending: VecDeque<Job> = [job(1, 1), job(10, 1_000), job(1, 3), job(1, 0)].into_iter().collect();
        let shape = |jobs: &[Job]| jobs.iter().map(|j| (j.events.len(), j.deliveries)).collect::<Vec<_>>();
        assert_eq!(shape(&take_batch(&mut pending, limits)), [(1, 1), (1, 3), (1, 0)]);
        // It is then the oldest, and goes first, alone.
        assert_eq!(shape(&take_batch(&mut pending, limits)), [(10, 1_000)]);
        assert!(pending.is_empty());
        // The oldest always goes, even over the limits; events count as well as deliveries.
        let mut pending: VecDeque<Job> = [job(150, 0), job(60, 0), job(50, 0), job(40, 0)].into_iter().collect();
        assert_eq!(shape(&take_batch(&mut pending, limits)), [(150, 0)]);
        assert_eq!(shape(&take_batch(&mut pending, limits)), [(60, 0), (40, 0)]);
        assert_eq!(shape(&take_batch(&mut pending, limits)), [(50, 0)]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_requests_share_transactions_and_each_gets_its_own_answer() {
        let dir = tempfile::tempdir().unwrap();
        let store = switchyard_store::open(&switchyard_store::testing::database_url(dir.path()).await).await.unwrap();
        let (queue, _writer) = IngestQueue::start(
            store.clone(),
            60_000,
            BatchLimits { events: 5_000, deliveries: 10_000 },
            Arc::new(Notify::new()),
            Default::default(),
            Default::default(),
        );
        let ws = WorkspaceId::generate();
        let mut submissions = tokio::task::JoinSet::new();
        for i in 0..500 {
            let (queue, ws) = (queue.clone(), ws.clone());
            // Every tenth request repeats one idempotency key: exactly one of them creates the event.
            let key = (i % 10 == 0).then_some("same-key");
            submissions.spawn(async move { queue.submit(vec![event(&ws, key)]).await.unwrap() });
        }
        let mut created = 0;
        let mut duplicates = 0;
        while let Some(outcomes) = submissions.join_next().await {
            let outcomes = outcomes.unwrap();
            assert_eq!(outcomes.len(), 1);
            match outcomes[0] {
                IngestOutcome::Created => created += 1,
                IngestOutcome::Duplicate { .. } => duplicates += 1,
                IngestOutcome::OverQuota => panic!("no cap was set"),
            }
        }
        assert_eq!((created, duplicates), (451, 49));
        let batches = queue.stats().batches.load(Ordering::Relaxed);
        assert_eq!(queue.stats().events.load(Ordering::Relaxed), 500);
        assert!(batches < 500, "500 concurrent requests took {batches} transactions: no group commit");
        println!("500 concurrent submissions committed in {batches} transactions");
    }
}
