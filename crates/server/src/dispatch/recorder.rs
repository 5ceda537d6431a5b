//! Writes finished attempts in batches: one transaction for every record that finished while the
//! previous batch was committing; hands deferred deliveries back. After each batch it tells the
//! dispatcher about freed connection slots and the earliest retry it scheduled.

use super::attempt::Finished;
use super::Answered;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchyard_core::ids::{ConnectionId, DeliveryId};
use switchyard_store::{AttemptRecord, NextStep, Store};
use tokio::sync::{mpsc, Notify};

const MAX_BATCH: usize = 1_000;

/// A finished delivery on its way to the store: what became of it, its id (among the node's
/// answered leases until the record commits) and when it was handed over.
type Entry = (Finished, DeliveryId, Instant);

#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::UnboundedSender<Entry>,
    answered: Arc<Answered>,
    /// Whether a batch is being written (and the dispatcher will be woken when it is done).
    writing: Arc<AtomicBool>,
}

impl Recorder {
    /// Starts the writer; it drains and stops once every `Recorder` handle is dropped.
    pub fn start(
        store: Arc<dyn Store>,
        owner: String,
        next_retry: Arc<AtomicI64>,
        wake: Arc<Notify>,
        answered: Arc<Answered>,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let writing = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(write_loop(rx, store, owner, next_retry, wake, answered.clone(), writing.clone()));
        (Self { tx, answered, writing }, task)
    }

    /// Whether a batch is being written now. The dispatcher is woken when it is done, and a claim
    /// made meanwhile would only wait for the database behind it, with fewer slots free than
    /// there will be by then.
    pub fn writing(&self) -> bool {
        self.writing.load(Ordering::Acquire)
    }

    /// Hands over a finished delivery of `connection`. Its slot is free from now (the
    /// destination has answered), though its lease lasts until the record commits.
    pub fn record(&self, record: Finished, delivery: DeliveryId, connection: ConnectionId) {
        self.answered.add(&delivery, &connection);
        // Fails only when the writer has stopped; the lease then expires and the attempt repeats.
        if let Err(mpsc::error::SendError((_, delivery, _))) = self.tx.send((record, delivery, Instant::now())) {
            self.answered.remove(&delivery);
        }
    }
}

async fn write_loop(
    mut rx: mpsc::UnboundedReceiver<Entry>,
    store: Arc<dyn Store>,
    owner: String,
    next_retry: Arc<AtomicI64>,
    wake: Arc<Notify>,
    answered: Arc<Answered>,
    writing: Arc<AtomicBool>,
) {
    let mut received = Vec::with_capacity(MAX_BATCH);
    let mut batch: Vec<AttemptRecord> = Vec::with_capacity(MAX_BATCH);
    let mut handed_over: Vec<(DeliveryId, Instant)> = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut received, MAX_BATCH).await > 0 {
        writing.store(true, Ordering::Release);
        let began = Instant::now();
        for (finished, delivery, handed) in received.drain(..) {
            match finished {
                Finished::Attempted(record) => {
                    batch.push(record);
                    handed_over.push((delivery, handed));
                }
                Finished::Deferred { id, until } => {
                    if let Err(e) = store.release(&owner, std::slice::from_ref(&id), until).await {
                        tracing::warn!(error = %e, "could not hand back a deferred delivery; its lease will expire");
                    }
                    answered.remove(&delivery);
                    next_retry.fetch_min(until, Ordering::AcqRel);
                }
            }
        }
        let mut delay = Duration::from_millis(50);
        for tries in 1.. {
            if batch.is_empty() {
                break;
            }
            match store.record_attempts(&owner, &batch, switchyard_core::now_millis()).await {
                Ok(()) => break,
                Err(e) if tries < 8 => {
                    tracing::warn!(error = %e, tries, "recording attempts failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                Err(e) => {
                    // The leases will expire and these deliveries will be attempted again: at least once.
                    tracing::error!(error = %e, records = batch.len(), "could not record attempts; their deliveries will be retried");
                    break;
                }
            }
        }
        if let Some(earliest) = batch.iter().filter_map(|r| if let NextStep::RetryAt(at) = r.next { Some(at) } else { None }).min() {
            next_retry.fetch_min(earliest, Ordering::AcqRel);
        }
        metrics::histogram!("switchyard_record_duration_seconds").record(began.elapsed().as_secs_f64());
        metrics::histogram!("switchyard_record_batch_attempts").record(batch.len() as f64);
        for (delivery, handed) in handed_over.drain(..) {
            metrics::histogram!("switchyard_record_wait_seconds").record(handed.elapsed().as_secs_f64());
            answered.remove(&delivery);
        }
        batch.clear();
        writing.store(false, Ordering::Release);
        wake.notify_one();
    }
}
