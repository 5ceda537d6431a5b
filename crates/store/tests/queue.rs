//! The due queue at the store level: claims, fairness, in-flight caps, leases, idempotency.

use serde_json::json;
use std::sync::Arc;
use switchyard_core::ids::*;
use switchyard_core::model::*;
use switchyard_core::retry::RetryPolicy;
use switchyard_store::*;

struct Fixture {
    store: Arc<dyn Store>,
    /// The store's database, for a test that opens a connection of its own.
    url: String,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let url = testing::database_url(dir.path()).await;
    let store = open(&url).await.unwrap();
    Fixture { store, url, _dir: dir }
}

async fn workspace(store: &dyn Store) -> WorkspaceId {
    let ws = Workspace {
        id: WorkspaceId::generate(),
        name: "w".into(),
        description: None,
        plan: None,
        limit_overrides: Default::default(),
        labels: Default::default(),
        created_at: 0,
        updated_at: 0,
    };
    let key = PublishableKey { id: PublishableKeyId::generate(), workspace_id: ws.id.clone(), hint: "pk_".into(), created_at: 0 };
    store.create_workspace(&ws, &key, &format!("hash-{}", ws.id), None).await.unwrap();
    ws.id
}

async fn connection(store: &dyn Store, ws: &WorkspaceId, max_in_flight: u32) -> ConnectionId {
    paced_connection(store, ws, max_in_flight, None).await
}

async fn paced_connection(store: &dyn Store, ws: &WorkspaceId, max_in_flight: u32, per_minute: Option<u32>) -> ConnectionId {
    let c = Connection {
        id: ConnectionId::generate(),
        workspace_id: ws.clone(),
        kind: "webhook".into(),
        name: "c".into(),
        config: json!({"url": "http://127.0.0.1/"}),
        credentials_sealed: None,
        signing_secret_sealed: None,
        previous_secret_sealed: None,
        previous_secret_expires_at: None,
        retry_policy: RetryPolicy::default(),
        timeout_ms: 1_000,
        max_in_flight,
        rate_limit_per_minute: per_minute,
        status: ConnectionStatus::Active,
        inactive: None,
        failing_since: None,
        breaker: Default::default(),
        circuit: Default::default(),
        created_at: 0,
        updated_at: 0,
    };
    store.create_connection(&c, None).await.unwrap();
    c.id
}

fn new_event(ws: &WorkspaceId, conn: &ConnectionId, key: Option<&str>) -> NewEvent {
    NewEvent {
        event: switchyard_store::testing::event(ws),
        idempotency_key: key.map(str::to_owned),
        monthly_cap: None,
        deliveries: vec![NewDelivery { id: DeliveryId::generate(), rule_id: RuleId::generate(), connection_id: conn.clone(), lease: None }],
    }
}

async fn enqueue(store: &dyn Store, ws: &WorkspaceId, conn: &ConnectionId, n: usize, now: i64) {
    let batch: Vec<_> = (0..n).map(|_| new_event(ws, conn, None)).collect();
    store.ingest(&batch, now, 86_400_000).await.unwrap();
}

#[tokio::test]
async fn claims_never_exceed_a_connections_in_flight_cap() {
    let f = fixture().await;
    let ws = workspace(&*f.store).await;
    let conn = connection(&*f.store, &ws, 3).await;
    enqueue(&*f.store, &ws, &conn, 10, 1_000).await;
    let first = f.store.claim_due("a", 2_000, 100, 30_000).await.unwrap();
    assert_eq!(first.len(), 3);
    // Another node sees the cap as used up too (it is counted in the database).
    assert!(f.store.claim_due("b", 2_000, 100, 30_000).await.unwrap().is_empty());
    record(&*f.store, "a", &first[..2]).await;
    assert_eq!(f.store.claim_due("b", 2_200, 100, 30_000).await.unwrap().len(), 2);
}

