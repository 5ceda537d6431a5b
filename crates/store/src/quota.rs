//! The monthly cap inside an ingest batch: which events fit, decided in the batch's transaction
//! from the count it holds locked, so nodes racing for a workspace's last places cannot overshoot.
//!
//! A batch usually holds a few workspaces, often one: these are small sorted vectors of borrowed
//! ids, not maps, so a single-event batch pays two small allocations for its cap.

use crate::{IngestOutcome, NewEvent};

/// Each workspace with a cap among the batch's created events, and its cap (the lowest, if its
/// events disagree), sorted by id: the order rows are locked in, and what [`cap_index`] searches.
pub(crate) fn capped<'a>(batch: &'a [NewEvent], outcomes: &[IngestOutcome]) -> Vec<(&'a str, u64)> {
    let mut caps: Vec<(&str, u64)> = batch
        .iter()
        .zip(outcomes)
        .filter_map(|(new, outcome)| match (outcome, new.monthly_cap) {
            (IngestOutcome::Created, Some(cap)) => Some((new.event.workspace_id.as_str(), cap)),
            _ => None,
        })
        .collect();
    // Sorted by id, then cap: the first of each workspace holds its lowest cap.
    caps.sort_unstable();
    caps.dedup_by(|later, first| later.0 == first.0);
    caps
}

/// Where `ws` is in what [`capped`] returned.
pub(crate) fn cap_index(caps: &[(&str, u64)], ws: &str) -> Option<usize> {
    caps.binary_search_by(|(w, _)| (*w).cmp(ws)).ok()
}

/// Refuses the created events that do not fit under their workspace's cap, given what each
/// workspace has `used` this month (in the order of `caps`): the batch's earlier events keep
/// their place. An in-batch repeat of a refused event (same idempotency key) is refused with it.
pub(crate) fn refuse_over_cap(batch: &[NewEvent], outcomes: &mut [IngestOutcome], caps: &[(&str, u64)], used: &[u64]) {
    let mut room: Vec<u64> = caps.iter().zip(used).map(|((_, cap), used)| cap.saturating_sub(*used)).collect();
    let mut refused: Vec<&str> = Vec::new();
    for (new, outcome) in batch.iter().zip(outcomes.iter_mut()) {
        match outcome {
            // An event without a cap (a rule's test) neither takes a place nor is refused.
            IngestOutcome::Created if new.monthly_cap.is_none() => {}
            IngestOutcome::Created => {
                let Some(i) = cap_index(caps, new.event.workspace_id.as_str()) else { continue };
                if room[i] == 0 {
                    *outcome = IngestOutcome::OverQuota;
                    refused.push(new.event.id.as_str());
                } else {
                    room[i] -= 1;
                }
            }
            IngestOutcome::Duplicate { id, .. } if refused.contains(&id.as_str()) => *outcome = IngestOutcome::OverQuota,
            _ => {}
        }
    }
}

/// The names of Switchyard's own notification events, which usage does not count.
pub(crate) const NOTIFICATION_PREFIX: &str = "switchyard.";

/// One of Switchyard's own notifications (a rule's test event, `switchyard.test`, is the
/// workspace's own and counts).
fn is_notification(new: &NewEvent) -> bool {
    !new.event.test && new.event.event.starts_with(NOTIFICATION_PREFIX)
}

/// Events and their deliveries stored per workspace, in id order: what usage counts (not
/// Switchyard's own notifications: they are not the workspace's traffic).
pub(crate) fn stored_per_workspace<'a>(batch: &'a [NewEvent], outcomes: &[IngestOutcome]) -> Vec<(&'a str, i64, i64)> {
    let mut counts: Vec<(&str, i64, i64)> = Vec::new();
    for (new, outcome) in batch.iter().zip(outcomes) {
        if !matches!(outcome, IngestOutcome::Created) || is_notification(new) {
            continue;
        }
        let ws = new.event.workspace_id.as_str();
        let deliveries = new.deliveries.len() as i64;
        // Most batches repeat the workspace they just had; the rest are merged after the sort.
        match counts.last_mut() {
            Some(last) if last.0 == ws => {
                last.1 += 1;
                last.2 += deliveries;
            }
            _ => counts.push((ws, 1, deliveries)),
        }
    }
    counts.sort_unstable_by(|a, b| a.0.cmp(b.0));
    counts.dedup_by(|later, first| {
        let same = later.0 == first.0;
        if same {
            first.1 += later.1;
            first.2 += later.2;
        }
        same
    });
    counts
}

/// The share of a monthly cap past which a workspace is told it is approaching it.
const APPROACHING: f64 = 0.8;

