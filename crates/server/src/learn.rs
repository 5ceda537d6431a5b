//! Event types learned from ingestion, off the hot path. The ingest writer hands each committed
//! batch to [`EventTypeLearner::note`] (one lock per batch, counts summed in memory); a background
//! task writes the sums once a second, in one transaction, and once more when the node stops. A
//! node that dies loses at most a second of counts: counts are a guide for people, and the events
//! themselves are stored with their batch.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchyard_core::ids::WorkspaceId;
use switchyard_store::{IngestOutcome, LearnedEventType, NewEvent, Store};
use tokio_util::sync::CancellationToken;

/// How often learned counts are written.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// Distinct names held between two writes; names beyond it wait for the next write's room.
const MAX_PENDING: usize = 10_000;

#[derive(Default)]
pub struct EventTypeLearner {
    pending: Mutex<Pending>,
}

#[derive(Default)]
struct Pending {
    by_workspace: HashMap<WorkspaceId, HashMap<String, LearnedEventType>>,
    names: usize,
}

impl EventTypeLearner {
    /// Counts the events a batch created (test events are not learned).
    pub fn note(&self, batch: &[NewEvent], outcomes: &[IngestOutcome]) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        for (new, outcome) in batch.iter().zip(outcomes) {
            let e = &new.event;
            if e.test || !matches!(outcome, IngestOutcome::Created) {
                continue;
            }
            // Looked up by reference: a name already pending allocates nothing.
            if let Some(l) = pending.by_workspace.get_mut(&e.workspace_id).and_then(|names| names.get_mut(e.event.as_str())) {
                l.count += 1;
                if e.received_at >= l.last_seen_at {
                    l.last_seen_at = e.received_at;
                    l.sample_event_id = e.id.clone();
                }
                continue;
            }
            if pending.names >= MAX_PENDING {
                metrics::counter!("switchyard_event_types_unlearned_total").increment(1);
                continue;
            }
            pending.names += 1;
            pending.by_workspace.entry(e.workspace_id.clone()).or_default().insert(
                e.event.clone(),
                LearnedEventType {
                    workspace_id: e.workspace_id.clone(),
                    name: e.event.clone(),
                    count: 1,
                    first_seen_at: e.received_at,
                    last_seen_at: e.received_at,
                    sample_event_id: e.id.clone(),
                },
            );
        }
    }

    fn take(&self) -> Vec<LearnedEventType> {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::take(&mut *pending).by_workspace.into_values().flat_map(HashMap::into_values).collect()
    }

    /// Writes what was learned since the last write. On failure the counts are dropped (and
    /// logged): they never hold up ingestion.
    pub async fn flush(&self, store: &dyn Store) {
        let mut learned = self.take();
        if learned.is_empty() {
            return;
        }
        learned.sort_by(|a, b| (a.workspace_id.as_str(), &a.name).cmp(&(b.workspace_id.as_str(), &b.name)));
        if let Err(e) = store.learn_event_types(&learned, switchyard_core::now_millis()).await {
            tracing::warn!(error = %e, names = learned.len(), "could not record learned event types");
        }
    }
}

/// Writes learned event types every [`FLUSH_INTERVAL`] until `stop`.
pub async fn run(learner: Arc<EventTypeLearner>, store: Arc<dyn Store>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(FLUSH_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => learner.flush(&*store).await,
        }
    }
}