/// Claims made at once (on SQLite they pick on readers, side by side, and lease on the writer)
/// still take no more together than the cap, nor any delivery twice.
#[tokio::test]
async fn claims_made_at_once_never_exceed_a_cap_together() {
    let f = fixture().await;
    let ws = workspace(&*f.store).await;
    let conn = connection(&*f.store, &ws, 3).await;
    enqueue(&*f.store, &ws, &conn, 20, 1_000).await;
    for round in 0..5 {
        let claims = (0..8).map(|n| {
            let store = f.store.clone();
            let owner = format!("node-{n}");
            tokio::spawn(async move {
                let claimed = store.claim_due(&owner, 2_000, 100, 30_000).await.unwrap();
                (owner, claimed)
            })
        });
        let mut claimed = Vec::new();
        for claim in claims.collect::<Vec<_>>() {
            let (owner, taken) = claim.await.unwrap();
            claimed.extend(taken.into_iter().map(|c| (owner.clone(), c)));
        }
        assert_eq!(claimed.len(), 3, "round {round}: {} leased at once against a cap of 3", claimed.len());
        let ids: std::collections::HashSet<_> = claimed.iter().map(|(_, c)| c.delivery.id.clone()).collect();
        assert_eq!(ids.len(), 3);
        for (owner, c) in &claimed {
            record(&*f.store, owner, std::slice::from_ref(c)).await;
        }
    }
}

/// On PostgreSQL a claim holds its connections' rows locked until it commits (that is what makes
/// caps hold across nodes). A record must not wait for it: records free their slots in
/// `connection_frees`, not on the locked row, so a node's answers are recorded while another
/// node claims from the same connection. (SQLite has one writer: a claim and a record never
/// overlap there.)
#[tokio::test]
async fn a_record_does_not_wait_for_a_claim_holding_its_connection() {
    use sqlx::Connection as _;
    if testing::selected() != testing::TestStore::Postgres {
        return;
    }
    let f = fixture().await;
    let store = &f.store;
    let ws = workspace(&**store).await;
    let conn = connection(&**store, &ws, 3).await;
    enqueue(&**store, &ws, &conn, 10, 1_000).await;
    let first = store.claim_due("a", 2_000, 100, 30_000).await.unwrap();
    assert_eq!(first.len(), 3);
    // Another node's claim in progress: the connection's row locked, as its claim locks it.
    let mut other = sqlx::PgConnection::connect(&f.url).await.unwrap();
    let mut claiming = other.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM connections WHERE id = $1 FOR NO KEY UPDATE").bind(conn.as_str()).execute(&mut *claiming).await.unwrap();
    let recorded = tokio::time::timeout(std::time::Duration::from_secs(5), record(&**store, "a", &first[..2])).await;
    assert!(recorded.is_ok(), "the record waited for the claim's lock on its connection");
    // Meanwhile claims skip the locked connection; once it is free, the two recorded slots are.
    assert!(store.claim_due("a", 2_200, 100, 30_000).await.unwrap().is_empty());
    claiming.rollback().await.unwrap();
    assert_eq!(store.claim_due("b", 2_200, 100, 30_000).await.unwrap().len(), 2);
    assert!(store.claim_due("b", 2_300, 100, 30_000).await.unwrap().is_empty());
}

#[tokio::test]
async fn answered_leases_free_their_slots_for_their_own_node_only() {
    let f = fixture().await;
    let ws = workspace(&*f.store).await;
    let conn = connection(&*f.store, &ws, 3).await;
    enqueue(&*f.store, &ws, &conn, 20, 1_000).await;
    let claim = |owner: &'static str, answered: Vec<&Claimed>| {
        let store = f.store.clone();
        let answered = answered.iter().map(|c| (c.delivery.connection_id.clone(), c.delivery.id.clone())).collect();
        async move {
            let share = NodeShare { answered, ..NodeShare::default() };
            store.claim_due_shared(owner, 2_000, 100, 30_000, &share).await.unwrap()
        }
    };
    let first = claim("a", vec![]).await;
    assert_eq!(first.len(), 3);
    // Node a has answers for two of its three leases, not yet recorded: two slots are free.
    let second = claim("a", first[..2].iter().collect()).await;
    assert_eq!(second.len(), 2);
    // Five leased, two answered: three in flight, the cap.
    assert!(claim("a", first[..2].iter().collect()).await.is_empty());
    // Another node does not know a's answers: to it the five leases hold five slots.
    assert!(claim("b", vec![]).await.is_empty());
    // An answer whose record committed meanwhile is not subtracted twice: four still leased, one
    // of them answered, is three in flight (subtracting both answers would free a slot).
    record(&*f.store, "a", &first[..1]).await;
    assert!(claim("a", first[..2].iter().collect()).await.is_empty());
    // Four still leased, all answered: answers free at most the cap (three), so two more may be
    // claimed, for six leases, twice the cap.
    let mut all: Vec<&Claimed> = first.iter().chain(second.iter()).collect();
    let third = claim("a", all.clone()).await;
    assert_eq!(third.len(), 2);
    // However many are answered, no more than twice the cap is leased: that bounds what a crash
    // of the node can make repeat.
    all.extend(third.iter());
    assert!(claim("a", all).await.is_empty());
}

