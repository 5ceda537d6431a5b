//! First-start concerns: the first admin key and the metrics recorder (master keys: see `keyring`).

use crate::config::Config;
use std::sync::OnceLock;
use switchyard_core::crypto::{generate_token, hash_token, token_hint};
use switchyard_core::ids::ApiKeyId;
use switchyard_core::model::{ApiKey, KeyScopeKind};
use switchyard_store::Store;

/// With no admin key configured and no usable one stored, creates one and returns it (to be shown
/// once). It is an ordinary API key with the admin scope, named `bootstrap`.
pub async fn admin_key(config: &Config, store: &dyn Store) -> anyhow::Result<Option<String>> {
    let now = switchyard_core::now_millis();
    if config.admin_key.is_some() || store.count_admin_keys(now).await? > 0 {
        return Ok(None);
    }
    let secret = generate_token("sk_");
    let key = ApiKey {
        id: ApiKeyId::generate(),
        name: "bootstrap".into(),
        hint: token_hint(&secret),
        scope: KeyScopeKind::Admin,
        workspaces: Vec::new(),
        expires_at: None,
        last_used_at: None,
        created_by: None,
        created_at: now,
    };
    store.create_api_key(&key, &hash_token(&secret)).await?;
    Ok(Some(secret))
}

/// The process-wide Prometheus recorder (installed once, shared by every node in a test process).
pub fn metrics_handle() -> metrics_exporter_prometheus::PrometheusHandle {
    static HANDLE: OnceLock<metrics_exporter_prometheus::PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
                .set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Suffix("_seconds".into()),
                    &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0],
                )
                .expect("static buckets are valid")
                .install_recorder()
                .expect("no other metrics recorder is installed");
            describe_metrics();
            handle
        })
        .clone()
}

/// Names, units and help texts of every metric, registered at zero so dashboards see them at once.
fn describe_metrics() {
    use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, Unit};
    describe_counter!("switchyard_events_ingested_total", "Events accepted and stored (idempotent repeats excluded).");
    describe_counter!(
        "switchyard_attempts_total",
        "Delivery attempts, by the delivery's state after the attempt: succeeded, retrying or dead."
    );
    describe_histogram!("switchyard_attempt_duration_seconds", Unit::Seconds, "Duration of delivery attempts, request to response.");
    describe_histogram!("switchyard_ingest_batch_events", "Events committed per ingest transaction (group commit).");
    describe_histogram!("switchyard_claim_duration_seconds", Unit::Seconds, "Duration of one claim of due deliveries (one transaction).");
    describe_histogram!("switchyard_claim_deliveries", "Deliveries leased per claim.");
    describe_histogram!("switchyard_record_duration_seconds", Unit::Seconds, "Duration of one batch of attempt records (one transaction).");
    describe_histogram!("switchyard_record_batch_attempts", "Attempts recorded per batch.");
    describe_histogram!(
        "switchyard_record_wait_seconds",
        Unit::Seconds,
        "From an attempt's answer to its record's commit: how long a delivery stays leased after it was answered."
    );
    describe_gauge!("switchyard_deliveries_waiting", "Deliveries waiting for an attempt (pending or retrying), due or scheduled.");
    describe_counter!("switchyard_lease_recoveries_total", "Deliveries taken back from a node that died holding their lease.");
    describe_counter!("switchyard_events_pruned_total", "Events deleted with their history after the retention period.");
    counter!("switchyard_events_ingested_total").increment(0);
    counter!("switchyard_lease_recoveries_total").increment(0);
    gauge!("switchyard_deliveries_waiting").set(0.0);
}
