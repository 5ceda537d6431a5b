//! `switchyard events tail`: new events of a workspace as they arrive, then each change of their
//! deliveries, by asking the API a few times a second.
//!
//! Events are found by time, not only by id: each poll lists everything received since a few
//! seconds before the newest event shown, so an event that another node stamped a little earlier
//! than one already shown still appears; what was shown is remembered and not shown again.
//! Deliveries are read the same way, one list for all the events being followed (not one request
//! per event), so a tail costs the server a few requests a second however busy the workspace is.

use super::output::json_line;
use super::Failure;
use chrono::{DateTime, Duration as Span, Utc};
use serde_json::json;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::Duration;
use switchyard_client::models::{DeliveryFilter, DeliverySummary, Event, EventFilter, Page};
use switchyard_client::Client;

/// How far before the newest event each poll looks again.
const OVERLAP_SECONDS: i64 = 5;
/// Pages of 200 read per poll, for events and for deliveries.
const MAX_PAGES: usize = 25;
/// How long an event's deliveries are followed before the tail lets it go.
const FOLLOW_MINUTES: i64 = 10;
/// Events remembered as shown: far more than one overlap window holds.
const REMEMBERED: usize = 100_000;

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

/// An event whose deliveries are being followed.
struct Followed {
    received_at: DateTime<Utc>,
    /// Each delivery's status as last shown.
    deliveries: HashMap<String, String>,
    /// Polls since it was shown: an event whose deliveries are all final is let go after one.
    polls: u32,
}

pub async fn follow(client: &Client, ws: &str, name: Option<String>, interval: Duration, json: bool) -> Result<(), Failure> {
    // One Ctrl-C listener for the whole run: a press during a request is not lost.
    tokio::select! {
        result = poll(client, ws, name, interval, json) => result,
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}

async fn poll(client: &Client, ws: &str, name: Option<String>, interval: Duration, json: bool) -> Result<(), Failure> {
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
    let mut followed: BTreeMap<String, Followed> = BTreeMap::new();
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let turn = async {
            let since = newest.map(|t| t - Span::seconds(OVERLAP_SECONDS));
            for event in new_events(client, ws, &filter, since, &mut seen).await? {
                newest = newest.max(Some(event.received_at));
                show_event(&event, json);
                followed.insert(event.id.clone(), Followed { received_at: event.received_at, deliveries: HashMap::new(), polls: 0 });
            }
            follow_deliveries(client, ws, &mut followed, json).await
        };
        match turn.await {
            Ok(()) => {}
            Err(e) if e.code == super::exit::UNAVAILABLE => eprintln!("{} (retrying)", e.message),
            Err(e) => return Err(e),
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
    for pages in 1.. {
        let list = client.list_events(ws, &filter, &page).await?;
        fresh.extend(list.data.into_iter().filter(|e| !seen.ids.contains(&e.id)));
        match list.next_cursor {
            // Before any event was seen there is no window: the newest page is what is new.
            Some(_) if since.is_none() => break,
            Some(_) if pages >= MAX_PAGES => {
                eprintln!("more than {} events in {OVERLAP_SECONDS} s: some are not shown", MAX_PAGES * 200);
                break;
            }
            Some(cursor) => page.cursor = Some(cursor),
            None => break,
        }
    }
    fresh.sort_by(|a, b| a.id.cmp(&b.id));
    fresh.retain(|e| seen.insert(&e.id));
    Ok(fresh)
}

/// Reads the deliveries of every followed event in one windowed list and shows what changed.
async fn follow_deliveries(client: &Client, ws: &str, followed: &mut BTreeMap<String, Followed>, json: bool) -> Result<(), Failure> {
    let horizon = Utc::now() - Span::minutes(FOLLOW_MINUTES);
    followed.retain(|id, f| {
        let keep = f.received_at > horizon;
        if !keep {
            eprintln!("stopped following {id} after {FOLLOW_MINUTES} minutes (switchyard events show {id})");
        }
        keep
    });
    let Some(oldest) = followed.values().map(|f| f.received_at).min() else { return Ok(()) };
    // A delivery is created with its event, so the window from the oldest followed event holds them all.
    let filter = DeliveryFilter { since: Some(oldest - Span::seconds(1)), ..DeliveryFilter::default() };
    let mut page = Page::first(200);
    let mut deliveries: Vec<DeliverySummary> = Vec::new();
    for _ in 0..MAX_PAGES {
        let list = client.list_deliveries(ws, &filter, &page).await?;
        deliveries.extend(list.data.into_iter().filter(|d| followed.contains_key(&d.event_id)));
        match list.next_cursor {
            Some(cursor) => page.cursor = Some(cursor),
            None => break,
        }
    }
    deliveries.sort_by(|a, b| (a.updated_at, &a.id).cmp(&(b.updated_at, &b.id)));
    for d in &deliveries {
        let Some(f) = followed.get_mut(&d.event_id) else { continue };
        if f.deliveries.get(&d.id) != Some(&d.status) {
            f.deliveries.insert(d.id.clone(), d.status.clone());
            show_delivery(d, json);
        }
    }
    followed.retain(|_, f| {
        f.polls += 1;
        let finished = f.deliveries.values().all(|s| matches!(s.as_str(), "succeeded" | "dead"));
        !(finished && f.polls > 1)
    });
    Ok(())
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

fn show_delivery(d: &DeliverySummary, json: bool) {
    if json {
        json_line(&json!({"type": "delivery", "delivery": d}));
        return;
    }
    let error = d.last_error.as_deref().map(|e| format!("  {}", e.chars().take(80).collect::<String>())).unwrap_or_default();
    println!(
        "{}    {}  {:<10}  attempt {}  {}{error}",
        d.updated_at.format("%H:%M:%S%.3f"),
        d.id,
        d.status,
        d.attempt_count,
        d.connection_id
    );
}