#[tokio::test]
async fn a_node_alone_on_its_store_leases_ahead_as_asked_with_longer_leases() {
    let f = fixture().await;
    let ws = workspace(&*f.store).await;
    let (ahead, plain) = (connection(&*f.store, &ws, 3).await, connection(&*f.store, &ws, 3).await);
    let paced = paced_connection(&*f.store, &ws, 3, Some(6_000)).await;
    for conn in [&ahead, &plain, &paced] {
        enqueue(&*f.store, &ws, conn, 20, 1_000).await;
    }
    let share = NodeShare { ahead: vec![(ahead.clone(), 2), (paced.clone(), 2)], ..NodeShare::default() };
    let claimed = f.store.claim_due_shared("a", 2_000, 100, 30_000, &share).await.unwrap();
    let count = |c: &ConnectionId| claimed.iter().filter(|x| &x.delivery.connection_id == c).count();
    // A rate-limited connection's starts are spaced by the claim: never leased ahead.
    assert_eq!((count(&plain), count(&paced)), (3, 3));
    if !f.store.single_node() {
        // A queue shared by nodes leases no connection ahead.
        assert_eq!(count(&ahead), 3);
        return;
    }
    // Three times the cap (1 + 2), and nothing more while those are leased.
    assert_eq!(count(&ahead), 9);
    assert!(f.store.claim_due_shared("a", 2_000, 100, 30_000, &share).await.unwrap().is_empty());
    // Their leases last three timeouts (1 s each) past the margin, the others' one.
    assert_eq!(f.store.recover_expired_leases(34_000).await.unwrap(), 6);
    assert_eq!(f.store.recover_expired_leases(35_001).await.unwrap(), 9);
}

/// The record of an attempt of `c` answered with `status_code`: an error names the status unless
/// it is a success.
fn answered(c: &Claimed, started_at: i64, status_code: u16, next: NextStep) -> AttemptRecord {
    AttemptRecord {
        attempt: Attempt {
            delivery_id: c.delivery.id.clone(),
            number: 1,
            started_at,
            duration_ms: 1,
            status_code: Some(status_code),
            error: (status_code >= 300).then(|| format!("HTTP {status_code}")),
            response_excerpt: None,
            request: None,
        },
        next,
    }
}

/// Records each claimed delivery's attempt as a success.
async fn record(store: &dyn Store, owner: &str, claimed: &[Claimed]) {
    let done: Vec<_> = claimed.iter().map(|c| answered(c, 2_000, 200, NextStep::Succeeded)).collect();
    store.record_attempts(owner, &done, 2_100).await.unwrap();
}

#[tokio::test]
async fn claims_space_a_rate_limited_connection_s_starts_for_every_node() {
    let f = fixture().await;
    let ws = workspace(&*f.store).await;
    // 120 a minute: a start every 500 ms; claims hand out starts up to 2 s ahead.
    let paced = paced_connection(&*f.store, &ws, 100, Some(120)).await;
    let free = connection(&*f.store, &ws, 100).await;
    enqueue(&*f.store, &ws, &paced, 20, 1_000).await;
    enqueue(&*f.store, &ws, &free, 3, 1_000).await;
    let share = NodeShare::default();
    let first = f.store.claim_due_shared("a", 10_000, 100, 30_000, &share).await.unwrap();
    let mut starts: Vec<i64> = first.iter().filter(|c| c.delivery.connection_id == paced).map(|c| c.start_at).collect();
    starts.sort();
    assert_eq!(starts, vec![10_000, 10_500, 11_000, 11_500, 12_000], "the starts within the horizon, 500 ms apart");
    assert!(first.iter().filter(|c| c.delivery.connection_id == paced).all(|c| c.next_start_at == Some(12_500)));
    let unpaced: Vec<_> = first.iter().filter(|c| c.delivery.connection_id == free).collect();
    assert_eq!(unpaced.len(), 3);
    assert!(unpaced.iter().all(|c| c.start_at == 10_000 && c.next_start_at.is_none()));
    // Another node at the same moment gets nothing of it: the pace is in the database.
    assert!(f.store.claim_due_shared("b", 10_000, 100, 30_000, &share).await.unwrap().is_empty());
    // A second later, two more starts have come within the horizon.
    let later = f.store.claim_due_shared("b", 11_000, 100, 30_000, &share).await.unwrap();
    assert_eq!(later.iter().map(|c| c.start_at).collect::<std::collections::BTreeSet<_>>(), [12_500, 13_000].into());
}

