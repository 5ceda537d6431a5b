//! Group commit for ingestion. Requests hand their events to one writer task and wait; the writer
//! takes everything queued, commits it in one transaction, then answers each request. Under load a
//! batch fills while the previous one commits, so one fsync covers many events; no request is
//! answered before its batch is committed.

use crate::error::ApiError;
use std::sync::Arc;
use switchyard_store::{IngestOutcome, NewEvent, Store};
use tokio::sync::{mpsc, oneshot, Notify};

struct Job {
    events: Vec<NewEvent>,
    reply: oneshot::Sender<Result<Vec<IngestOutcome>, ()>>,
}

#[derive(Clone)]
pub struct IngestQueue {
    tx: mpsc::Sender<Job>,
}

impl IngestQueue {
    /// Starts the writer. It stops once every queue handle is dropped and the queue is drained.
    pub fn start(store: Arc<dyn Store>, window_ms: i64, max_batch: usize, wake: Arc<Notify>) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(4096);
        let handle = tokio::spawn(writer(rx, store, window_ms, max_batch, wake));
        (Self { tx }, handle)
    }

    /// Stores events durably; returns once their transaction has committed.
    pub async fn submit(&self, events: Vec<NewEvent>) -> Result<Vec<IngestOutcome>, ApiError> {
        let (reply, answer) = oneshot::channel();
        self.tx.send(Job { events, reply }).await.map_err(|_| ApiError::unavailable("the server is shutting down"))?;
        match answer.await {
            Ok(Ok(outcomes)) => Ok(outcomes),
            _ => Err(ApiError::unavailable("the event could not be stored; retry shortly")),
        }
    }
}

async fn writer(mut rx: mpsc::Receiver<Job>, store: Arc<dyn Store>, window_ms: i64, max_batch: usize, wake: Arc<Notify>) {
    while let Some(first) = rx.recv().await {
        let mut jobs = vec![first];
        let mut count = jobs[0].events.len();
        while count < max_batch {
            match rx.try_recv() {
                Ok(job) => {
                    count += job.events.len();
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        let sizes: Vec<usize> = jobs.iter().map(|j| j.events.len()).collect();
        let batch: Vec<NewEvent> = jobs.iter_mut().flat_map(|j| std::mem::take(&mut j.events)).collect();
        let result = store.ingest(&batch, switchyard_core::now_millis(), window_ms).await;
        match result {
            Ok(outcomes) => {
                let created = outcomes.iter().filter(|o| matches!(o, IngestOutcome::Created)).count();
                metrics::counter!("switchyard_events_ingested_total").increment(created as u64);
                metrics::histogram!("switchyard_ingest_batch_events").record(batch.len() as f64);
                if batch.iter().zip(&outcomes).any(|(e, o)| matches!(o, IngestOutcome::Created) && !e.deliveries.is_empty()) {
                    wake.notify_one();
                }
                let mut outcomes = outcomes.into_iter();
                for (job, size) in jobs.into_iter().zip(sizes) {
                    let _ = job.reply.send(Ok(outcomes.by_ref().take(size).collect()));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, events = batch.len(), "ingest batch failed; nothing in it was acknowledged");
                for job in jobs {
                    let _ = job.reply.send(Err(()));
                }
            }
        }
    }
}
