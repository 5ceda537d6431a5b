//! Writes finished attempts in batches: one transaction for every record that finished while the
//! previous batch was committing; hands deferred deliveries back. After each batch it tells the
//! dispatcher about freed connection slots and the earliest retry it scheduled.

use super::attempt::Finished;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use switchyard_store::{AttemptRecord, NextStep, Store};
use tokio::sync::{mpsc, Notify};

const MAX_BATCH: usize = 1_000;

#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::UnboundedSender<Finished>,
}

impl Recorder {
    /// Starts the writer; it drains and stops once every `Recorder` handle is dropped.
    pub fn start(
        store: Arc<dyn Store>,
        owner: String,
        next_retry: Arc<AtomicI64>,
        wake: Arc<Notify>,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Self { tx }, tokio::spawn(write_loop(rx, store, owner, next_retry, wake)))
    }

    pub fn record(&self, record: Finished) {
        // Fails only when the writer has stopped; the lease then expires and the attempt repeats.
        let _ = self.tx.send(record);
    }
}

async fn write_loop(
    mut rx: mpsc::UnboundedReceiver<Finished>,
    store: Arc<dyn Store>,
    owner: String,
    next_retry: Arc<AtomicI64>,
    wake: Arc<Notify>,
) {
    let mut received = Vec::with_capacity(MAX_BATCH);
    let mut batch: Vec<AttemptRecord> = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut received, MAX_BATCH).await > 0 {
        for finished in received.drain(..) {
            match finished {
                Finished::Attempted(record) => batch.push(record),
                Finished::Deferred { id, until } => {
                    if let Err(e) = store.release(&owner, std::slice::from_ref(&id), until).await {
                        tracing::warn!(error = %e, "could not hand back a deferred delivery; its lease will expire");
                    }
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
        batch.clear();
        wake.notify_one();
    }
}