#[tokio::test]
async fn a_held_connection_is_not_claimed_from_until_the_hold_ends() {
    let f = fixture().await;
    let ws = workspace(&*f.store).await;
    let conn = connection(&*f.store, &ws, 100).await;
    enqueue(&*f.store, &ws, &conn, 2, 1_000).await;
    f.store.hold_connection(&conn, 30_000).await.unwrap();
    f.store.hold_connection(&conn, 20_000).await.unwrap(); // a shorter hold never shortens one
    assert!(f.store.claim_due("a", 29_999, 100, 30_000).await.unwrap().is_empty());
    assert_eq!(f.store.claim_due("a", 30_000, 100, 30_000).await.unwrap().len(), 2);
}

#[tokio::test]
async fn a_backlog_in_one_workspace_does_not_starve_another() {
    let f = fixture().await;
    let noisy = workspace(&*f.store).await;
    let quiet = workspace(&*f.store).await;
    let busy = connection(&*f.store, &noisy, 1_000).await;
    let calm = connection(&*f.store, &quiet, 1_000).await;
    enqueue(&*f.store, &noisy, &busy, 500, 1_000).await;
    enqueue(&*f.store, &quiet, &calm, 1, 5_000).await; // younger than the whole backlog
    let claimed = f.store.claim_due("a", 6_000, 4, 30_000).await.unwrap();
    assert_eq!(claimed.len(), 4);
    assert!(claimed.iter().any(|c| c.delivery.workspace_id == quiet), "the quiet workspace got a slot");
}

/// A claim takes each workspace up to its room on the claiming node, skips the full ones, and
/// gives unlisted workspaces the plain share.
#[tokio::test]
async fn claims_keep_each_workspace_within_its_room_on_the_node() {
    let f = fixture().await;
    let (a, b, c) = (workspace(&*f.store).await, workspace(&*f.store).await, workspace(&*f.store).await);
    for ws in [&a, &b, &c] {
        let conn = connection(&*f.store, ws, 1_000).await;
        enqueue(&*f.store, ws, &conn, 50, 1_000).await;
    }
    let share = NodeShare { per_workspace: 7, room: vec![(a.clone(), 0), (b.clone(), 3)], ..NodeShare::default() };
    let claimed = f.store.claim_due_shared("n", 2_000, 100, 30_000, &share).await.unwrap();
    let count = |ws: &WorkspaceId| claimed.iter().filter(|x| &x.delivery.workspace_id == ws).count();
    assert_eq!((count(&a), count(&b), count(&c)), (0, 3, 7));
}

#[tokio::test]
async fn scheduled_deliveries_wait_until_due() {
    let f = fixture().await;
    let ws = workspace(&*f.store).await;
    let conn = connection(&*f.store, &ws, 10).await;
    enqueue(&*f.store, &ws, &conn, 1, 1_000).await;
    let c = f.store.claim_due("a", 1_000, 10, 30_000).await.unwrap().remove(0);
    let retry = AttemptRecord {
        attempt: Attempt {
            delivery_id: c.delivery.id.clone(),
            number: 1,
            started_at: 1_000,
            duration_ms: 5,
            status_code: Some(503),
            error: Some("HTTP 503".into()),
            response_excerpt: Some("busy".into()),
            request: None,
        },
        next: NextStep::RetryAt(9_000),
    };
    f.store.record_attempts("a", &[retry], 1_010).await.unwrap();
    let d = f.store.get_delivery(&Scope::All, &c.delivery.id).await.unwrap().unwrap();
    assert_eq!((d.status, d.attempt_count, d.next_attempt_at), (DeliveryStatus::Retrying, 1, Some(9_000)));
    assert_eq!(f.store.get_event(&Scope::All, &c.event.id).await.unwrap().unwrap().status, EventStatus::Processing);
    assert!(f.store.claim_due("a", 8_999, 10, 30_000).await.unwrap().is_empty());
    assert_eq!(f.store.claim_due("a", 9_000, 10, 30_000).await.unwrap().len(), 1);
}

