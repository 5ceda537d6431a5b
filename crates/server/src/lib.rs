//! The Switchyard server: HTTP API, ingestion, dispatcher and operations, assembled by
//! [`Application::build`], which the binary and the tests both use.
//!
//! Layout:
//! - [`config`]: settings and their validation.
//! - [`api`]: one module per resource (`workspaces`, `connections`, `rules`, `events`,
//!   `deliveries`, `sessions`), the OpenAPI document, health and metrics endpoints.
//! - [`auth`]: credentials → [`auth::Principal`] → the store [`switchyard_store::Scope`].
//! - [`json`], [`error`]: request bodies in, the one error shape out.
//! - [`ingest`]: group commit of accepted events.
//! - [`cache`]: keys, rules and connections in memory, kept fresh by the store's config version.
//! - [`dispatch`]: claiming, attempts, recording, lease recovery.
//! - [`bootstrap`]: master key and first admin key.

pub mod api;
pub mod audit;
pub mod auth;
pub mod blueprint;
pub mod bootstrap;
pub mod cache;
pub mod config;
pub mod console;
pub mod dispatch;
pub mod embed;
pub mod error;
pub mod ingest;
pub mod json;
pub mod keyring;
pub mod learn;
pub mod limits;
pub mod mcp;
mod memory;
pub mod notify;
pub mod oauth;
pub mod rates;
pub mod serve;
pub mod state;

#[cfg(test)]
mod fuzz_tests;

use anyhow::Context;
use config::Config;
use state::{AppState, Inner};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use config::Role;

/// The polling interval used as a backstop when the store announces changes itself.
const SIGNALLED_BACKSTOP: Duration = Duration::from_secs(5);

/// A built node: bound to its port, store open and migrated, not yet serving.
pub struct Application {
    listener: TcpListener,
    state: AppState,
    stop: CancellationToken,
    /// The admin key created on first start, when one was (shown once).
    pub bootstrap_admin_key: Option<String>,
    node_id: String,
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        config.validate().map_err(anyhow::Error::msg)?;
        serve::ensure_descriptors(&config);
        let store = switchyard_store::open_with(&config.database_url, &config.postgres)
            .await
            .with_context(|| format!("could not open the database at {}", config::redact_url(&config.database_url)))?;
        let vault = keyring::Vault::load(&config, &*store).await?;
        // The file's plans, as the file says now; plans made through the API are left alone.
        store.sync_config_plans(&config.plans.plans).await.context("could not store the plans file's plans")?;
        let listener = TcpListener::bind(config.listen).await.with_context(|| format!("could not listen on {}", config.listen))?;
        // Only once nothing else can fail: a key created and then not shown would be lost.
        let bootstrap_admin_key = bootstrap::admin_key(&config, &*store).await?;

