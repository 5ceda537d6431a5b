//! Event types learned from ingestion, off the hot path. The ingest writer hands each committed
//! batch to [`EventTypeLearner::note`] (one lock per batch, counts summed in memory); a background
//! task writes the sums once a second, in short transactions, and once more when the node stops.
//! A node that dies loses at most a second of counts: counts are a guide for people, and the
//! events themselves are stored with their batch. A workspace sending a flood of distinct names
//! is bounded: at most 1,000 of its names, and 5,000 in all, are held between two writes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchyard_core::ids::WorkspaceId;
use switchyard_store::{LearnedEventType, NewEvent, Store};
use tokio_util::sync::CancellationToken;

/// How often learned counts are written.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// Distinct names held between two writes, in all and per workspace (a workspace learns at most
/// this many names anyway); names beyond them are not counted in that second.
const MAX_PENDING: usize = 5_000;
const MAX_PENDING_PER_WORKSPACE: usize = switchyard_store::MAX_LEARNED_EVENT_TYPES as usize;
/// Names written per transaction: the writer is let go in between, so ingestion's own batches
/// are never held up behind a long write.
const WRITE_CHUNK: usize = 250;

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
    /// Counts the events of a batch that were created (`created[i]` for `batch[i]`; test events
    /// are not learned). The batch is summed first without the lock or any allocation per event;
    /// then each of its names is merged once.
    pub fn note(&self, batch: &[NewEvent], created: &[bool]) {
        // (workspace, name) -> (index of its latest event, count, first seen)
        let mut sums: HashMap<(&str, &str), (usize, i64, i64)> = HashMap::new();
        for (i, (new, created)) in batch.iter().zip(created).enumerate() {
            let e = &new.event;
            if e.test || !created {
                continue;
            }
            let sum = sums.entry((e.workspace_id.as_str(), e.event.as_str())).or_insert((i, 0, e.received_at));
            sum.1 += 1;
            sum.2 = sum.2.min(e.received_at);
            if e.received_at >= batch[sum.0].event.received_at {
                sum.0 = i;
            }
        }
        if sums.is_empty() {
            return;
        }
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        for ((_, name), (latest, count, first)) in sums {
            let e = &batch[latest].event;
            if let Some(l) = pending.by_workspace.get_mut(&e.workspace_id).and_then(|names| names.get_mut(name)) {
                l.count += count;
                l.first_seen_at = l.first_seen_at.min(first);
                if e.received_at >= l.last_seen_at {
                    l.last_seen_at = e.received_at;
                    l.sample_event_id = e.id.clone();
                }
                continue;
            }
            let full = pending.by_workspace.get(&e.workspace_id).is_some_and(|names| names.len() >= MAX_PENDING_PER_WORKSPACE);
            if full || pending.names >= MAX_PENDING {
                metrics::counter!("switchyard_event_types_unlearned_total").increment(count as u64);
                continue;
            }
            pending.names += 1;
            pending.by_workspace.entry(e.workspace_id.clone()).or_default().insert(
                name.to_owned(),
                LearnedEventType {
                    workspace_id: e.workspace_id.clone(),
                    name: name.to_owned(),
                    count,
                    first_seen_at: first,
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
        for chunk in learned.chunks(WRITE_CHUNK) {
            if let Err(e) = store.learn_event_types(chunk, switchyard_core::now_millis()).await {
                tracing::warn!(error = %e, names = chunk.len(), "could not record learned event types");
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_core::ids::EventId;
    use switchyard_core::model::{Event, EventStatus};

    fn event(ws: &WorkspaceId, name: &str, at: i64, test: bool) -> NewEvent {
        NewEvent {
            event: Event {
                id: EventId::generate(),
                workspace_id: ws.clone(),
                event: name.into(),
                resource: None,
                resource_id: None,
                payload: "{}".into(),
                occurred_at: None,
                received_at: at,
                status: EventStatus::Completed,
                test,
            },
            idempotency_key: None,
            monthly_cap: None,
            deliveries: Vec::new(),
        }
    }

    #[test]
    fn counts_created_events_keeps_the_latest_as_sample_and_skips_tests_and_repeats() {
        let learner = EventTypeLearner::default();
        let ws = WorkspaceId::generate();
        let batch = vec![
            event(&ws, "a", 10, false),
            event(&ws, "a", 30, false),
            event(&ws, "a", 20, false),
            event(&ws, "t", 5, true),
            event(&ws, "d", 1, false),
        ];
        // The last one was an idempotent repeat: not created.
        learner.note(&batch, &[true, true, true, true, false]);
        let learned = learner.take();
        assert_eq!(learned.len(), 1);
        let a = &learned[0];
        assert_eq!((a.name.as_str(), a.count, a.first_seen_at, a.last_seen_at), ("a", 3, 10, 30));
        assert_eq!(a.sample_event_id, batch[1].event.id);
        assert!(learner.take().is_empty(), "taken once");
    }

    #[test]
    fn a_flood_of_names_from_one_workspace_is_bounded() {
        let learner = EventTypeLearner::default();
        let (flood, quiet) = (WorkspaceId::generate(), WorkspaceId::generate());
        let mut batch: Vec<NewEvent> = (0..MAX_PENDING_PER_WORKSPACE + 500).map(|i| event(&flood, &format!("n{i}"), 1, false)).collect();
        batch.push(event(&quiet, "hello", 1, false));
        learner.note(&batch, &vec![true; batch.len()]);
        let learned = learner.take();
        assert_eq!(learned.iter().filter(|l| l.workspace_id == flood).count(), MAX_PENDING_PER_WORKSPACE);
        assert!(learned.iter().any(|l| l.workspace_id == quiet && l.name == "hello"), "another workspace still learns");
    }
}