#[tokio::test]
async fn expired_and_foreign_leases_return_to_the_queue_and_late_results_are_ignored() {
    let f = fixture().await;
    let ws = workspace(&*f.store).await;
    let conn = connection(&*f.store, &ws, 10).await;
    enqueue(&*f.store, &ws, &conn, 2, 1_000).await;
    let claimed = f.store.claim_due("dead-node", 1_000, 1, 0).await.unwrap();
    // The lease is the connection's timeout (1 s) plus a margin of 0.
    assert_eq!(f.store.recover_expired_leases(1_999).await.unwrap(), 0);
    assert_eq!(f.store.recover_expired_leases(2_001).await.unwrap(), 1);
    let again = f.store.claim_due("live-node", 2_001, 10, 30_000).await.unwrap();
    assert_eq!(again.len(), 2);

    // The dead node's late result does not overwrite the new owner's lease.
    let late = answered(&claimed[0], 1_000, 200, NextStep::Succeeded);
    f.store.record_attempts("dead-node", &[late], 2_100).await.unwrap();
    let d = f.store.get_delivery(&Scope::All, &claimed[0].delivery.id).await.unwrap().unwrap();
    assert_eq!(d.status, DeliveryStatus::Delivering);

    assert_eq!(f.store.recover_foreign_leases("restarted-node", 3_000).await.unwrap(), 2);
    assert_eq!(f.store.waiting_count().await.unwrap(), 2);
}

/// A delivery stored already leased (handed to its node's dispatcher at ingest) holds its
/// connection's slot like a claimed one: no claim takes it, its owner records it, and a lease that
/// expires (the node died before running it) returns it to the queue.
#[tokio::test]
async fn deliveries_leased_at_ingest_count_as_claimed() {
    let f = fixture().await;
    let ws = workspace(&*f.store).await;
    let conn = connection(&*f.store, &ws, 2).await;
    let lease = IngestLease { owner: Arc::from("a"), expires_at: 2_000 };
    let mut batch: Vec<_> = (0..3).map(|_| new_event(&ws, &conn, None)).collect();
    batch[0].deliveries[0].lease = Some(lease.clone());
    batch[1].deliveries[0].lease = Some(lease);
    f.store.ingest(&batch, 1_000, 86_400_000).await.unwrap();
    let leased = f.store.get_delivery(&Scope::All, &batch[0].deliveries[0].id).await.unwrap().unwrap();
    assert_eq!(leased.status, DeliveryStatus::Delivering);
    let pending = f.store.get_delivery(&Scope::All, &batch[2].deliveries[0].id).await.unwrap().unwrap();
    assert_eq!(pending.status, DeliveryStatus::Pending);
    // The two leases fill the cap of two: no node claims the third.
    assert!(f.store.claim_due("b", 1_500, 100, 30_000).await.unwrap().is_empty());
    // The owner records the first; its slot is free, and the third is claimed.
    let first = Claimed { delivery: leased, event: Arc::new(batch[0].event.clone()), start_at: 1_000, next_start_at: None, probe: false };
    record(&*f.store, "a", std::slice::from_ref(&first)).await;
    let d = f.store.get_delivery(&Scope::All, &first.delivery.id).await.unwrap().unwrap();
    assert_eq!(d.status, DeliveryStatus::Succeeded);
    let third = f.store.claim_due("b", 1_500, 100, 30_000).await.unwrap();
    assert_eq!(third.iter().map(|c| &c.delivery.id).collect::<Vec<_>>(), vec![&batch[2].deliveries[0].id]);
    // The second's lease ends unrecorded: it is due again.
    assert_eq!(f.store.recover_expired_leases(2_001).await.unwrap(), 1);
    let again = f.store.get_delivery(&Scope::All, &batch[1].deliveries[0].id).await.unwrap().unwrap();
    assert_eq!(again.status, DeliveryStatus::Pending);
}

