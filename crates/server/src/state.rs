//! The state every handler and worker shares.

use crate::cache::Cache;
use crate::config::Config;
use crate::ingest::IngestQueue;
use std::sync::Arc;
use switchyard_destinations::Registry;
use switchyard_store::Store;
use tokio::sync::Notify;

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub config: Config,
    pub store: Arc<dyn Store>,
    /// Seals and opens secrets at rest.
    pub vault: Arc<crate::keyring::Vault>,
    pub registry: Registry,
    /// Where rules' templates render (worker processes, unless configured otherwise).
    pub renderer: switchyard_destinations::sandbox::Renderer,
    /// Lists destinations' choices for the pages' pickers (reads answers up to 1 MiB).
    pub options_sender: switchyard_destinations::http::Sender,
    /// Recent listings of destinations' choices.
    pub options_cache: crate::api::options::OptionsCache,
    /// OAuth token refreshes and exchanges.
    pub tokens: crate::oauth::tokens::Tokens,
    pub cache: Arc<Cache>,
    /// The group-commit writer events are handed to.
    pub ingest: IngestQueue,
    /// Event names seen by ingestion, written in the background.
    pub learner: Arc<crate::learn::EventTypeLearner>,
    /// Wakes this node's dispatcher when new deliveries are due now.
    pub wake: Arc<Notify>,
    /// Hands fresh deliveries to this node's dispatcher at ingest, alone on the store.
    pub intake: Arc<crate::dispatch::intake::Intake>,
    /// SHA-256 digest of `SWITCHYARD_ADMIN_KEY`, when set.
    pub env_admin_digest: Option<String>,
    /// Who `SWITCHYARD_ADMIN_KEY` is.
    pub env_admin: Arc<crate::auth::Operator>,
    /// When API keys were last used, written at most once a minute.
    pub key_usage: crate::auth::KeyUsage,
    /// Refused credentials recorded per client address.
    pub refusals: crate::audit::RefusalLimiter,
    /// Failed console sign-ins per client address.
    pub sign_in_throttle: crate::console::Throttle,
    /// The console's OpenID provider (discovery and keys, cached).
    pub oidc: crate::console::oidc::Provider,
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
    /// Rate-limit buckets of this node (shared with the cluster's, on PostgreSQL).
    pub rates: crate::rates::Rates,
}

impl AppState {
    pub fn new(inner: Inner) -> Self {
        Self(Arc::new(inner))
    }

    /// Applies a configuration change on this node at once (other nodes follow within a second).
    pub fn config_changed(&self) {
        self.cache.clear();
    }
}

impl std::ops::Deref for AppState {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.0
    }
}
