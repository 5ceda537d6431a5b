//! The PostgreSQL store, for any number of stateless nodes sharing one database.
//!
//! Differences from the embedded store, all behind the same traits:
//! - Claims lock the connections they take work from (`FOR NO KEY UPDATE SKIP LOCKED`), so two
//!   nodes never claim from one connection at once and in-flight caps hold cluster-wide.
//! - Idempotency keys are claimed with `INSERT ... ON CONFLICT`, so two nodes receiving one key
//!   at the same moment create one event.
//! - Migrations run under an advisory lock, so nodes starting together do not race.
//! - New work and configuration changes are announced with NOTIFY; every node LISTENs.

mod deliveries;
mod events;

/// Workspaces, connections, rules and history reads: SQL shared with SQLite (see `crate::shared`).
mod config_tables {
    use super::PostgresStore;
    use crate::rows;
    use crate::rows::AnyRow as _;
    use crate::{DeleteOutcome, DeliveryFilter, EventFilter, Page, Result, Scope};
    use switchyard_core::ids::*;
    use switchyard_core::model::*;
    use switchyard_core::Millis;

    crate::shared::workspaces::impl_workspace_store!(PostgresStore, sqlx::Postgres);
    crate::shared::connections::impl_connection_store!(PostgresStore, sqlx::Postgres);
    crate::shared::rules::impl_rule_store!(PostgresStore, sqlx::Postgres);
    crate::shared::history::impl_history_store!(PostgresStore, sqlx::Postgres);
    crate::shared::credentials::impl_credential_store!(PostgresStore, sqlx::Postgres);
    crate::shared::event_types::impl_event_type_store!(PostgresStore, sqlx::Postgres);
    crate::shared::operators::impl_operator_store!(PostgresStore, sqlx::Postgres);
    crate::shared::console::impl_console_store!(PostgresStore, sqlx::Postgres);
    crate::shared::limits::impl_limit_store!(PostgresStore, sqlx::Postgres);
    crate::shared::queue::impl_queue_store!(PostgresStore, sqlx::Postgres);
    crate::shared::blueprints::impl_blueprint_store!(PostgresStore, sqlx::Postgres);
}

use crate::migrate::{statements, POSTGRES};
use crate::{AdminStore, Result, Signal, StoreError};
use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use sqlx::{Postgres, Transaction};
use std::str::FromStr;
use std::time::Duration;

/// An arbitrary constant naming the advisory lock that serialises migrations.
const MIGRATION_LOCK: i64 = 0x5357_4954_4348_5944; // "SWITCHYD"
pub(crate) const DUE_CHANNEL: &str = "switchyard_due";
pub(crate) const CONFIG_CHANNEL: &str = "switchyard_config";

/// Connection settings for PostgreSQL.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// Connections in this node's pool.
    pub pool_size: u32,
    /// Longest a statement may run before the server cancels it.
    pub statement_timeout: Duration,
}

impl Default for PgOptions {
    fn default() -> Self {
        Self { pool_size: 16, statement_timeout: Duration::from_secs(30) }
    }
}

pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    pub async fn open(url: &str, options: &PgOptions) -> Result<Self> {
        let connect = PgConnectOptions::from_str(url)?
            .application_name("switchyard")
            // JIT compiles plans that the planner guesses are expensive: on queue queries that
            // guess is often wrong, and compiling costs 100+ ms per statement.
            .options([("statement_timeout", format!("{}ms", options.statement_timeout.as_millis())), ("jit", "off".to_owned())]);
        let pool = PgPoolOptions::new()
            .max_connections(options.pool_size.max(2))
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(connect)
            .await?;
        Ok(Self { pool })
    }

    /// The pool, for tests that inspect the database.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

impl PostgresStore {
    fn writer(&self) -> &PgPool {
        &self.pool
    }

    fn reader(&self) -> &PgPool {
        &self.pool
    }

    /// Bumps the version caches compare and tells every node; called in the transaction of every
    /// configuration change (NOTIFY is delivered on commit).
    async fn bump_config_version(tx: &mut Transaction<'_, Postgres>) -> Result<()> {
        sqlx::query("UPDATE meta SET value = (value::bigint + 1)::text WHERE key = 'config_version'").execute(&mut **tx).await?;
        sqlx::query("SELECT pg_notify($1, '')").bind(CONFIG_CHANNEL).execute(&mut **tx).await?;
        Ok(())
    }

    async fn refresh_event_status(tx: &mut Transaction<'_, Postgres>, event_id: &str) -> Result<()> {
        events::refresh_event_status(tx, event_id).await
    }

    async fn refresh_event_statuses(tx: &mut Transaction<'_, Postgres>, event_ids: &[&str]) -> Result<()> {
        events::refresh_event_statuses(tx, event_ids).await
    }

    async fn free_slots<'a>(tx: &mut Transaction<'_, Postgres>, connections: impl Iterator<Item = &'a str>) -> Result<()> {
        deliveries::free_slots(tx, connections).await
    }

    /// Wakes every node's dispatcher: deliveries became due.
    async fn queue_changed(tx: &mut Transaction<'_, Postgres>) -> Result<()> {
        notify_due(tx).await
    }

    /// A row read to be changed is locked, so two nodes do not change it on one reading.
    const ROW_LOCK: &'static str = " FOR UPDATE";

    /// Serialises, across nodes, the creations a limit counts under `key` (a workspace's id, or
    /// `workspaces`), until the transaction ends: two at once cannot both take the last place.
    async fn lock_for_limits(tx: &mut Transaction<'_, Postgres>, key: &str) -> Result<()> {
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 7))").bind(key).execute(&mut **tx).await?;
        Ok(())
    }
}