#[tokio::test]
async fn a_cancel_asked_during_a_lease_ends_the_delivery_however_the_lease_ends() {
    let f = fixture().await;
    let ws = workspace(&*f.store).await;
    let conn = connection(&*f.store, &ws, 10).await;
    enqueue(&*f.store, &ws, &conn, 4, 1_000).await;
    let claimed = f.store.claim_due("node", 1_000, 3, 0).await.unwrap();
    assert_eq!(claimed.len(), 3);
    for c in &claimed {
        let outcome = f.store.cancel_delivery(&Scope::All, &c.delivery.id, 1_100).await.unwrap();
        assert_eq!(outcome, Some(CancelOutcome::InFlight));
    }
    let record = |c: &Claimed, next: NextStep| answered(c, 1_000, 500, next);
    // An attempt that failed: cancelled, not retried. Handed back unattempted, or taken back from a
    // stopped node: cancelled too.
    f.store.record_attempts("node", &[record(&claimed[0], NextStep::RetryAt(5_000))], 1_200).await.unwrap();
    f.store.release("node", std::slice::from_ref(&claimed[1].delivery.id), 1_200).await.unwrap();
    assert_eq!(f.store.recover_expired_leases(10_000).await.unwrap(), 1);
    for c in &claimed {
        let d = f.store.get_delivery(&Scope::All, &c.delivery.id).await.unwrap().unwrap();
        assert_eq!(d.status, DeliveryStatus::Cancelled, "{}", c.delivery.id);
        assert_eq!(
            f.store.cancel_delivery(&Scope::All, &c.delivery.id, 10_000).await.unwrap(),
            Some(CancelOutcome::Finished(DeliveryStatus::Cancelled))
        );
    }
    // The one waiting is cancelled by filter at once; nothing is left to claim.
    let count = f.store.cancel_matching(&ws, &DeliveryFilter::default(), 10_000).await.unwrap();
    assert_eq!(count, CancelCount { cancelled: 1, in_flight: 0 });
    assert!(f.store.claim_due("node", 100_000, 10, 0).await.unwrap().is_empty());
    assert_eq!(f.store.waiting_count().await.unwrap(), 0);
    // Another workspace's scope finds nothing.
    let other = workspace(&*f.store).await;
    assert_eq!(f.store.cancel_delivery(&Scope::Workspace(other), &claimed[0].delivery.id, 10_000).await.unwrap(), None);
}

#[tokio::test]
async fn an_open_circuit_claims_nothing_then_one_probe_at_a_time_until_it_closes() {
    let f = fixture().await;
    let ws = workspace(&*f.store).await;
    let conn = connection(&*f.store, &ws, 10).await;
    enqueue(&*f.store, &ws, &conn, 6, 1_000).await;
    let tripped = CircuitReport::Tripped { reason: "4 of the last 4 attempts in 10 s failed".into(), cooldown_ms: 1_000 };
    assert_eq!(f.store.report_circuit(&conn, &tripped, 1_000).await.unwrap(), Some(CircuitState::Open));
    assert_eq!(f.store.report_circuit(&conn, &tripped, 1_000).await.unwrap(), None, "already open: nothing changes");
    let c = f.store.get_connection(&Scope::All, &conn).await.unwrap().unwrap();
    assert_eq!(
        (c.circuit.state, c.circuit.retry_at, c.circuit.reason.as_deref()),
        (CircuitState::Open, Some(2_000), Some("4 of the last 4 attempts in 10 s failed"))
    );
    assert!(f.store.claim_due("node", 1_500, 10, 0).await.unwrap().is_empty(), "open: nothing is claimed");

    let probe_at = |t: i64| {
        let store = f.store.clone();
        async move { store.claim_due("node", t, 10, 0).await.unwrap() }
    };
    let record = |c: &Claimed, t: i64| answered(c, t, 200, NextStep::Succeeded);
    let first = probe_at(2_100).await;
    assert_eq!(first.len(), 1, "half open: one probe");
    assert!(first[0].probe);
    assert_eq!(f.store.get_connection(&Scope::All, &conn).await.unwrap().unwrap().circuit.state, CircuitState::HalfOpen);
    assert!(probe_at(2_200).await.is_empty(), "one probe at a time");
    f.store.record_attempts("node", &[record(&first[0], 2_200)], 2_200).await.unwrap();
    let needed = CircuitReport::ProbeSucceeded { needed: 2 };
    assert_eq!(f.store.report_circuit(&conn, &needed, 2_200).await.unwrap(), None, "one success of two");
    let second = probe_at(2_300).await;
    assert_eq!((second.len(), second[0].probe), (1, true));
    f.store.record_attempts("node", &[record(&second[0], 2_400)], 2_400).await.unwrap();
    assert_eq!(f.store.report_circuit(&conn, &needed, 2_400).await.unwrap(), Some(CircuitState::Closed));
    let rest = probe_at(2_500).await;
    assert_eq!(rest.len(), 4, "closed: the rest at once");
    assert!(rest.iter().all(|c| !c.probe));
    let records: Vec<AttemptRecord> = rest.iter().map(|c| record(c, 2_600)).collect();
    f.store.record_attempts("node", &records, 2_600).await.unwrap();

    // A failed probe opens it again for twice as long, within the bounds.
    let retrip = CircuitReport::Tripped { reason: "again".into(), cooldown_ms: 1_000 };
    f.store.report_circuit(&conn, &retrip, 10_000).await.unwrap();
    let failed = CircuitReport::ProbeFailed { reason: "a probe failed".into(), base_ms: 1_000, max_ms: 1_500 };
    assert_eq!(f.store.report_circuit(&conn, &failed, 10_500).await.unwrap(), None, "open, not half open: no probe ran");
    enqueue(&*f.store, &ws, &conn, 1, 10_000).await;
    assert_eq!(probe_at(11_000).await.len(), 1);
    assert_eq!(f.store.report_circuit(&conn, &failed, 11_100).await.unwrap(), Some(CircuitState::Open));
    let c = f.store.get_connection(&Scope::All, &conn).await.unwrap().unwrap();
    assert_eq!(c.circuit.retry_at, Some(11_100 + 1_500), "twice 1 s, capped at 1.5 s");

    // Turning the breaker off closes the circuit: nothing is left waiting on it.
    let mut off = c.clone();
    off.breaker.enabled = false;
    f.store.update_connection(&off).await.unwrap();
    let c = f.store.get_connection(&Scope::All, &conn).await.unwrap().unwrap();
    assert_eq!((c.circuit.state, c.circuit.retry_at), (CircuitState::Closed, None));
}