        let wake = Arc::new(Notify::new());
        let learner = Arc::new(learn::EventTypeLearner::default());
        let intake = Arc::new(dispatch::intake::Intake::default());
        let (ingest, _writer) = ingest::IngestQueue::start(
            store.clone(),
            config.idempotency_window.as_millis() as i64,
            ingest::BatchLimits { events: config.ingest_batch_max, deliveries: config.max_deliveries_per_request },
            wake.clone(),
            learner.clone(),
            intake.clone(),
        );
        let env_admin_digest = config.admin_key.as_deref().map(switchyard_core::crypto::hash_token);
        let vault = Arc::new(vault);
        let cache: Arc<cache::Cache> = Default::default();
        let tokens =
            oauth::tokens::Tokens::new(config.zoom_token_url.clone(), store.clone(), vault.clone(), config.oauth.clone(), cache.clone());
        let state = AppState::new(Inner {
            tokens,
            store,
            vault,
            registry: Default::default(),
            renderer: config.templates.renderer(),
            options_sender: switchyard_destinations::http::Sender::new(config.allow_private_destinations).with_read_limit(1 << 20),
            options_cache: Default::default(),
            cache,
            ingest,
            learner,
            wake,
            intake,
            env_admin_digest,
            env_admin: Arc::new(auth::Operator::env_admin()),
            key_usage: Default::default(),
            refusals: Default::default(),
            sign_in_throttle: Default::default(),
            oidc: Default::default(),
            metrics: bootstrap::metrics_handle(),
            rates: Default::default(),
            config,
        });
        let node_id = format!("node_{}", ulid::Ulid::new());
        Ok(Self { listener, state, stop: CancellationToken::new(), bootstrap_admin_key, node_id })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// Cancelling this token shuts the node down gracefully.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Serves until the shutdown token is cancelled: then stops accepting, finishes requests,
    /// lets attempts in flight finish (or hands back their leases), and returns.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let Self { listener, state, stop, node_id, .. } = self;
        let role = state.config.role;
        let mut workers: Vec<JoinHandle<()>> = Vec::new();
        // With announcements from the store, polling is only a backstop and can be rare: an idle
        // cluster then makes next to no queries.
        let signals = state.store.listen().await?;
        let backstop = |configured: Duration| if signals.is_some() { configured.max(SIGNALLED_BACKSTOP) } else { configured };
        let cache_interval = backstop(state.config.cache_check_interval);
        let poll_interval = backstop(state.config.dispatcher.poll_interval);
        if let Some(signals) = signals {
            workers.push(tokio::spawn(relay_signals(state.clone(), signals, stop.clone())));
        }
        workers.push(tokio::spawn(state.cache.clone().watch(state.store.clone(), cache_interval, stop.clone())));
        workers.push(tokio::spawn(keyring::watch(state.vault.clone(), stop.clone())));
        workers.push(tokio::spawn(memory::trim_periodically(stop.clone())));
        workers.push(tokio::spawn(heartbeat(state.clone(), node_id.clone(), stop.clone())));
        workers.push(tokio::spawn(learn::run(state.learner.clone(), state.store.clone(), stop.clone())));
        if role.serves_api() {
            workers.push(tokio::spawn(rates::sync_loop(state.clone(), stop.clone())));
        }
        if role.dispatches() {
            if state.config.database_url.starts_with("sqlite:") {
                // The embedded store has one node: any lease not ours belongs to a process that died.
                let recovered = state.store.recover_foreign_leases(&node_id, switchyard_core::now_millis()).await?;
                if recovered > 0 {
                    tracing::warn!(deliveries = recovered, "recovered deliveries leased by a previous process");
                    metrics::counter!("switchyard_lease_recoveries_total").increment(recovered);
                }
            }
            workers.push(tokio::spawn(dispatch::run(state.clone(), node_id.clone(), poll_interval, stop.clone())));
            workers.push(tokio::spawn(dispatch::maintenance::run(state.clone(), stop.clone())));
            workers.push(tokio::spawn(notify::run(state.clone(), stop.clone())));
        }
        tracing::info!(address = %listener.local_addr()?, role = ?role, node = %node_id, "switchyard is ready");
        let app = api::router(state.clone(), role.serves_api(), stop.clone())
            .layer(tower_http::catch_panic::CatchPanicLayer::custom(|_| {
                axum::response::IntoResponse::into_response(error::ApiError::internal("a request handler panicked"))
            }))
            // Spans name the path only: query strings carry OAuth codes and states.
            .layer(tower_http::trace::TraceLayer::new_for_http().make_span_with(|request: &axum::http::Request<_>| {
                tracing::debug_span!("request", method = %request.method(), path = %request.uri().path())
            }));
        serve::serve(listener, app, state.config.http, stop.clone()).await;
        stop.cancel();
        // Every request has been answered: what they taught is written before the node stops.
        state.learner.flush(&*state.store).await;
        for worker in workers {
            let _ = worker.await;
        }
        tracing::info!("stopped");
        Ok(())
    }
}

/// How often a node tells the store it is alive (the console lists nodes by their heartbeats).
const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(5);

async fn heartbeat(state: AppState, node_id: String, stop: CancellationToken) {
    let started_at = switchyard_core::now_millis();
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").ok().map(|h| h.trim().to_owned()).filter(|h| !h.is_empty());
    let mut tick = tokio::time::interval(HEARTBEAT_INTERVAL);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let node = switchyard_core::model::NodeInfo {
            id: node_id.clone(),
            role: state.config.role.as_str().into(),
            version: env!("CARGO_PKG_VERSION").into(),
            hostname: hostname.clone(),
            started_at,
            heartbeat_at: switchyard_core::now_millis(),
        };
        if let Err(e) = state.store.heartbeat(&node).await {
            tracing::warn!(error = %e, "could not record this node's heartbeat");
        }
    }
}

/// Acts on other nodes' announcements: new due work wakes the dispatcher, configuration changes
/// drop the caches.
async fn relay_signals(state: AppState, mut signals: tokio::sync::mpsc::Receiver<switchyard_store::Signal>, stop: CancellationToken) {
    loop {
        let signal = tokio::select! {
            _ = stop.cancelled() => return,
            s = signals.recv() => s,
        };
        match signal {
            Some(switchyard_store::Signal::Due) => state.wake.notify_one(),
            Some(switchyard_store::Signal::ConfigChanged) => state.cache.clear(),
            None => return,
        }
    }
}

/// Opens a database and applies its migrations (`switchyard migrate`).
/// Re-seals every secret under a new master key (see [`keyring::rotate`]).
pub async fn rotate_master_key(config: &Config, settle: std::time::Duration) -> anyhow::Result<keyring::Rotation> {
    // Never create a database (and a key for it) by rotating at a mistyped path.
    if let Some(dir) = config.data_dir() {
        let file = config.database_url.trim_start_matches("sqlite://").trim_start_matches("sqlite:").split('?').next().unwrap_or_default();
        anyhow::ensure!(
            std::path::Path::new(file).exists(),
            "there is no database at {file} (data folder {}); give the --database-url the server uses",
            dir.display()
        );
    }
    let store = switchyard_store::open_with(&config.database_url, &config.postgres)
        .await
        .with_context(|| format!("could not open the database at {}", config::redact_url(&config.database_url)))?;
    keyring::rotate(config, &*store, settle).await
}

pub async fn migrate(database_url: &str) -> anyhow::Result<()> {
    switchyard_store::open(database_url).await.with_context(|| format!("could not migrate {}", config::redact_url(database_url)))?;
    Ok(())
}