/// The notifications an ingest batch earns its capped workspaces (`used` before the batch, in the
/// order of `caps`): `quota.approaching` when it takes one past 80 % of its cap, `quota.exceeded`
/// when it refused one of its events. Their ids name the workspace and `month`, so each is told
/// once a month.
pub(crate) fn notifications(
    batch: &[NewEvent],
    outcomes: &[IngestOutcome],
    caps: &[(&str, u64)],
    used: &[u64],
    month: &str,
    now: switchyard_core::Millis,
) -> Vec<crate::Notification> {
    let mut stored = vec![0u64; caps.len()];
    let mut refused = vec![false; caps.len()];
    for (new, outcome) in batch.iter().zip(outcomes) {
        let Some(i) = cap_index(caps, new.event.workspace_id.as_str()) else { continue };
        match outcome {
            IngestOutcome::Created if !is_notification(new) => stored[i] += 1,
            IngestOutcome::OverQuota => refused[i] = true,
            _ => {}
        }
    }
    let mut out = Vec::new();
    for (i, (ws, cap)) in caps.iter().enumerate() {
        let threshold = (*cap as f64 * APPROACHING).ceil() as u64;
        let after = used[i] + stored[i];
        let mut tell = |kind: &str, used: u64| {
            out.push(crate::Notification {
                id: format!("{kind}:{ws}:{month}"),
                workspace_id: switchyard_core::ids::WorkspaceId::from_trusted((*ws).to_owned()),
                kind: kind.to_owned(),
                payload: serde_json::json!({"limit": "events_per_month", "month": month, "used": used, "cap": cap}),
                created_at: now,
            })
        };
        if used[i] < threshold && after >= threshold {
            tell("quota.approaching", after);
        }
        if refused[i] {
            tell("quota.exceeded", after);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_core::ids::*;

    fn event(ws: &str, cap: Option<u64>) -> NewEvent {
        NewEvent {
            event: crate::testing::event(&WorkspaceId::from_trusted(ws.to_owned())),
            idempotency_key: None,
            deliveries: Vec::new(),
            monthly_cap: cap,
        }
    }

    #[test]
    fn the_first_events_fit_and_the_rest_of_a_capped_workspace_is_refused() {
        let batch = vec![event("ws_a", Some(5)), event("ws_b", None), event("ws_a", Some(6)), event("ws_a", Some(5))];
        let mut outcomes = vec![IngestOutcome::Created; 4];
        let caps = capped(&batch, &outcomes);
        assert_eq!(caps, vec![("ws_a", 5)], "one entry per workspace, with its lowest cap");
        assert_eq!(cap_index(&caps, "ws_a"), Some(0));
        assert_eq!(cap_index(&caps, "ws_b"), None);
        refuse_over_cap(&batch, &mut outcomes, &caps, &[4]);
        assert!(matches!(outcomes[0], IngestOutcome::Created));
        assert!(matches!(outcomes[1], IngestOutcome::Created), "no cap, no refusal");
        assert!(matches!(outcomes[2], IngestOutcome::OverQuota));
        assert!(matches!(outcomes[3], IngestOutcome::OverQuota));
        assert_eq!(stored_per_workspace(&batch, &outcomes), vec![("ws_a", 1, 0), ("ws_b", 1, 0)]);
    }

    #[test]
    fn an_event_without_a_cap_is_never_refused_and_takes_no_place() {
        let batch = vec![event("ws_a", None), event("ws_a", Some(1)), event("ws_a", None)];
        let mut outcomes = vec![IngestOutcome::Created; 3];
        let caps = capped(&batch, &outcomes);
        refuse_over_cap(&batch, &mut outcomes, &caps, &[0]);
        assert!(outcomes.iter().all(|o| matches!(o, IngestOutcome::Created)), "{outcomes:?}");
    }

    #[test]
    fn a_repeat_of_a_refused_event_is_refused_too() {
        let batch = vec![event("ws_a", Some(0)), event("ws_a", Some(0))];
        let first = batch[0].event.clone();
        let mut outcomes =
            vec![IngestOutcome::Created, IngestOutcome::Duplicate { id: first.id.clone(), event: first.event, received_at: 0 }];
        let caps = capped(&batch, &outcomes);
        refuse_over_cap(&batch, &mut outcomes, &caps, &[0]);
        assert!(matches!(outcomes[0], IngestOutcome::OverQuota));
        assert!(matches!(outcomes[1], IngestOutcome::OverQuota));
    }

    #[test]
    fn stored_counts_are_merged_per_workspace_in_id_order() {
        let mut batch = vec![event("ws_b", None), event("ws_a", None), event("ws_b", None), event("ws_b", None), event("ws_a", None)];
        let delivery = || crate::NewDelivery {
            id: DeliveryId::generate(),
            rule_id: RuleId::from_trusted("rul_1".to_owned()),
            connection_id: ConnectionId::from_trusted("con_1".to_owned()),
            lease: None,
        };
        batch[2].deliveries = vec![delivery(), delivery()];
        batch[4].deliveries = vec![delivery()];
        let outcomes = vec![IngestOutcome::Created; 5];
        assert_eq!(stored_per_workspace(&batch, &outcomes), vec![("ws_a", 2, 1), ("ws_b", 3, 2)]);
        // Switchyard's own notifications are not the workspace's traffic.
        let mut notification = event("ws_a", None);
        notification.event.event = "switchyard.delivery.exhausted".into();
        let with_notification = [batch.clone(), vec![notification]].concat();
        assert_eq!(stored_per_workspace(&with_notification, &vec![IngestOutcome::Created; 6]), vec![("ws_a", 2, 1), ("ws_b", 3, 2)]);
        let none: Vec<(&str, i64, i64)> = Vec::new();
        assert_eq!(stored_per_workspace(&batch, &vec![IngestOutcome::OverQuota; 5]), none);
    }
}