#[tokio::test]
async fn idempotency_keys_hold_for_their_window_per_workspace() {
    let f = fixture().await;
    let ws = workspace(&*f.store).await;
    let other = workspace(&*f.store).await;
    let conn = connection(&*f.store, &ws, 10).await;
    let first = new_event(&ws, &conn, Some("k"));
    let out = f.store.ingest(std::slice::from_ref(&first), 1_000, 10_000).await.unwrap();
    assert!(matches!(out[0], IngestOutcome::Created));
    let out = f.store.ingest(&[new_event(&ws, &conn, Some("k")), new_event(&other, &conn, Some("k"))], 5_000, 10_000).await.unwrap();
    assert!(matches!(&out[0], IngestOutcome::Duplicate { id, .. } if *id == first.event.id));
    assert!(matches!(out[1], IngestOutcome::Created));
    // After the window the key is free again.
    let out = f.store.ingest(&[new_event(&ws, &conn, Some("k"))], 11_001, 10_000).await.unwrap();
    assert!(matches!(out[0], IngestOutcome::Created));
    assert_eq!(f.store.expire_idempotency_keys(100_000).await.unwrap(), 2);
}

#[tokio::test]
async fn retention_prunes_only_old_finished_history() {
    let f = fixture().await;
    let ws = workspace(&*f.store).await;
    let conn = connection(&*f.store, &ws, 100).await;
    let now = switchyard_core::now_millis();
    enqueue(&*f.store, &ws, &conn, 3, now).await;
    let claimed = f.store.claim_due("a", now, 2, 30_000).await.unwrap();
    let finished: Vec<_> = claimed
        .iter()
        .enumerate()
        .map(|(i, c)| AttemptRecord {
            attempt: Attempt {
                delivery_id: c.delivery.id.clone(),
                number: 1,
                started_at: now,
                duration_ms: 1,
                status_code: Some(if i == 0 { 200 } else { 410 }),
                error: None,
                response_excerpt: None,
                request: None,
            },
            next: if i == 0 { NextStep::Succeeded } else { NextStep::Dead },
        })
        .collect();
    f.store.record_attempts("a", &finished, now).await.unwrap();
    // Events newer than the cut-off stay.
    assert_eq!(f.store.prune_history(now - 1_000, 100, None).await.unwrap(), 0);
    // Old enough: the two finished events go, the one still waiting stays.
    assert_eq!(f.store.prune_history(now + 1_000, 100, None).await.unwrap(), 2);
    assert!(f.store.get_event(&Scope::All, &claimed[0].event.id).await.unwrap().is_none());
    assert!(f.store.delivery_attempts(&claimed[0].delivery.id).await.unwrap().is_empty());
    assert_eq!(f.store.waiting_count().await.unwrap(), 1);
    assert_eq!(f.store.prune_history(now + 1_000, 100, None).await.unwrap(), 0);
}