pub(crate) async fn notify_due(tx: &mut Transaction<'_, Postgres>) -> Result<()> {
    sqlx::query("SELECT pg_notify($1, '')").bind(DUE_CHANNEL).execute(&mut **tx).await?;
    Ok(())
}

#[async_trait]
impl crate::RateStore for PostgresStore {
    fn shares_rates(&self) -> bool {
        true
    }

    async fn share_rates(&self, keys: &[String], costs: &[f64], since: &[f64], forget_before: f64) -> Result<Vec<(String, f64)>> {
        // Keys in a fixed order, so two nodes syncing at once never wait on each other in a cycle.
        let mut order: Vec<usize> = (0..keys.len()).collect();
        order.sort_by(|a, b| keys[*a].cmp(&keys[*b]));
        let keys: Vec<&str> = order.iter().map(|i| keys[*i].as_str()).collect();
        let costs: Vec<f64> = order.iter().map(|i| costs[*i]).collect();
        let since: Vec<f64> = order.iter().map(|i| since[*i]).collect();
        let rows: Vec<(String, f64)> = sqlx::query_as(
            "INSERT INTO rate_buckets AS b (key, tat, cost)
             SELECT k, s + c, c FROM UNNEST($1::text[], $2::float8[], $3::float8[]) WITH ORDINALITY AS x(k, c, s, n) ORDER BY n
             ON CONFLICT (key) DO UPDATE SET tat = GREATEST(b.tat, EXCLUDED.tat - EXCLUDED.cost) + EXCLUDED.cost, cost = EXCLUDED.cost
             RETURNING key, tat",
        )
        .bind(&keys)
        .bind(&costs)
        .bind(&since)
        .fetch_all(&self.pool)
        .await?;
        // Now and then (every 600th sync: once a minute per node), forget buckets full for a while.
        static SYNCS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        if SYNCS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 600 == 599 {
            // In key order, skipping rows another node holds: never waits on the upserts crosswise.
            sqlx::query(
                "DELETE FROM rate_buckets WHERE key IN (SELECT key FROM rate_buckets WHERE tat < $1 ORDER BY key FOR UPDATE SKIP LOCKED)",
            )
            .bind(forget_before)
            .execute(&self.pool)
            .await?;
        }
        Ok(rows)
    }
}

#[async_trait]
impl AdminStore for PostgresStore {
    async fn migrate(&self) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        // Held until commit: a second node starting now waits here, then finds nothing to do.
        sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(MIGRATION_LOCK).execute(&mut *tx).await?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)",
        )
        .execute(&mut *tx)
        .await?;
        let applied: Vec<i64> = sqlx::query_scalar("SELECT version FROM schema_migrations").fetch_all(&mut *tx).await?;
        let known = POSTGRES.iter().map(|m| m.version).max().unwrap_or(0);
        if let Some(newest) = applied.iter().max().filter(|v| **v > known) {
            return Err(StoreError::Corrupt(format!(
                "the database has migration {newest}, newer than this binary knows ({known}); upgrade switchyard"
            )));
        }
        for migration in POSTGRES.iter().filter(|m| !applied.contains(&m.version)) {
            for statement in statements(migration.sql) {
                sqlx::query(&statement).execute(&mut *tx).await?;
            }
            sqlx::query("INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)")
                .bind(migration.version)
                .bind(migration.name)
                .bind(switchyard_core::now_millis())
                .execute(&mut *tx)
                .await?;
            tracing::info!(version = migration.version, name = migration.name, "applied migration");
        }
        tx.commit().await?;
        Ok(())
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn config_version(&self) -> Result<i64> {
        let v: String = sqlx::query_scalar("SELECT value FROM meta WHERE key = 'config_version'").fetch_one(&self.pool).await?;
        v.parse().map_err(|_| StoreError::Corrupt("config_version is not a number".into()))
    }

    async fn listen(&self) -> Result<Option<tokio::sync::mpsc::Receiver<Signal>>> {
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.listen_all([DUE_CHANNEL, CONFIG_CHANNEL]).await?;
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let signals: &[Signal] = match listener.try_recv().await {
                    Ok(Some(n)) if n.channel() == DUE_CHANNEL => &[Signal::Due],
                    Ok(Some(_)) => &[Signal::ConfigChanged],
                    // The connection dropped and was re-established: anything may have been missed.
                    Ok(None) => &[Signal::Due, Signal::ConfigChanged],
                    Err(e) => {
                        tracing::warn!(error = %e, "lost the LISTEN connection; polling until it is back");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                };
                for signal in signals {
                    // A full channel means the receiver already has work pending: dropping is fine.
                    if let Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) = tx.try_send(*signal) {
                        return;
                    }
                }
            }
        });
        Ok(Some(rx))
    }

    async fn get_meta(&self, key: &str) -> Result<Option<String>> {
        Ok(sqlx::query_scalar("SELECT value FROM meta WHERE key = $1").bind(key).fetch_optional(&self.pool).await?)
    }

    async fn scrub_freed_space(&self) -> Result<()> {
        // Old row versions stay in the table files until VACUUM reclaims them; autovacuum does,
        // and docs/security.md tells operators to run VACUUM after a key rotation.
        Ok(())
    }

    async fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        sqlx::query("INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value")
            .bind(key)
            .bind(value)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
