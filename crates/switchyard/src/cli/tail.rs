//! `switchyard events tail`: new events of a workspace as they arrive, then each change of their
//! deliveries, by asking the API a few times a second.
//!
//! Events are found by time, not only by id: each poll lists what was received since a few
//! seconds before the newest event seen, so an event that another node stamped a little earlier
//! than one already shown still appears. What was shown is remembered and never shown twice.

use super::output::json_line;
use super::Failure;
use chrono::{DateTime, Duration as Span, Utc};
use serde_json::json;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::Duration;
use switchyard_client::models::{Event, EventFilter, Page};
use switchyard_client::Client;

/// How far before the newest event each poll looks again.
const OVERLAP_SECONDS: i64 = 5;
/// Events whose deliveries are followed at once; older ones are let go.
const FOLLOWED: usize = 50;
const REMEMBERED: usize = 5_000;

struct Seen {
    ids: HashSet<String>,
    order: VecDeque<String>,
}

impl Seen {
    fn insert(&mut self, id: &str) -> bool {
        if !self.ids.insert(id.to_owned()) {
            return false;
        }
        self.order.push_back(id.to_owned());
        if self.order.len() > REMEMBERED {
            if let Some(old) = self.order.pop_front() {
                self.ids.remove(&old);
            }
        }
        true
    }
}

pub async fn follow(client: &Client, ws: &str, name: Option<String>, interval: Duration, json: bool) -> Result<(), Failure> {
    let filter = EventFilter { event: name, ..EventFilter::default() };
    let mut seen = Seen { ids: HashSet::new(), order: VecDeque::new() };
    // What exists already is not news: it is remembered, not shown.
    let start = client.list_events(ws, &filter, &Page::first(200)).await?;
    let mut newest: Option<DateTime<Utc>> = start.data.first().map(|e| e.received_at);
    for e in &start.data {
        seen.insert(&e.id);
    }
    // On standard error, so `--json` output stays one document per line.
    eprintln!("following events of {ws} (Ctrl-C stops)");
    // event id → (delivery id → status last shown), oldest first.
    let mut followed: BTreeMap<String, HashMap<String, String>> = BTreeMap::new();
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
        let since = newest.map(|t| t - Span::seconds(OVERLAP_SECONDS));
        let fresh = match new_events(client, ws, &filter, since, &mut seen).await {
            Ok(fresh) => fresh,
            Err(e) if e.code == super::exit::UNAVAILABLE => {
                eprintln!("{} (retrying)", e.message);
                continue;
            }
            Err(e) => return Err(e),
        };
        for event in fresh {
            newest = newest.max(Some(event.received_at));
            show_event(&event, json);
            followed.insert(event.id.clone(), HashMap::new());
        }
        while followed.len() > FOLLOWED {
            followed.pop_first();
        }
        let ids: Vec<String> = followed.keys().cloned().collect();
        for id in ids {
            let event = match client.get_event(&id).await {
                Ok(e) => e,
                Err(e) if e.status() == Some(404) => {
                    followed.remove(&id);
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            let shown = followed.entry(id.clone()).or_default();
            let deliveries = event.deliveries.unwrap_or_default();
            for d in &deliveries {
                if shown.get(&d.id) != Some(&d.status) {
                    shown.insert(d.id.clone(), d.status.clone());
                    if json {
                        json_line(&json!({"type": "delivery", "delivery": d}));
                    } else {
                        let error =
                            d.last_error.as_deref().map(|e| format!("  {}", e.chars().take(80).collect::<String>())).unwrap_or_default();
                        println!(
                            "{}    {}  {:<10}  attempt {}  {}{error}",
                            d.updated_at.format("%H:%M:%S%.3f"),
                            d.id,
                            d.status,
                            d.attempt_count,
                            d.connection_id
                        );
                    }
                }
            }
            let finished = deliveries.iter().all(|d| matches!(d.status.as_str(), "succeeded" | "dead"));
            if finished && matches!(event.status.as_str(), "completed" | "failed") {
                followed.remove(&id);
            }
        }
    }
}

/// Events not shown yet, oldest first.
async fn new_events(
    client: &Client,
    ws: &str,
    filter: &EventFilter,
    since: Option<DateTime<Utc>>,
    seen: &mut Seen,
) -> Result<Vec<Event>, Failure> {
    let filter = EventFilter { since, ..filter.clone() };
    let mut page = Page::first(200);
    let mut fresh = Vec::new();
    // At most ten pages a poll: a burst bigger than that is shown over the next polls.
    for _ in 0..10 {
        let list = client.list_events(ws, &filter, &page).await?;
        let any_new_here = list.data.iter().any(|e| !seen.ids.contains(&e.id));
        fresh.extend(list.data.into_iter().filter(|e| !seen.ids.contains(&e.id)));
        match list.next_cursor {
            Some(cursor) if any_new_here && since.is_some() => page.cursor = Some(cursor),
            _ => break,
        }
    }
    fresh.sort_by(|a, b| a.id.cmp(&b.id));
    fresh.retain(|e| seen.insert(&e.id));
    Ok(fresh)
}

fn show_event(e: &Event, json: bool) {
    if json {
        json_line(&json!({"type": "event", "event": e}));
        return;
    }
    let resource = match (&e.resource, &e.resource_id) {
        (Some(r), Some(id)) => format!("  {r}/{id}"),
        _ => String::new(),
    };
    println!(
        "{}  {}  {}{}{resource}  {}",
        e.received_at.format("%H:%M:%S%.3f"),
        e.id,
        e.event,
        if e.test { " (test)" } else { "" },
        e.status
    );
}
