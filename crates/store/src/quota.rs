//! The monthly cap inside an ingest batch: which events fit, decided in the batch's transaction
//! from the count it holds locked, so nodes racing for a workspace's last places cannot overshoot.

use crate::{IngestOutcome, NewEvent};
use std::collections::{BTreeMap, HashMap, HashSet};

/// Each workspace with a cap among the batch's created events, and its cap (in id order, the
/// order rows are locked in).
pub(crate) fn capped(batch: &[NewEvent], outcomes: &[IngestOutcome]) -> BTreeMap<String, u64> {
    let mut caps: BTreeMap<String, u64> = BTreeMap::new();
    for (new, outcome) in batch.iter().zip(outcomes) {
        if let (IngestOutcome::Created, Some(cap)) = (outcome, new.monthly_cap) {
            let entry = caps.entry(new.event.workspace_id.as_str().to_owned()).or_insert(cap);
            *entry = (*entry).min(cap);
        }
    }
    caps
}

/// Refuses the created events that do not fit under their workspace's cap, given what each
/// workspace has `used` this month: the batch's earlier events keep their place. An in-batch
/// repeat of a refused event (same idempotency key) is refused with it.
pub(crate) fn refuse_over_cap(
    batch: &[NewEvent],
    outcomes: &mut [IngestOutcome],
    caps: &BTreeMap<String, u64>,
    used: &HashMap<String, u64>,
) {
    let mut room: HashMap<&str, u64> =
        caps.iter().map(|(ws, cap)| (ws.as_str(), cap.saturating_sub(used.get(ws).copied().unwrap_or(0)))).collect();
    let mut refused: HashSet<&str> = HashSet::new();
    for (new, outcome) in batch.iter().zip(outcomes.iter_mut()) {
        match outcome {
            // An event without a cap (a rule's test) neither takes a place nor is refused.
            IngestOutcome::Created if new.monthly_cap.is_none() => {}
            IngestOutcome::Created => {
                let Some(left) = room.get_mut(new.event.workspace_id.as_str()) else { continue };
                if *left == 0 {
                    *outcome = IngestOutcome::OverQuota;
                    refused.insert(new.event.id.as_str());
                } else {
                    *left -= 1;
                }
            }
            IngestOutcome::Duplicate { id, .. } if refused.contains(id.as_str()) => *outcome = IngestOutcome::OverQuota,
            _ => {}
        }
    }
}

/// Events and their deliveries stored per workspace, in id order: what usage counts.
pub(crate) fn stored_per_workspace(batch: &[NewEvent], outcomes: &[IngestOutcome]) -> Vec<(String, i64, i64)> {
    let mut counts: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
    for (new, outcome) in batch.iter().zip(outcomes) {
        if matches!(outcome, IngestOutcome::Created) {
            let c = counts.entry(new.event.workspace_id.as_str()).or_default();
            c.0 += 1;
            c.1 += new.deliveries.len() as i64;
        }
    }
    counts.into_iter().map(|(ws, (n, d))| (ws.to_owned(), n, d)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_core::ids::*;
    use switchyard_core::model::*;

    fn event(ws: &str, cap: Option<u64>) -> NewEvent {
        NewEvent {
            event: Event {
                id: EventId::generate(),
                workspace_id: WorkspaceId::from_trusted(ws.to_owned()),
                event: "e".into(),
                resource: None,
                resource_id: None,
                payload: "{}".into(),
                occurred_at: None,
                received_at: 0,
                status: EventStatus::Completed,
                test: false,
            },
            idempotency_key: None,
            deliveries: Vec::new(),
            monthly_cap: cap,
        }
    }

    #[test]
    fn the_first_events_fit_and_the_rest_of_a_capped_workspace_is_refused() {
        let batch = vec![event("ws_a", Some(5)), event("ws_b", None), event("ws_a", Some(5)), event("ws_a", Some(5))];
        let mut outcomes = vec![IngestOutcome::Created; 4];
        let caps = capped(&batch, &outcomes);
        assert_eq!(caps.len(), 1);
        refuse_over_cap(&batch, &mut outcomes, &caps, &HashMap::from([("ws_a".to_owned(), 4)]));
        assert!(matches!(outcomes[0], IngestOutcome::Created));
        assert!(matches!(outcomes[1], IngestOutcome::Created), "no cap, no refusal");
        assert!(matches!(outcomes[2], IngestOutcome::OverQuota));
        assert!(matches!(outcomes[3], IngestOutcome::OverQuota));
        assert_eq!(stored_per_workspace(&batch, &outcomes), vec![("ws_a".to_owned(), 1, 0), ("ws_b".to_owned(), 1, 0)]);
    }

    #[test]
    fn an_event_without_a_cap_is_never_refused_and_takes_no_place() {
        let batch = vec![event("ws_a", None), event("ws_a", Some(1)), event("ws_a", None)];
        let mut outcomes = vec![IngestOutcome::Created; 3];
        let caps = capped(&batch, &outcomes);
        refuse_over_cap(&batch, &mut outcomes, &caps, &HashMap::from([("ws_a".to_owned(), 0)]));
        assert!(outcomes.iter().all(|o| matches!(o, IngestOutcome::Created)), "{outcomes:?}");
    }

    #[test]
    fn a_repeat_of_a_refused_event_is_refused_too() {
        let batch = vec![event("ws_a", Some(0)), event("ws_a", Some(0))];
        let first = batch[0].event.clone();
        let mut outcomes =
            vec![IngestOutcome::Created, IngestOutcome::Duplicate { id: first.id.clone(), event: first.event, received_at: 0 }];
        let caps = capped(&batch, &outcomes);
        refuse_over_cap(&batch, &mut outcomes, &caps, &HashMap::new());
        assert!(matches!(outcomes[0], IngestOutcome::OverQuota));
        assert!(matches!(outcomes[1], IngestOutcome::OverQuota));
    }
}