#[tokio::test]
async fn a_workspace_s_retention_prunes_that_workspace_only() {
    let f = fixture().await;
    let now = switchyard_core::now_millis();
    let (short, long) = (workspace(&*f.store).await, workspace(&*f.store).await);
    for ws in [&short, &long] {
        let conn = connection(&*f.store, ws, 100).await;
        enqueue(&*f.store, ws, &conn, 2, now).await;
    }
    let claimed = f.store.claim_due("a", now, 10, 30_000).await.unwrap();
    let done: Vec<_> = claimed
        .iter()
        .map(|c| AttemptRecord {
            attempt: Attempt {
                delivery_id: c.delivery.id.clone(),
                number: 1,
                started_at: now,
                duration_ms: 1,
                status_code: Some(200),
                error: None,
                response_excerpt: None,
                request: None,
            },
            next: NextStep::Succeeded,
        })
        .collect();
    f.store.record_attempts("a", &done, now).await.unwrap();
    assert_eq!(f.store.prune_history(now + 1_000, 100, Some(&short)).await.unwrap(), 2);
    let left = f.store.list_events(&long, &Default::default(), &Page { limit: 10, before: None }).await.unwrap();
    assert_eq!(left.len(), 2, "the other workspace keeps its history");
    assert!(f.store.list_events(&short, &Default::default(), &Page { limit: 10, before: None }).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_large_batch_of_records_moves_each_delivery_and_keeps_each_attempt_whole() {
    let f = fixture().await;
    let ws = workspace(&*f.store).await;
    let conn = connection(&*f.store, &ws, 100).await;
    enqueue(&*f.store, &ws, &conn, 75, 1_000).await;
    let claimed = f.store.claim_due("a", 1_000, 100, 30_000).await.unwrap();
    assert_eq!(claimed.len(), 75);
    // Another node's lease: a record from "a" for it must change nothing.
    let other = connection(&*f.store, &ws, 1).await;
    enqueue(&*f.store, &ws, &other, 1, 1_000).await;
    let foreign = f.store.claim_due("b", 1_000, 10, 30_000).await.unwrap();
    assert_eq!(foreign.len(), 1);

    let request = format!("POST /hook HTTP/1.1\r\ncontent-type: application/json\r\n\r\n{}", "é\"x".repeat(1_000));
    let record = |id: &DeliveryId, i: usize| AttemptRecord {
        attempt: Attempt {
            delivery_id: id.clone(),
            number: 1,
            started_at: 1_000 + i as i64,
            duration_ms: i as u64,
            status_code: [Some(200), Some(503), None][i % 3],
            error: (!i.is_multiple_of(3)).then(|| format!("failure {i}")),
            response_excerpt: (i % 3 == 1).then(|| format!("busy {i}")),
            request: Some(format!("{request}{i}")),
        },
        next: [NextStep::Succeeded, NextStep::RetryAt(9_000 + i as i64), NextStep::Dead][i % 3],
    };
    let mut records: Vec<AttemptRecord> = claimed.iter().enumerate().map(|(i, c)| record(&c.delivery.id, i)).collect();
    records.push(record(&foreign[0].delivery.id, 0));
    f.store.record_attempts("a", &records, 2_000).await.unwrap();

    for (i, c) in claimed.iter().enumerate() {
        let d = f.store.get_delivery(&Scope::All, &c.delivery.id).await.unwrap().unwrap();
        let expected = match i % 3 {
            0 => (DeliveryStatus::Succeeded, None, None),
            1 => (DeliveryStatus::Retrying, Some(9_000 + i as i64), Some(format!("failure {i}"))),
            _ => (DeliveryStatus::Dead, None, Some(format!("failure {i}"))),
        };
        assert_eq!((d.status, d.next_attempt_at, d.last_error), expected, "delivery {i}");
        assert_eq!(d.attempt_count, 1);
        let attempts = f.store.delivery_attempts(&c.delivery.id).await.unwrap();
        assert_eq!(attempts.len(), 1, "delivery {i}");
        let (want, got) = (&records[i].attempt, &attempts[0]);
        assert_eq!(
            (got.number, got.started_at, got.duration_ms, got.status_code, &got.error, &got.response_excerpt, &got.request),
            (want.number, want.started_at, want.duration_ms, want.status_code, &want.error, &want.response_excerpt, &want.request),
            "delivery {i}"
        );
    }
    let d = f.store.get_delivery(&Scope::All, &foreign[0].delivery.id).await.unwrap().unwrap();
    assert_eq!((d.status, d.attempt_count), (DeliveryStatus::Delivering, 0));
    assert!(f.store.delivery_attempts(&foreign[0].delivery.id).await.unwrap().is_empty());
    let usage = f.store.daily_usage(&ws, "1970-01-01").await.unwrap();
    assert_eq!(usage.iter().map(|u| (u.succeeded, u.dead)).collect::<Vec<_>>(), vec![(25, 25)]);
}
