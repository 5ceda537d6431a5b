//! First-start concerns: the master key that seals secrets, the first admin key, the metrics recorder.

use crate::config::Config;
use anyhow::{bail, Context};
use std::sync::OnceLock;
use switchyard_core::crypto::{generate_token, hash_token, token_hint, MasterKey, SecretBox};
use switchyard_core::ids::AdminKeyId;
use switchyard_core::model::AdminKey;
use switchyard_store::Store;

const MASTER_KEY_FILE: &str = "master.key";
const KEY_CHECK: &str = "master_key_check";
const KEY_CHECK_PLAINTEXT: &[u8] = b"switchyard master key check";

/// Loads the master key (from the environment, or the data folder of the embedded store, where one
/// is generated on first start) and proves it is the key this database's secrets were sealed with.
pub async fn secret_box(config: &Config, store: &dyn Store) -> anyhow::Result<SecretBox> {
    let encoded = match (&config.master_key, config.data_dir()) {
        (Some(key), _) => key.clone(),
        (None, Some(dir)) => load_or_create_key_file(&dir.join(MASTER_KEY_FILE))?,
        (None, None) => bail!("SWITCHYARD_MASTER_KEY is required with this database (32 random bytes, base64: `openssl rand -base64 32`)"),
    };
    let key = MasterKey::from_base64(&encoded).context("SWITCHYARD_MASTER_KEY is malformed")?;
    let vault = SecretBox::new(key);
    match store.get_meta(KEY_CHECK).await? {
        Some(sealed) => {
            if vault.open(&sealed, KEY_CHECK).is_err() {
                bail!(
                    "the master key (id {}) is not the one this database's secrets were sealed with; \
                     set SWITCHYARD_MASTER_KEY to the original key",
                    vault.current_key_id()
                );
            }
        }
        None => store.set_meta(KEY_CHECK, &vault.seal(KEY_CHECK_PLAINTEXT, KEY_CHECK)).await?,
    }
    Ok(vault)
}

fn load_or_create_key_file(path: &std::path::Path) -> anyhow::Result<String> {
    match std::fs::read_to_string(path) {
        Ok(key) => Ok(key.trim().to_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = MasterKey::generate_base64();
            write_private(path, &key).with_context(|| format!("could not write the master key to {}", path.display()))?;
            tracing::info!(path = %path.display(), "generated a master key for secrets at rest; back it up with the database");
            Ok(key)
        }
        Err(e) => Err(e).with_context(|| format!("could not read the master key at {}", path.display())),
    }
}

fn write_private(path: &std::path::Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()
}

/// With no admin key configured and none stored, creates one and returns it (to be shown once).
pub async fn admin_key(config: &Config, store: &dyn Store) -> anyhow::Result<Option<String>> {
    if config.admin_key.is_some() || store.count_admin_keys().await? > 0 {
        return Ok(None);
    }
    let secret = generate_token("sk_");
    let key = AdminKey {
        id: AdminKeyId::generate(),
        name: "bootstrap".into(),
        hint: token_hint(&secret),
        created_at: switchyard_core::now_millis(),
    };
    store.create_admin_key(&key, &hash_token(&secret)).await?;
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
    describe_gauge!("switchyard_deliveries_waiting", "Deliveries waiting for an attempt (pending or retrying), due or scheduled.");
    describe_counter!("switchyard_lease_recoveries_total", "Deliveries taken back from a node that died holding their lease.");
    describe_counter!("switchyard_events_pruned_total", "Events deleted with their history after the retention period.");
    counter!("switchyard_events_ingested_total").increment(0);
    counter!("switchyard_lease_recoveries_total").increment(0);
    gauge!("switchyard_deliveries_waiting").set(0.0);
}
